"""Datasets discovered in a store: the schema of a table it already holds, when no declaration names it.

TDengine describes a super table with `DESCRIBE` (field, type, length, note: `TAG` for tags); the embedded
store declares each SQLite column with its TDengine type, read back with `PRAGMA table_info`. Fields of a
type taosprsp does not carry (VARBINARY, GEOMETRY, JSON tags; see `taosprsp.datasets.types`) are left out
and named in `Dataset.left_out`.

A discovered dataset also lists the subtables the table holds, with their tags (`with_existing`), so that
`produce` and `db seed` continue them rather than make up new ones.

Which schema a command uses (`resolve_dataset`): the table the store holds wins over the configured
declaration, since rows have to fit the table; when both have the same fields, the declaration's extras
(units, generator hints, tag values, dashboard choices) are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Field, UnsupportedType, parse_type, with_dashboard_defaults
from taosprsp.errors import ConfigError


def _quotable(name: str, where: str) -> str:
    """A discovered name, which taosprsp always quotes: anything but the quote characters themselves."""
    if not name or any(mark in name for mark in '`"\0'):
        raise ConfigError(f"{where}: the field name {name!r} cannot be quoted safely; rename it to serve this table")
    return name


def discovered(stable: str, fields: Iterable[tuple[str, str, int, bool]], where: str) -> Dataset:
    """A dataset from (name, TDengine type, length, is_tag) per field, in table order."""
    columns: list[Field] = []
    tags: list[Field] = []
    left_out: list[str] = []
    for name, type_text, length, is_tag in fields:
        try:
            kind, size = parse_type(type_text, length, what=f"{where}: {name}")
        except UnsupportedType:
            left_out.append(f"{name} {type_text}")
            continue
        (tags if is_tag else columns).append(Field(_quotable(name, where), kind, length=size))
    if not columns or not columns[0].is_time:
        raise ConfigError(f"{where}: {stable} has no TIMESTAMP first column; it is not a table taosprsp can serve")
    dataset = Dataset(
        name=stable,
        description=f"discovered in {where}",
        columns=tuple(columns),
        tags=tuple(tags),
        subtable_prefix=f"{stable}_",
        group_tag="",
        headline=(),
        left_out=tuple(left_out),
    )
    return with_dashboard_defaults(dataset, where)


def with_existing(dataset: Dataset, subtables: pa.Table) -> Dataset:
    """`dataset` with the subtables a store holds: `subtables` has `tbname` and the tags, a row per subtable in
    the order the store created them (see `Dataset.existing`)."""
    if subtables.num_rows == 0:
        return dataset
    tags = tuple(dataclasses.replace(f, pool=tuple(subtables[f.name].to_pylist()), stride=1) for f in dataset.tags)
    return dataclasses.replace(dataset, tags=tags, existing=tuple(subtables[SUBTABLE_COLUMN].to_pylist()))


def tdengine_dataset(stable: str, describe_rows: Iterable[tuple], where: str) -> Dataset:
    """A dataset from the rows of TDengine's `DESCRIBE`: (field, type, length, note, ...)."""
    return discovered(
        stable,
        ((str(row[0]), str(row[1]), int(row[2] or 0), "TAG" in str(row[3]).upper()) for row in describe_rows),
        where,
    )


def sqlite_dataset(stable: str, fields: list[tuple[str, str]], tag_names: set[str], where: str) -> Dataset:
    """A dataset from the embedded store's `PRAGMA table_info` of the rows table (`tbname` first)."""
    if not fields or fields[0][0] != "tbname":
        raise ConfigError(f"{where}: table {stable} was not written by taosprsp (no tbname column first)")
    return discovered(stable, ((name, kind, 0, name in tag_names) for name, kind in fields[1:]), where)


def resolve_dataset(held: Dataset | None, declared: Dataset | None, where: str, exact: bool) -> Dataset:
    """The dataset a command works with: the table the store holds (`held`), or `declared` when the store
    holds no such table yet or when `declared` has the same fields (then its extras are kept).

    `exact` asks for the same TDengine types (a TDengine table); otherwise types that store values alike
    will do (the embedded store keeps every integer as INTEGER, and older files declared only that).
    """
    if held is None:
        if declared is None:
            raise ConfigError(f"{where} holds no such table and no dataset declares it")
        return declared
    if declared is not None and declared.matches(held, exact):
        return declared
    return held
