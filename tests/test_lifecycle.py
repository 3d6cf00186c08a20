"""`db up`, background processes, `ps` and `teardown`, with real processes, a real HTTP server and the real
docker client.

Where a test checks the exact docker command lines, `docker` is tests/fake_docker/docker: the one fake allowed,
because no Docker engine can run here. It records its arguments and answers like Docker 28.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taosprsp import lifecycle
from taosprsp.cli import app
from taosprsp.config import load_config
from taosprsp.datasets import get_dataset
from taosprsp.endpoint import endpoint
from taosprsp.errors import TaosprspError
from taosprsp.stores import EmbeddedStore

FAKE_DOCKER = Path(__file__).parent / "fake_docker"
IMAGE = "tdengine/tdengine:3.3.7.5"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _kill_recorded(state: Path) -> None:
    """Kill every process a pid file in `state` records that still runs, so no test leaves one behind."""
    for pidfile in state.glob("*.pid"):
        record = json.loads(pidfile.read_text())
        if record.get("start_time") is not None and lifecycle.process_start_time(record["pid"]) == record["start_time"]:
            os.kill(record["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 5
            while lifecycle.process_start_time(record["pid"]) is not None and time.monotonic() < deadline:
                time.sleep(0.02)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state dir, store file and container and volume names, so nothing touches the user's."""
    for name in list(os.environ):
        if name.startswith("TAOSPRSP_"):
            monkeypatch.delenv(name)
    suffix = uuid.uuid4().hex[:8]
    directory = tmp_path / "state"
    monkeypatch.setenv("TAOSPRSP_STATE_DIR", str(directory))
    monkeypatch.setenv("TAOSPRSP_STORE_PATH", str(tmp_path / "embedded.sqlite"))
    monkeypatch.setenv("TAOSPRSP_DOCKER_CONTAINER", f"taosprsp-test-{suffix}")
    monkeypatch.setenv("TAOSPRSP_DOCKER_VOLUME", f"taosprsp-test-{suffix}-data")
    monkeypatch.setenv("TAOSPRSP_DOCKER_WAIT", "5s")
    yield directory
    _kill_recorded(directory)


class FakeDocker:
    """The fake docker's argument log and state."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / "docker-calls.jsonl"
        self.state = directory / "docker-state.json"

    def calls(self) -> list[list[str]]:
        """Every docker command line since the last call, then forget them."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        self.log.unlink()
        return [json.loads(line) for line in lines]

    def add_container(self, name: str, status: str, labels: dict[str, str]) -> None:
        self.state.write_text(
            json.dumps(
                {
                    "containers": {name: {"status": status, "image": IMAGE, "labels": labels}},
                    "volumes": [],
                }
            )
        )


