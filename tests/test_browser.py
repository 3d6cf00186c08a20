"""The dashboard in headless Chromium: grid rows, a drawn chart, a row count that grows while producing, and the
history panel showing rows for a range preset."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env, start_producer

from taosprsp.config import Config
from taosprsp.serve import LiveServer
from taosprsp.web import missing_assets, viewer_dir

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHECK = viewer_dir() / "tests" / "browser_check.mjs"
SCREENSHOT_COPY = viewer_dir() / "screenshots" / "dashboard.png"


def browser_ready() -> str:
    """Why the browser test cannot run here, or '' when it can."""
    if missing_assets(viewer_dir()):
        return "viewer assets missing: npm ci --prefix viewer"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium"
    if shutil.which("node") is None:
        return "node is not installed"
    return ""


@pytest.fixture
def requirements() -> None:
    reason = browser_ready()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)


@pytest.mark.browser
@pytest.mark.parametrize("store_kind", ["embedded"])
def test_dashboard_draws_grid_and_chart_and_grows_while_producing(requirements, config: Config, tmp_path: Path) -> None:
    live = LiveServer(config.replace(server={"port": 0, "interval": "100ms"})).start()
    producer = start_producer(config, "--rate", "300", "--duration", "60s", "--tables", "10")
    screenshot = tmp_path / "dashboard.png"
    try:
        result = subprocess.run(
            [
                "node",
                str(CHECK),
                "--url",
                live.url,
                "--screenshot",
                str(screenshot),
                "--timeout",
                "60",
                "--interval",
                "3",
                "--table",  # grows by a row per location every bucket (the by-location table keeps 10 rows)
                f"{config.perspective_table}_location_1s",
                "--history",
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        producer.terminate()
        producer.wait(timeout=30)
        live.stop()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    if screenshot.exists():
        shutil.copy(screenshot, SCREENSHOT_COPY)
    if (tmp_path / "history.png").exists():
        shutil.copy(tmp_path / "history.png", SCREENSHOT_COPY.with_name("history.png"))
    print(json.dumps(report))
    assert report["ok"], report
    assert report["grid_rows"] > 0
    assert report["chart_drawn"]
    # the grid and the chart are fed from the derived tables, a few rows each, not from the raw window
    table = config.perspective_table
    panels = report["panels"]
    assert [p["table"] for p in panels] == [f"{table}_by_location", f"{table}_location_1s", config.latest_table]
    assert all(p["view_rows"] > 0 for p in panels), panels
    assert panels[0]["rows"] == 10 and panels[1]["drawn"]
    assert report["rows_second"] > report["rows_first"] > 0
    assert report["history"]["state"] == "ready" and report["history"]["range"] == "1 h"
    assert report["history"]["rows"] > 0
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
@pytest.mark.parametrize("store_kind", ["embedded"])
def test_the_viewer_command_shows_the_history_of_a_server_elsewhere(
    requirements, config: Config, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # the viewer's port, chosen first: the server must allow the page's origin
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    producer = start_producer(config, "--rate", "2000", "--count", "4000", "--tables", "10")
    assert producer.wait(timeout=120) == 0, producer.stderr.read() if producer.stderr else ""
    live = LiveServer(config.replace(server={"port": 0, "allowed_origins": [f"http://127.0.0.1:{port}"]})).start()
    viewer = subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "viewer", "--ws", live.websocket_url, "--port", str(port), "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **cli_env(config)},
        text=True,
    )
    screenshot = tmp_path / "viewer.png"
    try:
        url = viewer.stderr.readline().split("dashboard: ", 1)[1].split(" ", 1)[0]
        result = subprocess.run(
            ["node", str(CHECK), "--url", url, "--screenshot", str(screenshot), "--timeout", "60", "--no-live"]
            + ["--history"],
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        viewer.terminate()
        viewer.wait(timeout=10)
        live.stop()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(report))
    assert report["ok"], report
    assert report["history"]["state"] == "ready" and report["history"]["rows"] > 0
