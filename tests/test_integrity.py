"""Nothing lost, nothing duplicated, nothing left running: producers side by side, restarts, signals, bounds.

Real processes on the embedded store: `taosprsp` started as a user starts it, signalled as a terminal or
`teardown` signals it, its rows checked in the store and in what a served Perspective table holds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers import cli_env, start_producer, wait_until
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.client import fetch_table
from taosprsp.config import Config
from taosprsp.datasets import METERS
from taosprsp.generate import Clock, Generator, spread
from taosprsp.lifecycle import process_start_time
from taosprsp.serve import LiveServer
from taosprsp.stores import Store, Watermark, open_store

pytestmark = pytest.mark.parametrize("store_kind", ["embedded"])


def taosprsp(config: Config, *args: str) -> subprocess.Popen:
    """`taosprsp ARGS` as a real process on the test's store, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "taosprsp", *args],
        env={**os.environ, **cli_env(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(config: Config, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=cli_env(config))
    return result.exit_code, result.stdout, result.stderr


def stored(config: Config) -> pa.Table:
    with open_store(config) as store:
        return store.read_after(METERS, Watermark())


def keys(table: pa.Table) -> list[tuple[str, int]]:
    ts = table["ts"].cast(pa.int64()) if pa.types.is_timestamp(table["ts"].type) else table["ts"]
    return list(zip(table["tbname"].cast(pa.string()).to_pylist(), ts.to_pylist(), strict=True))


def row_count(config: Config) -> int:
    if not Path(config.store.path).exists():
        return 0
    with open_store(config) as store:
        return store.count(METERS)


def write_rows(store: Store, tables: int, rows: int, start: int, first: int = 0, seed: int = 1) -> pa.Table:
    """`rows` rows over subtables first..first+tables-1, each subtable's stamped from `start` on."""
    counts = spread(rows, tables)
    clock = Clock("ms", np.full(tables, start, dtype=np.int64))
    batch = Generator(METERS, tables, "ms", seed, first).batch(counts, clock.live(counts, now=0))
    store.ensure_schema(METERS, tables, first=first)
    store.write(METERS, batch)
    return batch


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def served(config: Config) -> Iterator[dict]:
    """`taosprsp serve` as a real process on a free port; its ready document (url, websocket)."""
    server = taosprsp(config, "--json", "serve", "--port", "0", "--interval", "50ms")
    try:
        line = server.stdout.readline()
        assert line, server.stderr.read()
        yield json.loads(line)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


# --- 1. producers side by side ------------------------------------------------------------------------


def test_two_producers_on_the_same_subtables_one_is_refused_naming_the_other(config: Config) -> None:
    first = taosprsp(config, "--json", "produce", "--rate", "2000", "--count", "3000")
    second = taosprsp(config, "--json", "produce", "--rate", "2000", "--count", "3000")
    outcomes = {process.pid: (process, *process.communicate(timeout=60)) for process in (first, second)}
    codes = sorted(process.returncode for process, _, _ in outcomes.values())
    assert codes == [0, 1], outcomes
    (winner,) = [pid for pid, (process, _, _) in outcomes.items() if process.returncode == 0]
    (refused,) = [stderr for process, _, stderr in outcomes.values() if process.returncode == 1]
    assert f"pid {winner} " in refused and "d0..d9 of meters" in refused
    assert "--first-table 10" in refused and "Traceback" not in refused
    rows = stored(config)
    assert rows.num_rows == 3000 and len(set(keys(rows))) == 3000


def test_two_producers_on_disjoint_subtables_beside_a_server_deliver_every_row_once(
    config: Config, served: dict
) -> None:
    producers = [
        start_producer(config, "--rate", "2500", "--count", "5000", "--tables", "5", "--first-table", first)
        for first in ("0", "5")
    ]
    for producer in producers:
        stdout, stderr = producer.communicate(timeout=60)
        assert producer.returncode == 0, stderr
        assert json.loads(stdout)["rows_written"] == 5000
    rows = stored(config)
    assert rows.num_rows == 10_000 and len(set(keys(rows))) == 10_000
    assert sorted(set(rows["tbname"].to_pylist())) == sorted(f"d{i}" for i in range(10))

    def window() -> pa.Table:
        return fetch_table(served["websocket"], config.perspective_table)

    assert wait_until(lambda: window().num_rows >= 10_000), window().num_rows
    seen = keys(window())
    assert len(seen) == len(set(seen)) == 10_000 and set(seen) == set(keys(rows))
    latest = fetch_table(served["websocket"], config.latest_table)
    with open_store(config) as store:
        assert dict(keys(latest)) == store.last_timestamps(METERS)


def test_a_killed_producer_leaves_its_subtables_free(config: Config) -> None:
    producer = taosprsp(config, "produce", "--rate", "1000")
    assert wait_until(lambda: row_count(config) > 0, timeout=60), producer.communicate(timeout=10)
    producer.send_signal(signal.SIGKILL)
    producer.wait(timeout=10)
    code, _, stderr = run_cli(config, "produce", "--count", "100", "--rate", "0")
    assert code == 0, stderr


# --- 2. timestamps ahead of the clock -----------------------------------------------------------------


def test_rows_of_new_subtables_stamped_behind_the_others_reach_the_window_and_latest(config: Config) -> None:
    with open_store(config) as store:
        ahead = write_rows(store, 10, 2000, start=now_ms() + 77_000)
    live = LiveServer(config.replace(server={"port": 0, "interval": "50ms"})).start()
    try:
        with open_store(config) as store:
            behind = write_rows(store, 2, 400, start=now_ms(), first=10, seed=2)
        assert wait_until(lambda: live.window.size() == 2400), live.window.size()
        window = fetch_table(live.websocket_url, config.perspective_table)
        latest = fetch_table(live.websocket_url, config.latest_table)
    finally:
        live.stop()
    assert set(keys(window)) == set(keys(ahead)) | set(keys(behind))
    assert sorted(latest["tbname"].to_pylist()) == sorted(f"d{i}" for i in range(12))


def test_produce_refuses_a_rate_above_one_row_per_tick_per_subtable(config: Config) -> None:
    code, _, stderr = run_cli(config, "produce", "--rate", "50000", "--tables", "10", "--count", "100")
    assert code == 2
    assert "5,000 rows/s per subtable" in stderr and "--tables 50" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert row_count(config) == 0


def test_produce_as_fast_as_possible_says_how_far_its_timestamps_ran_ahead(config: Config) -> None:
    code, stdout, stderr = run_cli(config, "--json", "produce", "--rate", "0", "--tables", "1", "--count", "100000")
    assert code == 0, stderr
    assert json.loads(stdout)["ahead_seconds"] > 5  # 100,000 rows of one subtable: 100 s of ms ticks
    assert "timestamps ran" in stderr and "ahead of the clock" in stderr


# --- 3. restart ---------------------------------------------------------------------------------------


def test_a_restarted_server_lists_the_latest_row_of_every_subtable_quiet_ones_included(config: Config) -> None:
    small = config.replace(server={"port": 0, "limit": 100})
    with open_store(config) as store:
        write_rows(store, 12, 120, start=now_ms() - 60_000)
    LiveServer(small).start().stop()
    with open_store(config) as store:
        write_rows(store, 10, 1000, start=now_ms() - 30_000, seed=3)  # d10 and d11 stay quiet
    live = LiveServer(small).start()
    try:
        latest = fetch_table(live.websocket_url, config.latest_table)
        window = fetch_table(live.websocket_url, config.perspective_table)
    finally:
        live.stop()
    assert window.num_rows == 100 and not {"d10", "d11"} & set(window["tbname"].to_pylist())
    with open_store(config) as store:
        assert dict(keys(latest)) == store.last_timestamps(METERS)
    assert len(latest) == 12


# --- 4. SIGHUP ----------------------------------------------------------------------------------------


def test_sighup_stops_a_producer_that_flushes_and_summarizes(config: Config) -> None:
    producer = taosprsp(config, "--json", "produce", "--rate", "2000")
    assert wait_until(lambda: row_count(config) > 0, timeout=60)
    producer.send_signal(signal.SIGHUP)
    stdout, stderr = producer.communicate(timeout=30)
    assert producer.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "signal" and summary["rows_written"] == row_count(config)


def test_sighup_stops_the_server(config: Config) -> None:
    server = taosprsp(config, "--json", "serve", "--port", "0")
    assert server.stdout.readline()
    server.send_signal(signal.SIGHUP)
    server.communicate(timeout=30)
    assert server.returncode is not None


def test_sighup_to_demo_stops_its_background_producer(config: Config) -> None:
    demo = taosprsp(config, "--json", "demo", "--port", "0", "--history", "100", "--rate", "500")
    try:
        ready = demo.stdout.readline()
        assert ready, demo.stderr.read()
        producer = json.loads((Path(config.state.dir) / "demo-produce.pid").read_text())["pid"]
        assert process_start_time(producer) is not None
    finally:
        demo.send_signal(signal.SIGHUP)
        demo.communicate(timeout=60)
    assert wait_until(lambda: process_start_time(producer) is None, timeout=15)
    assert not list(Path(config.state.dir).glob("*.pid"))


# --- 5. --background reports a child that died --------------------------------------------------------


def test_background_serve_on_a_busy_port_reports_the_childs_error(config: Config) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, stdout, stderr = run_cli(config, "serve", "--background", "--port", str(port))
    assert code == 1, stdout
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "serve stopped as it started" in stderr
    assert "Traceback" not in stderr
    assert not list(Path(config.state.dir).glob("*.pid"))


def test_background_produce_on_an_unusable_store_path_reports_the_childs_error(config: Config) -> None:
    Path(config.store.path).mkdir(parents=True)
    code, _, stderr = run_cli(config, "produce", "--background", "--rate", "100")
    assert code == 1
    assert "is a directory" in stderr and "produce stopped as it started" in stderr
    assert not list(Path(config.state.dir).glob("*.pid"))


def test_background_produce_returns_once_its_first_rows_are_written(config: Config) -> None:
    code, stdout, stderr = run_cli(config, "--json", "produce", "--background", "--rate", "200")
    try:
        assert code == 0, stderr
        assert row_count(config) > 0, "returned before the producer wrote anything"
    finally:
        run_cli(config, "teardown")
    assert process_start_time(json.loads(stdout)["pid"]) is None


# --- 6. Ctrl-C during a long seed ----------------------------------------------------------------------


def test_ctrl_c_during_seed_exits_130_with_a_summary_of_what_was_written(config: Config) -> None:
    seeding = taosprsp(config, "--json", "db", "seed", "--rows", "3000000", "--span", "1d")
    assert wait_until(lambda: row_count(config) > 0, timeout=60), seeding.stderr
    seeding.send_signal(signal.SIGINT)
    stdout, stderr = seeding.communicate(timeout=60)
    assert seeding.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert 0 < summary["rows"] == row_count(config) < 3_000_000
    assert "NOT_IMPLEMENTED" not in stderr and "Traceback" not in stderr


# --- 7. bounds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["produce", "--tables", "100000000", "--count", "10"], "at most 1,000,000"),
        (["produce", "--tables", "10", "--first-table", "999995", "--count", "10"], "between 0 and 999,990"),
        (["db", "seed", "--rows", "10", "--span", "99999999999d"], "no further back than 1970-01-01"),
        (["db", "seed", "--rows", "1000000", "--span", "1s", "--tables", "1"], "more than the 1,000 ticks"),
    ],
    ids=["tables", "first-table", "span", "rows-per-span"],
)
def test_sizes_beyond_what_makes_sense_are_refused_with_the_limit(config: Config, args: list[str], says: str) -> None:
    code, _, stderr = run_cli(config, *args)
    assert code == 2
    assert says in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert row_count(config) == 0
