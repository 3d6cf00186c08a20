"""What one run measured, and its outputs: the JSON document, the tables a person reads, a plot, the CI gate.

Over 400 lines: the JSON document, the printed tables and the plot read the same `BenchReport` fields in the
same order; kept together, a field added to the report is added to its three outputs in one place."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import perspective
import pyarrow as pa
import tornado
from rich import box
from rich.console import Console
from rich.table import Table

from taosprsp import __version__
from taosprsp.bench.baseline import (
    BASELINE_REFRESH_CEILING,
    BASELINE_REFRESH_LIMIT,
    BASELINE_REFRESH_SECONDS,
    BASELINES,
    RefreshResult,
)
from taosprsp.bench.latency import LatencyResult
from taosprsp.bench.mqtt import MqttResult
from taosprsp.bench.stages import Figures, StageResult, rounded, stage_names
from taosprsp.config import Config, as_dict
from taosprsp.errors import ExitCode, TaosprspError

SCHEMA = "taosprsp.bench/1"


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
    baseline: dict[str, Figures] = field(default_factory=dict)
    """The figures of each of `BASELINES` measured, by the stage it is compared with."""
    refresh: list[RefreshResult] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    mqtt: MqttResult | None = None
    leftover: str = ""
    """What the run could not remove afterwards (its scratch database), said for people; empty when nothing."""

    def stage(self, name: str) -> StageResult | None:
        return next((r for r in self.results if r.name == name), None)

    def baseline_for(self, name: str) -> float | None:
        """The baseline rows/s a stage is compared with (see the `taosprsp.bench` docstring)."""
        if name in self.baseline:
            return self.baseline[name].median
        if name.startswith("ingest-") and (bare := self.stage(name.replace("ingest-", "bare-", 1))):
            return bare.median
        if name == "read" and self.refresh:
            return BASELINE_REFRESH_CEILING
        return None

    @property
    def ratios(self) -> dict[str, float | None]:
        ratios: dict[str, float | None] = {}
        compared = [r.name for r in self.results if r.stage == "ingest" and self.baseline_for(r.name)]
        for name in ("generate", "feed", "read", *compared):
            ours, theirs = self.stage(name), self.baseline_for(name)
            ratios[name] = rounded(ours.median / theirs, 2) if ours and theirs else None
        top = max(self.refresh, key=lambda r: r.rate, default=None)
        ratios["refresh"] = (
            rounded(top.ours_new_rows_per_second / top.new_rows_per_second, 2)
            if top and top.new_rows_per_second
            else None
        )
        return ratios

    def as_dict(self) -> dict[str, Any]:
        dataset = self.config.dataset
        ratios = self.ratios
        results = []
        for r in self.results:
            results.append(
                {
                    "stage": r.stage,
                    "name": r.name,
                    "batch": r.batch,
                    "rows": r.rows,
                    "repeats": len(r.figures.samples),
                    "rows_per_second": r.figures.as_dict(),
                    "baseline_rows_per_second": rounded(self.baseline_for(r.name), 1),
                    "ratio": ratios.get(r.name),
                }
            )
        baseline: dict[str, Any] = {"refresh": [r.as_dict() for r in self.refresh]}
        for measured in BASELINES:
            if figures := self.baseline.get(measured.stage):
                baseline[measured.stage] = {
                    "method": measured.method,
                    "rows": self.config.bench.rows,
                    "repeats": len(figures.samples),
                    "rows_per_second": figures.as_dict(),
                }
        return {
            "schema": SCHEMA,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 2),
            "quick": self.quick,
            "store": {"kind": self.kind, "target": self.store_target, "version": self.store_version},
            "dataset": dataset.name,
            "tables": dataset.tables,
            "results": results,
            "latency": [r.as_dict() for r in self.latency],
            "mqtt": self.mqtt.as_dict() if self.mqtt else None,
            "baseline": baseline,
            "ratios": ratios,
            "versions": self.versions,
            "machine": machine(),
            "config": as_dict(self.config, masked=True),
        }


# --- environment --------------------------------------------------------------------------------------


def versions(tdengine_server: str | None) -> dict[str, str | None]:
    def installed(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "taosprsp": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "perspective": getattr(perspective, "__version__", None) or installed("perspective-python"),
        "taosws": installed("taos-ws-py"),
        "tornado": tornado.version,
        "tdengine_server": tdengine_server,
    }


def machine() -> dict[str, Any]:
    try:
        memory: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "memory_bytes": memory,
    }


# --- gates and outputs --------------------------------------------------------------------------------


def parse_thresholds(specs: list[str], config: Config, kind: str) -> dict[str, float]:
    """`STAGE=ROWS_PER_S` options as a mapping for a run on a store of `kind`; an unknown stage or a bad number
    is a usage error."""
    valid = stage_names(config, kind)
    thresholds: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep:
            raise TaosprspError(
                f"--fail-under {spec!r}: expected STAGE=ROWS_PER_S, e.g. ingest-1000=500000", ExitCode.USAGE
            )
        if name not in valid:
            raise TaosprspError(
                f"--fail-under: unknown stage {name!r}; valid stages: {', '.join(valid)}", ExitCode.USAGE
            )
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
            failures.append(
                f"{name} ran at {result.median:,.0f} rows/s (median), under --fail-under {name}={threshold:g}"
            )
    return failures


def check_output_path(path: Path, option: str) -> None:
    """Fail before measuring, not after, when an output file cannot be written."""
    if not path.parent.is_dir():
        raise TaosprspError(f"{option} {path}: the directory {path.parent} does not exist", ExitCode.USAGE)


def write_json(report: BenchReport, path: Path) -> None:
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")


LATENCY_COLUMNS = ("p50", "p95", "p99", "max", "unseen")
"""The columns both latency tables end in: the percentiles in ms, and the rows no client saw."""


def _latency_figures(d: dict[str, Any]) -> tuple[str, ...]:
    """A `LatencyResult.as_dict`'s figures under `LATENCY_COLUMNS`, "-" where one was not measured."""
    percentiles = (_one_decimal(d[key]) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
    return (*percentiles, f"{d['unseen']:,}")


def _one_decimal(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(report: BenchReport, console: Console) -> None:
    """The tables a person reads: throughput with the baseline ratio, the refresh comparison, latency."""

    def table(title: str, *columns: str) -> Table:
        made = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, column in enumerate(columns):
            made.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
        return made

    dataset = report.config.dataset
    console.print(
        f"[bold]taosprsp bench[/] on {report.store_target} ({report.store_version}); "
        f"{dataset.name} x {dataset.tables} subtables; {report.seconds:.0f} s",
        highlight=False,
    )
    ratios = report.ratios
    throughput = table(
        "Throughput, rows/s (median, min and max of the repeats) against a baseline",
        "stage",
        "batch",
        "median",
        "min",
        "max",
        "baseline",
        "ratio",
    )
    for r in report.results:
        baseline = report.baseline_for(r.name)
        ratio = ratios.get(r.name)
        throughput.add_row(
            r.name,
            f"{r.batch:,}" if r.batch else f"{r.rows:,}",
            f"{r.median:,.0f}",
            f"{min(r.figures.samples):,.0f}",
            f"{max(r.figures.samples):,.0f}",
            f"{baseline:,.0f}" if baseline else "-",
            f"{ratio:,.2f}x" if ratio and r.stage == "ingest" else f"{ratio:,.1f}x" if ratio else "-",
        )
    console.print(throughput)
    console.print(
        "  (generate, feed: the seeds' way; read: the seeds' refresh delivers at most "
        f"{BASELINE_REFRESH_LIMIT:,} new rows per {BASELINE_REFRESH_SECONDS * 1000:.0f} ms, whatever the store can do"
        + (
            "; ingest: the bare stmt2 loop of the same batch size, ready Python lists bound and executed"
            if any(r.stage == "bare" for r in report.results)
            else ""
        )
        + ")",
        style="dim",
        highlight=False,
    )
    if report.refresh:
        refresh = table(
            f"Refresh every {BASELINE_REFRESH_SECONDS * 1000:.0f} ms: the seeds' newest-{BASELINE_REFRESH_LIMIT:,} "
            "re-query vs our watermark read",
            "writes/s",
            "ours new/s",
            "seed new/s",
            "seed dup/s",
            "seed missed",
            "ratio",
        )
        for r in report.refresh:
            d = r.as_dict()
            ratio = r.ours_new_rows_per_second / r.new_rows_per_second if r.new_rows_per_second else float("nan")
            refresh.add_row(
                f"{r.rate:,}",
                f"{d['ours_new_rows_per_second']:,.0f}",
                f"{d['new_rows_per_second']:,.0f}",
                f"{d['duplicate_rows_per_second']:,.0f}",
                f"{d['missed_rows']:,} of {r.written:,}",
                f"{ratio:,.1f}x",
            )
        console.print(refresh)
    latency = table(
        "End-to-end latency, ms: write returned -> a Perspective client saw the row "
        "(bare: a row delta of the window; dashboard: the default panels' views re-read)",
        "feed",
        "client",
        "rows/s",
        "window",
        "rows",
        *LATENCY_COLUMNS,
        "serve CPU",
    )
    for r in report.latency:
        d = r.as_dict()
        cpu = "-" if d["serve_cpu_percent"] is None else f"{d['serve_cpu_percent']:.0f}%"
        feed = r.feed if r.wake == "off" else f"{r.feed}+{r.wake}"
        latency.add_row(
            feed, r.client, f"{r.rate:,}", f"{r.window_rows:,}", f"{d['rows']:,}", *_latency_figures(d), cpu
        )
    console.print(latency)
    if report.mqtt is not None:
        _render_mqtt(report.mqtt, console, table)


def _render_mqtt(result: MqttResult, console: Console, table: Callable[..., Table]) -> None:
    """The mqtt stage: ingest rates and CPU per message, and publish -> visible latency."""
    if result.skipped:
        console.print(f"  (mqtt stage skipped: {result.skipped})", style="dim", highlight=False)
        return
    drains = table(
        f"MQTT ingest from {result.broker}: a backlog of one-row JSON messages drained into the store",
        "ingesters",
        "messages",
        "msgs/s",
        "ingest CPU us/msg",
        "broker CPU us/msg",
    )
    for drain in result.drains:
        d = drain.as_dict()
        cpu = [_one_decimal(d[key]) for key in ("ingester_cpu_us_per_message", "broker_cpu_us_per_message")]
        drains.add_row(
            str(drain.ingesters), f"{drain.ingested:,} of {drain.published:,}", f"{d['messages_per_second']:,.0f}", *cpu
        )
    console.print(drains)
    if result.latency is not None:
        d = result.latency.as_dict()
        latency = table(
            f"MQTT latency, ms: published -> a Perspective client saw the row (ingester flush "
            f"{result.flush_interval * 1000:g} ms, feed {result.latency.wake})",
            "msgs/s",
            "rows",
            *LATENCY_COLUMNS,
        )
        latency.add_row(f"{result.latency.rate:,}", f"{d['rows']:,}", *_latency_figures(d))
        console.print(latency)


def write_plot(report: BenchReport, path: Path) -> None:
    """Throughput per stage (bars, log scale, the seeds' figures beside ours) and latency CDFs per feed and rate."""
    import matplotlib  # only when a plot is asked for: it takes a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, cdf) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.3, 1]})
    names = [r.name for r in report.results]
    positions = np.arange(len(names))
    medians = np.array([r.median for r in report.results])
    lows = medians - np.array([min(r.figures.samples) for r in report.results])
    highs = np.array([max(r.figures.samples) for r in report.results]) - medians
    bars.barh(
        positions + 0.2, medians, height=0.4, xerr=[lows, highs], color="#2a9d8f", label="taosprsp (median, min-max)"
    )
    compared = [(p, b) for p, b in zip(positions, (report.baseline_for(n) for n in names), strict=True) if b]
    bars.barh(
        [p - 0.2 for p, _ in compared],
        [b for _, b in compared],
        height=0.4,
        color="#e76f51",
        label="the seed demos' way",
    )
    for position, value in zip(positions, medians, strict=True):
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
            cdf.plot(
                samples,
                fraction,
                label=f"{result.label} @ {result.rate:,} rows/s (p99 {result.percentile(99):.0f} ms)",
            )
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", linewidth=0.5, linestyle=":")
    cdf.set_xlim(left=0)
    cdf.set_xlabel("write returned -> client saw the row (ms)")
    cdf.set_ylabel("fraction of rows")
    cdf.set_title("End-to-end latency (CDF)")
    cdf.legend(loc="lower right", fontsize=8)
    cdf.grid(which="both", alpha=0.3)
    dataset = report.config.dataset
    figure.suptitle(
        f"taosprsp bench: {report.kind} store, {dataset.name} x {dataset.tables} subtables, "
        f"{report.config.bench.rows:,} rows, repeats: {report.config.bench.repeats}, {report.started_at}"
    )
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)
