"""Datasets, each declared once.

A dataset is a TDengine super table: a timestamp column, value columns and tags. Its declaration here is
the single source from which the TDengine DDL, the stmt2 bind helpers, the Arrow schema, the Perspective
schema and the generator's output are derived.

Data moves as Arrow tables in the *store layout*: `tbname` (the subtable), the columns (timestamps as
epoch integers in the database precision) and the tags, in declaration order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from taosprsp.errors import ConfigError

Precision = Literal["ms", "us", "ns"]
TICKS_PER_SECOND: dict[Precision, int] = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

SUBTABLE_COLUMN = "tbname"

LogicalKind = Literal["timestamp", "date", "float", "double", "int", "uint", "bigint", "varchar"]
"""A field's logical type; `FieldKind` spells it for each system."""


@dataclass(frozen=True)
class FieldKind:
    """How one logical type is spelled in each system it crosses."""

    tdengine: str
    arrow: pa.DataType
    perspective: str
    stmt2_column: str
    stmt2_tag: str
    line_suffix: str


_KINDS: dict[LogicalKind, FieldKind] = {
    "timestamp": FieldKind("TIMESTAMP", pa.int64(), "datetime", "{p}_timestamps_to_column", "timestamp_to_tag", ""),
    "date": FieldKind("TIMESTAMP", pa.int64(), "date", "{p}_timestamps_to_column", "timestamp_to_tag", ""),
    "float": FieldKind("FLOAT", pa.float32(), "float", "floats_to_column", "float_to_tag", "f32"),
    "double": FieldKind("DOUBLE", pa.float64(), "float", "doubles_to_column", "double_to_tag", "f64"),
    "int": FieldKind("INT", pa.int32(), "integer", "ints_to_column", "int_to_tag", "i32"),
    "uint": FieldKind("INT UNSIGNED", pa.uint32(), "integer", "unsigned_ints_to_column", "u_int_to_tag", "u32"),
    "bigint": FieldKind("BIGINT", pa.int64(), "integer", "big_ints_to_column", "big_int_to_tag", "i64"),
    "varchar": FieldKind("VARCHAR({n})", pa.string(), "string", "varchar_to_column", "varchar_to_tag", ""),
}

_PRECISION_WORD: dict[Precision, str] = {"ms": "millis", "us": "micros", "ns": "nanos"}


