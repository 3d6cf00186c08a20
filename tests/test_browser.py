"""The dashboard in headless Chromium: grid rows, a drawn chart, and a row count that grows while producing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import start_producer

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
    print(json.dumps(report))
    assert report["ok"], report
    assert report["grid_rows"] > 0
    assert report["chart_drawn"]
    assert report["rows_second"] > report["rows_first"] > 0
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
