"""`bench`: throughput of every stage, end-to-end latency, and the seeds' way of doing it as a baseline.

Every run works on a fresh store of the configured kind, so user data is never touched: a temporary SQLite
file for the embedded store; for TDengine a database `taosprsp_bench_<random>` (and a super table and TMQ
topic with the same suffix, since topic names are global to the server), dropped afterwards.

Throughput stages, each measured `bench.repeats` times on `bench.rows` rows (median, min and max of rows/s):

- `generate`: `Generator.batch` + `Clock.live`, numpy only, in calls of the largest batch size;
- `ingest-<B>` for every B in `bench.batch_sizes`: `store.write` of B-row columnar batches over
  `dataset.tables` subtables (the path `produce` takes); batches are generated before the clock starts;
- `read`: `store.read_after(watermark)` of the newest `rows` rows into Arrow, in one call, with a mark for
  every subtable;
- `feed`: `Feed.apply` into real Perspective tables made as `LiveServer` makes them (ring-indexed window and
  latest-per-subtable), in calls of the largest batch size.

End-to-end latency: for each feed mode the store has (`poll`; `poll` and `tmq` on TDengine) and each rate of
`bench.latency_rates`, an in-process `LiveServer` (port 0, loopback), a Perspective client on its WebSocket
with `view.on_update(mode="row")` on the window table, and `produce` writing at that steady rate for
`bench.latency_seconds`, a hundredth of a second's rows a write (so writes fall at every phase of the poll
interval). A row's latency runs from the moment its write call returned to the moment its row delta reached
the client; rows are matched by (tbname, ts in ms). Server, client and producer share this process.
The refresh comparison below writes the same way.

Baseline, measured in the same run the way the seed demos do it (see shared seeds):

- generate: a Python loop of row dicts, `random.uniform` and friends per field, 250 rows a call (`gen_data`);
- feed: `table.update(list_of_dicts)` of 1,000 rows a call into the seeds' table (dataset schema,
  `limit=1000`), times as epoch milliseconds (Perspective rejects datetime objects there);
- refresh: the newest 1,000 rows re-queried every 250 ms (`store.read_latest(dataset, 1000)`) while
  `produce` writes at each latency rate; counted are the new rows it delivers per second, the duplicates it
  re-sends and the rows it never delivers. Our incremental read (`read_after` + watermark) runs beside it
  at the same 250 ms, against the same writes.

Ratios (ours / baseline): `generate` and `feed` compare the medians; `read` compares our `read` median with
the most new rows per second the seeds' refresh can ever deliver, 1,000 rows per 250 ms = 4,000 rows/s
(the refresh figures show whether it reaches even that); `refresh` compares the new rows per second both
reads delivered at the highest latency rate.

JSON (`taosprsp bench --json PATH`, or the same document on stdout with `taosprsp --json bench`)::

    {
      "schema": "taosprsp.bench/1",
      "started_at": "2025-01-01T12:00:00+00:00", "seconds": 41.2, "quick": false,
      "store": {"kind": "embedded" | "tdengine", "target": str, "version": str},
      "dataset": "meters", "tables": 10,
      "results": [                                   # pipeline order: generate, ingest-*, read, feed
        {"stage": "generate" | "ingest" | "read" | "feed", "name": "ingest-1000",   # name: for --fail-under
         "batch": 1000 | null,                       # rows per call (null for read: one call)
         "rows": 200000,                             # rows per repeat
         "repeats": 3, "rows_per_second": {"median": float, "min": float, "max": float},
         "baseline_rows_per_second": float | null, "ratio": float | null}
      ],
      "latency": [
        {"feed": "poll" | "tmq", "rate": 1000, "seconds": 5.0, "written": int, "rows": int (matched),
         "unseen": int, "p50_ms": float, "p95_ms": float, "p99_ms": float, "max_ms": float}
      ],
      "baseline": {
        "generate": {"method": str, "rows": int, "repeats": int, "rows_per_second": {"median", "min", "max"}},
        "feed": {same keys},
        "refresh": [
          {"rate": 1000, "interval_ms": 250, "limit": 1000, "seconds": float, "written": int, "queries": int,
           "new_rows": int, "duplicate_rows": int, "missed_rows": int, "new_rows_per_second": float,
           "duplicate_rows_per_second": float, "query_rows_per_second": float,
           "ours_new_rows_per_second": float, "ours_duplicate_rows": int, "ours_missed_rows": int}
        ]
      },
      "ratios": {"generate": float, "feed": float, "read": float, "refresh": float},   # null when not measured
      "versions": {"taosprsp", "python", "numpy", "pyarrow", "perspective", "taosws", "tornado",
                   "tdengine_server": str | null},
      "machine": {"cpu_count": int, "platform": str, "machine": str, "memory_bytes": int | null},
      "config": {...}                                # taosprsp.config.as_dict of the config that ran, masked
    }
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp import __version__
from taosprsp.config import Config, as_dict, parse_duration
from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, get_dataset
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.feed import RING_COLUMN, Feed, window_schema
from taosprsp.generate import Clock, Generator, spread
from taosprsp.produce import ProduceOptions, produce
from taosprsp.stores import Store, Watermark, open_store

SCHEMA = "taosprsp.bench/1"
SEED_BATCH_ROWS = 250
SEED_FEED_ROWS = 1_000
SEED_TABLE_LIMIT = 1_000
SEED_REFRESH_LIMIT = 1_000
SEED_REFRESH_SECONDS = 0.25
SEED_REFRESH_CEILING = SEED_REFRESH_LIMIT / SEED_REFRESH_SECONDS
WRITES_PER_SECOND = 100
REFRESH_MAX_SECONDS = 3.0
DRAIN_SECONDS = 5.0
QUICK = {"rows": 20_000, "repeats": 1, "latency_rates": [1_000], "latency_seconds": 2.0}

StepCallback = Callable[[str, int, int], None]
"""Called before each measurement with its label, how many came before it, and how many there are."""


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Rows per second of each repeat."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_dict(self) -> dict[str, float]:
        return {"median": round(self.median, 1), "min": round(min(self.samples), 1), "max": round(max(self.samples), 1)}


@dataclass(frozen=True)
class StageResult:
    """One throughput stage: `stage` names the kind, `name` the figure (`ingest-1000`) a gate refers to."""

    stage: str
    rows: int
    figures: Figures
    batch: int | None = None

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.batch}" if self.stage == "ingest" else self.stage

    @property
    def median(self) -> float:
        return self.figures.median


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
        figures = {f"p{q}_ms": _round(self.percentile(q), 2) for q in (50, 95, 99)}
        return {"feed": self.feed, "rate": self.rate, "seconds": round(self.seconds, 2), "written": self.written,
                "rows": len(self.samples_ms), "unseen": self.written - len(self.samples_ms), **figures,
                "max_ms": _round(float(self.samples_ms.max()) if len(self.samples_ms) else float("nan"), 2)}


@dataclass(frozen=True)
class RefreshResult:
    """The seeds' re-query of the newest rows against our incremental read, both every 250 ms, same writes.

    Rates count the queries that started while the producer ran; `missed` also counts one query after it.
    """

    rate: int
    seconds: float
    written: int
    seed: "_Refresher"
    ours: "_Refresher"
    window: tuple[float, float]

    @property
    def new_rows_per_second(self) -> float:
        return self.seed.within(*self.window)[1] / self.seconds

    @property
    def ours_new_rows_per_second(self) -> float:
        return self.ours.within(*self.window)[1] / self.seconds

    def as_dict(self) -> dict[str, Any]:
        queries, new, duplicates = self.seed.within(*self.window)
        return {
            "rate": self.rate, "interval_ms": round(SEED_REFRESH_SECONDS * 1000), "limit": SEED_REFRESH_LIMIT,
            "seconds": round(self.seconds, 2), "written": self.written, "queries": queries,
            "new_rows": new, "duplicate_rows": duplicates, "missed_rows": self.written - self.seed.new_rows,
            "new_rows_per_second": round(self.new_rows_per_second, 1),
            "duplicate_rows_per_second": round(duplicates / self.seconds, 1),
            "query_rows_per_second": _round(self.seed.query_rows_per_second, 1),
            "ours_new_rows_per_second": round(self.ours_new_rows_per_second, 1),
            "ours_duplicate_rows": self.ours.duplicate_rows, "ours_missed_rows": self.written - self.ours.new_rows,
        }


class _Refresher:
    """Calls `fetch` every 250 ms on its own thread, noting per query when it started and what was new in it."""

    def __init__(self, name: str, fetch: Callable[[], pa.Table], seen: set[tuple[str, int]]) -> None:
        self.fetch = fetch
        self.seen = seen
        self.queries: list[tuple[float, float, int, int, int]] = []  # started, seconds, rows, new, duplicates
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            rows = self.fetch()
            seconds = time.perf_counter() - started
            keys = _keys(rows)
            fresh = keys - self.seen
            self.seen.update(fresh)
            self.queries.append((started, seconds, rows.num_rows, len(fresh), len(keys) - len(fresh)))
            self.stop.wait(max(0.0, SEED_REFRESH_SECONDS - (time.perf_counter() - started)))

    def within(self, start: float, end: float) -> tuple[int, int, int]:
        """Queries started in [start, end], and the new and duplicate rows they returned."""
        inside = [q for q in self.queries if start <= q[0] <= end]
        return len(inside), sum(q[3] for q in inside), sum(q[4] for q in inside)

    @property
    def new_rows(self) -> int:
        return sum(q[3] for q in self.queries)

    @property
    def duplicate_rows(self) -> int:
        return sum(q[4] for q in self.queries)

    @property
    def query_rows_per_second(self) -> float | None:
        """Rows (new or not) the store hands over per second spent querying."""
        seconds = sum(q[1] for q in self.queries)
        return sum(q[2] for q in self.queries) / seconds if seconds else None


@dataclass
class BenchReport:
    """Everything one bench run measured; `as_dict` is the documented JSON (schema `taosprsp.bench/1`)."""

    config: Config
    kind: str
    quick: bool
    store_target: str = ""
    store_version: str = ""
    started_at: str = ""
    seconds: float = 0.0
    results: list[StageResult] = field(default_factory=list)
    latency: list[LatencyResult] = field(default_factory=list)
    baseline_generate: Figures | None = None
    baseline_feed: Figures | None = None
    refresh: list[RefreshResult] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)

    def stage(self, name: str) -> StageResult | None:
        return next((r for r in self.results if r.name == name), None)

    def baseline_for(self, name: str) -> float | None:
        """The baseline rows/s a stage is compared with (see the module docstring)."""
        if name == "generate" and self.baseline_generate:
            return self.baseline_generate.median
        if name == "feed" and self.baseline_feed:
            return self.baseline_feed.median
        if name == "read" and self.refresh:
            return SEED_REFRESH_CEILING
        return None

    @property
    def ratios(self) -> dict[str, float | None]:
        ratios: dict[str, float | None] = {}
        for name in ("generate", "feed", "read"):
            ours, theirs = self.stage(name), self.baseline_for(name)
            ratios[name] = _round(ours.median / theirs, 2) if ours and theirs else None
        top = max(self.refresh, key=lambda r: r.rate, default=None)
        ratios["refresh"] = _round(top.ours_new_rows_per_second / top.new_rows_per_second, 2) \
            if top and top.new_rows_per_second else None
        return ratios

    def as_dict(self) -> dict[str, Any]:
        dataset = self.config.dataset
        ratios = self.ratios
        results = []
        for r in self.results:
            baseline = self.baseline_for(r.name)
            results.append({
                "stage": r.stage, "name": r.name, "batch": r.batch, "rows": r.rows, "repeats": len(r.figures.samples),
                "rows_per_second": r.figures.as_dict(),
                "baseline_rows_per_second": _round(baseline, 1), "ratio": ratios.get(r.name),
            })
        baseline: dict[str, Any] = {"refresh": [r.as_dict() for r in self.refresh]}
        for name, figures, method in (
            ("generate", self.baseline_generate, f"Python loop of row dicts, random.* per field, {SEED_BATCH_ROWS} rows a call"),
            ("feed", self.baseline_feed, f"table.update(list of {SEED_FEED_ROWS} row dicts), table limit={SEED_TABLE_LIMIT}"),
        ):
            if figures:
                baseline[name] = {"method": method, "rows": self.config.bench.rows, "repeats": len(figures.samples),
                                  "rows_per_second": figures.as_dict()}
        return {
            "schema": SCHEMA, "started_at": self.started_at, "seconds": round(self.seconds, 2), "quick": self.quick,
            "store": {"kind": self.kind, "target": self.store_target, "version": self.store_version},
            "dataset": dataset.name, "tables": dataset.tables,
            "results": results, "latency": [r.as_dict() for r in self.latency],
            "baseline": baseline, "ratios": ratios, "versions": self.versions, "machine": machine(),
            "config": as_dict(self.config, masked=True),
        }


def _round(value: float | None, digits: int) -> float | None:
    if value is None or value != value:  # NaN: nothing was measured
        return None
    return round(value, digits)


# --- the run ------------------------------------------------------------------------------------------


def stage_names(config: Config) -> list[str]:
    """The throughput figures a run produces, by the names `--fail-under` takes."""
    return ["generate", *(f"ingest-{b}" for b in config.bench.batch_sizes), "read", "feed"]


def feed_modes(kind: str) -> list[str]:
    """The feed modes a store has: TDengine pushes (TMQ) and can be polled; the embedded store is polled."""
    return ["poll", "tmq"] if kind == "tdengine" else ["poll"]


def quick_config(config: Config) -> Config:
    """The config of `--quick`: fewer rows, one repeat, 2 s of latency at 1,000 rows/s."""
    return config.replace(bench={**QUICK, "rows": min(config.bench.rows, QUICK["rows"])})


def run_bench(config: Config, kind: str, quick: bool = False, on_step: StepCallback | None = None) -> BenchReport:
    """Measure every stage on a fresh store of `kind` (`embedded` or `tdengine`), then remove that store."""
    if quick:
        config = quick_config(config)
    if not config.bench.batch_sizes or min(config.bench.batch_sizes) <= 0:
        raise TaosprspError(f"bench.batch_sizes must be positive numbers, got {config.bench.batch_sizes}", ExitCode.CONFIG)
    if not config.bench.latency_rates or min(config.bench.latency_rates) <= 0 or config.bench.latency_seconds <= 0:
        raise TaosprspError("bench.latency_rates and bench.latency_seconds must be positive", ExitCode.CONFIG)
    started = time.perf_counter()
    with _scratch_store(config, kind) as scratch:
        report = BenchReport(scratch, kind, quick, started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        _Run(report, on_step).run()
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _scratch_store(config: Config, kind: str) -> Iterator[Config]:
    """The config of a fresh store of `kind`, removed on exit."""
    if kind == "embedded":
        workdir = Path(tempfile.mkdtemp(prefix="taosprsp-bench-"))
        try:
            yield config.replace(store={"kind": kind, "path": str(workdir / "bench.sqlite")})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    suffix = uuid.uuid4().hex[:8]
    scratch = config.replace(store={"kind": kind}, database={"name": f"taosprsp_bench_{suffix}"})
    try:
        yield scratch
    except BaseException:
        with suppress(TaosprspError):  # the error in hand says more than a failed clean-up
            _drop_tdengine(scratch)
        raise
    _drop_tdengine(scratch)


def _drop_tdengine(config: Config) -> None:
    with open_store(config, "tdengine") as store:
        store.drop(get_dataset(config.dataset.name))


class _Run:
    """One bench run on a scratch store: the measurements in pipeline order, then the baseline."""

    def __init__(self, report: BenchReport, on_step: StepCallback | None) -> None:
        self.report = report
        self.config = report.config
        self.kind = report.kind
        self.settings = self.config.bench
        self.dataset = get_dataset(self.config.dataset.name)
        self.tables = self.config.dataset.tables
        self.precision = self.config.database.precision
        self.chunk = max(self.settings.batch_sizes)
        self.on_step = on_step
        self.done = 0
        repeats = self.settings.repeats
        rates, modes = len(self.settings.latency_rates), len(feed_modes(self.kind))
        self.total = repeats * (len(self.settings.batch_sizes) + 5) + rates * (1 + modes)

    def step(self, label: str) -> None:
        if self.on_step:
            self.on_step(label, self.done, self.total)
        self.done += 1

    def run(self) -> None:
        report = self.report
        report.versions = versions(None)
        with open_store(self.config, self.kind) as store:
            store.ensure_schema(self.dataset, self.tables, drop=True)
            status = store.status(self.dataset)
            report.store_target, report.store_version = store.describe(), status.version
            if self.kind == "tdengine":
                report.versions = versions(status.version)
            clock = self._bulk_clock()
            report.results.append(self._generate())
            for batch in self.settings.batch_sizes:
                report.results.append(self._ingest(store, clock, batch))
            read, rows = self._read(store, clock)
            report.results.append(read)
            report.results.append(self._feed(rows))
            report.baseline_generate = self._baseline_generate()
            report.baseline_feed = self._baseline_feed(rows)
        for rate in self.settings.latency_rates:
            self.step(f"seed refresh vs ours at {rate:,} rows/s")
            report.refresh.append(self._refresh(rate))
        for mode in feed_modes(self.kind):
            for rate in self.settings.latency_rates:
                self.step(f"latency, {mode} feed, {rate:,} rows/s")
                report.latency.append(self._latency(mode, rate))
        self.step("done")

    def _repeat(self, label: str, measure: Callable[[int], float]) -> Figures:
        samples = []
        for repeat in range(self.settings.repeats):
            self.step(f"{label} ({repeat + 1}/{self.settings.repeats})")
            samples.append(measure(repeat))
        return Figures(tuple(samples))

    def _bulk_clock(self) -> Clock:
        """A clock for the bulk stages, far enough in the past that live rows written later come after."""
        ticks = TICKS_PER_SECOND[self.precision]
        bulk_rows = self.settings.rows * (self.settings.repeats * len(self.settings.batch_sizes) + 1)
        span = max(86_400 * ticks, 2 * (bulk_rows // self.tables + 1))
        start = time.time_ns() // (1_000_000_000 // ticks) - span
        return Clock(self.precision, np.full(self.tables, start, dtype=np.int64))

    def _batches(self, clock: Clock, rows: int, batch: int, seed: int) -> list[pa.Table]:
        generator = Generator(self.dataset, self.tables, self.precision, seed)
        batches = []
        for start in range(0, rows, batch):
            counts = spread(min(batch, rows - start), self.tables)
            # now=0: each subtable's rows go on the ticks right after its last one, all in the past
            batches.append(generator.batch(counts, clock.live(counts, now=0)))
        return batches

    def _generate(self) -> StageResult:
        rows = self.settings.rows

        def measure(repeat: int) -> float:
            generator = Generator(self.dataset, self.tables, self.precision, repeat)
            clock = Clock(self.precision, np.zeros(self.tables, dtype=np.int64))
            started = time.perf_counter()
            for start in range(0, rows, self.chunk):
                counts = spread(min(self.chunk, rows - start), self.tables)
                generator.batch(counts, clock.live(counts))
            return rows / (time.perf_counter() - started)

        return StageResult("generate", rows, self._repeat("generate", measure), self.chunk)

    def _ingest(self, store: Store, clock: Clock, batch: int) -> StageResult:
        rows = self.settings.rows

        def measure(repeat: int) -> float:
            batches = self._batches(clock, rows, batch, repeat)
            started = time.perf_counter()
            for table in batches:
                store.write(self.dataset, table)
            return rows / (time.perf_counter() - started)

        return StageResult("ingest", rows, self._repeat(f"ingest, {batch:,} rows a write", measure), batch)

    def _read(self, store: Store, clock: Clock) -> tuple[StageResult, pa.Table]:
        """Reads of the newest `rows` rows after a watermark; also returns those rows for the feed stage."""
        # a mark for every subtable at its newest bulk row, so the read covers exactly the rows written next
        marks = {name: int(ts) for name, ts in zip(self.dataset.subtable_names(self.tables), clock.last)}
        watermark = Watermark(per_subtable=marks)
        for table in self._batches(clock, self.settings.rows, self.chunk, seed=-1):
            store.write(self.dataset, table)
        found: list[pa.Table] = []

        def measure(repeat: int) -> float:
            started = time.perf_counter()
            rows = store.read_after(self.dataset, watermark)
            seconds = time.perf_counter() - started
            found[:] = [rows]
            return rows.num_rows / seconds

        figures = self._repeat("read into Arrow", measure)
        return StageResult("read", found[0].num_rows, figures), found[0]

    def _feed(self, rows: pa.Table) -> StageResult:
        import perspective

        chunks = [rows.slice(start, self.chunk) for start in range(0, rows.num_rows, self.chunk)]

        def measure(repeat: int) -> float:
            client = perspective.Server().new_local_client()
            window = client.table(window_schema(self.dataset), index=RING_COLUMN)
            latest = client.table(self.dataset.perspective_schema(), index=SUBTABLE_COLUMN)
            feed = Feed(self.dataset, self.precision, window, latest, "bench", self.config.server.limit)
            started = time.perf_counter()
            for chunk in chunks:
                feed.apply(chunk)
            seconds = time.perf_counter() - started
            window.delete()
            latest.delete()
            return rows.num_rows / seconds

        return StageResult("feed", rows.num_rows, self._repeat("feed into Perspective", measure), self.chunk)

    def _baseline_generate(self) -> Figures:
        rows = self.settings.rows
        generate = _SEED_GENERATORS[self.dataset.name]

        def measure(repeat: int) -> float:
            started = time.perf_counter()
            for start in range(0, rows, SEED_BATCH_ROWS):
                generate(min(SEED_BATCH_ROWS, rows - start))
            return rows / (time.perf_counter() - started)

        return self._repeat("baseline: generate row dicts", measure)

    def _baseline_feed(self, rows: pa.Table) -> Figures:
        import perspective

        records = seed_records(self.dataset, rows, self.precision)

        def measure(repeat: int) -> float:
            table = perspective.Server().new_local_client().table(self.dataset.perspective_schema(), limit=SEED_TABLE_LIMIT)
            started = time.perf_counter()
            for start in range(0, len(records), SEED_FEED_ROWS):
                table.update(records[start:start + SEED_FEED_ROWS])
            seconds = time.perf_counter() - started
            table.delete()
            return len(records) / seconds

        return self._repeat("baseline: update row dicts", measure)

    def _produce_options(self, rate: int, seconds: float) -> ProduceOptions:
        # a hundredth of a second's rows a write: writes land at every phase of the poll interval, where
        # produce's default (a tenth of a second, the default poll interval) locks onto one phase
        batch = max(1, round(rate / WRITES_PER_SECOND))
        return ProduceOptions(tables=self.tables, rate=float(rate), batch=batch, duration=seconds)

    def _refresh(self, rate: int) -> RefreshResult:
        seconds = min(self.settings.latency_seconds, REFRESH_MAX_SECONDS)
        with ExitStack() as stores:
            seed_store, our_store, writer = (stores.enter_context(open_store(self.config, self.kind)) for _ in range(3))
            seed = _Refresher("seed-refresh", lambda: seed_store.read_latest(self.dataset, SEED_REFRESH_LIMIT),
                              _keys(seed_store.read_latest(self.dataset, SEED_REFRESH_LIMIT)))
            # as in the read stage, a floor no lower than the marks (the default floor reads the whole table)
            last = our_store.last_timestamps(self.dataset)
            watermark = Watermark(per_subtable=last, floor=min(last.values(), default=Watermark().floor))

            def read_new() -> pa.Table:
                rows = our_store.read_after(self.dataset, watermark)
                watermark.advance(rows)
                return rows

            ours = _Refresher("our-refresh", read_new, set())
            for reader in (seed, ours):
                reader.thread.start()
            stats = produce(writer, self.dataset, self.config.stable, self.precision, self._produce_options(rate, seconds))
            ended = time.perf_counter()
            # one more round each, as readers left running would do, so the last writes can still arrive
            time.sleep(SEED_REFRESH_SECONDS * 1.5)
            for reader in (seed, ours):
                reader.stop.set()
                reader.thread.join(timeout=30)
        return RefreshResult(rate, stats.seconds, stats.rows_written, seed, ours, (ended - stats.seconds, ended))

    def _latency(self, mode: str, rate: int) -> LatencyResult:
        from taosprsp.serve import LiveServer

        config = self.config.replace(server={"host": "127.0.0.1", "port": 0, "feed": mode})
        server = LiveServer(config, kind=self.kind).start()
        watcher = _RowWatcher(server.websocket_url, config.perspective_table)
        try:
            watcher.start()
            with open_store(config, self.kind) as store:
                timed = _WriteTimes(store)
                stats = produce(timed, self.dataset, config.stable, self.precision,  # type: ignore[arg-type]
                                self._produce_options(rate, self.settings.latency_seconds))
            interval = parse_duration(config.server.interval)
            deadline = time.perf_counter() + max(DRAIN_SECONDS, 20 * interval)
            while watcher.rows < stats.rows_written and time.perf_counter() < deadline:
                time.sleep(0.02)
        finally:
            watcher.stop()
            server.stop()
        samples = _match(timed.written(self.precision), watcher.arrivals())
        return LatencyResult(mode, rate, stats.seconds, stats.rows_written, samples)


def _keys(rows: pa.Table) -> set[tuple[str, int]]:
    return set(zip(rows[SUBTABLE_COLUMN].to_pylist(), rows["ts"].to_pylist()))


def _to_ms(ts: pa.ChunkedArray | pa.Array, precision: str) -> pa.Array:
    divisor = TICKS_PER_SECOND[precision] // 1_000
    values = np.asarray(ts.to_numpy(), dtype=np.int64)
    return pa.array(values // divisor if divisor > 1 else values, pa.int64())


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

    def written(self, precision: str) -> pa.Table:
        """`tbname`, `ts` (ms) and `t_write` (perf_counter seconds) of every row written."""
        parts = [
            pa.table({SUBTABLE_COLUMN: keys[SUBTABLE_COLUMN], "ts": _to_ms(keys["ts"], precision),
                      "t_write": pa.array(np.full(keys.num_rows, at))})
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
        from taosprsp.client import connect

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
            parts.append(pa.table({
                SUBTABLE_COLUMN: rows[SUBTABLE_COLUMN].cast(pa.string()),
                "ts": rows["ts"].cast(pa.int64()) if pa.types.is_timestamp(rows["ts"].type) else rows["ts"],
                "t_seen": pa.array(np.full(rows.num_rows, at)),
            }))
        return pa.concat_tables(parts).combine_chunks() if parts else _empty_times("t_seen")


def _empty_times(column: str) -> pa.Table:
    return pa.table({SUBTABLE_COLUMN: pa.array([], pa.string()), "ts": pa.array([], pa.int64()), column: pa.array([], pa.float64())})


def _match(written: pa.Table, seen: pa.Table) -> np.ndarray:
    """Milliseconds from write-returned to first seen, for every written row that was seen."""
    if seen.num_rows == 0 or written.num_rows == 0:
        return np.array([], dtype=np.float64)
    first = seen.group_by([SUBTABLE_COLUMN, "ts"]).aggregate([("t_seen", "min")])
    joined = written.join(first, keys=[SUBTABLE_COLUMN, "ts"], join_type="inner")
    return (pc.subtract(joined["t_seen_min"], joined["t_write"]).to_numpy() * 1000.0).astype(np.float64)


# --- the baseline: the seeds' own code, kept as they wrote it -------------------------------------------


def _seed_meters(count: int) -> list[dict[str, Any]]:
    """`gen_data` of the TDengine docs' Perspective integration (power meters)."""
    modifier = random.random() * random.randint(1, 50)
    return [{
        "ts": dt.datetime.now(),
        "current": random.uniform(0, 75) + random.randint(0, 9) * modifier,
        "voltage": random.randint(200, 225),
        "phase": random.uniform(0, 105) + random.randint(1, 3) * modifier,
    } for _ in range(count)]


