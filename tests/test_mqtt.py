"""MQTT in and out against a real broker (Debian's mosquitto, started per test on a free port) and real stores:
every message becomes exactly one row, a killed ingester loses and duplicates nothing, bad payloads are counted
by reason, `forward mqtt` sends every new row on once, and `demo --mqtt` runs the edge path and stops it all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as paho
import pyarrow as pa
import pytest
from conftest import store_config
from helpers import cli_env
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.client import fetch_table
from taosprsp.config import Config
from taosprsp.datasets import METERS, STOCKS, SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset
from taosprsp.errors import ConfigError, ExitCode, TaosprspError
from taosprsp.generate import Clock, Generator
from taosprsp.lifecycle import process_start_time
from taosprsp.lifecycle.mosquitto import mosquitto_binary, mosquitto_config
from taosprsp.mqtt import (
    BrokerOptions,
    ForwardOptions,
    ForwardStats,
    IngestOptions,
    IngestStats,
    MessageMapping,
    forward,
    forward_group,
    forward_mapping,
    ingest,
    publish,
)
from taosprsp.mqtt.broker import connect, disconnect
from taosprsp.mqtt.decode import BatchDecoder
from taosprsp.mqtt.mapping import Rejections
from taosprsp.mqtt.payload import LineError, parse_line
from taosprsp.mqtt.publish import messages
from taosprsp.produce import ProduceOptions
from taosprsp.stores import open_store
from taosprsp.stores.base import BEFORE_ANY_ROW, Store
from taosprsp.stores.embedded import EmbeddedStore

MOSQUITTO = mosquitto_binary()
MOSQUITTO_PUB = shutil.which("mosquitto_pub")
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; CI installs it)"
)
PLANT = "plant/{location}/{tbname}/power"
WAIT_SECONDS = 60.0
QUIET_SECONDS = 0.5


# --- fixtures: a real broker, a real store ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerOptions]:
    """mosquitto on 127.0.0.1 and a free port, in memory only, queueing without limit for absent sessions."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; CI installs it)")
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(mosquitto_config("127.0.0.1", port))
    log = (tmp_path / "mosquitto.log").open("w")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {(tmp_path / 'mosquitto.log').read_text()}") from None
                time.sleep(0.02)
        yield BrokerOptions(url=f"mqtt://127.0.0.1:{port}", connect_timeout=10)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(tmp_path / "store.sqlite", "meters") as opened:
        yield opened  # type: ignore[misc]


def embedded(path: Path) -> Callable[[], Store]:
    return lambda: EmbeddedStore(path, "meters")


class Ingesting:
    """`ingest` on a thread with its own connection to the store (`open_own()`), as a service runs it: ready
    once subscribed, `live` stats while it runs, stopped by `finish()`."""

    def __init__(
        self, open_own: Callable[[], Store], mapping: MessageMapping, broker: BrokerOptions, **options: object
    ) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.live: IngestStats | None = None
        self.stats: IngestStats | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with open_own() as own:
                    self.stats = ingest(
                        own,
                        mapping.dataset,
                        mapping,
                        broker,
                        IngestOptions(**options),  # type: ignore[arg-type]
                        on_stats=self._note,
                        stop=self.stop,
                        on_ready=self.ready.set,
                    )
            except BaseException as exc:  # surfaced by finish()
                self.error = exc
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(WAIT_SECONDS), "the ingester did not subscribe"
        self.quiet_since = time.monotonic()

    def _note(self, stats: IngestStats) -> None:
        if self.live is None or stats.messages != self.seen:
            self.quiet_since = time.monotonic()
        self.live, self.seen = stats, stats.messages

    def quiet(self) -> bool:
        """Nothing arrived for a while and nothing waits: the broker has no more for this session."""
        return self.live is not None and self.live.backlog == 0 and time.monotonic() - self.quiet_since > QUIET_SECONDS

    def finish(self) -> IngestStats:
        self.stop.set()
        self.thread.join(WAIT_SECONDS)
        if self.error:
            raise self.error
        assert self.stats is not None
        return self.stats


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def rows(store: EmbeddedStore, dataset: Dataset = METERS) -> pa.Table:
    return store.read_latest(dataset, 1_000_000)


