"""`DerivedSpec`: what one derived table holds, its checks, and the dataset facts it is checked against."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from taosprsp.config import ServerSettings
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset
from taosprsp.errors import ConfigError
from taosprsp.ops.declare import INDEX_COLUMN, Operation
from taosprsp.ops.live import perspective_schema

DerivedKind = Literal["groups", "pivot", "series", "spectrum"]
OPERATION_KINDS = ("series", "spectrum")
AGGREGATES = ("sum", "count", "min", "max", "mean")
SLOT_COLUMN = "slot"
"""A `pivot` table's index: its bucket's slot in a ring of `held_buckets`, so a new bucket takes a retired one's row."""
DEFAULT_BUCKET_SECONDS = ServerSettings.bucket
DEFAULT_HORIZON_SECONDS = ServerSettings.horizon
MAX_CHART_CELLS = 4_000
"""The most cells (rows x series) the line chart of Perspective 4.3.0 draws: `max_cells` of the d3fc
"Y Line" plugin. Beyond it the chart draws only its first (oldest) rows and says "Rendering N% of points"."""


@dataclass(frozen=True)
class DerivedSpec:
    """One derived table: its Perspective name, kind, grouping tag, value columns and aggregates.

    - `groups`: a row per group value, the aggregates of each column over the held buckets;
    - `pivot`: a row per held bucket with the bucket's start (`ts`) and, per group value in `groups`, a
      column with the mean of the one column in `columns`: what a line chart draws, one series per column
      (with Perspective 4.3.0 a chart grouped by time and split by group over a row per (bucket, group) costs
      about three times as much per update as this flat shape).

    `bucket_seconds` is the width of a time bucket; `horizon_seconds` is how far behind the newest bucket a
    bucket is still held (None: never retired, only for `groups`).
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
    groups: tuple[Any, ...] = ()
    """`pivot`: the group values that get a column, in order; rows of other values are left out (counted)."""

    def __post_init__(self) -> None:
        if self.kind in OPERATION_KINDS:
            if self.operation is None:
                raise ConfigError(f"derived table {self.name}: a {self.kind} table needs its operation")
            return
        if self.kind not in ("groups", "pivot"):
            raise ConfigError(
                f"derived table {self.name}: kind must be one of groups, pivot, {', '.join(OPERATION_KINDS)}; "
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
        if self.kind == "pivot" and len(self.columns) != 1:
            raise ConfigError(
                f"derived table {self.name}: a pivot table charts one value column, got {len(self.columns)}"
            )
        if not self.bucket_seconds > 0:
            raise ConfigError(f"derived table {self.name}: bucket_seconds must be positive, got {self.bucket_seconds}")
        if self.horizon_seconds is None and self.kind == "pivot":
            raise ConfigError(
                f"derived table {self.name}: a pivot table needs horizon_seconds, or it grows without end"
            )
        if self.horizon_seconds is not None and self.horizon_seconds < self.bucket_seconds:
            raise ConfigError(
                f"derived table {self.name}: horizon_seconds must be at least one bucket ({self.bucket_seconds} s)"
            )

    @property
    def index(self) -> str:
        """The column the Perspective table is indexed by: the group, a pivot's ring slot, or an operation's `rid`."""
        if self.operation is not None:
            return INDEX_COLUMN
        return self.group_by if self.kind == "groups" else SLOT_COLUMN

    @property
    def held_buckets(self) -> int | None:
        """How many buckets (counting the newest) are held; None when nothing is retired."""
        if self.horizon_seconds is None:
            return None
        # the epsilon keeps float noise (0.3 / 0.1 = 2.9999999999999996) from adding a bucket
        return max(1, math.ceil(self.horizon_seconds / self.bucket_seconds - 1e-9))

    def output_columns(self) -> list[str]:
        return [f"{column}_{aggregate}" for column in self.columns for aggregate in self.aggregates]

    def series_columns(self, time_column: str) -> list[str]:
        """A `pivot` table's column of each value in `groups`: the value as text, the chart's series names (a value
        that is also the time or slot column's name gets the group tag's name added)."""
        names = ["(null)" if value is None else str(value) for value in self.groups]
        return [f"{name} ({self.group_by})" if name in (time_column, SLOT_COLUMN) else name for name in names]

    def perspective_schema(self, dataset: Dataset) -> dict[str, str]:
        """Column name -> Perspective type, for `client.table(schema, index=spec.index, name=spec.name)`."""
        if self.operation is not None:
            return perspective_schema(self.operation, dataset)
        time_column = dataset.timestamp.name
        if self.kind == "pivot":
            series = dict.fromkeys(self.series_columns(time_column), "float")
            return {SLOT_COLUMN: "integer", time_column: "datetime", **series}
        schema: dict[str, str] = {self.group_by: group_field_type(dataset, self.group_by)[1]}
        # counts since the feed started can pass Perspective's 32-bit integers; within a horizon they cannot
        count_type = "integer" if self.horizon_seconds is not None else "float"
        for name in self.output_columns():
            schema[name] = count_type if name.endswith("_count") else "float"
        return schema


def group_field_type(dataset: Dataset, name: str) -> tuple[pa.DataType, str]:
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


def check_spec(spec: DerivedSpec, dataset: Dataset) -> None:
    """A spec names a grouping tag and numeric value columns of the dataset."""
    group_field_type(dataset, spec.group_by)
    for name in spec.columns:
        if name not in numeric_columns(dataset):
            raise ConfigError(f"derived table {spec.name}: {name!r} is not a numeric value column of {dataset.name}")