_TICKERS = ["AAPL.N", "AMZN.N", "QQQ.N", "NVDA.N", "TSLA.N", "FB.N", "MSFT.N", "TLT.N", "XIV.N", "YY.N", "CSCO.N", "GOOGL.N", "PCLN.N"]
_CLIENTS = ["Homer", "Marge", "Bart", "Lisa", "Maggie", "Moe", "Lenny", "Carl", "Krusty"]


def _seed_stocks(count: int) -> list[dict[str, Any]]:
    """`gen_data` of the Python TDengine-Perspective demo (stock trades)."""
    modifier = random.random() * random.randint(1, 50)
    return [{
        "timestamp": dt.datetime.now(tz=dt.timezone.utc),
        "ticker": random.choice(_TICKERS),
        "client": random.choice(_CLIENTS),
        "open": random.uniform(0, 75) + random.randint(0, 9) * modifier,
        "high": random.uniform(0, 105) + random.randint(1, 3) * modifier,
        "low": random.uniform(0, 85) + random.randint(1, 3) * modifier,
        "close": random.uniform(0, 90) + random.randint(1, 3) * modifier,
        "volume": random.randint(10_000, 100_000),
        "date": dt.date.today(),
    } for _ in range(count)]


_SEED_GENERATORS: dict[str, Callable[[int], list[dict[str, Any]]]] = {"meters": _seed_meters, "stocks": _seed_stocks}


