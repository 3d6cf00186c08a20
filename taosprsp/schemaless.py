"""Encode batches as schemaless text: InfluxDB line protocol, OpenTSDB telnet and OpenTSDB JSON.

TDengine files schemaless rows under super tables named after the measurement (line) or metric (telnet,
JSON) and types every tag as NCHAR, so the text goes to its own super tables, `<stable>_line` for line
protocol and `<stable>_<column>` per value column for OpenTSDB, beside the stmt2-written super table
whose tags are typed.
"""

from __future__ import annotations

import json

import pyarrow as pa

from taosprsp.datasets import Dataset

PROTOCOLS = ("line", "telnet", "json")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def measurement(stable: str, protocol: str, column: str = "") -> str:
    """The super table TDengine creates for text of `protocol` (and, for OpenTSDB, one value column)."""
    return f"{stable}_line" if protocol == "line" else f"{stable}_{column}"


def encode(dataset: Dataset, stable: str, batch: pa.Table, protocol: str) -> list[str]:
    """`batch` (store layout) as lines of `protocol`, timestamps in the database precision.

    Line protocol carries a whole row per line; OpenTSDB carries one value per line, so telnet and JSON
    give one line (or object) per row and value column. JSON comes back as one line holding the array.
    """
    data = batch.to_pydict()
    timestamps = data[dataset.timestamp.name]
    tag_names = [f.name for f in dataset.tags]
    tags_of_row = [" ".join(f"{t}={_escape(v)}" for t, v in zip(tag_names, row)) for row in zip(*(data[t] for t in tag_names))]
    values = [f for f in dataset.value_columns if not f.is_time]
    if protocol == "line":
        name = measurement(stable, protocol)
        fields = [
            ",".join(f"{f.name}={v}{f.spec.line_suffix}" for f, v in zip(values, row))
            for row in zip(*(data[f.name] for f in values))
        ]
        return [
            f"{name},{tags.replace(' ', ',')} {row_fields} {ts}"
            for tags, row_fields, ts in zip(tags_of_row, fields, timestamps)
        ]
    if protocol == "telnet":
        return [
            f"{measurement(stable, protocol, f.name)} {ts} {v} {tags}"
            for f in values
            for ts, v, tags in zip(timestamps, data[f.name], tags_of_row)
        ]
    if protocol == "json":
        objects = [
            {"metric": measurement(stable, protocol, f.name), "timestamp": ts, "value": v,
             "tags": dict(zip(tag_names, row_tags))}
            for f in values
            for ts, v, row_tags in zip(timestamps, data[f.name], zip(*(data[t] for t in tag_names)))
        ]
        return [json.dumps(objects)]
    raise ValueError(f"unknown schemaless protocol {protocol!r}")
