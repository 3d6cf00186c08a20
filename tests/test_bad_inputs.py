"""Bad inputs end as one red line on stderr and the documented exit code, never a traceback (issue 12).

Each case is a real command line run through the CLI: 2 for a bad command line, 3 for a bad config file or
environment variable, 1 for a store or directory taosprsp cannot use. Cases that need a process of their
own (a read-only working directory, a signal, what the interpreter prints at exit) run as subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taosprsp import __version__
from taosprsp.cli import app
from taosprsp.config import Config, load_config
from taosprsp.endpoint import Endpoint, mask_dsn
from taosprsp.errors import ConfigError, ExitCode, TaosprspError
from taosprsp.produce import ProduceOptions
from taosprsp.web import http_url, listen

runner = CliRunner()
GARBAGE = "garbage.sqlite"
DAMAGED = "damaged.sqlite"
PAGE = 4096


def only_line(stderr: str) -> str:
    """The one line a failed command prints, after checking it is one line and no traceback."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


def latin1_file(name: str, text: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).write_bytes(text.encode("latin-1"))


def text_file(name: str, text: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).write_text(text)


def make_directory(name: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).mkdir()


def garbage_store(directory: Path) -> None:
    (directory / GARBAGE).write_bytes(b"not a database, just text\n" * 1000)


def damaged_store(directory: Path) -> None:
    """A real store whose pages past the schema are overwritten in part, as a disk fault or a bad copy would."""
    seeded = runner.invoke(
        app,
        ["--store", "embedded", "db", "seed", "--rows", "20000", "--tables", "4"],
        env={"TAOSPRSP_STORE_PATH": str(directory / DAMAGED)},
    )
    assert seeded.exit_code == 0, seeded.stderr
    path = directory / DAMAGED
    with path.open("r+b") as file:
        for start in range(2 * PAGE, path.stat().st_size, PAGE):
            file.seek(start + 8)
            file.write(b"\xff" * 64)


@dataclass(frozen=True)
class Case:
    """A command line, the environment it runs in, and the exit code and message it must end with."""

    args: tuple[str, ...]
    code: ExitCode
    says: str
    env: dict[str, str] = field(default_factory=dict)
    files: Callable[[Path], None] | None = None


def case(
    id: str,
    args: str,
    code: ExitCode,
    says: str,
    env: dict[str, str] | None = None,
    files: Callable[[Path], None] | None = None,
) -> pytest.ParameterSet:
    return pytest.param(Case(tuple(args.split()), code, says, env or {}, files), id=id)


USAGE, CONFIG, FAILURE = ExitCode.USAGE, ExitCode.CONFIG, ExitCode.FAILURE
ON_GARBAGE = {"TAOSPRSP_STORE_PATH": GARBAGE}
ON_DAMAGED = {"TAOSPRSP_STORE_PATH": DAMAGED}
NOT_SQLITE = "is not a usable SQLite database"