def epoch_ticks(values: list[Any], precision: Precision) -> np.ndarray:
    """Epoch integers in `precision` from what TDengine hands back: aware datetimes, or ints for ns."""
    if not values or isinstance(values[0], (int, np.integer)):
        return np.asarray(values, dtype=np.int64)
    micros = pa.array(values, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    return micros * TICKS_PER_SECOND[precision] // 1_000_000


@dataclass(frozen=True)
class Field:
    """One column or tag: its name, logical kind, unit (for people) and, for strings, its length.

    A tag also declares its values: subtable i takes `pool[(i // stride) % len(pool)]`, the same in every
    process, so a producer and a server started apart agree on every subtable's tags.
    """

    name: str
    kind: LogicalKind
    unit: str = ""
    length: int = 0
    pool: tuple[str | int, ...] = ()
    stride: int = 1

    @property
    def spec(self) -> FieldKind:
        return _KINDS[self.kind]

    @property
    def is_time(self) -> bool:
        return self.kind in ("timestamp", "date")

    def tdengine_type(self) -> str:
        return self.spec.tdengine.format(n=self.length)

    def stmt2_column_helper(self, precision: Precision) -> str:
        """Name of the `taosws` function that turns a Python list into a stmt2 column."""
        return self.spec.stmt2_column.format(p=_PRECISION_WORD[precision])

    def tag_values(self, count: int) -> np.ndarray:
        """This tag's values for subtables 0..count-1, typed like its Arrow column."""
        index = (np.arange(count) // self.stride) % len(self.pool)
        return np.asarray(self.pool, dtype=self.spec.arrow.to_pandas_dtype())[index]


@dataclass(frozen=True)
class Dataset:
    """A super table declaration: columns (the first is the timestamp) and tags.

    `group_tag` and `headline` (the columns worth a first look) shape the default dashboard.
    """

    name: str
    description: str
    columns: tuple[Field, ...]
    tags: tuple[Field, ...]
    subtable_prefix: str
    group_tag: str
    headline: tuple[str, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.columns + self.tags

    @property
    def timestamp(self) -> Field:
        return self.columns[0]

    @property
    def value_columns(self) -> tuple[Field, ...]:
        return self.columns[1:]

    def field(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        """The store layout: `tbname`, columns (time as epoch integers), tags."""
        return pa.schema(
            [pa.field(SUBTABLE_COLUMN, pa.string(), nullable=False)]
            + [pa.field(f.name, f.spec.arrow) for f in self.fields]
        )

    def perspective_schema(self) -> dict[str, str]:
        """Column name -> Perspective type, for `client.table(schema)`."""
        schema = {SUBTABLE_COLUMN: "string"}
        schema.update({f.name: f.spec.perspective for f in self.fields})
        return schema

    def create_stable_sql(self, database: str, stable: str) -> str:
        """`CREATE STABLE IF NOT EXISTS` for this dataset under validated names."""
        columns = ", ".join(f"`{f.name}` {f.tdengine_type()}" for f in self.columns)
        tags = ", ".join(f"`{f.name}` {f.tdengine_type()}" for f in self.tags)
        return f"CREATE STABLE IF NOT EXISTS `{identifier(database)}`.`{identifier(stable)}` ({columns}) TAGS ({tags})"

    def insert_sql(self, stable: str) -> str:
        """The stmt2 statement: subtable and tags as parameters, then one `?` per column."""
        tag_names = ", ".join(f"`{f.name}`" for f in self.tags)
        tag_marks = ", ".join("?" for _ in self.tags)
        value_marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO ? USING `{identifier(stable)}` ({tag_names}) TAGS ({tag_marks}) VALUES ({value_marks})"

    def select_list(self) -> str:
        """Columns in store layout for a TDengine SELECT, times cast to epoch integers."""
        parts = ["tbname"]
        for f in self.fields:
            parts.append(f"CAST(`{f.name}` AS BIGINT) AS `{f.name}`" if f.is_time else f"`{f.name}`")
        return ", ".join(parts)

    def subtable_names(self, count: int) -> list[str]:
        return [f"{self.subtable_prefix}{i}" for i in range(count)]

    def tag_values(self, count: int) -> dict[str, np.ndarray]:
        """Tag name -> the values of subtables 0..count-1 (see `Field.pool`)."""
        return {f.name: f.tag_values(count) for f in self.tags}


LOCATIONS = (
    "SanFrancisco",
    "LosAngeles",
    "SanDiego",
    "SanJose",
    "PaloAlto",
    "Campbell",
    "MountainView",
    "Sunnyvale",
    "SantaClara",
    "Cupertino",
)
GROUPS = tuple(range(10))
TICKERS = (
    "AAPL.N",
    "AMZN.N",
    "QQQ.N",
    "NVDA.N",
    "TSLA.N",
    "FB.N",
    "MSFT.N",
    "TLT.N",
    "XIV.N",
    "YY.N",
    "CSCO.N",
    "GOOGL.N",
    "PCLN.N",
)
CLIENTS = ("Homer", "Marge", "Bart", "Lisa", "Maggie", "Moe", "Lenny", "Carl", "Krusty")


METERS = Dataset(
    name="meters",
    description="Smart power meters: current, voltage and phase per meter, tagged by group and location.",
    columns=(
        Field("ts", "timestamp"),
        Field("current", "float", "A"),
        Field("voltage", "int", "V"),
        Field("phase", "float", "rad"),
    ),
    tags=(Field("groupid", "int", pool=GROUPS), Field("location", "varchar", length=24, pool=LOCATIONS)),
    subtable_prefix="d",
    group_tag="location",
    headline=("current", "voltage"),
)

STOCKS = Dataset(
    name="stocks",
    description="Stock trades: open/high/low/close and volume per ticker and client.",
    columns=(
        Field("ts", "timestamp"),
        Field("open", "float", "USD"),
        Field("high", "float", "USD"),
        Field("low", "float", "USD"),
        Field("close", "float", "USD"),
        Field("volume", "uint", "shares"),
        Field("date", "date"),
    ),
    # every ticker gets a client before the next client comes round
    tags=(
        Field("ticker", "varchar", length=16, pool=TICKERS),
        Field("client", "varchar", length=16, pool=CLIENTS, stride=len(TICKERS)),
    ),
    subtable_prefix="s",
    group_tag="ticker",
    headline=("close", "volume"),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (METERS, STOCKS)}

# TDengine: letters, digits and underscores, not starting with a digit, at most 192 characters.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,191}$")


def identifier(name: str, what: str = "identifier") -> str:
    """Return `name` when TDengine accepts it as an unquoted identifier, else raise `ConfigError`.

    Everything from config that ends up in SQL passes through here first, so nothing is pasted in unchecked.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid TDengine identifier: use letters, digits and underscores, "
            "not starting with a digit, at most 192 characters"
        )
    return name


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None
