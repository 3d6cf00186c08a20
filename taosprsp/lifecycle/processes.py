"""Background processes: start one detached, list them (`taosprsp ps`), stop them.

Every process taosprsp starts is recorded in `<state.dir>/<name>.pid`: its pid, command line and the start time
the kernel gives it (/proc/<pid>/stat field 22). A pid is signalled only while that start time still matches,
so a pid that now belongs to another process (the recorded one died, the pid was reused) is never signalled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taosprsp.config import READY_FILE_ENV, Config, ensure_directory
from taosprsp.errors import ExitCode, TaosprspError

STOP_SECONDS = 10.0
READY_SECONDS = 60.0
"""How long `start_background` waits for the child to say it is ready (serve listening, a first batch written)."""
KILL_SECONDS = 2.0
POLL_SECONDS = 0.05
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def state_dir(config: Config) -> Path:
    """The directory holding pid files, logs and the native TDengine's files."""
    return Path(config.state.dir).expanduser().resolve()


def last_line(text: str) -> str:
    """The last line of `text` that is not blank, stripped; "" when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks after boot (/proc/<pid>/stat field 22); None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # Field 2, the command name, is in parentheses and may hold spaces: count the fields after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
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
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "log": str(self.log),
            "pidfile": str(self.pidfile),
            "started_at": self.started_at,
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


def running_record(config: Config, name: str) -> dict[str, Any] | None:
    """The pid file record of `name` while the process it records still runs, else None."""
    record = _read_record(state_dir(config) / f"{name}.pid")
    return record if record is not None and _is_running(record) else None


def spawn(config: Config, name: str, argv: list[str], secrets: Mapping[str, str] | None = None) -> ProcessInfo:
    """Run `argv` (argv[0] an executable's path) detached and record it as `name`.

    The process gets its own session (a Ctrl-C in this terminal does not reach it), stdin from /dev/null and
    stdout and stderr in `<state dir>/<name>.log`. Refused when a live process of that name is recorded.
    `secrets` are environment variables added to the child's: unlike its argv, they reach neither the pid file
    nor `ps`.
    """
    if not _NAME.match(name):
        raise ValueError(f"process name {name!r} must be letters, digits, '_', '.' or '-'")
    directory = ensure_directory(state_dir(config), "state.dir")
    pidfile = directory / f"{name}.pid"
    running = running_record(config, name)
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
            argv[0],
            argv,
            {**os.environ, **(secrets or {})},
            file_actions=actions,
            setsid=True,
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


def start_background(
    config: Config,
    name: str,
    argv: list[str],
    secrets: Mapping[str, str] | None = None,
    ready_seconds: float = READY_SECONDS,
) -> ProcessInfo:
    """Run `taosprsp <argv>` detached, recorded as `name` (see `spawn`), and return once it is ready.

    The child inherits this process's environment (plus `secrets`) and working directory, so TAOSPRSP_*
    variables and relative paths in the config mean the same to it. It says it is ready by creating the
    file named in its `TAOSPRSP_READY_FILE` (`mark_ready`). A child that exits first is reported with the
    last line of its log (its error) and its exit code; one not ready after `ready_seconds` is left running
    and reported too.
    """
    ready = ensure_directory(state_dir(config), "state.dir") / f"{name}.ready"
    ready.unlink(missing_ok=True)
    info = spawn(
        config, name, [sys.executable, "-m", "taosprsp", *argv], {**(secrets or {}), READY_FILE_ENV: str(ready)}
    )
    try:
        _wait_ready(info, ready, ready_seconds)
    finally:
        ready.unlink(missing_ok=True)
    return info


def _wait_ready(info: ProcessInfo, ready: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready.exists():
        exited, status = os.waitpid(info.pid, os.WNOHANG)
        if exited:
            info.pidfile.unlink(missing_ok=True)
            code = os.waitstatus_to_exitcode(status)
            said = _last_log_line(info.log) or "it printed nothing"
            exit_code = ExitCode(code) if code in set(ExitCode) else ExitCode.FAILURE
            raise TaosprspError(
                f"{info.name} stopped as it started (exit code {code}): {said} (log {info.log})", exit_code
            )
        if time.monotonic() > deadline:
            raise TaosprspError(
                f"{info.name} (pid {info.pid}) is not ready after {seconds:g} s and still runs: follow its log "
                f"{info.log}; `taosprsp teardown` stops it"
            )
        time.sleep(POLL_SECONDS)


def mark_ready() -> None:
    """Tell the command that started this one with --background that it is ready; without one, nothing.

    The variable is removed, so processes this one starts later do not inherit it."""
    path = os.environ.pop(READY_FILE_ENV, None)
    if path:
        Path(path).touch()


def _last_log_line(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 4096))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return last_line(tail)


def list_processes(config: Config) -> list[ProcessStatus]:
    """Every recorded background process, oldest first; a stale pid file is listed as not alive."""
    found: list[tuple[float, ProcessStatus]] = []
    for pidfile in _pidfiles(config):
        record = _read_record(pidfile) or {}
        alive = bool(record) and _is_running(record)
        started_at = float(record.get("started_at") or 0.0)
        log = Path(record.get("log") or pidfile.with_suffix(".log"))
        found.append(
            (
                started_at,
                ProcessStatus(
                    name=str(record.get("name") or pidfile.stem),
                    pid=record.get("pid"),
                    alive=alive,
                    uptime=max(0.0, time.time() - started_at) if alive and started_at else None,
                    last_log_line=_last_log_line(log),
                    log=str(log),
                ),
            )
        )
    return [status for _, status in sorted(found, key=lambda item: item[0])]


def _signal(name: str, pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise TaosprspError(
            f"not allowed to signal {name} (pid {pid}): it runs as another user; stop it as that user"
        ) from None


def _wait_gone(records: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """The records still running after waiting up to `seconds` for all of them to exit."""
    deadline = time.monotonic() + seconds
    running = [r for r in records if _is_running(r)]
    while running and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        running = [r for r in running if _is_running(r)]
    return running


def stop_processes(
    config: Config,
    seconds: float = STOP_SECONDS,
    names: Iterable[str] | None = None,
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
        stale.append(
            {
                "name": record["name"] if record else pidfile.stem,
                "pid": record["pid"] if record else None,
                "reason": reason,
            }
        )
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
