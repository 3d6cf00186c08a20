"""`taosprsp serve`: incremental, columnar, exact; seen through a real Perspective client on the WebSocket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pyarrow as pa
import pytest
from helpers import cli_env, start_producer, wait_until
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.client import fetch_table
from taosprsp.config import Config
from taosprsp.datasets import METERS, STOCKS
from taosprsp.feed import perspective_arrow
from taosprsp.seed import seed
from taosprsp.serve import LiveServer, charted_groups
from taosprsp.stores import Watermark, open_store
from taosprsp.web import missing_assets, viewer_dir


def pairs(table: pa.Table) -> list[tuple[str, int]]:
    ts = table["ts"].cast(pa.int64()) if pa.types.is_timestamp(table["ts"].type) else table["ts"]
    return list(zip(table["tbname"].cast(pa.string()).to_pylist(), ts.to_pylist(), strict=True))


def store_rows(config: Config) -> pa.Table:
    with open_store(config) as store:
        return store.read_after(METERS, Watermark())


@pytest.fixture
def server(config: Config) -> Iterator[LiveServer]:
    live = LiveServer(config.replace(server={"port": 0, "interval": "50ms"})).start()
    yield live
    live.stop()


def test_client_sees_the_table_grow_with_every_written_row_once(server: LiveServer, config: Config) -> None:
    producer = start_producer(config, "--count", "6000", "--rate", "3000", "--batch", "300")
    sizes = []
    while producer.poll() is None:
        sizes.append(fetch_table(server.websocket_url, config.perspective_table).num_rows)
        time.sleep(0.3)
    assert producer.returncode == 0, producer.stderr.read()
    assert json.loads(producer.stdout.read())["rows_written"] == 6000
    assert wait_until(lambda: server.window.size() == 6000)
    seen = fetch_table(server.websocket_url, config.perspective_table)
    assert len(set(pairs(seen))) == len(pairs(seen)) == 6000
    assert set(pairs(seen)) == set(pairs(store_rows(config)))
    growing = [s for s in sizes if 0 < s < 6000]
    assert len(growing) >= 2 and growing == sorted(growing)


def test_snapshot_loads_existing_rows_and_latest_holds_one_row_per_meter(config: Config) -> None:
    with open_store(config) as store:
        seed(store, METERS, 5, "ms", rows=2000)
    live = LiveServer(config.replace(server={"port": 0})).start()
    try:
        window = fetch_table(live.websocket_url, config.perspective_table)
        latest = fetch_table(live.websocket_url, config.latest_table)
    finally:
        live.stop()
    assert window.num_rows == 2000 and len(set(pairs(window))) == 2000
    with open_store(config) as store:
        newest = store.last_timestamps(METERS)
    assert dict(pairs(latest)) == newest


def test_window_keeps_only_the_newest_rows_up_to_its_limit(config: Config) -> None:
    live = LiveServer(config.replace(server={"port": 0, "limit": 1000, "interval": "50ms"})).start()
    try:
        producer = start_producer(config, "--count", "5000", "--rate", "0", "--batch", "250")
        producer.wait(timeout=60)
        assert wait_until(lambda: live.feed.stats.rows_fed == 5000)
        window = fetch_table(live.websocket_url, config.perspective_table)
    finally:
        live.stop()
    assert window.num_rows == 1000
    assert len(set(pairs(window))) == 1000
    newest = sorted(pairs(store_rows(config)), key=lambda p: p[1])[-1]
    assert newest in set(pairs(window))


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_event_driven_feed_delivers_every_row_once_long_before_the_poll_interval(config: Config) -> None:
    """With a 60 s poll interval, rows that reach the window within the test's wait came by a wake-up."""
    live = LiveServer(config.replace(server={"port": 0, "interval": "60s"})).start()
    try:
        producer = start_producer(config, "--count", "3000", "--rate", "1500", "--batch", "50")
        _, stderr = producer.communicate(timeout=60)
        assert producer.returncode == 0, stderr
        assert wait_until(lambda: live.feed.stats.rows_fed == 3000, timeout=30), live.stats()
        seen = fetch_table(live.websocket_url, config.perspective_table)
        stats = live.stats()
    finally:
        live.stop()
    assert len(pairs(seen)) == len(set(pairs(seen))) == 3000
    assert set(pairs(seen)) == set(pairs(store_rows(config)))
    assert stats["feed"]["wake"] in ("inotify", "stat") and stats["feed"]["wakes"] >= 1


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_derived_tables_start_with_the_whole_horizon_beyond_the_window(config: Config) -> None:
    """60 k rows over 10 minutes, a 20 k-row window, a 5-minute horizon: the by-location table holds exactly the
    aggregates of the stored rows within the horizon (rows older than the window included)."""
    with open_store(config) as store:
        seed(store, METERS, 10, "ms", rows=60_000, span_seconds=600)
    live = LiveServer(config.replace(server={"port": 0, "limit": 20_000})).start()
    try:
        by_location = fetch_table(live.websocket_url, f"{config.perspective_table}_by_location")
        buckets = fetch_table(live.websocket_url, f"{config.perspective_table}_location_1s")
    finally:
        live.stop()
    rows = store_rows(config)
    bucket = rows["ts"].to_numpy() // 1000
    held = rows.filter(pa.array(bucket >= bucket.max() - 299))
    expected = held.group_by("location").aggregate([("current", "sum"), ("current", "count"), ("voltage", "max")])
    got = {
        row["location"]: (row["current_sum"], row["current_count"], row["voltage_max"])
        for row in by_location.to_pylist()
    }
    assert 20_000 < held.num_rows < rows.num_rows
    assert got.keys() == set(expected["location"].to_pylist())
    for row in expected.to_pylist():
        current_sum, count, voltage_max = got[row["location"]]
        assert count == row["current_count"] and voltage_max == row["voltage_max"]
        assert current_sum == pytest.approx(row["current_sum"], rel=1e-9)
    assert buckets.num_rows == 300  # a row per held bucket, a column per location
    assert set(buckets.column_names) == {"slot", "ts", *got}


