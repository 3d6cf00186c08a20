"""The views a client makes of the history table (grouped, or stored rows) and how each fills a slice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pyarrow as pa

from taosprsp.config import HistorySettings
from taosprsp.history.queries import QueryLane, QueryRunner
from taosprsp.history.sql import QueryBuilder
from taosprsp.history.tree import (
    Path,
    Rows,
    column_order,
    column_path,
    perspective_values,
    read_level,
    sort_values,
)
from taosprsp.history.view import (
    HistoryError,
    Measure,
    ViewSpec,
)


class DataSlice(Protocol):
    """What `view_get_data` fills (perspective's `VirtualDataSlice`)."""

    def set_col(self, dtype: str, name: str, index: int, value: Any, grouping_id: int | None = None) -> None: ...


def viewport_window(viewport: Mapping[str, Any], size: int, names: Sequence[str]) -> tuple[int, int, list[str]]:
    """The rows and columns a viewport asks for, clipped to the view (an absent bound is the view's edge)."""
    start = viewport.get("start_row") or 0
    end = viewport.get("end_row")
    end = size if end is None else min(end, size)
    first_column = viewport.get("start_col") or 0
    last_column = viewport.get("end_col")
    return start, max(start, end), list(names[first_column:last_column])


class GroupedView:
    """A view of groups (group_by, or the total mode): computed once, sliced as asked."""

    def __init__(self, spec: ViewSpec, rows: Rows) -> None:
        self.spec = spec
        self.rows = rows
        self.schema = rows.schema

    @property
    def column_types(self) -> dict[str, str]:
        """Column name -> type, as Perspective's `View.schema` gives it: aggregated, not per split path, and with
        the columns the view is only sorted by (a grouped column among them as it is: its groups' own value)."""
        spec = self.spec
        grouped = {key.name for key in spec.group_by}
        hidden = {m.name: m.key.kind if m.name in grouped else m.kind for m in spec.hidden}
        return {**{m.name: m.kind for m in spec.measures}, **hidden}

    @property
    def size(self) -> int:
        return self.rows.size

    def fill(self, viewport: Mapping[str, Any], data: DataSlice) -> None:
        rows = self.rows
        start, end, names = viewport_window(viewport, rows.size, list(rows.schema))
        depth_of_view = len(rows.path_kinds)
        rollup = self.spec.mode == "rollup"
        for level, kind in enumerate(rows.path_kinds):
            column = f"__ROW_PATH_{level}__"
            for index in range(start, end):
                depth = rows.depths[index]
                # GROUPING_ID as SQL's ROLLUP numbers it: one bit per level rolled up, the first level highest
                grouping = 2 ** (depth_of_view - depth) - 1 if rollup else None
                value = rows.paths[index][level] if level < depth else None
                data.set_col(kind, column, index - start, value, grouping)
        for name in names:
            kind, values = rows.schema[name], rows.columns[name]
            for index in range(start, end):
                data.set_col(kind, name, index - start, values[index], None)


class StoredRowsView:
    """A view of stored rows (no group_by): counted when made, each slice read with LIMIT/OFFSET."""

    def __init__(
        self, spec: ViewSpec, builder: QueryBuilder, runner: QueryRunner, limits: HistorySettings, lane: QueryLane
    ) -> None:
        self.spec = spec
        self.builder = builder
        self.runner = runner
        self.limits = limits
        self.lane = lane
        counted, combos = self._count_and_combinations()
        self.size = int(counted["n"][0].as_py()) if counted.num_rows else 0
        self.combos = combos
        measures = spec.measures
        if spec.split_by:
            self.schema = {column_path(c, spec.split_by, m.name): m.key.kind for c in combos for m in measures}
        else:
            self.schema = {m.name: m.key.kind for m in measures}

    @property
    def column_types(self) -> dict[str, str]:
        """Column name -> type, as Perspective's `View.schema` gives it: not per split path, and, when split,
        with the columns the view is only sorted by."""
        spec = self.spec
        return {m.name: m.key.kind for m in (*spec.measures, *(spec.hidden if spec.split_by else ()))}

    def _count_and_combinations(self) -> tuple[pa.Table, list[Path]]:
        """The number of rows, and the combinations of split values in the view's column order."""
        spec, builder, columns = self.spec, self.builder, self.limits.columns
        if not spec.split_by:
            return self.runner.run(builder.count(), lane=self.lane)[0], []
        counting = Measure("count", spec.split_by[0], "count")
        # as Perspective: a column sort orders split values by the sorted column in their first row
        firsts = tuple(Measure(m.name, m.key, "first") for m in spec.column_sort_measures)
        prefixes = range(1, len(spec.split_by) + 1) if firsts else range(0)
        counted, found, *first_rows = self.runner.run(
            builder.count(),
            builder.level((), spec.split_by, (counting,), columns + 1),
            *(builder.first_values(spec.split_by[:depth], firsts, columns + 1) for depth in prefixes),
            lane=self.lane,
        )
        level = read_level(found, spec, 0, (counting,), spec.split_by)
        combos = level.split.get((), {})
        if len(combos) * max(1, len(spec.measures)) > columns:
            raise HistoryError(
                f"splitting by {', '.join(k.name for k in spec.split_by)} makes more than {columns} "
                "columns (history.columns): split by fewer or coarser columns, or filter"
            )
        order_by = column_sort_values(spec, first_rows, firsts)
        return counted, column_order(combos, spec.split_by, spec.column_sorts, order_by)

    def fill(self, viewport: Mapping[str, Any], data: DataSlice) -> None:
        start, end, names = viewport_window(viewport, self.size, list(self.schema))
        if end - start > self.limits.rows:
            raise HistoryError(
                f"{end - start} rows asked at once, over the {self.limits.rows} a history view answers "
                "(history.rows): ask for fewer rows (a viewport), filter, or group the rows"
            )
        if end <= start:
            return
        spec = self.spec
        precision = spec.source.precision
        table = self.runner.run(self.builder.rows(spec.split_by, spec.measures, end - start, start), lane=self.lane)[0]
        values = {
            m.name: perspective_values(table[f"m{i}"], m.key.kind, precision) for i, m in enumerate(spec.measures)
        }
        if not spec.split_by:
            for name in names:
                kind = self.schema[name]
                for index, value in enumerate(values[name]):
                    data.set_col(kind, name, index, value, None)
            return
        splits = [perspective_values(table[f"s{i}"], k.kind, precision) for i, k in enumerate(spec.split_by)]
        row_combos = list(zip(*splits, strict=True))
        wanted = set(names)
        for combo in self.combos:
            for m in spec.measures:
                name = column_path(combo, spec.split_by, m.name)
                if name not in wanted:
                    continue
                for index, (row_combo, value) in enumerate(zip(row_combos, values[m.name], strict=True)):
                    data.set_col(self.schema[name], name, index, value if row_combo == combo else None, None)


def column_sort_values(spec: ViewSpec, tables: Sequence[pa.Table], measures: Sequence[Measure]) -> dict[Path, tuple]:
    """Per prefix of split values, what the view's column sorts order it by; `tables[d - 1]` holds, per
    combination of the first d split values, the value of each of `measures`."""
    order_by: dict[Path, tuple] = {}
    for depth, table in enumerate(tables, start=1):
        split_by = spec.split_by[:depth]
        level = read_level(table, spec, 0, measures, split_by)
        order_by.update(sort_values(level.split.get((), {}), spec.column_sorts, split_by[-1].name, measures))
    return order_by


View = GroupedView | StoredRowsView
