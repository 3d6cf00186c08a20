"""The `groups` and `pivot` kinds: sum/count/min/max/mean per (group, bucket), folded columnar batch by batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import TICKS_PER_SECOND, Dataset
from taosprsp.derived.specs import SLOT_COLUMN, DerivedSpec, group_field_type
from taosprsp.derived.update import DerivedUpdate


@dataclass(frozen=True)
class FoldedPairs:
    """One fold's aggregates of each (group, bucket) pair it touched, by the pair's slot, over every column."""

    slots: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray


class AggregateState:
    """sum/count/min/max of value columns per held (group, bucket), folded in batch by batch.

    One slot per held pair, in numpy arrays indexed by slot (`group`, `bucket`, `live`, `sum`, ...); a
    state without a horizon has a single bucket. Specs that agree on group, bucket and horizon share one
    state folding the columns any of them needs (the default grid and line chart do), so a batch is folded
    once for both.
    """

    def __init__(self, dataset: Dataset, precision: str, spec: DerivedSpec, columns: tuple[str, ...]) -> None:
        self.group_by = spec.group_by
        self.columns = columns
        self.group_type, self.group_shown_as = group_field_type(dataset, spec.group_by)
        self.time_column = dataset.timestamp.name
        self.precision = precision
        self.bucket_ticks = max(1, round(spec.bucket_seconds * TICKS_PER_SECOND[precision]))
        self.held_buckets = spec.held_buckets
        self.newest_bucket: int | None = None
        self.rows_ignored = 0
        self.last_fold: FoldedPairs | None = None
        """What the last `fold` added, per (group, bucket) slot: tables that keep totals add it to theirs."""
        self.group_values: list[Any] = []
        self._group_array = pa.array([], self.group_type)
        self._codes: dict[Any, int] = {}
        self._slot_of: dict[tuple[int, int], int] = {}
        self._free: list[int] = []
        width = len(columns)
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
        self.last_fold = None
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
        self.last_fold = FoldedPairs(slots, sums, counts, mins, maxs)
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

    def slots_of(self, value: Any, buckets: np.ndarray) -> np.ndarray:
        """The slot of group `value` in each of `buckets`; -1 where it has none held."""
        code = self._codes.get(value)
        return np.asarray([self._slot_of.get((code, bucket), -1) for bucket in buckets.tolist()], np.int64)

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
    """One `groups` table: what a fold changed in its state, as Perspective rows and removals.

    It keeps each group's totals over its held buckets: a fold adds what it folded, and a fold that retires
    buckets (once per bucket width) recounts them from the held slots, which a min or max cannot do by
    subtraction; so a batch costs in proportion to the pairs it touched, not to the buckets held.
    """

    def __init__(self, spec: DerivedSpec, state: AggregateState) -> None:
        self.spec = spec
        self.state = state
        self._at = [state.columns.index(name) for name in spec.columns]
        """Where each of the spec's columns is among the state's."""
        self._totals: FoldedPairs | None = None
        """Per group code (`slots`: how many held slots it has), the aggregates of its held buckets."""

    def project(self, touched: np.ndarray, retired: np.ndarray) -> DerivedUpdate:
        state = self.state
        if len(retired) or self._totals is None or len(state.group_values) > len(self._totals.slots):
            self._totals = self._recount()
        elif state.last_fold is not None:
            self._add(state.last_fold)
        return self._group_update(np.union1d(state.group[touched], state.group[retired]))

    def _recount(self) -> FoldedPairs:
        state, at = self.state, self._at
        groups, width = len(state.group_values), len(self._at)
        live = np.flatnonzero(state.live)
        group = state.group[live]
        totals = FoldedPairs(
            np.bincount(group, minlength=groups),
            np.zeros((groups, width)),
            np.zeros((groups, width), np.int64),
            np.full((groups, width), np.inf),
            np.full((groups, width), -np.inf),
        )
        np.add.at(totals.sums, group, state.sum[live][:, at])
        np.add.at(totals.counts, group, state.count[live][:, at])
        np.minimum.at(totals.mins, group, state.min[live][:, at])
        np.maximum.at(totals.maxs, group, state.max[live][:, at])
        return totals

    def _add(self, folded: FoldedPairs) -> None:
        """Add a fold that retired nothing: its slots are held, so their groups have held slots already."""
        totals, at = self._totals, self._at
        assert totals is not None
        group = self.state.group[folded.slots]
        np.add.at(totals.sums, group, folded.sums[:, at])
        np.add.at(totals.counts, group, folded.counts[:, at])
        np.minimum.at(totals.mins, group, folded.mins[:, at])
        np.maximum.at(totals.maxs, group, folded.maxs[:, at])
        np.maximum.at(totals.slots, group, 1)

    def _group_update(self, codes: np.ndarray) -> DerivedUpdate:
        """Rows of the groups in `codes` (their held buckets combined); groups left with none are removed."""
        totals = self._totals
        assert totals is not None
        held = totals.slots[codes] > 0
        kept = codes[held]
        group_values = self.state.groups_array
        rows = self._output(
            {self.spec.group_by: group_values(kept)},
            totals.sums[kept],
            totals.counts[kept],
            totals.mins[kept],
            totals.maxs[kept],
        )
        return DerivedUpdate(self.spec.name, rows, group_values(codes[~held]).to_pylist())

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


class PivotTable:
    """One `pivot` table: a row per held bucket, in the ring slot `bucket % held_buckets`, with the mean of the
    spec's column for each of its group values (null where the bucket has none)."""

    def __init__(self, spec: DerivedSpec, state: AggregateState) -> None:
        assert spec.held_buckets is not None, "DerivedSpec checks that a pivot table has a horizon"
        self.spec = spec
        self.state = state
        self.ring = spec.held_buckets
        self._at = state.columns.index(spec.columns[0])
        self._series = spec.series_columns(state.time_column)

    @property
    def groups_not_charted(self) -> list[Any]:
        """Group values folded so far that have no column (they came after the table was declared)."""
        charted = set(self.spec.groups)
        return [value for value in self.state.group_values if value not in charted]

    def project(self, touched: np.ndarray, retired: np.ndarray) -> DerivedUpdate:
        state = self.state
        buckets = np.unique(state.bucket[touched])
        removed = set((np.unique(state.bucket[retired]) % self.ring).tolist()) - set((buckets % self.ring).tolist())
        columns: dict[str, pa.Array] = {
            SLOT_COLUMN: pa.array(buckets % self.ring, pa.int32()),
            state.time_column: pa.array(buckets * state.bucket_ticks, pa.int64()).cast(pa.timestamp(state.precision)),
        }
        # a row per charted group, a column per touched bucket: -1 where the group has no slot in the bucket
        shape = (len(self.spec.groups), len(buckets))
        slots = np.array([state.slots_of(value, buckets) for value in self.spec.groups], np.int64).reshape(shape)
        found = slots >= 0
        counts = np.where(found, state.count[slots, self._at], 0)
        sums = np.where(found, state.sum[slots, self._at], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        for name, mean, empty in zip(self._series, means, counts == 0, strict=True):
            columns[name] = pa.array(mean, pa.float64(), mask=empty)  # no rows in the bucket, or only nulls
        return DerivedUpdate(self.spec.name, pa.table(columns), sorted(removed))
