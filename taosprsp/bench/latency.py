"""End-to-end latency: from the moment a write call returned to the moment a Perspective client saw its row.

Each run serves the scratch store with `taosprsp serve` as a process of its own (loopback, port 0, the
configured feed settings), so that its CPU time is its own; `produce` writes at a steady rate in this
process, a hundredth of a second's rows a write; a Perspective client on the server's WebSocket runs on a
thread of this process, `bare` or `dashboard` (`taosprsp.bench.watchers`); the served process is
`taosprsp.bench.serve_process.ServeProcess`.

Serve's CPU is its user and system time over the seconds of writing, from `/proc/<pid>/stat` (Linux), as a
percentage of one core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from taosprsp.bench.serve_process import ServeProcess
from taosprsp.bench.stages import Setup, epoch_ms, rounded
from taosprsp.bench.watchers import DashboardWatcher, RowWatcher, empty_times
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.produce import ProduceOptions, produce
from taosprsp.seed import seed
from taosprsp.stores import Store, open_store

WRITES_PER_SECOND = 100
DRAIN_SECONDS = 5.0
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
        watcher: RowWatcher | DashboardWatcher
        if client == "bare":
            watcher = RowWatcher(served.websocket, config.perspective_table, token)
        else:
            watcher = DashboardWatcher(served.websocket, token, served.dashboard()["panels"], config.latest_table)
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
        return pa.concat_tables(parts) if parts else empty_times("t_write")