def test_stats_endpoint_reports_the_feed(server: LiveServer, config: Config) -> None:
    with open_store(config) as store:
        seed(store, METERS, 3, "ms", rows=300)
    assert wait_until(lambda: server.feed.stats.rows_fed == 300)
    stats = json.loads(urllib.request.urlopen(server.url + "api/stats", timeout=5).read())
    assert stats["feed"]["rows_fed"] == 300 and stats["tables"][config.perspective_table] == 300


def test_dashboard_json_names_the_served_tables(server: LiveServer, config: Config) -> None:
    if missing_assets(viewer_dir()):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url, timeout=5)
        assert missing.value.code == 503
        return
    document = json.loads(urllib.request.urlopen(server.url + "dashboard.json", timeout=5).read())
    stats = json.loads(urllib.request.urlopen(server.url + "api/stats", timeout=5).read())
    panels = [panel["table"] for panel in document["panels"]]
    # the grid and the chart view the derived tables; the raw window stays served for a raw-rows panel
    table = config.perspective_table
    assert panels == [f"{table}_by_location", f"{table}_location_1s", config.latest_table]
    assert set(panels) | {table} == set(stats["tables"])
    assert b"dashboard.js" in urllib.request.urlopen(server.url, timeout=5).read()


def test_dashboard_modules_are_served_with_the_types_browsers_require(server: LiveServer) -> None:
    """Browsers refuse to compile WebAssembly, or run a module, served under another type."""
    if missing_assets(viewer_dir()):
        pytest.skip("viewer assets missing: npm ci --prefix viewer")
    wasm = "node_modules/@perspective-dev/viewer/dist/wasm/perspective-viewer.wasm"
    for path, expected in ((wasm, "application/wasm"), ("dashboard.js", "text/javascript")):
        with urllib.request.urlopen(server.url + path, timeout=5) as response:
            assert response.headers["Content-Type"] == expected, path


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_tmq_feed_on_the_embedded_store_is_a_clear_error(config: Config) -> None:
    result = CliRunner().invoke(app, ["serve", "--feed", "tmq"], env=cli_env(config))
    assert result.exit_code == 3
    assert "--feed tmq needs TDengine" in result.stderr


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
@pytest.mark.parametrize("feed", ["tmq", "poll"])
def test_each_tdengine_feed_delivers_every_row_once(config: Config, feed: str) -> None:
    live = LiveServer(config.replace(server={"port": 0, "feed": feed, "interval": "50ms"})).start()
    try:
        producer = start_producer(config, "--count", "3000", "--rate", "3000")
        producer.wait(timeout=60)
        assert wait_until(lambda: live.window.size() == 3000, timeout=30)
        seen = fetch_table(live.websocket_url, config.perspective_table)
    finally:
        live.stop()
    assert len(set(pairs(seen))) == 3000
    assert set(pairs(seen)) == set(pairs(store_rows(config)))


def test_perspective_arrow_types_times_for_perspective() -> None:
    table = pa.table(
        {
            "tbname": ["s0"],
            "ts": pa.array([1_700_000_000_123_456], pa.int64()),
            "date": pa.array([1_699_920_000_000_000], pa.int64()),
        }
    )
    ready = perspective_arrow(STOCKS, table, "us")
    assert ready["ts"].type == pa.timestamp("us") and ready["date"].type == pa.date32()
    assert ready["date"][0].as_py().isoformat() == "2023-11-14"


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_viewer_command_serves_the_dashboard_against_a_given_server(config: Config) -> None:
    if missing_assets(viewer_dir()):
        pytest.skip("viewer assets missing: npm ci --prefix viewer")
    env = {**os.environ, **cli_env(config)}
    viewer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taosprsp",
            "viewer",
            "--ws",
            "ws://127.0.0.9:8080/websocket",
            "--port",
            "0",
            "--no-open",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = viewer.stderr.readline()
        url = line.split("dashboard: ", 1)[1].split(" ", 1)[0]
        document = json.loads(urllib.request.urlopen(url + "dashboard.json", timeout=5).read())
        page = urllib.request.urlopen(url, timeout=5).read()
    finally:
        viewer.terminate()
        viewer.wait(timeout=10)
    assert document["websocket"] == "ws://127.0.0.9:8080/websocket"
    assert b"dashboard.js" in page


def test_the_chart_draws_the_configured_groups_then_those_the_store_holds(config: Config, store) -> None:
    seed(store, METERS, 3, "ms", rows=30, span_seconds=10)
    held = METERS.field("location").tag_values(3).to_pylist()
    declared = list(dict.fromkeys(METERS.field("location").tag_values(12).to_pylist()))
    assert held == declared[:3] and len(declared) == 10
    # the producer will write the configured subtables: their groups are charted before they have rows
    assert charted_groups(store, METERS, config.replace(dataset={"tables": 12})) == declared
    assert charted_groups(store, METERS, config.replace(dataset={"tables": 1})) == held
    # a table the config does not declare: only what the store holds (made-up tag values would be empty series)
    other = config.replace(dataset={"name": "stocks", "stable": config.stable})
    assert charted_groups(store, METERS, other) == held
