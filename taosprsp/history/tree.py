"""Rows of a grouped history view, assembled from one aggregate query per grouping level.

Perspective shows a grouped view as a tree: the total first, then each group followed by its subgroups,
siblings ordered by the view's sorts (ties, and unsorted views, by group value ascending). SQL's ROLLUP
would give every level in one query, but neither TDengine nor SQLite has it, so each level
is its own query and the tree is put together here, over groups (bounded by the row limit), not rows.

A split view pivots: each distinct combination of split values becomes a set of columns named
`value|...|column`, as Perspective names them; rows are still sorted by their unsplit aggregates. The
combinations are ordered like a tree of their own, level by level: by value, or by the view's column sorts
("col asc" ...), which order each split value by the sorted column's total over it (Perspective's total row).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from taosprsp.datasets import TICKS_PER_SECOND, Precision
from taosprsp.history.view import Key, Measure, PerspectiveType, Sort, ViewSpec

DAY_MS = 86_400_000
Path = tuple[Any, ...]


def perspective_values(column: pa.ChunkedArray | pa.Array, kind: PerspectiveType, precision: Precision) -> list[Any]:
    """A result column as Perspective takes it: times from ticks to epoch milliseconds (dates at midnight)."""
    if kind not in ("datetime", "date"):
        return column.to_pylist()
    per_ms = TICKS_PER_SECOND[precision] // 1_000
    values = column.to_numpy(zero_copy_only=False) if column.null_count == 0 else None
    if values is None:
        return [None if v is None else _millis(v, per_ms, kind) for v in column.to_pylist()]
    millis = np.asarray(values, dtype=np.int64) // per_ms
    if kind == "date":
        millis -= millis % DAY_MS
    return millis.tolist()


def _millis(ticks: int, per_ms: int, kind: PerspectiveType) -> int:
    millis = ticks // per_ms
    return millis - millis % DAY_MS if kind == "date" else millis


def split_label(value: Any, kind: PerspectiveType) -> str:
    """A split value as Perspective writes it in a column path."""
    if value is None:
        return "null"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "float":
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if kind == "datetime":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value / 1_000)) + f".{value % 1_000:03d}"
    if kind == "date":
        return time.strftime("%Y-%m-%d", time.gmtime(value / 1_000))
    return str(value)


def column_path(combo: Path, split_by: Sequence[Key], name: str) -> str:
    """The column of `name` under a combination of split values: `value|...|name`."""
    return "|".join([*(split_label(v, k.kind) for v, k in zip(combo, split_by, strict=True)), name])


@dataclass
class Level:
    """One level's query result: per group path, its measures (unsplit), or per split combination."""

    values: dict[Path, tuple[Any, ...]]
    split: dict[Path, dict[Path, tuple[Any, ...]]]


def read_level(
    table: pa.Table, spec: ViewSpec, depth: int, measures: Sequence[Measure], split_by: Sequence[Key]
) -> Level:
    """A level query's result (`k*`, `s*`, `m*` columns) as Python values keyed by group path, and by
    combination of the values of `split_by` (the split keys the query has, none for an unsplit level)."""
    precision = spec.source.precision
    split = bool(split_by)
    keys = [perspective_values(table[f"k{i}"], spec.group_by[i].kind, precision) for i in range(depth)]
    splits = [perspective_values(table[f"s{i}"], key.kind, precision) for i, key in enumerate(split_by)]
    values = [perspective_values(table[f"m{i}"], m.kind, precision) for i, m in enumerate(measures)]
    paths = list(zip(*keys, strict=True)) if keys else [()] * table.num_rows
    combos = list(zip(*splits, strict=True)) if splits else [()] * table.num_rows
    rows = list(zip(*values, strict=True)) if values else [()] * table.num_rows
    level = Level({}, defaultdict(dict))
    for path, combo, row in zip(paths, combos, rows, strict=True):
        if split:
            level.split[path][combo] = row
        else:
            level.values[path] = row
    return level


@dataclass
class Rows:
    """A view's rows as Perspective takes them: row paths with their depth, and data columns by path."""

    schema: dict[str, PerspectiveType]
    path_kinds: tuple[PerspectiveType, ...]
    depths: list[int]
    paths: list[Path]
    columns: dict[str, list[Any]]

    @property
    def size(self) -> int:
        return len(self.depths)


