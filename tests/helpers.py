"""Helpers shared by test modules: pointing a `taosprsp` process at a test's store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from taosprsp.config import Config


def cli_env(config: Config) -> dict[str, str]:
    """Environment variables that point a `taosprsp` process at the test's store and state directory."""
    env = {
        "TAOSPRSP_STORE_KIND": config.store.kind,
        "TAOSPRSP_STORE_PATH": config.store.path,
        "TAOSPRSP_STATE_DIR": config.state.dir,
        "TAOSPRSP_DATABASE_NAME": config.database.name,
    }
    if config.tdengine.dsn:
        env["TAOSPRSP_TDENGINE_DSN"] = config.tdengine.dsn
    return env


def start_producer(config: Config, *args: str) -> subprocess.Popen:
    """`taosprsp --json produce ARGS` as a real process writing into the test's store."""
    env = {**os.environ, **cli_env(config)}
    return subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "--json", "produce", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
