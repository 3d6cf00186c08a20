"""End-to-end latency: from the moment a write call returned to the moment its row reached a Perspective client.

For each feed mode and rate: an in-process `LiveServer` (port 0, loopback), a Perspective client on its
WebSocket with `view.on_update(mode="row")` on the window table, and `produce` writing at that steady rate,
a hundredth of a second's rows a write. Rows are matched by (tbname, ts in ms).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.bench.stages import Setup, epoch_ms, rounded
from taosprsp.client import connect
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.errors import TaosprspError
from taosprsp.produce import ProduceOptions, produce
from taosprsp.serve import LiveServer
from taosprsp.stores import Store, open_store

WRITES_PER_SECOND = 100
DRAIN_SECONDS = 5.0


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
    """Write-returned to client-saw-it latency at one steady rate through one feed mode."""

    feed: str
    rate: int
    seconds: float
    written: int
    samples_ms: np.ndarray = field(repr=False)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q)) if len(self.samples_ms) else float("nan")

    def as_dict(self) -> dict[str, Any]:
        figures = {f"p{q}_ms": rounded(self.percentile(q), 2) for q in (50, 95, 99)}
        return {
            "feed": self.feed,
            "rate": self.rate,
            "seconds": round(self.seconds, 2),
            "written": self.written,
            "rows": len(self.samples_ms),
            "unseen": self.written - len(self.samples_ms),
            **figures,
            "max_ms": rounded(float(self.samples_ms.max()) if len(self.samples_ms) else float("nan"), 2),
        }


def measure_latency(setup: Setup, mode: str, rate: int) -> LatencyResult:
    """Serve the scratch store through feed `mode`, write at `rate` and time every row to the client."""
    config = setup.config.replace(server={"host": "127.0.0.1", "port": 0, "feed": mode})
    server = LiveServer(config, kind=setup.kind).start()
    watcher = _RowWatcher(server.websocket_url, config.perspective_table)
    try:
        watcher.start()
        with open_store(config, setup.kind) as store:
            timed = _WriteTimes(store)
            options = produce_options(setup, rate, setup.settings.latency_seconds)
            stats = produce(timed, setup.dataset, config.stable, setup.precision, options)  # type: ignore[arg-type]
        deadline = time.perf_counter() + max(DRAIN_SECONDS, 20 * config.server.interval)
        while watcher.rows < stats.rows_written and time.perf_counter() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()
        server.stop()
    samples = _match(timed.written(setup.precision), watcher.arrivals())
    return LatencyResult(mode, rate, stats.seconds, stats.rows_written, samples)


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


class _RowWatcher:
    """A Perspective client on its own thread, noting when each row delta of the window table arrives."""

    def __init__(self, url: str, table: str) -> None:
        self.url = url
        self.table = table
        self.rows = 0
        self._arrivals: list[tuple[float, bytes]] = []
        self._ready = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-client", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise TaosprspError(f"the bench client could not watch {self.table} at {self.url}: {self._error}")

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _on_update(self, port_id: int, delta: bytes | None = None) -> None:
        at = time.perf_counter()  # first: the parsing below is not part of the latency
        if delta:
            self._arrivals.append((at, delta))
            self.rows += pa.ipc.open_stream(delta).read_all().num_rows

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by start(); a thread has nobody else to tell
            self._error = exc
            self._ready.set()

    async def _watch(self) -> None:
        async with connect(self.url) as client:
            table = await client.open_table(self.table)
            view = await table.view()
            await view.on_update(self._on_update, mode="row")
            self._ready.set()
            while not self._done.is_set():
                await asyncio.sleep(0.02)
            await view.delete()

    def arrivals(self) -> pa.Table:
        """`tbname`, `ts` (ms) and `t_seen` (perf_counter seconds) of every row delivered."""
        parts = []
        for at, delta in self._arrivals:
            rows = pa.ipc.open_stream(delta).read_all()
            parts.append(
                pa.table(
                    {
                        SUBTABLE_COLUMN: rows[SUBTABLE_COLUMN].cast(pa.string()),
                        "ts": rows["ts"].cast(pa.int64()) if pa.types.is_timestamp(rows["ts"].type) else rows["ts"],
                        "t_seen": pa.array(np.full(rows.num_rows, at)),
                    }
                )
            )
        return pa.concat_tables(parts).combine_chunks() if parts else _empty_times("t_seen")


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
