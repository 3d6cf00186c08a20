"""Vectorized data generation for any dataset, from its columns' hints, and strictly increasing timestamps.

A generated batch is an Arrow table in the store layout (see `taosprsp.datasets`), sorted by subtable so
that each subtable's rows are one contiguous run: stores bind or insert a run at a time. Each value column
follows its generator hint (`taosprsp.datasets.hints`), or a default from its type: the timestamp's own
value for time columns, true/false for BOOL, uniform 0-100 for integers, a walk for floats, ten words for
strings.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Field, Hint, Precision, now_ticks
from taosprsp.datasets.hints import DAY_SECONDS

SPIKE_FACTORS = (1.5, 3.0)
"""A spike multiplies a value by a factor drawn uniformly from this range."""
NORMAL_POOL_SHARE = 16
"""A generator slices normals from its pool once the pool holds this many times the slice (see `_normals`)."""
NORMAL_POOL_MIN = 1 << 12
NORMAL_POOL_MAX = 1 << 21
"""16 MB of float64, drawn in a few tens of milliseconds: enough for a db seed batch of 100,000 rows."""


def spread(rows: int, tables: int) -> np.ndarray:
    """How many of `rows` each of `tables` subtables gets: as even as possible, earlier ones first."""
    counts = np.full(tables, rows // tables, dtype=np.int64)
    counts[: rows % tables] += 1
    return counts


def subtables(dataset: Dataset, tables: int, first: int = 0) -> tuple[list[str], dict[str, pa.Array]]:
    """Names and tag values of subtables first..first+tables-1 (as the dataset numbers them from 0)."""
    names = dataset.subtable_names(first + tables)[first:]
    return names, {name: values.slice(first) for name, values in dataset.tag_values(first + tables).items()}


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
        self.precision = precision
        self.ticks_per_second = TICKS_PER_SECOND[precision]
        self.last = np.asarray(last, dtype=np.int64).copy()

    def now(self) -> int:
        return now_ticks(self.precision)

    def ahead_seconds(self) -> float:
        """How far the newest timestamp handed out is ahead of the wall clock, in seconds (0 when it is not)."""
        if not len(self.last):
            return 0.0
        return max(0.0, (int(self.last.max()) - self.now()) / self.ticks_per_second)

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
        # per-run values repeated over their runs (np.repeat) cost a fraction of indexing them by each row's run
        first = np.cumsum(counts) - counts
        position = np.arange(int(counts.sum())) - np.repeat(first, counts)
        ts = np.repeat(start, counts) + position * np.repeat(step, counts)
        if len(counts):
            has_rows = counts > 0
            self.last[has_rows] = (start + (counts - 1) * step)[has_rows]
        return ts


def default_hint(field: Field) -> Hint:
    """The generator of a column declared without one, from its type."""
    if field.is_time:
        return Hint("time")
    if field.kind == "bool":
        return Hint("choice", values=(True, False))
    if field.spec.arrow == pa.string():
        return Hint("choice", values=Field(field.name, field.kind, length=field.length).values_pool())
    if field.spec.is_integer:
        return Hint("uniform", min=0.0, max=100.0)
    return Hint("walk", min=0.0, max=100.0, step=1.0)


def _in_dependency_order(columns: tuple[Field, ...]) -> list[Field]:
    """Columns ordered so that each comes after the columns its hint follows (`of`)."""
    pending = list(columns)
    ordered: list[Field] = []
    while pending:
        ready = [f for f in pending if all(name in {g.name for g in ordered} for name in _follows(f, columns))]
        if not ready:
            raise ValueError(f"generator hints follow each other in a circle: {[f.name for f in pending]}")
        ordered.extend(ready)
        pending = [f for f in pending if f not in ready]
    return ordered


def _follows(field: Field, columns: tuple[Field, ...]) -> tuple[str, ...]:
    names = {f.name for f in columns}
    return tuple(name for name in (field.hint.of if field.hint else ()) if name in names)


class _Layout:
    """What a batch's per-subtable row counts decide: made once and reused while the counts repeat (every
    batch of a run at a steady batch size), since building it costs a few passes over every row."""

    def __init__(self, counts: np.ndarray, names: pa.Array, tags: dict[str, pa.Array]) -> None:
        self.key = self.key_of(counts)
        self.counts = counts.copy()
        self.subtable, self.position = runs(counts)
        self.run_start = np.cumsum(counts) - counts
        self.has_rows = counts > 0
        self.last_row = (self.run_start + counts - 1)[self.has_rows]
        """Each subtable's last row, for the subtables that have rows."""
        for shared in (self.counts, self.subtable, self.position, self.run_start, self.has_rows, self.last_row):
            shared.flags.writeable = False  # batch after batch reads them
        indices = pa.array(self.subtable)
        self.columns = {SUBTABLE_COLUMN: names.take(indices), **{name: v.take(indices) for name, v in tags.items()}}

    @staticmethod
    def key_of(counts: np.ndarray) -> tuple[str, bytes]:
        """What identifies a layout: the counts' bytes (comparing them costs less than `np.array_equal`)."""
        return counts.dtype.str, counts.tobytes()


