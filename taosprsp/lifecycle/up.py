"""`taosprsp db up`: start TDengine in Docker or from the installed binaries, wait until taosAdapter answers,
optionally pre-populate it with taosBenchmark, and report what was done."""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from taosprsp import progress
from taosprsp.config import Config
from taosprsp.endpoint import endpoint
from taosprsp.errors import TaosprspError
from taosprsp.lifecycle.docker import start_container
from taosprsp.lifecycle.native import native_benchmark_command, native_dir, start_native
from taosprsp.lifecycle.processes import last_line, state_dir
from taosprsp.lifecycle.readiness import rest_url, wait_ready

BENCHMARK_ROWS = 10_000


@dataclass(frozen=True)
class UpResult:
    """What `db up` did. `action`: created, started, resumed or already running."""

    mode: str
    action: str
    where: str
    image: str
    url: str
    version: str
    seconds: float
    benchmark: str = ""
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes)}


def benchmark_args(config: Config) -> list[str]:
    """taosBenchmark arguments: `dataset.tables` subtables of the meters super table, 10,000 rows each.

    taosBenchmark drops and recreates the database it writes; its default super table `meters` has the
    columns and tags of taosprsp's `meters` dataset.
    """
    return ["-d", config.database.name, "-t", str(config.dataset.tables), "-n", str(BENCHMARK_ROWS), "-y"]


def _run_benchmark(argv: list[str], show_progress: bool) -> str:
    """Run taosBenchmark; the last line of its output (its rows/s summary)."""
    with progress.spinner("pre-populating with taosBenchmark", show_progress):
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = last_line(result.stderr) or last_line(result.stdout) or f"exit status {result.returncode}"
        raise TaosprspError(f"taosBenchmark failed: {detail}")
    return last_line(result.stdout)


def _benchmark_notes(config: Config) -> tuple[str, ...]:
    if config.stable == "meters":
        return ()
    return (f"taosBenchmark wrote the meters super table; the configured dataset reads {config.stable}",)


def docker_up(config: Config, pull: bool = True, benchmark: bool = False, show_progress: bool = False) -> UpResult:
    """Start TDengine in the configured container (creating it from the pinned image when missing) and wait
    until taosAdapter answers. Running it again while TDengine runs changes nothing."""
    began = time.monotonic()
    container = config.docker.container
    action, image, notes = start_container(config, pull, show_progress)
    target = endpoint(config.tdengine)
    version = wait_ready(target, config.docker.wait, show_progress, hint=f"; see `docker logs {container}`")
    summary = ""
    if benchmark:
        summary = _run_benchmark(["docker", "exec", container, "taosBenchmark", *benchmark_args(config)], show_progress)
        notes.extend(_benchmark_notes(config))
    return UpResult(
        "docker",
        action,
        container,
        image,
        rest_url(target),
        version,
        round(time.monotonic() - began, 3),
        summary,
        tuple(notes),
    )


def native_up(config: Config, benchmark: bool = False, show_progress: bool = False) -> UpResult:
    """Start the installed taosd and taosadapter as background processes (pid files like `start_background`),
    with their config, data and logs under `<state dir>/native`, and wait until taosAdapter answers."""
    began = time.monotonic()
    action = start_native(config)
    target = endpoint(config.tdengine)
    version = wait_ready(
        target,
        config.docker.wait,
        show_progress,
        hint=f"; see {state_dir(config)}/taosd.log, taosadapter.log and {native_dir(config)}/log",
    )
    summary = ""
    notes: tuple[str, ...] = ()
    if benchmark:
        summary = _run_benchmark([*native_benchmark_command(config), *benchmark_args(config)], show_progress)
        notes = _benchmark_notes(config)
    return UpResult(
        "native",
        action,
        str(native_dir(config)),
        "",
        rest_url(target),
        version,
        round(time.monotonic() - began, 3),
        summary,
        notes,
    )


def db_up(
    config: Config,
    pull: bool = True,
    benchmark: bool = False,
    native: bool = False,
    show_progress: bool = False,
) -> UpResult:
    """`taosprsp db up`: TDengine in Docker, or with `native` from the installed binaries."""
    if native:
        return native_up(config, benchmark, show_progress)
    return docker_up(config, pull, benchmark, show_progress)
