"""Derived tables: small Perspective tables kept up to date from the raw rows, for the dashboard's panels.

With a view attached, a Perspective 4.3.0 `table.update` costs time in proportion to the rows already in the
table, so a grouped view over the 100 k-row window makes every poll slow. The feed instead folds each batch
of raw rows into a few small tables that the panels view directly:

- `groups`: one row per group (e.g. per `location`) with sum, count, min, max and mean of each value
  column, over the last `horizon_seconds` (or since the feed started when the horizon is None);
- `buckets`: one row per time bucket and group, for line charts; buckets older than the horizon are
  retired (removed from the Perspective table), so the table holds horizon/bucket rows per group.

Both fold a batch columnar (numpy over the batch's rows), then merge the few (group, bucket) partials it
produced into a small state. A row whose bucket is still held updates it, even when it comes late; a row
older than the held buckets is ignored and counted in `rows_ignored`.

`derived_specs(config, dataset)` declares the tables `serve` hosts and the default dashboard views, from the
dataset (group tag, numeric columns) and `server.bucket` / `server.horizon`; `DerivedTables.host` creates
them on a Perspective client and `DerivedTables.push` folds a batch into them (the feed calls it for every
batch, before the latest table, so a row shown as latest is already in the aggregates).

A `DerivedSpec` is the single extension point. A new kind (a filter, a spectrum) plugs in as:
1. its name in `DerivedKind`, and the checks of its parameters in `DerivedSpec.__post_init__`;
2. a state class beside `AggregateState`: `fold(rows)` takes a batch in the store layout (any order, late
   rows included) and returns what it touched and retired;
3. a table class beside `AggregateTable`: `project(touched, retired)` returns a `DerivedUpdate`, and its
   schema in `DerivedSpec.perspective_schema`;
4. a branch in `DerivedTables.__init__` that builds them, sharing a state between specs that fold alike;
5. the spec added to `derived_specs`, so that serve hosts it and a panel can name it.
Nothing in the feed or serve changes: they host and push whatever `derived_specs` declares.

The signal operations declared in the config (`[operations.NAME]`, `taosprsp.ops`) are the kinds `series` and
`spectrum`: each spec carries its `Operation`, and all of them run together in one `OperationTables`
(operations chain, so they step in order on each batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.config import Config, ServerSettings, format_duration
from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset
from taosprsp.errors import ConfigError
from taosprsp.ops.declare import INDEX_COLUMN, Operation, declare_operations
from taosprsp.ops.live import OperationTables, operation_table_name, perspective_schema

DerivedKind = Literal["groups", "buckets", "series", "spectrum"]
OPERATION_KINDS = ("series", "spectrum")
AGGREGATES = ("sum", "count", "min", "max", "mean")
KEY_COLUMN = "key"
DEFAULT_BUCKET_SECONDS = ServerSettings.bucket
DEFAULT_HORIZON_SECONDS = ServerSettings.horizon
MAX_CHART_CELLS = 4_000
"""The most cells (rows x split columns) the line chart of Perspective 4.3.0 draws: `max_cells` of the d3fc
"Y Line" plugin. Beyond it the chart draws only its first (oldest) rows and says "Rendering N% of points"."""
PREFILL_MAX_ROWS = 1_000_000
"""The most stored rows older than the window snapshot that `serve` folds in at start (about a second or
two): at 10 k rows/s a 5-minute horizon holds 3 M rows, and the derived tables then start shorter."""
PREFILL_SLICE_ROWS = 100_000
"""About how many rows each read of the prefill takes, so its memory stays small."""


@dataclass(frozen=True)
class DerivedSpec:
    """One derived table: its Perspective name, kind, grouping tag, value columns and aggregates.

    `bucket_seconds` is the width of a time bucket (`buckets`, and `groups` with a horizon, which sums its
    buckets); `horizon_seconds` is how far behind the newest bucket a bucket is still held (None: never
    retired, only for `groups`).
    """

    name: str
    kind: DerivedKind
    group_by: str
    columns: tuple[str, ...]
    aggregates: tuple[str, ...] = AGGREGATES
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS
    horizon_seconds: float | None = DEFAULT_HORIZON_SECONDS
    operation: Operation | None = None
    """The signal operation whose output a `series` or `spectrum` table hosts (`taosprsp.ops`)."""

    def __post_init__(self) -> None:
        if self.kind in OPERATION_KINDS:
            if self.operation is None:
                raise ConfigError(f"derived table {self.name}: a {self.kind} table needs its operation")
            return
        if self.kind not in ("groups", "buckets"):
            raise ConfigError(
                f"derived table {self.name}: kind must be one of groups, buckets, {', '.join(OPERATION_KINDS)}; "
                f"got {self.kind!r}"
            )
        unknown = sorted(set(self.aggregates) - set(AGGREGATES))
        if unknown or not self.aggregates:
            raise ConfigError(
                f"derived table {self.name}: aggregates must be among {', '.join(AGGREGATES)}, "
                f"got {', '.join(unknown) or 'none'}"
            )
        if not self.columns:
            raise ConfigError(f"derived table {self.name}: name at least one value column")
        if not self.bucket_seconds > 0:
            raise ConfigError(f"derived table {self.name}: bucket_seconds must be positive, got {self.bucket_seconds}")
        if self.horizon_seconds is None and self.kind == "buckets":
            raise ConfigError(
                f"derived table {self.name}: a bucket table needs horizon_seconds, or it grows without end"
            )
        if self.horizon_seconds is not None and self.horizon_seconds < self.bucket_seconds:
            raise ConfigError(
                f"derived table {self.name}: horizon_seconds must be at least one bucket ({self.bucket_seconds} s)"
            )

    @property
    def index(self) -> str:
        """The column the Perspective table is indexed by: the group, a `group|bucket` key, or an operation's `rid`."""
        if self.operation is not None:
            return INDEX_COLUMN
        return self.group_by if self.kind == "groups" else KEY_COLUMN

    @property
    def held_buckets(self) -> int | None:
        """How many buckets (counting the newest) are held; None when nothing is retired."""
        if self.horizon_seconds is None:
            return None
        # the epsilon keeps float noise (0.3 / 0.1 = 2.9999999999999996) from adding a bucket
        return max(1, math.ceil(self.horizon_seconds / self.bucket_seconds - 1e-9))

    def output_columns(self) -> list[str]:
        return [f"{column}_{aggregate}" for column in self.columns for aggregate in self.aggregates]

    def perspective_schema(self, dataset: Dataset) -> dict[str, str]:
        """Column name -> Perspective type, for `client.table(schema, index=spec.index, name=spec.name)`."""
        if self.operation is not None:
            return perspective_schema(self.operation, dataset)
        schema: dict[str, str] = {}
        if self.kind == "buckets":
            schema[KEY_COLUMN] = "string"
        schema[self.group_by] = _group_field_type(dataset, self.group_by)[1]
        if self.kind == "buckets":
            schema[dataset.timestamp.name] = "datetime"
        # counts since the feed started can pass Perspective's 32-bit integers; within a horizon they cannot
        count_type = "integer" if self.horizon_seconds is not None else "float"
        for name in self.output_columns():
            schema[name] = count_type if name.endswith("_count") else "float"
        return schema


