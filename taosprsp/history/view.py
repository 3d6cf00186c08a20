"""A Perspective view config, checked against a history table's schema and read into a `ViewSpec`.

Nothing of a config reaches SQL as text: column names are looked up in the table's schema (the dataset's
fields and `tbname`), aggregates, filter operators and sort directions in fixed tables, bucket widths in
a fixed list; filter values are kept as typed values for the SQL builder to bind or escape. What does not
check out raises `HistoryError`, whose message the viewer shows.

Over 400 lines: it is the one gate between a client's config and SQL; split, a check could be skipped by a path
that reads one part of the config and not the other.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Precision
from taosprsp.errors import TaosprspError

PerspectiveType = Literal["datetime", "date", "boolean", "integer", "float", "string"]
Mode = Literal["rollup", "flat", "total"]

BUCKET_STEPS: tuple[tuple[str, int], ...] = (
    ("1s", 1),
    ("5s", 5),
    ("10s", 10),
    ("15s", 15),
    ("30s", 30),
    ("1m", 60),
    ("5m", 300),
    ("10m", 600),
    ("15m", 900),
    ("30m", 1_800),
    ("1h", 3_600),
    ("2h", 7_200),
    ("3h", 10_800),
    ("6h", 21_600),
    ("12h", 43_200),
)
"""Bucket widths: those of Perspective's `bucket()` below a day (it refuses others, such as '2m'), each aligned
to the epoch like TDengine's `INTERVAL` below a day; a day or more would align to a time zone."""
AUTO_BUCKET = "auto"
TARGET_BUCKETS = 500
"""How many buckets an automatic width aims at, at most, over the range (like Grafana's `$interval`, which
divides the range by the panel's width in pixels)."""

_BUCKET = re.compile(r"""^\s*bucket\(\s*"([^"]+)"\s*,\s*'([^']+)'\s*\)\s*$""")
_STEP_SECONDS = dict(BUCKET_STEPS)
_ROW_SORTS = {"asc": (False, False), "desc": (True, False), "asc abs": (False, True), "desc abs": (True, True)}
_COLUMN_SORTS = {f"col {direction}": order for direction, order in _ROW_SORTS.items()}
_NO_SORT = "none"
_TIME_BOUNDS = {">=": "low", ">": "low", "<": "high", "<=": "high", "==": "both"}
_MODES: tuple[Mode, ...] = ("rollup", "flat", "total")

VALUE_OPS = ("==", "!=", "<", ">", "<=", ">=")
NULL_OPS = ("is null", "is not null")
TEXT_OPS = ("begins with", "contains", "ends with")
LIST_OPS = ("in", "not in")
FILTER_OPS: dict[PerspectiveType, tuple[str, ...]] = {
    "integer": VALUE_OPS + NULL_OPS,
    "float": VALUE_OPS + NULL_OPS,
    "datetime": VALUE_OPS + NULL_OPS,
    "date": VALUE_OPS + NULL_OPS,
    "string": VALUE_OPS + TEXT_OPS + LIST_OPS + NULL_OPS,
    "boolean": ("==", "!=") + NULL_OPS,
}
"""The filter operators a history table offers per column type, as Perspective spells them."""


class HistoryError(TaosprspError):
    """A history query that cannot be answered as asked: the message says why and what to change."""


def auto_bucket(seconds: float) -> int:
    """The bucket width (seconds) for a time range of `seconds`: the narrowest step giving at most
    `TARGET_BUCKETS` buckets, the widest step beyond that."""
    for _, width in BUCKET_STEPS:
        if width * TARGET_BUCKETS >= seconds:
            return width
    return BUCKET_STEPS[-1][1]


@dataclass(frozen=True)
class Column:
    """A column of a history table: its name (a dataset field or `tbname`) and Perspective type."""

    name: str
    kind: PerspectiveType
    is_time: bool = False


