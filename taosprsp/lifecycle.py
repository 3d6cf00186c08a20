"""Lifecycle: start TDengine (in Docker, or the installed binaries), run taosprsp in the background, stop it all.

Every process taosprsp starts is recorded in `<state.dir>/<name>.pid`: its pid, command line and the start time
the kernel gives it (/proc/<pid>/stat field 22). `teardown` signals a pid only while that start time still
matches, so a pid that now belongs to another process (the recorded one died, the pid was reused) is never
signalled. The Docker container is created with a label, and `teardown` removes only a container carrying it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from taosprsp import progress
from taosprsp.config import Config, Endpoint, endpoint, parse_duration
from taosprsp.errors import ExitCode, StoreUnreachable, TaosprspError

MANAGED_LABEL = "taosprsp.managed"
TDENGINE_DATA = "/var/lib/taos"
NATIVE_PORT = 6030
BENCHMARK_ROWS = 10_000
STOP_SECONDS = 10.0
KILL_SECONDS = 2.0
INFO_SECONDS = 15.0
POLL_SECONDS = 0.05
PROBE_SECONDS = 0.5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ALTERNATIVES = (
    "run TDengine without Docker with `taosprsp db up --native` where TDengine is installed, "
    "or use the embedded store with `--store embedded`"
)


# --- processes ----------------------------------------------------------------------------------------


def state_dir(config: Config) -> Path:
    """The directory holding pid files, logs and the native TDengine's files."""
    return Path(config.state.dir).expanduser().resolve()


