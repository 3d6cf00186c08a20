"""Your own data: datasets declared in TOML, tables discovered in a store, CSV in and out, generators for any schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TEST_DSN, drop_test_database, store_config
from helpers import wait_until
from typer.testing import CliRunner

from taosprsp.cli import app
from taosprsp.client import fetch_table
from taosprsp.config import Config, load_config
from taosprsp.csvfiles import CsvOptions, export_csv, import_csv, infer_dataset
from taosprsp.datasets import METERS, Dataset, UnsupportedType, parse_type
from taosprsp.derived import groups_table_name
from taosprsp.errors import ConfigError
from taosprsp.generate import Clock, Generator, spread
from taosprsp.produce import ProduceOptions, produce
from taosprsp.seed import seed
from taosprsp.serve import LiveServer
from taosprsp.stores import Store, Watermark, dataset_for, open_store

EVERY_TYPE = """
[dataset]
name = "alltypes"

[datasets.alltypes]
subtable_prefix = "a"
columns = [
    { name = "ts", type = "TIMESTAMP" },
    { name = "b", type = "BOOL" },
    { name = "i8", type = "TINYINT" },
    { name = "i16", type = "SMALLINT" },
    { name = "i32", type = "INT" },
    { name = "i64", type = "BIGINT" },
    { name = "i64_exact", type = "BIGINT", perspective = "string" },
    { name = "u8", type = "TINYINT UNSIGNED" },
    { name = "u16", type = "SMALLINT UNSIGNED" },
    { name = "u32", type = "INT UNSIGNED" },
    { name = "u64", type = "BIGINT UNSIGNED" },
    { name = "u64_exact", type = "BIGINT UNSIGNED", perspective = "string" },
    { name = "f32", type = "FLOAT", generator = "sine", min = -1, max = 1, period = 60, nulls = 0.1 },
    { name = "f64", type = "DOUBLE", generator = "counter", start = 5, step = 0.5 },
    { name = "v", type = "VARCHAR(16)", generator = "choice", values = ["", "x", "héllo"] },
    { name = "nc", type = "NCHAR(8)" },
    { name = "day", type = "TIMESTAMP", perspective = "date" },
]
tags = [
    { name = "site", type = "NCHAR(8)", values = ["北", "south"] },
    { name = "rack", type = "BIGINT UNSIGNED", values = [0, 18446744073709551615] },
    { name = "on", type = "BOOL" },
]
"""

I64 = (-(2**63), 2**63 - 1, 0)
U64 = (2**64 - 1, 0, 2**53 + 1)


def every_type_config(kind: str, tmp_path: Path, **sections: dict) -> Config:
    """The config declaring `alltypes`, on a store of `kind` as `store_config` makes it."""
    path = tmp_path / "alltypes.toml"
    path.write_text(EVERY_TYPE, encoding="utf-8")
    base = store_config(kind, tmp_path)
    overrides = {
        "store": {"kind": kind, "path": base.store.path},
        "tdengine": {"dsn": base.tdengine.dsn},
        "database": {"name": base.database.name},
        **sections,
    }
    return load_config(path, overrides=overrides, environ={})


@pytest.fixture
def typed(store_kind: str, tmp_path: Path) -> Iterator[Config]:
    config = every_type_config(store_kind, tmp_path, server={"port": 0, "interval": "50ms", "feed": "poll"})
    yield config
    drop_test_database(config)


def boundary_rows(dataset: Dataset) -> pa.Table:
    """Three rows of one subtable holding each type's extremes, NULLs, empty and non-ASCII strings."""
    ts = [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]
    values = {
        "tbname": ["a0"] * 3,
        "ts": ts,
        "b": [True, False, None],
        "i8": [-128, 127, None],
        "i16": [-32768, 32767, 0],
        "i32": [-(2**31), 2**31 - 1, None],
        "i64": list(I64),
        "i64_exact": list(I64),
        "u8": [0, 255, None],
        "u16": [0, 65535, 1],
        "u32": [0, 2**32 - 1, None],
        "u64": list(U64),
        "u64_exact": list(U64),
        "f32": [1.5, -2.25, None],
        "f64": [1e300, -0.0, None],
        "v": ["", "héllo wörld", None],
        "nc": ["日本語", "", None],
        "day": [1_699_920_000_000] * 3,
        "site": ["北"] * 3,
        "rack": [2**64 - 1] * 3,
        "on": [None] * 3,
    }
    schema = dataset.arrow_schema()
    return pa.table([pa.array(values[f.name], f.type) for f in schema], schema=schema)


