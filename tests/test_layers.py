"""Imports flow downstream only: each module of taosprsp imports from its own layer or the layers below it.

The layers follow the data: config -> dataset schema -> generator -> store -> feed -> Perspective -> viewer,
with the process lifecycle, the demo, the bench and the CLI on top. A module missing from LAYERS fails the
test, so a new module has to be placed deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "taosprsp"

LAYERS: list[set[str]] = [
    {"errors", "progress", "__init__"},
    {"datasets"},
    {"config", "endpoint"},
    {"generate"},
    {"stores"},
    {"schemaless", "seed", "produce", "pacing", "mqtt", "csvfiles"},
    {"feed", "derived", "wake", "ops", "batching"},
    {"dashboard", "web", "access", "history"},
    {"serve", "client"},
    {"lifecycle"},
    {"demo"},
    {"bench"},
    {"cli", "__main__"},
]


def layer_of(unit: str) -> int:
    for index, names in enumerate(LAYERS):
        if unit in names:
            return index
    raise AssertionError(f"taosprsp.{unit} has no layer: add it to LAYERS in {Path(__file__).name}")


def unit_of(path: Path) -> str:
    """The top-level unit a file belongs to: a module name, or the package it is inside."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def is_unit(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    units: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "taosprsp":
                if len(parts) > 1:
                    units.add(parts[1])
                else:
                    units.update(alias.name for alias in node.names if is_unit(alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "taosprsp" and len(parts) > 1:
                    units.add(parts[1])
    return units


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_module_imports_only_its_own_layer_or_below(path: Path) -> None:
    own = layer_of(unit_of(path))
    upstream = {unit for unit in imported_units(path) if layer_of(unit) > own}
    assert not upstream, f"{path.relative_to(PACKAGE.parent)} (layer {own}) imports upstream: {sorted(upstream)}"


def test_the_layer_check_sees_an_upstream_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from taosprsp.serve import LiveServer\nimport taosprsp.cli.common\n", encoding="utf-8")
    assert imported_units(sample) == {"serve", "cli"}
