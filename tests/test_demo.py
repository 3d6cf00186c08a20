"""`taosprsp demo`: the whole pipeline from one command, and nothing left behind after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_env

from taosprsp.client import fetch_table
from taosprsp.config import Config
from taosprsp.lifecycle import process_start_time


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_demo_serves_live_data_and_sigint_leaves_nothing_running(config: Config) -> None:
    env = {**os.environ, **cli_env(config)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "--json", "demo", "--port", "0", "--history", "1000", "--rate", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        ready = json.loads(demo.stdout.readline())
        assert ready["store"] == "embedded"
        pidfile = Path(config.state.dir) / "demo-produce.pid"
        producer_pid = json.loads(pidfile.read_text())["pid"]
        deadline = time.monotonic() + 30
        rows = 0
        while time.monotonic() < deadline and rows <= 1000:
            rows = fetch_table(ready["websocket"], config.perspective_table).num_rows
            time.sleep(0.5)
        assert rows > 1000, "the produced rows never reached the server"
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    assert demo.returncode == 130, "an interrupted demo exits 130, having cleaned up"
    assert process_start_time(producer_pid) is None
    assert not list(Path(config.state.dir).glob("*.pid"))