def seed_records(dataset: Dataset, rows: pa.Table, precision: str) -> list[dict[str, Any]]:
    """Store-layout rows as the seeds hand them to Perspective: one dict per row, times as epoch ms."""
    divisor = TICKS_PER_SECOND[precision] // 1_000
    columns = {name: rows[name] for name in rows.column_names}
    for f in dataset.fields:
        if f.is_time:
            columns[f.name] = pc.divide(columns[f.name], divisor) if divisor > 1 else columns[f.name]
    return pa.table(columns).to_pylist()


# --- environment --------------------------------------------------------------------------------------


def versions(tdengine_server: str | None) -> dict[str, str | None]:
    import perspective
    import tornado

    def installed(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "taosprsp": __version__, "python": platform.python_version(), "numpy": np.__version__,
        "pyarrow": pa.__version__, "perspective": getattr(perspective, "__version__", None) or installed("perspective-python"),
        "taosws": installed("taos-ws-py"), "tornado": tornado.version, "tdengine_server": tdengine_server,
    }


def machine() -> dict[str, Any]:
    try:
        memory: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "memory_bytes": memory}


# --- gates and outputs --------------------------------------------------------------------------------


def parse_thresholds(specs: list[str], config: Config) -> dict[str, float]:
    """`STAGE=ROWS_PER_S` options as a mapping; an unknown stage or a bad number is a usage error."""
    valid = stage_names(config)
    thresholds: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep:
            raise TaosprspError(f"--fail-under {spec!r}: expected STAGE=ROWS_PER_S, e.g. ingest-1000=500000", ExitCode.USAGE)
        if name not in valid:
            raise TaosprspError(f"--fail-under: unknown stage {name!r}; valid stages: {', '.join(valid)}", ExitCode.USAGE)
        try:
            thresholds[name] = float(value)
        except ValueError:
            raise TaosprspError(f"--fail-under {spec!r}: {value!r} is not a number of rows/s", ExitCode.USAGE) from None
    return thresholds


