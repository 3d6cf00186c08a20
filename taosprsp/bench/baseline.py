"""The baseline: the seed demos' way of doing each job, measured in the same run as ours.

- generate: a Python loop of row dicts, `random.uniform` and friends per field, 250 rows a call
  (`gen_data` of the demos, kept as they wrote it);
- feed: `table.update(list_of_dicts)` of 1,000 rows a call into the demos' table (dataset schema,
  `limit=1000`), times as epoch milliseconds (Perspective rejects datetime objects there);
- refresh: the newest 1,000 rows re-queried every 250 ms while `produce` writes, beside our incremental
  read (`read_after` + watermark) at the same 250 ms against the same writes.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import perspective
import pyarrow as pa

from taosprsp.bench.latency import produce_options
from taosprsp.bench.stages import Measure, Setup, epoch_ms, rounded
from taosprsp.datasets import STOCKS, SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.produce import produce
from taosprsp.stores import Watermark, open_store

BASELINE_BATCH_ROWS = 250
BASELINE_FEED_ROWS = 1_000
BASELINE_TABLE_LIMIT = 1_000
BASELINE_REFRESH_LIMIT = 1_000
BASELINE_REFRESH_SECONDS = 0.25
BASELINE_REFRESH_CEILING = BASELINE_REFRESH_LIMIT / BASELINE_REFRESH_SECONDS
"""The most new rows per second the baseline's refresh can ever deliver, whatever the store can do."""
REFRESH_MAX_SECONDS = 3.0
TICKERS = STOCKS.field("ticker").pool
CLIENTS = STOCKS.field("client").pool


# --- the demos' own code, kept as they wrote it ---------------------------------------------------------


def baseline_meters(count: int) -> list[dict[str, Any]]:
    """`gen_data` of the TDengine docs' Perspective integration (power meters)."""
    modifier = random.random() * random.randint(1, 50)
    return [
        {
            "ts": dt.datetime.now(),
            "current": random.uniform(0, 75) + random.randint(0, 9) * modifier,
            "voltage": random.randint(200, 225),
            "phase": random.uniform(0, 105) + random.randint(1, 3) * modifier,
        }
        for _ in range(count)
    ]


def baseline_stocks(count: int) -> list[dict[str, Any]]:
    """`gen_data` of the Python TDengine-Perspective demo (stock trades)."""
    modifier = random.random() * random.randint(1, 50)
    return [
        {
            "timestamp": dt.datetime.now(tz=dt.timezone.utc),
            "ticker": random.choice(TICKERS),
            "client": random.choice(CLIENTS),
            "open": random.uniform(0, 75) + random.randint(0, 9) * modifier,
            "high": random.uniform(0, 105) + random.randint(1, 3) * modifier,
            "low": random.uniform(0, 85) + random.randint(1, 3) * modifier,
            "close": random.uniform(0, 90) + random.randint(1, 3) * modifier,
            "volume": random.randint(10_000, 100_000),
            "date": dt.date.today(),
        }
        for _ in range(count)
    ]


BASELINE_GENERATORS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "meters": baseline_meters,
    "stocks": baseline_stocks,
}


def baseline_for(dataset: Dataset) -> Callable[[int], list[dict[str, Any]]]:
    """The demos' generator of `dataset`; for a dataset they never had, one written their way: a row dict
    per row, `random.*` per field."""
    if dataset.name in BASELINE_GENERATORS:
        return BASELINE_GENERATORS[dataset.name]
    fields = [(f.name, f.is_time, f.is_numeric, f.values_pool() if f in dataset.tags else None) for f in dataset.fields]

    def gen_data(count: int) -> list[dict[str, Any]]:
        return [
            {
                name: dt.datetime.now()
                if is_time
                else random.choice(pool)
                if pool
                else random.uniform(0, 100)
                if numeric
                else str(random.randint(0, 9))
                for name, is_time, numeric, pool in fields
            }
            for _ in range(count)
        ]

    return gen_data


def baseline_records(dataset: Dataset, rows: pa.Table, precision: Precision) -> list[dict[str, Any]]:
    """Store-layout rows as the demos hand them to Perspective: one dict per row, times as epoch ms."""
    columns = {name: rows[name] for name in rows.column_names}
    for f in dataset.fields:
        if f.is_time:
            columns[f.name] = epoch_ms(columns[f.name], precision)
    return pa.table(columns).to_pylist()


# --- generate and feed, measured like our throughput stages ---------------------------------------------


def measure_generate(setup: Setup, rows: pa.Table) -> Measure:
    """One repeat of the demos' generator over `bench.rows` rows (it makes its own: `rows` is not used)."""
    count = setup.settings.rows
    generate = baseline_for(setup.dataset)

    def measure(repeat: int) -> float:
        started = time.perf_counter()
        for start in range(0, count, BASELINE_BATCH_ROWS):
            generate(min(BASELINE_BATCH_ROWS, count - start))
        return count / (time.perf_counter() - started)

    return measure