class _Times:
    """A batch's time features, each computed once however many columns use it."""

    def __init__(self, ts: np.ndarray, ticks_per_second: int) -> None:
        self.ts = ts
        self.ticks_per_second = ticks_per_second
        self._turns: dict[tuple[float, float], np.ndarray] = {}

    def turns(self, period: float, phase: float) -> np.ndarray:
        """Each row's place in a cycle of `period` seconds that starts at `phase` (a fraction of the period),
        as a fraction in [0, 1).

        Taken from the integer timestamps in float64 and reduced before any sine is taken, so that the sine
        may be a float32 one: a float32 angle of a day's cycle at epoch seconds would be off by radians.
        """
        key = (period, phase)
        if key not in self._turns:
            turns = self.ts * (1.0 / (period * self.ticks_per_second)) - phase
            turns -= np.floor(turns)
            self._turns[key] = turns
        return self._turns[key]


def _sine(turns: np.ndarray) -> np.ndarray:
    """sin(2 pi turns) in float32 (an order of magnitude faster than float64, and as precise as a FLOAT)."""
    return np.sin((turns * (2 * np.pi)).astype(np.float32))


class Generator:
    """Produces batches of one dataset for `tables` subtables, reproducibly under `seed`.

    State carries from batch to batch per subtable: walk levels, counters and each column's last value.
    Normal draws (walk steps, noise) are slices of a pool of normals drawn once (`_normals`), and spikes are
    drawn as a count and then positions, so a row costs a few arithmetic passes rather than several draws.
    """

    def __init__(
        self, dataset: Dataset, tables: int, precision: Precision, seed: int | None = None, first: int = 0
    ) -> None:
        """Rows for subtables first..first+tables-1; index i of a batch's `counts` is subtable first+i."""
        self.dataset = dataset
        self.tables = tables
        self.ticks_per_second = TICKS_PER_SECOND[precision]
        self.rng = np.random.default_rng(None if seed is None or seed < 0 else seed)
        names, self.tags = subtables(dataset, tables, first)
        self.names = pa.array(names, pa.string())
        self.schema = dataset.arrow_schema()
        self.hints = {f.name: f.hint or default_hint(f) for f in dataset.value_columns}
        self.order = _in_dependency_order(dataset.value_columns)
        self.level: dict[str, np.ndarray] = {}
        self.last: dict[str, np.ndarray] = {}
        self.count = np.zeros(tables, dtype=np.int64)
        self._before: dict[str, np.ndarray] = {}
        self._layout: _Layout | None = None
        self._pool = np.empty(0)
        self._pooled = 0
        """How many normals of `_pool` are drawn."""
        for f in self.order:
            hint = self.hints[f.name]
            if hint.kind == "walk":
                self.level[f.name] = self._start_levels(hint)
                self.last[f.name] = self.level[f.name].copy()

    def _start_levels(self, hint: Hint) -> np.ndarray:
        if not hint.by:
            return self.rng.uniform(hint.min, hint.max, self.tables)
        codes = pc.dictionary_encode(self.tags[hint.by]).indices.to_numpy(zero_copy_only=False)
        shared = self.rng.uniform(hint.min, hint.max, int(codes.max()) + 1 if len(codes) else 0)
        return shared[codes] + self.rng.normal(0.0, hint.jitter, self.tables)

    def _normals(self, n: int, scale: float) -> np.ndarray:
        """`n` independent normal draws of standard deviation `scale`.

        Drawing normals is the dearest step of a batch (tens of nanoseconds each; a meters row takes four),
        so once a generator has drawn a pool of at least `NORMAL_POOL_SHARE` times `n` of them (kept as they
        are drawn), it reads slices of the pool instead: at a random offset, with a random sign. Within a slice
        the draws are independent, and the pool is large beside a slice, so two slices rarely overlap. A
        short run never pays for a pool it would not use; draws too large for `NORMAL_POOL_MAX` stay fresh.
        """
        wanted = n * NORMAL_POOL_SHARE
        if wanted > NORMAL_POOL_MAX:
            return self.rng.normal(0.0, scale, n)
        if len(self._pool) < wanted:
            grown = np.empty(max(NORMAL_POOL_MIN, 1 << (wanted - 1).bit_length()))
            grown[: self._pooled] = self._pool[: self._pooled]
            self._pool = grown
        if self._pooled == len(self._pool):
            offset, flip = divmod(int(self.rng.integers(2 * (len(self._pool) - n + 1))), 2)
            return self._pool[offset : offset + n] * (-scale if flip else scale)
        fresh = self.rng.standard_normal(n)
        kept = min(n, len(self._pool) - self._pooled)
        self._pool[self._pooled : self._pooled + kept] = fresh[:kept]
        self._pooled += kept
        fresh *= scale
        return fresh

    def _spike(self, values: np.ndarray, share: float) -> None:
        """Multiply a `share` of `values` (each row with that chance) by factors drawn from `SPIKE_FACTORS`.

        The number of spikes is drawn (binomial) and then their rows, rather than a draw per row: spikes are
        rare. Two spikes landing on one row count once (a chance of about `share`, negligible)."""
        rows = self.rng.integers(0, len(values), self.rng.binomial(len(values), share))
        values[rows] *= self.rng.uniform(*SPIKE_FACTORS, len(rows))

    def _layout_of(self, counts: np.ndarray) -> _Layout:
        if self._layout is None or self._layout.key != _Layout.key_of(counts):
            self._layout = _Layout(counts, self.names, self.tags)
        return self._layout

    def batch(self, counts: np.ndarray, ts: np.ndarray) -> pa.Table:
        """A batch with `counts[i]` rows for subtable i at timestamps `ts` (as from a `Clock`)."""
        layout = self._layout_of(counts)
        times = _Times(ts, self.ticks_per_second)
        arrays: dict[str, pa.Array] = {**layout.columns, self.dataset.timestamp.name: pa.array(ts, pa.int64())}
        made: dict[str, np.ndarray] = {}
        self._before = {name: values.copy() for name, values in self.last.items()}
        for f in self.order:
            made[f.name] = self._column(f, self.hints[f.name], layout, times, made)
            arrays[f.name] = self._typed(f, self.hints[f.name], made[f.name])
        self.count += counts
        return pa.table([arrays[f.name] for f in self.schema], schema=self.schema)

    def _column(
        self, field: Field, hint: Hint, layout: _Layout, times: _Times, made: dict[str, np.ndarray]
    ) -> np.ndarray:
        n = len(layout.subtable)
        if hint.kind == "time":
            if field.kind == "date":
                ticks_per_day = int(DAY_SECONDS) * self.ticks_per_second
                return (times.ts // ticks_per_day) * ticks_per_day
            return times.ts
        if hint.kind == "choice":
            weights = np.asarray(hint.weights, dtype=float) if hint.weights else None
            return self.rng.choice(len(hint.values), n, p=None if weights is None else weights / weights.sum())
        if hint.kind == "walk":
            values = self._walk(field.name, hint.walk_step, layout)
        elif hint.kind == "sine":
            apart = np.repeat(np.arange(self.tables) / self.tables, layout.counts)  # subtables out of step
            turns = times.turns(hint.period, hint.phase) + apart
            middle, swing = (hint.min + hint.max) / 2, (hint.max - hint.min) / 2
            values = middle + swing * _sine(turns).astype(np.float64)
        elif hint.kind == "uniform":
            values = self.rng.uniform(hint.min, hint.max, n)
        elif hint.kind == "counter":
            values = hint.start + hint.counter_step * (np.repeat(self.count, layout.counts) + layout.position)
        elif hint.kind == "previous":
            values = self._previous(made[hint.of[0]], self._before.get(hint.of[0]), layout)
        else:
            pick = np.maximum if hint.kind == "above" else np.minimum
            values = functools.reduce(pick, (made[name].astype(np.float64) for name in hint.of))
            if hint.noise:
                wiggle = np.abs(self._normals(n, hint.noise))
                values = values + wiggle if hint.kind == "above" else values - wiggle
            return values if hint.floor is None else np.maximum(values, hint.floor)
        values = np.asarray(values, dtype=np.float64)
        if hint.season:
            values = values * (1.0 + hint.season * _sine(times.turns(hint.period, hint.phase)))
        if hint.spikes:
            self._spike(values, hint.spikes)
        if hint.noise:
            values += self._normals(n, hint.noise)
        if hint.floor is not None:
            np.maximum(values, hint.floor, out=values)
        self._remember(field.name, values, layout)
        return values

    def _walk(self, name: str, step: float, layout: _Layout) -> np.ndarray:
        """A random walk per subtable (rows grouped by subtable) continuing from each one's last level."""
        level = self.level[name]
        if step == 0 or not len(layout.subtable):
            return np.repeat(level, layout.counts)
        walked = np.cumsum(self._normals(len(layout.subtable), step))
        # each run walks from its subtable's level: shift it by that level less the sum before the run
        row_before = layout.run_start - 1
        before_run = np.where(row_before >= 0, walked[row_before], 0.0)
        walked += np.repeat(level - before_run, layout.counts)
        level[layout.has_rows] = walked[layout.last_row]
        return walked

    def _previous(self, source: np.ndarray, last: np.ndarray | None, layout: _Layout) -> np.ndarray:
        """Each row's previous value of `source` in its subtable; a run's first row takes the subtable's
        value before this batch (its own, when there is none)."""
        values = np.roll(source.astype(np.float64), 1)
        if len(values):
            run_start = layout.run_start[layout.has_rows]
            before = source[run_start] if last is None else last[layout.has_rows]
            values[run_start] = np.where(np.isnan(before), source[run_start], before)
        return values

    def _remember(self, name: str, values: np.ndarray, layout: _Layout) -> None:
        """Keep each subtable's last value of column `name`, for `previous` in the next batch."""
        if name not in self.last:
            self.last[name] = np.full(self.tables, np.nan)
        self.last[name][layout.has_rows] = values[layout.last_row]

    def _typed(self, field: Field, hint: Hint, values: np.ndarray) -> pa.Array:
        """`values` as the column's Arrow type: integers rounded into range, NULLs where the hint asks."""
        arrow = field.spec.arrow
        mask = self.rng.random(len(values)) < hint.nulls if hint.nulls else None
        if hint.kind == "choice":
            return _with_nulls(pa.array(hint.values, arrow).take(pa.array(values)), mask)
        if field.is_time or hint.kind == "time":
            return pa.array(values, arrow, mask=mask)
        if pa.types.is_integer(arrow):
            bounds = np.iinfo(arrow.to_pandas_dtype())
            high = float(np.nextafter(np.float64(bounds.max), 0))
            rounded = np.rint(values)
            np.minimum(np.maximum(rounded, bounds.min, out=rounded), high, out=rounded)
            return pa.array(rounded.astype(bounds.dtype), arrow, mask=mask)
        if pa.types.is_floating(arrow):
            return pa.array(values.astype(arrow.to_pandas_dtype()), arrow, mask=mask)
        return _with_nulls(pc.cast(pa.array(values, pa.float64()), arrow), mask)


def _with_nulls(array: pa.Array, mask: np.ndarray | None) -> pa.Array:
    return array if mask is None else pc.if_else(pa.array(mask), pa.nulls(len(array), array.type), array)
