"""The throughput stages, in pipeline order: generate, ingest at every batch size, read, feed, history.

On TDengine each ingest stage is followed by a bare stmt2 loop at the same batch size: the same rows,
prepared as the Python lists the driver takes before the clock starts, bound and executed. `ingest` over
`bare` is what taosprsp costs on top of the client itself.

Each stage is measured `bench.repeats` times on `bench.rows` rows; every repeat gives rows per second.
The stages share one scratch store and follow each other's data: ingest writes after a clock set in the
past, read reads back what it wrote after the ingest rows, and feed pushes what read returned. history
makes a grouped view of the history table (the mean of the first headline column per group tag), computed
by SQL in the store over every row the stages wrote: rows aggregated per second.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import pyarrow as pa

from taosprsp.batching import UpdateBatcher
from taosprsp.config import BenchSettings, Config
from taosprsp.datasets import TICKS_PER_SECOND, Dataset, Precision, now_ticks
from taosprsp.derived import DerivedTables, derived_specs
from taosprsp.feed import Feed
from taosprsp.generate import Clock, Generator, spread
from taosprsp.history import HistoryBackend, HistorySource
from taosprsp.serve import make_tables
from taosprsp.stores import Store, TDengineStore, Watermark, open_store

StageKind = Literal["generate", "ingest", "bare", "read", "feed", "history"]
Measure = Callable[[int], float]
"""One repeat of a measurement (the repeat's number in, rows per second out)."""


def rounded(value: float | None, digits: int) -> float | None:
    """`value` rounded, or None when nothing was measured (None or NaN)."""
    if value is None or value != value:
        return None
    return round(value, digits)


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
class Setup:
    """What every measurement of one run works with: the scratch store's config, its kind and the dataset."""

    config: Config
    kind: str
    dataset: Dataset

    @classmethod
    def of(cls, config: Config, kind: str, dataset: Dataset | None = None) -> Setup:
        """The setup of a run on `config`'s store: `dataset`, or the configured declaration."""
        return cls(config, kind, dataset or config.declared_dataset)

    @property
    def settings(self) -> BenchSettings:
        return self.config.bench

    @property
    def tables(self) -> int:
        return self.config.dataset.tables

    @property
    def precision(self) -> Precision:
        return self.config.database.precision

    @property
    def chunk(self) -> int:
        """Rows per call of the stages that do not vary it (generate, feed): the largest batch size."""
        return max(self.settings.batch_sizes)


@dataclass(frozen=True)
class Stage:
    """One throughput stage: `stage` names the kind, `name` the figure (`ingest-1000`) a gate refers to."""

    stage: StageKind
    batch: int | None

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.batch}" if self.stage in ("ingest", "bare") else self.stage

    @property
    def writes(self) -> bool:
        """Whether the stage writes its rows into the scratch store."""
        return self.stage in ("ingest", "bare")

    @property
    def label(self) -> str:
        """What the progress display says while the stage runs."""
        if self.stage == "ingest":
            return f"ingest, {self.batch:,} rows a write"
        if self.stage == "bare":
            return f"bare stmt2 loop, {self.batch:,} rows a bind"
        return {
            "generate": "generate",
            "read": "read into Arrow",
            "feed": "feed into Perspective (window, latest and derived tables)",
            "history": "history: grouped view in SQL",
        }[self.stage]


def pipeline(settings: BenchSettings, kind: str) -> list[Stage]:
    """The throughput stages a run on a store of `kind` measures, in order."""
    chunk = max(settings.batch_sizes)
    bare = kind == "tdengine"
    return [
        Stage("generate", chunk),
        *(
            stage
            for b in settings.batch_sizes
            for stage in (Stage("ingest", b), *((Stage("bare", b),) if bare else ()))
        ),
        Stage("read", None),
        Stage("feed", chunk),
        Stage("history", None),
    ]


def stage_names(config: Config, kind: str) -> list[str]:
    """The throughput figures a run on a store of `kind` produces, by the names `--fail-under` takes."""
    return [stage.name for stage in pipeline(config.bench, kind)]


@dataclass(frozen=True)
class StageResult(Stage):
    """The figures of one throughput stage."""

    rows: int
    figures: Figures

    @property
    def median(self) -> float:
        return self.figures.median


