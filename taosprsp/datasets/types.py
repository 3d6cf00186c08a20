"""Every TDengine type taosprsp handles, and how each is spelled in the systems a value crosses.

One row per type in `KINDS`: the TDengine DDL, the Arrow type of the store layout, the Perspective type and
the Arrow type Perspective is handed, the stmt2 bind helpers of `taosws`, the type the embedded store
declares in SQLite, and the InfluxDB line-protocol suffix. Everything else derives from this table.

Perspective's integers are 32-bit: BIGINT, INT UNSIGNED and BIGINT UNSIGNED become Perspective floats
(exact up to 2^53; beyond that the nearest double, never a wrapped negative). A field may ask for
`perspective = "string"` instead, which keeps every digit of a 64-bit value.

Not handled, refused with a message that says so: VARBINARY and GEOMETRY (bytes Perspective cannot show),
JSON tags, DECIMAL and BLOB. Discovery leaves such fields out of a discovered dataset and names them.

The embedded store declares each SQLite column with the TDengine spelling (BINARY canonicalized to VARCHAR),
so `PRAGMA table_info` gives the types back; SQLite's affinity rules then keep every value as written:
names with INT are INTEGER, FLOAT/DOUBLE are REAL, CHAR is TEXT, TIMESTAMP and BOOL are NUMERIC (integers).
SQLite integers are signed 64-bit, so BIGINT UNSIGNED is stored as the same 64 bits read signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from taosprsp.errors import ConfigError

LogicalKind = Literal[
    "timestamp",
    "date",
    "bool",
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "utinyint",
    "usmallint",
    "uint",
    "ubigint",
    "float",
    "double",
    "varchar",
    "nchar",
]
"""A field's logical type; `FieldKind` spells it for each system. `date` is a TIMESTAMP shown as a date."""

PerspectiveType = Literal["datetime", "date", "boolean", "integer", "float", "string"]


@dataclass(frozen=True)
class FieldKind:
    """How one logical type is spelled in each system it crosses."""

    tdengine: str
    arrow: pa.DataType
    perspective: PerspectiveType
    stmt2_column: str
    stmt2_tag: str
    sqlite: str
    line_suffix: str = ""

    @property
    def is_integer(self) -> bool:
        return pa.types.is_integer(self.arrow) and self.perspective not in ("datetime", "date")

    @property
    def is_numeric(self) -> bool:
        return self.is_integer or pa.types.is_floating(self.arrow)


KINDS: dict[LogicalKind, FieldKind] = {
    "timestamp": FieldKind(
        "TIMESTAMP", pa.int64(), "datetime", "{p}_timestamps_to_column", "timestamp_to_tag", "TIMESTAMP"
    ),
    "date": FieldKind("TIMESTAMP", pa.int64(), "date", "{p}_timestamps_to_column", "timestamp_to_tag", "TIMESTAMP"),
    "bool": FieldKind("BOOL", pa.bool_(), "boolean", "bools_to_column", "bool_to_tag", "BOOL"),
    "tinyint": FieldKind("TINYINT", pa.int8(), "integer", "tiny_ints_to_column", "tiny_int_to_tag", "TINYINT", "i8"),
    "smallint": FieldKind(
        "SMALLINT", pa.int16(), "integer", "small_ints_to_column", "small_int_to_tag", "SMALLINT", "i16"
    ),
    "int": FieldKind("INT", pa.int32(), "integer", "ints_to_column", "int_to_tag", "INT", "i32"),
    "bigint": FieldKind("BIGINT", pa.int64(), "float", "big_ints_to_column", "big_int_to_tag", "BIGINT", "i64"),
    "utinyint": FieldKind(
        "TINYINT UNSIGNED",
        pa.uint8(),
        "integer",
        "unsigned_tiny_ints_to_column",
        "u_tiny_int_to_tag",
        "TINYINT UNSIGNED",
        "u8",
    ),
    "usmallint": FieldKind(
        "SMALLINT UNSIGNED",
        pa.uint16(),
        "integer",
        "unsigned_small_ints_to_column",
        "u_small_int_to_tag",
        "SMALLINT UNSIGNED",
        "u16",
    ),
    "uint": FieldKind(
        "INT UNSIGNED", pa.uint32(), "float", "unsigned_ints_to_column", "u_int_to_tag", "INT UNSIGNED", "u32"
    ),
    "ubigint": FieldKind(
        "BIGINT UNSIGNED",
        pa.uint64(),
        "float",
        "unsigned_big_ints_to_column",
        "u_big_int_to_tag",
        "BIGINT UNSIGNED",
        "u64",
    ),
    "float": FieldKind("FLOAT", pa.float32(), "float", "floats_to_column", "float_to_tag", "FLOAT", "f32"),
    "double": FieldKind("DOUBLE", pa.float64(), "float", "doubles_to_column", "double_to_tag", "DOUBLE", "f64"),
    "varchar": FieldKind("VARCHAR({n})", pa.string(), "string", "varchar_to_column", "varchar_to_tag", "VARCHAR({n})"),
    "nchar": FieldKind("NCHAR({n})", pa.string(), "string", "nchar_to_column", "nchar_to_tag", "NCHAR({n})"),
}

