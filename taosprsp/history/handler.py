"""The history table as a Perspective virtual table: views computed by SQL in the store, one per client view.

perspective-python 4.3.0's `VirtualServer` decodes the protocol and calls a `VirtualServerHandler` (this
module's `HistoryHandler`) for schemas, sizes, views and slices of them. A grouped view (group_by, or the
total mode) runs one aggregate query per grouping level when it is made and keeps the groups (at most
`history.groups` per level); a view of stored rows keeps only its row count and reads each slice the viewer
asks for with LIMIT/OFFSET (at most `history.rows`). An automatic bucket width (`bucket("ts", 'auto')`) is
chosen from the time range the view's filters give, or from the data's own range when they leave it open.

Every query runs on a connection of the backend's own (`QueryRunner`), at most `history.queries` at once,
each client's one view at a time (`QueryLane`), answered within `history.timeout` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

import pyarrow as pa
from perspective.virtual_servers import VirtualServerHandler

from taosprsp.config import HistorySettings
from taosprsp.datasets import TICKS_PER_SECOND
from taosprsp.history.sql import Dialect, QueryBuilder, Statement, dialect_for, table_size
from taosprsp.history.tree import (
    Path,
    Rows,
    assemble,
    column_order,
    column_path,
    perspective_values,
    read_level,
    sort_values,
)
from taosprsp.history.view import (
    BUCKET_STEPS,
    FILTER_OPS,
    HistoryError,
    HistorySource,
    Measure,
    ViewSpec,
    auto_bucket,
    parse_expression,
    parse_view,
)
from taosprsp.stores import Store

TABLE_SIZE_SECONDS = 5.0
"""How long a table's row count is reused: the viewer asks for it with every refresh of its dimensions."""


class QueryLane:
    """One client's queries in the store: those of its latest view, counted until the store has finished them.

    A client is answered when its view's time is up, but the store goes on with the queries (see
    `QueryRunner`); while they run, the client's next view is refused at once, so that no client can stack
    slow queries and hold every connection.
    """

    def __init__(self) -> None:
        self._unfinished = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Whether queries of this lane are still queued or running in the store."""
        with self._lock:
            return self._unfinished > 0

    def enter(self, count: int, timeout: float) -> None:
        """Count `count` queries in, or HistoryError while earlier ones have not finished."""
        with self._lock:
            if self._unfinished:
                queries = f"{self._unfinished} quer{'y' if self._unfinished == 1 else 'ies'}"
                raise HistoryError(
                    f"{queries} of your previous history view still run in the store (the store finishes what "
                    f"it started after the view's {timeout:g} s are up): wait for them, then narrow the time "
                    "range, filter, or group by fewer or coarser columns"
                )
            self._unfinished = count

    def leave(self) -> None:
        """One query finished, failed, or was cancelled before it started."""
        with self._lock:
            self._unfinished -= 1


class QueryRunner:
    """Runs statements on store connections of its own, at most `connections` at once, each view within
    `timeout` seconds.

    A query over its time is abandoned, not stopped: TDengine's client and ADBC's SQLite driver cannot cancel
    a statement (NOT_IMPLEMENTED), so the query finishes on its connection, which then serves the next one;
    the client is answered at once with an error saying what to narrow. Its `QueryLane` keeps it from
    starting more until the store is done.
    """

    def __init__(self, connect: Callable[[], Store], timeout: float, connections: int) -> None:
        self._connect = connect
        self.timeout = timeout
        self.connections = connections
        self._idle: list[Store] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="history-query")

    def adopt(self, store: Store) -> None:
        """Use an open `store` for later queries."""
        self._release(store)

    def run(self, *statements: Statement, lane: QueryLane | None = None) -> list[pa.Table]:
        """The results of `statements`, run side by side for the client of `lane` (None: a lane of their own);
        HistoryError when they take over `timeout` seconds, or while the lane's previous queries run."""
        lane = lane or QueryLane()
        lane.enter(len(statements), self.timeout)
        deadline = time.monotonic() + self.timeout
        futures = []
        try:
            for statement in statements:
                futures.append(self._pool.submit(self._execute, statement, lane))
        except BaseException:  # the pool was shut down: the statements not submitted never run
            for _ in range(len(statements) - len(futures)):
                lane.leave()
            raise
        try:
            return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
        except FutureTimeout:
            waiting = self._cancel(futures, lane)
            if waiting:
                raise HistoryError(
                    f"the store is busy: this view waited {self.timeout:g} s for one of the {self.connections} "
                    "history queries the store runs at once (history.queries); try again shortly"
                ) from None
            raise HistoryError(
                f"the history query took more than {self.timeout:g} s: narrow the time range, filter, or group "
                "by fewer or coarser columns"
            ) from None
        except BaseException:
            self._cancel(futures, lane)  # one query failed: the view is answered with its error
            raise

    @staticmethod
    def _cancel(futures: Sequence[Future[pa.Table]], lane: QueryLane) -> int:
        """Cancel the queries of `futures` not started yet; how many."""
        cancelled = sum(1 for future in futures if future.cancel())
        for _ in range(cancelled):
            lane.leave()  # `_execute` never runs for it
        return cancelled

    def _execute(self, statement: Statement, lane: QueryLane) -> pa.Table:
        try:
            with self._lock:
                store = self._idle.pop() if self._idle else None
            if store is None:
                store = self._connect()
            try:
                result = store.select(statement.sql, statement.schema, statement.parameters)
            except BaseException:
                store.close()  # a connection a query failed on is not trusted with the next
                raise
            self._release(store)
            return result
        finally:
            lane.leave()  # before the result is handed over: the client's next view finds the lane free

    def _release(self, store: Store) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        """Close every idle connection; those still running close when their query ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        self._pool.shutdown(wait=False, cancel_futures=True)
        for store in idle:
            store.close()


class DataSlice(Protocol):
    """What `view_get_data` fills (perspective's `VirtualDataSlice`)."""

    def set_col(self, dtype: str, name: str, index: int, value: Any, grouping_id: int | None = None) -> None: ...


def _window(viewport: Mapping[str, Any], size: int, names: Sequence[str]) -> tuple[int, int, list[str]]:
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
        start, end, names = _window(viewport, rows.size, list(rows.schema))
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
        order_by = _column_sort_values(spec, first_rows, firsts)
        return counted, column_order(combos, spec.split_by, spec.column_sorts, order_by)

    def fill(self, viewport: Mapping[str, Any], data: DataSlice) -> None:
        start, end, names = _window(viewport, self.size, list(self.schema))
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


def _column_sort_values(spec: ViewSpec, tables: Sequence[pa.Table], measures: Sequence[Measure]) -> dict[Path, tuple]:
    """Per prefix of split values, what the view's column sorts order it by; `tables[d - 1]` holds, per
    combination of the first d split values, the value of each of `measures`."""
    order_by: dict[Path, tuple] = {}
    for depth, table in enumerate(tables, start=1):
        split_by = spec.split_by[:depth]
        level = read_level(table, spec, 0, measures, split_by)
        order_by.update(sort_values(level.split.get((), {}), spec.column_sorts, split_by[-1].name, measures))
    return order_by


View = GroupedView | StoredRowsView


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
        column_order_by = _column_sort_values(spec, column_results, spec.column_sort_measures)
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