def epoch_ms(ts: pa.ChunkedArray | pa.Array, precision: Precision) -> pa.Array:
    """Epoch integers in `precision` as epoch milliseconds."""
    divisor = TICKS_PER_SECOND[precision] // 1_000
    values = np.asarray(ts.to_numpy(), dtype=np.int64)
    return pa.array(values // divisor if divisor > 1 else values, pa.int64())


class Throughput:
    """The pipeline's stages on one open scratch store; measure them in `pipeline` order."""

    def __init__(self, setup: Setup, store: Store) -> None:
        self.setup = setup
        self.store = store
        self.clock = self._bulk_clock()
        self.rows = pa.table({})
        """What the read stage returned: the feed stage's (and the baseline feed's) input."""
        self.stored = 0
        """The rows the store held when the history stage aggregated them."""

    def measure(self, stage: Stage) -> Measure:
        """One repeat of `stage`; first writes what a read stage will read."""
        match stage:
            case Stage(stage="generate"):
                return self._generate
            case Stage(stage="ingest", batch=int(batch)):
                return partial(self._ingest, batch)
            case Stage(stage="bare", batch=int(batch)):
                return partial(self._bare, batch)
            case Stage(stage="read"):
                return self._prepare_read()
            case Stage(stage="history"):
                return self._history
            case _:
                return self._feed

    def result(self, stage: Stage, figures: Figures) -> StageResult:
        rows = self.rows.num_rows if stage.stage in ("read", "feed") else self.setup.settings.rows
        if stage.stage == "history":
            rows = self.stored
        return StageResult(stage.stage, stage.batch, rows, figures)

    def _bulk_clock(self) -> Clock:
        """A clock for the bulk stages, far enough in the past that live rows written later come after."""
        setup = self.setup
        ticks = TICKS_PER_SECOND[setup.precision]
        writing = sum(stage.writes for stage in pipeline(setup.settings, setup.kind))
        bulk_rows = setup.settings.rows * (setup.settings.repeats * writing + 1)
        span = max(86_400 * ticks, 2 * (bulk_rows // setup.tables + 1))
        start = now_ticks(setup.precision) - span
        return Clock(setup.precision, np.full(setup.tables, start, dtype=np.int64))

    def _batches(self, rows: int, batch: int, seed: int) -> list[pa.Table]:
        generator = Generator(self.setup.dataset, self.setup.tables, self.setup.precision, seed)
        batches = []
        for start in range(0, rows, batch):
            counts = spread(min(batch, rows - start), self.setup.tables)
            # now=0: each subtable's rows go on the ticks right after its last one, all in the past
            batches.append(generator.batch(counts, self.clock.live(counts, now=0)))
        return batches

    def _generate(self, repeat: int) -> float:
        setup, rows = self.setup, self.setup.settings.rows
        generator = Generator(setup.dataset, setup.tables, setup.precision, repeat)
        clock = Clock(setup.precision, np.zeros(setup.tables, dtype=np.int64))
        started = time.perf_counter()
        for start in range(0, rows, setup.chunk):
            counts = spread(min(setup.chunk, rows - start), setup.tables)
            generator.batch(counts, clock.live(counts))
        return rows / (time.perf_counter() - started)

    def _ingest(self, batch: int, repeat: int) -> float:
        rows = self.setup.settings.rows
        batches = self._batches(rows, batch, repeat)  # before the clock starts: only the writes are timed
        started = time.perf_counter()
        for table in batches:
            self.store.write(self.setup.dataset, table)
        return rows / (time.perf_counter() - started)

    def _bare(self, batch: int, repeat: int) -> float:
        """The same rows as `_ingest`'s, as the driver's Python lists before the clock starts: bind + execute."""
        store, dataset = self.store, self.setup.dataset
        assert isinstance(store, TDengineStore), "the pipeline has bare stages on TDengine only"
        ready = [store.as_lists(dataset, table) for table in self._batches(self.setup.settings.rows, batch, repeat)]
        started = time.perf_counter()
        for calls in ready:
            store.write_lists(dataset, calls)
        return self.setup.settings.rows / (time.perf_counter() - started)

    def _prepare_read(self) -> Measure:
        """Writes `rows` rows after the ingested ones; the read returns exactly those."""
        dataset = self.setup.dataset
        # a mark for every subtable at its newest ingested row
        marks = {
            name: int(ts) for name, ts in zip(dataset.subtable_names(self.setup.tables), self.clock.last, strict=True)
        }
        watermark = Watermark(per_subtable=marks)
        for table in self._batches(self.setup.settings.rows, self.setup.chunk, seed=-1):
            self.store.write(dataset, table)

        def read(repeat: int) -> float:
            started = time.perf_counter()
            rows = self.store.read_after(dataset, watermark)
            seconds = time.perf_counter() - started
            self.rows = rows
            return rows.num_rows / seconds

        return read

    def _feed(self, repeat: int) -> float:
        """What serve's feed does with the rows of a poll: the window, the latest table and the derived tables,
        no view attached."""
        setup, rows = self.setup, self.rows
        chunks = [rows.slice(start, setup.chunk) for start in range(0, rows.num_rows, setup.chunk)]
        batcher = UpdateBatcher()
        client = batcher.new_local_client()
        window, latest = make_tables(client, setup.dataset)
        derived = DerivedTables(setup.dataset, setup.precision, derived_specs(setup.config, setup.dataset))
        derived.host(client)
        feed = Feed(setup.dataset, setup.precision, window, latest, setup.config.server.limit, derived, batcher.batch)
        started = time.perf_counter()
        for chunk in chunks:
            feed.apply(chunk, only_newer=False)  # the read selected them, as `Store.read_new` does
        window.size()  # Perspective defers part of an update to the next request: wait for it
        seconds = time.perf_counter() - started
        for table in (window, latest, *derived.hosted.values()):
            table.delete()
        return rows.num_rows / seconds

    def _history(self, repeat: int) -> float:
        """The history table's grouped view of every stored row, made as a dashboard client makes it."""
        setup = self.setup
        dataset = setup.dataset
        first = dataset.headline[0]
        config = {"columns": [first], "group_by": [dataset.group_tag], "aggregates": {first: "avg"}}
        backend = HistoryBackend(
            HistorySource("bench_history", dataset, setup.precision),
            lambda: open_store(setup.config, setup.kind),
            setup.config.history,
        )
        try:
            self.stored = self.store.count(dataset)
            started = time.perf_counter()
            backend.make_view(config)
            seconds = time.perf_counter() - started
        finally:
            backend.close()
        return self.stored / seconds
