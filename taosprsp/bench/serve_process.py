"""`taosprsp serve` as a child process of the bench: started on a config file, its stats and its CPU time.

Serve's CPU is its user and system time, from `/proc/<pid>/stat` (Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from taosprsp.config import ENV_PREFIX, SECRET_KEYS, Config, as_dict, to_toml
from taosprsp.errors import TaosprspError

SERVE_START_SECONDS = 120.0
"""How long the served process may take to load the snapshot and listen."""


class ServeProcess:
    """`taosprsp serve` on `config`'s store as a child process: its WebSocket, `/api/stats` and CPU time.

    The config goes to the child as a file; secrets go through its environment, and no other `TAOSPRSP_*`
    variable of this process reaches it (it would override the file).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.websocket = ""
        self.url = ""
        self._workdir = Path(tempfile.mkdtemp(prefix="taosprsp-bench-serve-"))
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServeProcess:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _start(self) -> None:
        config_file, env = child_config(self.config, self._workdir / "serve.toml")
        log = (self._workdir / "serve.log").open("w", encoding="utf-8")
        with log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "taosprsp", "--config", str(config_file), "--json", "-q", "serve"],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
            )
        assert self._process.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(SERVE_START_SECONDS)
        if not ready or not ready[0]:
            log_text = (self._workdir / "serve.log").read_text(encoding="utf-8", errors="replace").strip()
            last = log_text.splitlines()[-1] if log_text else "no output"
            code = self._process.poll()
            how = f"stopped (exit {code})" if code is not None else f"was not ready within {SERVE_START_SECONDS:.0f} s"
            raise TaosprspError(f"bench: the served `taosprsp serve` {how}: {last}")
        document = json.loads(ready[0])
        self.url, self.websocket = document["url"], document["websocket"]

    def stats(self) -> dict[str, Any]:
        """The server's `/api/stats`."""
        return self._get("api/stats")

    def dashboard(self) -> dict[str, Any]:
        """The dashboard document the server gives its page (`dashboard.json`): the panels over its tables."""
        return self._get("dashboard.json")

    def _get(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.config.server.token}"} if self.config.server.token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float | None:
        """User and system CPU seconds the served process has used; None where /proc does not say."""
        assert self._process is not None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_config(config: Config, path: Path) -> tuple[Path, dict[str, str]]:
    """`config` for a `taosprsp` child process: written to `path` (a TOML file) but for its secrets, which go in
    the environment returned; no other `TAOSPRSP_*` variable of this process is in it (it would override the
    file)."""
    data = as_dict(config, masked=False)
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    for section, values in data.items():
        for key in [k for k in values if section != "datasets" and _is_secret(section, k)]:
            value = values.pop(key)
            if value:
                env[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = str(value)
    path.write_text(to_toml(data), encoding="utf-8")
    return path, env


def _is_secret(section: str, key: str) -> bool:
    """A setting that may hold a password or token: the child takes it from its environment, not a file."""
    return key in SECRET_KEYS or (section, key) in (("tdengine", "dsn"), ("mqtt", "url"))
