"""Derived tables equal the same aggregates computed from all the raw rows at once.

Random batches (late rows, rows past the horizon, nulls) go through `DerivedTables` into real Perspective
tables; the tables' contents are compared with pyarrow's group-by over every raw row so far.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import perspective
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from taosprsp.config import load_config
from taosprsp.datasets import METERS, STOCKS, SUBTABLE_COLUMN, TICKS_PER_SECOND
from taosprsp.derived import (
    AGGREGATES,
    SLOT_COLUMN,
    DerivedSpec,
    DerivedTables,
    default_specs,
    derived_specs,
)
from taosprsp.errors import ConfigError

LOCATIONS = ("SanFrancisco", "LosAngeles", "SanDiego", "SanJose", "PaloAlto", "Campbell")
START_MS = 1_700_000_000_000
VALUES = ("current", "voltage", "phase")


def meters_batch(ts: np.ndarray, subtable: np.ndarray, rng: np.random.Generator, null_share: float = 0.05) -> pa.Table:
    """Raw rows in the store layout for the given timestamps and subtables; `current` has some nulls."""
    n = len(ts)
    current = rng.normal(10.0, 3.0, n).astype(np.float32)
    columns = {
        SUBTABLE_COLUMN: pa.array([f"d{i}" for i in subtable], pa.string()),
        "ts": pa.array(ts, pa.int64()),
        "current": pa.array(current, pa.float32(), mask=rng.random(n) < null_share),
        "voltage": pa.array(rng.integers(200, 240, n), pa.int32()),
        "phase": pa.array(rng.normal(0.3, 0.02, n).astype(np.float32), pa.float32()),
        "groupid": pa.array(subtable % 4, pa.int32()),
        "location": pa.array([LOCATIONS[i % len(LOCATIONS)] for i in subtable], pa.string()),
    }
    return pa.table(columns, schema=METERS.arrow_schema())


def random_batches(seed: int, count: int, ticks_per_ms: int = 1) -> list[pa.Table]:
    """Batches whose clock advances ~0.75 s each, with jitter, 10% late rows (up to 30 s) and empty batches."""
    rng = np.random.default_rng(seed)
    now = START_MS
    batches = []
    for _ in range(count):
        now += int(rng.integers(0, 1500))
        n = int(rng.integers(0, 300))
        ts = now - rng.integers(0, 800, n)
        late = rng.random(n) < 0.1
        ts[late] -= rng.integers(1_000, 30_000, int(late.sum()))
        batches.append(meters_batch(ts * ticks_per_ms, rng.integers(0, 12, n), rng))
    return batches


def perspective_table(client: Any, spec: DerivedSpec) -> Any:
    return client.table(spec.perspective_schema(METERS), index=spec.index, name=spec.name)


def contents(table: Any, index: str) -> dict[Any, dict[str, Any]]:
    columns = table.view().to_columns()
    return {key: {name: values[i] for name, values in columns.items()} for i, key in enumerate(columns[index])}


def expected(rows: pa.Table, spec: DerivedSpec, ticks_per_second: int) -> dict[Any, dict[str, Any]]:
    """The spec's aggregates from all raw rows at once: pyarrow's group-by over the buckets still held."""
    bucket_ticks = round(spec.bucket_seconds * ticks_per_second)
    buckets = rows["ts"].to_numpy() // bucket_ticks
    table = pa.table(
        {
            spec.group_by: rows[spec.group_by],
            "bucket": buckets,
            **{name: rows[name].cast(pa.float64()) for name in spec.columns},
        }
    )
    if spec.held_buckets is not None and table.num_rows:
        table = table.filter(pc.greater_equal(table["bucket"], int(buckets.max()) - spec.held_buckets + 1))
    if spec.kind == "pivot":
        return expected_pivot(table, spec, bucket_ticks * 1000 // ticks_per_second)
    grouped = table.group_by(spec.group_by).aggregate([(name, a) for name in spec.columns for a in spec.aggregates])
    result = {}
    for row in grouped.to_pylist():
        values = {f"{name}_{a}": row[f"{name}_{a}"] for name in spec.columns for a in spec.aggregates}
        result[row[spec.group_by]] = {spec.group_by: row[spec.group_by], **values}
    return result


def expected_pivot(table: pa.Table, spec: DerivedSpec, bucket_ms: int) -> dict[Any, dict[str, Any]]:
    """A row per held bucket, by its ring slot: the bucket's start and the mean of the column per charted group
    (None for a group without a value in it)."""
    (column,) = spec.columns
    means = table.group_by(["bucket", spec.group_by]).aggregate([(column, "mean")])
    result: dict[Any, dict[str, Any]] = {}
    for row in means.to_pylist():
        slot = row["bucket"] % spec.held_buckets
        result.setdefault(slot, {SLOT_COLUMN: slot, "ts": row["bucket"] * bucket_ms, **dict.fromkeys(spec.groups)})
        if row[spec.group_by] in spec.groups:
            result[slot][row[spec.group_by]] = row[f"{column}_mean"]
    return result


def ignored_rows(batches: list[pa.Table], spec: DerivedSpec, ticks_per_second: int) -> int:
    """Rows older than the oldest bucket held when they came: behind the newest bucket seen so far by the horizon."""
    if spec.held_buckets is None:
        return 0
    bucket_ticks = round(spec.bucket_seconds * ticks_per_second)
    newest, ignored = None, 0
    for batch in batches:
        if batch.num_rows:
            buckets = batch["ts"].to_numpy() // bucket_ticks
            newest = max(int(buckets.max()), newest if newest is not None else int(buckets.max()))
            ignored += int((buckets < newest - spec.held_buckets + 1).sum())
    return ignored


def assert_same(actual: dict[Any, dict[str, Any]], wanted: dict[Any, dict[str, Any]]) -> None:
    assert set(actual) == set(wanted)
    for key, row in wanted.items():
        for name, value in row.items():
            got = actual[key][name]
            if value is None or isinstance(value, str):
                assert got == value, (key, name)
            else:
                assert got is not None and math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9), (key, name, got, value)


SPECS = [
    pytest.param(DerivedSpec("by_location", "groups", "location", VALUES, horizon_seconds=10.0), id="groups-horizon"),
    # a location never seen gets an empty series; Campbell, not among the groups, is left out
    pytest.param(
        DerivedSpec(
            "location_1s",
            "pivot",
            "location",
            ("current",),
            bucket_seconds=1.0,
            horizon_seconds=10.0,
            groups=(*LOCATIONS[:5], "Nowhere"),
        ),
        id="pivot-1s",
    ),
    pytest.param(
        DerivedSpec(
            "by_groupid", "groups", "groupid", ("current",), aggregates=("mean", "count"), horizon_seconds=None
        ),
        id="groups-since-start",
    ),
    pytest.param(
        DerivedSpec(
            "tbname_500ms",
            "pivot",
            SUBTABLE_COLUMN,
            ("voltage",),
            bucket_seconds=0.5,
            horizon_seconds=4.0,
            groups=tuple(f"d{i}" for i in range(12)),
        ),
        id="pivot-500ms-by-subtable",
    ),
    # many buckets and few rows per batch: the sparse way of compacting (group, bucket) keys
    pytest.param(
        DerivedSpec(
            "location_10ms",
            "pivot",
            "location",
            ("phase",),
            bucket_seconds=0.01,
            horizon_seconds=3600.0,
            groups=LOCATIONS,
        ),
        id="pivot-10ms-sparse",
    ),
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("precision", ["ms", "us"])
def test_derived_table_equals_aggregates_of_all_raw_rows(spec: DerivedSpec, precision: str) -> None:
    ticks_per_ms = TICKS_PER_SECOND[precision] // 1000
    batches = random_batches(seed=11, count=60, ticks_per_ms=ticks_per_ms)
    derived = DerivedTables(METERS, precision, (spec,))
    table = perspective_table(perspective.Server().new_local_client(), spec)
    seen: list[pa.Table] = []
    sizes = []
    for number, batch in enumerate(batches, start=1):
        for update in derived.apply(batch):
            update.push(table)
        seen.append(batch)
        sizes.append(table.size())
        if number % 15 == 0:
            assert_same(
                contents(table, spec.index), expected(pa.concat_tables(seen), spec, TICKS_PER_SECOND[precision])
            )
    assert derived.rows_ignored[spec.name] == ignored_rows(batches, spec, TICKS_PER_SECOND[precision])
    if spec.kind == "pivot":
        assert spec.held_buckets is not None and max(sizes) <= spec.held_buckets  # retired buckets left the table
        left_out = sorted(set(pa.concat_tables(seen)[spec.group_by].to_pylist()) - set(spec.groups))
        assert sorted(derived.groups_not_charted.get(spec.name, [])) == left_out


def test_rows_older_than_the_held_buckets_are_ignored_and_counted() -> None:
    spec = DerivedSpec("location_1s", "pivot", "location", ("voltage",), horizon_seconds=3.0, groups=LOCATIONS)
    derived = DerivedTables(METERS, "ms", (spec,))
    rng = np.random.default_rng(1)
    derived.apply(meters_batch(np.array([START_MS + 10_000]), np.array([0]), rng))
    (update,) = derived.apply(meters_batch(np.array([START_MS + 7_999, START_MS + 8_000]), np.array([0, 0]), rng))
    assert derived.rows_ignored == {"location_1s": 1}
    assert update.rows[SLOT_COLUMN].to_pylist() == [(START_MS + 8_000) // 1000 % 3]


def test_a_late_row_updates_its_bucket_while_it_is_held() -> None:
    spec = DerivedSpec("location_1s", "pivot", "location", ("voltage",), horizon_seconds=5.0, groups=LOCATIONS)
    derived = DerivedTables(METERS, "ms", (spec,))
    rng = np.random.default_rng(2)
    (first,) = derived.apply(meters_batch(np.array([START_MS, START_MS + 4_000]), np.array([0, 0]), rng))
    (late,) = derived.apply(meters_batch(np.array([START_MS + 500]), np.array([0]), rng))
    assert late.rows[SLOT_COLUMN].to_pylist() == [first.rows[SLOT_COLUMN][0].as_py()]
    assert late.rows["SanFrancisco"][0].as_py() != first.rows["SanFrancisco"][0].as_py()  # the mean of both rows
    assert late.removed == []


def test_retiring_a_bucket_removes_its_row_and_the_group_totals_drop_it() -> None:
    specs = (
        DerivedSpec("location_1s", "pivot", "location", ("voltage",), horizon_seconds=2.0, groups=LOCATIONS),
        DerivedSpec("by_location", "groups", "location", ("voltage",), aggregates=("count",), horizon_seconds=2.0),
    )
    derived = DerivedTables(METERS, "ms", specs)
    rng = np.random.default_rng(3)
    derived.apply(meters_batch(np.array([START_MS, START_MS + 1_000]), np.array([0, 1]), rng))
    buckets, groups = derived.apply(meters_batch(np.array([START_MS + 2_000]), np.array([0]), rng))
    # the new bucket takes the retired one's slot in the ring of two: overwritten, not removed
    assert buckets.removed == [] and buckets.rows[SLOT_COLUMN].to_pylist() == [START_MS // 1000 % 2]
    assert buckets.rows["LosAngeles"].to_pylist() == [None]  # the bucket's row is whole: no value of the old one
    assert groups.rows.to_pylist() == [{"location": "SanFrancisco", "voltage_count": 1}]
    assert groups.removed == []
    buckets, groups = derived.apply(meters_batch(np.array([START_MS + 4_500]), np.array([0]), rng))
    # both held buckets retire; the new one takes the slot of one of them, the other's row goes
    assert buckets.removed == [(START_MS // 1000 + 1) % 2]
    assert groups.removed == ["LosAngeles"]  # its only bucket retired: the group leaves the table


def test_group_mean_weights_every_row_not_every_batch() -> None:
    spec = DerivedSpec("by_location", "groups", "location", ("current",), horizon_seconds=None)
    derived = DerivedTables(METERS, "ms", (spec,))
    table = perspective_table(perspective.Server().new_local_client(), spec)
    one = meters_batch(np.array([START_MS]), np.array([0]), np.random.default_rng(4), null_share=0.0)
    three = meters_batch(
        np.array([START_MS + 1, START_MS + 2, START_MS + 3]),
        np.array([0, 0, 0]),
        np.random.default_rng(5),
        null_share=0.0,
    )
    one = one.set_column(2, "current", pa.array([10.0], pa.float32()))
    three = three.set_column(2, "current", pa.array([2.0, 2.0, 2.0], pa.float32()))
    for batch in (one, three):
        for update in derived.apply(batch):
            update.push(table)
    row = contents(table, "location")["SanFrancisco"]
    assert row["current_mean"] == 4.0  # (10 + 3 * 2) / 4, where the mean of the batch means is 6
    assert row["current_mean"] == row["current_sum"] / row["current_count"]


def test_a_column_with_only_nulls_in_a_group_has_null_aggregates_and_zero_count() -> None:
    spec = DerivedSpec("by_location", "groups", "location", ("current",), horizon_seconds=None)
    (update,) = DerivedTables(METERS, "ms", (spec,)).apply(
        meters_batch(np.array([START_MS]), np.array([0]), np.random.default_rng(6), null_share=1.0)
    )
    row = update.rows.to_pylist()[0]
    assert row["current_count"] == 0
    assert row["current_sum"] is row["current_mean"] is row["current_min"] is row["current_max"] is None


def test_default_specs_follow_the_dataset() -> None:
    groups, chart = default_specs(METERS, "meters", LOCATIONS, bucket_seconds=1.0, horizon_seconds=300.0)
    assert (groups.name, groups.kind, groups.group_by, groups.columns) == (
        "meters_by_location",
        "groups",
        "location",
        VALUES,
    )
    assert (chart.name, chart.kind, chart.held_buckets, chart.columns) == (
        "meters_location_1s",
        "pivot",
        300,
        ("current",),
    )
    assert chart.perspective_schema(METERS) == {
        "slot": "integer",
        "ts": "datetime",
        **dict.fromkeys(LOCATIONS, "float"),
    }
    assert set(groups.perspective_schema(METERS)) == {"location", *(f"{c}_{a}" for c in VALUES for a in AGGREGATES)}
    stock_groups, stock_chart = default_specs(STOCKS, "stocks", ["ACME"], bucket_seconds=0.5)
    assert "date" not in stock_groups.columns and "volume" in stock_groups.columns
    assert stock_chart.name == "stocks_ticker_500ms" and stock_chart.columns == (STOCKS.headline[0],)


def test_a_group_value_named_like_the_time_or_slot_column_gets_the_tag_added() -> None:
    spec = DerivedSpec("t", "pivot", "location", ("current",), groups=("ts", "slot", None, "x"))
    assert spec.series_columns("ts") == ["ts (location)", "slot (location)", "(null)", "x"]


def test_emitted_rows_have_exactly_the_declared_schema() -> None:
    for spec in default_specs(METERS, "meters", LOCATIONS):
        (update,) = DerivedTables(METERS, "ms", (spec,)).apply(random_batches(seed=7, count=1)[0])
        assert update.rows.column_names == list(spec.perspective_schema(METERS))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "spectra"}, "kind must be"),
        ({"aggregates": ("median",)}, "aggregates must be among"),
        ({"kind": "pivot", "horizon_seconds": None}, "needs horizon_seconds"),
        ({"kind": "pivot", "columns": ("current", "voltage")}, "charts one value column"),
        ({"bucket_seconds": 0.0}, "bucket_seconds must be positive"),
        ({"horizon_seconds": 0.5}, "at least one bucket"),
    ],
)
def test_a_bad_spec_is_a_config_error(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DerivedSpec(**{"name": "t", "kind": "groups", "group_by": "location", "columns": ("current",), **arguments})


def test_a_spec_naming_what_the_dataset_lacks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no column or tag 'city'"):
        DerivedTables(METERS, "ms", (DerivedSpec("t", "groups", "city", ("current",)),))
    with pytest.raises(ConfigError, match="'location' is not a numeric value column"):
        DerivedTables(METERS, "ms", (DerivedSpec("t", "groups", "groupid", ("location",)),))


def test_a_configured_horizon_beyond_the_charts_points_is_refused() -> None:
    config = load_config(overrides={"server": {"horizon": "10m"}}, environ={})  # 600 buckets x 10 locations
    with pytest.raises(ConfigError, match=r"server.horizon in the command line: .* 6,000 points, .* at most 400s"):
        derived_specs(config, METERS)


def test_the_default_horizon_is_shortened_to_what_the_chart_draws() -> None:
    by_subtable = dataclasses.replace(METERS, group_tag=SUBTABLE_COLUMN)
    config = load_config(overrides={"dataset": {"tables": 100}}, environ={})
    specs = derived_specs(config, by_subtable)
    assert [spec.horizon_seconds for spec in specs] == [40.0, 40.0]  # 40 buckets x 100 subtables = 4,000 points
    assert derived_specs(load_config(environ={}), METERS)[1].held_buckets == 300
