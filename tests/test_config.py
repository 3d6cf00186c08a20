"""The shared TOML config: precedence, the shipped files, and every error a user can make in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from taosprsp.config import Config, as_dict, format_duration, load_config, parse_duration, to_toml, tomllib
from taosprsp.endpoint import endpoint
from taosprsp.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taosprsp.toml"
    path.write_text(text)
    return path


def test_default_toml_documents_exactly_the_defaults() -> None:
    assert as_dict(load_config(CONFIGS / "default.toml", environ={}), masked=False) == as_dict(Config(), masked=False)


@pytest.mark.parametrize("name", ["meters.toml", "stocks.toml"])
def test_example_configs_load(name: str) -> None:
    config = load_config(CONFIGS / name, environ={})
    assert config.dataset.name in ("meters", "stocks")


def test_stocks_example_serves_its_own_table_names() -> None:
    config = load_config(CONFIGS / "stocks.toml", environ={})
    assert (config.stable, config.perspective_table, config.latest_table) == (
        "stocks",
        "stock_values",
        "stock_values_latest",
    )


def test_precedence_flag_over_environment_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9001\nlimit = 5\n[producer]\nrate = 10.0\n")
    environ = {"TAOSPRSP_SERVER_PORT": "9002", "TAOSPRSP_PRODUCER_RATE": "20"}
    config = load_config(path, overrides={"server": {"port": 9003}}, environ=environ)
    assert config.server.port == 9003
    assert config.producer.rate == 20.0
    assert config.server.limit == 5
    assert config.server.host == "127.0.0.1"


def test_password_comes_from_the_environment(tmp_path: Path) -> None:
    config = load_config(environ={"TAOSPRSP_TDENGINE_PASSWORD": "s3cret"})
    assert endpoint(config.tdengine).password == "s3cret"


def test_dsn_without_password_takes_the_configured_one() -> None:
    config = load_config(
        overrides={"tdengine": {"dsn": "taosws://admin@db.example:6042/power"}},
        environ={"TAOSPRSP_TDENGINE_PASSWORD": "pw"},
    )
    target = endpoint(config.tdengine)
    assert (target.host, target.port, target.user, target.password) == ("db.example", 6042, "admin", "pw")


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 8080\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert "server.prot" in message and str(path) in message and "'port'" in message


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[sever\].*'server'"):
        load_config(write(tmp_path, "[sever]\nport = 1\n"), environ={})


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.port .*expected an integer, got 'eighty'"):
        load_config(write(tmp_path, '[server]\nport = "eighty"\n'), environ={})
    with pytest.raises(ConfigError, match=r"viewer\.open .*expected true or false"):
        load_config(write(tmp_path, "[viewer]\nopen = 1\n"), environ={})
    with pytest.raises(ConfigError, match=r"bench\.batch_sizes .*a list of int"):
        load_config(write(tmp_path, '[bench]\nbatch_sizes = ["a"]\n'), environ={})


def test_wrong_type_in_environment_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.port in the environment: expected an integer"):
        load_config(environ={"TAOSPRSP_SERVER_PORT": "x"})


def test_bad_values_are_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="database.precision.*ms, us, ns"):
        load_config(overrides={"database": {"precision": "s"}}, environ={})
    with pytest.raises(ConfigError, match="store.kind"):
        load_config(overrides={"store": {"kind": "duck"}}, environ={})
    with pytest.raises(ConfigError, match="tdengine.dsn"):
        load_config(overrides={"tdengine": {"dsn": "http://x"}}, environ={})


def test_missing_and_invalid_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"), environ={})


def test_secrets_are_masked() -> None:
    config = load_config(
        overrides={"tdengine": {"dsn": "taosws://root:hunter2@h:6041", "password": "hunter2"}}, environ={}
    )
    shown = str(as_dict(config))
    assert "hunter2" not in shown and "****" in shown


@pytest.mark.parametrize(
    "text, seconds",
    [("250ms", 0.25), ("30s", 30.0), ("1d", 86400.0), ("2h", 7200.0), (5, 5.0), ("1.5", 1.5), ("", 0.0)],
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["3 weeks", "-1s", -1, True, "1e3s"])
def test_what_is_not_a_duration_is_refused_with_the_key(value) -> None:
    with pytest.raises(ConfigError, match=r"^server\.interval: expected a duration"):
        parse_duration(value, "server.interval")


def test_durations_are_parsed_once_into_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ninterval = "250ms"\nping_interval = 30\n[database]\nkeep = "30d"\n')
    config = load_config(path, environ={"TAOSPRSP_DOCKER_WAIT": "90s", "TAOSPRSP_PRODUCER_INTERVAL": "1m"})
    assert (config.server.interval, config.server.ping_interval, config.database.keep) == (0.25, 30.0, 30 * 86400.0)
    assert (config.docker.wait, config.producer.interval) == (90.0, 60.0)
    assert config.replace(server={"interval": "2s"}).server.interval == 2.0


def test_bad_duration_names_the_key_and_where_it_was(tmp_path: Path) -> None:
    path = write(tmp_path, '[tdengine]\nconnect_timeout = "soon"\n')
    with pytest.raises(ConfigError, match=rf"tdengine\.connect_timeout in {path}: expected a duration.*'soon'"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"docker\.wait in the environment: expected a duration"):
        load_config(environ={"TAOSPRSP_DOCKER_WAIT": "1 minute"})


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.1, 0.25, 1.5, 60.0, 90.0, 3600.0, 86400.0, 3650 * 86400.0, 2e-6])
def test_durations_are_shown_as_text_that_reads_back(seconds: float) -> None:
    text = format_duration(seconds)
    assert isinstance(text, str) and parse_duration(text) == pytest.approx(seconds)


def test_config_shows_durations_as_text() -> None:
    shown = as_dict(load_config(overrides={"server": {"interval": 0.25}}, environ={}))
    assert (shown["server"]["interval"], shown["database"]["keep"], shown["tdengine"]["connect_timeout"]) == (
        "250ms",
        "3650d",
        "1s",
    )


def test_to_toml_round_trips_every_setting(tmp_path: Path) -> None:
    title = 'Plant "North"\nline 2 \\ with a backslash'
    config = load_config(
        overrides={"viewer": {"title": title}, "server": {"interval": 0.25}, "docker": {"wait": 90.0}}, environ={}
    )
    path = write(tmp_path, to_toml(as_dict(config, masked=False)))
    reloaded = load_config(path, environ={})
    assert reloaded.viewer.title == title
    assert as_dict(reloaded, masked=False) == as_dict(config, masked=False)


def test_a_bad_choice_suggests_only_a_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"producer\.protocol .*'jsn' is not one of .*; did you mean 'json'\?"):
        load_config(write(tmp_path, '[producer]\nprotocol = "jsn"\n'), environ={})
    with pytest.raises(ConfigError) as far:
        load_config(write(tmp_path, '[producer]\nprotocol = "foo"\n'), environ={})
    assert str(far.value).endswith("'foo' is not one of stmt2, line, telnet, json")
    with pytest.raises(ConfigError) as unknown:
        load_config(write(tmp_path, "[server]\nzzz = 1\n"), environ={})
    assert "did you mean" not in str(unknown.value)


def test_choices_from_the_environment_are_checked() -> None:
    assert load_config(environ={"TAOSPRSP_SERVER_FEED": "poll"}).server.feed == "poll"
    with pytest.raises(ConfigError, match=r"server\.feed in the environment: 'push' is not one of auto, tmq, poll"):
        load_config(environ={"TAOSPRSP_SERVER_FEED": "push"})


def test_unrelated_taosprsp_variables_are_ignored() -> None:
    assert load_config(environ={"TAOSPRSP_TEST_DSN": "taosws://x"}) == Config()


def test_dashboard_panels_come_from_the_toml_config(tmp_path: Path) -> None:
    from taosprsp.dashboard import dashboard_document

    path = write(
        tmp_path,
        """
[[viewer.panels]]
table = "meters"
title = "Mean current by location"
config = { plugin = "Datagrid", group_by = ["location"], columns = ["current"], aggregates = { current = "avg" } }
""",
    )
    document = dashboard_document(load_config(path, environ={}))
    assert document["panels"] == [
        {
            "table": "meters",
            "title": "Mean current by location",
            "config": {
                "plugin": "Datagrid",
                "group_by": ["location"],
                "columns": ["current"],
                "aggregates": {"current": "avg"},
            },
        }
    ]
    shown = tomllib.loads(to_toml(as_dict(load_config(path, environ={}))))
    assert shown["viewer"]["panels"] == document["panels"]


def test_dashboard_layout_from_a_json_file(tmp_path: Path) -> None:
    from taosprsp.dashboard import dashboard_document

    layout = tmp_path / "layout.json"
    layout.write_text('{"panels": [{"table": "meters", "config": {"plugin": "Datagrid"}}]}')
    document = dashboard_document(load_config(overrides={"viewer": {"layout": str(layout)}}, environ={}))
    assert document["panels"][0]["config"] == {"plugin": "Datagrid"}
    layout.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be an object"):
        dashboard_document(load_config(overrides={"viewer": {"layout": str(layout)}}, environ={}))