def test_a_toml_dataset_declares_every_type(typed: Config) -> None:
    dataset = typed.declared_dataset
    sql = dataset.create_stable_sql("db", "alltypes")
    for spelled in ("BOOL", "TINYINT UNSIGNED", "BIGINT UNSIGNED", "NCHAR(8)", "VARCHAR(16)", "DOUBLE"):
        assert spelled in sql
    schema = dataset.perspective_schema()
    assert schema["i64"] == schema["u64"] == schema["u32"] == "float"  # never an int32 that wraps
    assert schema["i64_exact"] == "string" and schema["day"] == "date" and schema["i32"] == "integer"


def test_every_type_round_trips_through_the_store(typed: Config) -> None:
    dataset = typed.declared_dataset
    rows = boundary_rows(dataset)
    with open_store(typed) as store:
        store.ensure_schema(dataset, 1)
        store.write(dataset, rows)
        back = store.read_after(dataset, Watermark())
        assert back.schema == dataset.arrow_schema()
        assert back.to_pylist() == rows.to_pylist()
        assert dataset_for(store, typed) is dataset  # the declaration is recognized in the table it made


def test_every_type_reaches_a_perspective_client_intact(typed: Config) -> None:
    dataset = typed.declared_dataset
    rows = boundary_rows(dataset)
    with open_store(typed) as store:
        store.ensure_schema(dataset, 1)
        store.write(dataset, rows)
    server = LiveServer(typed).start()
    try:
        assert wait_until(lambda: server.window.size() == 3)
        seen = fetch_table(server.websocket_url, typed.perspective_table).sort_by("ts").to_pydict()
    finally:
        server.stop()
    assert seen["i64_exact"] == [str(v) for v in I64] and seen["u64_exact"] == [str(v) for v in U64]
    assert seen["i64"] == [float(v) for v in I64]  # the nearest double, not a wrapped int32
    assert seen["u64"] == [float(v) for v in U64] and seen["u32"] == [0.0, 2.0**32 - 1, None]
    assert seen["i8"] == [-128, 127, None] and seen["i32"] == [-(2**31), 2**31 - 1, None]
    assert seen["b"] == [True, False, None] and seen["on"] == [None] * 3
    assert seen["v"] == ["", "héllo wörld", None] and seen["nc"] == ["日本語", "", None]
    assert seen["f32"] == [1.5, -2.25, None] and seen["f64"] == [1e300, -0.0, None]
    assert seen["site"] == ["北"] * 3


def test_an_integer_tag_shown_as_a_string_groups_the_dashboard_with_every_digit(tmp_path: Path) -> None:
    path = tmp_path / "racks.toml"
    path.write_text(
        '[dataset]\nname = "racks"\n[datasets.racks]\ngroup_tag = "rack"\n'
        'columns = [{ name = "ts", type = "TIMESTAMP" }, { name = "v", type = "DOUBLE" }]\n'
        'tags = [{ name = "rack", type = "BIGINT", values = [9007199254740993, 2], perspective = "string" }]\n',
        encoding="utf-8",
    )
    base = store_config("embedded", tmp_path)
    config = load_config(
        path, overrides={"store": {"kind": "embedded", "path": base.store.path}, "server": {"port": 0}}
    )
    with open_store(config) as store:
        seed(store, config.declared_dataset, 2, config.database.precision, rows=20)
    live = LiveServer(config).start()
    try:
        groups = fetch_table(live.websocket_url, groups_table_name(config.perspective_table, "rack"))
    finally:
        live.stop()
    assert sorted(groups["rack"].to_pylist()) == ["2", "9007199254740993"]  # not the double 9007199254740992