def distinct_keys(table: pa.Table) -> int:
    return table.group_by([SUBTABLE_COLUMN, "ts"]).aggregate([]).num_rows


def publish_raw(broker: BrokerOptions, items: list[tuple[str, bytes]]) -> None:
    """Publish exactly these payloads at QoS 1 and wait until the broker has every one."""
    client = connect(broker, f"raw-{uuid.uuid4().hex[:8]}", persistent=False)
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in items]:
            info.wait_for_publish(WAIT_SECONDS)
    finally:
        disconnect(client)


# --- mapping and payloads, no broker ----------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: bytes
    timestamp: float = 0.0


def generated(dataset: Dataset, tables: int, per_table: int, seed: int = 7) -> pa.Table:
    counts = np.full(tables, per_table)
    clock = Clock("ms", np.full(tables, BEFORE_ANY_ROW))
    return Generator(dataset, tables, "ms", seed).batch(counts, clock.live(counts))


def test_topic_pattern_maps_levels_to_subtable_and_tags() -> None:
    mapping = MessageMapping.build(METERS, "ms", "plant/{location}/{tbname}/+/#")
    assert mapping.subscription() == "plant/+/+/+/#"
    assert mapping.topic.match("plant/Campbell/d4/x/power/extra") == ("Campbell", "d4")
    assert mapping.topic.match("plant/Campbell/d4") is None
    assert mapping.topic.match("factory/Campbell/d4/x") is None
    assert [name for name, _ in mapping.paths] == ["ts", "current", "voltage", "phase", "groupid"]
    for bad in ("plant/{nowhere}/{tbname}", "plant/{tbname}/{tbname}", "plant/x+/{tbname}", "plant//{tbname}"):
        with pytest.raises(ConfigError, match="mqtt.topic"):
            MessageMapping.build(METERS, "ms", bad)
    with pytest.raises(ConfigError, match="mqtt.fields"):
        MessageMapping.build(METERS, "ms", PLANT, fields={"location": "where"})


@pytest.mark.parametrize("payload_format", ["json", "line"])
@pytest.mark.parametrize("dataset", [METERS, STOCKS], ids=lambda d: d.name)
def test_encoded_rows_decode_back_to_the_same_rows(dataset: Dataset, payload_format: str) -> None:
    topic = "plant/{tbname}" if dataset is STOCKS else PLANT
    fields = {"current": "m.current", "voltage": "m.voltage"} if dataset is METERS and payload_format == "json" else {}
    mapping = MessageMapping.build(dataset, "ms", topic, payload_format, fields, timestamp_unit="us")  # type: ignore[arg-type]
    batch = generated(dataset, tables=5, per_table=4)
    topics, payloads = messages(mapping, batch)
    rejections = Rejections()
    decoded = BatchDecoder(mapping, rejections).decode(
        [Received(t, p.encode()) for t, p in zip(topics, payloads, strict=True)]
    )
    assert rejections.counts == {}
    assert decoded.table.equals(batch.sort_by([(SUBTABLE_COLUMN, "ascending"), ("ts", "ascending")]))


def test_line_protocol_parses_escapes_quotes_and_type_suffixes() -> None:
    values, ts = parse_line(r'm,site=San\ Jose,k\,ey=a\=b i=5i,u=7u,f=1.5,t=2i32,g=2.5f32,s="x \"y\", z",b=t 17')
    assert values == {
        "site": "San Jose",
        "k,ey": "a=b",
        "i": 5,
        "u": 7,
        "f": 1.5,
        "t": 2,
        "g": 2.5,
        "s": 'x "y", z',
        "b": True,
    }
    assert ts == 17
    assert parse_line("m v=1")[1] is None
    for bad in ("m", "m v=", "m v=1 notatime", "m v=1 2 3", 'm v="open'):
        with pytest.raises(LineError):
            parse_line(bad)


