"""The command tree and its contract with scripts: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from taosprsp import __version__
from taosprsp.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def listed_commands(help_text: str) -> set[str]:
    """The command names in the Commands panel of a help page."""
    panel = help_text[help_text.index("Commands") :]
    return set(re.findall(r"^│ ([a-z][a-z-]*) ", panel, re.MULTILINE))


def test_help_shows_the_whole_tree() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert listed_commands(result.stdout) == {
        "db",
        "produce",
        "serve",
        "viewer",
        "bench",
        "teardown",
        "ps",
        "demo",
        "config",
        "import",
        "export",
        "ops",
        "ingest",
        "forward",
    }
    assert listed_commands(invoke("db", "--help").stdout) == {"up", "seed", "status", "purge"}
    for group in ("ingest", "forward"):
        assert listed_commands(invoke(group, "--help").stdout) == {"mqtt"}
    for group in ("import", "export"):
        assert listed_commands(invoke(group, "--help").stdout) == {"csv"}
    assert listed_commands(invoke("config", "--help").stdout) == {"show"}
    assert listed_commands(invoke("ops", "--help").stdout) == {"run", "list"}


@pytest.mark.parametrize(
    "command",
    [
        "db seed",
        "db status",
        "db up",
        "produce",
        "serve",
        "viewer",
        "demo",
        "bench",
        "ps",
        "teardown",
        "config show",
        "ops run",
        "ops list",
    ],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0
    assert f"Usage: taosprsp {command} [OPTIONS]" in result.stdout
    assert re.search(rf"Examples?:\s+taosprsp .*{command.split()[-1]}", result.stdout)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"taosprsp {__version__}"


def test_unknown_config_key_is_one_red_line_with_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[producer]\nrat = 5\n")
    result = invoke("--config", str(path), "config", "show")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [f"error: unknown key producer.rat in {path}; did you mean 'rate'?"]


def test_unreachable_tdengine_exits_4_with_the_password_masked() -> None:
    dsn = "taosws://root:topsecret@127.0.0.1:9/power"
    result = invoke("db", "status", "--store", "tdengine", env={"TAOSPRSP_TDENGINE_DSN": dsn})
    assert result.exit_code == 4
    assert "127.0.0.1:9" in result.stderr and "topsecret" not in result.stderr and "****" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_adds_the_traceback() -> None:
    result = invoke("-v", "db", "status", "--store", "tdengine", env={"TAOSPRSP_TDENGINE_PORT": "9"})
    assert result.exit_code == 4 and "Traceback" in result.stderr


def test_bad_option_value_is_a_usage_error() -> None:
    assert invoke("produce", "--rate", "fast").exit_code == 2


def test_bad_duration_on_the_command_line_is_a_usage_error_naming_the_option() -> None:
    result = invoke("db", "seed", "--store", "embedded", "--span", "3 weeks")
    assert result.exit_code == 2 and "--span" in result.stderr and "3 weeks" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["produce", "--duration", "soon"],
        ["produce", "--interval", "-1s"],
        ["serve", "--interval", "fast"],
        ["db", "up", "--wait", "1 minute"],
    ],
)
def test_every_duration_option_refuses_a_bad_value_with_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and args[-2] in result.stderr and "expected a duration" in result.stderr


def test_bad_duration_in_a_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\ninterval = "3 weeks"\n')
    result = invoke("--config", str(path), "config", "show")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        f"error: server.interval in {path}: expected a duration such as '250ms', '30s' or '1d', got '3 weeks'"
    ]


@pytest.mark.parametrize(
    "args, option",
    [
        (["produce", "--protocol", "foo"], "--protocol"),
        (["produce", "--sink", "foo"], "--sink"),
        (["serve", "--feed", "push"], "--feed"),
        (["--store", "duck", "db", "status"], "--store"),
        (["db", "status", "--store", "duck"], "--store"),
    ],
)
def test_a_value_outside_a_closed_set_is_a_usage_error(args: list[str], option: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and option in result.stderr and "not one of" in result.stderr


def test_bad_protocol_in_a_config_file_lists_the_choices_without_a_far_fetched_guess(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[producer]\nprotocol = "foo"\n')
    result = invoke("--config", str(path), "config", "show")
    assert result.exit_code == 3
    assert result.stderr.strip() == f"error: producer.protocol in {path}: 'foo' is not one of stmt2, line, telnet, json"


def test_global_options_work_after_the_subcommand() -> None:
    hoist = typer.main.get_command(app).hoist_global_options
    assert hoist(["db", "seed", "--store", "embedded", "--rows", "5"]) == [
        "--store",
        "embedded",
        "db",
        "seed",
        "--rows",
        "5",
    ]
    assert hoist(["bench", "--json", "out.json"]) == ["bench", "--json", "out.json"]
    assert hoist(["produce", "--json", "-q", "--store=embedded"]) == ["--json", "-q", "--store=embedded", "produce"]
    assert hoist(["--store", "embedded", "bench", "--json", "x.json"]) == [
        "--store",
        "embedded",
        "bench",
        "--json",
        "x.json",
    ]
    assert hoist(["-c", "my.toml", "produce", "-vv"]) == ["-c", "my.toml", "-vv", "produce"]
    assert hoist(["-c", "db", "produce", "--json"]) == ["-c", "db", "--json", "produce"]


def test_bench_keeps_its_own_json_path_option(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "bench.json"
    result = invoke("bench", "--store", "embedded", "--json", str(target))
    assert result.exit_code == 2
    assert f"--json {target}: the directory {target.parent} does not exist" in result.stderr


def test_global_json_after_the_subcommand_gives_json() -> None:
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["source"] == "defaults"


def test_serve_on_a_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", "--store", "embedded", "--port", str(port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_seed_prints_a_summary_and_json_for_scripts() -> None:
    human = invoke("db", "seed", "--store", "embedded", "--rows", "2000", "--tables", "4")
    assert human.exit_code == 0 and "2,000 rows" in human.stdout and "rows/s" in human.stdout
    machine = invoke("--json", "db", "seed", "--store", "embedded", "--rows", "1000", "--tables", "4")
    summary = json.loads(machine.stdout)
    assert summary["rows"] == 1000 and summary["rows_per_second"] > 0


def test_status_reports_rows_as_json() -> None:
    invoke("db", "seed", "--store", "embedded", "--rows", "500")
    status = json.loads(invoke("--json", "--store", "embedded", "db", "status").stdout)
    assert status["reachable"] is True and status["rows"] == 500


def test_config_show_masks_the_password_and_reflects_flags() -> None:
    result = invoke("--json", "config", "show", "--store", "embedded", env={"TAOSPRSP_TDENGINE_PASSWORD": "pw123"})
    shown = json.loads(result.stdout)
    assert shown["tdengine"]["password"] == "****" and shown["store"]["kind"] == "embedded"
    assert "pw123" not in result.stdout


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_embedded_store_never_touches_the_network(store_kind, monkeypatch) -> None:
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the embedded store opened a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert invoke("db", "seed", "--store", "embedded").exit_code == 0
    assert invoke("db", "status", "--store", "embedded").exit_code == 0


def test_auto_store_falls_back_to_embedded_with_a_notice() -> None:
    result = invoke("db", "seed", env={"TAOSPRSP_TDENGINE_PORT": "9"})
    assert result.exit_code == 0
    assert "notice: TDengine at 127.0.0.1:9 did not answer; using the embedded store" in result.stderr


def test_viewer_refuses_a_url_that_is_not_a_websocket() -> None:
    result = invoke("viewer", "--ws", "localhost:8080", "--no-open")
    assert result.exit_code == 2 and "--ws must be a WebSocket URL" in result.stderr