def test_generators_follow_hints_for_any_schema(typed: Config) -> None:
    dataset = typed.declared_dataset
    counts = spread(3000, 3)
    batch = Generator(dataset, 3, "ms", seed=4).batch(counts, Clock("ms", np.zeros(3, np.int64)).live(counts))
    assert batch.schema == dataset.arrow_schema()
    assert 0.05 < batch["f32"].null_count / 3000 < 0.15
    assert set(batch["v"].to_pylist()) == {"", "x", "héllo"}
    assert batch.filter(pa.compute.equal(batch["tbname"], "a1"))["f64"].to_pylist()[:3] == [5.0, 5.5, 6.0]
    assert batch["rack"].to_pylist()[1000] == 2**64 - 1  # subtable a1 takes the second declared tag value


def test_meters_keeps_its_shape_as_a_declaration() -> None:
    counts = spread(20_000, 10)
    batch = Generator(METERS, 10, "ms", seed=1).batch(
        counts, Clock("ms", np.zeros(10, np.int64)).backfill(counts, 86_400)
    )
    means = batch.group_by("location").aggregate([("current", "mean"), ("voltage", "mean")])
    currents = means["current_mean"].to_numpy()
    assert currents.min() > 1 and currents.max() - currents.min() > 1  # a level per location
    assert 215 < means["voltage_mean"].to_numpy().mean() < 225


@pytest.mark.parametrize(
    ("text", "kind", "length"),
    [("VARCHAR(24)", "varchar", 24), ("binary(8)", "varchar", 8), ("int unsigned", "uint", 0), ("NCHAR", "nchar", 64)],
)
def test_tdengine_types_parse(text: str, kind: str, length: int) -> None:
    assert parse_type(text) == (kind, length)


@pytest.mark.parametrize("text", ["VARBINARY(8)", "GEOMETRY(64)", "JSON"])
def test_types_perspective_cannot_show_are_refused_by_name(text: str) -> None:
    with pytest.raises(UnsupportedType, match="not supported"):
        parse_type(text)


def test_a_declaration_with_a_bad_key_or_type_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[datasets.x]\ncolumns = [{ name = "ts", type = "TIMESTAMP", unti = "s" }]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'unit'"):
        load_config(path, environ={})
    path.write_text('[datasets.x]\ncolumns = [{ name = "ts", type = "TIMESTAMP" }, { name = "v", type = "JSON" }]\n')
    with pytest.raises(ConfigError, match="JSON is not supported"):
        load_config(path, environ={})


def test_a_table_in_the_embedded_store_is_discovered_without_a_declaration(typed: Config, tmp_path: Path) -> None:
    dataset = typed.declared_dataset
    with open_store(typed) as store:
        store.ensure_schema(dataset, 1)
        store.write(dataset, boundary_rows(dataset))
    plain = typed.replace(dataset={"name": "meters", "stable": "alltypes"})
    with open_store(plain) as store:
        found = dataset_for(store, plain)
    assert found.name == "alltypes" and found.matches(dataset, exact=True)
    assert found.group_tag == "site" and "i64" in found.headline


READINGS = """tbname,ts,temp,ok,site
s1,2024-05-01T00:00:00Z,20.5,true,north
s1,2024-05-01T00:00:01Z,abc,false,north

s2,2024-05-01T00:00:00Z,21.5,true,south
s2,2024-05-01T00:00:01Z,22.5,true
s2,2024-05-01 00:00:02,23.5,,south
s2,2024-05-01T00:00:03Z,1e400x,true,south
"""


def readings_dataset() -> Dataset:
    return load_readings_config().declared_dataset


def load_readings_config(**overrides: dict) -> Config:
    from taosprsp.datasets import declare

    declared = declare(
        "readings",
        {
            "columns": [
                {"name": "ts", "type": "TIMESTAMP"},
                {"name": "temp", "type": "DOUBLE"},
                {"name": "ok", "type": "BOOL"},
            ],
            "tags": [{"name": "site", "type": "VARCHAR(8)"}],
        },
        "the test",
    )
    return Config(datasets={"readings": declared}).replace(dataset={"name": "readings"}, **overrides)


