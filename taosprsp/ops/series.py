"""Samples in flight between operations: per subtable, in time order, as numpy arrays.

A batch of raw rows (any order, several subtables) becomes one `Series` per input column: the rows sorted
by (subtable, time) once with a lexsort, so that each subtable's samples are one contiguous run that an
operation hands to numpy or scipy in one call. Subtables are small integer codes, stable from batch to
batch, so that per-subtable state lives in arrays and dictionaries indexed by code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Series:
    """Samples of several subtables: `codes[i]` is sample i's subtable, sorted by (code, ts)."""

    codes: np.ndarray
    ts: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def runs(self) -> Iterator[tuple[int, slice]]:
        """(code, slice) of each subtable's contiguous run."""
        if not len(self.codes):
            return
        edges = np.flatnonzero(self.codes[1:] != self.codes[:-1]) + 1
        starts = np.concatenate([[0], edges]).tolist()
        stops = np.concatenate([edges, [len(self.codes)]]).tolist()
        for start, stop in zip(starts, stops, strict=True):
            yield int(self.codes[start]), slice(start, stop)

    @staticmethod
    def empty() -> Series:
        return Series(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    @staticmethod
    def concat(parts: list[Series]) -> Series:
        """Parts of distinct subtables, each sorted, as one series sorted by (code, ts)."""
        if not parts:
            return Series.empty()
        codes = np.concatenate([p.codes for p in parts])
        ts = np.concatenate([p.ts for p in parts])
        values = np.concatenate([p.values for p in parts])
        order = np.lexsort((ts, codes))
        return Series(codes[order], ts[order], values[order])


@dataclass(frozen=True)
class Frames:
    """Spectra: for each of `len(codes)` windows, its subtable, its last sample's time and the magnitude of
    every frequency in `frequencies` (one row of `magnitudes` per window)."""

    codes: np.ndarray
    ts: np.ndarray
    frequencies: np.ndarray
    magnitudes: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class SubtableCodes:
    """Subtable names as small integers, the same from batch to batch."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def encode(self, names: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """The code of each name (one dictionary lookup per distinct name, not per row)."""
        encoded = pc.dictionary_encode(names)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = np.asarray([self.code(name) for name in encoded.dictionary.to_pylist()], np.int64)
        return codes[encoded.indices.to_numpy(zero_copy_only=False)]

    def code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def names_of(self, codes: np.ndarray) -> pa.Array:
        return pa.array(self.names, pa.string()).take(pa.array(codes, pa.int64()))


def grown(array: np.ndarray, size: int, fill: int | float) -> np.ndarray:
    """`array` extended to at least `size` entries with `fill` (per-subtable state as new subtables appear)."""
    if len(array) >= size:
        return array
    return np.concatenate([array, np.full(size - len(array), fill, array.dtype)])
