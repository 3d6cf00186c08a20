"""The history table: views computed by SQL in the store equal the same views of an in-memory Perspective table.

The differential suite loads the same rows into a Perspective table and into a store (the embedded store
always, TDengine with the `tdengine` marker) and compares, view config by view config, what a client reads
from both. The safety tests try values and names that would change a query written by pasting text.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import perspective
import pyarrow as pa
import pytest
from conftest import STORE_KINDS, TEST_DSN, drop_test_database, store_config
from helpers import cli_env, wait_until

from taosprsp.client import connect
from taosprsp.config import Config, HistorySettings, load_config
from taosprsp.datasets import METERS
from taosprsp.errors import ConfigError, ExitCode
from taosprsp.feed import ipc_bytes, perspective_arrow
from taosprsp.history import HistoryBackend, HistoryError, HistoryServer, HistorySource, auto_bucket
from taosprsp.history.server import HistorySession
from taosprsp.history.sql import QueryBuilder, SQLiteDialect, TDengineDialect, tdengine_literal
from taosprsp.history.view import parse_view
from taosprsp.serve import LiveServer
from taosprsp.stores import EmbeddedStore, Store, open_store
from taosprsp.web import missing_assets, viewer_dir

ROWS = 30_000
TABLES = 10
START_MS = 1_700_000_000_000
STEP_MS = 37
"""Rows 37 ms apart across all subtables: every timestamp is unique, so first, last and orders are exact."""
TABLE = "meters_history"
HOSTILE = [
    "x' OR '1'='1",
    "SanJose' --",
    '"; DROP TABLE "meters"; --',
    "`tbname`",
    "\\' OR 1=1 --",
    "50%_\\",
]


def meters_rows(count: int) -> pa.Table:
    """`count` rows of meters in the store layout, in time order, a subtable per row in turn."""
    rng = np.random.default_rng(7)
    index = np.arange(count)
    subtable = pa.array(index % TABLES)
    return pa.table(
        {
            "tbname": pa.array([f"d{i}" for i in index % TABLES]),
            "ts": pa.array(START_MS + index * STEP_MS, pa.int64()),
            "current": pa.array(rng.normal(10.0, 2.0, count).astype(np.float32)),
            "voltage": pa.array(rng.integers(200, 240, count).astype(np.int32)),
            "phase": pa.array((rng.random(count) - 0.5).astype(np.float32)),
            "groupid": METERS.field("groupid").tag_values(TABLES).take(subtable),
            "location": METERS.field("location").tag_values(TABLES).take(subtable),
        }
    ).cast(METERS.arrow_schema())


def create_small_database(config: Config) -> None:
    """The test database with one vgroup: a small test server has few vnodes."""
    import taosws

    conn = taosws.connect(TEST_DSN)
    try:
        conn.execute(f"CREATE DATABASE IF NOT EXISTS `{config.database.name}` VGROUPS 1 PRECISION 'ms'")
    finally:
        conn.close()


def history_session(backend: HistoryBackend) -> tuple[perspective.Client, HistorySession]:
    """A Perspective client talking to a history session in this process, and the session."""
    session = HistoryServer(backend).new_session(lambda answer: client.handle_response(answer))
    client = perspective.Client(session.handle_request)
    return client, session


def history_client(backend: HistoryBackend) -> perspective.Client:
    """A Perspective client talking to a history session in this process."""
    return history_session(backend)[0]


@dataclass
class Pair:
    """The same rows in memory and in a store, and a client of each."""

    kind: str
    memory: perspective.Table
    history: perspective.Table
    backend: HistoryBackend
    connect: Callable[[], Store]

    @property
    def aggregates(self) -> dict[str, tuple[str, ...]]:
        return self.backend.dialect.aggregates


@pytest.fixture(scope="module", params=STORE_KINDS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    kind = request.param
    config = store_config(kind, tmp_path_factory.mktemp("history"))
    rows = meters_rows(ROWS)
    backend = None
    try:
        if kind == "tdengine":
            create_small_database(config)
        with open_store(config, kind) as store:
            store.ensure_schema(METERS, TABLES)
            store.write(METERS, rows)
        memory = perspective.Server().new_local_client().table(METERS.perspective_schema())
        memory.update(ipc_bytes(perspective_arrow(METERS, rows, "ms")))

        def connect() -> Store:
            return open_store(config, kind)

        backend = HistoryBackend(HistorySource(TABLE, METERS, "ms"), connect)
        yield Pair(kind, memory, history_client(backend).open_table(TABLE), backend, connect)
    finally:
        if backend is not None:
            backend.close()
        drop_test_database(config)


def close(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-6, abs_tol=1e-9)
    return expected == actual


def assert_same(expected: dict[str, list], actual: dict[str, list]) -> None:
    """Equal columns, floats within a relative 1e-6 (sums of float32 values added in another order)."""
    # A virtual slice has the columns that were given values: none when it has no rows, and no __ROW_PATH__
    # when all of its rows are totals
    if "__ROW_PATH__" in expected and "__ROW_PATH__" not in actual:
        actual = {**actual, "__ROW_PATH__": [[] for _ in next(iter(actual.values()), [])]}
    actual = {**{name: [] for name, values in expected.items() if not values}, **actual}
    assert set(expected) == set(actual), (list(expected), list(actual))
    for name, values in expected.items():
        got = actual[name]
        assert len(got) == len(values), f"{name}: {len(values)} rows expected, {len(got)} read"
        wrong = [(i, e, a) for i, (e, a) in enumerate(zip(values, got, strict=True)) if not close(e, a)]
        assert not wrong, f"{name}: {len(wrong)} values differ, first (row, expected, read): {wrong[:3]}"


def history_type(config: dict[str, Any], name: str, in_memory: str) -> str:
    """The type a history view gives column `name` where Perspective's own gives `in_memory`: a grouped sum of
    integers is a float (Perspective's 32-bit integers overflow first), every other the same."""
    grouped = bool(config.get("group_by")) or config.get("group_rollup_mode") == "total"
    numbers = METERS.perspective_schema().get(name) in ("integer", "float")  # Perspective sums them, counts others
    summed = (config.get("aggregates") or {}).get(name, "sum" if numbers else "count") == "sum"
    return "float" if grouped and summed and in_memory == "integer" else in_memory


def compare(pair: Pair, config: dict[str, Any], **window: int) -> dict[str, list]:
    expected_view = pair.memory.view(**config)
    actual_view = pair.history.view(**config)
    try:
        assert actual_view.num_rows() == expected_view.num_rows()
        expected = expected_view.to_columns(**window)
        actual = actual_view.to_columns(**window)
        assert_same(expected, actual)
        assert [name for name in actual if name in expected] == [name for name in expected if name in actual]
        assert actual_view.column_paths() == expected_view.column_paths()
        # named once per column, as the viewer looks the types of split columns up
        expected_types = {name: history_type(config, name, kind) for name, kind in expected_view.schema().items()}
        assert actual_view.schema() == expected_types
        return expected
    finally:
        expected_view.delete()
        actual_view.delete()


BUCKET = {"minute": "bucket(\"ts\", '1m')"}
MID_MS = START_MS + ROWS * STEP_MS // 2
VIEWS = {
    "group by one level": dict(columns=["current", "voltage"], group_by=["location"]),
    "group by two levels": dict(
        columns=["current", "voltage", "phase"],
        group_by=["location", "tbname"],
        aggregates={"current": "avg", "phase": "max"},
    ),
    "group by an integer tag": dict(columns=["current", "location"], group_by=["groupid"]),
    "split by with group by": dict(
        columns=["current", "voltage"], group_by=["location"], split_by=["groupid"], aggregates={"current": "avg"}
    ),
    "split by two levels with two group levels": dict(
        columns=["current"], group_by=["groupid", "location"], split_by=["location", "groupid"]
    ),
    "sort descending": dict(columns=["current"], group_by=["location"], sort=[["current", "desc"]]),
    "sort two levels ascending": dict(
        columns=["current", "voltage"], group_by=["groupid", "tbname"], sort=[["voltage", "asc"]]
    ),
    "sort by absolute value": dict(
        columns=["phase"], group_by=["tbname"], aggregates={"phase": "avg"}, sort=[["phase", "desc abs"]]
    ),
    "sort by a hidden column": dict(columns=["voltage"], group_by=["location"], sort=[["current", "desc"]]),
    "sort by the grouped column": dict(columns=["current"], group_by=["location"], sort=[["location", "desc"]]),
    "sort with split by": dict(
        columns=["current"], group_by=["location"], split_by=["groupid"], sort=[["current", "asc"]]
    ),
    "two sorts": dict(
        columns=["voltage", "current"],
        group_by=["groupid"],
        aggregates={"voltage": "max"},
        sort=[["voltage", "desc"], ["current", "asc"]],
    ),
    "flat rollup sorted": dict(
        columns=["current"], group_by=["location", "tbname"], group_rollup_mode="flat", sort=[["current", "desc"]]
    ),
    "flat rollup with split by": dict(
        columns=["current"], group_by=["tbname"], split_by=["location"], group_rollup_mode="flat"
    ),
    "total": dict(columns=["current", "voltage"], group_rollup_mode="total", aggregates={"current": "avg"}),
    "total with split by": dict(columns=["current"], split_by=["location"], group_rollup_mode="total"),
    "time buckets": dict(columns=["current"], group_by=["minute"], expressions=BUCKET, aggregates={"current": "avg"}),
    "time buckets by location (the chart)": dict(
        columns=["current"],
        group_by=["minute"],
        split_by=["location"],
        expressions=BUCKET,
        aggregates={"current": "avg"},
        group_rollup_mode="flat",
    ),
    "location then time buckets": dict(
        columns=["voltage"], group_by=["location", "minute"], expressions=BUCKET, sort=[["minute", "desc"]]
    ),
    "a time range": dict(
        columns=["current"],
        group_by=["location"],
        filter=[["ts", ">=", START_MS + 60_000], ["ts", "<", MID_MS]],
    ),
    "columns sorted descending": dict(
        columns=["current"], group_by=["location"], split_by=["groupid"], sort=[["current", "col desc"]]
    ),
    "columns sorted by a hidden column": dict(
        columns=["voltage"], group_by=["location"], split_by=["groupid"], sort=[["current", "col asc"]]
    ),
    "columns sorted by absolute value": dict(
        columns=["phase"],
        group_by=["location"],
        split_by=["groupid"],
        aggregates={"phase": "avg"},
        sort=[["phase", "col desc abs"]],
    ),
    "columns sorted by the split column": dict(
        columns=["current"], group_by=["location"], split_by=["groupid"], sort=[["groupid", "col desc"]]
    ),
    "columns sorted with ties": dict(
        columns=["current"],
        group_by=["location"],
        split_by=["groupid"],
        aggregates={"current": "count"},
        sort=[["current", "col desc"]],
    ),
    "columns sorted at two split levels": dict(
        columns=["current", "voltage"],
        group_by=["groupid"],
        split_by=["location", "groupid"],
        sort=[["voltage", "col asc"]],
    ),
    "rows and columns sorted": dict(
        columns=["current", "voltage"],
        group_by=["location"],
        split_by=["groupid"],
        sort=[["current", "desc"], ["voltage", "col asc"]],
    ),
    "columns sorted, flat": dict(
        columns=["current"],
        group_by=["location", "tbname"],
        split_by=["groupid"],
        group_rollup_mode="flat",
        sort=[["current", "col desc"]],
    ),
    "columns sorted, total": dict(
        columns=["current"], split_by=["location"], group_rollup_mode="total", sort=[["current", "col asc"]]
    ),
    "columns sorted by time buckets": dict(
        columns=["current"],
        group_by=["location"],
        split_by=["minute"],
        expressions=BUCKET,
        aggregates={"current": "avg"},
        sort=[["current", "col desc"]],
        filter=[["ts", "<", START_MS + 300_000]],
    ),
    "a column sort without split by": dict(columns=["current"], group_by=["location"], sort=[["current", "col asc"]]),
}
FILTERS = {
    "==": ["voltage", "==", 220],
    "!=": ["voltage", "!=", 220],
    "<": ["current", "<", 9.5],
    ">": ["current", ">", 11.25],
    "<=": ["voltage", "<=", 205],
    ">=": ["phase", ">=", 0.25],
    "text ==": ["location", "==", "SanJose"],
    "text !=": ["location", "!=", "SanJose"],
    "text <": ["location", "<", "PaloAlto"],
    "begins with": ["location", "begins with", "san"],
    "contains": ["location", "contains", "an"],
    "ends with": ["tbname", "ends with", "7"],
    "in": ["location", "in", ["SanJose", "Campbell"]],
    "not in": ["location", "not in", ["SanJose", "Campbell"]],
    "time >=": ["ts", ">=", MID_MS],
    "time <": ["ts", "<", MID_MS],
    "is null": ["current", "is null", None],
    "is not null": ["current", "is not null", None],
}
AGGREGATED = {"current": "float", "voltage": "integer", "location": "string", "ts": "datetime"}


@pytest.mark.parametrize("name", list(VIEWS))
def test_grouped_views_equal_the_in_memory_ones(pair: Pair, name: str) -> None:
    compare(pair, VIEWS[name])


@pytest.mark.parametrize("name", list(FILTERS))
def test_every_filter_selects_the_rows_the_in_memory_table_does(pair: Pair, name: str) -> None:
    grouped = compare(pair, dict(columns=["current", "voltage"], group_by=["groupid"], filter=[FILTERS[name]]))
    stored = compare(pair, dict(columns=["ts", "tbname", "current"], filter=[FILTERS[name]]), start_row=0, end_row=50)
    if name != "is null":
        assert grouped["voltage"] and stored["ts"]


def test_filters_joined_by_or_select_the_union(pair: Pair) -> None:
    """perspective-python 4.3.0's own tables ignore filter_op = "or", so the union is counted from its parts."""
    either, both = [["voltage", ">", 235], ["location", "==", "SanJose"]], None

    def count(table: perspective.Table, filters: list, op: str = "and") -> int:
        view = table.view(
            columns=["current"],
            group_rollup_mode="total",
            aggregates={"current": "count"},
            filter=filters,
            filter_op=op,
        )
        try:
            return view.to_columns()["current"][0]
        finally:
            view.delete()

    both = count(pair.memory, either)
    union = count(pair.memory, either[:1]) + count(pair.memory, either[1:]) - both
    assert 0 < both < union == count(pair.history, either, "or")


def aggregate_cases() -> list[tuple[str, str]]:
    """(column, aggregate) for every aggregate a store offers for the column's type."""
    offered = (SQLiteDialect.aggregates, TDengineDialect.aggregates)
    return [
        (column, name)
        for column, kind in AGGREGATED.items()
        for name in sorted({name for aggregates in offered for name in aggregates[kind]})
    ]


@pytest.mark.parametrize(("column", "aggregate"), aggregate_cases())
def test_each_aggregate_equals_the_in_memory_one(pair: Pair, column: str, aggregate: str) -> None:
    if aggregate not in pair.aggregates[AGGREGATED[column]]:
        pytest.skip(f"the {pair.kind} store does not offer {aggregate} for {AGGREGATED[column]} columns")
    compare(pair, dict(columns=[column], group_by=["location", "groupid"], aggregates={column: aggregate}))


PAGED = {
    "stored rows": dict(columns=["ts", "tbname", "current", "voltage", "location"]),
    "stored rows sorted": dict(columns=["ts", "current", "location"], sort=[["current", "desc"]]),
    "stored rows sorted by text then number": dict(
        columns=["ts", "voltage"], sort=[["location", "asc"], ["voltage", "desc"]]
    ),
    "stored rows split by": dict(columns=["current", "voltage"], split_by=["location"]),
    "stored rows split by, columns sorted": dict(
        columns=["current", "voltage"], split_by=["groupid"], sort=[["current", "col desc"]]
    ),
    "stored rows split twice, columns sorted by a hidden column": dict(
        columns=["current"], split_by=["location", "groupid"], sort=[["voltage", "col asc"], ["ts", "asc"]]
    ),
    "groups": dict(columns=["current", "voltage", "phase"], group_by=["location", "tbname"]),
}
WINDOWS = {
    "first page": dict(start_row=0, end_row=40),
    "a middle page": dict(start_row=12_345, end_row=12_400),
    "the last rows": dict(start_row=ROWS - 10, end_row=ROWS + 10),
    "columns": dict(start_row=5, end_row=25, start_col=1, end_col=3),
}


HIDDEN_SORTS = {"stored rows split twice, columns sorted by a hidden column"}
"""Views sorted by a column they do not show: Perspective's own column windows of them overlap (start_col=2,
end_col=4 gives four columns, one of them also in 1..3), so theirs are not compared."""


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("name", list(PAGED))
def test_viewport_pages_equal_the_in_memory_ones(pair: Pair, name: str, window: str) -> None:
    if name in HIDDEN_SORTS and "start_col" in WINDOWS[window]:
        pytest.skip("Perspective's column windows of a view sorted by a hidden column overlap")
    compare(pair, PAGED[name], **WINDOWS[window])


def test_an_automatic_bucket_width_follows_the_time_range(pair: Pair) -> None:
    span = [["ts", ">=", START_MS], ["ts", "<", START_MS + 3_600_000]]
    automatic = dict(columns=["current"], group_by=["b"], expressions={"b": "bucket(\"ts\", 'auto')"}, filter=span)
    explicit = dict(automatic, expressions={"b": "bucket(\"ts\", '10s')"})
    assert auto_bucket(3_600) == 10
    view = pair.history.view(**automatic)
    try:
        expected = pair.memory.view(**explicit)
        assert_same(expected.to_columns(), view.to_columns())
        expected.delete()
    finally:
        view.delete()
    # no bounds: the width comes from the rows' own first and last times (about 18.5 minutes: 5 s)
    unbounded = pair.history.view(**dict(automatic, filter=[]))
    try:
        paths = unbounded.to_columns()["__ROW_PATH__"]
        assert {b[0] - a[0] for a, b in zip(paths[1:], paths[2:], strict=False)} == {5_000}
    finally:
        unbounded.delete()


def test_automatic_widths_aim_at_a_few_hundred_buckets() -> None:
    assert [auto_bucket(s) for s in (900, 3_600, 86_400, 604_800, 10 * 365 * 86_400)] == [5, 10, 300, 1_800, 43_200]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_match_only_themselves(pair: Pair, value: str) -> None:
    for op in ("==", "contains", "begins with", "in"):
        condition = ["location", op, [value] if op == "in" else value]
        compare(pair, dict(columns=["current"], group_by=["location"], filter=[condition]))
        compare(pair, dict(columns=["current", "location"], filter=[condition]), start_row=0, end_row=20)
    assert pair.history.size() == ROWS


def test_hostile_names_are_refused_before_any_sql(pair: Pair) -> None:
    for name in ('current" FROM meters; --', "`current`", "current) --", "tbname`"):
        for config in (dict(columns=[name]), dict(columns=["current"], group_by=[name])):
            with pytest.raises(perspective.PerspectiveError, match="is not a column"):
                pair.history.view(**config)
    with pytest.raises(perspective.PerspectiveError, match="computes only time buckets"):
        pair.history.view(columns=["current"], group_by=["x"], expressions={"x": '"current" + 1'})


def literals_removed(sql: str) -> str:
    """`sql` without its TDengine string literals (quotes with backslash escapes)."""
    return re.sub(r"'(?:\\.|[^'\\])*'", "''", sql)


@pytest.mark.parametrize("value", HOSTILE)
def test_tdengine_sql_keeps_a_hostile_value_inside_one_literal(value: str) -> None:
    source = HistorySource(TABLE, METERS, "ms")
    dialect = TDengineDialect("power", "meters", "ms")

    def sql(text: str) -> str:
        config = {"columns": ["current"], "group_by": ["location"], "filter": [["location", "==", text]]}
        spec = parse_view(source, config, dialect.aggregates)
        return QueryBuilder(dialect, spec).level(spec.group_by, (), spec.measures, 10).sql

    hostile, benign = sql(value), sql("SanJose")
    assert tdengine_literal(value) in hostile
    assert literals_removed(hostile) == literals_removed(benign)


def test_sqlite_sql_binds_every_value() -> None:
    source = HistorySource(TABLE, METERS, "ms")
    dialect = SQLiteDialect("meters", "ms")
    filters = [["location", "==", HOSTILE[0]], ["location", "contains", HOSTILE[2]], ["voltage", ">", 3]]
    spec = parse_view(source, {"columns": ["current"], "group_by": ["tbname"], "filter": filters}, dialect.aggregates)
    statement = QueryBuilder(dialect, spec).level(spec.group_by, (), spec.measures, 10)
    assert statement.parameters == (HOSTILE[0], f"%{HOSTILE[2]}%", 3)
    assert "'" not in statement.sql.replace("ESCAPE '\\'", "") and "DROP" not in statement.sql


def test_a_view_with_more_groups_than_the_limit_is_refused(pair: Pair, tmp_path: Path) -> None:
    limited = HistoryBackend(pair.backend.source, pair.connect, HistorySettings(rows=5, groups=5))
    try:
        table = history_client(limited).open_table(TABLE)
        with pytest.raises(perspective.PerspectiveError, match="more than 5 groups"):
            table.view(columns=["current"], group_by=["tbname"])
        view = table.view(columns=["current"])
        with pytest.raises(perspective.PerspectiveError, match="over the 5 a history view answers"):
            view.to_columns(start_row=0, end_row=6)
        assert len(view.to_columns(start_row=0, end_row=5)["current"]) == 5
    finally:
        limited.close()


class GatedStore(EmbeddedStore):
    """The embedded store whose queries reading `marker` wait for `gate`: a query as slow as a test needs it,
    without timing anything."""

    def __init__(self, path: Path, stable: str, gate: threading.Event, marker: str) -> None:
        super().__init__(path, stable)
        self.gate = gate
        self.marker = marker

    def select(self, sql: str, schema: pa.Schema, parameters: Sequence[Any] = ()) -> pa.Table:
        if self.marker in sql:
            self.gate.wait()
        return super().select(sql, schema, parameters)


def test_a_client_cannot_stack_queries_past_their_time_nor_take_more_than_the_store_runs(pair: Pair) -> None:
    if pair.kind != "embedded":
        pytest.skip("the gate holds queries of the embedded store")
    with pair.connect() as store:
        assert isinstance(store, EmbeddedStore)
        path, stable = store.path, store.stable
    gate = threading.Event()
    backend = HistoryBackend(
        pair.backend.source,
        lambda: GatedStore(path, stable, gate, '"phase"'),  # the store holds every query of phase
        HistorySettings(timeout=0.2, queries=2),
    )
    try:
        (first, first_session), (second, _) = history_session(backend), history_session(backend)
        mine, theirs = first.open_table(TABLE), second.open_table(TABLE)
        slow = dict(columns=["phase"], group_by=["location"])  # two queries: the total and the groups
        quick = dict(columns=["current"], group_by=["location"])
        with pytest.raises(perspective.PerspectiveError, match="took more than 0.2 s"):
            mine.view(**slow)
        # its two queries still run (the gate holds them): the same client may not start more
        with pytest.raises(perspective.PerspectiveError, match="2 queries of your previous history view still run"):
            mine.view(**quick)
        # and they take both of the store's two connections: another client waits, and is told why
        with pytest.raises(perspective.PerspectiveError, match="the store is busy.*history.queries"):
            theirs.view(**quick)
        gate.set()
        assert wait_until(lambda: not first_session.handler.lane.busy)
        backend.runner.timeout = 60.0  # what follows is not about time: a loaded machine must not fail it
        groups = 1 + len(set(METERS.field("location").values_pool()))
        assert mine.view(**quick).num_rows() == theirs.view(**quick).num_rows() == groups
    finally:
        gate.set()
        backend.close()


def test_a_client_waiting_on_its_view_holds_one_thread_and_the_others_are_answered(pair: Pair) -> None:
    if pair.kind != "embedded":
        pytest.skip("the gate holds queries of the embedded store")
    with pair.connect() as store:
        assert isinstance(store, EmbeddedStore)
        path, stable = store.path, store.stable
    gate = threading.Event()
    backend = HistoryBackend(pair.backend.source, lambda: GatedStore(path, stable, gate, '"phase"'))
    server = HistoryServer(backend)
    threads = ThreadPoolExecutor(max_workers=2)  # as serve's executor: every request of every client on it

    async def client_of_its_own() -> perspective.AsyncClient:
        loop = asyncio.get_running_loop()
        session = server.new_session(lambda answer: loop.call_soon_threadsafe(answered, answer))

        def answered(answer: bytes) -> None:
            asyncio.ensure_future(client.handle_response(answer))

        async def send(message: bytes) -> None:
            threads.submit(session.handle_request, message)

        client = perspective.AsyncClient(send)
        return client

    async def scenario() -> tuple[int, int, int]:
        mine, theirs = await client_of_its_own(), await client_of_its_own()
        my_table, their_table = await mine.open_table(TABLE), await theirs.open_table(TABLE)
        slow = asyncio.ensure_future(my_table.view(columns=["phase"], group_by=["location"]))
        size = asyncio.ensure_future(my_table.size())  # queued behind the slow view, on no thread of its own
        # the other client is answered on the second thread meanwhile (a hung wait fails here, not the suite)
        quick = await asyncio.wait_for(their_table.view(columns=["current"], group_by=["location"]), 60)
        groups = await asyncio.wait_for(quick.num_rows(), 60)
        assert not slow.done() and not size.done()
        gate.set()
        return await (await slow).num_rows(), await size, groups

    try:
        slow_groups, size, groups = asyncio.run(scenario())
    finally:
        gate.set()
        threads.shutdown(wait=True)
        backend.close()
    assert slow_groups == groups == 1 + len(set(METERS.field("location").values_pool()))
    assert size == ROWS


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_hosts_the_history_table_beside_the_live_ones_within_its_limits(config: Config) -> None:
    rows = meters_rows(2_000)
    with open_store(config) as store:
        store.ensure_schema(METERS, TABLES)
        store.write(METERS, rows)
    live = LiveServer(config.replace(server={"port": 0}, history={"groups": TABLES - 1})).start()
    try:
        document = json.loads(urllib.request.urlopen(live.url + "dashboard.json").read())
        history = document["history"]

        async def read() -> tuple[list[str], dict[str, list], str]:
            async with connect(live.url.replace("http", "ws", 1).rstrip("/") + history["path"]) as client:
                names = await client.get_hosted_table_names()
                table = await client.open_table(history["table"])
                count = dict(columns=["current"], group_rollup_mode="total", aggregates={"current": "count"})
                columns = await (await table.view(**count)).to_columns()
                try:
                    await table.view(columns=["current"], group_by=["tbname"])  # a group per subtable: one too many
                except perspective.PerspectiveError as exc:
                    return names, columns, str(exc)
                return names, columns, ""

        names, columns, refusal = asyncio.run(read())
    finally:
        live.stop()
    assert names == [f"{config.perspective_table}_history"] == [history["table"]]
    assert columns["current"] == [2_000]
    assert f"more than {TABLES - 1} groups at level 1 (tbname) (history.groups)" in refusal
    assert history["websocket"] is None  # the page's own server
    assert history["config"]["group_by"] == ["bucket"] and history["presets"][-1] == {"label": "all", "seconds": None}


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_the_viewer_command_points_the_history_panel_at_the_history_table_beside_its_server(config: Config) -> None:
    if missing_assets(viewer_dir()):
        pytest.skip("viewer assets missing: npm ci --prefix viewer")
    token = "history-viewer-token-0123456789"
    with open_store(config) as store:
        store.ensure_schema(METERS, TABLES)
        store.write(METERS, meters_rows(500))
    live = LiveServer(config.replace(server={"port": 0, "token": token})).start()
    viewer = subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "viewer", "--ws", live.websocket_url, "--port", "0", "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **cli_env(config), "TAOSPRSP_SERVER_TOKEN": token},
        text=True,
    )
    try:
        url = viewer.stderr.readline().split("dashboard: ", 1)[1].split(" ", 1)[0]
        request = urllib.request.Request(url + "dashboard.json", headers={"Authorization": f"Bearer {token}"})
        history = json.loads(urllib.request.urlopen(request, timeout=10).read())["history"]

        async def count() -> list[int]:
            async with connect(history["websocket"]) as client:  # the token travels in the address, as a page's
                table = await client.open_table(history["table"])
                view = await table.view(columns=["current"], group_rollup_mode="total", aggregates={"current": "count"})
                return (await view.to_columns())["current"]

        counted = asyncio.run(count())
    finally:
        viewer.terminate()
        viewer.wait(timeout=10)
        live.stop()
    assert history["websocket"] == live.websocket_url.replace("/websocket", "/history") + f"?token={token}"
    assert counted == [500]


