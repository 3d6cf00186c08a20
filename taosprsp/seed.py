"""`db seed`: the database, super table and subtables, and optionally a backfill of history."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from taosprsp.datasets import Dataset, Precision
from taosprsp.generate import Clock, Generator, spread
from taosprsp.stores.base import Store

BACKFILL_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class SeedSummary:
    store: str
    dataset: str
    tables: int
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


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
) -> SeedSummary:
    """Create the schema idempotently (`drop` starts over), then backfill `rows` rows over the last `span_seconds`.

    Backfilled rows are spread evenly over the subtables and over the span; a subtable that already has
    rows continues after its newest one, so a second seed never overwrites the first.
    """
    started = time.perf_counter()
    store.ensure_schema(dataset, tables, drop=drop)
    written = 0
    if rows > 0:
        clock = Clock(precision, store.last_per_subtable(dataset, tables))
        generator = Generator(dataset, tables, precision, seed_value)
        counts = spread(rows, tables)
        timestamps = clock.backfill(counts, span_seconds)
        done = np.zeros(tables, dtype=np.int64)
        offsets = np.cumsum(counts) - counts
        per_batch = spread(BACKFILL_BATCH_ROWS, tables) if rows > BACKFILL_BATCH_ROWS else counts
        while written < rows:
            take = np.minimum(per_batch, counts - done)
            index = np.concatenate([offsets[i] + done[i] + np.arange(take[i]) for i in range(tables)])
            batch = generator.batch(take, timestamps[index])
            written += store.write(dataset, batch)
            done += take
            if on_progress:
                on_progress(batch.num_rows)
    return SeedSummary(store.describe(), dataset.name, tables, written, time.perf_counter() - started)
