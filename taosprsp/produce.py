"""`produce`: generate rows with numpy and write them at a controlled rate, losing nothing silently.

The loop is paced by a schedule, not by sleeping a fixed interval: batch k is due when `k * batch` rows
should have been written at the target rate, so time spent generating and writing is not added on top.
When the store cannot keep up, the stats say so ("behind") instead of the rate quietly sagging.

Timestamps are unique per subtable, one tick apart at least, so a subtable takes at most one row per tick
(1,000 rows/s at ms precision) without running ahead of the clock: a rate above that is refused, and a run
as fast as possible (`rate` 0) reports how far ahead it ran (`ahead_seconds`). A producer claims its
subtables in the store (`Store.claim`) for as long as it runs, so a second producer on any of them is
refused instead of overwriting rows; `first_table` puts producers on disjoint subtables.

A failed write is retried on a new connection only when a reconnect can cure it (`stores.faults.classify`:
refused, reset or closed connections, timeouts, a server starting up); a write the store refuses for good
(data or schema that does not fit, a syntax error, missing privileges) fails its batch at once, counted in
`rows_rejected` with the store's message, and the producer goes on with the next batch.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from taosprsp import schemaless
from taosprsp.config import MAX_SUBTABLES, ProducerSettings, Protocol
from taosprsp.datasets import TICKS_PER_SECOND, Dataset, Precision
from taosprsp.errors import STOP_SIGNALS, ConfigError, ExitCode, TaosprspError
from taosprsp.generate import Clock, Generator, spread
from taosprsp.pacing import ProduceStats, keep_pace
from taosprsp.progress import STATS_EVERY_SECONDS
from taosprsp.stores.base import BEFORE_ANY_ROW, Claim, Store
from taosprsp.stores.faults import classify

Sink = Literal["store", "null", "mqtt"]
"""Where rows go: the store, nowhere (generation and encoding only, the generator's ceiling), or an MQTT broker
as messages of simulated devices (`taosprsp.mqtt.publish`, which takes its batches from `batches`)."""

MAX_AUTO_BATCH = 10_000
SEED_STYLE_BATCH = 250
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
"""Seconds to wait before each retry of a failed write: about 8 s of outage is ridden out."""
STAMPED_AHEAD_SECONDS = 0.01
"""How long before its write a row may be generated (and stamped), as a batch generated on a worker thread
while the previous one is written, or as part of a block of batches generated at once."""
BLOCK_ROWS = 20_000
"""Small batches are cut from blocks of about this many rows generated in one call: a call of the
generator costs a few hundred microseconds whatever its size, most of the time of a 100-row batch."""
MIN_BATCHES_PER_BLOCK = 5
"""Fewer batches a block are not worth it: from about 5,000 rows a batch, reordering a block into batches
costs what the saved calls save (measured: 1,000 rows 549 -> 242 us a batch, 5,000 rows 1,040 -> 1,098)."""


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
    first_table: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate < math.inf:
            raise ConfigError(f"producer.rate must be 0 (as fast as possible) or finite and positive, got {self.rate}")
        if self.duration is not None and not 0 < self.duration < math.inf:
            raise TaosprspError(
                f"duration must be more than 0 s, got {self.duration:g}: leave --duration out to run until stopped",
                ExitCode.USAGE,
            )
        if self.count is not None and self.count < 1:
            raise TaosprspError(f"count must be at least 1, got {self.count}", ExitCode.USAGE)
        if not 0 <= self.first_table <= MAX_SUBTABLES - self.tables:
            raise TaosprspError(
                f"first table {self.first_table:,} with {self.tables:,} subtables: subtables are numbered 0 to "
                f"{MAX_SUBTABLES - 1:,}, so the first table must be between 0 and {MAX_SUBTABLES - self.tables:,}",
                ExitCode.USAGE,
            )

    def check_rate(self, precision: Precision) -> None:
        """Refuse a rate above one row per tick per subtable: its timestamps would run ahead of the clock."""
        per_subtable = self.rate / self.tables
        most = TICKS_PER_SECOND[precision]
        if per_subtable > most:
            needed = math.ceil(self.rate / most)
            raise TaosprspError(
                f"{self.rate:,.0f} rows/s over {self.tables:,} subtables is {per_subtable:,.0f} rows/s per subtable; "
                f"{precision} precision holds at most {most:,} (one row per tick, as TDengine keeps one row per "
                f"timestamp per subtable), so timestamps would run ahead of the clock: spread the rate over "
                f"--tables {needed:,} or more, or use a finer database.precision",
                ExitCode.USAGE,
            )

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


_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class StopSignal:
    """Turns SIGINT, SIGTERM and SIGHUP into a flag the loop checks between batches, so the batch in hand
    is flushed."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self._previous: dict[signal.Signals, _SignalHandler] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
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


def block_batches(options: ProduceOptions) -> int:
    """How many batches to generate in one call: about `BLOCK_ROWS` rows, and no more than are written
    within `STAMPED_AHEAD_SECONDS` at the target rate (any number at rate 0, which runs ahead anyway)."""
    rows = options.batch_rows
    most = BLOCK_ROWS // rows
    if options.rate > 0:
        most = min(most, int(options.rate * STAMPED_AHEAD_SECONDS) // rows)
    return most if most >= MIN_BATCHES_PER_BLOCK else 1


def batches(options: ProduceOptions, generator: Generator, clock: Clock, per_block: int = 1) -> Iterator[pa.Table]:
    """The batches to write, generated `per_block` at a time and cut from the block."""
    produced = 0
    rows = options.batch_rows
    while options.count is None or produced < options.count:
        sizes = []
        for _ in range(per_block):
            left = rows if options.count is None else min(rows, options.count - produced - sum(sizes))
            if left <= 0:
                break
            sizes.append(left)
        # rotate which subtables get the extra rows so small batches still cover every subtable
        counts = np.stack(
            [
                np.roll(spread(size, options.tables), (produced + sum(sizes[:k])) % options.tables)
                for k, size in enumerate(sizes)
            ]
        )
        totals = counts.sum(axis=0)
        block = generator.batch(totals, clock.live(totals))
        if len(sizes) > 1:
            block = block.take(batch_major(counts))
        for start, size in zip(np.cumsum(sizes) - sizes, sizes, strict=True):
            yield block.slice(int(start), size)
        produced += sum(sizes)


def batch_major(counts: np.ndarray) -> np.ndarray:
    """Row order that cuts a block into batches: `counts[j, i]` rows of subtable i go to batch j.

    The generator lays a block out subtable by subtable, each subtable's rows in time order; the order
    returned lists batch 0's share of each subtable, then batch 1's, and so on, so that every batch holds
    one run per subtable, in time order, as a batch generated alone does.
    """
    totals = counts.sum(axis=0)
    run_start = np.cumsum(totals) - totals
    within = np.cumsum(counts, axis=0) - counts
    starts = (run_start[None, :] + within).ravel()
    lengths = counts.ravel()
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


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
    options.check_rate(precision)
    stats = ProduceStats(
        store=target.describe() if target is not None else "null sink",
        dataset=dataset.name,
        protocol=options.protocol,
        target_rate=options.rate,
        batch=options.batch_rows,
        tables=options.tables,
    )
    claim: Claim | None = None
    if target is not None:
        target.ensure_schema(dataset, options.tables, first=options.first_table)
        claim = target.claim(dataset, options.first_table, options.tables, producer_identity())
    try:
        if target is None:
            last = np.full(options.tables, BEFORE_ANY_ROW, dtype=np.int64)
        elif options.protocol == "stmt2":
            last = target.last_per_subtable(dataset, options.tables, options.first_table)
        else:
            last = schemaless.last_per_subtable(target, dataset, stable, options.tables, options.first_table)
        return _run(target, dataset, stable, precision, options, stats, last, reopen, on_stats, stop, retry_delays)
    finally:
        if claim is not None:
            claim.release()


def producer_identity() -> str:
    """Who this producer is, for the message a second producer on its subtables gets."""
    return f"the producer with pid {os.getpid()} on {socket.gethostname()} (started {time.strftime('%H:%M:%S')})"


def _run(
    target: Store | None,
    dataset: Dataset,
    stable: str,
    precision: Precision,
    options: ProduceOptions,
    stats: ProduceStats,
    last: np.ndarray,
    reopen: Callable[[], Store] | None,
    on_stats: Callable[[ProduceStats], None] | None,
    stop: threading.Event,
    retry_delays: Sequence[float],
) -> ProduceStats:
    """The paced loop of `produce`, once the subtables are claimed and their newest timestamps known."""
    clock = Clock(precision, last)
    generator = Generator(dataset, options.tables, precision, options.seed, options.first_table)
    started = time.perf_counter()
    deadline = started + options.duration if options.duration else None
    produced = 0
    last_report = 0.0
    source = batches(options, generator, clock, block_batches(options))
    # Overlap generation with writing when batches follow each other closely (at slower paces a batch
    # generated ahead would carry timestamps older than its write by up to one interval), and only where
    # the store lets other threads run while it writes: otherwise the hand-offs cost and nothing overlaps.
    prefetch = (
        target is not None
        and target.writes_release_the_gil
        and (options.rate <= 0 or options.batch_rows / options.rate < STAMPED_AHEAD_SECONDS)
    )
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
        keep_pace(stats, options.rate, started, produced, now, stop)
        if on_stats and now - last_report >= STATS_EVERY_SECONDS:
            stats.ahead_seconds = max(stats.ahead_seconds, clock.ahead_seconds())
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
    stats.ahead_seconds = round(max(stats.ahead_seconds, clock.ahead_seconds()), 3)
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
    """Write `rows` rows; while the fault is one a reconnect can cure, retry on a fresh store after each
    delay. A fault no retry cures fails the batch at once, counted in `rows_rejected`. Returns the store to
    use next."""
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
                    if not classify(exc).retryable:
                        break  # e.g. a wrong password: connecting again gets the same answer
                    continue
        try:
            write(store)
            stats.rows_written += rows
            return store
        except TaosprspError as exc:
            stats.errors += 1
            stats.last_error = str(exc)
            if not classify(exc).retryable:
                stats.rows_rejected += rows
                break
    stats.rows_failed += rows
    return store