def _group_field_type(dataset: Dataset, name: str) -> tuple[pa.DataType, str]:
    if name == SUBTABLE_COLUMN:
        return pa.string(), "string"
    try:
        f = dataset.field(name)
    except KeyError:
        raise ConfigError(f"derived tables: {dataset.name} has no column or tag {name!r} to group by") from None
    if f.is_time:
        raise ConfigError(f"derived tables: group by a tag, not the time column {name!r}")
    return f.spec.arrow, f.perspective


def numeric_columns(dataset: Dataset) -> tuple[str, ...]:
    """The value columns that can be summed: not times, not strings (nor numbers shown as strings, such as ids)."""
    return tuple(f.name for f in dataset.value_columns if not f.is_time and f.is_numeric)


def groups_table_name(table: str, group_by: str) -> str:
    return f"{table}_by_{group_by}"


def buckets_table_name(table: str, group_by: str, bucket_seconds: float) -> str:
    width = f"{bucket_seconds:g}s" if bucket_seconds >= 1 else f"{bucket_seconds * 1000:g}ms"
    return f"{table}_{group_by}_{width}"


def default_specs(
    dataset: Dataset,
    table: str,
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    horizon_seconds: float = DEFAULT_HORIZON_SECONDS,
) -> tuple[DerivedSpec, ...]:
    """The derived tables the default dashboard views: per-group aggregates and per-bucket, per-group ones.

    Both cover the same horizon, so the grid and the line chart describe the same span of time.
    """
    columns = numeric_columns(dataset)
    group = dataset.group_tag
    return (
        DerivedSpec(
            groups_table_name(table, group),
            "groups",
            group,
            columns,
            bucket_seconds=bucket_seconds,
            horizon_seconds=horizon_seconds,
        ),
        DerivedSpec(
            buckets_table_name(table, group, bucket_seconds),
            "buckets",
            group,
            columns,
            bucket_seconds=bucket_seconds,
            horizon_seconds=horizon_seconds,
        ),
    )


