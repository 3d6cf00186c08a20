"""The Perspective clients the latency bench times rows to, each on a thread of its own: two clients.

- `bare`: one view of the window table with `on_update(mode="row")`; a row is seen when its row delta
  arrives. Rows are matched by (tbname, ts in ms).
- `dashboard`: what a user sees. The views of the default dashboard's panels (their configs from the
  served `dashboard.json`: the derived tables and the latest table), each re-read when it reports an update, as
  the browser does (a grid its first `GRID_ROWS` rows, a chart all of it; the latest panel all of it, so that
  every subtable can be seen), each on its own as a browser's viewers do (updates during a read: one more
  read after it). A row is seen when a read of the latest-table view first shows its subtable at its
  timestamp or later (the feed pushes the derived tables before the latest table, so the aggregates then
  include it). The window is full (`taosprsp.bench.latency.fill_window`), as on a server that has been running a while.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.client import connect
from taosprsp.datasets import SUBTABLE_COLUMN
from taosprsp.errors import TaosprspError

GRID_ROWS = 100
"""Rows a dashboard grid reads on an update: about what a datagrid shows, as the browser's reads only those."""
VIEW_KEYS = ("group_by", "split_by", "columns", "aggregates", "sort", "filter", "expressions", "group_rollup_mode")
"""The keys of a panel's `perspective-viewer` config that shape its view (the rest are for drawing)."""