def test_history_limits_are_config_keys_checked_like_any_other(tmp_path: Path) -> None:
    environ = {"TAOSPRSP_HISTORY_TIMEOUT": "2.5s", "TAOSPRSP_HISTORY_QUERIES": "2"}
    assert load_config(environ=environ).history == HistorySettings(timeout=2.5, queries=2)
    file = tmp_path / "taosprsp.toml"
    for key, value in (("rows", "0"), ("groups", "-1"), ("columns", "0"), ("timeout", '"0s"'), ("queries", "0")):
        file.write_text(f"[history]\n{key} = {value}\n")
        with pytest.raises(ConfigError, match=f"history.{key} in {file}: must be positive") as refused:
            load_config(file, environ={})
        assert refused.value.exit_code == ExitCode.CONFIG


def test_an_unknown_view_or_table_is_a_clear_error(pair: Pair) -> None:
    client_error = perspective.PerspectiveError
    with pytest.raises(client_error):
        history_client(pair.backend).open_table("nope").size()
    with pytest.raises(client_error, match="aggregate 'median'"):
        pair.history.view(columns=["current"], group_by=["location"], aggregates={"current": "median"})
    with pytest.raises(client_error, match="not one of"):
        pair.history.view(columns=["current"], filter=[["current", "contains", "1"]])
    with pytest.raises(HistoryError):
        parse_view(pair.backend.source, {"columns": ["current"], "sort": [["current", "sideways"]]}, pair.aggregates)


def test_tdengine_groups_time_buckets_by_interval_windows_partitioned_by_the_other_keys() -> None:
    source = HistorySource(TABLE, METERS, "ms")
    dialect = TDengineDialect("power", "meters", "ms")
    config = {"columns": ["current"], "group_by": ["location", "minute"], "expressions": BUCKET}
    spec = parse_view(source, {**config, "aggregates": {"current": "avg"}}, dialect.aggregates)
    builder = QueryBuilder(dialect, spec)
    assert builder.level(spec.group_by, (), spec.measures, 100).sql == (
        "SELECT * FROM (SELECT `location` AS k0, CAST(_wstart AS BIGINT) AS k1, AVG(`current`) AS m0 "
        "FROM `power`.`meters` PARTITION BY `location` INTERVAL(60s)) LIMIT 100"
    )
    assert builder.level(spec.group_by[:1], (), spec.measures, 100).sql == (
        "SELECT * FROM (SELECT `location` AS k0, AVG(`current`) AS m0 FROM `power`.`meters` GROUP BY `location`) "
        "LIMIT 100"
    )
