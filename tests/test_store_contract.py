"""The store contract: the same behaviour asserted on every store (embedded always, TDengine when configured)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from taosprsp.config import Config
from taosprsp.datasets import METERS, STOCKS
from taosprsp.errors import ConfigError
from taosprsp.generate import Clock, Generator, spread
from taosprsp.seed import seed
from taosprsp.stores import EmbeddedStore, Store, Watermark


def make_batch(dataset, tables: int, rows: int, start: int = 1_700_000_000_000, seed_value: int = 7) -> pa.Table:
    clock = Clock("ms", np.full(tables, start, dtype=np.int64))
    counts = spread(rows, tables)
    return Generator(dataset, tables, "ms", seed_value).batch(counts, clock.live(counts, now=start + 10_000))


def sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: (row["tbname"], row["ts"]))


def test_seed_is_idempotent(store: Store, config: Config) -> None:
    seed(store, METERS, 5, config.database.precision)
    seed(store, METERS, 5, config.database.precision)
    assert store.count(METERS) == 0
    seed(store, METERS, 5, config.database.precision, rows=500)
    assert store.count(METERS) == 500
    seed(store, METERS, 5, config.database.precision)
    assert store.count(METERS) == 500


def test_second_backfill_continues_after_the_first(store: Store, config: Config) -> None:
    seed(store, METERS, 4, config.database.precision, rows=400, span_seconds=3600)
    first = store.last_timestamps(METERS)
    seed(store, METERS, 4, config.database.precision, rows=400, span_seconds=3600)
    assert store.count(METERS) == 800
    rows = store.read_after(METERS, Watermark())
    pairs = list(zip(rows["tbname"].to_pylist(), rows["ts"].to_pylist(), strict=True))
    assert len(set(pairs)) == 800
    assert all(store.last_timestamps(METERS)[name] > ts for name, ts in first.items())


def test_drop_starts_over(store: Store, config: Config) -> None:
    seed(store, METERS, 3, config.database.precision, rows=300)
    seed(store, METERS, 3, config.database.precision, drop=True)
    assert store.count(METERS) == 0


@pytest.mark.parametrize("dataset", [METERS, STOCKS], ids=lambda d: d.name)
def test_inserted_batch_reads_back_exactly_types_included(store: Store, dataset) -> None:
    store.ensure_schema(dataset, 6)
    batch = make_batch(dataset, 6, 600)
    assert store.write(dataset, batch) == 600
    back = store.read_after(dataset, Watermark())
    assert back.schema == dataset.arrow_schema()
    assert sorted_rows(back) == sorted_rows(batch)


def test_read_after_watermark_returns_exactly_the_newer_rows(store: Store) -> None:
    store.ensure_schema(METERS, 4)
    first = make_batch(METERS, 4, 400, start=1_700_000_000_000)
    store.write(METERS, first)
    watermark = Watermark()
    seen = store.read_after(METERS, watermark)
    watermark.advance(seen)
    assert store.read_after(METERS, watermark).num_rows == 0
    second = make_batch(METERS, 4, 200, start=1_700_000_100_000, seed_value=8)
    store.write(METERS, second)
    newer = store.read_after(METERS, watermark)
    assert sorted_rows(newer) == sorted_rows(second)
    watermark.advance(newer)
    assert store.read_after(METERS, watermark).num_rows == 0


def test_watermark_is_per_subtable(store: Store) -> None:
    """A subtable whose clock lags the others still has its new rows read."""
    store.ensure_schema(METERS, 2)
    ahead = make_batch(METERS, 2, 20, start=1_700_000_500_000).filter(
        pa.compute.equal(pa.compute.field("tbname"), "d0")
    )
    behind = make_batch(METERS, 2, 20, start=1_700_000_000_000).filter(
        pa.compute.equal(pa.compute.field("tbname"), "d1")
    )
    store.write(METERS, ahead)
    store.write(METERS, behind)
    watermark = Watermark()
    watermark.advance(store.read_after(METERS, watermark))
    late = make_batch(METERS, 2, 20, start=1_700_000_100_000, seed_value=3).filter(
        pa.compute.equal(pa.compute.field("tbname"), "d1")
    )
    store.write(METERS, late)
    assert sorted_rows(store.read_after(METERS, watermark)) == sorted_rows(late)


def test_read_latest_returns_the_newest_rows_oldest_first(store: Store) -> None:
    store.ensure_schema(METERS, 3)
    batch = make_batch(METERS, 3, 300)
    store.write(METERS, batch)
    latest = store.read_latest(METERS, 30)
    ts = latest["ts"].to_pylist()
    assert len(ts) == 30 and ts == sorted(ts)
    assert min(ts) >= sorted(batch["ts"].to_pylist())[-30]


def test_last_timestamps_names_every_subtable_with_rows(store: Store) -> None:
    store.ensure_schema(METERS, 3)
    batch = make_batch(METERS, 3, 30)
    store.write(METERS, batch)
    newest = store.last_timestamps(METERS)
    expected = batch.group_by("tbname").aggregate([("ts", "max")])
    assert newest == dict(zip(expected["tbname"].to_pylist(), expected["ts_max"].to_pylist(), strict=True))


@pytest.mark.parametrize("bad", ["1meters", "meters; DROP DATABASE power", "me ters", "m`x", "x" * 193])
def test_bad_identifiers_are_refused_before_any_sql(config: Config, bad: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match="not a valid TDengine identifier"):
        config.replace(dataset={"stable": bad})
    with pytest.raises(ConfigError, match="not a valid TDengine identifier"):
        config.replace(database={"name": bad})
    with pytest.raises(ConfigError):
        EmbeddedStore(tmp_path / "x.sqlite", bad)
    assert not (tmp_path / "x.sqlite").exists()


def test_a_quiet_subtable_does_not_hold_back_the_read_bound() -> None:
    """Reads start at the oldest mark of subtables still moving, not at a mark left behind long ago."""
    watermark = Watermark()
    watermark.advance(pa.table({"tbname": ["d0", "d1"], "ts": [100, 5_000]}))
    assert watermark.low == 100
    watermark.advanced_at["d0"] -= watermark.active_seconds + 1
    assert watermark.low == 5_000
    watermark.advanced_at["d1"] -= watermark.active_seconds + 1
    assert watermark.low == 5_000
    rows = pa.table({"tbname": ["d0", "d1", "d2"], "ts": [101, 5_000, 6_000]})
    assert watermark.select_newer(rows).to_pydict() == {"tbname": ["d0", "d2"], "ts": [101, 6_000]}
