"""`produce`: generate rows with numpy and write them at a controlled rate, losing nothing silently.

The loop is paced by a schedule, not by sleeping a fixed interval: batch k is due when `k * batch` rows
should have been written at the target rate, so time spent generating and writing is not added on top.
When the store cannot keep up, the stats say so ("behind") instead of the rate quietly sagging.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from taosprsp import schemaless
from taosprsp.config import ProducerSettings, Protocol
from taosprsp.datasets import Dataset, Precision
from taosprsp.errors import TaosprspError
from taosprsp.generate import Clock, Generator, spread
from taosprsp.stores.base import BEFORE_ANY_ROW, Store

Sink = Literal["store", "null"]
"""Where rows go: the store, or nowhere (generation and encoding only, the generator's ceiling)."""

MAX_AUTO_BATCH = 10_000
SEED_STYLE_BATCH = 250
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
"""Seconds to wait before each retry of a failed write: about 8 s of outage is ridden out."""
BEHIND_SECONDS = 1.0
PREFETCH_BELOW_SECONDS = 0.01


@dataclass(frozen=True)
class ProduceOptions:
    """What to produce and how fast. `rate` 0 means as fast as the store takes it."""

    tables: int = 10
    rate: float = 1000.0
    batch: int = 0
    count: int | None = None
    duration: float | None = None
    protocol: Protocol = "stmt2"
    sink: Sink = "store"
    seed: int | None = None

    @classmethod
    def from_settings(cls, settings: ProducerSettings, tables: int, **run: Any) -> ProduceOptions:
        """Options from `[producer]`: with `interval` set, one batch (250 rows unless given) per interval."""
        rate, batch = settings.rate, settings.batch
        if settings.interval:
            batch = batch or SEED_STYLE_BATCH
            rate = batch / settings.interval
        return cls(tables=tables, rate=rate, batch=batch, protocol=settings.protocol, seed=settings.seed, **run)

    @property
    def batch_rows(self) -> int:
        """Rows per batch: as given, or a tenth of a second's rows at the target rate (1..10,000)."""
        if self.batch > 0:
            return self.batch
        if self.rate <= 0:
            return MAX_AUTO_BATCH
        return int(min(MAX_AUTO_BATCH, max(1, round(self.rate / 10))))


@dataclass
class ProduceStats:
    """Running totals; `as_dict` is the documented `--json` summary."""

    store: str
    dataset: str
    protocol: Protocol
    target_rate: float
    batch: int
    tables: int
    rows_written: int = 0
    rows_failed: int = 0
    batches: int = 0
    errors: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    lag_seconds: float = 0.0
    last_error: str = ""
    stopped_by: str = ""
    recent: list[tuple[float, int]] = field(default_factory=list, repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_second_now(self) -> float:
        """Rows/s over the last second or so."""
        if len(self.recent) < 2:
            return self.rows_per_second
        (t0, r0), (t1, r1) = self.recent[0], self.recent[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def behind(self) -> bool:
        return self.target_rate > 0 and self.lag_seconds > BEHIND_SECONDS

    def note(self, now: float) -> None:
        self.recent.append((now, self.rows_written))
        while len(self.recent) > 2 and now - self.recent[0][0] > 1.0:
            self.recent.pop(0)

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "recent"}
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["behind"] = self.behind
        return data


_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks between batches, so the batch in hand is flushed."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self._previous: dict[signal.Signals, _SignalHandler] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.reason = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _prefetched(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The same batches, each generated on a worker thread while the previous one is being written."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


def _batches(options: ProduceOptions, generator: Generator, clock: Clock) -> Iterator[pa.Table]:
    produced = 0
    rows = options.batch_rows
    while options.count is None or produced < options.count:
        size = rows if options.count is None else min(rows, options.count - produced)
        counts = spread(size, options.tables)
        # rotate which subtables get the extra rows so small batches still cover every subtable
        counts = np.roll(counts, produced % options.tables)
        yield generator.batch(counts, clock.live(counts))
        produced += size


def produce(
    store: Store | None,
    dataset: Dataset,
    stable: str,
    precision: Precision,
    options: ProduceOptions,
    reopen: Callable[[], Store] | None = None,
    on_stats: Callable[[ProduceStats], None] | None = None,
    stop: threading.Event | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> ProduceStats:
    """Produce until `count` rows, `duration` seconds, or `stop` is set; returns the totals.

    With `sink="null"` rows are generated (and encoded for a schemaless protocol) but not written.
    A failed write is retried after each of `retry_delays` seconds, reconnecting through `reopen`; rows
    still unwritten after the last retry are counted in `rows_failed`, never dropped silently.
    """
    stop = stop or threading.Event()
    target = store if options.sink == "store" else None
    if target is not None and options.protocol != "stmt2" and not target.takes_schemaless:
        raise TaosprspError(
            f"the {target.kind} store does not take schemaless {options.protocol} text; "
            "use --protocol stmt2 with it, or --store tdengine"
        )
    stats = ProduceStats(
        store=target.describe() if target is not None else "null sink",
        dataset=dataset.name,
        protocol=options.protocol,
        target_rate=options.rate,
        batch=options.batch_rows,
        tables=options.tables,
    )
    if target is not None:
        target.ensure_schema(dataset, options.tables)
        last = target.last_per_subtable(dataset, options.tables)
    else:
        last = np.full(options.tables, BEFORE_ANY_ROW, dtype=np.int64)
    clock = Clock(precision, last)
    generator = Generator(dataset, options.tables, precision, options.seed)
    started = time.perf_counter()
    deadline = started + options.duration if options.duration else None
    produced = 0
    last_report = 0.0
    source = _batches(options, generator, clock)
    # Overlap generation with writing when batches follow each other closely; at slower paces a batch
    # generated ahead would carry timestamps older than its write by up to one interval.
    prefetch = target is not None and (options.rate <= 0 or options.batch_rows / options.rate < PREFETCH_BELOW_SECONDS)
    for batch in _prefetched(source) if prefetch else source:
        if stop.is_set():
            stats.stopped_by = stats.stopped_by or "signal"
            break
        write = _writer(dataset, stable, batch, options.protocol, precision)
        if target is not None:
            target = _write_with_retries(target, write, batch.num_rows, stats, reopen, stop, retry_delays)
        else:
            stats.rows_written += batch.num_rows
        stats.batches += 1
        produced += batch.num_rows
        now = time.perf_counter()
        stats.seconds = now - started
        stats.note(now)
        if options.rate > 0:
            due = started + produced / options.rate
            stats.lag_seconds = max(0.0, now - due)
            if due > now:
                stop.wait(due - now)
        if on_stats and now - last_report >= 0.25:
            on_stats(stats)
            last_report = now
        if deadline and time.perf_counter() >= deadline:
            stats.stopped_by = "duration"
            break
    else:
        stats.stopped_by = "count"
    if stop.is_set() and not stats.stopped_by:
        stats.stopped_by = "signal"
    stats.seconds = time.perf_counter() - started
    if on_stats:
        on_stats(stats)
    return stats


def _writer(
    dataset: Dataset, stable: str, batch: pa.Table, protocol: Protocol, precision: Precision
) -> Callable[[Store], int]:
    """How to write `batch` to a store; schemaless text is encoded here, once for every retry (and the null sink)."""
    if protocol == "stmt2":
        return lambda store: store.write(dataset, batch)
    lines = schemaless.encode(dataset, stable, batch, protocol, precision)
    return lambda store: store.write_text(dataset, lines, protocol)


def _write_with_retries(
    store: Store,
    write: Callable[[Store], int],
    rows: int,
    stats: ProduceStats,
    reopen: Callable[[], Store] | None,
    stop: threading.Event,
    retry_delays: Sequence[float],
) -> Store:
    """Write `rows` rows, retrying on a fresh store after each delay; returns the store to use next."""
    for attempt, delay in enumerate((0.0, *retry_delays)):
        if attempt:
            if stop.is_set():
                time.sleep(min(delay, 0.5))  # stopping: still retry the batch in hand, without the long waits
            else:
                stop.wait(delay)
            if reopen is not None:
                try:
                    store.close()
                    store = reopen()
                    stats.reconnects += 1
                except TaosprspError as exc:
                    stats.errors += 1
                    stats.last_error = str(exc)
                    continue
        try:
            write(store)
            stats.rows_written += rows
            return store
        except TaosprspError as exc:
            stats.errors += 1
            stats.last_error = str(exc)
    stats.rows_failed += rows
    return store
