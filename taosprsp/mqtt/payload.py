"""MQTT payloads: a batch encoded as one JSON object or one InfluxDB line per row (columnar, for the
publisher), and InfluxDB line protocol parsed back (per message, for the ingester; JSON needs no help).

Line protocol: `measurement[,tag=value...] field=value[,field=value...] [timestamp]`. Integers carry `i`
(unsigned `u`), floats no suffix, strings double quotes; TDengine's suffixes (`i32`, `u8`, `f32`, ...)
are read too. Commas, spaces, equals signs and backslashes in names and tag values are escaped with `\\`.
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN
from taosprsp.mqtt.mapping import MessageMapping
from taosprsp.schemaless import escape_line

Value = str | int | float | bool
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_SIZED_INT = re.compile(r"^([+-]?\d+)[iu](?:8|16|32|64)$")
_SIZED_FLOAT = re.compile(r"^(.+)f(?:32|64)$")
_INTEGER_KINDS = frozenset({"int", "uint", "bigint", "timestamp", "date"})


class LineError(ValueError):
    """A line that is not InfluxDB line protocol."""


# --- encoding (publisher) -----------------------------------------------------------------------------


def _texts(mapping: MessageMapping, table: pa.Table, name: str) -> pa.Array:
    """A column as JSON value texts: numbers as written by Arrow (shortest round trip), strings quoted."""
    column = table[name].combine_chunks()
    if name == mapping.timestamp:
        column = mapping.from_ticks(column)
    if pa.types.is_string(column.type):
        # JSON-quote each distinct value once: tags repeat across rows
        encoded = column.dictionary_encode()
        quoted = pa.array([json.dumps(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return quoted.take(encoded.indices)
    return pc.fill_null(pc.cast(column, pa.string()), "null")


def _join(parts: list[pa.Array | str], rows: int) -> list[str]:
    merged: list[pa.Array | pa.Scalar] = []
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
            continue
        if text:
            merged.append(pa.scalar(text))
            text = ""
        merged.append(part)
    if text:
        merged.append(pa.scalar(text))
    if not any(isinstance(part, pa.Array) for part in merged):
        return [text] * rows
    return pc.binary_join_element_wise(*merged, "").to_pylist()


def encode_json(mapping: MessageMapping, table: pa.Table) -> list[str]:
    """One JSON object per row holding the fields the topic does not carry, each at its path."""
    tree: dict[str, object] = {}
    for name, path in mapping.paths:
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = name

    def render(node: dict[str, object]) -> list[pa.Array | str]:
        parts: list[pa.Array | str] = ["{"]
        for index, (key, value) in enumerate(node.items()):
            parts.append(("," if index else "") + json.dumps(key) + ":")
            parts.extend(render(value) if isinstance(value, dict) else [_texts(mapping, table, value)])  # type: ignore[arg-type]
        parts.append("}")
        return parts

    return _join(render(tree), table.num_rows)


def _escape(column: pa.Array, characters: str) -> pa.Array:
    for character in "\\" + characters:
        column = pc.replace_substring(column, character, "\\" + character)
    return column


def encode_line(mapping: MessageMapping, table: pa.Table) -> list[str]:
    """One InfluxDB line per row: subtable and tags (those the topic does not carry) as the tag set, the
    value columns as fields, the row's timestamp last in `timestamp_unit`."""
    tag_names = {SUBTABLE_COLUMN} | {f.name for f in mapping.dataset.tags}
    parts: list[pa.Array | str] = [escape_line(mapping.measurement)]
    fields = [(name, key) for name, key in mapping.paths if name not in tag_names and name != mapping.timestamp]
    for name, key in mapping.paths:
        if name in tag_names:
            parts += [f",{escape_line(key)}=", _escape(pc.cast(table[name].combine_chunks(), pa.string()), ", =")]
    for index, (name, key) in enumerate(fields):
        parts.append(("," if index else " ") + f"{escape_line(key)}=")
        column = table[name].combine_chunks()
        kind = mapping.kind(name)
        if kind == "varchar":
            parts += ['"', _escape(column, '"'), '"']
        else:
            parts.append(pc.cast(column, pa.string()))
            if kind in _INTEGER_KINDS:
                parts.append("u" if kind == "uint" else "i")
    if any(name == mapping.timestamp for name, _ in mapping.paths):
        parts += [" ", pc.cast(mapping.from_ticks(table[mapping.timestamp].combine_chunks()), pa.string())]
    return _join(parts, table.num_rows)


# --- decoding (ingester) ------------------------------------------------------------------------------


def _field_value(raw: str) -> Value:
    if not raw:
        raise LineError("a field has no value")
    last = raw[-1]
    if raw[0] == '"':
        if len(raw) < 2 or last != '"':
            raise LineError(f"unterminated string {raw!r}")
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if last in "iu" and raw[:-1].lstrip("+-").isdigit():
        return int(raw[:-1])
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    try:
        return float(raw)
    except ValueError:
        pass
    sized = _SIZED_INT.match(raw)
    if sized:
        return int(sized.group(1))
    sized = _SIZED_FLOAT.match(raw)
    if sized:
        try:
            return float(sized.group(1))
        except ValueError:
            pass
    raise LineError(f"bad field value {raw!r}")


def _split_escaped(text: str, separator: str, keep_quotes: bool = False) -> list[str]:
    """`text` split at unescaped `separator`s (and, with `keep_quotes`, not inside double quotes);
    escapes are kept, quoted strings are left as written."""
    parts: list[str] = []
    current: list[str] = []
    index, quoted = 0, False
    while index < len(text):
        character = text[index]
        if character == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if keep_quotes and character == '"':
            quoted = not quoted
        elif character == separator and not quoted:
            parts.append("".join(current))
            current = []
            index += 1
            continue
        current.append(character)
        index += 1
    if quoted:
        raise LineError("unterminated string")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text) if "\\" in text else text


def _pairs(items: list[str], values_are_fields: bool, into: dict[str, Value]) -> None:
    for item in items:
        key, separator, raw = item.partition("=") if "\\" not in item else _partition_escaped(item)
        if not separator or not key:
            raise LineError(f"expected key=value, got {item!r}")
        into[_unescape(key)] = _field_value(raw) if values_are_fields else _unescape(raw)


def _partition_escaped(item: str) -> tuple[str, str, str]:
    parts = _split_escaped(item, "=")
    if len(parts) < 2:
        return item, "", ""
    return parts[0], "=", "=".join(parts[1:])


def parse_line(line: str) -> tuple[dict[str, Value], int | None]:
    """Tags and fields of one line by name (tags as text, fields typed by their syntax), and its timestamp."""
    simple = "\\" not in line and '"' not in line
    sections = line.split(" ") if simple else _split_escaped(line, " ", keep_quotes=True)
    if len(sections) not in (2, 3) or not all(sections):
        raise LineError("expected 'measurement[,tags] fields [timestamp]'")
    values: dict[str, Value] = {}
    head = sections[0].split(",") if simple else _split_escaped(sections[0], ",")
    _pairs(head[1:], False, values)
    _pairs(sections[1].split(",") if simple else _split_escaped(sections[1], ",", keep_quotes=True), True, values)
    if len(sections) == 2:
        return values, None
    try:
        return values, int(sections[2])
    except ValueError:
        raise LineError(f"bad timestamp {sections[2]!r}") from None
