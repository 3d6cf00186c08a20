"""The built-in datasets, `meters` and `stocks`: declarations shipped as TOML beside this module, read by the
same code as a config's `[datasets.NAME]`."""

from __future__ import annotations

import sys
from importlib import resources

from taosprsp.datasets.declare import Dataset, declare

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

BUILTIN_NAMES = ("meters", "stocks")


def _load(name: str) -> Dataset:
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return declare(name, tomllib.loads(text), f"built-in {name}.toml")


BUILTINS: dict[str, Dataset] = {name: _load(name) for name in BUILTIN_NAMES}
