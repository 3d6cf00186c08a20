"""Dataset declarations: fields, datasets, and the TOML shape both built-ins and `[datasets.NAME]` are written in.

A dataset is a TDengine super table: a timestamp column, value columns and tags. Its declaration is the
single source from which the TDengine DDL, the stmt2 bind helpers, the Arrow schema, the Perspective
schema, the generator and the default dashboard are derived.

Data moves as Arrow tables in the *store layout*: `tbname` (the subtable), the columns (timestamps as
epoch integers in the database precision) and the tags, in declaration order.

The declaration shape (a TOML table; see `configs/sensors.toml`)::

    description = "..."                # optional
    subtable_prefix = "d"              # subtables d0, d1, ... (default: "<name>_")
    group_tag = "location"             # the dashboard groups by it (default: the first string tag)
    headline = ["current", "voltage"]  # charted (default: the first four numeric columns)
    columns = [{ name = "ts", type = "TIMESTAMP" },
               { name = "current", type = "FLOAT", unit = "A", generator = "walk", min = 4, max = 12 }]
    tags = [{ name = "location", type = "VARCHAR(24)", values = ["SanJose", "PaloAlto"], stride = 1 }]

A field may say `perspective = "string"` (64-bit integers kept exact) or, for a TIMESTAMP, `"date"`.

Over 400 lines: `Field` and `Dataset` are the one declaration everything derives from; each derived form
(DDL, stmt2 helpers, Arrow and Perspective schemas) is a few lines beside the fact it derives from.
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from taosprsp.datasets.hints import HINT_KEYS, Hint, parse_hint
from taosprsp.datasets.types import KINDS, FieldKind, LogicalKind, PerspectiveType, parse_type, perspective_arrow_type
from taosprsp.errors import ConfigError

Precision = Literal["ms", "us", "ns"]
TICKS_PER_SECOND: dict[Precision, int] = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
SUBTABLE_COLUMN = "tbname"


def now_ticks(precision: Precision) -> int:
    """The wall clock as epoch ticks in `precision`."""
    return time.time_ns() // (1_000_000_000 // TICKS_PER_SECOND[precision])


_PRECISION_WORD: dict[Precision, str] = {"ms": "millis", "us": "micros", "ns": "nanos"}
DEFAULT_POOL_SIZE = 10

# TDengine: letters, digits and underscores, not starting with a digit, at most 192 characters.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,191}")


def identifier(name: str, what: str = "identifier") -> str:
    """Return `name` when TDengine accepts it as an unquoted identifier, else raise `ConfigError`.

    Everything from config that ends up in SQL passes through here first, so nothing is pasted in unchecked.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid TDengine identifier: use letters, digits and underscores, "
            "not starting with a digit, at most 192 characters"
        )
    return name


