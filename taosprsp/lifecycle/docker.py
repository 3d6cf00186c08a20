"""TDengine in Docker: whether an engine answers, the container taosprsp creates, and removing it again.

The container is created with the label `taosprsp.managed=true`; only a container carrying it is ever removed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass

from taosprsp import progress
from taosprsp.config import Config
from taosprsp.endpoint import endpoint
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.lifecycle.processes import last_line
from taosprsp.lifecycle.readiness import NATIVE_PORT

MANAGED_LABEL = "taosprsp.managed"
TDENGINE_DATA = "/var/lib/taos"
INFO_SECONDS = 15.0
_ALTERNATIVES = (
    "run TDengine without Docker with `taosprsp db up --native` where TDengine is installed, "
    "or use the embedded store with `--store embedded`"
)


def docker_problem() -> str | None:
    """Why taosprsp cannot use Docker here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "docker is not installed (no `docker` on PATH)"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=INFO_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"no Docker engine is running (`docker info` did not answer within {INFO_SECONDS:g} s)"
    if result.returncode == 0 and result.stdout.strip():
        return None
    reason = last_line(result.stderr) or f"`docker info` exited {result.returncode}"
    if "permission denied" in reason.lower():
        return f"the Docker engine refused this user ({reason}); add the user to the docker group"
    return f"no Docker engine is running ({reason})"


def require_docker() -> None:
    """Raise TaosprspError (exit 6) unless docker is installed and its engine answers."""
    problem = docker_problem()
    if problem is not None:
        raise TaosprspError(f"{problem}: start Docker, or {_ALTERNATIVES}", ExitCode.NO_ENGINE)


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = last_line(result.stderr) or f"exit status {result.returncode}"
        raise TaosprspError(f"`docker {' '.join(args)}` failed: {detail}")
    return result


@dataclass(frozen=True)
class Container:
    """What `docker inspect` says of the TDengine container."""

    name: str
    status: str
    image: str
    managed: bool


def inspect_container(name: str) -> Container | None:
    """The container called `name`, or None when there is none."""
    result = subprocess.run(
        ["docker", "inspect", "--type", "container", name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        if "no such" in result.stderr.lower():
            return None
        raise TaosprspError(f"`docker inspect {name}` failed: {last_line(result.stderr)}")
    (found,) = json.loads(result.stdout)
    labels = found.get("Config", {}).get("Labels") or {}
    return Container(name, found["State"]["Status"], found["Config"]["Image"], labels.get(MANAGED_LABEL) == "true")


def _volume_exists(name: str) -> bool:
    result = subprocess.run(
        ["docker", "volume", "inspect", name], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return result.returncode == 0


def image(config: Config) -> str:
    """The pinned TDengine image, `docker.image:docker.tag`."""
    return f"{config.docker.image}:{config.docker.tag}"


def docker_run_args(config: Config) -> list[str]:
    """`docker run` arguments: ports published on 127.0.0.1 only, data in the named volume."""
    settings = config.docker
    return [
        "run",
        "-d",
        "--name",
        settings.container,
        "--label",
        f"{MANAGED_LABEL}=true",
        "-p",
        f"127.0.0.1:{NATIVE_PORT}:6030",
        "-p",
        f"127.0.0.1:{endpoint(config.tdengine).port}:6041",
        "-v",
        f"{settings.volume}:{TDENGINE_DATA}",
        image(config),
    ]


def start_container(config: Config, pull: bool, show_progress: bool) -> tuple[str, str, list[str]]:
    """Make the configured container run, creating it from the pinned image when missing.

    Returns what was done (created, started, resumed or already running), the image the container runs, and
    notes for the user. Raises TaosprspError (exit 6) when no Docker engine answers.
    """
    require_docker()
    settings = config.docker
    wanted = image(config)
    container = inspect_container(settings.container)
    if container is None:
        if pull:
            with progress.spinner(f"pulling {wanted}", show_progress):
                _docker("pull", wanted)
        _docker(*docker_run_args(config))
        return "created", wanted, []
    notes = []
    if container.image != wanted:
        notes.append(
            f"container {settings.container} runs {container.image}, the config asks for {wanted}: "
            "`taosprsp teardown` and `taosprsp db up` to switch"
        )
    if container.status in ("running", "restarting"):
        return "already running", container.image, notes
    if container.status == "paused":
        _docker("unpause", settings.container)
        return "resumed", container.image, notes
    _docker("start", settings.container)
    return "started", container.image, notes


def remove_container(config: Config, volumes: bool) -> tuple[str, bool, bool]:
    """Remove the configured container when taosprsp created it, and with `volumes` its data volume.

    Returns (what happened, in a sentence; whether the container was removed; whether the volume was).
    Without a Docker engine nothing is removed and the sentence says why.
    """
    problem = docker_problem()
    if problem is not None:
        return f"Docker skipped: {problem}", False, False
    settings = config.docker
    container = inspect_container(settings.container)
    if container is not None and not container.managed:
        return (
            f"container {settings.container} was not created by taosprsp (no {MANAGED_LABEL} label): left alone, "
            f"with its volume; remove it yourself with `docker rm -f {settings.container}`",
            False,
            False,
        )
    removed = container is not None
    if removed:
        _docker("rm", "-f", settings.container)
    volume_removed = volumes and _volume_exists(settings.volume)
    if volume_removed:
        _docker("volume", "rm", settings.volume)
    return (
        (f"removed container {settings.container}" if removed else f"no container {settings.container}"),
        removed,
        volume_removed,
    )
