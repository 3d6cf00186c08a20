"""The config written out: as plain data in the form a config file takes, and as TOML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import tomli_w

from taosprsp.config.durations import format_duration, is_duration
from taosprsp.config.settings import SECRET_KEYS, SECTIONS, Config, section_types
from taosprsp.endpoint import mask_dsn


def as_dict(config: Config, masked: bool = True) -> dict[str, dict[str, Any]]:
    """The config as plain data in the form a config file takes: durations as text, secrets masked unless asked."""
    result: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        values = dataclasses.asdict(getattr(config, name))
        for key, expected in section_types(name).items():
            if is_duration(expected):
                values[key] = format_duration(values[key])
        if masked:
            for key in SECRET_KEYS & values.keys():
                if values[key]:  # an unset secret shows as unset, not as one that is set
                    values[key] = "****"
            if name == "tdengine" and values.get("dsn"):
                values["dsn"] = mask_dsn(values["dsn"])
            if name == "mqtt" and values.get("url"):
                values["url"] = mask_dsn(values["url"])  # user:password@ may be in the URL
        result[name] = values
    if config.datasets:
        result["datasets"] = {name: dataset.declaration() for name, dataset in config.datasets.items()}
    if config.operations:
        result["operations"] = {name: dict(table) for name, table in config.operations.items()}
    return result


def to_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """`as_dict`'s data as a TOML document that `load_config` reads back."""
    return tomli_w.dumps({section: dict(values) for section, values in data.items()})
