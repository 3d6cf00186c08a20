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
from taosprsp.bench.latency import CLIENTS, feed_modes, fill_window, measure_latency
from taosprsp.bench.mqtt import measure_mqtt
from taosprsp.bench.report import BenchReport, versions
from taosprsp.bench.stages import Figures, Measure, Setup, Throughput, pipeline
from taosprsp.config import BenchSettings, Config
from taosprsp.datasets import Dataset
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.progress import TaskProgress
from taosprsp.stores import dataset_for, open_store

QUICK = {"rows": 20_000, "repeats": 1, "latency_rates": [1_000], "latency_seconds": 2.0}

T = TypeVar("T")


def quick_config(config: Config) -> Config:
    """The config of `--quick`: fewer rows, one repeat, 2 s of latency at 1,000 rows/s."""
    return config.replace(bench={**QUICK, "rows": min(config.bench.rows, QUICK["rows"])})


def run_bench(
    config: Config, kind: str, quick: bool = False, show_progress: bool = False, dataset: Dataset | None = None
) -> BenchReport:
    """Measure every stage on a fresh store of `kind` (`embedded` or `tdengine`), then remove that store.

    The rows have the schema of `dataset` (see `served_dataset`; default: the configured declaration).
    `show_progress` draws a bar of the measurements on stderr.
    """
    dataset = dataset or config.declared_dataset
    if quick:
        config = quick_config(config)
    _check(config.bench)
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    columns = (TextColumn("bench: {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    report = BenchReport(config, kind, quick, started_at=started_at)
    try:
        with (
            _scratch_store(config, kind, dataset) as scratch,
            TaskProgress(*columns, show=show_progress, description="starting") as progress,
        ):
            report.config = scratch
            _measure(Setup.of(scratch, kind, dataset), report, progress)
    except ScratchLeftBehind as exc:  # everything was measured: keep the figures, say what is left
        report.leftover = str(exc)
    report.seconds = time.perf_counter() - started
    return report


class ScratchLeftBehind(TaosprspError):
    """A run measured everything but could not remove its scratch database."""


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
    """The throughput stages in pipeline order and the baseline's on one store, then refresh, latency and mqtt."""
    settings = setup.settings
    stages = pipeline(settings, setup.kind)
    refresh_rates = settings.latency_rates
    latency_runs = [
        (mode, rate, client) for mode in feed_modes(setup.kind) for rate in settings.latency_rates for client in CLIENTS
    ]
    repeated = len(stages) + len(BASELINES)
    steps = _Steps(progress, total=settings.repeats * repeated + len(refresh_rates) + len(latency_runs) + 1)
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
    fill_window(setup)  # latency as on a server running a while: its window full
    for mode, rate, client in latency_runs:
        report.latency.append(
            steps.run(
                f"latency, {mode} feed, {rate:,} rows/s, {client} client",
                partial(measure_latency, setup, mode, rate, client),
            )
        )
    report.mqtt = steps.run("mqtt: ingest, publish -> visible", partial(measure_mqtt, setup, report.quick))


def served_dataset(config: Config, kind: str) -> Dataset:
    """The schema of the table the configured store holds (discovered, declared or not), so that a bench
    measures rows like the user's; the configured declaration when the store does not hold it."""
    if kind == "embedded" and not Path(config.store.path).exists():
        return config.declared_dataset
    with open_store(config, kind) as store:
        return dataset_for(store, config)


@contextmanager
def _scratch_store(config: Config, kind: str, dataset: Dataset) -> Iterator[Config]:
    """The config of a fresh store of `kind`, removed on exit."""
    if kind == "embedded":
        workdir = Path(tempfile.mkdtemp(prefix="taosprsp-bench-"))
        try:
            yield config.replace(store={"kind": kind, "path": str(workdir / "bench.sqlite")})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    suffix = uuid.uuid4().hex[:8]
    # one vgroup: a throwaway database should not take more of a small server's few vnodes
    scratch = config.replace(store={"kind": kind}, database={"name": f"taosprsp_bench_{suffix}", "vgroups": 1})
    try:
        yield scratch
    except BaseException:
        with suppress(TaosprspError):  # the error in hand says more than a failed clean-up
            _drop_tdengine(scratch, dataset)
        raise
    try:
        _drop_tdengine(scratch, dataset)
    except TaosprspError as exc:
        raise ScratchLeftBehind(
            f"could not drop the scratch database {scratch.database.name} ({exc}); `taosprsp db purge --yes` removes it"
        ) from exc


def _drop_tdengine(config: Config, dataset: Dataset) -> None:
    with open_store(config, "tdengine") as store:
        store.drop(dataset)
