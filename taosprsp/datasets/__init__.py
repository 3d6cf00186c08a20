"""Datasets: the type table, declarations (built-in and from `[datasets.NAME]`), and generator hints.

- `types`: every TDengine type taosprsp handles and its Arrow, Perspective, stmt2 and SQLite spellings;
- `hints`: per-column generator hints;
- `declare`: `Field`, `Dataset` and the declaration shape both the built-ins and a config are written in;
- `builtin`: `meters` and `stocks`, declared in TOML files shipped in this package.
"""

from __future__ import annotations

from collections.abc import Mapping

from taosprsp.datasets.builtin import BUILTINS
from taosprsp.datasets.declare import (
    SUBTABLE_COLUMN,
    TICKS_PER_SECOND,
    Dataset,
    Field,
    Precision,
    declare,
    epoch_ticks,
    identifier,
    now_ticks,
    time_column,
    with_dashboard_defaults,
)
from taosprsp.datasets.hints import Hint
from taosprsp.datasets.types import KINDS, FieldKind, LogicalKind, UnsupportedType, parse_type
from taosprsp.errors import ConfigError

DATASETS: dict[str, Dataset] = BUILTINS
METERS = BUILTINS["meters"]
STOCKS = BUILTINS["stocks"]

__all__ = [
    "DATASETS",
    "KINDS",
    "METERS",
    "STOCKS",
    "SUBTABLE_COLUMN",
    "TICKS_PER_SECOND",
    "now_ticks",
    "Dataset",
    "Field",
    "FieldKind",
    "Hint",
    "LogicalKind",
    "Precision",
    "UnsupportedType",
    "declare",
    "epoch_ticks",
    "get_dataset",
    "identifier",
    "parse_type",
    "time_column",
    "with_dashboard_defaults",
]


def get_dataset(name: str, declared: Mapping[str, Dataset] | None = None) -> Dataset:
    """The dataset called `name`: one of `declared` (a config's `[datasets.NAME]`), else a built-in."""
    known = {**BUILTINS, **(declared or {})}
    try:
        return known[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(known)}") from None