CASES = [
    # inputs that printed a traceback
    case(
        "config-not-utf8",
        "--config latin1.toml config show",
        CONFIG,
        "latin1.toml is not UTF-8 text",
        files=latin1_file("latin1.toml", '[viewer]\ntitle = "café"\n'),
    ),
    case(
        "layout-not-utf8",
        "serve --store embedded --port 0",
        CONFIG,
        "viewer.layout: latin1.json is not UTF-8 text",
        env={"TAOSPRSP_VIEWER_LAYOUT": "latin1.json"},
        files=latin1_file("latin1.json", '{"panels": [], "title": "café"}'),
    ),
    case("rate-inf", "produce --rate inf --count 1", USAGE, "expected a finite number, got inf"),
    case("rate-nan", "produce --rate nan --count 1", USAGE, "--rate"),
    case("rate-inf-env", "produce --count 1", CONFIG, "finite number", env={"TAOSPRSP_PRODUCER_RATE": "inf"}),
    case("rate-nan-env", "produce --count 1", CONFIG, "finite number", env={"TAOSPRSP_PRODUCER_RATE": "nan"}),
    case("interval-0", "produce --interval 0ms --count 1", USAGE, "--interval': must be at least 1ms"),
    case(
        "interval-tiny-env",
        "produce --count 1",
        CONFIG,
        "producer.interval in the environment: must be 0 (pace by rate) or at least 1ms",
        env={"TAOSPRSP_PRODUCER_INTERVAL": "10us"},
    ),
    case(
        "store-path-directory",
        "db seed --store embedded",
        FAILURE,
        "store.path: a-directory is a directory",
        env={"TAOSPRSP_STORE_PATH": "a-directory"},
        files=make_directory("a-directory"),
    ),
    case("store-path-empty", "db seed --store embedded", CONFIG, "store.path", env={"TAOSPRSP_STORE_PATH": ""}),
    case(
        "store-path-under-a-file",
        "db seed --store embedded",
        FAILURE,
        "store.path: a-file is a file, not a directory",
        env={"TAOSPRSP_STORE_PATH": "a-file/store.sqlite"},
        files=text_file("a-file", "x"),
    ),
    case("garbage-seed", "db seed --store embedded", FAILURE, NOT_SQLITE, ON_GARBAGE, garbage_store),
    case("garbage-status", "db status --store embedded", FAILURE, NOT_SQLITE, ON_GARBAGE, garbage_store),
    case("garbage-produce", "produce --store embedded --count 10", FAILURE, NOT_SQLITE, ON_GARBAGE, garbage_store),
    case("garbage-demo", "demo --store embedded --port 0", FAILURE, NOT_SQLITE, ON_GARBAGE, garbage_store),
    case("garbage-serve", "serve --store embedded --port 0", FAILURE, NOT_SQLITE, ON_GARBAGE, garbage_store),
    case("damaged-seed", "db seed --store embedded", FAILURE, "damaged.sqlite is damaged", ON_DAMAGED, damaged_store),
    case(
        "damaged-status",
        "db status --store embedded",
        FAILURE,
        "is damaged (SQLite quick_check",
        ON_DAMAGED,
        damaged_store,
    ),
    case("damaged-produce", "produce --store embedded --count 10", FAILURE, NOT_SQLITE, ON_DAMAGED, damaged_store),
    case("damaged-demo", "demo --store embedded --port 0", FAILURE, NOT_SQLITE, ON_DAMAGED, damaged_store),
    case("damaged-serve", "serve --store embedded --port 0", FAILURE, NOT_SQLITE, ON_DAMAGED, damaged_store),
    case(
        "state-dir-is-a-file",
        "produce --store embedded --count 1 --background",
        FAILURE,
        "state.dir:",
        env={"TAOSPRSP_STATE_DIR": "a-file"},
        files=text_file("a-file", "x"),
    ),
    # validation and messages
    case("duration-0", "produce --duration 0", USAGE, "leave --duration out to run until stopped"),
    case("serve-interval-0", "serve --interval 0ms", USAGE, "--interval': must be at least 1ms"),
    case("serve-interval-0-env", "config show", CONFIG, "server.interval", env={"TAOSPRSP_SERVER_INTERVAL": "0"}),
    case(
        "max-message-mb-0",
        "--config c.toml config show",
        CONFIG,
        "server.max_message_mb in c.toml: must be positive, got 0",
        files=text_file("c.toml", "[server]\nmax_message_mb = 0\n"),
    ),
    case(
        "max-message-mb-negative-env",
        "config show",
        CONFIG,
        "server.max_message_mb in the environment: must be positive",
        env={"TAOSPRSP_SERVER_MAX_MESSAGE_MB": "-1"},
    ),
    case(
        "stable-with-a-newline",
        "--config c.toml config show",
        CONFIG,
        "dataset.stable 'meters\\n' is not a valid TDengine identifier",
        files=text_file("c.toml", '[dataset]\nstable = "meters\\n"\n'),
    ),
    case(
        "mistyped-variable",
        "config show",
        CONFIG,
        "unknown variable TAOSPRSP_PRODUCER_RAT in the environment; did you mean 'TAOSPRSP_PRODUCER_RATE'?",
        env={"TAOSPRSP_PRODUCER_RAT": "5"},
    ),
    case(
        "layout-is-a-directory",
        "serve --store embedded --port 0",
        CONFIG,
        "viewer.layout: layouts is a directory",
        env={"TAOSPRSP_VIEWER_LAYOUT": "layouts"},
        files=make_directory("layouts"),
    ),
    case(
        "status-of-a-mistyped-store",
        "db status --store embedded",
        FAILURE,
        "no embedded store at typo/store.sqlite",
        env={"TAOSPRSP_STORE_PATH": "typo/store.sqlite"},
    ),
    case("rate-and-interval", "produce --rate 5000 --interval 1s", USAGE, "both set the pace"),
    case(
        "rate-and-interval-in-a-file",
        "--config c.toml produce",
        CONFIG,
        "producer.rate and producer.interval both set the pace in c.toml",
        files=text_file("c.toml", '[producer]\nrate = 5000.0\ninterval = "1s"\n'),
    ),
    case("bad-duration", "produce --duration soon", USAGE, "Invalid value for '--duration'"),
    case("bad-span", "db seed --span 3weeks", USAGE, "Invalid value for '--span'"),
    case("bad-interval", "serve --interval fast", USAGE, "Invalid value for '--interval'"),
    case("bad-feed", "serve --feed push", USAGE, "Invalid value for '--feed'"),
    case("bad-protocol", "produce --protocol jsn", USAGE, "Invalid value for '--protocol'"),
    case("bad-sink", "produce --sink junk", USAGE, "Invalid value for '--sink'"),
    case("unknown-option", "produce --rat 5", USAGE, "No such option: --rat"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad", CASES)
def test_a_bad_input_is_one_line_and_the_documented_exit_code(bad: Case, tmp_path: Path) -> None:
    if bad.files:
        bad.files(tmp_path)
    result = runner.invoke(app, list(bad.args), env=bad.env)
    line = only_line(result.stderr)
    assert result.exit_code == bad.code, line
    assert line.startswith("error: ") and bad.says in line


def run_taosprsp(
    *args: str, cwd: Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "taosprsp", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def without_file_privileges() -> tuple[str, ...]:
    """A command prefix under which file permissions hold: root ignores them unless its capability is dropped."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to hold")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    yield directory
    directory.chmod(0o755)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--store", "embedded", "produce", "--count", "10"], "store.path: cannot create the directory .taosprsp"),
        (["--store", "embedded", "db", "status"], "no embedded store at .taosprsp/embedded.sqlite"),
        (["--store", "embedded", "produce", "--count", "1", "--background"], "state.dir: cannot create the directory"),
    ],
    ids=["produce", "status", "background"],
)
def test_a_read_only_working_directory_is_one_line(read_only_directory: Path, args: list[str], says: str) -> None:
    result = run_taosprsp(*args, cwd=read_only_directory, prefix=without_file_privileges())
    assert result.returncode == ExitCode.FAILURE
    assert says in only_line(result.stderr)
    assert not list(read_only_directory.iterdir())


def test_a_store_path_in_a_read_only_directory_is_one_line(read_only_directory: Path) -> None:
    path = read_only_directory / "store.sqlite"
    result = run_taosprsp(
        "--store",
        "embedded",
        "db",
        "seed",
        cwd=read_only_directory.parent,
        env={"TAOSPRSP_STORE_PATH": str(path)},
        prefix=without_file_privileges(),
    )
    assert result.returncode == ExitCode.FAILURE
    assert f"the directory {read_only_directory} is not writable" in only_line(result.stderr)


def test_serve_on_a_garbage_file_prints_one_line_even_at_exit(tmp_path: Path) -> None:
    garbage_store(tmp_path)
    result = run_taosprsp(
        "--store", "embedded", "serve", "--port", "0", cwd=tmp_path, env={"TAOSPRSP_STORE_PATH": GARBAGE}
    )
    assert result.returncode == ExitCode.FAILURE
    assert NOT_SQLITE in only_line(result.stderr)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "args, sig, code",
    [
        (["serve", "--port", "0"], signal.SIGINT, ExitCode.INTERRUPTED),
        (["serve", "--port", "0"], signal.SIGTERM, ExitCode.OK),
        (["produce", "--rate", "200"], signal.SIGINT, ExitCode.INTERRUPTED),
    ],
    ids=["serve-sigint", "serve-sigterm", "produce-sigint"],
)
def test_sigint_exits_130_and_sigterm_0(tmp_path: Path, args: list[str], sig: signal.Signals, code: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "--json", "--store", "embedded", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if args[0] == "serve":
            assert json.loads(process.stdout.readline())["url"], "serve never said it was ready"
        else:
            assert wait_for_writes(tmp_path / ".taosprsp" / "embedded.sqlite-wal"), "the producer wrote nothing"
    finally:
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    if args[0] == "produce":
        assert json.loads(stdout)["stopped_by"] == "signal", "the summary comes before the exit code"


def wait_for_writes(wal: Path) -> bool:
    """Whether the store's write-ahead log holds writes within 30 s: the producer is in its loop by then."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 0:
            return True
        time.sleep(0.1)
    return False


def test_db_status_never_creates_the_store_or_its_directories(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "status", "--store", "embedded"], env={"TAOSPRSP_STORE_PATH": "typo/x.sqlite"})
    assert result.exit_code == ExitCode.FAILURE
    assert list(tmp_path.iterdir()) == []


def test_a_password_holding_at_signs_is_masked_whole() -> None:
    dsn = "taosws://root:p@ss:w/rd@db.example:6041/power"
    assert mask_dsn(dsn) == "taosws://root:****@db.example:6041/power"
    assert mask_dsn("taosws://root:p@ss@word@host:6041") == "taosws://root:****@host:6041"
    result = runner.invoke(
        app, ["--json", "config", "show"], env={"TAOSPRSP_TDENGINE_DSN": "taosws://root:p@ss@word@h:6041"}
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["tdengine"]["dsn"] == "taosws://root:****@h:6041"
    assert "ss@word" not in result.stdout


def test_an_ipv6_host_is_bracketed_in_urls() -> None:
    assert http_url("::1", 8080) == "http://[::1]:8080/"
    assert http_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/"
    assert Endpoint("::1", 6041, "root", "pw").dsn(masked=True) == "ws://root:****@[::1]:6041"


@pytest.mark.parametrize("host", ["256.1.1.1", "no-such-host.invalid"])
def test_a_host_that_is_not_this_machine_is_blamed_not_the_port(host: str) -> None:
    import tornado.web

    with pytest.raises(TaosprspError) as error:
        listen(tornado.web.Application([]), host, 0)
    message = str(error.value)
    assert f"cannot listen on {host}: not an address of this machine" in message and "--port" not in message


def test_variables_that_are_not_settings_are_listed_and_allowed() -> None:
    environ = {
        "TAOSPRSP_TEST_DSN": "taosws://x",
        "TAOSPRSP_CONFIG": "",
        "TAOSPRSP_VIEWER_DIR": "/nowhere",
    }
    assert load_config(environ=environ) == Config()
    with pytest.raises(ConfigError, match="TAOSPRSP_STORE_KIN .*'TAOSPRSP_STORE_KIND'"):
        load_config(environ={"TAOSPRSP_STORE_KIN": "embedded"})


def test_the_pace_set_in_the_higher_layer_wins() -> None:
    by_flag = load_config(overrides={"producer": {"interval": 1.0}}, environ={"TAOSPRSP_PRODUCER_RATE": "5000"})
    assert by_flag.producer.interval == 1.0
    assert ProduceOptions.from_settings(by_flag.producer, 10).rate == 250.0
    by_rate = load_config(overrides={"producer": {"rate": 5000.0}}, environ={"TAOSPRSP_PRODUCER_INTERVAL": "1s"})
    assert by_rate.producer.interval == 0.0
    assert ProduceOptions.from_settings(by_rate.producer, 10).rate == 5000.0


def test_a_bad_value_from_the_command_line_is_exit_2_and_from_a_file_exit_3(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as flag:
        load_config(overrides={"server": {"interval": 0.0}}, environ={})
    assert flag.value.exit_code == ExitCode.USAGE
    path = tmp_path / "c.toml"
    path.write_text('[server]\ninterval = "0s"\n')
    with pytest.raises(ConfigError) as file:
        load_config(path, environ={})
    assert file.value.exit_code == ExitCode.CONFIG and str(path) in str(file.value)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_duration_must_be_finite(value: float) -> None:
    with pytest.raises(ConfigError, match="expected a duration"):
        load_config(overrides={"server": {"ping_interval": value}}, environ={})


def test_produce_options_refuse_what_cannot_run() -> None:
    with pytest.raises(TaosprspError, match="leave --duration out") as zero:
        ProduceOptions(duration=0.0)
    assert zero.value.exit_code == ExitCode.USAGE
    with pytest.raises(ConfigError, match="producer.rate"):
        ProduceOptions(rate=float("inf"))
    with pytest.raises(TaosprspError, match="count"):
        ProduceOptions(count=0)


def test_version_and_short_flag_clusters_work_after_the_subcommand() -> None:
    version = runner.invoke(app, ["config", "show", "--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"taosprsp {__version__}"
    verbose = runner.invoke(app, ["db", "status", "--store", "tdengine", "-qv"], env={"TAOSPRSP_TDENGINE_PORT": "9"})
    assert verbose.exit_code == ExitCode.UNREACHABLE and "Traceback" in verbose.stderr


def test_a_store_file_this_user_cannot_write_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    seeded = runner.invoke(app, ["--store", "embedded", "db", "seed"], env={"TAOSPRSP_STORE_PATH": str(path)})
    assert seeded.exit_code == 0, seeded.stderr
    path.chmod(0o444)
    result = run_taosprsp(
        "--store",
        "embedded",
        "produce",
        "--count",
        "10",
        cwd=tmp_path,
        env={"TAOSPRSP_STORE_PATH": str(path)},
        prefix=without_file_privileges(),
    )
    assert result.returncode == ExitCode.FAILURE
    assert f"store.path: {path} is not readable and writable by this user" in only_line(result.stderr)
