"""SQL for history views, in the two dialects the stores speak: SQLite (the embedded store) and TDengine.

Every identifier in the SQL is a column name of the dataset's schema (validated when the dataset was
declared) or an alias made here (`k0`, `s0`, `m0`); every value is bound as a parameter (SQLite) or written
as an escaped literal (TDengine, whose client takes no parameters for a query). Grouping follows the
dialect: SQLite `GROUP BY`; TDengine `GROUP BY`, or `PARTITION BY ... INTERVAL(...)` with `_wstart` when a
level groups by a time bucket of the timestamp column. Results are typed by an Arrow schema made beside the
SQL, with times as epoch ticks (`CAST(... AS BIGINT)` on TDengine, which would otherwise hand back text).

Over 400 lines: quoting, binding and escaping are the safety of every history query, so every statement is
built in this one module, for both dialects, where a reader can check them all at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Precision
from taosprsp.history.view import (
    LIST_OPS,
    NULL_OPS,
    TEXT_OPS,
    Filter,
    HistoryError,
    HistorySource,
    Key,
    Measure,
    PerspectiveType,
    Sort,
    ViewSpec,
)
from taosprsp.stores import EmbeddedStore, Store, TDengineStore

_ARROW: dict[PerspectiveType, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "datetime": pa.int64(),
    "date": pa.int64(),
}
_COMPARE = {"==": "=", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
Bind = Callable[[Any], str]
"""Turns a value into SQL text: a `?` mark (its value kept for binding) or an escaped literal."""


@dataclass(frozen=True)
class Statement:
    """One query: its SQL, the parameters of its `?` marks, and the Arrow schema of its result."""

    sql: str
    schema: pa.Schema
    parameters: tuple[Any, ...] = ()


def arrow_type(kind: PerspectiveType) -> pa.DataType:
    """How a value of a Perspective type travels from the store: times as int64 ticks."""
    return _ARROW[kind]


class Dialect(ABC):
    """How one store's SQL spells what a history view asks."""

    precision: Precision
    aggregates: dict[PerspectiveType, tuple[str, ...]]
    """Aggregates this store computes, by the Perspective type of the column."""

    @abstractmethod
    def source(self) -> str:
        """The table rows are read from."""

    @abstractmethod
    def column(self, name: str) -> str:
        """A column of the table."""

    @abstractmethod
    def time_value(self, sql: str) -> str:
        """A time expression as epoch ticks."""

    @abstractmethod
    def aggregate(self, name: str, column: str, is_time: bool) -> str:
        """`name` (one of `aggregates`) over `column`."""

    @abstractmethod
    def like(self, column: str, pattern: str, bind: Bind) -> str:
        """`column` matches the LIKE `pattern` (`%` and `_` escaped where literal), ignoring ASCII case as
        Perspective's text filters do (TDengine's `tbname` excepted)."""

    @abstractmethod
    def binder(self) -> tuple[Bind, list[Any]]:
        """A fresh `Bind` for one statement, and the parameters it collects."""

    @abstractmethod
    def extent(self, column: str, is_primary: bool) -> str:
        """Select list of the oldest and newest time of `column`, as ticks named `lo` and `hi`."""

    def ticks(self, seconds: int) -> int:
        return seconds * TICKS_PER_SECOND[self.precision]

    def key(self, key: Key, primary: str) -> str:
        """The value of a key: a column (times as ticks), or the start of its time bucket, in ticks."""
        column = self.column(key.column.name)
        if key.bucket:
            assert key.width is not None, "automatic widths are resolved before SQL is built"
            return self.bucket(column, self.ticks(key.width))
        return self.time_value(column) if key.column.is_time else column

    def bucket(self, column: str, width: int) -> str:
        """The start of the `width`-tick bucket of `column` (epoch-aligned), in ticks."""
        return f"(({self.time_value(column)} / {width}) * {width})"

    def grouping(self, keys: Sequence[tuple[Key, str]], primary: str) -> tuple[list[str], str]:
        """Select expressions of `keys` (each with its SQL) and the clause grouping by them."""
        expressions = [sql for _, sql in keys]
        return expressions, f" GROUP BY {', '.join(expressions)}" if expressions else ""

    def limited(self, sql: str, limit: int) -> str:
        return f"{sql} LIMIT {int(limit)}"

    def default_order(self, primary: str) -> list[str]:
        """The order of rows when no sort is asked: by time, then subtable (the order rows were fed)."""
        return [self.column(primary), self.column(SUBTABLE_COLUMN)]

    def page(self, sql: str, limit: int, offset: int) -> str:
        return f"{sql} LIMIT {int(limit)} OFFSET {int(offset)}"

    def first_values(
        self, rows: str, keys: Sequence[tuple[Key, str]], values: Sequence[tuple[Key, str]], primary: str
    ) -> str:
        """Per combination of `keys` (selected as `s0`...), each of `values` (`m0`...) as stored in the
        combination's first row in the order of stored rows (`default_order`). `rows` is the table with the
        view's filters (`FROM` omitted)."""
        partition = ", ".join(sql for _, sql in keys)
        order = ", ".join(self.default_order(primary))
        select = [f"{sql} AS s{i}" for i, (_, sql) in enumerate(keys)]
        select += [f"{sql} AS m{i}" for i, (_, sql) in enumerate(values)]
        names = [f"s{i}" for i in range(len(keys))] + [f"m{i}" for i in range(len(values))]
        ranked = f"SELECT {', '.join(select)}, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS place"
        return f"SELECT {', '.join(names)} FROM ({ranked} FROM {rows}) WHERE place = 1"


