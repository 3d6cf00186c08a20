"""Fixtures that build real things: an embedded store in a temp dir, TDengine when TAOSPRSP_TEST_DSN is set.

Each TDengine test works in a database of its own (`taosprsp_test_<random>`, one vgroup: a small server has
few vnodes) and drops it afterwards, passed or failed, with its topic and consumer groups. At the end of a
run the server is checked: anything of the tests' still there is removed, and fails the run. One test run
per server at a time: the check would take a concurrent run's databases for leftovers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taosprsp.config import Config, load_config
from taosprsp.errors import TaosprspError
from taosprsp.stores import Store, open_store, open_tdengine
from taosprsp.stores.leftovers import find_leftovers, remove_leftovers

TEST_DSN = os.environ.get("TAOSPRSP_TEST_DSN", "")
NEEDS_TDENGINE = "needs a live TDengine: set TAOSPRSP_TEST_DSN=taosws://root:taosdata@127.0.0.1:6041"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_DSN:
        return
    skip = pytest.mark.skip(reason=NEEDS_TDENGINE)
    for item in items:
        if "tdengine" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TAOSPRSP_* setting of the developer's shell leaks into a test; state stays in the test's dir."""
    for name in list(os.environ):
        if name.startswith("TAOSPRSP_") and name != "TAOSPRSP_TEST_DSN":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def store_config(kind: str, tmp_path: Path, **sections: dict) -> Config:
    """A config for `kind`: a temp SQLite file, or a fresh database on the test TDengine."""
    overrides: dict[str, dict] = {
        "store": {"kind": kind, "path": str(tmp_path / "store.sqlite")},
        "state": {"dir": str(tmp_path / "state")},
    }
    if kind == "tdengine":
        overrides["tdengine"] = {"dsn": TEST_DSN}
        overrides["database"] = {"name": f"taosprsp_test_{uuid.uuid4().hex[:10]}", "vgroups": 1}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_config(overrides=overrides, environ={})


def drop_test_database(config: Config) -> None:
    """Drop a TDengine test's database with its topics and consumer groups (nothing for the embedded store)."""
    if config.store.kind != "tdengine":
        return
    with open_store(config) as store:
        store.drop(config.declared_dataset)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On a TDengine run, fail the run if any test left a database, topic or consumer group on the server,
    after removing it so that the next run starts clean."""
    if not TEST_DSN:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    config = load_config(overrides={"tdengine": {"dsn": TEST_DSN}}, environ={})
    try:
        with open_tdengine(config) as store:
            found = find_leftovers(store, idle_groups=False)
            remove_leftovers(store, found)
    except TaosprspError as exc:
        reporter.write_line(f"could not check the test server for what the tests left: {exc}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if found:
        reporter.write_line(f"left on the test server by the tests (now removed): {'; '.join(found.lines())}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


STORE_KINDS = [
    pytest.param("embedded", id="embedded"),
    pytest.param("tdengine", id="tdengine", marks=pytest.mark.tdengine),
]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def config(store_kind: str, tmp_path: Path) -> Iterator[Config]:
    """The config of a store of every kind that can run here; a TDengine database is dropped afterwards."""
    cfg = store_config(store_kind, tmp_path)
    yield cfg
    drop_test_database(cfg)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    opened = open_store(config)
    yield opened
    opened.close()
