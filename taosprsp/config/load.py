"""Loading: the TOML file, the environment and the command line layered over the defaults, in precedence order.

Precedence, highest first: command-line flag > `TAOSPRSP_<SECTION>_<KEY>` environment variable >
`--config` file > the defaults of `taosprsp.config.settings`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from taosprsp.config.checks import closest, exit_code, validate
from taosprsp.config.durations import is_duration, parse_duration
from taosprsp.config.settings import (
    COMMAND_LINE,
    ENV_PREFIX,
    ENVIRONMENT,
    OTHER_VARIABLES,
    SECTIONS,
    Config,
    section_types,
)
from taosprsp.datasets import Dataset, declare
from taosprsp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        return f"a list of {item.__name__}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}[expected]


def _coerce(section: str, key: str, value: Any, expected: Any, where: str, from_text: bool) -> Any:
    """`value` as `expected`, or a ConfigError naming the key and the expected type or values."""
    name = f"{section}.{key}"

    def wrong() -> ConfigError:
        return ConfigError(f"{name} in {where}: expected {_type_name(expected)}, got {value!r}")

    if is_duration(expected):
        return parse_duration(value, f"{name} in {where}")
    if typing.get_origin(expected) is Literal:
        choices = [str(choice) for choice in typing.get_args(expected)]
        value = str(value).strip() if from_text else value
        if value not in choices:
            shown = f"{value!r} is not one of {', '.join(choices)}"
            raise ConfigError(f"{name} in {where}: {shown}{closest(str(value), choices)}")
        return value
    if from_text:
        text = str(value).strip()
        try:
            if expected is bool:
                lowered = text.lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise wrong()
                return lowered in ("1", "true", "yes", "on")
            if expected is int:
                return int(text)
            if expected is float:
                return float(text)
            if typing.get_origin(expected) is list:
                (item,) = typing.get_args(expected)
                return [item(part.strip()) for part in text.split(",") if part.strip()]
            if expected is dict:
                # an inline TOML table, as in a file: TAOSPRSP_MQTT_FIELDS='{ current = "m.i" }'
                parsed = tomllib.loads(f"value = {text}")["value"]  # TOMLDecodeError is a ValueError
                if not isinstance(parsed, dict):
                    raise wrong()
                return parsed
        except ValueError:
            raise wrong() from None
        return text
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(expected) is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise wrong()
        return value
    if expected in (int, float) and isinstance(value, bool):
        raise wrong()
    if not isinstance(value, expected):
        raise wrong()
    return value


def _apply(
    layers: dict[str, dict[str, Any]],
    origins: dict[str, str],
    raw: Mapping[str, Any],
    where: str,
    from_text: bool = False,
) -> None:
    try:
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown section [{section}] in {where}{closest(section, list(SECTIONS))}")
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] in {where} must be a table of keys")
            types_ = section_types(section)
            for key, value in values.items():
                if key not in types_:
                    raise ConfigError(f"unknown key {section}.{key} in {where}{closest(key, list(types_))}")
                coerced = _coerce(section, key, value, types_[key], where, from_text)
                if isinstance(coerced, float) and not math.isfinite(coerced):
                    raise ConfigError(f"{section}.{key} in {where}: expected a finite number, got {value!r}")
                layers.setdefault(section, {})[key] = coerced
                origins[f"{section}.{key}"] = where
    except ConfigError as exc:
        exc.exit_code = exit_code(where)
        raise


def _environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The `TAOSPRSP_<SECTION>_<KEY>` variables as settings.

    Any other TAOSPRSP_* name, except those in OTHER_VARIABLES, is an error naming the closest valid one: a
    mistyped variable is refused as a mistyped key in a file is, not silently ignored.
    """
    settings = {
        f"{ENV_PREFIX}{section}_{key}".upper(): (section, key) for section in SECTIONS for key in section_types(section)
    }
    found: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if name in settings:
            section, key = settings[name]
            found.setdefault(section, {})[key] = value
        elif name.startswith(ENV_PREFIX) and name not in OTHER_VARIABLES:
            known = [*settings, *OTHER_VARIABLES]
            raise ConfigError(f"unknown variable {name} in the environment{closest(name, known)}")
    return found


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    base: Config | None = None,
) -> Config:
    """Build the effective config from defaults (or `base`), a TOML file, the environment and overrides.

    `overrides` are command-line values, `{section: {key: value}}`; `None` values are ignored.
    """
    layers: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = dict(base.origins) if base else {}
    source = base.source if base else "defaults"
    datasets: dict[str, Dataset] = dict(base.datasets) if base else {}
    operations: dict[str, Mapping[str, Any]] = dict(base.operations) if base else {}
    if path is not None:
        file = Path(path)
        raw = _read_toml(file)
        datasets.update(_declarations(raw.pop("datasets", {}), str(file)))
        if "operations" in raw:
            operations = _operations(raw.pop("operations"), str(file))
            origins["operations"] = str(file)
        _apply(layers, origins, raw, str(file))
        source = str(file)
    env = os.environ if environ is None else environ
    if base is None:
        _apply(layers, origins, _environment(env), ENVIRONMENT, from_text=True)
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        _apply(layers, origins, cleaned, COMMAND_LINE)
    start = base or Config()
    sections = {name: dataclasses.replace(getattr(start, name), **layers.get(name, {})) for name in SECTIONS}
    config = _one_pace(Config(**sections, source=source, origins=origins, datasets=datasets, operations=operations))
    validate(config)
    return config


def _declarations(raw: Any, where: str) -> dict[str, Dataset]:
    """The datasets under `[datasets.NAME]` of a config file (the shape is in `taosprsp.datasets.declare`)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[datasets] in {where} must hold one table per dataset, [datasets.NAME]")
    return {name: declare(name, declaration, where) for name, declaration in raw.items()}


def _operations(raw: Any, where: str) -> dict[str, Mapping[str, Any]]:
    """The tables under `[operations.NAME]` of a config file, as written (checked by `taosprsp.ops`)."""
    if not isinstance(raw, Mapping) or not all(isinstance(table, Mapping) for table in raw.values()):
        raise ConfigError(f"[operations] in {where} must hold one table per operation, [operations.NAME]")
    return {name: dict(table) for name, table in raw.items()}


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {file} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None


def _rank(where: str) -> int:
    """How a layer ranks in the precedence: the command line over the environment over a file."""
    return {COMMAND_LINE: 3, ENVIRONMENT: 2}.get(where, 1)


def _one_pace(config: Config) -> Config:
    """`producer.rate` and `producer.interval` both set the pace: the one set in the higher layer wins.

    Both set in the same layer is refused: `--rate 5000 --interval 1s` would otherwise run at 250 rows/s
    (one 250-row batch a second), silently.
    """
    rate_from = config.origins.get("producer.rate")
    interval_from = config.origins.get("producer.interval")
    if not config.producer.interval or rate_from is None or interval_from is None:
        return config
    if _rank(rate_from) == _rank(interval_from):
        if rate_from == COMMAND_LINE:
            fix = "give --rate R, or --interval I with --batch B (the rate is then B/I)"
        else:
            fix = "set rate, or interval with batch (the rate is then batch/interval)"
        raise ConfigError(
            f"producer.rate and producer.interval both set the pace in {rate_from}: {fix}", exit_code(rate_from)
        )
    if _rank(rate_from) < _rank(interval_from):
        return config
    origins = {**config.origins, "producer.interval": rate_from}
    return dataclasses.replace(config, producer=dataclasses.replace(config.producer, interval=0.0), origins=origins)
