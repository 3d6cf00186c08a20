"""Encode batches as schemaless text: InfluxDB line protocol, OpenTSDB telnet and OpenTSDB JSON.

TDengine files schemaless rows under super tables named after the measurement (line) or metric (telnet,
JSON) and types every tag as NCHAR, so the text goes to its own super tables, `<stable>_line` for line
protocol and `<stable>_<column>` per value column for OpenTSDB, beside the stmt2-written super table
whose tags are typed.
"""

from __future__ import annotations

import json

import pyarrow as pa

from taosprsp.datasets import TICKS_PER_SECOND, Dataset, Precision
from taosprsp.stores.base import SchemalessProtocol


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def measurement(stable: str, protocol: SchemalessProtocol, column: str = "") -> str:
    """The super table TDengine creates for text of `protocol` (and, for OpenTSDB, one value column)."""
    return f"{stable}_line" if protocol == "line" else f"{stable}_{column}"


def encode(
    dataset: Dataset, stable: str, batch: pa.Table, protocol: SchemalessProtocol, precision: Precision = "ms"
) -> list[str]:
    """`batch` (store layout) as lines of `protocol`.

    Line protocol carries a whole row per line, stamped in the database precision; OpenTSDB carries one
    value per line, so telnet and JSON give one line (or object) per row and value column, stamped in
    milliseconds (TDengine reads OpenTSDB precision from the number of digits). JSON comes back as one
    line holding the array.
    """
    data = batch.to_pydict()
    timestamps = data[dataset.timestamp.name]
    if protocol != "line" and precision != "ms":
        per_ms = TICKS_PER_SECOND[precision] // 1000
        timestamps = [ts // per_ms for ts in timestamps]
    tag_names = [f.name for f in dataset.tags]
    tag_pairs = [
        [f"{t}={_escape(v)}" for t, v in zip(tag_names, row, strict=True)]
        for row in zip(*(data[t] for t in tag_names), strict=True)
    ]
    values = [f for f in dataset.value_columns if not f.is_time]
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
        objects = [
            {
                "metric": measurement(stable, protocol, f.name),
                "timestamp": ts,
                "value": v,
                "tags": dict(zip(tag_names, row_tags, strict=True)),
            }
            for f in values
            for ts, v, row_tags in zip(
                timestamps, data[f.name], zip(*(data[t] for t in tag_names), strict=True), strict=True
            )
        ]
        return [json.dumps(objects)]
    raise ValueError(f"unknown schemaless protocol {protocol!r}")
