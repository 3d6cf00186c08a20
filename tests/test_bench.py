"""`taosprsp bench`: every stage measured against the seeds' way, the documented JSON, a plot, and a CI gate."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import store_config
from helpers import cli_env
from typer.testing import CliRunner

from taosprsp.bench import SCHEMA
from taosprsp.cli import app
from taosprsp.config import Config
from taosprsp.stores import open_tdengine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGES = ["generate", "ingest-100", "ingest-1000", "ingest-10000", "read", "feed", "history"]
VERSION_KEYS = {"taosprsp", "python", "numpy", "pyarrow", "perspective", "taosws", "tornado", "tdengine_server"}


def bench_env(config: Config) -> dict[str, str | None]:
    """`cli_env`, and no other TAOSPRSP_* setting of the developer's shell (module fixtures run outside
    conftest's per-test isolation)."""
    cleared: dict[str, str | None] = {
        n: None for n in os.environ if n.startswith("TAOSPRSP_") and n != "TAOSPRSP_TEST_DSN"
    }
    return {**cleared, **cli_env(config)}


@dataclass
class QuickRun:
    exit_code: int
    stdout: str
    stderr: str
    document: dict[str, Any]
    plot: Path
    config: Config


def run_quick_bench(kind: str, directory: Path) -> QuickRun:
    config = store_config(kind, directory)
    report, plot = directory / "bench.json", directory / "bench.png"
    result = CliRunner().invoke(
        app, ["bench", "--quick", "--json", str(report), "--plot", str(plot)], env=bench_env(config)
    )
    document = json.loads(report.read_text()) if report.exists() else {}
    return QuickRun(result.exit_code, result.stdout, result.stderr, document, plot, config)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """One `bench --quick --json PATH --plot PATH.png` on the embedded store, shared by the tests below."""
    return run_quick_bench("embedded", tmp_path_factory.mktemp("bench"))


def test_quick_bench_measures_every_stage_with_positive_figures(quick: QuickRun) -> None:
    assert quick.exit_code == 0, quick.stderr
    results = {r["name"]: r for r in quick.document["results"]}
    assert list(results) == STAGES
    for name, result in results.items():
        figures = result["rows_per_second"]
        assert 0 < figures["min"] <= figures["median"] <= figures["max"], name
        assert result["repeats"] == 1 and result["rows"] > 0
    assert results["ingest-1000"]["stage"] == "ingest" and results["ingest-1000"]["batch"] == 1000
    for name in STAGES:
        assert name in quick.stdout


def test_quick_bench_measures_latency_through_the_poll_feed_to_a_bare_client_and_the_dashboard(
    quick: QuickRun,
) -> None:
    bare, dashboard = quick.document["latency"]
    assert (bare["client"], dashboard["client"]) == ("bare", "dashboard")
    for latency in (bare, dashboard):
        assert latency["feed"] == "poll" and latency["rate"] == 1000 and latency["wake"] in ("inotify", "stat")
        assert latency["rows"] > 0 and latency["unseen"] == 0
        assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert latency["window_rows"] == quick.config.server.limit  # a full window
        assert latency["serve_cpu_percent"] > 0


def test_quick_bench_measures_mqtt_ingest_and_publish_to_visible_latency(quick: QuickRun) -> None:
    mqtt = quick.document["mqtt"]
    if "skipped" in mqtt:
        pytest.skip(f"the mqtt stage did not run: {mqtt['skipped']}")
    assert [drain["ingesters"] for drain in mqtt["ingest"]] == [1, 2]
    for drain in mqtt["ingest"]:
        assert drain["ingested"] == drain["published"] > 0 and drain["messages_per_second"] > 0
    latency = mqtt["latency"]
    assert latency["feed"] == "mqtt" and latency["rate"] == 1000 and latency["rows"] > 0 and latency["unseen"] == 0
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert "MQTT ingest" in quick.stdout


