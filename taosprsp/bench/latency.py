"""End-to-end latency: from the moment a write call returned to the moment a Perspective client saw its row.

Each run serves the scratch store with `taosprsp serve` as a process of its own (loopback, port 0, the
configured feed settings), so that its CPU time is its own; `produce` writes at a steady rate in this
process, a hundredth of a second's rows a write; a Perspective client on the server's WebSocket runs on a
thread of this process. Two clients:

- `bare`: one view of the window table with `on_update(mode="row")`; a row is seen when its row delta
  arrives. Rows are matched by (tbname, ts in ms).
- `dashboard`: what a user sees. The views of the default dashboard's panels (their configs from
  `dashboard_document`: the derived tables and the latest table), each re-read when it reports an update, as
  the browser does (a grid its first `GRID_ROWS` rows, a chart all of it; the latest panel all of it, so that
  every subtable can be seen), each on its own as a browser's viewers do (updates during a read: one more
  read after it). A row is seen when a read of the latest-table view first shows its subtable at its
  timestamp or later (the feed pushes the derived tables before the latest table, so the aggregates then
  include it). The window is full (`fill_window`), as on a server that has been running a while.

Serve's CPU is its user and system time over the seconds of writing, from `/proc/<pid>/stat` (Linux), as a
percentage of one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.bench.stages import Setup, epoch_ms, rounded
from taosprsp.client import connect
from taosprsp.config import ENV_PREFIX, SECRET_KEYS, Config, as_dict, to_toml
from taosprsp.dashboard import dashboard_document
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.errors import TaosprspError
from taosprsp.produce import ProduceOptions, produce
from taosprsp.seed import seed
from taosprsp.stores import Store, open_store

WRITES_PER_SECOND = 100
DRAIN_SECONDS = 5.0
SERVE_START_SECONDS = 120.0
"""How long the served process may take to load the snapshot and listen."""
GRID_ROWS = 100
"""Rows a dashboard grid reads on an update: about what a datagrid shows, as the browser's reads only those."""
VIEW_KEYS = ("group_by", "split_by", "columns", "aggregates", "sort", "filter", "expressions", "group_rollup_mode")
"""The keys of a panel's `perspective-viewer` config that shape its view (the rest are for drawing)."""
Client = Literal["bare", "dashboard"]
CLIENTS: tuple[Client, ...] = ("bare", "dashboard")


def feed_modes(kind: str) -> list[str]:
    """The feed modes a store has: TDengine pushes (TMQ) and can be polled; the embedded store is polled."""
    return ["poll", "tmq"] if kind == "tdengine" else ["poll"]


def produce_options(setup: Setup, rate: int, seconds: float) -> ProduceOptions:
    """`produce` at a steady `rate` for `seconds`, a hundredth of a second's rows a write.

    Small writes land at every phase of the poll interval, where produce's default (a tenth of a second,
    the default poll interval) locks onto one phase.
    """
    batch = max(1, round(rate / WRITES_PER_SECOND))
    return ProduceOptions(tables=setup.tables, rate=float(rate), batch=batch, duration=seconds)


@dataclass(frozen=True)
class LatencyResult:
    """Write-returned to client-saw-it latency at one steady rate through one feed mode, seen by one client."""

    feed: str
    rate: int
    seconds: float
    written: int
    samples_ms: np.ndarray = field(repr=False)
    client: Client = "bare"
    wake: str = "off"
    """How the served feed learned of new rows besides its poll interval: `inotify`, `stat`, or `off`."""
    serve_cpu_percent: float | None = None
    window_rows: int = 0
    """The rows the served window held when writing began."""

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q)) if len(self.samples_ms) else float("nan")

    @property
    def label(self) -> str:
        return f"{self.feed}{'' if self.wake == 'off' else '+wake'}, {self.client}"

    def as_dict(self) -> dict[str, Any]:
        figures = {f"p{q}_ms": rounded(self.percentile(q), 2) for q in (50, 95, 99)}
        return {
            "feed": self.feed,
            "client": self.client,
            "wake": self.wake,
            "rate": self.rate,
            "seconds": round(self.seconds, 2),
            "written": self.written,
            "rows": len(self.samples_ms),
            "unseen": self.written - len(self.samples_ms),
            **figures,
            "max_ms": rounded(float(self.samples_ms.max()) if len(self.samples_ms) else float("nan"), 2),
            "serve_cpu_percent": rounded(self.serve_cpu_percent, 1),
            "window_rows": self.window_rows,
        }


def fill_window(setup: Setup) -> None:
    """Make the store hold at least a full window (`server.limit` rows), stamped in the past hour."""
    with open_store(setup.config, setup.kind) as store:
        missing = setup.config.server.limit - store.count(setup.dataset)
        if missing > 0:
            seed(store, setup.dataset, setup.tables, setup.precision, rows=missing, span_seconds=3600.0)