@pytest.fixture
def fake_docker(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    assert os.access(FAKE_DOCKER / "docker", os.X_OK), "tests/fake_docker/docker must be executable"
    fake = FakeDocker(tmp_path)
    monkeypatch.setenv("PATH", f"{FAKE_DOCKER}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(fake.state))
    return fake


class TDengineRest(BaseHTTPRequestHandler):
    """Answers POST /rest/sql as taosAdapter does, for the default user root:taosdata: "not ready" to the first
    `server.not_ready_answers` queries, as while taosd starts, then the server version."""

    def do_POST(self) -> None:
        sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.queries.append(sql)  # type: ignore[attr-defined]
        expected = "Basic " + b64encode(b"root:taosdata").decode()
        if self.path != "/rest/sql" or self.headers.get("Authorization") != expected:
            self._answer(401, {"code": 65535, "desc": "Authentication failure"})
        elif len(self.server.queries) <= self.server.not_ready_answers:  # type: ignore[attr-defined]
            # What taosAdapter answers while taosd is still starting.
            self._answer(200, {"code": 11, "desc": "Unable to establish connection"})
        else:
            self._answer(
                200, {"code": 0, "column_meta": [["server_version()", "VARCHAR", 8]], "data": [["3.3.7.5"]], "rows": 1}
            )

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tdengine_rest(state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 standing in for taosAdapter's REST API; the config's port points at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), TDengineRest)
    server.queries = []  # type: ignore[attr-defined]
    server.not_ready_answers = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("TAOSPRSP_TDENGINE_PORT", str(server.server_address[1]))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen]:
    """A live process taosprsp did not start."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def run_args(container: str, port: int) -> list[str]:
    return [
        "run",
        "-d",
        "--name",
        container,
        "--label",
        "taosprsp.managed=true",
        "-p",
        "127.0.0.1:6030:6030",
        "-p",
        f"127.0.0.1:{port}:6041",
        "-v",
        f"{os.environ['TAOSPRSP_DOCKER_VOLUME']}:/var/lib/taos",
        IMAGE,
    ]


def inspect_args(container: str) -> list[str]:
    return ["inspect", "--type", "container", container]


INFO = ["info", "--format", "{{.ServerVersion}}"]


# --- db up without Docker -----------------------------------------------------------------------------


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_db_up_without_a_docker_engine_exits_6_and_names_the_alternatives(state: Path) -> None:
    if _engine_answers():
        pytest.skip("a Docker engine runs here: `db up` would start TDengine")
    result = invoke("db", "up")
    assert result.exit_code == 6
    if shutil.which("docker"):
        assert "no Docker engine is running" in result.stderr
    else:
        assert "docker is not installed" in result.stderr
    assert "taosprsp db up --native" in result.stderr
    assert "--store embedded" in result.stderr


def test_db_up_without_a_docker_client_exits_6_and_says_docker_is_not_installed(
    state: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = invoke("db", "up")
    assert result.exit_code == 6
    assert "docker is not installed" in result.stderr
    assert "--native" in result.stderr and "--store embedded" in result.stderr


def test_db_up_native_without_tdengine_installed_exits_6_and_names_the_missing_binaries(
    state: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = invoke("db", "up", "--native")
    assert result.exit_code == 6
    assert "taosd and taosadapter are not on PATH" in result.stderr
    assert not (state / "taosd.pid").exists()


# --- db up with the fake docker -----------------------------------------------------------------------


def test_db_up_pulls_the_pinned_image_runs_it_and_waits_until_taosadapter_answers(
    fake_docker: FakeDocker,
    tdengine_rest: ThreadingHTTPServer,
) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    port = tdengine_rest.server_address[1]
    result = invoke("db", "up")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [INFO, inspect_args(container), ["pull", IMAGE], run_args(container, port)]
    assert "SELECT SERVER_VERSION()" in tdengine_rest.queries  # type: ignore[attr-defined]
    assert "TDengine 3.3.7.5 is up (created" in result.stdout
    assert f"http://127.0.0.1:{port}/rest/sql" in result.stdout


def test_db_up_no_pull_runs_the_image_without_pulling(
    fake_docker: FakeDocker, tdengine_rest: ThreadingHTTPServer
) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    result = invoke("db", "up", "--no-pull")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [INFO, inspect_args(container), run_args(container, tdengine_rest.server_address[1])]


def test_db_up_benchmark_prepopulates_the_database_with_taosbenchmark_in_the_container(
    fake_docker: FakeDocker,
    tdengine_rest: ThreadingHTTPServer,
) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    result = invoke("--json", "db", "up", "--benchmark")
    assert result.exit_code == 0, result.output
    calls = fake_docker.calls()
    assert calls[:4] == [
        INFO,
        inspect_args(container),
        ["pull", IMAGE],
        run_args(container, tdengine_rest.server_address[1]),
    ]
    assert calls[4:] == [["exec", container, "taosBenchmark", "-d", "power", "-t", "10", "-n", "10000", "-y"]]
    summary = json.loads(result.stdout)
    assert summary["action"] == "created" and summary["version"] == "3.3.7.5"
    assert "records/second" in summary["benchmark"]


def test_db_up_when_tdengine_already_answers_says_so_and_changes_nothing(
    fake_docker: FakeDocker,
    tdengine_rest: ThreadingHTTPServer,
) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    assert invoke("db", "up").exit_code == 0
    fake_docker.calls()
    result = invoke("db", "up")
    assert result.exit_code == 0, result.output
    assert "is already running" in result.stdout
    assert fake_docker.calls() == [INFO, inspect_args(container)]


def test_db_up_starts_a_stopped_container_again(fake_docker: FakeDocker, tdengine_rest: ThreadingHTTPServer) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    fake_docker.add_container(container, "exited", {"taosprsp.managed": "true"})
    result = invoke("--json", "db", "up")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [INFO, inspect_args(container), ["start", container]]
    assert json.loads(result.stdout)["action"] == "started"


def test_db_up_exits_4_when_taosadapter_does_not_answer_in_time(
    fake_docker: FakeDocker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    monkeypatch.setenv("TAOSPRSP_TDENGINE_PORT", str(free_port))
    result = invoke("db", "up", "--wait", "1s")
    assert result.exit_code == 4
    assert f"TDengine did not answer http://127.0.0.1:{free_port}/rest/sql within 1 s" in result.stderr
    assert f"docker logs {os.environ['TAOSPRSP_DOCKER_CONTAINER']}" in result.stderr


def test_db_up_wait_gives_up_after_the_wait_option_not_the_configured_wait(
    fake_docker: FakeDocker,
    tdengine_rest: ThreadingHTTPServer,
) -> None:
    tdengine_rest.not_ready_answers = 1_000  # type: ignore[attr-defined]
    result = invoke("db", "up", "--wait", "1s")
    assert result.exit_code == 4
    assert "within 1 s (last: code 11: Unable to establish connection)" in result.stderr
    # One probe, then one every 0.5 s until the deadline: at most 3 within 1 s, where the configured 5 s makes 11.
    assert len(tdengine_rest.queries) <= 3  # type: ignore[attr-defined]


def test_wait_ready_returns_the_version_once_taosadapter_answers(
    state: Path,
    tdengine_rest: ThreadingHTTPServer,
) -> None:
    tdengine_rest.not_ready_answers = 2  # type: ignore[attr-defined]
    target = endpoint(load_config().tdengine)
    assert lifecycle.wait_ready(target, 60) == "3.3.7.5"
    assert tdengine_rest.queries == ["SELECT SERVER_VERSION()"] * 3, "polled until ready, then stopped"  # type: ignore[attr-defined]


# --- teardown of the container ------------------------------------------------------------------------


def test_teardown_removes_the_container_taosprsp_created(
    fake_docker: FakeDocker, tdengine_rest: ThreadingHTTPServer
) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    assert invoke("db", "up").exit_code == 0
    fake_docker.calls()
    result = invoke("teardown")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [INFO, inspect_args(container), ["rm", "-f", container]]
    assert f"removed container {container}" in result.stdout


def test_teardown_volumes_also_removes_the_data_volume(
    fake_docker: FakeDocker, tdengine_rest: ThreadingHTTPServer
) -> None:
    container, volume = os.environ["TAOSPRSP_DOCKER_CONTAINER"], os.environ["TAOSPRSP_DOCKER_VOLUME"]
    assert invoke("db", "up").exit_code == 0
    fake_docker.calls()
    result = invoke("--json", "teardown", "--volumes")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [
        INFO,
        inspect_args(container),
        ["rm", "-f", container],
        ["volume", "inspect", volume],
        ["volume", "rm", volume],
    ]
    summary = json.loads(result.stdout)
    assert summary["container_removed"] and summary["volume_removed"]


def test_teardown_leaves_alone_a_container_taosprsp_did_not_create(fake_docker: FakeDocker) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    fake_docker.add_container(container, "running", {})
    result = invoke("teardown", "--volumes")
    assert result.exit_code == 0, result.output
    assert fake_docker.calls() == [INFO, inspect_args(container)]
    assert "was not created by taosprsp" in result.stdout


def test_teardown_twice_is_harmless(fake_docker: FakeDocker, tdengine_rest: ThreadingHTTPServer) -> None:
    container = os.environ["TAOSPRSP_DOCKER_CONTAINER"]
    assert invoke("db", "up").exit_code == 0
    assert invoke("teardown", "--volumes").exit_code == 0
    fake_docker.calls()
    result = invoke("teardown", "--volumes")
    assert result.exit_code == 0, result.output
    assert "nothing to stop" in result.stdout
    assert fake_docker.calls() == [
        INFO,
        inspect_args(container),
        ["volume", "inspect", os.environ["TAOSPRSP_DOCKER_VOLUME"]],
    ]


# --- background processes -----------------------------------------------------------------------------


def _wait_for_rows(store_path: Path, seconds: float = 20.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store_path.exists():
            store = EmbeddedStore(store_path, "meters")
            try:
                rows = store.count(get_dataset("meters"))
            except TaosprspError:
                rows = 0
            finally:
                store.close()
            if rows:
                return rows
        time.sleep(0.1)
    raise AssertionError(f"no rows in {store_path} after {seconds} s")


def test_background_producer_is_listed_by_ps_and_stopped_by_teardown_without_a_docker_engine(
    state: Path,
    fake_docker: FakeDocker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "taosprsp", "--json", "--store", "embedded", "produce", "--rate", "100", "--background"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pid = info["pid"]
    assert info["pidfile"] == str(state / "produce.pid")
    assert json.loads((state / "produce.pid").read_text())["start_time"] == lifecycle.process_start_time(pid)

    listed = json.loads(invoke("--json", "ps").stdout)
    assert [(p["name"], p["pid"], p["alive"]) for p in listed] == [("produce", pid, True)]
    _wait_for_rows(tmp_path / "embedded.sqlite")

    monkeypatch.setenv("FAKE_DOCKER_NO_ENGINE", "1")
    result = invoke("--json", "teardown")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stopped"] == [{"name": "produce", "pid": pid, "signal": "SIGTERM"}]
    assert summary["docker"].startswith("Docker skipped: no Docker engine is running")
    assert not (state / "produce.pid").exists()
    assert lifecycle.process_start_time(pid) is None
    assert lifecycle.list_processes(load_config()) == []
    # The child got the same command line, --json included: its summary is the log's last line.
    final = json.loads((state / "produce.log").read_text().splitlines()[-1])
    assert final["stopped_by"] == "signal" and final["rows_written"] > 0, (
        "SIGTERM lets the producer flush and summarize"
    )


def test_start_background_refuses_a_second_live_process_of_the_same_name(state: Path) -> None:
    config = load_config()
    first = lifecycle.start_background(config, "produce", ["--store", "embedded", "produce", "--rate", "10"])
    with pytest.raises(TaosprspError, match=f"produce is already running in the background \\(pid {first.pid}"):
        lifecycle.start_background(config, "produce", ["--store", "embedded", "produce", "--rate", "10"])
    assert json.loads(first.pidfile.read_text())["pid"] == first.pid


def _record(state: Path, name: str, pid: int, start_time: int | None) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    pidfile = state / f"{name}.pid"
    record = {
        "name": name,
        "pid": pid,
        "argv": ["sleep", "60"],
        "log": str(state / f"{name}.log"),
        "started_at": time.time(),
    }
    if start_time is not None:
        record["start_time"] = start_time
    pidfile.write_text(json.dumps(record))
    return pidfile


@pytest.mark.parametrize("recorded", ["wrong", "missing"])
def test_teardown_never_signals_a_process_taosprsp_did_not_start(
    state: Path,
    fake_docker: FakeDocker,
    stranger: subprocess.Popen,
    recorded: str,
) -> None:
    actual = lifecycle.process_start_time(stranger.pid)
    assert actual is not None
    pidfile = _record(state, "produce", stranger.pid, actual - 1 if recorded == "wrong" else None)
    result = invoke("teardown")
    assert result.exit_code == 0, result.output
    assert stranger.poll() is None, "teardown signalled a process it did not start"
    assert not pidfile.exists()
    assert (
        f"removed the stale pid file of produce (pid {stranger.pid}: "
        "the pid now belongs to a process taosprsp did not start; not signalled)"
    ) in result.stdout


def test_ps_lists_a_pid_file_whose_pid_belongs_to_another_process_as_not_alive(
    state: Path,
    stranger: subprocess.Popen,
) -> None:
    _record(state, "serve", stranger.pid, 1)
    result = invoke("--json", "ps")
    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    assert listed["name"] == "serve" and listed["pid"] == stranger.pid
    assert listed["alive"] is False and listed["uptime"] is None
