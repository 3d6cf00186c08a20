"""Butterworth low-, high- and band-pass filters, streamed batch by batch with their state carried.

The filter is designed once as second-order sections (`scipy.signal.butter(..., output="sos")`, stable at
high orders where a transfer function is not) and run with `sosfilt` on each subtable's run of a batch,
starting from the state the previous batch left (`zi`). Fed in pieces, the output equals one `sosfilt`
over the whole signal. A subtable's first sample starts the filter in its steady state for that value
(`sosfilt_zi * x[0]`), so the output does not ramp up from zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from taosprsp.ops.declare import Operation
from taosprsp.ops.series import Series


def butterworth(kind: str, cutoff: float | Sequence[float], rate: float, order: int = 4) -> np.ndarray:
    """Second-order sections of a Butterworth `kind` ("lowpass", "highpass", "bandpass") filter: cutoff(s)
    in Hz for samples at `rate` Hz."""
    return signal.butter(order, cutoff, btype=kind, fs=rate, output="sos")


def initial_state(sos: np.ndarray, first: float) -> np.ndarray:
    """The filter's state as if the signal had always been `first`: no start-up transient."""
    return signal.sosfilt_zi(sos) * first


def filter_signal(
    sos: np.ndarray, values: np.ndarray, state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Filter `values` from `state` (None: the steady state of the first value); returns output and new state."""
    if state is None:
        state = initial_state(sos, float(values[0]))
    return signal.sosfilt(sos, values, zi=state)


class FilterState:
    """One filter operation's state per subtable: `step` filters a batch, continuing where the last one ended.

    Subtables whose runs in a batch are equally long (the usual case: each got the same number of samples)
    are filtered in one `sosfilt` call over a 2-D array, one row per subtable: a call costs far more than the
    few samples a subtable brings to a live batch.
    """

    def __init__(self, operation: Operation) -> None:
        p = operation.params
        assert operation.rate is not None, "declare_operations requires a rate for filters"
        self.sos = butterworth(operation.kind, p["cutoff"], operation.rate, p["order"])
        self.state: dict[int, np.ndarray] = {}

    def step(self, series: Series, final: bool = False) -> Series:
        out = np.empty_like(series.values)
        alike: dict[int, list[tuple[int, slice]]] = {}
        for code, run in series.runs():
            alike.setdefault(run.stop - run.start, []).append((code, run))
        for runs in alike.values():
            values = np.stack([series.values[run] for _, run in runs])
            states = [self.state.get(code) for code, _ in runs]
            start = np.stack(
                [initial_state(self.sos, values[i, 0]) if state is None else state for i, state in enumerate(states)],
                axis=1,
            )
            filtered, end = signal.sosfilt(self.sos, values, axis=-1, zi=start)
            for i, (code, run) in enumerate(runs):
                out[run] = filtered[i]
                self.state[code] = end[:, i, :]
        return Series(series.codes, series.ts, out)