def measure_latency(setup: Setup, mode: str, rate: int, client: Client = "bare") -> LatencyResult:
    """Serve the scratch store through feed `mode` in a process of its own, write at `rate` and time every row
    to `client`."""
    # on loopback: TLS would time the cipher (and the client would need to trust the certificate)
    config = setup.config.replace(server={"host": "127.0.0.1", "port": 0, "feed": mode, "certfile": "", "keyfile": ""})
    token = config.server.token
    with ServeProcess(config) as served:
        watcher: _RowWatcher | _DashboardWatcher
        if client == "bare":
            watcher = _RowWatcher(served.websocket, config.perspective_table, token)
        else:
            panels = dashboard_document(config, dataset=setup.dataset)["panels"]
            watcher = _DashboardWatcher(served.websocket, token, panels, config.latest_table)
        try:
            watcher.start()
            window_rows = served.stats()["tables"][config.perspective_table]
            with open_store(config, setup.kind) as store:
                timed = _WriteTimes(store)
                options = produce_options(setup, rate, setup.settings.latency_seconds)
                cpu_before = served.cpu_seconds()
                stats = produce(timed, setup.dataset, config.stable, setup.precision, options)  # type: ignore[arg-type]
                cpu = served.cpu_seconds()
            deadline = time.perf_counter() + max(DRAIN_SECONDS, 20 * config.server.interval)
            written = timed.written(setup.precision)
            while not watcher.saw_all(written) and time.perf_counter() < deadline:
                time.sleep(0.02)
        finally:
            watcher.stop()
        wake = served.stats()["feed"].get("wake", "off")
    serve_cpu = None if cpu is None or cpu_before is None else 100.0 * (cpu - cpu_before) / stats.seconds
    samples = watcher.latencies(written)
    return LatencyResult(mode, rate, stats.seconds, stats.rows_written, samples, client, wake, serve_cpu, window_rows)


class ServeProcess:
    """`taosprsp serve` on `config`'s store as a child process: its WebSocket, `/api/stats` and CPU time.

    The config goes to the child as a file; secrets go through its environment, and no other `TAOSPRSP_*`
    variable of this process reaches it (it would override the file).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.websocket = ""
        self.url = ""
        self._workdir = Path(tempfile.mkdtemp(prefix="taosprsp-bench-serve-"))
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServeProcess:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _start(self) -> None:
        config_file, env = child_config(self.config, self._workdir / "serve.toml")
        log = (self._workdir / "serve.log").open("w", encoding="utf-8")
        with log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "taosprsp", "--config", str(config_file), "--json", "-q", "serve"],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
            )
        assert self._process.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(SERVE_START_SECONDS)
        if not ready or not ready[0]:
            log_text = (self._workdir / "serve.log").read_text(encoding="utf-8", errors="replace").strip()
            last = log_text.splitlines()[-1] if log_text else "no output"
            code = self._process.poll()
            how = f"stopped (exit {code})" if code is not None else f"was not ready within {SERVE_START_SECONDS:.0f} s"
            raise TaosprspError(f"bench: the served `taosprsp serve` {how}: {last}")
        document = json.loads(ready[0])
        self.url, self.websocket = document["url"], document["websocket"]

    def stats(self) -> dict[str, Any]:
        """The server's `/api/stats`."""
        headers = {"Authorization": f"Bearer {self.config.server.token}"} if self.config.server.token else {}
        request = urllib.request.Request(self.url + "api/stats", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float | None:
        """User and system CPU seconds the served process has used; None where /proc does not say."""
        assert self._process is not None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_config(config: Config, path: Path) -> tuple[Path, dict[str, str]]:
    """`config` for a `taosprsp` child process: written to `path` (a TOML file) but for its secrets, which go in
    the environment returned; no other `TAOSPRSP_*` variable of this process is in it (it would override the
    file)."""
    data = as_dict(config, masked=False)
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    for section, values in data.items():
        for key in [k for k in values if section != "datasets" and _is_secret(section, k)]:
            value = values.pop(key)
            if value:
                env[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = str(value)
    path.write_text(to_toml(data), encoding="utf-8")
    return path, env


def _is_secret(section: str, key: str) -> bool:
    """A setting that may hold a password or token: the child takes it from its environment, not a file."""
    return key in SECRET_KEYS or (section, key) in (("tdengine", "dsn"), ("mqtt", "url"))


class _WriteTimes:
    """A store whose writes note when each call returned and which rows it wrote; all else is the store's."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._batches: list[tuple[float, pa.Table]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        written = self._store.write(dataset, batch)
        self._batches.append((time.perf_counter(), batch.select([SUBTABLE_COLUMN, "ts"])))
        return written

    def written(self, precision: Precision) -> pa.Table:
        """`tbname`, `ts` (ms) and `t_write` (perf_counter seconds) of every row written."""
        parts = [
            pa.table(
                {
                    SUBTABLE_COLUMN: keys[SUBTABLE_COLUMN],
                    "ts": epoch_ms(keys["ts"], precision),
                    "t_write": pa.array(np.full(keys.num_rows, at)),
                }
            )
            for at, keys in self._batches
        ]
        return pa.concat_tables(parts) if parts else _empty_times("t_write")


class _ClientThread(ABC):
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


class _RowWatcher(_ClientThread):
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
        return _match(written, pa.concat_tables(parts).combine_chunks() if parts else _empty_times("t_seen"))


class _DashboardWatcher(_ClientThread):
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


def _empty_times(column: str) -> pa.Table:
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