def measure_feed(setup: Setup, rows: pa.Table) -> Measure:
    """One repeat of the demos' `table.update` of row dicts, fed `rows` (what our feed stage took)."""
    records = baseline_records(setup.dataset, rows, setup.precision)

    def measure(repeat: int) -> float:
        client = perspective.Server().new_local_client()
        table = client.table(setup.dataset.perspective_schema(), limit=BASELINE_TABLE_LIMIT)
        started = time.perf_counter()
        for start in range(0, len(records), BASELINE_FEED_ROWS):
            table.update(records[start : start + BASELINE_FEED_ROWS])
        seconds = time.perf_counter() - started
        table.delete()
        return len(records) / seconds

    return measure


@dataclass(frozen=True)
class Baseline:
    """A throughput stage done the demos' way: `stage` names ours it is compared with."""

    stage: str
    label: str
    method: str
    measure: Callable[[Setup, pa.Table], Measure]


BASELINES = (
    Baseline(
        "generate",
        "baseline: generate row dicts",
        f"Python loop of row dicts, random.* per field, {BASELINE_BATCH_ROWS} rows a call",
        measure_generate,
    ),
    Baseline(
        "feed",
        "baseline: update row dicts",
        f"table.update(list of {BASELINE_FEED_ROWS} row dicts), table limit={BASELINE_TABLE_LIMIT}",
        measure_feed,
    ),
)


# --- refresh: the demos' re-query against our incremental read -----------------------------------------


class Refresher:
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
            self.stop.wait(max(0.0, BASELINE_REFRESH_SECONDS - (time.perf_counter() - started)))

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


def _keys(rows: pa.Table) -> set[tuple[str, int]]:
    return set(zip(rows[SUBTABLE_COLUMN].to_pylist(), rows["ts"].to_pylist(), strict=True))


@dataclass(frozen=True)
class RefreshResult:
    """The baseline's re-query of the newest rows against our incremental read, both every 250 ms, same writes.

    Rates count the queries that started while the producer ran; `missed` also counts one query after it.
    """

    rate: int
    seconds: float
    written: int
    baseline: Refresher
    ours: Refresher
    window: tuple[float, float]

    @property
    def new_rows_per_second(self) -> float:
        return self.baseline.within(*self.window)[1] / self.seconds

    @property
    def ours_new_rows_per_second(self) -> float:
        return self.ours.within(*self.window)[1] / self.seconds

    def as_dict(self) -> dict[str, Any]:
        queries, new, duplicates = self.baseline.within(*self.window)
        return {
            "rate": self.rate,
            "interval_ms": round(BASELINE_REFRESH_SECONDS * 1000),
            "limit": BASELINE_REFRESH_LIMIT,
            "seconds": round(self.seconds, 2),
            "written": self.written,
            "queries": queries,
            "new_rows": new,
            "duplicate_rows": duplicates,
            "missed_rows": self.written - self.baseline.new_rows,
            "new_rows_per_second": round(self.new_rows_per_second, 1),
            "duplicate_rows_per_second": round(duplicates / self.seconds, 1),
            "query_rows_per_second": rounded(self.baseline.query_rows_per_second, 1),
            "ours_new_rows_per_second": round(self.ours_new_rows_per_second, 1),
            "ours_duplicate_rows": self.ours.duplicate_rows,
            "ours_missed_rows": self.written - self.ours.new_rows,
        }


def measure_refresh(setup: Setup, rate: int) -> RefreshResult:
    """Both refreshes on their own connections while `produce` writes at `rate` on a third."""
    dataset = setup.dataset
    seconds = min(setup.settings.latency_seconds, REFRESH_MAX_SECONDS)
    with ExitStack() as stores:
        baseline_store, our_store, writer = (
            stores.enter_context(open_store(setup.config, setup.kind)) for _ in range(3)
        )
        baseline = Refresher(
            "baseline-refresh",
            lambda: baseline_store.read_latest(dataset, BASELINE_REFRESH_LIMIT),
            _keys(baseline_store.read_latest(dataset, BASELINE_REFRESH_LIMIT)),
        )
        # as in the read stage, a floor no lower than the marks (the default floor reads the whole table)
        last = our_store.last_timestamps(dataset)
        watermark = Watermark(per_subtable=last, floor=min(last.values(), default=Watermark().floor))

        def read_new() -> pa.Table:
            rows = our_store.read_after(dataset, watermark)
            watermark.advance(rows)
            return rows

        ours = Refresher("our-refresh", read_new, set())
        for reader in (baseline, ours):
            reader.thread.start()
        stats = produce(writer, dataset, setup.config.stable, setup.precision, produce_options(setup, rate, seconds))
        ended = time.perf_counter()
        # one more round each, as readers left running would do, so the last writes can still arrive
        time.sleep(BASELINE_REFRESH_SECONDS * 1.5)
        for reader in (baseline, ours):
            reader.stop.set()
            reader.thread.join(timeout=30)
    return RefreshResult(rate, stats.seconds, stats.rows_written, baseline, ours, (ended - stats.seconds, ended))