def test_csv_import_counts_rows_and_reports_bad_ones_by_line(store: Store, config: Config, tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(READINGS, encoding="utf-8")
    dataset = readings_dataset()
    summary = import_csv(store, [path], dataset, config.database.precision)
    assert (summary.rows_read, summary.rows_written, summary.rows_bad) == (6, 3, 3)
    assert [(bad.line, bad.reason.split(":")[0]) for bad in summary.bad_rows] == [
        (3, "temp"),
        (6, "4 fields where the header has 5"),
        (8, "temp"),
    ]
    assert store.count(dataset) == 3


def test_a_quoted_value_may_hold_newlines_and_bad_rows_keep_their_lines(
    store: Store, config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text(
        'tbname,ts,temp,ok,site\ns1,2024-05-01T00:00:00Z,20.5,true,"n\ne"\n'
        "s1,2024-05-01T00:00:01Z,abc,false,north\ns1,2024-05-01T00:00:02Z,21.5,true\n",
        encoding="utf-8",
    )
    summary = import_csv(store, [path], readings_dataset(), config.database.precision)
    assert (summary.rows_written, summary.rows_bad) == (1, 2)
    assert [(bad.line, bad.reason.split(":")[0]) for bad in summary.bad_rows] == [
        (4, "temp"),
        (5, "4 fields where the header has 5"),
    ]
    assert store.read_after(readings_dataset(), Watermark())["site"].to_pylist() == ["n\ne"]


def test_a_file_reads_its_times_one_way_and_refuses_the_other_by_line(
    store: Store, config: Config, tmp_path: Path
) -> None:
    start = 1_714_521_600_000  # 2024-05-01T00:00:00Z in ms
    iso = pa.array(start + np.arange(8192) * 1000, pa.timestamp("ms", tz="UTC")).cast(pa.string()).to_pylist()
    # the second half in epoch integers: a chunk of them alone in a block of ISO times is still refused
    times = iso[:4096] + [str(start + i * 1000) for i in range(4096, 8192)]
    path = tmp_path / "mixed.csv"
    path.write_text("tbname,ts,temp\n" + "".join(f"s1,{t},1.5\n" for t in times), encoding="utf-8")
    summary = import_csv(store, [path], readings_dataset(), config.database.precision)
    assert (summary.rows_written, summary.rows_bad) == (4096, 4096)
    assert summary.bad_rows[0].line == 4096 + 2
    assert summary.bad_rows[0].reason == "ts: not an ISO 8601 time, as this file's first time is"
    epoch_first = tmp_path / "epoch.csv"
    epoch_first.write_text(f"tbname,ts,temp\ns2,{start},1.5\ns2,2024-05-01T00:00:01Z,2.5\n", encoding="utf-8")
    summary = import_csv(store, [epoch_first], readings_dataset(), config.database.precision)
    assert [(bad.line, bad.reason) for bad in summary.bad_rows] == [
        (3, "ts: not an epoch integer, as this file's first time is")
    ]


def test_an_imported_table_is_discovered_with_its_subtables_and_produced_into(tmp_path: Path, store_kind: str) -> None:
    """An import records each new subtable with the tags of its first row; producing and seeding into the
    discovered table then continue those subtables (more are numbered on, taking their tags in turn)."""
    config = store_config(store_kind, tmp_path, dataset={"stable": "readings"})
    path = tmp_path / "readings.csv"
    path.write_text(READINGS, encoding="utf-8")
    try:
        with open_store(config) as store:
            import_csv(store, [path], readings_dataset(), config.database.precision)
            dataset = dataset_for(store, config)  # no declaration names it: discovered
            assert dataset.existing == ("s1", "s2") and dataset.field("site").pool == ("north", "south")
            assert store.status(dataset).subtables == 2
            produce(store, dataset, "readings", config.database.precision, ProduceOptions(tables=3, rate=0, count=30))
            seed(store, dataset, 2, config.database.precision, rows=10, span_seconds=3600)
            latest = store.read_latest_per_subtable(dataset).sort_by("tbname").select(["tbname", "site"])
            assert latest.to_pylist() == [
                {"tbname": "readings_2", "site": "north"},
                {"tbname": "s1", "site": "north"},
                {"tbname": "s2", "site": "south"},
            ]
            assert store.count(dataset) == 3 + 30 + 10 and store.status(dataset).subtables == 3
            assert dataset_for(store, config).existing == ("s1", "s2", "readings_2")
    finally:
        drop_test_database(config)


def test_an_imported_table_is_served_with_the_latest_row_and_tags_of_each_subtable(
    tmp_path: Path, store_kind: str
) -> None:
    config = store_config(store_kind, tmp_path, dataset={"stable": "readings"}, server={"port": 0})
    path = tmp_path / "readings.csv"
    path.write_text(READINGS, encoding="utf-8")
    try:
        with open_store(config) as store:
            import_csv(store, [path], readings_dataset(), config.database.precision)
        live = LiveServer(config).start()
        try:
            latest = fetch_table(live.websocket_url, config.latest_table).select(["tbname", "temp", "site"])
        finally:
            live.stop()
        assert sorted(latest.to_pylist(), key=lambda row: row["tbname"]) == [
            {"tbname": "s1", "temp": 20.5, "site": "north"},
            {"tbname": "s2", "temp": 23.5, "site": "south"},
        ]
        with open_store(config) as store:
            # serve added no subtable of its own
            assert store.existing_subtables(readings_dataset())["tbname"].to_pylist() == ["s1", "s2"]
    finally:
        drop_test_database(config)


def test_a_second_import_of_the_same_file_writes_no_row_twice(store: Store, config: Config, tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(READINGS, encoding="utf-8")
    dataset = readings_dataset()
    import_csv(store, [path], dataset, config.database.precision)
    again = import_csv(store, [path], dataset, config.database.precision)
    assert again.rows_written == 3 and store.count(dataset) == 3
    keys = store.read_after(dataset, Watermark()).select(["tbname", "ts"]).to_pylist()
    assert len(keys) == len({(k["tbname"], k["ts"]) for k in keys}) == 3


def test_export_then_import_gives_the_same_rows(typed: Config, tmp_path: Path) -> None:
    dataset = typed.declared_dataset
    rows = boundary_rows(dataset)
    with open_store(typed) as store:
        store.ensure_schema(dataset, 1)
        store.write(dataset, rows)
        exported = export_csv(store, dataset, tmp_path / "out.csv", typed.database.precision)
    assert exported.rows == 3
    copy = typed.replace(dataset={"stable": "alltypes_copy"})
    with open_store(copy) as store:
        summary = import_csv(store, [tmp_path / "out.csv"], dataset, copy.database.precision)
        assert (summary.rows_written, summary.rows_bad) == (3, 0)
        assert store.read_after(dataset, Watermark()).to_pylist() == rows.to_pylist()


def test_an_undeclared_csv_gets_an_inferred_schema(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    path.write_text("time,line,speed,count,note\n2024-05-01T00:00:00Z,A,1.5,3,ok\n", encoding="utf-8")
    dataset = infer_dataset(path, "plant", CsvOptions(subtable="line", time="time", tags=("note",)))
    assert [(f.name, f.tdengine_type()) for f in dataset.columns] == [
        ("time", "TIMESTAMP"),
        ("speed", "DOUBLE"),
        ("count", "BIGINT"),
    ]
    assert [f.name for f in dataset.tags] == ["note"]


def test_a_csv_without_tags_imports_into_the_embedded_store_and_is_refused_by_name_for_tdengine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("tbname,ts,temp\ns1,2024-05-01T00:00:00Z,1.5\ns2,2024-05-01T00:00:01Z,2.5\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--store", "embedded", "--json", "import", "csv", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_written"] == 2
    dataset = infer_dataset(path, "plain", CsvOptions())
    assert dataset.tags == ()
    with pytest.raises(ConfigError, match="needs at least one tag.*--tag COLUMN"):
        dataset.create_stable_sql("db", "plain")


def test_import_and_export_commands(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(READINGS, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["--store", "embedded", "--json", "import", "csv", str(path), "--tag", "site"])
    assert result.exit_code == 5, result.output  # bad rows were not imported: the summary says which
    assert '"rows_bad": 1' in result.stdout and '"line": 6' in result.stdout  # inferred: temp is text
    status = runner.invoke(app, ["--store", "embedded", "--json", "db", "status", "--stable", "readings"])
    assert status.exit_code == 0 and "site VARCHAR(256) TAG" in json.loads(status.stdout)["fields"]
    assert json.loads(status.stdout)["subtables"] == 2  # s1 and s2, recorded by the import
    out = tmp_path / "back.csv"
    result = runner.invoke(
        app, ["--store", "embedded", "export", "csv", str(out), "--stable", "readings", "--subtable", "s2"]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().count("\n") == 1 + 3


@pytest.mark.tdengine
def test_a_tdengine_super_table_with_unusual_names_is_discovered_and_served(tmp_path: Path) -> None:
    import taosws

    database = f"taosprsp_test_{uuid.uuid4().hex[:10]}"
    config = store_config(
        "tdengine",
        tmp_path,
        database={"name": database},
        dataset={"stable": "Select"},
        server={"port": 0, "interval": "50ms", "feed": "poll"},
    )
    conn = taosws.connect(TEST_DSN)
    try:
        conn.execute(f"CREATE DATABASE `{database}` VGROUPS 1")
        conn.execute(
            f"CREATE STABLE `{database}`.`Select` (`Time` TIMESTAMP, `value` DOUBLE, `Order` INT, "
            "`desc` NCHAR(8), `raw` VARBINARY(8)) TAGS (`Group` VARCHAR(16))"
        )
        conn.execute(
            f"INSERT INTO `{database}`.`Dev-1` USING `{database}`.`Select` TAGS ('North') "
            "VALUES (1700000000000, 1.5, 7, 'été', NULL) (1700000000001, -2.5, NULL, '', NULL)"
        )
        with open_store(config) as store:
            dataset = dataset_for(store, config)
            assert [f.name for f in dataset.columns] == ["Time", "value", "Order", "desc"]
            assert dataset.left_out == ("raw VARBINARY",) and dataset.group_tag == "Group"
            assert dataset.existing == ("Dev-1",) and dataset.field("Group").pool == ("North",)
            rows = store.read_after(dataset, Watermark())
        assert rows.to_pydict()["desc"] == ["été", ""] and rows.to_pydict()["tbname"] == ["Dev-1", "Dev-1"]
        server = LiveServer(config).start()
        try:
            assert wait_until(lambda: server.window.size() == 2)
            seen = fetch_table(server.websocket_url, config.perspective_table).sort_by("Time").to_pydict()
        finally:
            server.stop()
        assert seen["value"] == [1.5, -2.5] and seen["Order"] == [7, None] and seen["Group"] == ["North", "North"]
        with open_store(config) as store:  # the producer continues Dev-1, then one more; the left-out column NULL
            store.write(dataset, Generator(dataset, 2, "ms", seed=1).batch(spread(20, 2), np.arange(20) + 1))
            assert store.count(dataset) == 22
            assert store.existing_subtables(dataset).to_pylist() == [
                {"tbname": "Dev-1", "Group": "North"},
                {"tbname": "Select_1", "Group": "North"},
            ]
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def test_the_example_declaration_loads_and_config_show_writes_it_back(tmp_path: Path) -> None:
    from taosprsp.config import as_dict, to_toml

    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "sensors.toml", environ={})
    dataset = config.declared_dataset
    assert dataset.name == "sensors" and dataset.field("serial").perspective == "string"
    shown = tmp_path / "shown.toml"
    shown.write_text(to_toml(as_dict(config, masked=False)), encoding="utf-8")
    assert load_config(shown, environ={}).declared_dataset == dataset
