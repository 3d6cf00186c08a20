"""The history table as a Perspective virtual table: views computed by SQL in the store, one per client view.

perspective-python 4.3.0's `VirtualServer` decodes the protocol and calls a `VirtualServerHandler` (this
module's `HistoryHandler`) for schemas, sizes, views and slices of them. A grouped view (group_by, or the
total mode) runs one aggregate query per grouping level when it is made and keeps the groups (at most
`history.groups` per level); a view of stored rows keeps only its row count and reads each slice the viewer
asks for with LIMIT/OFFSET (at most `history.rows`). An automatic bucket width (`bucket("ts", 'auto')`) is
chosen from the time range the view's filters give, or from the data's own range when they leave it open.

Every query runs on a connection of the backend's own (`QueryRunner`), at most `history.queries` at once,
each client's one view at a time (`QueryLane`), answered within `history.timeout` seconds (`queries`); the
views themselves and how they fill a slice are in `fill`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from perspective.virtual_servers import VirtualServerHandler

from taosprsp.config import HistorySettings
from taosprsp.datasets import TICKS_PER_SECOND
from taosprsp.history.fill import DataSlice, GroupedView, StoredRowsView, View, column_sort_values
from taosprsp.history.queries import QueryLane, QueryRunner
from taosprsp.history.sql import Dialect, QueryBuilder, dialect_for, table_size
from taosprsp.history.tree import (
    Path,
    Rows,
    assemble,
    read_level,
    sort_values,
)
from taosprsp.history.view import (
    BUCKET_STEPS,
    FILTER_OPS,
    HistoryError,
    HistorySource,
    ViewSpec,
    auto_bucket,
    parse_expression,
    parse_view,
)
from taosprsp.stores import Store

TABLE_SIZE_SECONDS = 5.0
"""How long a table's row count is reused: the viewer asks for it with every refresh of its dimensions."""


class HistoryBackend:
    """One history table over one store: its schema, features and views, shared by every client session."""

    def __init__(
        self, source: HistorySource, connect: Callable[[], Store], limits: HistorySettings | None = None
    ) -> None:
        self.source = source
        self.limits = limits or HistorySettings()
        first = connect()
        try:
            self.dialect: Dialect = dialect_for(first, source)
        except BaseException:
            first.close()
            raise
        self.runner = QueryRunner(connect, self.limits.timeout, self.limits.queries)
        self.runner.adopt(first)
        self._size: tuple[float, int] | None = None
        self._size_lock = threading.Lock()

    def features(self) -> dict[str, Any]:
        return {
            "group_by": True,
            "split_by": True,
            "sort": True,
            "expressions": True,
            "group_rollup_mode": ["rollup", "flat", "total"],
            "filter_ops": {kind: list(ops) for kind, ops in FILTER_OPS.items()},
            "aggregates": {kind: list(names) for kind, names in self.dialect.aggregates.items()},
        }

    def table_size(self) -> int:
        """The table's row count, reused for `TABLE_SIZE_SECONDS` (by every client: outside their lanes, so
        that a client whose view still runs keeps its table's size)."""
        with self._size_lock:
            if self._size is not None and time.monotonic() - self._size[0] < TABLE_SIZE_SECONDS:
                return self._size[1]
        counted = self.runner.run(table_size(self.dialect))[0]
        size = int(counted["n"][0].as_py()) if counted.num_rows else 0
        with self._size_lock:
            self._size = (time.monotonic(), size)
        return size

    def make_view(self, config: Mapping[str, Any], lane: QueryLane | None = None) -> View:
        """The view `config` asks for, its queries run in `lane` (the client's; None: a lane of its own)."""
        lane = lane or QueryLane()
        spec = self._with_bucket_widths(parse_view(self.source, config, self.dialect.aggregates), lane)
        builder = QueryBuilder(self.dialect, spec)
        if not spec.grouped:
            return StoredRowsView(spec, builder, self.runner, self.limits, lane)
        return GroupedView(spec, self._groups(spec, builder, lane))

    def _with_bucket_widths(self, spec: ViewSpec, lane: QueryLane) -> ViewSpec:
        """`spec` with its automatic buckets sized for the time range of its filters (or of the data)."""
        automatic = spec.auto_buckets()
        if not automatic:
            return spec
        column = automatic[0].column.name
        low, high = spec.time_range(column)
        if low is None or high is None:
            found = self.runner.run(QueryBuilder(self.dialect, spec).extent(column), lane=lane)[0]
            if found.num_rows:
                low = found["lo"][0].as_py() if low is None else low
                high = found["hi"][0].as_py() if high is None else high
        if low is None or high is None:
            return spec.with_widths(BUCKET_STEPS[0][1])
        seconds = (high - low) / TICKS_PER_SECOND[self.source.precision]
        return spec.with_widths(auto_bucket(seconds))

    def _groups(self, spec: ViewSpec, builder: QueryBuilder, lane: QueryLane) -> Rows:
        """Run one aggregate query per level the view shows or orders by, and assemble the rows."""
        n = 0 if spec.mode == "total" else len(spec.group_by)
        split = bool(spec.split_by)
        measures = spec.measures if split else (*spec.measures, *spec.hidden)
        sorted_depths = list(range(1, n + 1)) if spec.sorts else []
        if spec.mode == "rollup":
            depths = list(range(n + 1))
        elif spec.mode == "flat":
            depths = sorted({n, *(sorted_depths if not split else [])})
        else:
            depths = [0]
        limit = self.limits.groups
        statements = [builder.level(spec.group_by[:d], spec.split_by, measures, limit + 1) for d in depths]
        # a split view's rows are ordered by their unsplit aggregates, its columns by totals per split value
        row_sorting = sorted_depths if split else []
        statements += [builder.level(spec.group_by[:d], (), spec.sort_measures, limit + 1) for d in row_sorting]
        column_sorting = list(range(1, len(spec.split_by) + 1)) if spec.column_sorts else []
        statements += [
            builder.level((), spec.split_by[:d], spec.column_sort_measures, limit + 1) for d in column_sorting
        ]
        results = self.runner.run(*statements, lane=lane)
        labels = [
            *(f"level {d} ({', '.join(k.name for k in spec.group_by[:d])}{' split' if split else ''})" for d in depths),
            *(f"level {d} ({', '.join(k.name for k in spec.group_by[:d])})" for d in row_sorting),
            *(f"the split by {', '.join(k.name for k in spec.split_by[:d])}" for d in column_sorting),
        ]
        for table, label in zip(results, labels, strict=True):
            if table.num_rows > limit:
                raise HistoryError(
                    f"more than {limit} groups at {label} (history.groups): narrow the time range, filter, or "
                    "group by coarser columns"
                )
        levels = {
            d: read_level(t, spec, d, measures, spec.split_by)
            for d, t in zip(depths, results[: len(depths)], strict=True)
        }
        order_by: dict[Path, tuple] = {}
        row_results = results[len(depths) : len(depths) + len(row_sorting)]
        for depth in sorted_depths:
            if split:
                table = row_results[row_sorting.index(depth)]
                found, sorted_by = read_level(table, spec, depth, spec.sort_measures, ()).values, spec.sort_measures
            else:
                found, sorted_by = levels[depth].values, measures
            order_by.update(sort_values(found, spec.sorts, spec.group_by[depth - 1].name, sorted_by))
        column_results = results[len(depths) + len(row_sorting) :]
        column_order_by = column_sort_values(spec, column_results, spec.column_sort_measures)
        rows = assemble(spec, levels, order_by, column_order_by)
        if len(rows.schema) > self.limits.columns:
            raise HistoryError(
                f"the view has {len(rows.schema)} columns, over the {self.limits.columns} a history view answers "
                "(history.columns): split by fewer or coarser columns, or filter"
            )
        return rows

    def close(self) -> None:
        self.runner.close()


