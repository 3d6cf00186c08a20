"""Spectra of the last `size` samples of each subtable, refreshed every `every` samples.

`fft`: the window's mean is removed, the samples are multiplied by the window function (Hann by default)
and `rfft` gives one magnitude per frequency from 0 to the Nyquist frequency. `welch`: `scipy.signal.welch`
averages the spectra of overlapping segments of `segment` samples, less noisy, coarser in frequency. Both
give magnitudes as amplitudes: a sine of amplitude A at a frequency of the grid peaks at about A.

A spectrum assumes evenly spaced samples: a window whose intervals stray from 1/rate by more than a tick
(or 1 % of the interval) is refused, in a history run as an error, live as a skipped refresh (counted).
All windows of a batch are transformed at once, as the rows of one 2-D array.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from taosprsp.datasets import TICKS_PER_SECOND, Precision
from taosprsp.errors import ConfigError
from taosprsp.ops.declare import Operation
from taosprsp.ops.series import Frames, Series, SubtableCodes

WINDOWS_PER_TRANSFORM = 2048
"""Windows transformed in one call: bounds the memory of a history run that refreshes every few samples."""


def spectrum(
    values: np.ndarray, rate: float, method: str = "fft", window: str = "hann", segment: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and magnitudes of `values` sampled at `rate` Hz: one spectrum per row of a 2-D array."""
    values = np.asarray(values, np.float64)
    size = values.shape[-1]
    if method == "welch":
        frequencies, power = signal.welch(
            values, fs=rate, window=window, nperseg=segment or size // 4, detrend="constant", scaling="spectrum"
        )
        return frequencies, np.sqrt(2 * power)
    weights = signal.get_window(window, size)
    centred = values - values.mean(axis=-1, keepdims=True)
    return np.fft.rfftfreq(size, 1 / rate), 2 * np.abs(np.fft.rfft(centred * weights)) / weights.sum()


class NonUniformSampling(ConfigError):
    """A spectrum's window is not evenly spaced at the declared rate."""


class SpectrumState:
    """Per subtable: the last `size - 1` samples and how many came, so that windows span batches."""

    def __init__(self, operation: Operation, precision: Precision, names: SubtableCodes, strict: bool) -> None:
        p = operation.params
        assert operation.rate is not None, "declare_operations requires a rate for a spectrum"
        self.operation = operation
        self.rate = operation.rate
        self.size, self.every = p["size"], p["every"]
        self.method, self.window, self.segment = p["method"], p["window"], p.get("segment")
        self.ticks_per_second = TICKS_PER_SECOND[precision]
        self.period = self.ticks_per_second / self.rate
        self.tolerance = max(1.0, 0.01 * self.period)
        self.names = names
        self.strict = strict
        self.frequencies = np.fft.rfftfreq(self.size, 1 / self.rate)
        if self.method == "welch":
            self.frequencies = spectrum(np.zeros(self.size), self.rate, "welch", self.window, self.segment)[0]
        self.held_ts: dict[int, np.ndarray] = {}
        self.held_values: dict[int, np.ndarray] = {}
        self.seen: dict[int, int] = {}
        self.windows_skipped = 0
        self.last_problem = ""

    def step(self, series: Series, final: bool = False) -> Frames:
        codes, ts, magnitudes = [], [], []
        for code, run in series.runs():
            window_ts, window_values = self._windows(code, series.ts[run], series.values[run])
            for first in range(0, len(window_ts), WINDOWS_PER_TRANSFORM):
                chunk = slice(first, first + WINDOWS_PER_TRANSFORM)
                even = self._evenly_spaced(code, window_ts[chunk])
                if not len(even):
                    continue
                magnitudes.append(
                    spectrum(window_values[chunk][even], self.rate, self.method, self.window, self.segment)[1]
                )
                ts.append(window_ts[chunk][even, -1])
                codes.append(np.full(len(even), code, np.int64))
        if not codes:
            return Frames(
                np.zeros(0, np.int64), np.zeros(0, np.int64), self.frequencies, np.zeros((0, len(self.frequencies)))
            )
        return Frames(np.concatenate(codes), np.concatenate(ts), self.frequencies, np.concatenate(magnitudes))

    def _windows(self, code: int, ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The windows (times, values; one per row) this run completes: the first when `size` samples have
        come, then one every `every` samples."""
        held_ts = self.held_ts.get(code, np.zeros(0, np.int64))
        buffer_ts = np.concatenate([held_ts, ts])
        buffer_values = np.concatenate([self.held_values.get(code, np.zeros(0)), values])
        before = self.seen.get(code, 0)
        count = before + np.arange(1, len(ts) + 1)
        ends = len(held_ts) + np.flatnonzero((count >= self.size) & ((count - self.size) % self.every == 0)) + 1
        starts = ends - self.size
        keep = min(self.size - 1, len(buffer_ts))
        self.held_ts[code], self.held_values[code] = (
            buffer_ts[len(buffer_ts) - keep :],
            buffer_values[len(buffer_ts) - keep :],
        )
        self.seen[code] = before + len(ts)
        if not len(starts):
            return np.zeros((0, self.size), np.int64), np.zeros((0, self.size))
        return sliding_window_view(buffer_ts, self.size)[starts], sliding_window_view(buffer_values, self.size)[starts]

    def _evenly_spaced(self, code: int, window_ts: np.ndarray) -> np.ndarray:
        """Indices of the windows whose intervals are 1/rate; the others are an error (strict) or skipped."""
        if not len(window_ts):
            return np.zeros(0, np.int64)
        intervals = np.diff(window_ts, axis=1)
        even = np.all(np.abs(intervals - self.period) <= self.tolerance, axis=1)
        if not even.all():
            bad = int(np.flatnonzero(~even)[0])
            shortest, longest = (
                intervals[bad].min() / self.ticks_per_second,
                intervals[bad].max() / self.ticks_per_second,
            )
            problem = (
                f"operations.{self.operation.name}: the samples of {self.names.names[code]} are not evenly spaced "
                f"at {self.rate:g} Hz (intervals from {shortest:g} s to {longest:g} s in a window of {self.size}): "
                "take a resample as input, or correct rate"
            )
            if self.strict:
                raise NonUniformSampling(problem)
            self.windows_skipped += int((~even).sum())
            self.last_problem = problem
        return np.flatnonzero(even)