def native_dir(config: Config) -> Path:
    """Config, data and logs of the TDengine started by `db up --native`."""
    return state_dir(config) / "native"


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks after boot (/proc/<pid>/stat field 22); None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # Field 2, the command name, is in parentheses and may hold spaces: count the fields after the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        # Exited, waiting to be reaped: by this process when it started it (e.g. a test), else by init.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessInfo:
    """A process taosprsp started, as recorded in its pid file."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log: Path
    pidfile: Path
    started_at: float
    start_time: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "pid": self.pid, "argv": list(self.argv), "log": str(self.log),
            "pidfile": str(self.pidfile), "started_at": self.started_at,
        }


@dataclass(frozen=True)
class ProcessStatus:
    """One pid file as `taosprsp ps` shows it; `alive` is false for a stale pid file."""

    name: str
    pid: int | None
    alive: bool
    uptime: float | None
    last_log_line: str
    log: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_record(pidfile: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(pidfile.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    return record


def _is_running(record: dict[str, Any]) -> bool:
    """Whether the recorded process still runs: its pid is alive and started when the record says."""
    recorded = record.get("start_time")
    return recorded is not None and process_start_time(record["pid"]) == recorded


def _pidfiles(config: Config, names: Iterable[str] | None = None) -> list[Path]:
    directory = state_dir(config)
    found = sorted(directory.glob("*.pid")) if directory.is_dir() else []
    return found if names is None else [path for path in found if path.stem in set(names)]


def _running_record(config: Config, name: str) -> dict[str, Any] | None:
    record = _read_record(state_dir(config) / f"{name}.pid")
    return record if record is not None and _is_running(record) else None


def spawn(config: Config, name: str, argv: list[str]) -> ProcessInfo:
    """Run `argv` (argv[0] an executable's path) detached and record it as `name`.

    The process gets its own session (a Ctrl-C in this terminal does not reach it), stdin from /dev/null and
    stdout and stderr in `<state dir>/<name>.log`. Refused when a live process of that name is recorded.
    """
    if not _NAME.match(name):
        raise ValueError(f"process name {name!r} must be letters, digits, '_', '.' or '-'")
    directory = state_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    pidfile = directory / f"{name}.pid"
    running = _running_record(config, name)
    if running is not None:
        raise TaosprspError(
            f"{name} is already running in the background (pid {running['pid']}, log {running.get('log')}): "
            "see `taosprsp ps`, stop it with `taosprsp teardown`"
        )
    log = directory / f"{name}.log"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    started_at = time.time()
    try:
        # Ignored signals stay ignored across exec: give the child the default SIGPIPE (Python ignores it),
        # SIGINT (a script's `cmd &` jobs ignore it) and SIGTERM (what teardown sends).
        pid = os.posix_spawn(
            argv[0], argv, os.environ, file_actions=actions, setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGINT, signal.SIGTERM),
        )
    except OSError as exc:
        raise TaosprspError(f"could not start {name} ({argv[0]}): {exc}") from exc
    info = ProcessInfo(name, pid, tuple(argv), log, pidfile, started_at, process_start_time(pid))
    record = {**info.as_dict(), "start_time": info.start_time}
    partial = pidfile.with_suffix(".pid.tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(pidfile)
    return info


def start_background(config: Config, name: str, argv: list[str]) -> ProcessInfo:
    """Run `taosprsp <argv>` detached, recorded as `name`: see `spawn`.

    The child inherits this process's environment and working directory, so TAOSPRSP_* variables and relative
    paths in the config mean the same to it.
    """
    return spawn(config, name, [sys.executable, "-m", "taosprsp", *argv])


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 4096))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def list_processes(config: Config) -> list[ProcessStatus]:
    """Every recorded background process, oldest first; a stale pid file is listed as not alive."""
    found: list[tuple[float, ProcessStatus]] = []
    for pidfile in _pidfiles(config):
        record = _read_record(pidfile) or {}
        alive = bool(record) and _is_running(record)
        started_at = float(record.get("started_at") or 0.0)
        log = Path(record.get("log") or pidfile.with_suffix(".log"))
        found.append((started_at, ProcessStatus(
            name=str(record.get("name") or pidfile.stem),
            pid=record.get("pid"),
            alive=alive,
            uptime=max(0.0, time.time() - started_at) if alive and started_at else None,
            last_log_line=_last_line(log),
            log=str(log),
        )))
    return [status for _, status in sorted(found, key=lambda item: item[0])]


def _signal(name: str, pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise TaosprspError(f"not allowed to signal {name} (pid {pid}): it runs as another user; stop it as that user") from None


def _wait_gone(records: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """The records still running after waiting up to `seconds` for all of them to exit."""
    deadline = time.monotonic() + seconds
    running = [r for r in records if _is_running(r)]
    while running and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        running = [r for r in running if _is_running(r)]
    return running


def stop_processes(
    config: Config, seconds: float = STOP_SECONDS, names: Iterable[str] | None = None,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Stop every process taosprsp recorded (or those of `names`): SIGTERM, then SIGKILL after `seconds`.

    A pid file whose pid is gone or now belongs to a process taosprsp did not start is removed without
    signalling anything. Returns (stopped, stale, still running) as lists of dicts.
    """
    stale: list[dict] = []
    ours: list[tuple[Path, dict[str, Any]]] = []
    for pidfile in _pidfiles(config, names):
        record = _read_record(pidfile)
        if record is not None:
            record.setdefault("name", pidfile.stem)
        if record is not None and _is_running(record):
            ours.append((pidfile, record))
            continue
        if record is None:
            reason = "unreadable pid file"
        elif process_start_time(record["pid"]) is None:
            reason = "exited"
        else:
            reason = "the pid now belongs to a process taosprsp did not start; not signalled"
        stale.append({"name": record["name"] if record else pidfile.stem, "pid": record["pid"] if record else None, "reason": reason})
        pidfile.unlink(missing_ok=True)
    for _, record in ours:
        _signal(record["name"], record["pid"], signal.SIGTERM)
    killed = _wait_gone([record for _, record in ours], seconds)
    for record in killed:
        _signal(record["name"], record["pid"], signal.SIGKILL)
    left = _wait_gone(killed, KILL_SECONDS)
    stopped: list[dict] = []
    still_running: list[dict] = []
    for pidfile, record in ours:
        entry = {"name": record["name"], "pid": record["pid"], "signal": "SIGKILL" if record in killed else "SIGTERM"}
        if record in left:
            still_running.append(entry)
        else:
            stopped.append(entry)
            pidfile.unlink(missing_ok=True)
    return stopped, stale, still_running


# --- Docker -------------------------------------------------------------------------------------------


def _stderr_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def docker_problem() -> str | None:
    """Why taosprsp cannot use Docker here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "docker is not installed (no `docker` on PATH)"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=INFO_SECONDS, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"no Docker engine is running (`docker info` did not answer within {INFO_SECONDS:g} s)"
    if result.returncode == 0 and result.stdout.strip():
        return None
    reason = _stderr_line(result.stderr) or f"`docker info` exited {result.returncode}"
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
        detail = _stderr_line(result.stderr) or f"exit status {result.returncode}"
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
        ["docker", "inspect", "--type", "container", name], capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        if "no such" in result.stderr.lower():
            return None
        raise TaosprspError(f"`docker inspect {name}` failed: {_stderr_line(result.stderr)}")
    (found,) = json.loads(result.stdout)
    labels = found.get("Config", {}).get("Labels") or {}
    return Container(name, found["State"]["Status"], found["Config"]["Image"], labels.get(MANAGED_LABEL) == "true")


def _volume_exists(name: str) -> bool:
    result = subprocess.run(["docker", "volume", "inspect", name], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return result.returncode == 0


def image(config: Config) -> str:
    return f"{config.docker.image}:{config.docker.tag}"


def docker_run_args(config: Config) -> list[str]:
    """`docker run` arguments: ports published on 127.0.0.1 only, data in the named volume."""
    settings = config.docker
    return [
        "run", "-d", "--name", settings.container, "--label", f"{MANAGED_LABEL}=true",
        "-p", f"127.0.0.1:{NATIVE_PORT}:6030", "-p", f"127.0.0.1:{endpoint(config.tdengine).port}:6041",
        "-v", f"{settings.volume}:{TDENGINE_DATA}", image(config),
    ]


def benchmark_args(config: Config) -> list[str]:
    """taosBenchmark arguments: `dataset.tables` subtables of the meters super table, 10,000 rows each.

    taosBenchmark drops and recreates the database it writes; its default super table `meters` has the
    columns and tags of taosprsp's `meters` dataset.
    """
    return ["-d", config.database.name, "-t", str(config.dataset.tables), "-n", str(BENCHMARK_ROWS), "-y"]


# --- readiness ----------------------------------------------------------------------------------------


def rest_url(target: Endpoint) -> str:
    return f"http://{target.host}:{target.port}/rest/sql"


# Loopback requests must not go through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ask_version(target: Endpoint, timeout: float) -> tuple[str | None, str]:
    """(the server version, "") when taosAdapter answers `SELECT SERVER_VERSION()`, else (None, why not)."""
    credentials = base64.b64encode(f"{target.user}:{target.password}".encode()).decode()
    request = urllib.request.Request(
        rest_url(target), data=b"SELECT SERVER_VERSION()", method="POST",
        headers={"Authorization": f"Basic {credentials}", "Content-Type": "text/plain"},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", None) or exc)
    if not isinstance(body, dict):
        return None, "an answer that is not TDengine's"
    if body.get("code") == 0 and body.get("data"):
        return str(body["data"][0][0]), ""
    return None, f"code {body.get('code')}: {body.get('desc', '')}"


@contextmanager
def _spinner(message: str, show: bool) -> Iterator[None]:
    if not show:
        yield
        return
    with progress.stderr.status(message):
        yield


def wait_ready(target: Endpoint, seconds: float, show_progress: bool = False, hint: str = "") -> str:
    """Poll taosAdapter's REST API until it answers; its server version, or StoreUnreachable after `seconds`."""
    url = rest_url(target)
    deadline = time.monotonic() + seconds
    with _spinner(f"waiting for TDengine to answer at {url}", show_progress):
        while True:
            version, why = _ask_version(target, max(0.1, min(2.0, deadline - time.monotonic())))
            if version is not None:
                return version
            if time.monotonic() >= deadline:
                break
            time.sleep(min(PROBE_SECONDS, max(0.0, deadline - time.monotonic())))
    raise StoreUnreachable(f"TDengine did not answer {url} within {seconds:g} s (last: {why}){hint}")


# --- db up --------------------------------------------------------------------------------------------


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


def _run_benchmark(argv: list[str], show_progress: bool) -> str:
    """Run taosBenchmark; the last line of its output (its rows/s summary)."""
    with _spinner("pre-populating with taosBenchmark", show_progress):
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = _stderr_line(result.stderr) or _stderr_line(result.stdout) or f"exit status {result.returncode}"
        raise TaosprspError(f"taosBenchmark failed: {detail}")
    return _stderr_line(result.stdout)


def _benchmark_notes(config: Config) -> tuple[str, ...]:
    if config.stable == "meters":
        return ()
    return (f"taosBenchmark wrote the meters super table; the configured dataset reads {config.stable}",)


def docker_up(config: Config, pull: bool = True, benchmark: bool = False, show_progress: bool = False) -> UpResult:
    """Start TDengine in the configured container (creating it from the pinned image when missing) and wait
    until taosAdapter answers. Running it again while TDengine runs changes nothing."""
    began = time.monotonic()
    require_docker()
    settings = config.docker
    wanted = image(config)
    notes: list[str] = []
    container = inspect_container(settings.container)
    if container is None:
        if pull:
            with _spinner(f"pulling {wanted}", show_progress):
                _docker("pull", wanted)
        _docker(*docker_run_args(config))
        action = "created"
    else:
        if container.image != wanted:
            notes.append(
                f"container {settings.container} runs {container.image}, the config asks for {wanted}: "
                "`taosprsp teardown` and `taosprsp db up` to switch"
            )
        if container.status in ("running", "restarting"):
            action = "already running"
        elif container.status == "paused":
            _docker("unpause", settings.container)
            action = "resumed"
        else:
            _docker("start", settings.container)
            action = "started"
    target = endpoint(config.tdengine)
    version = wait_ready(
        target, parse_duration(settings.wait, "docker.wait"), show_progress,
        hint=f"; see `docker logs {settings.container}`",
    )
    summary = ""
    if benchmark:
        summary = _run_benchmark(["docker", "exec", settings.container, "taosBenchmark", *benchmark_args(config)], show_progress)
        notes.extend(_benchmark_notes(config))
    return UpResult(
        "docker", action, settings.container, container.image if container else wanted, rest_url(target), version,
        round(time.monotonic() - began, 3), summary, tuple(notes),
    )


def write_native_config(config: Config) -> Path:
    """Write taos.cfg and taosadapter.toml for a TDengine on this host; the directory holding them."""
    base = native_dir(config)
    cfg, data, logs = base / "cfg", base / "data", base / "log"
    for directory in (cfg, data, logs):
        directory.mkdir(parents=True, exist_ok=True)
    (cfg / "taos.cfg").write_text(
        "# Written by `taosprsp db up --native`; `taosprsp teardown --purge` deletes this directory.\n"
        f"firstEp     localhost:{NATIVE_PORT}\n"
        "fqdn        localhost\n"
        f"serverPort  {NATIVE_PORT}\n"
        f"dataDir     {data}\n"
        f"logDir      {logs}\n"
    )
    # JSON strings are valid TOML basic strings.
    (cfg / "taosadapter.toml").write_text(
        "# Written by `taosprsp db up --native`.\n"
        f"port = {endpoint(config.tdengine).port}\n"
        f"taosConfigDir = {json.dumps(str(cfg))}\n\n"
        "[log]\n"
        f"path = {json.dumps(str(logs))}\n"
    )
    return cfg


def native_up(config: Config, benchmark: bool = False, show_progress: bool = False) -> UpResult:
    """Start the installed taosd and taosadapter as background processes (pid files like `start_background`),
    with their config, data and logs under `<state dir>/native`, and wait until taosAdapter answers."""
    began = time.monotonic()
    binaries = {name: shutil.which(name) for name in ("taosd", "taosadapter")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        raise TaosprspError(
            f"--native runs the installed TDengine, and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH: install the TDengine 3.3 server, start Docker and run `taosprsp db up`, "
            "or use the embedded store with `--store embedded`",
            ExitCode.NO_ENGINE,
        )
    cfg = write_native_config(config)
    commands = {
        "taosd": [str(binaries["taosd"]), "-c", str(cfg)],
        "taosadapter": [str(binaries["taosadapter"]), "-c", str(cfg / "taosadapter.toml")],
    }
    action = "already running"
    for name, argv in commands.items():
        if _running_record(config, name) is None:
            spawn(config, name, argv)
            action = "started"
    target = endpoint(config.tdengine)
    version = wait_ready(
        target, parse_duration(config.docker.wait, "docker.wait"), show_progress,
        hint=f"; see {state_dir(config)}/taosd.log, taosadapter.log and {native_dir(config)}/log",
    )
    summary = ""
    notes: tuple[str, ...] = ()
    if benchmark:
        tool = shutil.which("taosBenchmark")
        if tool is None:
            raise TaosprspError("--benchmark needs taosBenchmark, which is not on PATH: it comes with the TDengine server")
        summary = _run_benchmark([tool, "-c", str(cfg), *benchmark_args(config)], show_progress)
        notes = _benchmark_notes(config)
    return UpResult(
        "native", action, str(native_dir(config)), "", rest_url(target), version,
        round(time.monotonic() - began, 3), summary, notes,
    )


def db_up(
    config: Config, pull: bool = True, benchmark: bool = False, native: bool = False, show_progress: bool = False,
) -> UpResult:
    """`taosprsp db up`: TDengine in Docker, or with `native` from the installed binaries."""
    if native:
        return native_up(config, benchmark, show_progress)
    return docker_up(config, pull, benchmark, show_progress)


# --- teardown -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeardownSummary:
    """What `teardown` stopped and removed; `docker` says in a sentence what happened to the container."""

    stopped: tuple[dict, ...]
    stale: tuple[dict, ...]
    still_running: tuple[dict, ...]
    docker: str
    container_removed: bool
    volume_removed: bool
    purged: str

    @property
    def nothing_to_stop(self) -> bool:
        return not (self.stopped or self.stale or self.still_running or self.container_removed
                    or self.volume_removed or self.purged)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("stopped", "stale", "still_running"):
            data[key] = list(data[key])
        return {**data, "nothing_to_stop": self.nothing_to_stop}


def remove_container(config: Config, volumes: bool) -> tuple[str, bool, bool]:
    problem = docker_problem()
    if problem is not None:
        return f"Docker skipped: {problem}", False, False
    settings = config.docker
    container = inspect_container(settings.container)
    if container is not None and not container.managed:
        return (
            f"container {settings.container} was not created by taosprsp (no {MANAGED_LABEL} label): left alone, "
            f"with its volume; remove it yourself with `docker rm -f {settings.container}`",
            False, False,
        )
    removed = container is not None
    if removed:
        _docker("rm", "-f", settings.container)
    volume_removed = volumes and _volume_exists(settings.volume)
    if volume_removed:
        _docker("volume", "rm", settings.volume)
    return (f"removed container {settings.container}" if removed else f"no container {settings.container}"), removed, volume_removed


def teardown(config: Config, volumes: bool = False, purge: bool = False) -> TeardownSummary:
    """Stop what taosprsp started: its background processes (see `stop_processes`), then its TDengine
    container; `volumes` also removes the container's data volume, `purge` the native TDengine's files.

    Harmless to repeat. Without Docker the processes are still stopped and the summary says Docker was skipped.
    """
    stopped, stale, still_running = stop_processes(config)
    docker, container_removed, volume_removed = remove_container(config, volumes)
    purged = ""
    if purge and native_dir(config).exists():
        shutil.rmtree(native_dir(config))
        purged = str(native_dir(config))
    return TeardownSummary(
        tuple(stopped), tuple(stale), tuple(still_running), docker, container_removed, volume_removed, purged,
    )