def test_json_follows_the_documented_schema(quick: QuickRun) -> None:
    document = quick.document
    assert document["schema"] == SCHEMA == "taosprsp.bench/1"
    assert {"results", "latency", "baseline", "ratios", "versions", "machine", "config", "store", "quick"} <= set(
        document
    )
    assert document["quick"] is True and document["store"]["kind"] == "embedded"
    assert set(document["versions"]) == VERSION_KEYS and document["versions"]["tdengine_server"] is None
    assert document["machine"]["cpu_count"] >= 1
    assert document["config"]["tdengine"]["password"] == "****"
    assert document["config"]["bench"]["repeats"] == 1
    for latency in document["latency"]:
        assert {"feed", "client", "wake", "rate", "p50_ms", "p99_ms", "rows", "serve_cpu_percent"} <= set(latency)


def test_baseline_is_measured_and_compared_stage_by_stage(quick: QuickRun) -> None:
    baseline, ratios = quick.document["baseline"], quick.document["ratios"]
    assert baseline["generate"]["rows_per_second"]["median"] > 0
    assert baseline["feed"]["rows_per_second"]["median"] > 0
    (refresh,) = baseline["refresh"]
    assert refresh["rate"] == 1000 and refresh["queries"] > 0
    assert refresh["new_rows"] > 0 and refresh["duplicate_rows"] > 0  # at 1,000 rows/s it re-sends rows it sent
    assert refresh["ours_duplicate_rows"] == 0 and refresh["ours_missed_rows"] == 0
    assert set(ratios) == {"generate", "feed", "read", "refresh"}
    assert all(value > 0 for value in ratios.values())


def test_plot_is_a_png(quick: QuickRun) -> None:
    assert quick.plot.read_bytes()[:8] == PNG_MAGIC


def test_bench_leaves_the_configured_store_untouched(quick: QuickRun) -> None:
    assert not Path(quick.config.store.path).exists()
    assert quick.document["store"]["target"] != quick.config.store.path


def test_fail_under_a_figure_out_of_reach_exits_7_naming_stage_and_threshold(tmp_path: Path) -> None:
    config = store_config("embedded", tmp_path)
    result = CliRunner().invoke(app, ["bench", "--quick", "--fail-under", "generate=1e15"], env=bench_env(config))
    assert result.exit_code == 7
    assert "generate ran at" in result.stderr and "generate=1e+15" in result.stderr


def test_fail_under_an_unknown_stage_is_a_usage_error_listing_the_stages(tmp_path: Path) -> None:
    config = store_config("embedded", tmp_path)
    result = CliRunner().invoke(app, ["bench", "--fail-under", "nosuch=1"], env=bench_env(config))
    assert result.exit_code == 2
    assert "unknown stage 'nosuch'" in result.stderr
    for name in STAGES:
        assert name in result.stderr


@pytest.mark.tdengine
def test_quick_bench_on_tdengine_measures_both_feeds_against_a_bare_loop_and_leaves_nothing(tmp_path: Path) -> None:
    run = run_quick_bench("tdengine", tmp_path)
    assert run.exit_code == 0, run.stderr
    results = {r["name"]: r for r in run.document["results"]}
    sizes = (100, 1000, 10000)
    writes = [name for name in results if name.startswith(("ingest-", "bare-"))]
    assert writes == [f"{stage}-{b}" for b in sizes for stage in ("ingest", "bare")]
    for b in sizes:
        bare = results[f"bare-{b}"]["rows_per_second"]["median"]
        assert results[f"ingest-{b}"]["baseline_rows_per_second"] == bare > 0
        assert run.document["ratios"][f"ingest-{b}"] > 0
    assert [(r["feed"], r["client"], r["unseen"]) for r in run.document["latency"]] == [
        (feed, client, 0) for feed in ("poll", "tmq") for client in ("bare", "dashboard")
    ]
    assert run.document["versions"]["tdengine_server"]
    scratch = run.document["config"]["database"]["name"]
    assert scratch.startswith("taosprsp_bench_")
    with open_tdengine(run.config) as store:
        assert scratch not in store.databases()
        assert [topic for topic, _ in store.subscriptions() if topic.startswith(scratch)] == []
