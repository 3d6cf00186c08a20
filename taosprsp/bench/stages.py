"""The throughput stages, in pipeline order: generate, ingest at every batch size, read, feed.

Each stage is measured `bench.repeats` times on `bench.rows` rows; every repeat gives rows per second.
The stages share one scratch store and follow each other's data: ingest writes after a clock set in the
past, read reads back what it wrote after the ingest rows, and feed pushes what read returned.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import perspective
import pyarrow as pa

from taosprsp.config import BenchSettings, Config
from taosprsp.datasets import TICKS_PER_SECOND, Dataset, Precision, get_dataset
from taosprsp.feed import Feed
from taosprsp.generate import Clock, Generator, spread
from taosprsp.serve import make_tables
from taosprsp.stores import Store, Watermark

StageKind = Literal["generate", "ingest", "read", "feed"]
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
    def of(cls, config: Config, kind: str) -> Setup:
        return cls(config, kind, get_dataset(config.dataset.name))

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
        return f"{self.stage}-{self.batch}" if self.stage == "ingest" else self.stage

    @property
    def label(self) -> str:
        """What the progress display says while the stage runs."""
        if self.stage == "ingest":
            return f"ingest, {self.batch:,} rows a write"
        return {"generate": "generate", "read": "read into Arrow", "feed": "feed into Perspective"}[self.stage]


def pipeline(settings: BenchSettings) -> list[Stage]:
    """The throughput stages a run measures, in order."""
    chunk = max(settings.batch_sizes)
    return [
        Stage("generate", chunk),
        *(Stage("ingest", b) for b in settings.batch_sizes),
        Stage("read", None),
        Stage("feed", chunk),
    ]


def stage_names(config: Config) -> list[str]:
    """The throughput figures a run produces, by the names `--fail-under` takes."""
    return [stage.name for stage in pipeline(config.bench)]


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

    def measure(self, stage: Stage) -> Measure:
        """One repeat of `stage`; first writes what a read stage will read."""
        match stage:
            case Stage(stage="generate"):
                return self._generate
            case Stage(stage="ingest", batch=int(batch)):
                return partial(self._ingest, batch)
            case Stage(stage="read"):
                return self._prepare_read()
            case _:
                return self._feed

    def result(self, stage: Stage, figures: Figures) -> StageResult:
        rows = self.rows.num_rows if stage.stage in ("read", "feed") else self.setup.settings.rows
        return StageResult(stage.stage, stage.batch, rows, figures)

    def _bulk_clock(self) -> Clock:
        """A clock for the bulk stages, far enough in the past that live rows written later come after."""
        setup = self.setup
        ticks = TICKS_PER_SECOND[setup.precision]
        bulk_rows = setup.settings.rows * (setup.settings.repeats * len(setup.settings.batch_sizes) + 1)
        span = max(86_400 * ticks, 2 * (bulk_rows // setup.tables + 1))
        start = time.time_ns() // (1_000_000_000 // ticks) - span
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
        setup, rows = self.setup, self.rows
        chunks = [rows.slice(start, setup.chunk) for start in range(0, rows.num_rows, setup.chunk)]
        window, latest = make_tables(perspective.Server().new_local_client(), setup.dataset)
        feed = Feed(setup.dataset, setup.precision, window, latest, setup.config.server.limit)
        started = time.perf_counter()
        for chunk in chunks:
            feed.apply(chunk)
        seconds = time.perf_counter() - started
        window.delete()
        latest.delete()
        return rows.num_rows / seconds