@dataclass(frozen=True)
class HistorySource:
    """One history table: a dataset in a store, under a name Perspective clients open."""

    name: str
    dataset: Dataset
    precision: Precision

    @property
    def columns(self) -> dict[str, Column]:
        found = {SUBTABLE_COLUMN: Column(SUBTABLE_COLUMN, "string")}
        for f in self.dataset.fields:
            found[f.name] = Column(f.name, f.perspective, f.is_time)
        return found

    @property
    def timestamp(self) -> str:
        return self.dataset.timestamp.name

    def schema(self) -> dict[str, str]:
        """Column name -> Perspective type."""
        return {name: column.kind for name, column in self.columns.items()}

    def ticks(self, millis: int) -> int:
        """Epoch milliseconds (Perspective's times) as epoch ticks in the store's precision."""
        return millis * (TICKS_PER_SECOND[self.precision] // 1_000)


@dataclass(frozen=True)
class Key:
    """What rows are grouped or split by: a column, or a time bucket of one (`width` seconds, None: auto)."""

    name: str
    column: Column
    bucket: bool = False
    width: int | None = None

    @property
    def kind(self) -> PerspectiveType:
        return "datetime" if self.bucket else self.column.kind


@dataclass(frozen=True)
class Measure:
    """A column's value in a view: aggregated (grouped views) or as stored (flat views)."""

    name: str
    key: Key
    aggregate: str

    @property
    def kind(self) -> PerspectiveType:
        return output_kind(self.aggregate, self.key.kind)


@dataclass(frozen=True)
class Filter:
    """`key op value`; `value` is typed for the column (ticks for times), a tuple for in / not in."""

    key: Key
    op: str
    value: Any


@dataclass(frozen=True)
class Sort:
    name: str
    descending: bool
    absolute: bool


@dataclass(frozen=True)
class ViewSpec:
    """A view config, checked: what to show and how to group, split, filter and order it."""

    source: HistorySource
    measures: tuple[Measure, ...]
    hidden: tuple[Measure, ...]
    group_by: tuple[Key, ...]
    split_by: tuple[Key, ...]
    filters: tuple[Filter, ...]
    any_filter: bool
    sorts: tuple[Sort, ...]
    column_sorts: tuple[Sort, ...]
    """How split columns are ordered (Perspective's "col asc" ...); empty when the view does not split."""
    mode: Mode

    @property
    def grouped(self) -> bool:
        """Whether rows are aggregates (group_by, or the total mode), not stored rows."""
        return bool(self.group_by) or self.mode == "total"

    @property
    def sort_measures(self) -> tuple[Measure, ...]:
        """The measures the row sorts name, each once, in the order of the sorts."""
        return self._named(self.sorts)

    @property
    def column_sort_measures(self) -> tuple[Measure, ...]:
        """The measures the column sorts name, each once, in the order of the sorts."""
        return self._named(self.column_sorts)

    def _named(self, sorts: Sequence[Sort]) -> tuple[Measure, ...]:
        by_name = {m.name: m for m in (*self.measures, *self.hidden)}
        return tuple(by_name[name] for name in dict.fromkeys(s.name for s in sorts))

    def auto_buckets(self) -> tuple[Key, ...]:
        return tuple(key for key in self.group_by + self.split_by if key.bucket and key.width is None)

    def time_range(self, column: str) -> tuple[int | None, int | None]:
        """The ticks the filters bound `column` to (low, high), None where open; only when filters are and-ed."""
        low = high = None
        if self.any_filter:
            return None, None
        for f in self.filters:
            side = _TIME_BOUNDS.get(f.op)
            if f.key.bucket or f.key.column.name != column or side is None:
                continue
            if side in ("low", "both"):
                low = f.value if low is None else max(low, f.value)
            if side in ("high", "both"):
                high = f.value if high is None else min(high, f.value)
        return low, high

    def with_widths(self, width: int) -> ViewSpec:
        """This spec with every automatic bucket `width` seconds wide."""

        def fixed(key: Key) -> Key:
            return replace(key, width=width) if key.bucket and key.width is None else key

        def measure(m: Measure) -> Measure:
            return replace(m, key=fixed(m.key))

        return replace(
            self,
            group_by=tuple(fixed(k) for k in self.group_by),
            split_by=tuple(fixed(k) for k in self.split_by),
            measures=tuple(measure(m) for m in self.measures),
            hidden=tuple(measure(m) for m in self.hidden),
            filters=tuple(replace(f, key=fixed(f.key)) for f in self.filters),
        )


def default_aggregate(kind: PerspectiveType) -> str:
    """Perspective's default: numbers are summed, everything else counted."""
    return "sum" if kind in ("integer", "float") else "count"


def output_kind(aggregate: str, kind: PerspectiveType) -> PerspectiveType:
    """The type of `aggregate` over a column of `kind`, as Perspective gives it."""
    if aggregate in ("count", "distinct count"):
        return "integer"
    if aggregate in ("avg", "var", "stddev"):
        return "float"
    if aggregate == "sum" and kind == "integer":
        return "float"  # a sum outgrows Perspective's 32-bit integers long before a float loses a unit
    return kind


def parse_view(source: HistorySource, config: Mapping[str, Any], aggregates: Mapping[str, Sequence[str]]) -> ViewSpec:
    """`config` (what Perspective hands `table_make_view`) checked against `source`; `aggregates` lists the
    aggregates the store offers per column type."""
    expressions = _expressions(source, config.get("expressions") or {})

    def key(name: Any, role: str) -> Key:
        if isinstance(name, str) and name in expressions:
            return expressions[name]
        column = source.columns.get(name) if isinstance(name, str) else None
        if column is None:
            raise HistoryError(f"{role}: {name!r} is not a column of {source.name}; its columns: {_names(source)}")
        return Key(name, column)

    group_by = tuple(key(name, "group_by") for name in config.get("group_by") or ())
    split_by = tuple(key(name, "split_by") for name in config.get("split_by") or ())
    chosen = config.get("aggregates") or {}
    grouped = bool(group_by) or config.get("group_rollup_mode") == "total"

    def measure(name: str) -> Measure:
        found = key(name, "columns")
        aggregate = chosen.get(name, default_aggregate(found.kind))
        if not isinstance(aggregate, str):
            raise HistoryError(f"aggregate of {name!r}: {aggregate!r} is not one a history table computes")
        offered = aggregates.get(found.kind, ())
        if grouped and aggregate not in offered:
            raise HistoryError(
                f"aggregate {aggregate!r} of {name!r} is not computed by this store for {found.kind} columns; "
                f"choose one of: {', '.join(offered)}"
            )
        return Measure(name, found, aggregate)

    names = [name for name in config.get("columns") or () if name is not None]
    measures = tuple(measure(name) for name in dict.fromkeys(names))
    sorts: list[Sort] = []
    column_sorts: list[Sort] = []
    for entry in config.get("sort") or ():
        sort, orders_columns = _sort(entry)
        if sort is not None and not (orders_columns and not split_by):  # as Perspective: no split, no column order
            (column_sorts if orders_columns else sorts).append(sort)
    shown = {m.name for m in measures}
    sorted_by = dict.fromkeys(s.name for s in (*sorts, *column_sorts))
    hidden = tuple(measure(name) for name in sorted_by if name not in shown)
    mode = config.get("group_rollup_mode") or "rollup"
    if mode not in _MODES:
        raise HistoryError(f"group_rollup_mode {mode!r} is not one of {', '.join(_MODES)}")
    filter_op = config.get("filter_op") or "and"
    if filter_op not in ("and", "or"):
        raise HistoryError(f"filter_op {filter_op!r} is not 'and' or 'or'")
    filters = tuple(_filter(source, key(entry[0], "filter"), entry) for entry in config.get("filter") or ())
    return ViewSpec(
        source,
        measures,
        hidden,
        group_by,
        split_by,
        filters,
        filter_op == "or",
        tuple(sorts),
        tuple(column_sorts),
        mode,
    )


def _names(source: HistorySource) -> str:
    return ", ".join(source.columns)


def _expressions(source: HistorySource, expressions: Mapping[str, str]) -> dict[str, Key]:
    """Expression name -> its bucket key; only `bucket("<time column>", '<width>')` is understood."""
    found = {}
    for name, text in expressions.items():
        found[name] = parse_expression(source, name, text)
    return found


def parse_expression(source: HistorySource, name: str, text: Any) -> Key:
    """The bucket `text` (`bucket("ts", '1m')`, or `'auto'` for a width from the time range) as a key."""
    match = _BUCKET.match(text) if isinstance(text, str) else None
    if match is None:
        raise HistoryError(
            f"expression {name!r}: a history table computes only time buckets, written "
            f"bucket(\"<time column>\", '<width>') with a width of {', '.join(_STEP_SECONDS)} or '{AUTO_BUCKET}'"
        )
    column = source.columns.get(match.group(1))
    if column is None or not column.is_time:
        times = ", ".join(c.name for c in source.columns.values() if c.is_time)
        raise HistoryError(f"expression {name!r}: {match.group(1)!r} is not a time column; time columns: {times}")
    spec = match.group(2)
    if spec != AUTO_BUCKET and spec not in _STEP_SECONDS:
        raise HistoryError(
            f"expression {name!r}: bucket width {spec!r} is not one of {', '.join(_STEP_SECONDS)} or '{AUTO_BUCKET}'"
        )
    return Key(name, column, bucket=True, width=None if spec == AUTO_BUCKET else _STEP_SECONDS[spec])


def _sort(entry: Any) -> tuple[Sort | None, bool]:
    """A `[column, direction]` entry as a sort (None: "none") and whether it orders split columns, not rows."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
        raise HistoryError(f"sort: {entry!r} is not a [column, direction] pair")
    name, direction = entry
    if direction == _NO_SORT:
        return None, False
    orders_columns = direction in _COLUMN_SORTS
    found = _COLUMN_SORTS.get(direction) or _ROW_SORTS.get(direction)
    if found is None:
        choices = ", ".join([*_ROW_SORTS, *_COLUMN_SORTS, _NO_SORT])
        raise HistoryError(f"sort {name!r}: direction {direction!r} is not one of {choices}")
    descending, absolute = found
    return Sort(name, descending, absolute), orders_columns


def _filter(source: HistorySource, key: Key, entry: Sequence[Any]) -> Filter:
    if len(entry) not in (2, 3):
        raise HistoryError(f"filter: {list(entry)!r} is not a [column, operator, value] triple")
    op = entry[1]
    value = entry[2] if len(entry) == 3 else None
    if key.bucket:
        raise HistoryError(f"filter {key.name!r}: filter the time column {key.column.name!r} itself, not its bucket")
    kind = key.column.kind
    if op not in FILTER_OPS[kind]:
        raise HistoryError(f"filter {key.name!r}: {op!r} is not one of {', '.join(FILTER_OPS[kind])} for {kind}")
    if op in NULL_OPS:
        return Filter(key, op, None)
    if op in LIST_OPS:
        # perspective's config carries a list of one value as that value
        values = value if isinstance(value, (list, tuple)) else [value]
        return Filter(key, op, tuple(_value(source, key, item) for item in values))
    return Filter(key, op, _value(source, key, value))


def _value(source: HistorySource, key: Key, value: Any) -> Any:
    """`value` as the column's type holds it (times as ticks), or HistoryError."""
    kind = key.column.kind
    where = f"filter {key.name!r}"
    if kind == "string":
        if not isinstance(value, str) or "\x00" in value:
            raise HistoryError(f"{where}: expected text without NUL characters, got {value!r}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise HistoryError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("datetime", "date"):
        return source.ticks(_millis(value, where))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HistoryError(f"{where}: expected a finite number, got {value!r}")
    return value


def _millis(value: Any, where: str) -> int:
    """Epoch milliseconds from a number (Perspective's datetime values) or date text (local time unless it
    names a zone, as Perspective reads it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return round(parsed.timestamp() * 1_000)
    raise HistoryError(f"{where}: expected a time (epoch milliseconds or text such as 2024-01-31 12:00), got {value!r}")
