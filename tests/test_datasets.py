"""One declaration per dataset drives TDengine DDL, stmt2 binds, Arrow and Perspective schemas and the generator."""

from __future__ import annotations

import numpy as np
import pytest
import taosws

from taosprsp.datasets import DATASETS, METERS, STOCKS, SUBTABLE_COLUMN
from taosprsp.generate import Clock, Generator, spread
from taosprsp.stores.base import BEFORE_ANY_ROW


def test_meters_ddl_matches_the_seeds_table() -> None:
    assert METERS.create_stable_sql("power", "meters") == (
        "CREATE STABLE IF NOT EXISTS `power`.`meters` (`ts` TIMESTAMP, `current` FLOAT, `voltage` INT, "
        "`phase` FLOAT) TAGS (`groupid` INT, `location` VARCHAR(24))"
    )


def test_stmt2_insert_binds_subtable_tags_and_columns() -> None:
    assert METERS.insert_sql("meters") == (
        "INSERT INTO ? USING `meters` (`groupid`, `location`) TAGS (?, ?) VALUES (?, ?, ?, ?)"
    )


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=lambda d: d.name)
@pytest.mark.parametrize("precision", ["ms", "us", "ns"])
def test_every_bind_helper_exists_in_taosws(dataset, precision) -> None:
    for field in dataset.columns:
        assert callable(getattr(taosws, field.stmt2_column_helper(precision)))
    for field in dataset.tags:
        assert callable(getattr(taosws, field.spec.stmt2_tag))


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=lambda d: d.name)
def test_schemas_share_the_declared_columns(dataset) -> None:
    names = [SUBTABLE_COLUMN, *(f.name for f in dataset.fields)]
    assert dataset.arrow_schema().names == names
    assert list(dataset.perspective_schema()) == names


def test_stocks_carries_the_stocks_demo_columns() -> None:
    assert {"ticker", "client", "open", "high", "low", "close", "volume", "date"} <= {f.name for f in STOCKS.fields}
    assert STOCKS.perspective_schema()["date"] == "date"


@pytest.mark.parametrize("dataset", DATASETS.values(), ids=lambda d: d.name)
def test_generator_output_has_the_arrow_schema(dataset) -> None:
    counts = spread(1000, 7)
    clock = Clock("ms", np.zeros(7, dtype=np.int64))
    batch = Generator(dataset, 7, "ms", seed=1).batch(counts, clock.live(counts))
    assert batch.schema == dataset.arrow_schema()
    assert batch.num_rows == 1000


def test_generator_is_reproducible_with_a_seed() -> None:
    counts = spread(100, 3)
    ts = np.arange(100, dtype=np.int64)
    first = Generator(METERS, 3, "ms", seed=42).batch(counts, ts)
    second = Generator(METERS, 3, "ms", seed=42).batch(counts, ts)
    assert first.equals(second)


def test_clock_stamps_strictly_increase_per_subtable_across_batches() -> None:
    clock = Clock("ms", np.zeros(3, dtype=np.int64))
    now = 1_700_000_000_000
    first = clock.live(np.array([5, 5, 5]), now=now)
    second = clock.live(np.array([5, 5, 5]), now=now)
    for subtable in range(3):
        stamps = np.concatenate([first[subtable * 5 : (subtable + 1) * 5], second[subtable * 5 : (subtable + 1) * 5]])
        assert (np.diff(stamps) > 0).all()


def test_backfill_spreads_rows_over_the_span_ending_now() -> None:
    clock = Clock("ms", np.full(2, BEFORE_ANY_ROW, dtype=np.int64))
    ts = clock.backfill(np.array([10, 10]), span_seconds=10, end=1_000_000)
    assert ts[9] == 1_000_000 and ts[0] == 1_000_000 - 9 * 1000


def test_bind_rounds_keep_each_subtable_under_tdengines_bind_limit() -> None:
    import pyarrow as pa

    from taosprsp.stores.tdengine import MAX_ROWS_PER_SUBTABLE_BIND, bind_rounds

    limit = MAX_ROWS_PER_SUBTABLE_BIND
    names = pa.array(["d0"] * (limit + 5) + ["d1"] * 3)
    assert bind_rounds(names) == [[(0, limit), (limit + 5, limit + 8)], [(limit, limit + 5)]]