def test_decoder_rejects_by_reason_and_keeps_the_good_rows() -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    good = b'{"ts": 1000, "current": 1.5, "voltage": 220, "phase": 0.3, "groupid": 2}'
    batch = [
        Received("plant/Campbell/d1/power", good),
        Received("plant/Campbell/d1/power", b"{not json"),
        Received("plant/Campbell/d1/power", b"[1, 2]"),
        Received("plant/Campbell/d1/power", b'{"ts": 1001, "current": 1.5}'),
        Received(
            "plant/Campbell/d1/power", b'{"ts": 1002, "current": "high", "voltage": 220, "phase": 0.3, "groupid": 2}'
        ),
        Received(
            "plant/Campbell/d1/power", b'{"ts": 1003, "current": 1.5, "voltage": 2.5, "phase": 0.3, "groupid": 2}'
        ),
        Received(
            "plant/Campbell/d1/power", b'{"ts": "noon", "current": 1.5, "voltage": 220, "phase": 0.3, "groupid": 2}'
        ),
        Received("elsewhere/d1", good),
    ]
    rejections = Rejections()
    decoded = BatchDecoder(mapping, rejections).decode(batch)
    assert rejections.counts == {
        "not_json": 1,
        "not_object": 2,
        "missing_field": 1,
        "wrong_type": 3,
        "unknown_topic": 1,
    }
    assert rejections.samples["unknown_topic"]["topic"] == "elsewhere/d1"
    assert "current" in rejections.samples["wrong_type"]["detail"]
    assert decoded.table.to_pylist() == [
        {
            "tbname": "d1",
            "ts": 1000,
            "current": 1.5,
            "voltage": 220,
            "phase": pytest.approx(0.3),
            "groupid": 2,
            "location": "Campbell",
        }
    ]


def test_same_subtable_and_timestamp_twice_keeps_the_last_row() -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    first = b'{"ts": 5, "current": 1.0, "voltage": 220, "phase": 0.3, "groupid": 2}'
    second = b'{"ts": 5, "current": 2.0, "voltage": 220, "phase": 0.3, "groupid": 2}'
    decoded = BatchDecoder(mapping, Rejections()).decode(
        [Received("plant/a/d1/power", first), Received("plant/a/d1/power", second)]
    )
    assert decoded.duplicates == 1
    assert decoded.table["current"].to_pylist() == [2.0]


def test_messages_without_a_timestamp_are_stamped_on_arrival_strictly_increasing() -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    payload = b'{"current": 1.0, "voltage": 220, "phase": 0.3, "groupid": 2}'
    arrived = time.monotonic()
    decoder = BatchDecoder(mapping, Rejections())
    first = decoder.decode(
        [Received("plant/a/d1/power", payload, arrived)] * 3 + [Received("plant/a/d2/power", payload, arrived)]
    )
    second = decoder.decode([Received("plant/a/d1/power", payload, arrived)])
    d1 = first.table.filter(pa.compute.equal(first.table["tbname"], "d1"))["ts"].to_pylist()
    assert first.arrival_stamped == 4 and first.duplicates == 0
    assert d1[1] == d1[0] + 1 and d1[2] == d1[0] + 2
    assert abs(d1[0] - time.time() * 1000) < 60_000
    assert second.table["ts"].to_pylist() == [d1[2] + 1]


def test_an_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(TaosprspError, match="unreachable") as raised:
        connect(BrokerOptions(url=f"mqtt://127.0.0.1:{_free_port()}"), "nobody", persistent=False)
    assert raised.value.exit_code == ExitCode.UNREACHABLE


# --- through the broker -----------------------------------------------------------------------------


@needs_broker
@pytest.mark.parametrize("payload_format", ["json", "line"])
def test_every_published_message_becomes_exactly_one_row(
    broker: BrokerOptions, store: EmbeddedStore, payload_format: str
) -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT, payload_format)  # type: ignore[arg-type]
    ingesting = Ingesting(embedded(store.path), mapping, broker, client_id=f"ingest-{payload_format}", batch=500)
    published = publish(METERS, mapping, broker, ProduceOptions(tables=10, rate=0, count=2_000, seed=3))
    assert published.rows_written == 2_000 and published.rows_failed == 0
    wait_for(lambda: store.count(METERS) >= 2_000, "2,000 rows")
    stats = ingesting.finish()
    table = rows(store)
    assert table.num_rows == distinct_keys(table) == 2_000
    assert stats.messages == stats.rows_written == 2_000 and stats.rejected.total == 0
    per_subtable = table.group_by(SUBTABLE_COLUMN).aggregate([("location", "distinct"), ("groupid", "distinct")])
    tags = {name: pa.array(values).to_pylist() for name, values in METERS.tag_values(10).items()}
    for name, locations, groups in zip(
        *(per_subtable[c].to_pylist() for c in per_subtable.column_names[:3]), strict=True
    ):
        index = int(name.removeprefix("d"))
        assert locations == [tags["location"][index]] and groups == [tags["groupid"][index]]


