"""Declared operations run together on batches of raw rows: each batch sorted once, each operation stepped
in order, an operation's output feeding the ones that take it as input.

The same pipeline serves the live feed (one step per batch, state kept between them) and a history run
(one subtable's stored range in one final step, which also closes what is still open, such as the last
resample bin). Samples of a subtable not newer than the newest one it already took are late: dropped and
counted, because filters and spectra need each subtable's samples in time order. NULL values are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.ops.declare import FILTERS, Operation
from taosprsp.ops.filters import FilterState
from taosprsp.ops.series import Frames, Series, SubtableCodes, grown
from taosprsp.ops.spectrum import SpectrumState
from taosprsp.ops.timing import ResampleState, ShiftState
from taosprsp.ops.units import ConvertState

NO_SAMPLE = np.iinfo(np.int64).min


class OperationState(Protocol):
    def step(self, series: Series, final: bool = False) -> Series | Frames: ...


def operation_state(
    operation: Operation, precision: Precision, codes: SubtableCodes, strict: bool = False
) -> OperationState:
    """The state that runs `operation` batch by batch."""
    if operation.kind in FILTERS:
        return FilterState(operation)
    if operation.kind == "convert":
        return ConvertState(operation)
    if operation.kind == "resample":
        return ResampleState(operation, precision)
    if operation.kind == "shift":
        return ShiftState(operation, precision)
    return SpectrumState(operation, precision, codes, strict)


@dataclass(frozen=True)
class Step:
    """What one step did: per operation, the series it took in and what it put out."""

    inputs: Mapping[str, Series]
    outputs: Mapping[str, Series | Frames]


class Pipeline:
    """The operations (upstream first, as `declare_operations` orders them) over one dataset's rows.

    `strict`: a spectrum window that is not evenly spaced is an error (a history run) rather than skipped.
    """

    def __init__(
        self, operations: Sequence[Operation], dataset: Dataset, precision: Precision, strict: bool = False
    ) -> None:
        self.operations = tuple(operations)
        self.time_column = dataset.timestamp.name
        self.codes = SubtableCodes()
        self.columns = sorted({op.input for op in self.operations} & {f.name for f in dataset.value_columns})
        self.states = {op.name: operation_state(op, precision, self.codes, strict) for op in self.operations}
        self.newest = np.zeros(0, np.int64)
        self.samples_ignored = 0

    def step(self, rows: pa.Table, final: bool = False, provided: Mapping[str, Series] | None = None) -> Step:
        """Run every operation on a batch of raw rows (store layout, any order).

        `final` closes what waits for later samples (a history run's end). `provided` gives the output of
        some operations computed elsewhere (a resample pushed down to the store's SQL): they are not run.
        """
        available = self.inputs(rows)
        inputs: dict[str, Series] = {}
        outputs: dict[str, Series | Frames] = {}
        for op in self.operations:
            inputs[op.name] = available.get(op.input, Series.empty())
            if provided is not None and op.name in provided:
                outputs[op.name] = provided[op.name]
            else:
                outputs[op.name] = self.states[op.name].step(inputs[op.name], final)
            if isinstance(outputs[op.name], Series):
                available[op.name] = outputs[op.name]
        return Step(inputs, outputs)

    def inputs(self, rows: pa.Table) -> dict[str, Series]:
        """The input columns' samples, sorted by (subtable, time), late ones and NULLs left out."""
        if rows.num_rows == 0:
            return {column: Series.empty() for column in self.columns}
        codes = self.codes.encode(rows[SUBTABLE_COLUMN])
        ts = rows[self.time_column].to_numpy()
        self.newest = grown(self.newest, len(self.codes.names), NO_SAMPLE)
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        # of samples with the same subtable and time (a row written twice), the last one read counts
        last_of_time = np.concatenate([(codes[1:] != codes[:-1]) | (ts[1:] != ts[:-1]), [True]])
        newer = ts > self.newest[codes]
        self.samples_ignored += int((~newer).sum())
        kept = newer & last_of_time
        order, codes, ts = order[kept], codes[kept], ts[kept]
        np.maximum.at(self.newest, codes, ts)
        taken = pa.array(order)
        series = {}
        for column in self.columns:
            values = pc.cast(rows[column].take(taken), pa.float64()).combine_chunks()
            if values.null_count:
                valid = values.is_valid().to_numpy(zero_copy_only=False)
                numbers = values.fill_null(0.0).to_numpy()
                series[column] = Series(codes[valid], ts[valid], numbers[valid])
            else:
                series[column] = Series(codes, ts, values.to_numpy())
        return series
