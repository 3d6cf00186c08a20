"""Vectorized data generation for every dataset, and strictly increasing timestamps per subtable.

A generated batch is an Arrow table in the store layout (see `taosprsp.datasets`), sorted by subtable so
that each subtable's rows are one contiguous run: stores bind or insert a run at a time.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from taosprsp.datasets import LOCATIONS, METERS, SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Precision

DAY_SECONDS = 86_400


def spread(rows: int, tables: int) -> np.ndarray:
    """How many of `rows` each of `tables` subtables gets: as even as possible, earlier ones first."""
    counts = np.full(tables, rows // tables, dtype=np.int64)
    counts[: rows % tables] += 1
    return counts


def runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-subtable row counts: the subtable of every row, and each row's position in its run."""
    subtable = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    position = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return subtable, position


class Clock:
    """Hands out timestamps that strictly increase per subtable, in the database precision.

    Live batches are stamped near the wall clock; when a subtable receives rows faster than one per tick,
    its timestamps run ahead of the clock rather than repeat, because TDengine keeps one row per timestamp
    per subtable and silently overwrites the others.
    """

    def __init__(self, precision: Precision, last: np.ndarray) -> None:
        self.ticks_per_second = TICKS_PER_SECOND[precision]
        self.last = np.asarray(last, dtype=np.int64).copy()

    def now(self) -> int:
        return time.time_ns() // (1_000_000_000 // self.ticks_per_second)

    def live(self, counts: np.ndarray, now: int | None = None) -> np.ndarray:
        """Timestamps for `counts[i]` rows of subtable i, ending at `now` where the clock allows."""
        now = self.now() if now is None else now
        start = np.maximum(self.last + 1, now - counts + 1)
        return self._stamp(start, np.ones_like(counts), counts)

    def backfill(self, counts: np.ndarray, span_seconds: float, end: int | None = None) -> np.ndarray:
        """Timestamps spread evenly over `span_seconds` up to `end` (default now), after existing rows."""
        end = self.now() if end is None else end
        span = int(span_seconds * self.ticks_per_second)
        step = np.maximum(span // np.maximum(counts, 1), 1)
        start = np.maximum(self.last + 1, end - step * (counts - 1))
        return self._stamp(start, step, counts)

    def _stamp(self, start: np.ndarray, step: np.ndarray, counts: np.ndarray) -> np.ndarray:
        subtable, position = runs(counts)
        ts = start[subtable] + position * step[subtable]
        if len(counts):
            has_rows = counts > 0
            self.last[has_rows] = (start + (counts - 1) * step)[has_rows]
        return ts


class Generator:
    """Produces realistic batches of one dataset for `tables` subtables, reproducibly under `seed`."""

    def __init__(self, dataset: Dataset, tables: int, precision: Precision, seed: int | None = None) -> None:
        self.dataset = dataset
        self.tables = tables
        self.ticks_per_second = TICKS_PER_SECOND[precision]
        self.rng = np.random.default_rng(None if seed is None or seed < 0 else seed)
        self.names = np.array(dataset.subtable_names(tables), dtype=object)
        self.tags = dataset.tag_values(tables)
        if dataset is METERS:
            location_base = 8.0 + 4.0 * np.sin(np.arange(len(LOCATIONS)))
            location = np.arange(tables) % len(LOCATIONS)
            self.level = location_base[location] + self.rng.normal(0, 0.3, tables)
        else:
            self.level = self.rng.uniform(20.0, 400.0, tables)

    def batch(self, counts: np.ndarray, ts: np.ndarray) -> pa.Table:
        """A batch with `counts[i]` rows for subtable i at timestamps `ts` (as from a `Clock`)."""
        subtable, position = runs(counts)
        values = (
            self._meters(subtable, position, ts) if self.dataset is METERS else self._stocks(subtable, position, ts)
        )
        arrays: dict[str, pa.Array] = {SUBTABLE_COLUMN: pa.array(self.names[subtable], pa.string())}
        schema = self.dataset.arrow_schema()
        arrays[self.dataset.timestamp.name] = pa.array(ts, pa.int64())
        for name, column in values.items():
            arrays[name] = pa.array(column, schema.field(name).type)
        for name, column in self.tags.items():
            arrays[name] = pa.array(column[subtable], schema.field(name).type)
        return pa.table([arrays[f.name] for f in schema], schema=schema)

    def _walk(self, subtable: np.ndarray, scale: float) -> np.ndarray:
        """A random walk per subtable (rows grouped by subtable) continuing from each one's last level."""
        steps = self.rng.normal(0.0, scale, len(subtable))
        if not len(steps):
            return steps
        cumulative = np.cumsum(steps)
        counts = np.bincount(subtable, minlength=self.tables)
        run_start = np.cumsum(counts) - counts
        before_run = np.concatenate([[0.0], cumulative])[run_start]
        walked = self.level[subtable] + cumulative - before_run[subtable]
        has_rows = counts > 0
        self.level[has_rows] = walked[(run_start + counts - 1)[has_rows]]
        return walked

    def _meters(self, subtable: np.ndarray, position: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        n = len(subtable)
        seconds_of_day = (ts // self.ticks_per_second) % DAY_SECONDS
        daily = 1.0 + 0.25 * np.sin(2 * np.pi * (seconds_of_day / DAY_SECONDS - 0.3))
        level = np.clip(self._walk(subtable, 0.02), 1.0, None)
        spikes = np.where(self.rng.random(n) < 0.002, self.rng.uniform(1.5, 3.0, n), 1.0)
        current = level * daily * spikes + self.rng.normal(0, 0.1, n)
        voltage = np.rint(220 + 4 * np.sin(subtable) + self.rng.normal(0, 2.0, n))
        phase = 0.31 + 0.02 * np.sin(subtable) + self.rng.normal(0, 0.01, n)
        return {
            "current": current.astype(np.float32),
            "voltage": voltage.astype(np.int32),
            "phase": phase.astype(np.float32),
        }

    def _stocks(self, subtable: np.ndarray, position: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
        n = len(subtable)
        previous = self.level[subtable].copy()
        close = np.clip(self._walk(subtable, 0.4), 1.0, None)
        opened = np.where(position == 0, previous, np.roll(close, 1))
        wiggle = np.abs(self.rng.normal(0, 0.3, n))
        ticks_per_day = DAY_SECONDS * self.ticks_per_second
        return {
            "open": opened.astype(np.float32),
            "high": (np.maximum(opened, close) + wiggle).astype(np.float32),
            "low": np.clip(np.minimum(opened, close) - wiggle, 0.5, None).astype(np.float32),
            "close": close.astype(np.float32),
            "volume": self.rng.integers(10_000, 100_000, n, dtype=np.uint32),
            "date": (ts // ticks_per_day) * ticks_per_day,
        }