class SQLiteDialect(Dialect):
    """The embedded store's table `stable` in SQLite: double-quoted names, `?` parameters."""

    aggregates = {
        "integer": ("sum", "count", "avg", "min", "max", "distinct count", "high minus low", "var", "stddev"),
        "float": ("sum", "count", "avg", "min", "max", "distinct count", "high minus low", "var", "stddev"),
        "string": ("count", "distinct count"),
        "datetime": ("count", "distinct count", "min", "max"),
        "date": ("count", "distinct count", "min", "max"),
        "boolean": ("count", "distinct count"),
    }

    def __init__(self, stable: str, precision: Precision) -> None:
        self.stable = stable
        self.precision = precision

    def source(self) -> str:
        return self.column(self.stable)

    def column(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def time_value(self, sql: str) -> str:
        return sql

    def aggregate(self, name: str, column: str, is_time: bool) -> str:
        squares = f"AVG({column} * {column}) - AVG({column}) * AVG({column})"
        return {
            "sum": f"SUM({column})",
            "count": "COUNT(*)",
            "avg": f"AVG({column})",
            "min": f"MIN({column})",
            "max": f"MAX({column})",
            "distinct count": f"COUNT(DISTINCT {column})",
            "high minus low": f"MAX({column}) - MIN({column})",
            "var": f"MAX({squares}, 0)",
            "stddev": f"SQRT(MAX({squares}, 0))",
        }[name]

    def like(self, column: str, pattern: str, bind: Bind) -> str:
        return f"{column} LIKE {bind(pattern)} ESCAPE '\\'"

    def binder(self) -> tuple[Bind, list[Any]]:
        parameters: list[Any] = []

        def bind(value: Any) -> str:
            parameters.append(int(value) if isinstance(value, bool) else value)
            return "?"

        return bind, parameters

    def extent(self, column: str, is_primary: bool) -> str:
        return f"MIN({column}) AS lo, MAX({column}) AS hi"


class TDengineDialect(Dialect):
    """A super table `database`.`stable` in TDengine: backticked names, escaped literals, `tbname` bare."""

    aggregates = {
        "integer": ("sum", "count", "avg", "min", "max", "high minus low", "stddev", "first", "last"),
        "float": ("sum", "count", "avg", "min", "max", "high minus low", "stddev", "first", "last"),
        # first/last of text would read tags (every text field of the built-in datasets is one)
        "string": ("count",),
        "datetime": ("count", "first", "last"),
        "date": ("count", "first", "last"),
        "boolean": ("count",),
    }

    def __init__(self, database: str, stable: str, precision: Precision) -> None:
        self.database = database
        self.stable = stable
        self.precision = precision

    def source(self) -> str:
        return f"{self.column(self.database)}.{self.column(self.stable)}"

    def column(self, name: str) -> str:
        # tbname is a pseudo-column: backticked it would name a column the super table does not have
        return name if name == SUBTABLE_COLUMN else "`" + name.replace("`", "``") + "`"

    def time_value(self, sql: str) -> str:
        return f"CAST({sql} AS BIGINT)"

    def aggregate(self, name: str, column: str, is_time: bool) -> str:
        sql = {
            "sum": f"SUM({column})",
            "count": "COUNT(*)",
            "avg": f"AVG({column})",
            "min": f"MIN({column})",
            "max": f"MAX({column})",
            "high minus low": f"SPREAD({column})",
            "stddev": f"STDDEV({column})",
            "first": f"FIRST({column})",
            "last": f"LAST({column})",
        }[name]
        return self.time_value(sql) if is_time and name != "count" else sql

    def like(self, column: str, pattern: str, bind: Bind) -> str:
        if column == SUBTABLE_COLUMN:  # the pseudo-column is matched as it is: subtable names are case-sensitive
            return f"{column} LIKE {bind(pattern)}"
        return f"LOWER({column}) LIKE {bind(pattern.lower())}"

    def binder(self) -> tuple[Bind, list[Any]]:
        return tdengine_literal, []

    def extent(self, column: str, is_primary: bool) -> str:
        if is_primary:  # the first and last row by the primary key: read from block statistics, not scanned
            return f"{self.time_value(f'FIRST({column})')} AS lo, {self.time_value(f'LAST({column})')} AS hi"
        value = self.time_value(column)
        return f"MIN({value}) AS lo, MAX({value}) AS hi"

    def bucket(self, column: str, width: int) -> str:
        ticks = self.time_value(column)
        return f"CAST({ticks} - {ticks} % {width} AS BIGINT)"

    def grouping(self, keys: Sequence[tuple[Key, str]], primary: str) -> tuple[list[str], str]:
        windowed = [key for key, _ in keys if key.bucket and key.column.name == primary]
        if not windowed:
            return super().grouping(keys, primary)
        if len(windowed) > 1:
            raise HistoryError(f"TDengine groups by one time window at a time: bucket {primary!r} once")
        window = windowed[0]
        assert window.width is not None
        others = [sql for key, sql in keys if key is not window]
        expressions = [self.time_value("_wstart") if key is window else sql for key, sql in keys]
        partition = f" PARTITION BY {', '.join(others)}" if others else ""
        return expressions, f"{partition} INTERVAL({int(window.width)}s)"

    def limited(self, sql: str, limit: int) -> str:
        # with PARTITION BY a LIMIT counts rows per partition: limit the whole result from outside
        return f"SELECT * FROM ({sql}) LIMIT {int(limit)}"

    def first_values(
        self, rows: str, keys: Sequence[tuple[Key, str]], values: Sequence[tuple[Key, str]], primary: str
    ) -> str:
        """TDengine has no window of row numbers: `FIRST`, which passes over NULLs, of number and time columns."""
        for key, _ in values:
            if "first" not in self.aggregates[key.kind]:
                raise HistoryError(
                    f"TDengine orders the split columns of ungrouped rows by the first value of a number or time "
                    f"column, and {key.name!r} is {key.kind}: sort the columns by another, or group the rows"
                )
        expressions, grouping = self.grouping(keys, primary)
        select = [f"{sql} AS s{i}" for i, sql in enumerate(expressions)]
        select += [
            f"{self.aggregate('first', sql, key.kind in ('datetime', 'date'))} AS m{i}"
            for i, (key, sql) in enumerate(values)
        ]
        return f"SELECT {', '.join(select)} FROM {rows}{grouping}"

    def default_order(self, primary: str) -> list[str]:
        return [self.column(primary)]


def tdengine_literal(value: Any) -> str:
    """`value` as a TDengine SQL literal: text quoted with `\\` and `'` escaped, numbers and booleans bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no TDengine literal for {value!r}")


def dialect_for(store: Store, source: HistorySource) -> Dialect:
    """The SQL dialect of `store`, reading the table it serves."""
    if isinstance(store, EmbeddedStore):
        return SQLiteDialect(store.stable, source.precision)
    if isinstance(store, TDengineStore):
        return TDengineDialect(store.database.name, store.stable, source.precision)
    raise TypeError(f"no history SQL for {type(store).__name__}")


def like_pattern(op: str, text: str) -> str:
    """A LIKE pattern for a Perspective text filter, with `\\`, `%` and `_` of `text` escaped by `\\`."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"begins with": f"{escaped}%", "contains": f"%{escaped}%", "ends with": f"%{escaped}"}[op]


class QueryBuilder:
    """The statements of one view: per-level aggregates, pages of stored rows, counts, the time extent."""

    def __init__(self, dialect: Dialect, spec: ViewSpec) -> None:
        self.dialect = dialect
        self.spec = spec
        self.primary = spec.source.timestamp

    def _key(self, key: Key) -> str:
        return self.dialect.key(key, self.primary)

    def _where(self, bind: Bind) -> str:
        if not self.spec.filters:
            return ""
        joiner = " OR " if self.spec.any_filter else " AND "
        return " WHERE " + joiner.join(f"({self._condition(f, bind)})" for f in self.spec.filters)

    def _condition(self, f: Filter, bind: Bind) -> str:
        column = self.dialect.column(f.key.column.name)
        if f.op in NULL_OPS:
            return f"{column} IS {'NOT ' if f.op == 'is not null' else ''}NULL"
        if f.op in TEXT_OPS:
            return self.dialect.like(column, like_pattern(f.op, f.value), bind)
        if f.op in LIST_OPS:
            if not f.value:
                return "1 = 0" if f.op == "in" else "1 = 1"
            values = ", ".join(bind(value) for value in f.value)
            return f"{column} {'NOT IN' if f.op == 'not in' else 'IN'} ({values})"
        return f"{column} {_COMPARE[f.op]} {bind(f.value)}"

    def _column(self, key: Key) -> str:
        """What an aggregate of `key` reads: its column, or its time bucket."""
        return self._key(key) if key.bucket else self.dialect.column(key.column.name)

    def _measure(self, measure: Measure) -> str:
        key = measure.key
        return self.dialect.aggregate(measure.aggregate, self._column(key), key.kind in ("datetime", "date"))

    def level(self, keys: Sequence[Key], splits: Sequence[Key], measures: Sequence[Measure], limit: int) -> Statement:
        """One row per distinct (keys, splits) with every measure aggregated; at most `limit` rows."""
        bind, parameters = self.dialect.binder()
        where = self._where(bind)
        grouped = [(key, self._key(key)) for key in (*keys, *splits)]
        expressions, grouping = self.dialect.grouping(grouped, self.primary)
        aliases = [f"k{i}" for i in range(len(keys))] + [f"s{i}" for i in range(len(splits))]
        select = [f"{sql} AS {alias}" for sql, alias in zip(expressions, aliases, strict=True)]
        select += [f"{self._measure(m)} AS m{i}" for i, m in enumerate(measures)]
        sql = f"SELECT {', '.join(select)} FROM {self.dialect.source()}{where}{grouping}"
        if grouping:
            sql = self.dialect.limited(sql, limit)
        fields = [(alias, arrow_type(key.kind)) for alias, (key, _) in zip(aliases, grouped, strict=True)]
        fields += [(f"m{i}", arrow_type(m.kind)) for i, m in enumerate(measures)]
        return Statement(sql, pa.schema(fields), tuple(parameters))

    def rows(self, splits: Sequence[Key], measures: Sequence[Measure], limit: int, offset: int) -> Statement:
        """Stored rows `offset`..`offset + limit`, in the view's order: split values, then each measure's."""
        bind, parameters = self.dialect.binder()
        where = self._where(bind)
        select = [f"{self._key(key)} AS s{i}" for i, key in enumerate(splits)]
        select += [f"{self._key(m.key)} AS m{i}" for i, m in enumerate(measures)]
        order = [self._order(s) for s in self.spec.sorts] + self.dialect.default_order(self.primary)
        sql = f"SELECT {', '.join(select)} FROM {self.dialect.source()}{where} ORDER BY {', '.join(order)}"
        fields = [(f"s{i}", arrow_type(key.kind)) for i, key in enumerate(splits)]
        fields += [(f"m{i}", arrow_type(m.key.kind)) for i, m in enumerate(measures)]
        return Statement(self.dialect.page(sql, limit, offset), pa.schema(fields), tuple(parameters))

    def first_values(self, splits: Sequence[Key], measures: Sequence[Measure], limit: int) -> Statement:
        """Per distinct combination of `splits`, each measure's column as stored in the combination's first row
        (by time, then subtable): what Perspective orders the split columns of ungrouped rows by. At most
        `limit` rows."""
        bind, parameters = self.dialect.binder()
        rows = f"{self.dialect.source()}{self._where(bind)}"
        keys = [(key, self._key(key)) for key in splits]
        values = [(m.key, self._column(m.key)) for m in measures]
        sql = self.dialect.limited(self.dialect.first_values(rows, keys, values, self.primary), limit)
        fields = [(f"s{i}", arrow_type(key.kind)) for i, key in enumerate(splits)]
        fields += [(f"m{i}", arrow_type(m.key.kind)) for i, m in enumerate(measures)]
        return Statement(sql, pa.schema(fields), tuple(parameters))

    def _order(self, sort: Sort) -> str:
        measure = next(m for m in (*self.spec.measures, *self.spec.hidden) if m.name == sort.name)
        value = self._key(measure.key)
        return f"{f'ABS({value})' if sort.absolute else value}{' DESC' if sort.descending else ''}"

    def count(self) -> Statement:
        """How many stored rows the view's filters select."""
        bind, parameters = self.dialect.binder()
        sql = f"SELECT COUNT(*) AS n FROM {self.dialect.source()}{self._where(bind)}"
        return Statement(sql, pa.schema([("n", pa.int64())]), tuple(parameters))

    def extent(self, column: str) -> Statement:
        """The oldest and newest time of `column` among the rows the view's filters select, in ticks."""
        bind, parameters = self.dialect.binder()
        select = self.dialect.extent(self.dialect.column(column), column == self.primary)
        sql = f"SELECT {select} FROM {self.dialect.source()}{self._where(bind)}"
        return Statement(sql, pa.schema([("lo", pa.int64()), ("hi", pa.int64())]), tuple(parameters))


def table_size(dialect: Dialect) -> Statement:
    """How many rows the table holds."""
    return Statement(f"SELECT COUNT(*) AS n FROM {dialect.source()}", pa.schema([("n", pa.int64())]))
