"""`db seed`: the database, super table and subtables, and optionally a backfill of history.

A backfill holds the claim on its subtables that producers take (`Store.claim`), stops between batches
when asked (`stop`), and is bounded by what its timestamps can hold: the span reaches no further back than
1970, and a subtable takes at most one row per tick of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from taosprsp.config import format_duration
from taosprsp.datasets import TICKS_PER_SECOND, Dataset, Precision
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.generate import Clock, Generator, runs, spread
from taosprsp.produce import producer_identity
from taosprsp.stores.base import Store
from taosprsp.stores.tdengine import MAX_ROWS_PER_SUBTABLE_BIND

BACKFILL_BATCH_ROWS = 100_000
"""Rows per backfill batch. Not more: generating and converting a batch costs more per row as batches grow
(measured, 10 subtables: 333 ns a row at 10,000 rows per subtable, 387 at 20,000, 530 at 32,767), more than
larger binds can save on a server that writes 1.8 M rows/s at 50,000 rows a call and 2 M at 100,000."""


@dataclass(frozen=True)
class SeedSummary:
    store: str
    dataset: str
    tables: int
    rows: int
    seconds: float
    interrupted: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


def check_backfill(rows: int, tables: int, span_seconds: float, precision: Precision, now: float) -> None:
    """Refuse a backfill its timestamps cannot hold: a span reaching before 1970 (`now` in epoch seconds), or
    more rows per subtable than the span has ticks."""
    if not 0 < span_seconds <= now:
        raise TaosprspError(
            f"--span {format_duration(span_seconds)} must be more than 0 and reach no further back than 1970-01-01 "
            f"(timestamps count from then): at most {math.floor(now / 86_400):,}d",
            ExitCode.USAGE,
        )
    ticks = int(span_seconds * TICKS_PER_SECOND[precision])
    per_subtable = math.ceil(rows / tables)
    if per_subtable > ticks:
        raise TaosprspError(
            f"--rows {rows:,} over {tables:,} subtables is {per_subtable:,} rows per subtable, more than the "
            f"{ticks:,} ticks of --span {format_duration(span_seconds)} at {precision} precision (one row per tick "
            "per subtable): lengthen --span, add --tables, or use a finer database.precision",
            ExitCode.USAGE,
        )


def seed(
    store: Store,
    dataset: Dataset,
    tables: int,
    precision: Precision,
    rows: int = 0,
    span_seconds: float = 86_400.0,
    drop: bool = False,
    seed_value: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> SeedSummary:
    """Create the schema idempotently (`drop` starts over), then backfill `rows` rows over the last `span_seconds`.

    Backfilled rows are spread evenly over the subtables and over the span; a subtable that already has
    rows continues after its newest one, so a second seed never overwrites the first. When `stop` is set,
    the batch in hand is written and the summary says `interrupted`.
    """
    started = time.perf_counter()
    if rows > 0:
        check_backfill(rows, tables, span_seconds, precision, time.time())
    store.ensure_schema(dataset, tables, drop=drop)
    written = 0
    if rows > 0:
        with store.claim(dataset, 0, tables, producer_identity()):
            written = _backfill(store, dataset, tables, precision, rows, span_seconds, seed_value, on_progress, stop)
    interrupted = stop is not None and stop.is_set() and written < rows
    return SeedSummary(store.describe(), dataset.name, tables, written, time.perf_counter() - started, interrupted)


def _backfill(
    store: Store,
    dataset: Dataset,
    tables: int,
    precision: Precision,
    rows: int,
    span_seconds: float,
    seed_value: int | None,
    on_progress: Callable[[int], None] | None,
    stop: threading.Event | None,
) -> int:
    """Write `rows` rows of history in batches until done or `stop`; returns how many were written."""
    clock = Clock(precision, store.last_per_subtable(dataset, tables))
    generator = Generator(dataset, tables, precision, seed_value)
    counts = spread(rows, tables)
    timestamps = clock.backfill(counts, span_seconds)
    done = np.zeros(tables, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    # at most one bind's worth of rows per subtable a batch: TDengine would split a longer run into calls
    per_batch = np.minimum(
        spread(BACKFILL_BATCH_ROWS, tables) if rows > BACKFILL_BATCH_ROWS else counts, MAX_ROWS_PER_SUBTABLE_BIND
    )
    written = 0
    while written < rows and not (stop is not None and stop.is_set()):
        take = np.minimum(per_batch, counts - done)
        subtable, position = runs(take)
        batch = generator.batch(take, timestamps[offsets[subtable] + done[subtable] + position])
        written += store.write(dataset, batch)
        done += take
        if on_progress:
            on_progress(batch.num_rows)
    return written
