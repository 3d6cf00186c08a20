"""The command tree and its contract with scripts: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taosprsp import __version__
from taosprsp.cli import app, hoist_global_options

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def test_help_shows_the_whole_tree() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("db", "produce", "serve", "viewer", "bench", "teardown", "ps", "demo", "config"):
        assert command in result.stdout
    db_help = invoke("db", "--help").stdout
    for command in ("up", "seed", "status"):
        assert command in db_help


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


def test_bad_duration_names_the_option() -> None:
    result = invoke("db", "seed", "--store", "embedded", "--span", "3 weeks")
    assert result.exit_code == 3 and "--span" in result.stderr


def test_global_options_work_after_the_subcommand() -> None:
    assert hoist_global_options(["db", "seed", "--store", "embedded", "--rows", "5"]) == \
        ["--store", "embedded", "db", "seed", "--rows", "5"]
    assert hoist_global_options(["bench", "--json", "out.json"]) == ["bench", "--json", "out.json"]
    assert hoist_global_options(["produce", "--json", "-q", "--store=embedded"]) == ["--json", "-q", "--store=embedded", "produce"]
    assert hoist_global_options(["--store", "embedded", "bench", "--json", "x.json"]) == ["--store", "embedded", "bench", "--json", "x.json"]
    assert hoist_global_options(["-c", "my.toml", "produce", "-v"]) == ["-c", "my.toml", "-v", "produce"]


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
    assert invoke("db", "status", "--store", "embedded").exit_code == 0


def test_auto_store_falls_back_to_embedded_with_a_notice() -> None:
    result = invoke("db", "status", env={"TAOSPRSP_TDENGINE_PORT": "9"})
    assert result.exit_code == 0
    assert "notice: TDengine at 127.0.0.1:9 did not answer; using the embedded store" in result.stderr


def test_viewer_refuses_a_url_that_is_not_a_websocket() -> None:
    result = invoke("viewer", "--ws", "localhost:8080", "--no-open")
    assert result.exit_code == 2 and "--ws must be a WebSocket URL" in result.stderr
