"""One bench run: a scratch store of the configured kind, every measurement in order, a progress display."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from taosprsp.bench.baseline import BASELINES, measure_refresh
from taosprsp.bench.latency import feed_modes, measure_latency
from taosprsp.bench.report import BenchReport, versions
from taosprsp.bench.stages import Figures, Measure, Setup, Throughput, pipeline
from taosprsp.config import BenchSettings, Config
from taosprsp.datasets import get_dataset
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.progress import TaskProgress
from taosprsp.stores import open_store

QUICK = {"rows": 20_000, "repeats": 1, "latency_rates": [1_000], "latency_seconds": 2.0}

T = TypeVar("T")


def quick_config(config: Config) -> Config:
    """The config of `--quick`: fewer rows, one repeat, 2 s of latency at 1,000 rows/s."""
    return config.replace(bench={**QUICK, "rows": min(config.bench.rows, QUICK["rows"])})


def run_bench(config: Config, kind: str, quick: bool = False, show_progress: bool = False) -> BenchReport:
    """Measure every stage on a fresh store of `kind` (`embedded` or `tdengine`), then remove that store.

    `show_progress` draws a bar of the measurements on stderr.
    """
    if quick:
        config = quick_config(config)
    _check(config.bench)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    columns = (TextColumn("bench: {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        _scratch_store(config, kind) as scratch,
        TaskProgress(*columns, show=show_progress, description="starting") as progress,
    ):
        report = BenchReport(scratch, kind, quick, started_at=started_at)
        _measure(Setup.of(scratch, kind), report, progress)
    report.seconds = time.perf_counter() - started
    return report


def _check(settings: BenchSettings) -> None:
    if not settings.batch_sizes or min(settings.batch_sizes) <= 0:
        raise TaosprspError(f"bench.batch_sizes must be positive numbers, got {settings.batch_sizes}", ExitCode.CONFIG)
    if not settings.latency_rates or min(settings.latency_rates) <= 0 or settings.latency_seconds <= 0:
        raise TaosprspError("bench.latency_rates and bench.latency_seconds must be positive", ExitCode.CONFIG)


class _Steps:
    """The progress of a run: one step per timed measurement (each repeat of a stage counts one)."""

    def __init__(self, progress: TaskProgress, total: int) -> None:
        self.progress = progress
        progress.update(progress.task_id, total=total)

    def run(self, label: str, measure: Callable[[], T]) -> T:
        self.progress.update(self.progress.task_id, description=label)
        result = measure()
        self.progress.advance(self.progress.task_id)
        return result

    def repeat(self, label: str, measure: Measure, repeats: int) -> Figures:
        return Figures(tuple(self.run(f"{label} ({i + 1}/{repeats})", partial(measure, i)) for i in range(repeats)))


def _measure(setup: Setup, report: BenchReport, progress: TaskProgress) -> None:
    """The throughput stages in pipeline order and the baseline's on one store, then refresh and latency."""
    settings = setup.settings
    stages = pipeline(settings)
    refresh_rates = settings.latency_rates
    latency_runs = [(mode, rate) for mode in feed_modes(setup.kind) for rate in settings.latency_rates]
    repeated = len(stages) + len(BASELINES)
    steps = _Steps(progress, total=settings.repeats * repeated + len(refresh_rates) + len(latency_runs))
    with open_store(setup.config, setup.kind) as store:
        store.ensure_schema(setup.dataset, setup.tables, drop=True)
        status = store.status(setup.dataset)
        report.store_target, report.store_version = store.describe(), status.version
        report.versions = versions(tdengine_server=status.version if setup.kind == "tdengine" else None)
        throughput = Throughput(setup, store)
        for stage in stages:
            figures = steps.repeat(stage.label, throughput.measure(stage), settings.repeats)
            report.results.append(throughput.result(stage, figures))
        for baseline in BASELINES:
            measure = baseline.measure(setup, throughput.rows)
            report.baseline[baseline.stage] = steps.repeat(baseline.label, measure, settings.repeats)
    for rate in refresh_rates:
        report.refresh.append(
            steps.run(f"baseline refresh vs ours at {rate:,} rows/s", partial(measure_refresh, setup, rate))
        )
    for mode, rate in latency_runs:
        report.latency.append(
            steps.run(f"latency, {mode} feed, {rate:,} rows/s", partial(measure_latency, setup, mode, rate))
        )


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
