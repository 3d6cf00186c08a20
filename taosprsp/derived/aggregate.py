"""The `groups` and `buckets` kinds: sum/count/min/max/mean per (group, bucket), folded columnar batch by batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import TICKS_PER_SECOND, Dataset
from taosprsp.derived.specs import KEY_COLUMN, DerivedSpec, group_field_type
from taosprsp.derived.update import DerivedUpdate


class AggregateState:
    """sum/count/min/max of value columns per held (group, bucket), folded in batch by batch.

    One slot per held pair, in numpy arrays indexed by slot (`group`, `bucket`, `live`, `sum`, ...); a
    state without a horizon has a single bucket. Specs that agree on group, columns, bucket and horizon
    share one state (the default grid and line chart do), so a batch is folded once for both.
    """

    def __init__(self, dataset: Dataset, precision: str, spec: DerivedSpec) -> None:
        self.group_by = spec.group_by
        self.columns = spec.columns
        self.group_type, self.group_shown_as = group_field_type(dataset, spec.group_by)
        self.time_column = dataset.timestamp.name
        self.precision = precision
        self.bucket_ticks = max(1, round(spec.bucket_seconds * TICKS_PER_SECOND[precision]))
        self.held_buckets = spec.held_buckets
        self.newest_bucket: int | None = None
        self.rows_ignored = 0
        self.group_values: list[Any] = []
        self._group_array = pa.array([], self.group_type)
        self._codes: dict[Any, int] = {}
        self._slot_of: dict[tuple[int, int], int] = {}
        self._free: list[int] = []
        width = len(spec.columns)
        self.group = np.zeros(0, np.int64)
        self.bucket = np.zeros(0, np.int64)
        self.live = np.zeros(0, bool)
        self.sum = np.zeros((0, width))
        self.count = np.zeros((0, width), np.int64)
        self.min = np.zeros((0, width))
        self.max = np.zeros((0, width))

    @property
    def bucketed(self) -> bool:
        return self.held_buckets is not None

    @property
    def first_held_bucket(self) -> int | None:
        """The oldest bucket still held; rows older than it are ignored."""
        if self.held_buckets is None or self.newest_bucket is None:
            return None
        return self.newest_bucket - self.held_buckets + 1

    def fold(self, rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Fold a batch of raw rows (store layout) in; returns the slots it touched and the slots it retired.

        Retired slots are free for reuse by the next fold, but their group and bucket stay readable until then.
        """
        nothing = np.zeros(0, np.int64)
        if rows.num_rows == 0:
            return nothing, nothing
        ts = rows[self.time_column].to_numpy()
        buckets = ts // self.bucket_ticks if self.bucketed else np.zeros(len(ts), np.int64)
        if self.bucketed:
            newest = int(buckets.max())
            self.newest_bucket = newest if self.newest_bucket is None else max(self.newest_bucket, newest)
            held = buckets >= self.first_held_bucket
            if not held.all():
                self.rows_ignored += int((~held).sum())
                rows, buckets = rows.filter(pa.array(held)), buckets[held]
        touched = self._merge(rows, buckets) if rows.num_rows else nothing
        return touched, self._retire()

    def _merge(self, rows: pa.Table, buckets: np.ndarray) -> np.ndarray:
        """Aggregate the batch per (group, bucket) and add it to the state; returns the slots touched."""
        encoded = pc.dictionary_encode(rows[self.group_by].combine_chunks(), null_encoding="encode")
        codes = self._codes_of(encoded.dictionary.to_pylist())
        first = int(buckets.min())
        span = int(buckets.max()) - first + 1
        keys = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64) * span + (buckets - first)
        size = len(codes) * span
        if size > 4 * len(keys) + 1024:  # sparse keys: compact them through a sort
            distinct, pair = np.unique(keys, return_inverse=True)
        else:  # dense keys: compact them without one
            distinct = np.flatnonzero(np.bincount(keys, minlength=size))
            position = np.empty(size, np.int64)
            position[distinct] = np.arange(len(distinct))
            pair = position[keys]
        pairs = len(distinct)
        rows_per_pair = np.bincount(pair, minlength=pairs)
        width = len(self.columns)
        sums, counts = np.zeros((pairs, width)), np.zeros((pairs, width), np.int64)
        mins, maxs = np.full((pairs, width), np.inf), np.full((pairs, width), -np.inf)
        for i, name in enumerate(self.columns):
            column = rows[name].combine_chunks().cast(pa.float64(), safe=False)  # BIGINT beyond 2^53: nearest
            if column.null_count:
                valid = column.is_valid().to_numpy(zero_copy_only=False)
                values = column.fill_null(0.0).to_numpy()
                counts[:, i] = np.bincount(pair, weights=valid, minlength=pairs)
                sums[:, i] = np.bincount(pair, weights=values, minlength=pairs)
                np.minimum.at(mins[:, i], pair[valid], values[valid])
                np.maximum.at(maxs[:, i], pair[valid], values[valid])
            else:
                values = column.to_numpy()
                counts[:, i] = rows_per_pair
                sums[:, i] = np.bincount(pair, weights=values, minlength=pairs)
                np.minimum.at(mins[:, i], pair, values)
                np.maximum.at(maxs[:, i], pair, values)
        slots = self._slots(codes[distinct // span], distinct % span + first)
        self.sum[slots] += sums
        self.count[slots] += counts
        self.min[slots] = np.minimum(self.min[slots], mins)
        self.max[slots] = np.maximum(self.max[slots], maxs)
        return slots

    def _codes_of(self, values: list[Any]) -> np.ndarray:
        """Each group value as a small integer, stable across batches."""
        for value in values:
            if value not in self._codes:
                self._codes[value] = len(self.group_values)
                self.group_values.append(value)
                self._group_array = pa.array(self.group_values, self.group_type)
        return np.asarray([self._codes[value] for value in values], np.int64)

    def _slots(self, groups: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """The slot of each (group, bucket), allocating empty ones for pairs not held yet."""
        slots = np.empty(len(groups), np.int64)
        for i, pair in enumerate(zip(groups.tolist(), buckets.tolist(), strict=True)):
            slot = self._slot_of.get(pair)
            if slot is None:
                slot = self._allocate()
                self._slot_of[pair] = slot
                self.group[slot], self.bucket[slot] = pair
            slots[i] = slot
        return slots

    def _allocate(self) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.live[slot] = True
        self.sum[slot], self.count[slot] = 0.0, 0
        self.min[slot], self.max[slot] = np.inf, -np.inf
        return slot

    def _grow(self) -> None:
        old = len(self.live)
        new = max(64, 2 * old)

        def grown(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((new, *array.shape[1:]), array.dtype)
            bigger[:old] = array
            return bigger

        self.group, self.bucket, self.live = grown(self.group), grown(self.bucket), grown(self.live)
        self.sum, self.count, self.min, self.max = grown(self.sum), grown(self.count), grown(self.min), grown(self.max)
        self._free.extend(range(new - 1, old - 1, -1))

    def _retire(self) -> np.ndarray:
        """Free the slots of buckets that fell behind the horizon; returns them."""
        first = self.first_held_bucket
        if first is None:
            return np.zeros(0, np.int64)
        retired = np.flatnonzero(self.live & (self.bucket < first))
        for slot in retired.tolist():
            del self._slot_of[(int(self.group[slot]), int(self.bucket[slot]))]
        self.live[retired] = False
        self._free.extend(retired.tolist())
        return retired

    def groups_array(self, codes: np.ndarray) -> pa.Array:
        groups = self._group_array.take(pa.array(codes, pa.int64()))
        return groups.cast(pa.string()) if self.group_shown_as == "string" else groups  # `perspective = "string"`


class AggregateTable:
    """One `groups` or `buckets` table: what a fold changed in its state, as Perspective rows and removals."""

    def __init__(self, spec: DerivedSpec, state: AggregateState) -> None:
        self.spec = spec
        self.state = state

    def project(self, touched: np.ndarray, retired: np.ndarray) -> DerivedUpdate:
        state = self.state
        if self.spec.kind == "buckets":
            removed = self._keys(retired).to_pylist() if len(retired) else []
            return DerivedUpdate(self.spec.name, self._bucket_rows(touched), removed)
        return self._group_update(np.union1d(state.group[touched], state.group[retired]))

    def _keys(self, slots: np.ndarray) -> pa.Array:
        groups = self.state.groups_array(self.state.group[slots]).cast(pa.string())
        return pc.binary_join_element_wise(groups, pa.array(self.state.bucket[slots]).cast(pa.string()), "|")

    def _bucket_rows(self, slots: np.ndarray) -> pa.Table:
        state = self.state
        prefix = {
            KEY_COLUMN: self._keys(slots),
            self.spec.group_by: state.groups_array(state.group[slots]),
            state.time_column: pa.array(state.bucket[slots] * state.bucket_ticks, pa.int64()).cast(
                pa.timestamp(state.precision)
            ),
        }
        return self._output(prefix, state.sum[slots], state.count[slots], state.min[slots], state.max[slots])

    def _group_update(self, codes: np.ndarray) -> DerivedUpdate:
        """Rows of the groups in `codes` (their held buckets combined); groups left with none are removed."""
        state = self.state
        live = np.flatnonzero(state.live)
        live = live[np.isin(state.group[live], codes)]
        position = np.searchsorted(codes, state.group[live])  # `codes` is sorted
        order = np.argsort(position, kind="stable")
        live, position = live[order], position[order]
        held = np.zeros(len(codes), bool)
        if len(live):
            # one reduction per aggregate over every column, at the first slot of each group
            starts = np.flatnonzero(np.append(True, position[1:] != position[:-1]))
            held[position[starts]] = True
            sums = np.add.reduceat(state.sum[live], starts, axis=0)
            counts = np.add.reduceat(state.count[live], starts, axis=0)
            mins = np.minimum.reduceat(state.min[live], starts, axis=0)
            maxs = np.maximum.reduceat(state.max[live], starts, axis=0)
            rows = self._output({self.spec.group_by: state.groups_array(codes[held])}, sums, counts, mins, maxs)
        else:
            width = len(self.spec.columns)
            nothing = np.zeros((0, width))
            rows = self._output(
                {self.spec.group_by: state.groups_array(codes[held])},
                nothing,
                nothing.astype(np.int64),
                nothing,
                nothing,
            )
        return DerivedUpdate(self.spec.name, rows, state.groups_array(codes[~held]).to_pylist())

    def _output(
        self, prefix: dict[str, pa.Array], sums: np.ndarray, counts: np.ndarray, mins: np.ndarray, maxs: np.ndarray
    ) -> pa.Table:
        """Perspective-ready rows: the prefix columns, then `<column>_<aggregate>`; empty aggregates are null."""
        columns = dict(prefix)
        count_type = pa.int32() if self.state.bucketed else pa.float64()
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        for i, name in enumerate(self.spec.columns):
            empty = counts[:, i] == 0
            mask = empty if empty.any() else None
            values = {"sum": sums[:, i], "min": mins[:, i], "max": maxs[:, i], "mean": means[:, i]}
            for aggregate in self.spec.aggregates:
                if aggregate == "count":
                    columns[f"{name}_count"] = pa.array(counts[:, i].astype(count_type.to_pandas_dtype()))
                else:
                    columns[f"{name}_{aggregate}"] = pa.array(values[aggregate], pa.float64(), mask=mask)
        return pa.table(columns)
