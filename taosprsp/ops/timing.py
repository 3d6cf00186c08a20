"""Operations on time: `resample` onto a uniform grid (mean or last per bin) and `shift` by a fixed offset.

The grid is aligned to the epoch: a bin of width `every` starts at a multiple of `every`, and its output
sample is stamped with that start, as TDengine's `INTERVAL` stamps `_wstart`. A bin is emitted once it is
closed, when a sample of a later bin arrives (a history run closes the last one at its end); with
`fill = "previous"` a bin that got no sample repeats the one before it (TDengine's `FILL(PREV)`), for gaps
of at most `MAX_FILL_BINS` bins, so that a long outage does not turn into millions of made-up samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taosprsp.datasets import TICKS_PER_SECOND, Precision
from taosprsp.errors import ConfigError
from taosprsp.ops.declare import Operation
from taosprsp.ops.series import Series, grown

MAX_FILL_BINS = 100_000


def ticks(operation: Operation, key: str, seconds: float, precision: Precision) -> int:
    """`seconds` as a whole number of ticks of `precision`; a ConfigError naming the key when it is not one."""
    exact = seconds * TICKS_PER_SECOND[precision]
    whole = round(exact)
    if abs(exact - whole) > 1e-6 * max(1.0, abs(exact)):
        raise ConfigError(
            f"operations.{operation.name}.{key}: {seconds:g} s is not a whole number of {precision} "
            "(the database precision)"
        )
    return whole


def resample(ts: np.ndarray, values: np.ndarray, every: int, agg: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """One subtable's samples (ts ascending, in ticks) on a grid of `every` ticks: (bin starts, mean or last)."""
    bins = _Bins.of(Series(np.zeros(len(ts), np.int64), np.asarray(ts), np.asarray(values, np.float64)), every)
    return bins.bin * every, bins.sum / bins.count if agg == "mean" else bins.last


@dataclass
class _Bins:
    """Partial bins of several subtables, sorted by (code, bin): sum, count and last value of each."""

    code: np.ndarray
    bin: np.ndarray
    sum: np.ndarray
    count: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return len(self.code)

    def take(self, index: np.ndarray) -> _Bins:
        return _Bins(self.code[index], self.bin[index], self.sum[index], self.count[index], self.last[index])

    @staticmethod
    def of(series: Series, every: int) -> _Bins:
        """A batch's samples per (subtable, bin): one reduceat over the whole batch, no loop over subtables."""
        if not len(series):
            return _Bins(series.codes, series.ts, series.values, series.values, series.values)
        bins = series.ts // every
        changed = (series.codes[1:] != series.codes[:-1]) | (bins[1:] != bins[:-1])
        starts = np.flatnonzero(np.concatenate([[True], changed]))
        stops = np.concatenate([starts[1:], [len(series)]])
        sums, counts = np.add.reduceat(series.values, starts), (stops - starts).astype(np.float64)
        return _Bins(series.codes[starts], bins[starts], sums, counts, series.values[stops - 1])

    @staticmethod
    def concat(parts: list[_Bins]) -> _Bins:
        joined = _Bins(*(np.concatenate([getattr(p, name) for p in parts]) for name in _Bins.__annotations__))
        return joined.take(np.lexsort((joined.bin, joined.code)))


