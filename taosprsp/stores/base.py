"""The interface every store implements, and the watermark that makes incremental reads exact."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset

ResolvedKind = Literal["tdengine", "embedded"]
"""A store's kind once `store.kind = "auto"` has been resolved."""
SchemalessProtocol = Literal["line", "telnet", "json"]
BEFORE_ANY_ROW = -(2**62)
"""A timestamp older than every row in any precision: the mark of a subtable without rows."""


@dataclass
class Watermark:
    """The newest timestamp seen per subtable; `floor` stands for subtables not seen yet.

    Timestamps strictly increase per subtable, so "newer than the watermark of its own subtable" selects
    every new row exactly once, even when subtables run at different clocks.

    A store reads from `low` and filters with `select_newer`. `low` is the oldest mark among subtables
    that advanced in the last `active_seconds`, so a subtable that went quiet does not make every later
    read start at its old mark; when it resumes, its rows are stamped near the present, above `low`.
    """

    per_subtable: dict[str, int] = field(default_factory=dict)
    floor: int = BEFORE_ANY_ROW
    active_seconds: float = 30.0
    advanced_at: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def low(self) -> int:
        """The bound a store reads after, before `select_newer` drops what each subtable has seen."""
        if not self.per_subtable:
            return self.floor
        now = time.monotonic()
        active = [
            ts for name, ts in self.per_subtable.items() if now - self.advanced_at.get(name, now) <= self.active_seconds
        ]
        return max(self.floor, min(active) if active else max(self.per_subtable.values()))

    def select_newer(self, table: pa.Table) -> pa.Table:
        """Rows of `table` newer than the watermark of their subtable."""
        if table.num_rows == 0:
            return table
        if not self.per_subtable:
            return table.filter(pc.greater(table["ts"], self.floor))
        names = pa.array(list(self.per_subtable), pa.string())
        marks = np.array(list(self.per_subtable.values()) + [self.floor], dtype=np.int64)
        position = pc.index_in(table[SUBTABLE_COLUMN], value_set=names).fill_null(len(names))
        bound = marks[position.to_numpy(zero_copy_only=False)]
        return table.filter(table["ts"].to_numpy() > bound)

    def advance(self, table: pa.Table) -> None:
        """Move past every row of `table`."""
        if table.num_rows == 0:
            return
        newest = table.group_by(SUBTABLE_COLUMN).aggregate([("ts", "max")])
        now = time.monotonic()
        for name, ts in zip(newest[SUBTABLE_COLUMN].to_pylist(), newest["ts_max"].to_pylist(), strict=True):
            if ts > self.per_subtable.get(name, self.floor):
                self.per_subtable[name] = ts
                self.advanced_at[name] = now


@dataclass(frozen=True)
class StoreStatus:
    """What `db status` reports."""

    kind: ResolvedKind
    target: str
    reachable: bool
    version: str = ""
    databases: tuple[str, ...] = ()
    rows: int | None = None
    detail: str = ""


class Store(ABC):
    """A place rows of a dataset are written to and read from, by several processes at once."""

    kind: ResolvedKind
    takes_schemaless: bool = False

    @abstractmethod
    def describe(self) -> str:
        """Where this store is, safe to print (no secrets)."""

    @abstractmethod
    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False) -> None:
        """Create the database, super table and `tables` subtables unless they exist; `drop` starts over."""

    @abstractmethod
    def drop(self, dataset: Dataset) -> None:
        """Remove everything `ensure_schema` created (on TDengine: the database and the feed's topic)."""

    @abstractmethod
    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        """Write a batch in the store layout, rows grouped by subtable; returns rows written."""

    @abstractmethod
    def last_timestamps(self, dataset: Dataset) -> dict[str, int]:
        """The newest timestamp of every subtable that has rows."""

    @abstractmethod
    def read_after(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        """Every row newer than `watermark`, in the store layout (times as epoch integers)."""

    @abstractmethod
    def read_latest(self, dataset: Dataset, limit: int) -> pa.Table:
        """The newest `limit` rows, oldest first, in the store layout."""

    @abstractmethod
    def count(self, dataset: Dataset) -> int:
        """How many rows the super table holds."""

    @abstractmethod
    def status(self, dataset: Dataset) -> StoreStatus:
        """Reachability, version and row count, for `db status`."""

    def write_text(self, dataset: Dataset, lines: list[str], protocol: SchemalessProtocol) -> int:
        """Write schemaless text (InfluxDB line, OpenTSDB telnet or JSON), where `takes_schemaless`."""
        raise NotImplementedError(f"the {self.kind} store does not take schemaless text")

    def last_per_subtable(self, dataset: Dataset, tables: int) -> np.ndarray:
        """Newest timestamp of subtables 0..tables-1, `BEFORE_ANY_ROW` where a subtable has no rows."""
        newest = self.last_timestamps(dataset)
        return np.array([newest.get(name, BEFORE_ANY_ROW) for name in dataset.subtable_names(tables)], dtype=np.int64)

    def close(self) -> None:  # noqa: B027 - not abstract: a store holding nothing has nothing to release
        """Release connections; the store may not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