class HistoryHandler(VirtualServerHandler):
    """The `VirtualServerHandler` of one client session: its views over the backend's table, their queries in
    the session's own `QueryLane`.

    perspective 4.3.0's `VirtualServer` answers both `View.schema` and `View.column_paths` from `view_schema`
    (`View.schema` from the answer it kept while reading a slice, when it read one), where Perspective's own
    tables differ: the schema names each column once with its aggregated type (the viewer's grid and charts
    look the types of split columns up by column name), the paths name every split column. The session says
    when it answers `View.column_paths` (`answers_column_paths`); `view_schema` gives the paths then, the
    schema otherwise.
    """

    def __init__(self, backend: HistoryBackend) -> None:
        self.backend = backend
        self.views: dict[str, View] = {}
        self.lane = QueryLane()
        self.answers_column_paths = False

    def _source(self, table: str) -> HistorySource:
        if table != self.backend.source.name:
            raise HistoryError(f"no history table {table!r}; this server has {self.backend.source.name!r}")
        return self.backend.source

    def _view(self, view_id: str) -> View:
        try:
            return self.views[view_id]
        except KeyError:
            raise HistoryError(f"no view {view_id!r}: it was deleted or never made") from None

    def get_features(self) -> dict[str, Any]:
        return self.backend.features()

    def get_hosted_tables(self) -> list[str]:
        return [self.backend.source.name]

    def table_schema(self, table_name: str, config: Any = None) -> dict[str, str]:
        return self._source(table_name).schema()

    def table_size(self, table_name: str) -> int:
        self._source(table_name)
        return self.backend.table_size()

    def table_column_size(self, table_name: str) -> int:
        return len(self._source(table_name).schema())

    def table_make_view(self, table_name: str, view_name: str, config: Mapping[str, Any]) -> None:
        self._source(table_name)
        self.views[view_name] = self.backend.make_view(config, self.lane)

    def table_validate_expression(self, table_name: str, expression: str) -> str:
        parse_expression(self._source(table_name), "expression", expression)
        return "datetime"

    def view_schema(self, view_name: str, config: Any = None) -> dict[str, str]:
        """Column path -> type for `View.column_paths`; column name -> type otherwise."""
        view = self._view(view_name)
        return dict(view.schema) if self.answers_column_paths else view.column_types

    def view_size(self, view_name: str) -> int:
        return self._view(view_name).size

    def view_column_size(self, view_name: str, config: Any = None) -> int:
        return len(self._view(view_name).schema)

    def view_delete(self, view_name: str) -> None:
        self.views.pop(view_name, None)

    def view_get_data(
        self, view_name: str, config: Any, schema: Any, viewport: Mapping[str, Any], data: DataSlice
    ) -> None:
        self._view(view_name).fill(viewport, data)

    def close(self) -> None:
        """Forget the session's views (the Tornado handler calls this when its client goes)."""
        self.views.clear()