def below_thresholds(report: BenchReport, thresholds: dict[str, float]) -> list[str]:
    """One sentence per stage whose median fell under its threshold."""
    failures = []
    for name, threshold in thresholds.items():
        result = report.stage(name)
        if result is not None and result.median < threshold:
            failures.append(f"{name} ran at {result.median:,.0f} rows/s (median), under --fail-under {name}={threshold:g}")
    return failures


def check_output_path(path: Path, option: str) -> None:
    """Fail before measuring, not after, when an output file cannot be written."""
    if not path.parent.is_dir():
        raise TaosprspError(f"{option} {path}: the directory {path.parent} does not exist", ExitCode.USAGE)


def write_json(report: BenchReport, path: Path) -> None:
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")


def write_plot(report: BenchReport, path: Path) -> None:
    """Throughput per stage (bars, log scale, the seeds' figures beside ours) and latency CDFs per feed and rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, cdf) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.3, 1]})
    names = [r.name for r in report.results]
    positions = np.arange(len(names))
    medians = np.array([r.median for r in report.results])
    lows = medians - np.array([min(r.figures.samples) for r in report.results])
    highs = np.array([max(r.figures.samples) for r in report.results]) - medians
    bars.barh(positions + 0.2, medians, height=0.4, xerr=[lows, highs], color="#2a9d8f", label="taosprsp (median, min-max)")
    compared = [(p, b) for p, b in zip(positions, (report.baseline_for(n) for n in names)) if b]
    bars.barh([p - 0.2 for p, _ in compared], [b for _, b in compared], height=0.4, color="#e76f51",
              label="the seed demos' way")
    for position, value in zip(positions, medians):
        bars.text(value * 1.08, position + 0.2, f"{value:,.0f}", va="center", fontsize=8)
    for position, value in compared:
        bars.text(value * 1.08, position - 0.2, f"{value:,.0f}", va="center", fontsize=8, color="#9c3d22")
    bars.set_yticks(positions, names)
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_xlabel("rows/s (log scale)")
    bars.set_title("Throughput per stage")
    bars.legend(loc="lower right", fontsize=8)
    bars.grid(axis="x", which="both", alpha=0.3)
    bars.set_xlim(right=medians.max() * 6 if len(medians) else None)
    for result in report.latency:
        samples = np.sort(result.samples_ms)
        if len(samples):
            fraction = np.arange(1, len(samples) + 1) / len(samples)
            cdf.plot(samples, fraction, label=f"{result.feed} @ {result.rate:,} rows/s (p99 {result.percentile(99):.0f} ms)")
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", linewidth=0.5, linestyle=":")
    cdf.set_xlim(left=0)
    cdf.set_xlabel("write returned -> client saw the row (ms)")
    cdf.set_ylabel("fraction of rows")
    cdf.set_title("End-to-end latency (CDF)")
    cdf.legend(loc="lower right", fontsize=8)
    cdf.grid(which="both", alpha=0.3)
    dataset = report.config.dataset
    figure.suptitle(f"taosprsp bench: {report.kind} store, {dataset.name} x {dataset.tables} subtables, "
                    f"{report.config.bench.rows:,} rows, repeats: {report.config.bench.repeats}, {report.started_at}")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


def render(report: BenchReport, console: Any) -> None:
    """The tables a person reads: throughput with the baseline ratio, the refresh comparison, latency."""
    from rich import box
    from rich.table import Table

    def table(title: str, *columns: str) -> Table:
        made = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, column in enumerate(columns):
            made.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
        return made

    dataset = report.config.dataset
    console.print(f"[bold]taosprsp bench[/] on {report.store_target} ({report.store_version}); "
                  f"{dataset.name} x {dataset.tables} subtables; {report.seconds:.0f} s", highlight=False)
    ratios = report.ratios
    throughput = table("Throughput, rows/s (median, min and max of the repeats) and the seeds' way",
                       "stage", "batch", "median", "min", "max", "seed", "ratio")
    for r in report.results:
        baseline = report.baseline_for(r.name)
        ratio = ratios.get(r.name)
        throughput.add_row(
            r.name, f"{r.batch:,}" if r.batch else f"{r.rows:,}", f"{r.median:,.0f}", f"{min(r.figures.samples):,.0f}",
            f"{max(r.figures.samples):,.0f}", f"{baseline:,.0f}" if baseline else "-", f"{ratio:,.1f}x" if ratio else "-",
        )
    console.print(throughput)
    console.print(f"  (read: the seeds' refresh delivers at most {SEED_REFRESH_LIMIT:,} new rows per "
                  f"{SEED_REFRESH_SECONDS * 1000:.0f} ms, whatever the store can do)", style="dim", highlight=False)
    if report.refresh:
        refresh = table(f"Refresh every {SEED_REFRESH_SECONDS * 1000:.0f} ms: the seeds' newest-{SEED_REFRESH_LIMIT:,} "
                        "re-query vs our watermark read", "writes/s", "ours new/s", "seed new/s", "seed dup/s", "seed missed", "ratio")
        for r in report.refresh:
            d = r.as_dict()
            ratio = r.ours_new_rows_per_second / r.new_rows_per_second if r.new_rows_per_second else float("nan")
            refresh.add_row(f"{r.rate:,}", f"{d['ours_new_rows_per_second']:,.0f}", f"{d['new_rows_per_second']:,.0f}",
                            f"{d['duplicate_rows_per_second']:,.0f}", f"{d['missed_rows']:,} of {r.written:,}", f"{ratio:,.1f}x")
        console.print(refresh)
    latency = table("End-to-end latency, ms: write returned -> Perspective client saw the row",
                    "feed", "rows/s", "rows", "p50", "p95", "p99", "max", "unseen")
    for r in report.latency:
        d = r.as_dict()
        figures = ("-" if d[key] is None else f"{d[key]:,.1f}" for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
        latency.add_row(r.feed, f"{r.rate:,}", f"{d['rows']:,}", *figures, f"{d['unseen']:,}")
    console.print(latency)


@contextmanager
def step_progress(show: bool) -> Iterator[StepCallback | None]:
    """A progress bar of the bench's measurements on stderr when `show`; yields the step callback."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taosprsp.progress import stderr

    columns = (TextColumn("bench: {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def update(label: str, done: int, total: int) -> None:
            progress.update(task, description=label, completed=done, total=total)

        yield update