@needs_broker
def test_malformed_payloads_are_counted_by_reason_and_never_stop_the_ingester(
    broker: BrokerOptions, store: EmbeddedStore
) -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    ingesting = Ingesting(embedded(store.path), mapping, broker, topics=("plant/#",), client_id="ingest-bad", batch=100)
    good = b'{"ts": %d, "current": 1.5, "voltage": 220, "phase": 0.3, "groupid": 2}'
    publish_raw(
        broker,
        [
            ("plant/Campbell/d1/power", good % 1),
            ("plant/Campbell/d1/power", b"\xff\xfe not json"),
            ("plant/Campbell/d1/power", b'"just a string"'),
            ("plant/Campbell/d1/power", b'{"ts": 2, "current": 1.5}'),
            ("plant/Campbell/d1/power", b'{"ts": 3, "current": [1], "voltage": 220, "phase": 0.3, "groupid": 2}'),
            ("plant/Campbell/d1/temperature", good % 4),
            ("plant/Campbell/d1/power", good % 5),
        ],
    )
    wait_for(lambda: store.count(METERS) >= 2, "the good rows")
    stats = ingesting.finish()
    assert stats.messages == 7 and stats.rows_written == 2
    assert stats.rejected.counts == {
        "not_json": 1,
        "not_object": 1,
        "missing_field": 1,
        "wrong_type": 1,
        "unknown_topic": 1,
    }
    assert stats.rejected.samples["unknown_topic"]["topic"] == "plant/Campbell/d1/temperature"
    assert rows(store)["ts"].to_pylist() == [1, 5]


INGESTER = r"""
import os, signal, sys, time
from taosprsp.datasets import METERS
from taosprsp.mqtt import BrokerOptions, IngestOptions, MessageMapping, ingest
from taosprsp.stores.embedded import EmbeddedStore

url, path, client_id, mode = sys.argv[1:5]


class DiesAtItsFirstWrite(EmbeddedStore):
    # SIGKILL just before or just after the first rows are stored: either way before a single acknowledgement
    # could go out, unless one went out too early (the sleep gives an early one time to reach the broker)
    def write(self, dataset, batch):
        if mode == "die-before-write":
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)
        written = super().write(dataset, batch)
        os.kill(os.getpid(), signal.SIGKILL)
        return written


store = (EmbeddedStore if mode == "run" else DiesAtItsFirstWrite)(path, "meters")
mapping = MessageMapping.build(METERS, "ms", "plant/{location}/{tbname}/power")
ingest(store, METERS, mapping, BrokerOptions(url), IngestOptions(client_id=client_id, batch=200),
       on_ready=lambda: print("ready", flush=True))
"""