class ResampleState:
    """Per subtable, in arrays indexed by code: the open bin (still taking samples) and the last bin emitted
    (for `fill = "previous"`). A batch is binned and merged for all subtables at once."""

    def __init__(self, operation: Operation, precision: Precision) -> None:
        p = operation.params
        self.every = ticks(operation, "every", p["every"], precision)
        if self.every < 1:
            raise ConfigError(f"operations.{operation.name}.every: shorter than one {precision} tick")
        self.mean = p["agg"] == "mean"
        self.fill = p["fill"] == "previous"
        self.open = _Bins(*(np.zeros(0, kind) for kind in (np.int64, np.int64, float, float, float)))
        self.is_open = np.zeros(0, bool)
        self.emitted_bin = np.zeros(0, np.int64)
        self.emitted_value = np.zeros(0)
        self.has_emitted = np.zeros(0, bool)

    def step(self, series: Series, final: bool = False) -> Series:
        """Bins closed by this batch (and with `final`, the open ones too)."""
        batch = _Bins.of(series, self.every)
        self._grow(int(batch.code.max()) + 1 if len(batch) else 0)
        # the open bin of each subtable in the batch: the batch's first bin continues it, or it is closed
        first = np.flatnonzero(np.concatenate([[len(batch) > 0], batch.code[1:] != batch.code[:-1]]))
        codes = batch.code[first]
        held = self.is_open[codes]
        continued = held & (self.open.bin[codes] == batch.bin[first])
        batch.sum[first[continued]] += self.open.sum[codes[continued]]
        batch.count[first[continued]] += self.open.count[codes[continued]]
        closing = codes[held & ~continued]
        if final:
            closing = np.union1d(closing, np.flatnonzero(self.is_open & ~np.isin(np.arange(len(self.is_open)), codes)))
        bins = _Bins.concat([batch, self.open.take(closing)])
        self.is_open[codes] = False
        self.is_open[closing] = False
        if not final and len(bins):
            newest = np.concatenate([bins.code[1:] != bins.code[:-1], [True]])
            self._hold(bins.take(np.flatnonzero(newest)))
            bins = bins.take(np.flatnonzero(~newest))
        values = bins.sum / bins.count if self.mean else bins.last
        code, key = bins.code, bins.bin
        if self.fill:
            code, key, values = self._filled(code, key, values)
        if len(code):
            last = np.flatnonzero(np.concatenate([code[1:] != code[:-1], [True]]))
            self.emitted_bin[code[last]], self.emitted_value[code[last]] = key[last], values[last]
            self.has_emitted[code[last]] = True
        return Series(code, key * self.every, values)

    def _grow(self, size: int) -> None:
        if size <= len(self.is_open):
            return
        self.open = _Bins(*(grown(getattr(self.open, name), size, 0) for name in _Bins.__annotations__))
        self.is_open = grown(self.is_open, size, False)
        self.emitted_bin, self.emitted_value = grown(self.emitted_bin, size, 0), grown(self.emitted_value, size, 0)
        self.has_emitted = grown(self.has_emitted, size, False)

    def _hold(self, newest: _Bins) -> None:
        """Keep each subtable's newest bin open: a later sample may still fall in it."""
        for name in _Bins.__annotations__:
            getattr(self.open, name)[newest.code] = getattr(newest, name)
        self.is_open[newest.code] = True

    def _filled(
        self, code: np.ndarray, key: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gaps (up to MAX_FILL_BINS) filled by repeating the bin before, the one emitted last time included."""
        before = np.unique(code[self.has_emitted[code]])
        code = np.concatenate([before, code])
        key = np.concatenate([self.emitted_bin[before], key])
        values = np.concatenate([self.emitted_value[before], values])
        emitted = np.concatenate([np.ones(len(before), bool), np.zeros(len(values) - len(before), bool)])
        order = np.lexsort((key, code))
        code, key, values, emitted = code[order], key[order], values[order], emitted[order]
        gaps = np.where(code[1:] == code[:-1], np.diff(key), 1)
        repeats = np.concatenate([np.where(gaps <= MAX_FILL_BINS, gaps, 1), [1]])
        firsts = np.cumsum(repeats) - repeats
        offset = np.arange(int(repeats.sum())) - np.repeat(firsts, repeats)
        keep = ~(np.repeat(emitted, repeats) & (offset == 0))  # the bin emitted before is not emitted again
        filled_key = np.repeat(key, repeats) + offset
        return np.repeat(code, repeats)[keep], filled_key[keep], np.repeat(values, repeats)[keep]


class ShiftState:
    """A time shift carries no state: every sample moves by the same number of ticks."""

    def __init__(self, operation: Operation, precision: Precision) -> None:
        self.by = ticks(operation, "by", operation.params["by"], precision)

    def step(self, series: Series, final: bool = False) -> Series:
        return Series(series.codes, series.ts + self.by, series.values)
