"""`taosprsp produce`: exact counts, unique timestamps, rate control, clean stops, and no silent loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import cli_env, wait_until
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.config import Config
from taosprsp.datasets import METERS
from taosprsp.errors import StoreError
from taosprsp.produce import RETRY_DELAYS, ProduceOptions, produce
from taosprsp.schemaless import SOURCE_TABLE_TAG, encode, measurement
from taosprsp.stores import EmbeddedStore, TDengineStore, Watermark, open_store

SUMMARY_FIELDS = {
    "store",
    "dataset",
    "protocol",
    "target_rate",
    "batch",
    "tables",
    "rows_written",
    "rows_failed",
    "rows_rejected",
    "batches",
    "errors",
    "reconnects",
    "seconds",
    "lag_seconds",
    "ahead_seconds",
    "last_error",
    "stopped_by",
    "rows_per_second",
    "behind",
}
# as many retries as the real schedule, without its seconds of waiting
QUICK_RETRIES = (0.01,) * len(RETRY_DELAYS)


def run_cli(config: Config, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=cli_env(config))
    return result.exit_code, result.stdout, result.stderr


def all_rows(config: Config) -> pa.Table:
    with open_store(config) as store:
        return store.read_after(METERS, Watermark())


def duplicate_pairs(rows: pa.Table) -> int:
    pairs = list(zip(rows["tbname"].to_pylist(), rows["ts"].to_pylist(), strict=True))
    return len(pairs) - len(set(pairs))


def test_count_stores_exactly_n_rows_spread_over_the_subtables(config: Config) -> None:
    code, stdout, _ = run_cli(
        config, "--json", "produce", "--count", "10007", "--rate", "0", "--tables", "7", "--batch", "1000"
    )
    assert code == 0
    assert json.loads(stdout)["rows_written"] == 10007
    rows = all_rows(config)
    assert rows.num_rows == 10007
    per_subtable = rows.group_by("tbname").aggregate([("ts", "count")]).to_pydict()
    assert sorted(per_subtable["tbname"]) == [f"d{i}" for i in range(7)]
    assert max(per_subtable["ts_count"]) - min(per_subtable["ts_count"]) <= 1


def test_timestamps_are_unique_per_subtable_across_batches_and_producers(config: Config) -> None:
    for _ in range(2):
        code, _, _ = run_cli(config, "produce", "--count", "5000", "--rate", "0", "--batch", "100", "--tables", "3")
        assert code == 0
    rows = all_rows(config)
    assert rows.num_rows == 10000
    assert duplicate_pairs(rows) == 0


def test_json_summary_has_the_documented_fields(config: Config) -> None:
    code, stdout, _ = run_cli(config, "--json", "produce", "--count", "100", "--rate", "0")
    assert code == 0
    summary = json.loads(stdout)
    assert set(summary) == SUMMARY_FIELDS
    assert summary["stopped_by"] == "count" and summary["rows_failed"] == 0


def test_duration_run_writes_a_plausible_number_of_rows_for_its_rate(config: Config) -> None:
    code, stdout, _ = run_cli(config, "--json", "produce", "--rate", "2000", "--duration", "2s")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "duration"
    assert 2000 <= all_rows(config).num_rows <= 6000


def test_interval_and_batch_pace_like_the_seeds(config: Config) -> None:
    code, stdout, _ = run_cli(config, "--json", "produce", "--interval", "100ms", "--batch", "50", "--duration", "1s")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["batch"] == 50 and summary["target_rate"] == 500
    assert 250 <= summary["rows_written"] <= 750


def test_null_sink_generates_without_writing(config: Config) -> None:
    code, stdout, _ = run_cli(config, "--json", "produce", "--sink", "null", "--count", "50000", "--rate", "0")
    assert code == 0
    assert json.loads(stdout)["rows_written"] == 50000
    with open_store(config) as store:
        store.ensure_schema(METERS, 1)
        assert store.count(METERS) == 0


def test_sigterm_flushes_and_every_reported_row_is_stored(config: Config, tmp_path: Path) -> None:
    env = {**os.environ, **cli_env(config)}
    with open_store(config) as store:
        store.ensure_schema(METERS, config.dataset.tables)
        process = subprocess.Popen(
            [sys.executable, "-m", "taosprsp", "--json", "produce", "--rate", "5000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert wait_until(lambda: store.count(METERS) > 0), "the producer wrote nothing"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "signal"
    assert summary["rows_written"] > 0
    assert all_rows(config).num_rows == summary["rows_written"]


class FlakyEmbeddedStore(EmbeddedStore):
    """A real embedded store whose first `outage` writes fail, as a TDengine going away would (none runs here)."""

    def __init__(self, path: str, stable: str, outage: list[int]) -> None:
        super().__init__(path, stable)
        self.outage = outage

    def write(self, dataset, batch):
        if self.outage[0] > 0:
            self.outage[0] -= 1
            raise StoreError("connection reset by peer")
        return super().write(dataset, batch)


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_store_outage_reconnects_and_loses_nothing(config: Config) -> None:
    outage = [2]
    opened: list[FlakyEmbeddedStore] = []

    def reopen() -> FlakyEmbeddedStore:
        opened.append(FlakyEmbeddedStore(config.store.path, config.stable, outage))
        return opened[-1]

    store = reopen()
    store.ensure_schema(METERS, 4)
    options = ProduceOptions(tables=4, rate=0, batch=100, count=1000)
    stats = produce(store, METERS, config.stable, "ms", options, reopen=reopen, retry_delays=QUICK_RETRIES)
    assert (stats.rows_written, stats.rows_failed, stats.errors, stats.reconnects) == (1000, 0, 2, 2)
    assert all_rows(config).num_rows == 1000


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_rows_that_cannot_be_written_are_counted_not_dropped(config: Config) -> None:
    outage = [10**6]
    store = FlakyEmbeddedStore(config.store.path, config.stable, outage)
    store.ensure_schema(METERS, 2)
    stats = produce(
        store,
        METERS,
        config.stable,
        "ms",
        ProduceOptions(tables=2, rate=0, batch=10, count=20),
        reopen=lambda: FlakyEmbeddedStore(config.store.path, config.stable, outage),
        retry_delays=QUICK_RETRIES,
    )
    assert (stats.rows_written, stats.rows_failed) == (0, 20)
    assert stats.reconnects == 2 * len(QUICK_RETRIES)
    assert "connection reset" in stats.last_error


REFUSAL = "meters takes no rows in this test"


def refuse_every_insert(config: Config) -> None:
    """Make the embedded store refuse every row of `meters` for good, as TDengine refuses rows that do not fit
    its super table: a trigger that aborts each insert with `REFUSAL`."""
    import adbc_driver_sqlite.dbapi as adbc

    with open_store(config) as store:
        store.ensure_schema(METERS, 2)
    with adbc.connect(config.store.path, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON meters BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_a_write_the_store_refuses_fails_its_batch_at_once_without_reconnecting(config: Config) -> None:
    refuse_every_insert(config)
    reopened: list[EmbeddedStore] = []

    def reopen() -> EmbeddedStore:
        reopened.append(EmbeddedStore(config.store.path, config.stable))
        return reopened[-1]

    with EmbeddedStore(config.store.path, config.stable) as store:
        options = ProduceOptions(tables=2, rate=0, batch=10, count=30)
        stats = produce(store, METERS, config.stable, "ms", options, reopen=reopen, retry_delays=QUICK_RETRIES)
    assert (stats.rows_written, stats.rows_failed, stats.rows_rejected) == (0, 30, 30)
    assert (stats.batches, stats.errors, stats.reconnects, len(reopened)) == (3, 3, 0, 0)
    assert REFUSAL in stats.last_error


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_produce_reports_refused_rows_and_exits_5_with_the_stores_message(config: Config) -> None:
    refuse_every_insert(config)
    code, stdout, stderr = run_cli(config, "--json", "produce", "--count", "20", "--rate", "0", "--tables", "2")
    assert code == 5
    summary = json.loads(stdout)
    assert (summary["rows_failed"], summary["rows_rejected"], summary["reconnects"]) == (20, 20, 0)
    assert "20 refused by the store, not retried" in stderr and REFUSAL in stderr


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_embedded_store_refuses_schemaless_clearly(config: Config) -> None:
    code, _, stderr = run_cli(config, "produce", "--protocol", "line", "--count", "10")
    assert code == 1
    assert "does not take schemaless line text" in stderr and "Traceback" not in stderr


def test_line_protocol_encoding_types_every_field() -> None:
    batch = pa.table(
        {
            "tbname": ["d0"],
            "ts": [1700000000000],
            "current": pa.array([1.5], pa.float32()),
            "voltage": pa.array([220], pa.int32()),
            "phase": pa.array([0.25], pa.float32()),
            "groupid": pa.array([3], pa.int32()),
            "location": ["San Jose"],
        }
    )
    assert encode(METERS, "meters", batch, "line") == [
        "meters_line,source_table=d0,groupid=3,location=San\\ Jose current=1.5f32,voltage=220i32,phase=0.25f32 "
        "1700000000000"
    ]
    assert (
        encode(METERS, "meters", batch, "telnet")[0]
        == "meters_current 1700000000000 1.5 source_table=d0 groupid=3 location=San\\ Jose"
    )
    # every tag as text, as telnet and line protocol send them: TDengine types a tag by the first write
    assert json.loads(encode(METERS, "meters", batch, "json")[0])[1] == {
        "metric": "meters_voltage",
        "timestamp": 1700000000000,
        "value": 220,
        "tags": {"source_table": "d0", "groupid": "3", "location": "San Jose"},
    }


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
@pytest.mark.parametrize("protocol", ["line", "telnet", "json"])
def test_schemaless_rows_round_trip_on_tdengine(config: Config, protocol: str) -> None:
    code, stdout, stderr = run_cli(
        config, "--json", "produce", "--protocol", protocol, "--count", "300", "--rate", "0", "--tables", "3"
    )
    assert code == 0, stderr
    assert json.loads(stdout)["rows_written"] == 300
    with open_store(config) as store:
        table = measurement(config.stable, protocol, "current" if protocol != "line" else "")
        assert isinstance(store, TDengineStore)
        rows = store._rows(f"SELECT COUNT(*) FROM `{config.database.name}`.`{table}`")
    assert rows[0][0] == 300


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_line_telnet_and_json_share_one_database_and_every_row_reads_back(config: Config) -> None:
    tables = 12  # more subtables than meters has (groupid, location) pairs: they must not share schemaless ones
    for protocol in ("line", "telnet", "json"):
        code, stdout, stderr = run_cli(
            config, "--json", "produce", "--protocol", protocol, "--count", "300", "--rate", "0", "--tables", "12"
        )
        assert code == 0, stderr
        assert (json.loads(stdout)["rows_written"], json.loads(stdout)["rows_failed"]) == (300, 0)
    names = {f"d{i}" for i in range(tables)}
    database = config.database.name
    with open_store(config) as store:
        assert isinstance(store, TDengineStore)
        line = store._rows(
            f"SELECT `{SOURCE_TABLE_TAG}`, CAST(`_ts` AS BIGINT), `current`, `voltage`, `phase` "
            f"FROM `{database}`.`{measurement(config.stable, 'line')}`"
        )
        by_column = {
            column: store._rows(
                f"SELECT `{SOURCE_TABLE_TAG}`, CAST(`_ts` AS BIGINT), `_value` "
                f"FROM `{database}`.`{measurement(config.stable, 'telnet', column)}`"
            )
            for column in ("current", "voltage", "phase")
        }
    assert len(line) == len({(name, ts) for name, ts, *_ in line}) == 300
    assert {name for name, *_ in line} == names and all(None not in row for row in line)
    for column, rows in by_column.items():
        # telnet's 300 rows and JSON's 300 after them into the same super table, none overwritten
        assert len(rows) == len({(name, ts) for name, ts, _ in rows}) == 600, column
        assert {name for name, *_ in rows} == names and all(value is not None for *_, value in rows), column


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_a_batch_tdengine_refuses_fails_at_once_with_the_servers_message(config: Config) -> None:
    # a super table an older encoder made: JSON typed tag groupid DOUBLE, which the text tags cannot fill
    first = {
        "metric": measurement(config.stable, "json", "current"),
        "timestamp": 1_700_000_000_000,
        "value": 1.0,
        "tags": {SOURCE_TABLE_TAG: "d0", "groupid": 3, "location": "x"},
    }
    with open_store(config) as store:
        store.ensure_schema(METERS, 2)
        store.write_text(METERS, [json.dumps([first])], "json")
    code, stdout, stderr = run_cli(
        config, "--json", "produce", "--protocol", "telnet", "--count", "100", "--rate", "0", "--tables", "2"
    )
    assert code == 5
    summary = json.loads(stdout)
    assert (summary["rows_written"], summary["rows_rejected"], summary["reconnects"]) == (0, 100, 0)
    assert "[0x" in summary["last_error"] and "refused by the store, not retried" in stderr


def test_seed_style_interval_defaults_to_250_rows_a_batch() -> None:
    from taosprsp.config import ProducerSettings

    options = ProduceOptions.from_settings(ProducerSettings(interval=0.25), tables=10)
    assert (options.batch_rows, options.rate) == (250, 1000.0)
    assert ProduceOptions.from_settings(ProducerSettings(rate=5000.0), tables=10).batch_rows == 500
