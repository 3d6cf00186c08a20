"""Encode batches as schemaless text: InfluxDB line protocol, OpenTSDB telnet and OpenTSDB JSON.

TDengine files schemaless rows under super tables named after the measurement (line) or metric (telnet,
JSON) and types every tag as NCHAR, so the text goes to its own super tables, `<stable>_line` for line
protocol and `<stable>_<column>` per value column for OpenTSDB, beside the stmt2-written super table
whose tags are typed.

The three protocols share one database: every tag goes as text, so whichever protocol creates a super
table types its tags NCHAR and the others fit (OpenTSDB JSON would send a number as a DOUBLE tag, which
TDengine refuses once telnet has made it NCHAR); the row's subtable goes as tag `source_table`; and a run
continues after the newest row any earlier run wrote (`last_per_subtable`), since telnet and JSON write the
same super tables.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Field, Precision
from taosprsp.stores.base import BEFORE_ANY_ROW, SchemalessProtocol, Store

SOURCE_TABLE_TAG = "source_table"
"""The tag carrying a row's subtable (`d0`). TDengine names a schemaless subtable after its tag set, so two
subtables with the same tags (meters has ten (groupid, location) pairs) would otherwise share one and
overwrite each other's rows. (`subtable` is a TDengine keyword.)"""


def escape_line(value: object) -> str:
    """`value` as text in an InfluxDB line's measurement, tag key or tag value: `\\`, `,`, `=` and space escaped."""
    return str(value).replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def measurement(stable: str, protocol: SchemalessProtocol, column: str = "") -> str:
    """The super table TDengine creates for text of `protocol` (and, for OpenTSDB, one value column)."""
    return f"{stable}_line" if protocol == "line" else f"{stable}_{column}"


def _values(dataset: Dataset) -> list[Field]:
    return [f for f in dataset.value_columns if not f.is_time]


def super_tables(dataset: Dataset, stable: str) -> list[str]:
    """Every super table schemaless text of `dataset` goes to, whichever the protocol."""
    return [measurement(stable, "line"), *(measurement(stable, "telnet", f.name) for f in _values(dataset))]


def last_per_subtable(store: Store, dataset: Dataset, stable: str, tables: int, first: int = 0) -> np.ndarray:
    """Newest timestamp of subtables first..first+tables-1 over the stmt2 super table and every schemaless
    one, `BEFORE_ANY_ROW` where none has rows: where a schemaless run starts, so that it overwrites nothing
    an earlier run of any protocol wrote."""
    text = store.last_by_tag(super_tables(dataset, stable), SOURCE_TABLE_TAG)
    names = dataset.subtable_names(first + tables)[first:]
    written = np.array([text.get(name, BEFORE_ANY_ROW) for name in names], dtype=np.int64)
    return np.maximum(store.last_per_subtable(dataset, tables, first), written)


def encode(
    dataset: Dataset, stable: str, batch: pa.Table, protocol: SchemalessProtocol, precision: Precision = "ms"
) -> list[str]:
    """`batch` (store layout) as lines of `protocol`.

    Line protocol carries a whole row per line, stamped in the database precision; OpenTSDB carries one
    value per line, so telnet and JSON give one line (or object) per row and value column, stamped in
    milliseconds (TDengine reads OpenTSDB precision from the number of digits). JSON comes back as one
    line holding the array. Tags, `source_table` first, go as text in every protocol.
    """
    data = batch.to_pydict()
    timestamps = data[dataset.timestamp.name]
    if protocol != "line" and precision != "ms":
        per_ms = TICKS_PER_SECOND[precision] // 1000
        timestamps = [ts // per_ms for ts in timestamps]
    tag_names = [SOURCE_TABLE_TAG, *(f.name for f in dataset.tags)]
    tag_rows = list(zip(*([str(v) for v in data[name]] for name in [SUBTABLE_COLUMN, *tag_names[1:]]), strict=True))
    tag_pairs = [[f"{t}={escape_line(v)}" for t, v in zip(tag_names, row, strict=True)] for row in tag_rows]
    values = _values(dataset)
    if protocol == "line":
        name = measurement(stable, protocol)
        fields = [
            ",".join(f"{f.name}={v}{f.spec.line_suffix}" for f, v in zip(values, row, strict=True))
            for row in zip(*(data[f.name] for f in values), strict=True)
        ]
        return [
            f"{name},{','.join(pairs)} {row_fields} {ts}"
            for pairs, row_fields, ts in zip(tag_pairs, fields, timestamps, strict=True)
        ]
    if protocol == "telnet":
        return [
            f"{measurement(stable, protocol, f.name)} {ts} {v} {' '.join(pairs)}"
            for f in values
            for ts, v, pairs in zip(timestamps, data[f.name], tag_pairs, strict=True)
        ]
    if protocol == "json":
        tags = [dict(zip(tag_names, row, strict=True)) for row in tag_rows]
        objects = [
            {"metric": measurement(stable, protocol, f.name), "timestamp": ts, "value": v, "tags": row_tags}
            for f in values
            for ts, v, row_tags in zip(timestamps, data[f.name], tags, strict=True)
        ]
        return [json.dumps(objects)]
    raise ValueError(f"unknown schemaless protocol {protocol!r}")