def group_count(dataset: Dataset, tables: int) -> int:
    """How many groups `tables` subtables of `dataset` fall into, by the group tag's declared values."""
    if dataset.group_tag == SUBTABLE_COLUMN:
        return tables
    return len(set(dataset.field(dataset.group_tag).tag_values(tables).to_pylist()))


def derived_specs(config: Config, dataset: Dataset) -> tuple[DerivedSpec, ...]:
    """The derived tables `serve` hosts and the default dashboard views: `default_specs` at `server.bucket` and
    `server.horizon` (none for a dataset without a numeric column), and one table per declared operation
    (`operation_specs`).

    The line chart over the buckets table draws at most `MAX_CHART_CELLS` points (buckets x groups). A horizon
    set in the config that passes it is refused (ConfigError); the default one is shortened to fit.
    """
    operations = operation_specs(config, dataset)
    if not numeric_columns(dataset):
        return operations
    bucket, horizon = config.server.bucket, config.server.horizon
    groups = group_count(dataset, config.dataset.tables)
    fits = bucket * max(1, MAX_CHART_CELLS // groups)
    chosen = [key for key in ("server.horizon", "server.bucket") if key in config.origins]
    if horizon > fits and not chosen:
        horizon = fits
    specs = default_specs(dataset, config.perspective_table, bucket, horizon)
    cells = max(spec.held_buckets or 1 for spec in specs) * groups
    if cells > MAX_CHART_CELLS and chosen:
        where = ", ".join(f"{key} in {config.origins[key]}" for key in chosen)
        raise ConfigError(
            f"{where}: {format_duration(horizon)} of {format_duration(bucket)} buckets x {groups} "
            f"{dataset.group_tag} values = {cells:,} points, more than the line chart draws ({MAX_CHART_CELLS:,}); "
            f"use a horizon of at most {format_duration(fits)} or wider buckets"
        )
    return (*specs, *operations)


def operation_specs(config: Config, dataset: Dataset) -> tuple[DerivedSpec, ...]:
    """One table per operation of `[operations.NAME]`, checked against `dataset` (ConfigError naming the key)."""
    where = config.origins.get("operations", config.source)
    return tuple(
        DerivedSpec(
            operation_table_name(config.perspective_table, operation.name),
            "spectrum" if operation.is_spectrum else "series",
            SUBTABLE_COLUMN,
            (operation.input,),
            horizon_seconds=None,
            operation=operation,
        )
        for operation in declare_operations(config.operations, dataset, where)
    )


@dataclass
class DerivedUpdate:
    """What one batch changed in one derived table: rows to upsert (Arrow, Perspective-ready) and keys to remove."""

    name: str
    rows: pa.Table
    removed: list[Any] = field(default_factory=list)

    def push(self, table: Any) -> None:
        """Apply to the Perspective table: removals first (an upserted key is never among them)."""
        if self.removed:
            table.remove(self.removed)
        if self.rows.num_rows:
            table.update(self.rows)


def _check(spec: DerivedSpec, dataset: Dataset) -> None:
    """A spec names a grouping tag and numeric value columns of the dataset."""
    _group_field_type(dataset, spec.group_by)
    for name in spec.columns:
        if name not in numeric_columns(dataset):
            raise ConfigError(f"derived table {spec.name}: {name!r} is not a numeric value column of {dataset.name}")


class AggregateState:
    """sum/count/min/max of value columns per held (group, bucket), folded in batch by batch.

    One slot per held pair, in numpy arrays indexed by slot (`group`, `bucket`, `live`, `sum`, ...); a
    state without a horizon has a single bucket. Specs that agree on group, columns, bucket and horizon
    share one state (the default grid and line chart do), so a batch is folded once for both.
    """

    def __init__(self, dataset: Dataset, precision: str, spec: DerivedSpec) -> None:
        self.group_by = spec.group_by
        self.columns = spec.columns
        self.group_type, self.group_shown_as = _group_field_type(dataset, spec.group_by)
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


class DerivedTables:
    """All derived tables of one feed: each batch is folded once per shared state, then projected per table."""

    def __init__(self, dataset: Dataset, precision: str, specs: tuple[DerivedSpec, ...]) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"derived tables: names must be unique, got {', '.join(names)}")
        states: dict[tuple, AggregateState] = {}
        self.tables: list[AggregateTable] = []
        operations = [(spec.name, spec.operation) for spec in specs if spec.operation is not None]
        self.operations = OperationTables(dataset, precision, operations) if operations else None
        """The declared signal operations, run together on each batch."""
        for spec in specs:
            if spec.operation is not None:
                continue
            _check(spec, dataset)
            shared = (spec.group_by, spec.columns, spec.held_buckets and spec.bucket_seconds, spec.held_buckets)
            state = states.setdefault(shared, AggregateState(dataset, precision, spec))
            self.tables.append(AggregateTable(spec, state))
        self.states = list(states.values())
        self.specs = specs
        self.dataset = dataset
        self.hosted: dict[str, Any] = {}
        """The Perspective tables `push` updates, by name (see `host`)."""

    def host(self, client: Any) -> dict[str, Any]:
        """Create one Perspective table per spec on `client`, under the spec's name; `push` keeps them current."""
        self.hosted = {
            spec.name: client.table(spec.perspective_schema(self.dataset), index=spec.index, name=spec.name)
            for spec in self.specs
        }
        return self.hosted

    def apply(self, rows: pa.Table, older: bool = False) -> list[DerivedUpdate]:
        """Fold a batch of raw rows (store layout, times as epoch integers) in; returns each table's change.

        `older`: rows stamped before those already folded (the feed's prefill at start). The aggregates take
        them; the operations, which take each subtable's samples in time order, leave them out.
        """
        folded = {id(state): state.fold(rows) for state in self.states}
        updates = [table.project(*folded[id(table.state)]) for table in self.tables]
        if self.operations is not None and not older:
            updates.extend(DerivedUpdate(name, changed) for name, changed in self.operations.apply(rows))
        return updates

    def push(self, rows: pa.Table, older: bool = False) -> None:
        """Fold a batch in (`older`: see `apply`) and apply each table's change to its hosted Perspective table."""
        for update in self.apply(rows, older):
            update.push(self.hosted[update.name])

    def first_held(self, newest: int) -> int | None:
        """The oldest timestamp a fold still takes once a row stamped `newest` was folded (the start of the
        oldest held bucket); None when a table keeps everything since the feed started."""
        starts = []
        for state in self.states:
            if state.held_buckets is None:
                return None
            newest_bucket = max(newest // state.bucket_ticks, state.newest_bucket or newest // state.bucket_ticks)
            starts.append((newest_bucket - state.held_buckets + 1) * state.bucket_ticks)
        return min(starts) if starts else None

    def operation_stats(self) -> dict[str, Any]:
        """For `/api/stats`: samples the operations left out as late, and spectrum windows not evenly spaced."""
        if self.operations is None:
            return {}
        return {
            "samples_ignored": self.operations.samples_ignored,
            "windows_skipped": self.operations.windows_skipped,
            "last_problem": self.operations.last_problem,
        }

    @property
    def rows_ignored(self) -> dict[str, int]:
        """Per table, the rows that came older than its held buckets (operation tables: older than their
        subtable's newest sample, so out of time order)."""
        ignored = {table.spec.name: table.state.rows_ignored for table in self.tables}
        if self.operations is not None:
            ignored.update(dict.fromkeys(self.operations.names, self.operations.samples_ignored))
        return ignored