class ClientThread(ABC):
    """A Perspective client on its own thread and event loop, until `stop`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self._ready = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-client", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise TaosprspError(f"the bench client could not watch {self.url}: {self._error}")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by start(); a thread has nobody else to tell
            self._error = exc
            self._ready.set()

    @abstractmethod
    async def _watch(self) -> None:
        """Connect, watch, set `_ready` once watching, and return once `_done` is set."""

    @abstractmethod
    def saw_all(self, written: pa.Table) -> bool:
        """Whether every row of `written` has been seen."""

    @abstractmethod
    def latencies(self, written: pa.Table) -> np.ndarray:
        """Milliseconds from write-returned to seen, for every row of `written` that was seen."""


class RowWatcher(ClientThread):
    """Notes when each row delta of the window table arrives."""

    def __init__(self, url: str, table: str, token: str) -> None:
        super().__init__(url, token)
        self.table = table
        self.rows = 0
        self._arrivals: list[tuple[float, bytes]] = []

    def _on_update(self, port_id: int, delta: bytes | None = None) -> None:
        at = time.perf_counter()  # first: the parsing below is not part of the latency
        if delta:
            self._arrivals.append((at, delta))
            self.rows += pa.ipc.open_stream(delta).read_all().num_rows

    async def _watch(self) -> None:
        async with connect(self.url, token=self.token) as client:
            table = await client.open_table(self.table)
            view = await table.view()
            await view.on_update(self._on_update, mode="row")
            self._ready.set()
            while not self._done.is_set():
                await asyncio.sleep(0.02)
            await view.delete()

    def saw_all(self, written: pa.Table) -> bool:
        return self.rows >= written.num_rows

    def latencies(self, written: pa.Table) -> np.ndarray:
        """Milliseconds from write-returned to first seen, for every written row that was seen."""
        parts = []
        for at, delta in self._arrivals:
            rows = pa.ipc.open_stream(delta).read_all()
            parts.append(_times(rows, np.full(rows.num_rows, at)))
        return _match(written, pa.concat_tables(parts).combine_chunks() if parts else empty_times("t_seen"))


class DashboardWatcher(ClientThread):
    """The dashboard's panels as views, each re-read whenever it reports an update; notes what the latest panel
    shows and when."""

    def __init__(self, url: str, token: str, panels: list[dict[str, Any]], latest_table: str) -> None:
        super().__init__(url, token)
        self.panels = panels
        self.latest_table = latest_table
        if not any(panel["table"] == latest_table for panel in panels):
            raise TaosprspError(f"bench: the dashboard has no panel of {latest_table} to see rows in")
        self.reads = 0
        self._shown: list[pa.Table] = []
        self._newest_shown: dict[str, int] = {}
        self._newest_written: dict[str, int] | None = None

    async def _watch(self) -> None:
        async with connect(self.url, token=self.token) as client:
            views = []
            for panel in self.panels:
                table = await client.open_table(panel["table"])
                config = panel.get("config") or {}
                view = await table.view(**{key: config[key] for key in VIEW_KEYS if key in config})
                # the latest panel is read whole, so that every subtable can be seen in it
                first_rows = config.get("plugin", "Datagrid") == "Datagrid" and panel["table"] != self.latest_table
                views.append(_PanelView(panel["table"], view, first_rows))
            readers = [asyncio.ensure_future(self._reread(panel_view)) for panel_view in views]
            for panel_view in views:
                await panel_view.view.on_update(panel_view.notice(asyncio.get_running_loop()))
            self._ready.set()
            while not self._done.is_set():
                await asyncio.sleep(0.02)
            for reader in readers:
                reader.cancel()
            for panel_view in views:
                await panel_view.view.delete()

    async def _reread(self, panel_view: _PanelView) -> None:
        """Re-read `panel_view` after each update it reports (updates during a read: one more read after it)."""
        while True:
            await panel_view.updated.wait()
            panel_view.updated.clear()
            output = await panel_view.read()
            at = time.perf_counter()
            self.reads += 1
            if panel_view.table == self.latest_table:
                self._note_shown(pa.ipc.open_stream(output).read_all(), at)

    def _note_shown(self, rows: pa.Table, at: float) -> None:
        shown = _times(rows, np.full(rows.num_rows, at))
        self._shown.append(shown)
        for name, ts in zip(shown[SUBTABLE_COLUMN].to_pylist(), shown["ts"].to_pylist(), strict=True):
            self._newest_shown[name] = max(ts, self._newest_shown.get(name, ts))

    def saw_all(self, written: pa.Table) -> bool:
        if self._newest_written is None:
            newest = written.group_by(SUBTABLE_COLUMN).aggregate([("ts", "max")])
            self._newest_written = dict(
                zip(newest[SUBTABLE_COLUMN].to_pylist(), newest["ts_max"].to_pylist(), strict=True)
            )
        return all(self._newest_shown.get(name, -1) >= ts for name, ts in self._newest_written.items())

    def latencies(self, written: pa.Table) -> np.ndarray:
        """Milliseconds from write-returned to the first read of the latest panel that showed the row's subtable
        at its timestamp or later, for every written row so shown."""
        if not self._shown or written.num_rows == 0:
            return np.array([], dtype=np.float64)
        shown = pa.concat_tables(self._shown)
        samples = []
        for name in pc.unique(written[SUBTABLE_COLUMN]).to_pylist():
            rows = written.filter(pc.equal(written[SUBTABLE_COLUMN], name))
            seen = shown.filter(pc.equal(shown[SUBTABLE_COLUMN], name))
            if seen.num_rows == 0:
                continue
            # reads in order; what the latest table shows of a subtable only moves forward
            reached = np.maximum.accumulate(seen["ts"].to_numpy())
            first = np.searchsorted(reached, rows["ts"].to_numpy(), side="left")
            found = first < len(reached)
            t_seen = seen["t_seen"].to_numpy()[first[found]]
            samples.append((t_seen - rows["t_write"].to_numpy()[found]) * 1000.0)
        return np.concatenate(samples) if samples else np.array([], dtype=np.float64)


class _PanelView:
    """One panel's view, with the event its updates set."""

    def __init__(self, table: str, view: Any, first_rows: bool) -> None:
        self.table = table
        self.view = view
        self.first_rows = first_rows
        self.updated = asyncio.Event()

    def notice(self, loop: asyncio.AbstractEventLoop) -> Any:
        def on_update(port_id: int, delta: bytes | None = None) -> None:
            loop.call_soon_threadsafe(self.updated.set)

        return on_update

    async def read(self) -> bytes:
        """What the browser reads on an update: a grid's first rows, or a chart's every row."""
        if self.first_rows:
            return await self.view.to_arrow(start_row=0, end_row=GRID_ROWS)
        return await self.view.to_arrow()


def _times(rows: pa.Table, at: np.ndarray) -> pa.Table:
    """`tbname`, `ts` (ms) and `t_seen` of rows a client received."""
    ts = rows["ts"]
    if pa.types.is_timestamp(ts.type):
        ts = pc.cast(ts, pa.timestamp("ms")).cast(pa.int64())
    return pa.table({SUBTABLE_COLUMN: rows[SUBTABLE_COLUMN].cast(pa.string()), "ts": ts, "t_seen": pa.array(at)})


def empty_times(column: str) -> pa.Table:
    return pa.table(
        {SUBTABLE_COLUMN: pa.array([], pa.string()), "ts": pa.array([], pa.int64()), column: pa.array([], pa.float64())}
    )


def _match(written: pa.Table, seen: pa.Table) -> np.ndarray:
    """Milliseconds from write-returned to first seen, for every written row that was seen."""
    if seen.num_rows == 0 or written.num_rows == 0:
        return np.array([], dtype=np.float64)
    first = seen.group_by([SUBTABLE_COLUMN, "ts"]).aggregate([("t_seen", "min")])
    joined = written.join(first, keys=[SUBTABLE_COLUMN, "ts"], join_type="inner")
    return (pc.subtract(joined["t_seen_min"], joined["t_write"]).to_numpy() * 1000.0).astype(np.float64)
