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
from taosprsp.stores.base import SubtablesClaimed


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


def only(table: pa.Table, *names: str) -> pa.Table:
    return table.filter(pa.compute.is_in(table["tbname"], pa.array(names)))


def test_writing_the_same_subtable_and_timestamp_twice_keeps_one_row_the_last(store: Store) -> None:
    """TDengine keeps one row per (subtable, ts) and a second write replaces the first: both stores do."""
    store.ensure_schema(METERS, 3)
    first = make_batch(METERS, 3, 30, seed_value=1)
    second = make_batch(METERS, 3, 30, seed_value=2)
    assert first["ts"].to_pylist() == second["ts"].to_pylist()
    assert first["current"].to_pylist() != second["current"].to_pylist()
    store.write(METERS, first)
    store.write(METERS, second)
    assert store.count(METERS) == 30
    assert sorted_rows(store.read_after(METERS, Watermark())) == sorted_rows(second)


def test_latest_per_subtable_includes_subtables_gone_quiet(store: Store) -> None:
    store.ensure_schema(METERS, 4)
    quiet = only(make_batch(METERS, 4, 40, start=1_700_000_000_000), "d2", "d3")
    busy = only(make_batch(METERS, 4, 400, start=1_700_000_100_000, seed_value=3), "d0", "d1")
    store.write(METERS, quiet)
    store.write(METERS, busy)
    latest = store.read_latest_per_subtable(METERS)
    newest = pa.concat_tables([quiet, busy]).group_by("tbname").aggregate([("ts", "max")])
    assert dict(zip(latest["tbname"].to_pylist(), latest["ts"].to_pylist(), strict=True)) == dict(
        zip(newest["tbname"].to_pylist(), newest["ts_max"].to_pylist(), strict=True)
    )
    assert latest.schema == METERS.arrow_schema()
    expected = pa.concat_tables([quiet, busy]).join(
        latest.select(["tbname", "ts"]), ["tbname", "ts"], join_type="inner"
    )
    assert sorted_rows(latest) == sorted_rows(expected)


def test_read_new_delivers_new_subtables_stamped_behind_the_others(store: Store) -> None:
    """Subtables running ahead of the clock must not hide rows of a new subtable stamped at the real time."""
    store.ensure_schema(METERS, 2)
    now = 1_700_000_000_000
    ahead = make_batch(METERS, 2, 200, start=now + 77_000)
    store.write(METERS, ahead)
    snapshot = store.snapshot(METERS, 100)
    watermark = snapshot.watermark
    store.write(METERS, make_batch(METERS, 2, 20, start=now + 78_000, seed_value=2))
    behind = only(make_batch(METERS, 12, 120, start=now, seed_value=3), "d10", "d11")
    store.ensure_schema(METERS, 2, first=10)
    store.write(METERS, behind)
    delivered = store.read_new(METERS, watermark)
    assert sorted_rows(only(delivered, "d10", "d11")) == sorted_rows(behind)
    assert delivered.num_rows == 20 + behind.num_rows
    assert store.read_new(METERS, watermark).num_rows == 0
    late = only(make_batch(METERS, 12, 120, start=now + 20, seed_value=4), "d10")
    store.write(METERS, late)
    assert sorted_rows(store.read_new(METERS, watermark)) == sorted_rows(late)


def test_snapshot_holds_the_newest_rows_and_the_latest_row_of_every_subtable(store: Store) -> None:
    store.ensure_schema(METERS, 3)
    quiet = only(make_batch(METERS, 3, 30), "d2")
    busy = only(make_batch(METERS, 3, 300, start=1_700_000_100_000, seed_value=2), "d0", "d1")
    store.write(METERS, quiet)
    store.write(METERS, busy)
    snapshot = store.snapshot(METERS, 50)
    assert snapshot.window.num_rows == 50 and set(snapshot.window["tbname"].to_pylist()) == {"d0", "d1"}
    assert sorted(snapshot.latest["tbname"].to_pylist()) == ["d0", "d1", "d2"]
    assert store.read_new(METERS, snapshot.watermark).num_rows == 0


def test_a_second_claim_on_the_same_subtables_is_refused_naming_the_first(store: Store, config: Config) -> None:
    store.ensure_schema(METERS, 10)
    with open_second(config) as other:
        with store.claim(METERS, 0, 10, "the producer with pid 101"):
            with pytest.raises(SubtablesClaimed) as refused:
                other.claim(METERS, 5, 10, "the producer with pid 202")
            message = str(refused.value)
            assert "d5..d14" in message and "d0..d9 by the producer with pid 101" in message
            assert "--first-table 15" in message
            with other.claim(METERS, 10, 10, "the producer with pid 202"):
                pass
        with other.claim(METERS, 5, 10, "the producer with pid 202"):
            pass


def open_second(config: Config) -> Store:
    """A second connection to the same store, as a second producer process has."""
    from taosprsp.stores import open_store

    return open_store(config)


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_a_file_written_before_the_key_gets_it_keeping_the_last_row_of_each_key(config: Config) -> None:
    import adbc_driver_sqlite.dbapi as adbc

    batch = make_batch(METERS, 2, 10)
    rewritten = make_batch(METERS, 2, 10, seed_value=9)
    with adbc.connect(config.store.path, autocommit=True) as conn, conn.cursor() as cursor:
        columns = ", ".join(f'"{name}"' for name in METERS.arrow_schema().names)
        cursor.execute(f'CREATE TABLE "meters" ({columns})')
        cursor.adbc_ingest("meters", batch, mode="append")
        cursor.adbc_ingest("meters", rewritten, mode="append")
    with EmbeddedStore(config.store.path, "meters") as store:
        assert store.count(METERS) == 20
        store.ensure_schema(METERS, 2)
        assert store.count(METERS) == 10
        assert sorted_rows(store.read_after(METERS, Watermark())) == sorted_rows(rewritten)
        store.write(METERS, batch)
        assert sorted_rows(store.read_after(METERS, Watermark())) == sorted_rows(batch)


@pytest.mark.tdengine
@pytest.mark.parametrize("store_kind", ["tdengine"])
def test_a_claim_whose_producer_stopped_beating_no_longer_counts(store: Store, config: Config) -> None:
    from taosprsp.stores.tdengine import CLAIM_STALE_SECONDS, CLAIMS_TABLE, TDengineStore

    assert isinstance(store, TDengineStore)
    store.ensure_schema(METERS, 4)
    with store.claim(METERS, 0, 4, "the producer with pid 303"):
        pass  # creates the claims table, then withdraws the claim
    stale = store._now() - int((CLAIM_STALE_SECONDS + 5) * 1000)
    store._execute(
        f"INSERT INTO `{config.database.name}`.`{CLAIMS_TABLE}` VALUES "
        f"({stale}, {stale}, 'meters', 0, 4, 'the producer with pid 404')"
    )
    with store.claim(METERS, 0, 4, "the producer with pid 505"):
        with pytest.raises(SubtablesClaimed, match="pid 505"):
            store.claim(METERS, 2, 1, "the producer with pid 606")