def start_ingester_process(broker: BrokerOptions, path: Path, client_id: str, mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", INGESTER, broker.url, str(path), client_id, mode], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


@needs_broker
@pytest.mark.parametrize("moment", ["die-before-write", "die-after-write"])
def test_a_crash_at_the_first_write_redelivers_everything_without_a_second_row(
    broker: BrokerOptions, store: EmbeddedStore, tmp_path: Path, moment: str
) -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    doomed = start_ingester_process(broker, tmp_path / "store.sqlite", "ingest-crash", moment)
    try:
        publish(METERS, mapping, broker, ProduceOptions(tables=10, rate=0, count=1_000, seed=5))
        assert doomed.wait(WAIT_SECONDS) == -signal.SIGKILL
    finally:
        doomed.kill()
    written_before_the_crash = store.count(METERS)
    assert (written_before_the_crash == 0) if moment == "die-before-write" else (0 < written_before_the_crash < 1_000)
    ingesting = Ingesting(embedded(store.path), mapping, broker, client_id="ingest-crash", batch=200, count=1_000)
    ingesting.thread.join(WAIT_SECONDS)
    stats = ingesting.finish()
    table = rows(store)
    assert table.num_rows == distinct_keys(table) == 1_000
    assert stats.messages == 1_000 and stats.redelivered >= written_before_the_crash


@needs_broker
def test_kill_9_mid_stream_then_restart_loses_nothing_and_duplicates_nothing(
    broker: BrokerOptions, store: EmbeddedStore, tmp_path: Path
) -> None:
    mapping = MessageMapping.build(METERS, "ms", PLANT)
    total = 3_000
    victim = start_ingester_process(broker, tmp_path / "store.sqlite", "ingest-kill", "run")
    publishing = threading.Thread(
        target=publish, args=(METERS, mapping, broker, ProduceOptions(tables=10, rate=3_000, count=total, seed=9))
    )
    publishing.start()
    try:
        wait_for(lambda: store.count(METERS) >= total // 4, "a quarter of the rows before the kill")
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(WAIT_SECONDS) == -signal.SIGKILL
    finally:
        victim.kill()
        publishing.join(WAIT_SECONDS)
    assert store.count(METERS) < total
    ingesting = Ingesting(embedded(store.path), mapping, broker, client_id="ingest-kill", batch=200)
    wait_for(lambda: store.count(METERS) >= total, "every row after the restart")
    wait_for(ingesting.quiet, "the redeliveries to end")
    stats = ingesting.finish()
    table = rows(store)
    assert table.num_rows == distinct_keys(table) == total
    assert stats.rejected.total == 0


# --- on every store: the broker's own client in, forward out ------------------------------------------


def _pub_address(broker: BrokerOptions) -> list[str]:
    host, port, *_ = broker.address
    return ["-h", host, "-p", str(port)]


@needs_broker
@pytest.mark.skipif(MOSQUITTO_PUB is None, reason="mosquitto_pub is not installed (apt-get install mosquitto-clients)")
def test_messages_from_mosquitto_pub_become_exactly_as_many_rows_with_tags_from_the_topic(
    broker: BrokerOptions, config: Config
) -> None:
    mapping = MessageMapping.build(METERS, config.database.precision, PLANT)
    per_meter = 1_000
    first = 1_700_000_000_000 * TICKS_PER_SECOND[config.database.precision] // 1_000
    meters = {"d1": "Campbell", "d2": "Cupertino"}
    with open_store(config) as store:
        ingesting = Ingesting(lambda: open_store(config), mapping, broker, client_id="ingest-pub", batch=300)
        for meter, location in meters.items():
            payloads = "".join(
                orjson.dumps({"ts": first + i, "current": 1.0 + i, "voltage": 220, "phase": 0.5, "groupid": 7}).decode()
                + "\n"
                for i in range(per_meter)
            )
            # -l: one message per line of stdin; mosquitto_pub waits for the broker's PUBACK of each before it exits
            topic = f"plant/{location}/{meter}/power"
            subprocess.run(
                [MOSQUITTO_PUB, *_pub_address(broker), "-V", "mqttv5", "-q", "1", "-t", topic, "-l"],
                input=payloads,
                text=True,
                check=True,
                timeout=WAIT_SECONDS,
            )
        wait_for(lambda: store.count(METERS) >= 2 * per_meter, "every row")
        stats = ingesting.finish()
        table = store.read_range(METERS)
    assert stats.messages == stats.rows_written == table.num_rows == distinct_keys(table) == 2 * per_meter
    assert stats.rejected.total == 0 and stats.redelivered == 0
    per_subtable = table.group_by(SUBTABLE_COLUMN).aggregate([("location", "distinct"), ("groupid", "distinct")])
    assert sorted(per_subtable.to_pylist(), key=lambda row: row[SUBTABLE_COLUMN]) == [
        {SUBTABLE_COLUMN: meter, "location_distinct": [location], "groupid_distinct": [7]}
        for meter, location in meters.items()
    ]


class Subscriber:
    """A plain MQTT client collecting every message of `topic` at QoS 1, subscribed once constructed."""

    def __init__(self, broker: BrokerOptions, topic: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        subscribed = threading.Event()

        def prepare(client: paho.Client) -> None:
            client.on_message = lambda c, u, m: self.messages.append((m.topic, orjson.loads(m.payload)))
            client.on_subscribe = lambda *args: subscribed.set()

        self.client = connect(broker, f"subscriber-{uuid.uuid4().hex[:8]}", persistent=False, prepare=prepare)
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(WAIT_SECONDS), "the subscriber did not subscribe"

    def close(self) -> None:
        disconnect(self.client)


def generated_after(dataset: Dataset, precision: str, last: np.ndarray, per_table: int, seed: int) -> pa.Table:
    """Rows of every subtable after `last` (moved on), as `produce` writes them."""
    counts = np.full(len(last), per_table)
    clock = Clock(precision, last)  # type: ignore[arg-type]
    batch = Generator(dataset, len(last), precision, seed).batch(counts, clock.live(counts, now=0))  # type: ignore[arg-type]
    last[:] = clock.last
    return batch


@needs_broker
def test_forward_publishes_every_new_row_once_as_json_on_its_subtable_topic(
    broker: BrokerOptions, config: Config
) -> None:
    precision = config.database.precision
    tables = 5
    last = np.full(tables, 1_700_000_000_000 * TICKS_PER_SECOND[precision] // 1_000, dtype=np.int64)
    stop, ready = threading.Event(), threading.Event()
    outcome: list[ForwardStats | BaseException] = []
    mapping = forward_mapping(METERS, precision, config.stable)

    def run() -> None:
        try:
            with open_store(config) as own:
                options = ForwardOptions(interval=0.05)
                group = forward_group(config.database.name, config.stable)
                outcome.append(forward(own, METERS, mapping, broker, options, group, stop=stop, on_ready=ready.set))
        except BaseException as exc:  # surfaced below
            outcome.append(exc)
            ready.set()

    subscriber = Subscriber(broker, f"taosprsp/{config.stable}/#")
    with open_store(config) as store:
        store.ensure_schema(METERS, tables)
        store.write(METERS, generated_after(METERS, precision, last, 20, seed=1))  # before forwarding: not sent on
        forwarding = threading.Thread(target=run, daemon=True)
        forwarding.start()
        try:
            assert ready.wait(WAIT_SECONDS), "forward did not start"
            written = [generated_after(METERS, precision, last, 100, seed=seed) for seed in (2, 3, 4)]
            for batch in written:
                store.write(METERS, batch)
            total = sum(batch.num_rows for batch in written)
            wait_for(lambda: len(subscriber.messages) >= total, "every new row at the subscriber")
            time.sleep(QUIET_SECONDS)  # a row sent twice would arrive meanwhile
        finally:
            stop.set()
            forwarding.join(WAIT_SECONDS)
            subscriber.close()
    (stats,) = outcome
    assert isinstance(stats, ForwardStats), stats
    assert len(subscriber.messages) == stats.rows_read == stats.messages == total and stats.unconfirmed == 0
    received = pa.Table.from_pylist([payload for _, payload in subscriber.messages])
    expected = pa.concat_tables(written)
    for name in (SUBTABLE_COLUMN, "ts", "voltage", "groupid", "location"):
        assert sorted(zip(received[name].to_pylist(), received["ts"].to_pylist(), strict=True)) == sorted(
            zip(expected[name].to_pylist(), expected["ts"].to_pylist(), strict=True)
        ), name
    assert np.allclose(
        np.sort(received["current"].to_numpy(zero_copy_only=False)), np.sort(expected["current"].to_numpy())
    )
    assert {topic for topic, _ in subscriber.messages} == {
        f"taosprsp/{config.stable}/{name}" for name in expected[SUBTABLE_COLUMN].unique().to_pylist()
    }


# --- the commands ----------------------------------------------------------------------------------------


@needs_broker
def test_ingest_command_takes_what_produce_sink_mqtt_published_and_summarizes_rejections(
    broker: BrokerOptions, tmp_path: Path
) -> None:
    env = {
        "TAOSPRSP_MQTT_URL": broker.url,
        "TAOSPRSP_MQTT_TOPICS": "taosprsp/#",
        "TAOSPRSP_STORE_KIND": "embedded",
        "TAOSPRSP_STORE_PATH": str(tmp_path / "cli.sqlite"),
        "TAOSPRSP_STATE_DIR": str(tmp_path / "state"),
    }
    runner = CliRunner()
    away = runner.invoke(app, ["--json", "ingest", "mqtt", "--duration", "0.3"], env=env)  # the session, then gone
    assert away.exit_code == 0, away.stderr
    produced = runner.invoke(app, ["--json", "produce", "--sink", "mqtt", "--count", "300", "--rate", "0"], env=env)
    assert produced.exit_code == 0, produced.stderr
    assert json.loads(produced.stdout)["rows_written"] == 300
    publish_raw(broker, [("taosprsp/d1", b"{oops"), ("taosprsp/d1/extra", b"{}")])
    ingested = runner.invoke(app, ["--json", "ingest", "mqtt", "--count", "302"], env=env)
    assert ingested.exit_code == 0, ingested.stderr
    summary = json.loads(ingested.stdout)
    assert (summary["messages"], summary["rows_written"], summary["rejected"]) == (302, 300, 2)
    assert summary["rejected_by_reason"] == {"not_json": 1, "unknown_topic": 1}
    assert summary["rejected_samples"]["unknown_topic"]["topic"] == "taosprsp/d1/extra"
    assert summary["stopped_by"] == "count" and summary["client_id"] == "taosprsp-ingest"
    with EmbeddedStore(tmp_path / "cli.sqlite", "meters") as store:
        assert store.count(METERS) == 300


def test_config_show_masks_the_broker_password_and_reads_fields_from_the_environment() -> None:
    env = {
        "TAOSPRSP_MQTT_URL": "mqtt://meter:s3cret@broker.example:1883",
        "TAOSPRSP_MQTT_PASSWORD": "other-secret",
        "TAOSPRSP_MQTT_FIELDS": '{ current = "m.i" }',
    }
    shown = CliRunner().invoke(app, ["--json", "config", "show"], env=env)
    assert shown.exit_code == 0, shown.stderr
    mqtt = json.loads(shown.stdout)["mqtt"]
    assert mqtt["url"] == "mqtt://meter:****@broker.example:1883" and mqtt["password"] == "****"
    assert mqtt["fields"] == {"current": "m.i"} and "s3cret" not in shown.stdout
    bad = CliRunner().invoke(app, ["config", "show"], env={"TAOSPRSP_MQTT_QOS": "3"})
    assert bad.exit_code == ExitCode.CONFIG and "mqtt.qos" in bad.stderr


def _taosprsp(config: Config, *args: str, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, **cli_env(config), "TAOSPRSP_MQTT_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "taosprsp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


@needs_broker
def test_demo_mqtt_starts_its_broker_runs_the_edge_path_and_sigint_leaves_nothing_running(tmp_path: Path) -> None:
    config = store_config("embedded", tmp_path)
    demo = _taosprsp(
        config, "--json", "demo", "--mqtt", "--port", "0", "--history", "200", "--rate", "200",
        url=f"mqtt://127.0.0.1:{_free_port()}",
    )  # fmt: skip
    started: dict[str, int] = {}
    try:
        assert demo.stdout is not None
        ready = json.loads(demo.stdout.readline())
        assert ready["store"] == "embedded" and ready["mqtt"]["reason"].startswith("started mosquitto")
        for name in ("demo-produce", "demo-ingest", "demo-mosquitto"):
            started[name] = json.loads((Path(config.state.dir) / f"{name}.pid").read_text())["pid"]
        rows = 0
        deadline = time.monotonic() + WAIT_SECONDS
        while rows <= 400 and time.monotonic() < deadline:  # the history, then rows that came through the broker
            rows = fetch_table(ready["websocket"], config.perspective_table).num_rows
            time.sleep(0.5)
        assert rows > 400, "rows published to the broker never reached the server"
    finally:
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=WAIT_SECONDS)
    assert demo.returncode == ExitCode.INTERRUPTED, stderr
    assert all(process_start_time(pid) is None for pid in started.values()), started
    assert not list(Path(config.state.dir).glob("*.pid"))


def test_demo_mqtt_refuses_a_broker_it_cannot_start_before_touching_the_store(tmp_path: Path) -> None:
    config = store_config("embedded", tmp_path)
    demo = _taosprsp(config, "demo", "--mqtt", "--port", "0", url=f"ws://127.0.0.1:{_free_port()}/mqtt")
    _, stderr = demo.communicate(timeout=WAIT_SECONDS)
    assert demo.returncode == ExitCode.UNREACHABLE
    assert "no MQTT broker answers at ws://" in stderr and "only for a plain mqtt://" in stderr
    assert "Traceback" not in stderr and not Path(config.store.path).exists()
