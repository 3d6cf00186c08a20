"""The interface every store implements, the watermark that makes incremental reads exact, and the claim that
keeps two producers off the same subtables."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, time_column
from taosprsp.errors import TaosprspError
from taosprsp.generate import subtables

ResolvedKind = Literal["tdengine", "embedded"]
"""A store's kind once `store.kind = "auto"` has been resolved."""
SchemalessProtocol = Literal["line", "telnet", "json"]
BEFORE_ANY_ROW = -(2**62)
"""A timestamp older than every row in any precision: the mark of a subtable without rows."""


def newest_per_subtable(table: pa.Table) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(subtable names, each row's code into them, each subtable's newest timestamp) of a non-empty table.

    numpy over dictionary codes, without a sort: a quarter of the cost of an Acero group-by on a feed-sized batch.
    """
    encoded = pc.dictionary_encode(table[SUBTABLE_COLUMN]).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    newest = np.full(len(encoded.dictionary), BEFORE_ANY_ROW, dtype=np.int64)
    np.maximum.at(newest, codes, table[time_column(table)].to_numpy())
    return encoded.dictionary, codes, newest


@dataclass
class Watermark:
    """The newest timestamp seen per subtable; `floor` stands for subtables not seen yet.

    Timestamps strictly increase per subtable, so "newer than the watermark of its own subtable" selects
    every new row exactly once, even when subtables run at different clocks.

    A store reads from `low` and filters with `select_newer`. `low` is the oldest mark among subtables
    that advanced in the last `active_seconds`, so a subtable that went quiet does not make every later
    read start at its old mark; a store reads the subtables marked below `low` with bounds of their own
    (`laggards`), so a quiet or new subtable whose rows are stamped behind the others is still read.

    `sequence` is for a store that numbers rows in the order it stored them (the embedded store's rowid):
    where the feed's reads (`Store.read_new`) have got to in that order. Insertion order delivers every row
    once whatever its timestamp; None where the store keeps no such order.
    """

    per_subtable: dict[str, int] = field(default_factory=dict)
    floor: int = BEFORE_ANY_ROW
    active_seconds: float = 30.0
    advanced_at: dict[str, float] = field(default_factory=dict, repr=False)
    sequence: int | None = None

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

    def include(self, names: Iterable[str]) -> None:
        """Subtables known to exist whose rows no read has returned: read from their first row, as laggards."""
        for name in names:
            if name not in self.per_subtable:
                self.per_subtable[name] = BEFORE_ANY_ROW
                self.advanced_at[name] = -math.inf

    def laggards(self) -> dict[int, list[str]]:
        """The subtables marked below `low`, by mark: rows a read from `low` would miss."""
        low = self.low
        behind: dict[int, list[str]] = {}
        for name, ts in self.per_subtable.items():
            if ts < low:
                behind.setdefault(ts, []).append(name)
        return behind

    def select_newer(self, table: pa.Table, or_equal: bool = False) -> pa.Table:
        """Rows of `table` newer than the watermark of their subtable (`or_equal`: not older than it)."""
        if table.num_rows == 0:
            return table
        ts = table[time_column(table)].to_numpy()
        if not self.per_subtable:
            bound: np.ndarray | int = self.floor
        else:
            names = pa.array(list(self.per_subtable), pa.string())
            marks = np.array(list(self.per_subtable.values()) + [self.floor], dtype=np.int64)
            position = pc.index_in(table[SUBTABLE_COLUMN], value_set=names).fill_null(len(names))
            bound = marks[position.to_numpy(zero_copy_only=False)]
        return table.filter(ts >= bound if or_equal else ts > bound)

    def advance(self, table: pa.Table) -> None:
        """Move past every row of `table`."""
        if table.num_rows == 0:
            return
        names, _, newest = newest_per_subtable(table)
        now = time.monotonic()
        for name, ts in zip(names.to_pylist(), newest.tolist(), strict=True):
            if ts > self.per_subtable.get(name, self.floor):
                self.per_subtable[name] = ts
                self.advanced_at[name] = now


@dataclass(frozen=True)
class Snapshot:
    """Where `serve` starts: the newest rows, the newest row of every subtable, and a watermark past both."""

    window: pa.Table
    latest: pa.Table
    watermark: Watermark


class SubtablesClaimed(TaosprspError):
    """Another producer is writing some of the subtables this one was asked to write."""


class Claim(ABC):
    """A producer's hold on subtables first..first+tables-1 of a dataset, until `release` (or its death)."""

    def __init__(self, first: int, tables: int) -> None:
        self.first = first
        self.tables = tables

    @abstractmethod
    def release(self) -> None:
        """Let another producer write these subtables; safe to call twice."""

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def subtable_span(dataset: Dataset, first: int, tables: int) -> str:
    """Subtables first..first+tables-1 for people: `d0..d9`, or `d3` alone."""
    names = subtables(dataset, tables, first)[0]
    return f"{names[0]}..{names[-1]}" if tables > 1 else names[0]


def claimed_message(store: str, dataset: Dataset, first: int, tables: int, holders: list[tuple[int, int, str]]) -> str:
    """What a producer refused by a claim is told: who holds which of its subtables, and what to do."""
    if not holders:
        who = "another producer (it is starting or stopping)"
    else:
        who = "; ".join(f"{subtable_span(dataset, start, count)} by {holder}" for start, count, holder in holders)
    free = max([first + tables, *(start + count for start, count, _ in holders)])
    return (
        f"subtables {subtable_span(dataset, first, tables)} of {dataset.name} in {store} are being written: "
        f"{who}. Two producers on the same subtables would overwrite each other's rows: stop that one first, "
        f"or write other subtables (produce --first-table {free})"
    )


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
    subtables: int | None = None


class Store(ABC):
    """A place rows of a dataset are written to and read from, by several processes at once."""

    kind: ResolvedKind
    takes_schemaless: bool = False
    writes_release_the_gil: bool = True
    """Whether other threads of the process run while a write waits on the store: only then does generating
    the next batch on another thread overlap with the write."""

    @abstractmethod
    def describe(self) -> str:
        """Where this store is, safe to print (no secrets)."""

    @abstractmethod
    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False, first: int = 0) -> None:
        """Create the database, super table and subtables first..first+tables-1 unless they exist; `drop`
        starts over."""

    @abstractmethod
    def drop(self, dataset: Dataset) -> None:
        """Remove everything `ensure_schema` created (on TDengine: the database, and the topics on it with
        their consumer groups)."""

    @abstractmethod
    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        """Write a batch in the store layout, rows grouped by subtable; returns rows written. A subtable
        written for the first time is created with the tags of its rows, as TDengine does."""

    def bulk_order(self, dataset: Dataset) -> list[tuple[str, str]]:
        """The row order (`sort_by` keys) in which large batches of history, such as an import's, are written
        fastest: by subtable, then time, each subtable's rows one run."""
        return [(SUBTABLE_COLUMN, "ascending"), (dataset.timestamp.name, "ascending")]

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Settings for the writes of a large load (an import) on this connection, undone after it."""
        yield

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
    def read_latest_per_subtable(self, dataset: Dataset) -> pa.Table:
        """The newest row of every subtable that has rows, quiet ones included, in the store layout."""

    def snapshot(self, dataset: Dataset, limit: int) -> Snapshot:
        """The newest `limit` rows and the newest row of every subtable, with a watermark past them.

        The latest rows are read first: a row written between the two reads is in the window and the
        watermark moves past it, so `read_new` does not return it again.
        """
        latest = self.read_latest_per_subtable(dataset)
        window = self.read_latest(dataset, limit)
        watermark = Watermark()
        watermark.advance(latest)
        watermark.advance(window)
        return Snapshot(window, latest, watermark)

    def read_new(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        """Every row stored since `watermark` (from `snapshot`), whatever its timestamp, once; moves it on."""
        rows = self.read_after(dataset, watermark)
        watermark.advance(rows)
        return rows

    @abstractmethod
    def claim(self, dataset: Dataset, first: int, tables: int, holder: str) -> Claim:
        """Hold subtables first..first+tables-1 for one producer (`holder` says who, for the message another
        producer gets); raise `SubtablesClaimed` when another producer holds any of them."""

    @abstractmethod
    def read_range(
        self, dataset: Dataset, start: int | None = None, end: int | None = None, subtables: Sequence[str] = ()
    ) -> pa.Table:
        """Rows with `start <= ts < end` (either open when None) of `subtables` (all when empty), in the store
        layout, ordered by subtable and time."""

    @abstractmethod
    def discover(self) -> Dataset | None:
        """The schema of the table this store serves as a dataset, with its subtables (`Dataset.existing`), or
        None when it holds no such table."""

    @abstractmethod
    def existing_subtables(self, dataset: Dataset) -> pa.Table:
        """A row per subtable of the super table (`Dataset.subtables_schema`), rows or not, in the order they
        were created."""

    @abstractmethod
    def count(self, dataset: Dataset) -> int:
        """How many rows the super table holds."""

    @abstractmethod
    def select(self, sql: str, schema: pa.Schema, parameters: Sequence[Any] = ()) -> pa.Table:
        """The rows of a read-only query written in this store's SQL, typed as `schema` (its columns in order).

        `parameters` fill the `?` marks of the embedded store's SQL; TDengine's SQL carries its values as
        escaped literals and takes none. `taosprsp.history` builds such queries.
        """

    @abstractmethod
    def status(self, dataset: Dataset) -> StoreStatus:
        """Reachability, version and row count, for `db status`."""

    def write_text(self, dataset: Dataset, lines: list[str], protocol: SchemalessProtocol) -> int:
        """Write schemaless text (InfluxDB line, OpenTSDB telnet or JSON), where `takes_schemaless`."""
        raise NotImplementedError(f"the {self.kind} store does not take schemaless text")

    def last_by_tag(self, stables: Sequence[str], tag: str) -> dict[str, int]:
        """The newest timestamp per value of tag `tag` over the super tables `stables` that schemaless text
        made, where `takes_schemaless`."""
        raise NotImplementedError(f"the {self.kind} store does not take schemaless text")

    def last_per_subtable(self, dataset: Dataset, tables: int, first: int = 0) -> np.ndarray:
        """Newest timestamp of subtables first..first+tables-1, `BEFORE_ANY_ROW` where one has no rows."""
        newest = self.last_timestamps(dataset)
        names = subtables(dataset, tables, first)[0]
        return np.array([newest.get(name, BEFORE_ANY_ROW) for name in names], dtype=np.int64)

    def close(self) -> None:  # noqa: B027 - not abstract: a store holding nothing has nothing to release
        """Release connections; the store may not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
