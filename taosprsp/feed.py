"""The feed: rows from a store into Perspective tables, incrementally and columnar.

Store-layout Arrow tables (times as epoch integers) become Perspective-ready Arrow IPC bytes. The feed
starts from the store's snapshot (the newest rows, and the newest row of every subtable, quiet ones
included), then every row the store takes reaches the rolling-window table exactly once: polling reads in
the order the store took rows where it keeps one (the embedded store), else after a watermark per
subtable; a TMQ subscription pushes rows as stored. The latest-per-subtable table shows the row with the
newest timestamp of each subtable, whatever order rows arrive in.

Each batch also goes to the derived tables (`taosprsp.derived`), small aggregates the dashboard's panels
view instead of the window: with a view attached, a Perspective 4.3.0 update costs time in proportion to
the rows already in the table. On the embedded store, polling waits on a `StoreWatcher` and reads as soon
as another process commits; the poll interval is then only the fallback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import perspective
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision, time_column
from taosprsp.derived import PREFILL_MAX_ROWS, PREFILL_SLICE_ROWS, DerivedTables
from taosprsp.stores.base import Snapshot, Store, Watermark, newest_per_subtable
from taosprsp.wake import StoreWatcher


def perspective_arrow(dataset: Dataset, table: pa.Table, precision: Precision) -> pa.Table:
    """Store layout -> the Arrow types Perspective reads (`taosprsp.datasets.types`): timestamps for datetime,
    date32 for date, int32 for integer, float64 for float (64-bit and large unsigned integers included, never
    wrapped), text for string."""
    columns = []
    for name in table.column_names:
        column = table[name]
        if name != SUBTABLE_COLUMN:
            f = dataset.field(name)
            if f.is_time:
                column = column.cast(pa.timestamp(precision))
            target = f.perspective_arrow_type(precision)
            if column.type != target:
                # unsafe: a BIGINT beyond 2^53 becomes the nearest float, a date drops its time of day
                column = pc.cast(column, target, safe=False)
        if pa.types.is_string(column.type):
            # Perspective interns each distinct string once, not each row's: a fifth off a window update
            column = pc.dictionary_encode(column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def latest_per_subtable(table: pa.Table) -> pa.Table:
    """The newest row of each subtable in `table`: its latest timestamp, and of rows with that one the last."""
    if table.num_rows == 0:
        return table
    names, codes, newest = newest_per_subtable(table)
    ts = table[time_column(table)].to_numpy()
    at_newest = np.flatnonzero(ts == newest[codes])
    last = np.full(len(names), -1, dtype=np.int64)
    np.maximum.at(last, codes[at_newest], at_newest)
    return table.take(np.sort(last))


@dataclass
class FeedStats:
    """What the feed has done; served at `/api/stats`."""

    rows_fed: int = 0
    updates: int = 0
    seconds_in_update: float = 0.0
    last_update_at: float = 0.0
    errors: int = 0
    last_error: str = ""
    started_at: float = field(default_factory=time.time)
    wakes: int = 0
    """Reads started by a commit the `StoreWatcher` saw, rather than by the poll interval."""
    rows_prefilled: int = 0
    """Stored rows older than the window snapshot folded into the derived tables at start."""

    @property
    def rows_per_second_in_update(self) -> float:
        return self.rows_fed / self.seconds_in_update if self.seconds_in_update > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second_in_update": round(self.rows_per_second_in_update, 1)}


RING_COLUMN = "rid"


def window_schema(dataset: Dataset) -> dict[str, str]:
    """The rolling window's Perspective schema: the dataset's, plus the ring slot it is indexed by."""
    return {RING_COLUMN: "integer", **dataset.perspective_schema()}


class Feed:
    """Keeps a rolling-window Perspective table and a latest-per-subtable table up to date from a store.

    The window is a ring: indexed by `rid`, the row's slot modulo `limit`, so a new row overwrites the
    oldest. Perspective's own `limit` tables do the same but slow down about 15x once full (measured with
    perspective-python 4.3.0: 100k-row updates from ~0.1 s to ~2 s), while the ring keeps its speed.
    """

    def __init__(
        self,
        dataset: Dataset,
        precision: Precision,
        window: perspective.Table,
        latest: perspective.Table,
        limit: int,
        derived: DerivedTables | None = None,
        batch: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.dataset = dataset
        self.precision = precision
        self.window = window
        self.latest = latest
        self.limit = limit
        self.derived = derived
        """The derived tables every batch is folded into (hosted: see `DerivedTables.host`), or None."""
        self.batch = batch
        """Wraps each batch's table updates, so that the server processes them together
        (`taosprsp.batching.UpdateBatcher.batch`)."""
        self.sequence = 0
        self.watermark = Watermark()
        self.shown = Watermark()
        """The timestamp of the row the latest table shows for each subtable."""
        self.stats = FeedStats()
        self._lock = threading.Lock()

    def load_snapshot(self, store: Store, limit: int) -> int:
        """Fill the window with the newest `limit` rows and the latest table with the newest row of every
        subtable; later reads start after them. Returns the rows put in the window."""
        snapshot = store.snapshot(self.dataset, limit)
        with self._lock:
            self.watermark = snapshot.watermark
            self._show_latest(latest_per_subtable(snapshot.latest))
        applied = self.apply(snapshot.window, only_newer=False)
        if self.derived is not None and snapshot.window.num_rows >= limit:
            with self._lock, self.batch():
                self.stats.rows_prefilled = self._prefill(store, snapshot, self.derived)
        return applied

    def _prefill(self, store: Store, snapshot: Snapshot, derived: DerivedTables) -> int:
        """Fold the stored rows older than the window snapshot but within the derived tables' horizon into them,
        newest first and at most about `PREFILL_MAX_ROWS`, so that they start with the whole horizon; returns
        the rows folded.

        A row stored after the snapshot but stamped before its oldest row (a late row) reaches the derived
        tables twice, through this read and through the feed: rare, and it only weighs one row in an aggregate.
        """
        ts = self.dataset.timestamp.name
        window = snapshot.window
        oldest, newest_in_window = int(pc.min(window[ts]).as_py()), int(pc.max(window[ts]).as_py())
        newest = max(newest_in_window, int(pc.max(snapshot.latest[ts]).as_py()))
        start = derived.first_held(newest)
        if start is None or start > oldest:
            return 0
        # the snapshot took the newest `limit` rows, so of the rows stamped `oldest` it may have left some out
        at_oldest = store.read_range(self.dataset, oldest, oldest + 1)
        taken = window.filter(pc.equal(window[ts], oldest))[SUBTABLE_COLUMN]
        left_out = at_oldest.filter(pc.invert(pc.is_in(at_oldest[SUBTABLE_COLUMN], value_set=taken.combine_chunks())))
        folded = left_out.num_rows
        if folded:
            derived.push(left_out, older=True)
        # slices of about PREFILL_SLICE_ROWS rows, judged by the window's rows per tick
        step = max(1, (newest_in_window - oldest + 1) * PREFILL_SLICE_ROWS // window.num_rows)
        end = oldest
        while end > start and folded < PREFILL_MAX_ROWS:
            begin = max(start, end - step)
            rows = store.read_range(self.dataset, begin, end)
            if rows.num_rows:
                derived.push(rows, older=True)
            folded += rows.num_rows
            end = begin
        return folded

    def apply(self, rows: pa.Table, only_newer: bool = True) -> int:
        """Push `rows` into the window, the latest table and the derived tables; returns how many were pushed.

        `only_newer`: the rows may repeat rows pushed before (a subscription overlapping the snapshot), so keep
        those newer than the watermark and move it past them. False when the read that returned them did both
        (`Store.read_new`, `Store.snapshot`): filtering again would only cost time.
        """
        with self._lock:
            fresh = self.watermark.select_newer(rows) if only_newer else rows
            if fresh.num_rows == 0:
                return 0
            started = time.perf_counter()
            newest = latest_per_subtable(fresh)
            with self.batch():
                if self.derived is not None:
                    # before the latest table: a row a client sees as the latest is already in the aggregates
                    self.derived.push(fresh)
                self.window.update(ipc_bytes(self._in_ring(perspective_arrow(self.dataset, fresh, self.precision))))
                self._show_latest(newest)
            if only_newer:
                self.watermark.advance(newest)
            self.stats.seconds_in_update += time.perf_counter() - started
            self.stats.rows_fed += fresh.num_rows
            self.stats.updates += 1
            self.stats.last_update_at = time.time()
            return fresh.num_rows

    def _show_latest(self, newest: pa.Table) -> None:
        """Put the rows of `newest` (one per subtable) in the latest table, unless it shows a newer one."""
        newest = self.shown.select_newer(newest, or_equal=True)
        if newest.num_rows:
            self.latest.update(ipc_bytes(perspective_arrow(self.dataset, newest, self.precision)))
            self.shown.advance(newest)

    def _in_ring(self, ready: pa.Table) -> pa.Table:
        """The rows that fit the window, each with the ring slot it overwrites."""
        count = ready.num_rows
        kept = ready.slice(max(0, count - self.limit))
        first = self.sequence + count - kept.num_rows
        self.sequence += count
        slots = (first + np.arange(kept.num_rows, dtype=np.int64)) % self.limit
        return kept.add_column(0, RING_COLUMN, pa.array(slots.astype(np.int32)))

    def poll(self, store: Store, pacing: Pacing, stop: threading.Event, wake: StoreWatcher | None = None) -> None:
        """Read what the store took since the last read until `stop`, and apply it as `pacing` says: reads as soon
        as `wake` sees another process commit, but not sooner than `pacing.min_interval` (at most
        `pacing.interval`) after the last read began, and every `pacing.interval` seconds when no commit came
        (`wake.interrupt()` ends a wait at once)."""
        gathered = Gathered(pacing)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                gathered.add(store.read_new(self.dataset, self.watermark), started)
                if gathered.due(started):
                    self.apply(gathered.take(), only_newer=False)
            except Exception as exc:  # the feed outlives a store hiccup; the stats show it
                self.stats.errors += 1
                self.stats.last_error = str(exc)
            timeout = gathered.wait_at_most(time.perf_counter(), pacing.interval)
            if wake is None:
                stop.wait(max(0.0, min(timeout, pacing.interval - (time.perf_counter() - started))))
            elif wake.wait(timeout):
                self.stats.wakes += 1
                stop.wait(max(0.0, min(pacing.min_interval, pacing.interval) - (time.perf_counter() - started)))

    def follow(self, batches: Iterable[pa.Table], stop: threading.Event, pacing: Pacing | None = None) -> None:
        """Apply pushed batches (a TMQ subscription) until `stop` or the iterable ends, gathered as `pacing` says
        (an empty batch, which a subscription yields after a poll that brought nothing, applies what is due)."""
        gathered = Gathered(pacing or Pacing())
        for batch in batches:
            if stop.is_set():
                return
            now = time.perf_counter()
            gathered.add(batch, now)
            if gathered.due(now):
                self.apply(gathered.take())
        if gathered.rows:
            self.apply(gathered.take())


@dataclass(frozen=True)
class Pacing:
    """How often the feed reads and applies (`[server]` interval, min_interval, gather_rows, max_delay).

    Each apply costs about the same whatever it carries (a Perspective update of every table, a re-read by
    every open view), so a few rows wait for more: rows are applied once `gather_rows` have come, or once the
    first of them has waited `max_delay`, and never sooner than `min_interval` after the last read began.
    """

    interval: float = 0.1
    min_interval: float = 0.0
    gather_rows: int = 1
    max_delay: float = 0.0


class Gathered:
    """Rows read or pushed but not applied yet, and when they are due."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.rows = 0
        self._batches: list[pa.Table] = []
        self._since = 0.0

    def add(self, batch: pa.Table, now: float) -> None:
        if batch.num_rows:
            if not self._batches:
                self._since = now
            self._batches.append(batch)
            self.rows += batch.num_rows

    def due(self, now: float) -> bool:
        return self.rows > 0 and (self.rows >= self.pacing.gather_rows or now - self._since >= self.pacing.max_delay)

    def take(self) -> pa.Table:
        rows = self._batches[0] if len(self._batches) == 1 else pa.concat_tables(self._batches)
        self._batches, self.rows = [], 0
        return rows

    def wait_at_most(self, now: float, interval: float) -> float:
        """How long the feed may wait for the next commit: until the rows held are due, else `interval`."""
        if not self.rows:
            return interval
        return max(0.0, min(interval, self._since + self.pacing.max_delay - now))