def _sorted(paths: list[Path], sorts: Sequence[Sort], values: Mapping[Path, tuple[Any, ...]]) -> list[Path]:
    """Siblings in the view's order: by each sort in turn, ties by group value ascending."""
    ordered = sorted(paths, key=lambda path: _nulls_first(path[-1]))
    for index in reversed(range(len(sorts))):
        sort = sorts[index]

        def value(path: Path, index: int = index, sort: Sort = sort) -> tuple[bool, Any]:
            found = values.get(path, (None,) * len(sorts))[index]
            return _nulls_first(abs(found) if sort.absolute and found is not None else found)

        ordered.sort(key=value, reverse=sort.descending)
    return ordered


def _nulls_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def tree_order(
    leaves: Iterable[Path], depth: int, sorts: Sequence[Sort], sort_values: Mapping[Path, tuple]
) -> list[Path]:
    """Every group path down to `depth` (the root `()` first), each followed by its subgroups in order."""
    children: dict[Path, set[Path]] = defaultdict(set)
    for leaf in leaves:
        for level in range(1, depth + 1):
            children[leaf[: level - 1]].add(leaf[:level])
    order: list[Path] = []
    pending = [()]
    while pending:
        path = pending.pop()
        order.append(path)
        pending.extend(reversed(_sorted(list(children.get(path, ())), sorts, sort_values)))
    return order


def sort_values(
    rows: Mapping[Path, tuple[Any, ...]], sorts: Sequence[Sort], keyed_here: str, measures: Sequence[Measure]
) -> dict[Path, tuple]:
    """Per path (of groups, or of split values) of one depth, the value each of `sorts` orders it by: the
    path's own last value when the sort names `keyed_here` (the column grouped or split at this depth), else the
    sorted column's value in `rows[path]` (one value per measure of `measures`)."""
    positions = {m.name: i for i, m in enumerate(measures)}
    return {
        path: tuple(path[-1] if s.name == keyed_here else row[positions[s.name]] for s in sorts)
        for path, row in rows.items()
    }


def column_order(
    combos: Iterable[Path], split_by: Sequence[Key], sorts: Sequence[Sort], order_by: Mapping[Path, tuple]
) -> list[Path]:
    """Combinations of split values in the view's column order: level by level, siblings by `sorts` (their
    values per prefix of split values in `order_by`, from `sort_values`), ties and unsorted by value."""
    depth = len(split_by)
    return [path for path in tree_order(combos, depth, sorts, order_by) if len(path) == depth]


def assemble(
    spec: ViewSpec,
    levels: Mapping[int, Level],
    order_by: Mapping[Path, tuple],
    column_order_by: Mapping[Path, tuple],
) -> Rows:
    """The rows of a grouped view from its levels (`levels[d]`: groups of depth d, the view's measures first,
    split when the view splits) and the values its sorts order by: per group path for its row sorts, per
    prefix of split values for its column sorts (both from `sort_values`)."""
    n = len(spec.group_by) if spec.mode != "total" else 0
    measures = spec.measures
    split = bool(spec.split_by)
    deepest = levels[max(levels)]
    leaves = deepest.split.keys() if split else deepest.values.keys()
    order = tree_order(leaves, n, spec.sorts, order_by) if n else [()]
    if spec.mode == "flat" and n:
        order = [path for path in order if len(path) == n]
    found = {c for level in levels.values() for combos in level.split.values() for c in combos}
    combos = column_order(found, spec.split_by, spec.column_sorts, column_order_by)
    if split:
        schema = {column_path(combo, spec.split_by, m.name): m.kind for combo in combos for m in measures}
    else:
        schema = {m.name: m.kind for m in measures}
    columns: dict[str, list[Any]] = {name: [] for name in schema}
    names = list(schema)
    for path in order:
        level = levels[len(path)]
        if split:
            cells = level.split.get(path, {})
            for c, combo in enumerate(combos):
                row = cells.get(combo)
                for i in range(len(measures)):
                    columns[names[c * len(measures) + i]].append(None if row is None else row[i])
        else:
            row = level.values.get(path)  # the view's measures, then those only sorted by
            for i, name in enumerate(names):
                columns[name].append(None if row is None else row[i])
    return Rows(
        schema,
        tuple(k.kind for k in spec.group_by) if n else (),
        [len(p) for p in order],
        order,
        columns,
    )
