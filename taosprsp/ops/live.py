"""Live operation tables: what each batch's operation outputs change in small Perspective tables.

- A time series (a filter, a conversion, a resample, a shift) is a ring of the last `points` samples per
  subtable, indexed by `rid` = subtable code * points + sample number mod points: a new sample overwrites
  its subtable's oldest, so the table never holds more than points rows per subtable. A filter's or a
  conversion's table also holds the input sample beside the output, so one chart shows raw and result.
- A spectrum holds the latest spectrum of each subtable, one row per frequency, indexed by
  `rid` = subtable code * frequencies + frequency index: a refresh overwrites the subtable's rows.

Only the last `points` samples (the latest spectrum) of a subtable in a batch are sent to Perspective.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.ops.declare import INDEX_COLUMN, Operation
from taosprsp.ops.pipeline import Pipeline
from taosprsp.ops.series import Frames, Series, grown
from taosprsp.ops.spectrum import SpectrumState

FREQUENCY_COLUMN = "frequency"
MAGNITUDE_COLUMN = "magnitude"


def operation_table_name(table: str, operation: str) -> str:
    """The live Perspective table, and the store's derived table, of operation `operation` of `table`."""
    return f"{table}_{operation}"


def perspective_schema(operation: Operation, dataset: Dataset) -> dict[str, str]:
    """Column name -> Perspective type of an operation's live table."""
    schema = {INDEX_COLUMN: "integer", SUBTABLE_COLUMN: "string", dataset.timestamp.name: "datetime"}
    if operation.is_spectrum:
        return {**schema, FREQUENCY_COLUMN: "float", MAGNITUDE_COLUMN: "float"}
    if operation.keeps_time:
        schema[operation.input] = "float"
    return {**schema, operation.name: "float"}


def _positions(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For codes in runs: each entry's position in its run, and the length of its run."""
    edges = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [len(codes)]]))
    return np.arange(len(codes)) - np.repeat(starts, lengths), np.repeat(lengths, lengths)


class OperationTables:
    """The live tables of declared operations: `apply` runs a batch through the pipeline and returns, per
    table, the rows to upsert."""

    def __init__(self, dataset: Dataset, precision: Precision, tables: Sequence[tuple[str, Operation]]) -> None:
        self.tables = tuple(tables)
        self.names = tuple(name for name, _ in self.tables)
        self.time_column = dataset.timestamp.name
        self.timestamp_type = pa.timestamp(precision)
        self.pipeline = Pipeline([operation for _, operation in self.tables], dataset, precision)
        self.samples_kept = {name: np.zeros(0, np.int64) for name, _ in self.tables}

    def apply(self, rows: pa.Table) -> list[tuple[str, pa.Table]]:
        step = self.pipeline.step(rows)
        changed = []
        for name, operation in self.tables:
            output = step.outputs[operation.name]
            if isinstance(output, Frames):
                update = self._spectrum_rows(output)
            else:
                update = self._ring_rows(name, operation, step.inputs[operation.name], output)
            if update.num_rows:
                changed.append((name, update))
        return changed

    @property
    def samples_ignored(self) -> int:
        """Samples that came older than their subtable's newest (late), so no operation took them."""
        return self.pipeline.samples_ignored

    @property
    def windows_skipped(self) -> dict[str, int]:
        """Per spectrum operation, the windows left out because their samples were not evenly spaced."""
        states = self.pipeline.states
        return {name: state.windows_skipped for name, state in states.items() if isinstance(state, SpectrumState)}

    @property
    def last_problem(self) -> str:
        """The latest reason a spectrum window was skipped, or empty."""
        states = self.pipeline.states.values()
        return next((s.last_problem for s in states if isinstance(s, SpectrumState) and s.last_problem), "")

    def _prefix(self, codes: np.ndarray, ts: np.ndarray, rid: np.ndarray) -> dict[str, pa.Array]:
        return {
            INDEX_COLUMN: pa.array(rid.astype(np.int32)),
            SUBTABLE_COLUMN: self.pipeline.codes.names_of(codes),
            self.time_column: pa.array(ts, pa.int64()).cast(self.timestamp_type),
        }

    def _ring_rows(self, name: str, operation: Operation, source: Series, output: Series) -> pa.Table:
        """The last `points` output samples of each subtable, each in its ring slot."""
        if not len(output):
            return pa.table({})
        position, length = _positions(output.codes)
        recent = position >= length - operation.points
        codes = output.codes[recent]
        kept = self.samples_kept[name] = grown(self.samples_kept[name], len(self.pipeline.codes.names), 0)
        rid = codes * operation.points + (kept[codes] + position[recent]) % operation.points
        np.add.at(kept, output.codes, 1)
        columns = self._prefix(codes, output.ts[recent], rid)
        if operation.keeps_time:
            columns[operation.input] = pa.array(source.values[recent])
        columns[operation.name] = pa.array(output.values[recent])
        return pa.table(columns)

    def _spectrum_rows(self, frames: Frames) -> pa.Table:
        """The latest spectrum of each subtable that has a new one, one row per frequency."""
        if not len(frames):
            return pa.table({})
        latest = np.flatnonzero(np.concatenate([frames.codes[1:] != frames.codes[:-1], [True]]))
        bins = len(frames.frequencies)
        codes = np.repeat(frames.codes[latest], bins)
        rid = codes * bins + np.tile(np.arange(bins), len(latest))
        columns = self._prefix(codes, np.repeat(frames.ts[latest], bins), rid)
        columns[FREQUENCY_COLUMN] = pa.array(np.tile(frames.frequencies, len(latest)))
        columns[MAGNITUDE_COLUMN] = pa.array(frames.magnitudes[latest].ravel())
        return pa.table(columns)