DEFAULT_STRING_LENGTH = 64
"""Bytes of a VARCHAR/NCHAR declared without a length (TDengine needs one)."""

_TYPE_WORDS: dict[str, LogicalKind] = {
    "TIMESTAMP": "timestamp",
    "BOOL": "bool",
    "TINYINT": "tinyint",
    "SMALLINT": "smallint",
    "INT": "int",
    "BIGINT": "bigint",
    "TINYINT UNSIGNED": "utinyint",
    "SMALLINT UNSIGNED": "usmallint",
    "INT UNSIGNED": "uint",
    "BIGINT UNSIGNED": "ubigint",
    "FLOAT": "float",
    "DOUBLE": "double",
    "VARCHAR": "varchar",
    "BINARY": "varchar",
    "NCHAR": "nchar",
    # what an embedded store file written before types were spelled the TDengine way declares
    "INTEGER": "bigint",
    "REAL": "double",
    "TEXT": "varchar",
}
_REFUSED: dict[str, str] = {
    "VARBINARY": "bytes that Perspective cannot show",
    "GEOMETRY": "bytes that Perspective cannot show",
    "JSON": "a JSON tag, which Perspective cannot show as one column",
    "DECIMAL": "a decimal, which taos-ws-py cannot bind",
    "BLOB": "bytes that Perspective cannot show",
}
_TYPE_TEXT = re.compile(r"^\s*([A-Za-z]+(?:\s+UNSIGNED)?)\s*(?:\(\s*(\d+)\s*(?:,\s*\d+\s*)?\))?\s*$", re.IGNORECASE)
SUPPORTED_TYPES = "TIMESTAMP, BOOL, TINYINT, SMALLINT, INT, BIGINT (each also UNSIGNED), FLOAT, DOUBLE, " + (
    "VARCHAR(n), BINARY(n), NCHAR(n)"
)


class UnsupportedType(ConfigError):
    """A TDengine type taosprsp does not carry into Perspective (see the module docstring)."""


def parse_type(text: str, length: int = 0, what: str = "type") -> tuple[LogicalKind, int]:
    """The logical kind and string length of a TDengine type as written (`"VARCHAR(24)"`, `"int unsigned"`).

    `length` is used when the text carries none (DESCRIBE reports it in its own column). A type taosprsp
    does not handle raises `UnsupportedType`; text that is no type at all raises `ConfigError`.
    """
    match = _TYPE_TEXT.match(text) if isinstance(text, str) else None
    word = " ".join(match.group(1).upper().split()) if match else ""
    if word in _REFUSED or (word.split(" ")[0] in _REFUSED):
        reason = _REFUSED[word.split(" ")[0]]
        raise UnsupportedType(f"{what}: {text} is not supported ({reason}); supported: {SUPPORTED_TYPES}")
    if match is None or word not in _TYPE_WORDS:
        raise ConfigError(f"{what}: {text!r} is not a TDengine type; use one of {SUPPORTED_TYPES}")
    kind = _TYPE_WORDS[word]
    size = int(match.group(2)) if match.group(2) else length
    if kind in ("varchar", "nchar"):
        return kind, size or DEFAULT_STRING_LENGTH
    return kind, 0


def perspective_arrow_type(perspective: PerspectiveType, precision_unit: str) -> pa.DataType:
    """The Arrow type a column is handed to Perspective as, for a Perspective column of `perspective`.

    Perspective reads int32 for "integer" (smaller integers are widened), float64 for "float" (64-bit and
    unsigned 32-bit integers included), timestamps for "datetime" and date32 for "date".
    """
    if perspective == "datetime":
        return pa.timestamp(precision_unit)
    return {
        "date": pa.date32(),
        "boolean": pa.bool_(),
        "integer": pa.int32(),
        "float": pa.float64(),
        "string": pa.string(),
    }[perspective]