def epoch_ticks(values: list[Any], precision: Precision) -> np.ndarray:
    """Epoch integers in `precision` from what TDengine hands back: aware datetimes, or ints for ns."""
    if not values or isinstance(values[0], (int, np.integer)):
        return np.asarray(values, dtype=np.int64)
    micros = pa.array(values, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    return micros * TICKS_PER_SECOND[precision] // 1_000_000


def time_column(table: pa.Table) -> str:
    """The timestamp column of a store-layout table: the first after `tbname`."""
    return table.column_names[1]


@dataclass(frozen=True)
class Field:
    """One column or tag: name, logical kind, unit (for people), string length, generator hint.

    A tag also has its values: subtable i takes `pool[(i // stride) % len(pool)]`, the same in every
    process, so a producer and a server started apart agree on every subtable's tags.
    """

    name: str
    kind: LogicalKind
    unit: str = ""
    length: int = 0
    pool: tuple[Any, ...] = ()
    stride: int = 1
    hint: Hint | None = None
    perspective_as: PerspectiveType | None = None

    @property
    def spec(self) -> FieldKind:
        return KINDS[self.kind]

    @property
    def is_time(self) -> bool:
        return self.kind in ("timestamp", "date")

    @property
    def perspective(self) -> PerspectiveType:
        """The Perspective column type: the kind's, unless the declaration asks for another."""
        return self.perspective_as or self.spec.perspective

    @property
    def is_numeric(self) -> bool:
        return self.spec.is_numeric and self.perspective != "string"

    def perspective_arrow_type(self, precision: Precision) -> pa.DataType:
        """The Arrow type this field is handed to Perspective as."""
        return perspective_arrow_type(self.perspective, precision)

    def tdengine_type(self) -> str:
        return self.spec.tdengine.format(n=self.length)

    def sqlite_type(self) -> str:
        return self.spec.sqlite.format(n=self.length)

    def stmt2_column_helper(self, precision: Precision) -> str:
        """Name of the `taosws` function that turns a Python list into a stmt2 column."""
        return self.spec.stmt2_column.format(p=_PRECISION_WORD[precision])

    def values_pool(self) -> tuple[Any, ...]:
        """The declared tag values, or ten made up from the type."""
        if self.pool:
            return self.pool
        if self.kind == "bool":
            return (True, False)
        if self.spec.arrow == pa.string():
            return tuple(f"{self.name}{i}"[-self.length :] for i in range(DEFAULT_POOL_SIZE))
        return tuple(range(DEFAULT_POOL_SIZE))

    def tag_values(self, count: int) -> pa.Array:
        """This tag's values for subtables 0..count-1, typed like its Arrow column."""
        pool = self.values_pool()
        index = (np.arange(count) // self.stride) % len(pool)
        return pa.array(pool, self.spec.arrow).take(pa.array(index))

    def declaration(self) -> dict[str, Any]:
        """This field as a declaration writes it."""
        written: dict[str, Any] = {"name": self.name, "type": self.tdengine_type()}
        if self.unit:
            written["unit"] = self.unit
        if self.kind == "date":
            written["perspective"] = "date"
        elif self.perspective_as:
            written["perspective"] = self.perspective_as
        if self.pool:
            written["values"] = list(self.pool)
        if self.stride != 1:
            written["stride"] = self.stride
        if self.hint is not None:
            written.update(self.hint.parameters())
        return written


@dataclass(frozen=True)
class Dataset:
    """A super table declaration: columns (the first is the timestamp) and tags.

    `group_tag` and `headline` (the columns worth a first look) shape the default dashboard; `left_out`
    names fields of a discovered table that taosprsp does not carry (see `taosprsp.datasets.types`).

    `existing` names the subtables a discovered table already holds, in the order the store created them
    (its tags' `pool`s hold their tag values, in the same order): subtable i is `existing[i]` with its own
    tags, so producing into a table taosprsp did not declare continues its subtables. Subtables beyond them
    are numbered after the prefix as usual (skipping names taken) and take the tags of `existing[i % n]`.
    """

    name: str
    description: str
    columns: tuple[Field, ...]
    tags: tuple[Field, ...]
    subtable_prefix: str
    group_tag: str
    headline: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()

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
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        """The store layout: `tbname`, columns (time as epoch integers), tags."""
        return pa.schema(
            [pa.field(SUBTABLE_COLUMN, pa.string(), nullable=False)]
            + [pa.field(f.name, f.spec.arrow) for f in self.fields]
        )

    def subtables_schema(self) -> pa.Schema:
        """A row per subtable: `tbname` and the tags, typed as in the store layout."""
        layout = self.arrow_schema()
        return pa.schema([layout.field(name) for name in (SUBTABLE_COLUMN, *(f.name for f in self.tags))])

    def perspective_schema(self) -> dict[str, str]:
        """Column name -> Perspective type, for `client.table(schema)`."""
        schema = {SUBTABLE_COLUMN: "string"}
        schema.update({f.name: f.perspective for f in self.fields})
        return schema

    def create_stable_sql(self, database: str, stable: str) -> str:
        """`CREATE STABLE IF NOT EXISTS` for this dataset under validated names; ConfigError for a dataset without
        a tag, which a TDengine super table must have (the embedded store takes one)."""
        if not self.tags:
            raise ConfigError(
                f"dataset {self.name}: a TDengine super table needs at least one tag; declare one under tags "
                "(import csv: --tag COLUMN)"
            )
        columns = ", ".join(f"`{f.name}` {f.tdengine_type()}" for f in self.columns)
        tags = ", ".join(f"`{f.name}` {f.tdengine_type()}" for f in self.tags)
        return f"CREATE STABLE IF NOT EXISTS `{identifier(database)}`.`{identifier(stable)}` ({columns}) TAGS ({tags})"

    def insert_sql(self, stable: str) -> str:
        """The stmt2 statement: subtable and tags as parameters, then one `?` per column."""
        tag_names = ", ".join(f"`{f.name}`" for f in self.tags)
        tag_marks = ", ".join("?" for _ in self.tags)
        value_marks = ", ".join("?" for _ in self.columns)
        # a discovered table's fields left out get NULL: name the columns bound, after TAGS (TDengine's order)
        names = f" ({', '.join(f'`{f.name}`' for f in self.columns)})" if self.left_out else ""
        return (
            f"INSERT INTO ? USING `{identifier(stable)}` ({tag_names}) TAGS ({tag_marks}){names} VALUES ({value_marks})"
        )

    def select_list(self) -> str:
        """Columns in store layout for a TDengine SELECT, times cast to epoch integers."""
        parts = ["tbname"]
        for f in self.fields:
            parts.append(f"CAST(`{f.name}` AS BIGINT) AS `{f.name}`" if f.is_time else f"`{f.name}`")
        return ", ".join(parts)

    def subtable_names(self, count: int) -> list[str]:
        """Names of subtables 0..count-1: the existing ones first, then the prefix numbered on."""
        if not self.existing:
            return [f"{self.subtable_prefix}{i}" for i in range(count)]
        names = list(self.existing[:count])
        taken = set(self.existing)
        number = len(self.existing)
        while len(names) < count:
            name = f"{self.subtable_prefix}{number}"
            if name not in taken:
                names.append(name)
            number += 1
        return names

    def tag_values(self, count: int) -> dict[str, pa.Array]:
        """Tag name -> the values of subtables 0..count-1 (see `Field.pool`)."""
        return {f.name: f.tag_values(count) for f in self.tags}

    def matches(self, other: Dataset, exact: bool = True) -> bool:
        """Whether `other` has the same fields, each a column or a tag alike and of the same type (`exact`)
        or of a type that stores the same values (how a declaration is recognized in a table a store holds).
        A date is a timestamp either way; string lengths are not compared."""

        def shape(dataset: Dataset) -> list[tuple[str, bool, str]]:
            kind = (lambda f: "timestamp" if f.kind == "date" else f.kind) if exact else (lambda f: _family(f.kind))
            return [(f.name, f in dataset.tags, kind(f)) for f in dataset.fields]

        return shape(self) == shape(other)

    def declaration(self) -> dict[str, Any]:
        """This dataset in the shape `declare` reads (what `config show` prints under [datasets.NAME])."""
        return {
            "description": self.description,
            "subtable_prefix": self.subtable_prefix,
            "group_tag": self.group_tag,
            "headline": list(self.headline),
            "columns": [f.declaration() for f in self.columns],
            "tags": [f.declaration() for f in self.tags],
        }


def _family(kind: LogicalKind) -> str:
    """Kinds whose values a store keeps alike: an embedded file keeps every integer as INTEGER, and so on."""
    spec = KINDS[kind]
    if kind in ("timestamp", "date"):
        return "time"
    if kind == "bool" or spec.is_integer:
        return "integer"
    return "float" if pa.types.is_floating(spec.arrow) else "string"


_DATASET_KEYS = ("description", "subtable_prefix", "group_tag", "headline", "columns", "tags")
_FIELD_KEYS = frozenset({"name", "type", "unit", "perspective", "values", "stride", "generator"}) | HINT_KEYS


def _closest(word: str, choices: list[str] | frozenset[str] | tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _field(raw: Any, where: str, is_tag: bool) -> Field:
    if not isinstance(raw, dict) or "name" not in raw or "type" not in raw:
        raise ConfigError(f"{where}: each field is a table with at least `name` and `type`, got {raw!r}")
    where = f"{where} {raw['name']!r}"
    for key in raw:
        if key not in _FIELD_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_closest(key, _FIELD_KEYS)}")
    name = identifier(raw["name"], f"{where}: name")
    kind, length = parse_type(raw["type"], what=where)
    perspective = raw.get("perspective")
    if perspective is not None:
        if kind == "timestamp" and perspective in ("date", "datetime"):
            kind, perspective = ("date" if perspective == "date" else "timestamp"), None
        elif KINDS[kind].is_integer and perspective in ("string", "float"):
            pass
        else:
            raise ConfigError(
                f"{where}: perspective = {perspective!r} does not fit {raw['type']}; "
                "integers may be shown as 'string' or 'float', a TIMESTAMP as 'date'"
            )
    stride = raw.get("stride", 1)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ConfigError(f"{where}: stride must be a positive integer, got {stride!r}")
    pool = raw.get("values", [])
    if not is_tag and pool and raw.get("generator") is None:
        raise ConfigError(f"{where}: a column's `values` go with generator = 'choice'")
    if is_tag:
        if not isinstance(pool, list):
            raise ConfigError(f"{where}: values must be a list, got {pool!r}")
        try:
            pa.array(pool, KINDS[kind].arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ConfigError(f"{where}: values do not fit {raw['type']}: {exc}") from None
    hint = None if is_tag else parse_hint(raw, where)
    return Field(
        name,
        kind,
        unit=str(raw.get("unit", "")),
        length=length,
        pool=tuple(pool) if is_tag else (),
        stride=stride,
        hint=hint,
        perspective_as=perspective,
    )


def declare(name: str, raw: Any, where: str) -> Dataset:
    """The dataset a declaration describes (the shape in the module docstring), or a `ConfigError` naming
    the key at fault; `where` says where the declaration was read (a file, "built-in")."""
    where = f"[datasets.{name}] in {where}"
    identifier(name, f"{where}: dataset name")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    for key in raw:
        if key not in _DATASET_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_closest(key, _DATASET_KEYS)}")
    for key in ("columns", "tags"):
        if not isinstance(raw.get(key, []), list):
            raise ConfigError(f"{where}: {key} must be a list of tables")
    columns = tuple(_field(f, f"{where} column", is_tag=False) for f in raw.get("columns", []))
    tags = tuple(_field(f, f"{where} tag", is_tag=True) for f in raw.get("tags", []))
    if not columns or columns[0].kind not in ("timestamp", "date"):
        raise ConfigError(f"{where}: the first column must be the TIMESTAMP (TDengine's primary key)")
    names = [f.name for f in columns + tags]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: field names appear twice: {', '.join(repeated)}")
    for f in columns:
        for other in (f.hint.of if f.hint else ()) + ((f.hint.by,) if f.hint and f.hint.by else ()):
            if other not in names:
                raise ConfigError(f"{where} column {f.name!r}: {other!r} is not a field{_closest(other, names)}")
    dataset = Dataset(
        name=name,
        description=str(raw.get("description", "")),
        columns=columns,
        tags=tags,
        subtable_prefix=str(raw.get("subtable_prefix", f"{name}_")),
        group_tag=str(raw.get("group_tag", "")),
        headline=tuple(raw.get("headline", ())),
    )
    return with_dashboard_defaults(dataset, where)


def with_dashboard_defaults(dataset: Dataset, where: str = "") -> Dataset:
    """`dataset` with `group_tag` (first string tag, else first tag) and `headline` (the first four numeric
    columns) filled in where not given; given ones must name fields."""
    group = dataset.group_tag
    if group and group not in [f.name for f in dataset.tags]:
        raise ConfigError(f"{where}: group_tag {group!r} is not a tag")
    if not group:
        strings = [f.name for f in dataset.tags if f.perspective == "string"]
        group = (strings or [f.name for f in dataset.tags] or [SUBTABLE_COLUMN])[0]
    numeric = [f.name for f in dataset.value_columns if f.is_numeric]
    for name in dataset.headline:
        if name not in numeric:
            raise ConfigError(f"{where}: headline {name!r} is not a numeric column{_closest(name, numeric)}")
    headline = dataset.headline or tuple(numeric[:4])
    return Dataset(
        dataset.name,
        dataset.description,
        dataset.columns,
        dataset.tags,
        dataset.subtable_prefix,
        group,
        headline,
        dataset.left_out,
        dataset.existing,
    )
