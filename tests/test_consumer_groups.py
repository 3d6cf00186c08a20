"""TMQ consumer groups and clean-up on TDengine: a stable group per serve that goes when the serve does, drops
that take topics and groups along, throwaway databases of one vgroup, and `db purge` for what was left.

The TDengine tests run against TAOSPRSP_TEST_DSN (skipped otherwise); each works in its own database,
dropped afterwards with its topic and groups (see conftest).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import suppress

import numpy as np
import pyarrow as pa
import pytest
from helpers import cli_env, wait_until
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.config import MAX_GROUP_LENGTH, SERVE_GROUP_PREFIX, Config, load_config
from taosprsp.datasets import METERS
from taosprsp.errors import ConfigError, TaosprspError
from taosprsp.generate import Clock, Generator, spread
from taosprsp.serve import LiveServer
from taosprsp.stores import Store, TDengineStore, open_store
from taosprsp.stores.tdengine import LIVE_CONSUMER_STATUSES
from taosprsp.stores.tmq import Subscription, consumer_conf, subscribe

WAIT_SECONDS = 30.0
"""How long a test waits for the server to show a change (a rebalance runs every 2 s)."""


def test_a_serve_derives_one_group_per_table_and_address() -> None:
    config = load_config(environ={})
    assert config.consumer_group == f"{SERVE_GROUP_PREFIX}power-meters-127_0_0_1-8080"
    assert config.replace(server={"port": 8081}).consumer_group != config.consumer_group
    assert config.replace(database={"name": "other"}).consumer_group != config.consumer_group
    assert config.replace(server={"group": "mine"}).consumer_group == "mine"
    long_names = config.replace(dataset={"stable": "s" * 190})
    assert len(long_names.consumer_group) == MAX_GROUP_LENGTH
    assert long_names.consumer_group != long_names.replace(server={"port": 8081}).consumer_group


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ({"server": {"group": "two words"}}, "two words", "server.group"),
        ({"server": {"group": "g" * (MAX_GROUP_LENGTH + 1)}}, "g", "server.group"),
        ({"database": {"vgroups": 0}}, "0", "database.vgroups"),
    ],
)
def test_a_bad_group_or_vgroups_is_refused_naming_the_key(section: dict, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(overrides=section, environ={})
    assert refused.value.exit_code == 2 and value in str(refused.value)


def test_db_purge_without_a_reachable_tdengine_exits_4_in_one_line() -> None:
    result = CliRunner().invoke(app, ["db", "purge"], env={"TAOSPRSP_TDENGINE_PORT": "9"})
    assert result.exit_code == 4
    assert "unreachable" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- TDengine ---------------------------------------------------------------------------------------------


def rows_at_now(tables: int, rows: int, clock: Clock) -> pa.Table:
    """`rows` rows over `tables` subtables stamped now, after what `clock` handed out before."""
    counts = spread(rows, tables)
    return Generator(METERS, tables, "ms", seed=1).batch(counts, clock.live(counts))


def keys(table: pa.Table) -> set[tuple[str, int]]:
    return set(zip(table["tbname"].to_pylist(), table["ts"].to_pylist(), strict=True))


def receive(subscription: Subscription, expected: set[tuple[str, int]], stop: threading.Event) -> set[tuple[str, int]]:
    """The (tbname, ts) of what the subscription delivers until it has delivered `expected` (or gave up)."""
    seen: set[tuple[str, int]] = set()
    give_up = threading.Timer(WAIT_SECONDS, stop.set)
    give_up.start()
    try:
        for batch in subscription:
            seen |= keys(batch)
            if expected <= seen:
                break
    finally:
        give_up.cancel()
    return seen


@pytest.fixture
def leftover_group(store: Store, config: Config) -> Iterator[tuple[str, str]]:
    """(topic, group): a group on the feed's topic that consumed, committed and closed without being dropped,
    as a serve killed outright leaves one, once the server no longer lists its consumer."""
    import taosws

    assert isinstance(store, TDengineStore)
    group = f"{SERVE_GROUP_PREFIX}test-leftover"
    store.ensure_schema(METERS, 2)
    topic = store.create_topic(METERS)
    consumer = taosws.Consumer(conf=consumer_conf(store.endpoint, group, store.retries))
    try:
        consumer.subscribe([topic])
        store.write(METERS, rows_at_now(2, 10, Clock("ms", np.zeros(2, dtype=np.int64))))
        consumed = 0
        for _ in range(200):
            message = consumer.poll(timeout=0.1)
            if message is not None:
                consumed += sum(1 for block in message for _ in block)
                consumer.commit(message)
            if consumed >= 10:
                break
        assert consumed >= 10, "the consumer got nothing"
    finally:
        consumer.close()
    assert wait_until(lambda: store.consumers(group) == [], timeout=WAIT_SECONDS), "the closed consumer stays listed"
    assert store.consumer_groups(topic) == [group]
    yield topic, group


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_throwaway_databases_take_one_vgroup(store: Store, config: Config) -> None:
    assert isinstance(store, TDengineStore)
    store.ensure_schema(METERS, 2)
    name = config.database.name
    assert store._rows(f"SELECT `vgroups` FROM information_schema.ins_databases WHERE name = '{name}'") == [(1,)]


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_drop_takes_the_topic_and_its_groups_even_with_a_consumer_still_subscribed(
    store: Store, config: Config
) -> None:
    import taosws

    assert isinstance(store, TDengineStore)
    store.ensure_schema(METERS, 2)
    topic = store.create_topic(METERS)
    consumer = taosws.Consumer(conf=consumer_conf(store.endpoint, f"{SERVE_GROUP_PREFIX}test-open", store.retries))
    try:
        consumer.subscribe([topic])
        assert wait_until(lambda: store.consumer_groups(topic) != [], timeout=WAIT_SECONDS)
        store.drop(METERS)
        assert config.database.name not in store.databases()
        assert store.topics() == [] and all(name != topic for name, _ in store.subscriptions())
    finally:
        with suppress(Exception):  # its topic is gone: the consumer may say so on closing
            consumer.close()


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_serve_leaves_no_consumer_group_after_a_clean_stop(config: Config) -> None:
    served = config.replace(server={"port": 0, "feed": "tmq"})
    live = LiveServer(served).start()
    try:
        with open_store(config) as store:
            assert isinstance(store, TDengineStore)
            topic = store.topic_name()
            assert wait_until(lambda: store.consumer_groups(topic) == [served.consumer_group], timeout=WAIT_SECONDS)
    finally:
        live.stop()
    with open_store(config) as store:
        assert isinstance(store, TDengineStore)
        assert store.consumer_groups(topic) == []


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_a_group_left_behind_is_taken_over_and_starts_at_new_rows(
    store: Store, config: Config, leftover_group: tuple[str, str]
) -> None:
    assert isinstance(store, TDengineStore)
    topic, group = leftover_group
    clock = Clock("ms", np.array(list(store.last_per_subtable(METERS, 2)), dtype=np.int64))
    while_down = rows_at_now(2, 50, clock)  # written while no serve ran: the old group's commit is before them
    store.write(METERS, while_down)
    stop = threading.Event()
    with subscribe(store, METERS, group, stop) as subscription:
        assert store.consumer_groups(topic) == [group]
        fresh = rows_at_now(2, 10, clock)
        store.write(METERS, fresh)
        seen = receive(subscription, keys(fresh), stop)
    assert seen == keys(fresh), "rows written while no serve ran were replayed, or new ones were missed"
    assert store.consumer_groups(topic) == []


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_a_second_serve_in_the_same_group_is_refused_in_one_line(config: Config) -> None:
    served = config.replace(server={"port": 0, "feed": "tmq", "group": f"{SERVE_GROUP_PREFIX}test-twice"})
    first = LiveServer(served).start()
    try:
        with open_store(config) as store:
            assert isinstance(store, TDengineStore)
            in_group = lambda: [s for _, s in store.consumers(served.consumer_group) if s in LIVE_CONSUMER_STATUSES]  # noqa: E731
            assert wait_until(lambda: bool(in_group()), timeout=WAIT_SECONDS)
        with pytest.raises(TaosprspError, match=f"consumer group {served.consumer_group} on topic .* is in use by"):
            LiveServer(served).start()
    finally:
        first.stop()


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_db_purge_lists_without_yes_and_drops_with_it(
    store: Store, config: Config, leftover_group: tuple[str, str]
) -> None:
    assert isinstance(store, TDengineStore)
    topic, group = leftover_group
    env = cli_env(config)
    listed = CliRunner().invoke(app, ["--json", "db", "purge"], env=env)
    assert listed.exit_code == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert config.database.name in found["databases"] and topic in found["topics"]
    assert {"topic": topic, "group": group} in found["groups"] and found["removed"] is False
    assert config.database.name in store.databases(), "listing dropped something"
    dropped = CliRunner().invoke(app, ["--json", "db", "purge", "--yes"], env=env)
    assert dropped.exit_code == 0, dropped.stderr
    assert json.loads(dropped.stdout)["removed"] is True
    assert config.database.name not in store.databases()
    assert all(name != topic for name, _ in store.subscriptions())
    again = json.loads(CliRunner().invoke(app, ["--json", "db", "purge"], env=env).stdout)
    assert config.database.name not in again["databases"]
