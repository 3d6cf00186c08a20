"""One declaration per dataset drives TDengine DDL, stmt2 binds, Arrow and Perspective schemas and the generator."""

from __future__ import annotations

import numpy as np
import pytest
import taosws

from taosprsp.datasets import DATASETS, KINDS, METERS, STOCKS, SUBTABLE_COLUMN
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
    assert bind_rounds(names) == [[("d0", 0, limit), ("d1", limit + 5, limit + 8)], [("d0", limit, limit + 5)]]


def test_bind_lists_share_equal_timestamp_runs_and_keep_nulls() -> None:
    import pyarrow as pa

    from taosprsp.stores.tdengine import _run_lists

    stamps = pa.chunked_array([pa.array([5, 6, 5, 6, 7, 8], pa.int64())])
    lists = _run_lists(stamps, [(0, 2), (2, 4), (4, 6)], shared=True)
    assert lists == [[5, 6], [5, 6], [7, 8]] and lists[1] is lists[0]
    assert _run_lists(stamps, [(0, 2), (2, 4)], shared=False)[1] is not lists[0]
    values = pa.chunked_array([pa.array([1.5, None, 2.0], pa.float32())])
    assert _run_lists(values, [(0, 1), (1, 3)], shared=False) == [[1.5], [None, 2.0]]


def test_generated_noise_and_spikes_keep_their_declared_size_batch_after_batch() -> None:
    """Noise comes from a pool of normals and spikes are drawn by count (both for speed): over many batches,
    well after the pool is in use, their sizes and independence are as declared."""
    from taosprsp.datasets import declare

    level = {"generator": "walk", "min": 50.0, "max": 50.0, "step": 0.0}
    dataset = declare(
        "probe",
        {
            "columns": [
                {"name": "ts", "type": "TIMESTAMP"},
                {"name": "noisy", "type": "DOUBLE", **level, "noise": 2.0},
                {"name": "spiky", "type": "DOUBLE", **level, "spikes": 0.01},
            ],
            "tags": [{"name": "site", "type": "VARCHAR(8)"}],
        },
        "the test",
    )
    generator = Generator(dataset, 4, "ms", seed=7)
    clock = Clock("ms", np.zeros(4, dtype=np.int64))
    counts = spread(2000, 4)
    batches = [generator.batch(counts, clock.live(counts)) for _ in range(60)]
    noise = np.concatenate([b["noisy"].to_numpy() for b in batches]) - 50.0
    assert abs(noise.mean()) < 0.05 and 1.94 < noise.std() < 2.06
    assert abs(np.corrcoef(noise[1:], noise[:-1])[0, 1]) < 0.02
    spiky = np.concatenate([b["spiky"].to_numpy() for b in batches])
    spikes = spiky[spiky != 50.0]
    assert 0.0085 < len(spikes) / len(spiky) < 0.0115
    assert spikes.min() >= 75.0 and spikes.max() <= 150.0


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_type_has_its_taosws_helpers(kind) -> None:
    spec = KINDS[kind]
    assert callable(getattr(taosws, spec.stmt2_column.format(p="millis")))
    assert callable(getattr(taosws, spec.stmt2_tag))
