"""A batch as TDengine's stmt2 binds take it: per bind call, one (subtable, tag views, column lists) per run.

The taos-ws-py stmt2 helpers take Python lists only, so each column is converted run by run; tags are bound
once per subtable. `BindPlan` keeps what one producer's batches share: the tag views of every subtable seen,
and the run layout of the last batch (a steady producer sends one layout batch after batch).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Field, Precision

# TDengine refuses more rows than this for one subtable in one bind ([0x0236] bind number out of range).
MAX_ROWS_PER_SUBTABLE_BIND = 32_767
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
"""A subtable name stmt2 takes as it is; TDengine reads any other (upper case, `-`, a reserved word) whole and
as written only between backquotes."""

BindCalls = list[list[tuple[str, list[Any], list[list[Any]]]]]
"""Per bind call, one (subtable as bound, tag views, column lists) per run."""


def bind_rounds(names: pa.Array | pa.ChunkedArray) -> list[list[tuple[str, int, int]]]:
    """(subtable, start, stop) row ranges per bind call, from the subtable names of a batch whose rows come
    grouped by subtable: each call binds every subtable's run at most once and at most
    `MAX_ROWS_PER_SUBTABLE_BIND` rows of it; a longer run continues in the next call."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    if len(names) == 0:
        return []
    # one compute call finds the runs and their names: a fixed cost of microseconds, where several calls
    # (a comparison, then taking the names) cost tens of them, most of a small batch's time
    runs = pc.run_end_encode(names)
    stops = runs.run_ends.to_numpy().tolist()
    rounds: list[list[tuple[str, int, int]]] = []
    for name, start, stop in zip(runs.values.to_pylist(), [0, *stops[:-1]], stops, strict=True):
        for index, chunk_start in enumerate(range(start, stop, MAX_ROWS_PER_SUBTABLE_BIND)):
            if index == len(rounds):
                rounds.append([])
            rounds[index].append((name, chunk_start, min(stop, chunk_start + MAX_ROWS_PER_SUBTABLE_BIND)))
    return rounds


def _bound_name(name: str) -> str:
    """A subtable name as a stmt2 bind takes it (see `_PLAIN_NAME`)."""
    return name if _PLAIN_NAME.fullmatch(name) else f"`{name}`"


def _run_lists(column: pa.ChunkedArray, bounds: list[tuple[int, int]], shared: bool) -> list[list[Any]]:
    """A column as the stmt2 helpers take it: a Python list per run (start, stop) of `bounds`.

    Without NULLs a run goes through numpy's `tolist`, the fastest way to Python values (faster than
    Arrow's `to_pylist` for every type here); with NULLs, Python values with None. With `shared`, a run
    equal to the run before it takes the same list: the subtables of a generated batch usually share their
    timestamps, and a timestamp is a dear Python int to make (comparing the bytes costs a tenth of it).
    """
    if column.null_count:
        values = column.to_pylist()
        return [values[start:stop] for start, stop in bounds]
    array = column.to_numpy()
    lists: list[list[Any]] = []
    previous = b""
    for start, stop in bounds:
        run = array[start:stop]
        if shared:
            raw = run.tobytes()
            if lists and raw == previous:
                lists.append(lists[-1])
                continue
            previous = raw
        lists.append(run.tolist())
    return lists


def column_binders(taosws: Any, dataset: Dataset, precision: Precision) -> list[tuple[Field, Callable[[list], Any]]]:
    """The taosws stmt2 column helper of each column of `dataset`."""
    return [(f, getattr(taosws, f.stmt2_column_helper(precision))) for f in dataset.columns]


class BindPlan:
    """Turns one producer's batches into `BindCalls`, keeping tag views and the last run layout between them."""

    def __init__(self, taosws: Any) -> None:
        self._taosws = taosws
        self._tag_cache: dict[str, list[Any]] = {}
        self._known_rounds: tuple[pa.Array, list[list[tuple[str, str, int, int]]]] | None = None

    def forget_tags(self) -> None:
        """Drop the kept tag views: the subtables they were made for are gone."""
        self._tag_cache.clear()

    def _tags(self, dataset: Dataset, batch: pa.Table, name: str, row: int) -> list[Any]:
        """The tag views of subtable `name`, whose tags are on `row` of `batch`; made once per subtable."""
        tags = self._tag_cache.get(name)
        if tags is None:
            tags = [getattr(self._taosws, f.spec.stmt2_tag)(batch[f.name][row].as_py()) for f in dataset.tags]
            self._tag_cache[name] = tags
        return tags

    def as_lists(self, dataset: Dataset, batch: pa.Table) -> BindCalls:
        """`batch` as the stmt2 helpers take it: per bind call, one (subtable, tag views, column lists) per run.

        The helpers take Python lists only: each column is converted run by run (`_run_lists`).
        """
        rounds = self._rounds(batch[SUBTABLE_COLUMN])
        bounds = [(start, stop) for runs in rounds for _, _, start, stop in runs]
        columns = [_run_lists(batch[f.name], bounds, shared=f.is_time) for f in dataset.columns]
        per_run = iter(zip(*columns, strict=True))
        return [
            [(bound, self._tags(dataset, batch, name, start), list(next(per_run))) for name, bound, start, _ in runs]
            for runs in rounds
        ]

    def _rounds(self, names: pa.ChunkedArray) -> list[list[tuple[str, str, int, int]]]:
        """`bind_rounds` of a batch's subtable names, each name also as the bind takes it; kept for the next
        batch, since a steady producer sends one layout batch after batch and comparing the names costs a
        tenth of finding their runs again."""
        names = names.combine_chunks()
        if self._known_rounds is not None and self._known_rounds[0].equals(names):
            return self._known_rounds[1]
        rounds = [[(name, _bound_name(name), start, stop) for name, start, stop in runs] for runs in bind_rounds(names)]
        self._known_rounds = (names, rounds)
        return rounds
