"""The one shared TOML config: loading, precedence and validation.

Precedence, highest first: command-line flag > `TAOSPRSP_<SECTION>_<KEY>` environment variable >
`--config` file > the defaults declared here (documented, with comments, in `configs/default.toml`).

Durations are written as text (`"250ms"`, `"30s"`, `"1d"`) or a number of seconds and parsed once, here:
settings hold float seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from taosprsp.datasets import DATASETS, Precision, identifier
from taosprsp.endpoint import mask_dsn, parse_dsn
from taosprsp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "TAOSPRSP_"
SECRET_KEYS = frozenset({"password"})

StoreKind = Literal["auto", "tdengine", "embedded"]
Protocol = Literal["stmt2", "line", "telnet", "json"]
FeedMode = Literal["auto", "tmq", "poll"]

_DURATION_MARK = "duration"
Duration = Annotated[float, _DURATION_MARK]
"""Seconds; written in TOML and the environment as text such as `"250ms"` or as a number of seconds."""

DAY = 86_400.0
_DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"d": DAY, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_DURATION_EXAMPLE = "a duration such as '250ms', '30s' or '1d'"


def parse_duration(value: str | int | float, key: str = "") -> float:
    """Seconds in `value`: a number of seconds or text such as `250ms`, `30s`, `1d`; empty text is zero.

    Anything else is a ConfigError, its message prefixed with `key` when given.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and not value.strip():
        return 0.0
    match = _DURATION_TEXT.match(value) if isinstance(value, str) else None
    if match is None:
        prefix = f"{key}: " if key else ""
        raise ConfigError(f"{prefix}expected {_DURATION_EXAMPLE}, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """`seconds` as text `parse_duration` reads back: a whole number of the largest unit that fits."""
    if seconds == 0:
        return "0s"
    for unit, size in _UNIT_SECONDS.items():
        count = seconds / size
        if count >= 1 and math.isclose(count, round(count), rel_tol=1e-9):
            return f"{round(count)}{unit}"
    return f"{round(seconds / _UNIT_SECONDS['ns'])}ns"


@dataclass(frozen=True)
class TDengineSettings:
    dsn: str = ""
    host: str = "127.0.0.1"
    port: int = 6041
    user: str = "root"
    password: str = "taosdata"
    connect_timeout: Duration = 1.0
    retries: int = 1


@dataclass(frozen=True)
class DatabaseSettings:
    name: str = "power"
    precision: Precision = "ms"
    keep: Duration = 3650 * DAY
    wal_retention: Duration = DAY


@dataclass(frozen=True)
class StoreSettings:
    kind: StoreKind = "auto"
    path: str = ".taosprsp/embedded.sqlite"


@dataclass(frozen=True)
class DatasetSettings:
    name: str = "meters"
    stable: str = ""
    tables: int = 10


@dataclass(frozen=True)
class ProducerSettings:
    rate: float = 1000.0
    batch: int = 0
    interval: Duration = 0.0
    protocol: Protocol = "stmt2"
    seed: int = -1


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    feed: FeedMode = "auto"
    interval: Duration = 0.1
    limit: int = 100_000
    table: str = ""
    latest_table: str = ""
    max_message_mb: int = 256
    ping_interval: Duration = 10.0


@dataclass(frozen=True)
class ViewerSettings:
    host: str = "127.0.0.1"
    port: int = 8081
    open: bool = True
    title: str = "taosprsp live dashboard"
    theme: str = "Pro Dark"
    layout: str = ""
    panels: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class BenchSettings:
    repeats: int = 3
    rows: int = 200_000
    batch_sizes: list[int] = field(default_factory=lambda: [100, 1_000, 10_000])
    latency_rates: list[int] = field(default_factory=lambda: [1_000, 10_000])
    latency_seconds: float = 5.0


@dataclass(frozen=True)
class StateSettings:
    dir: str = ".taosprsp"


@dataclass(frozen=True)
class DockerSettings:
    image: str = "tdengine/tdengine"
    tag: str = "3.3.7.5"
    container: str = "taosprsp-tdengine"
    volume: str = "taosprsp-tdengine-data"
    wait: Duration = 60.0


@dataclass(frozen=True)
class Config:
    """The effective settings of one run."""

    tdengine: TDengineSettings = field(default_factory=TDengineSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    producer: ProducerSettings = field(default_factory=ProducerSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    viewer: ViewerSettings = field(default_factory=ViewerSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    state: StateSettings = field(default_factory=StateSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    source: str = "defaults"

    @property
    def stable(self) -> str:
        """The super table name: `dataset.stable`, or the dataset's own name."""
        return self.dataset.stable or self.dataset.name

    @property
    def perspective_table(self) -> str:
        return self.server.table or self.stable

    @property
    def latest_table(self) -> str:
        return self.server.latest_table or f"{self.perspective_table}_latest"

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys of some sections replaced, validated like a config file."""
        return load_config(overrides={k: dict(v) for k, v in sections.items()}, base=self)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config) if f.name != "source"
}


def _section_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section], include_extras=True)


def _is_duration(expected: Any) -> bool:
    return typing.get_origin(expected) is Annotated and _DURATION_MARK in expected.__metadata__


def _closest(word: str, choices: list[str]) -> str:
    """`; did you mean 'x'?` for a choice close to `word`, or nothing when none is."""
    match = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


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

    if _is_duration(expected):
        return parse_duration(value, f"{name} in {where}")
    if typing.get_origin(expected) is Literal:
        choices = [str(choice) for choice in typing.get_args(expected)]
        value = str(value).strip() if from_text else value
        if value not in choices:
            shown = f"{value!r} is not one of {', '.join(choices)}"
            raise ConfigError(f"{name} in {where}: {shown}{_closest(str(value), choices)}")
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
                return [item(part) for part in text.split(",") if part.strip()]
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


def _apply(layers: dict[str, dict[str, Any]], raw: Mapping[str, Any], where: str, from_text: bool = False) -> None:
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {where}{_closest(section, list(SECTIONS))}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{section}] in {where} must be a table of keys")
        types_ = _section_types(section)
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(f"unknown key {section}.{key} in {where}{_closest(key, list(types_))}")
            layers.setdefault(section, {})[key] = _coerce(section, key, value, types_[key], where, from_text)


def _environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`TAOSPRSP_<SECTION>_<KEY>` variables that name a real key; other TAOSPRSP_* names are left alone."""
    found: dict[str, dict[str, str]] = {}
    for section in SECTIONS:
        for key in _section_types(section):
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name in environ:
                found.setdefault(section, {})[key] = environ[name]
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
    source = base.source if base else "defaults"
    if path is not None:
        file = Path(path)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        _apply(layers, raw, str(file))
        source = str(file)
    env = os.environ if environ is None else environ
    if base is None:
        _apply(layers, _environment(env), "the environment", from_text=True)
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        _apply(layers, cleaned, "the command line")
    start = base or Config()
    sections = {name: dataclasses.replace(getattr(start, name), **layers.get(name, {})) for name in SECTIONS}
    config = Config(**sections, source=source)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Check what the types alone do not: the dataset, names, ranges and the DSN."""
    if config.dataset.name not in DATASETS:
        choices = list(DATASETS)
        raise ConfigError(
            f"dataset.name: {config.dataset.name!r} is not one of {', '.join(choices)}"
            f"{_closest(config.dataset.name, choices)}"
        )
    identifier(config.database.name, "database.name")
    identifier(config.stable, "dataset.stable")
    positive = {
        "dataset.tables": config.dataset.tables,
        "server.limit": config.server.limit,
        "bench.repeats": config.bench.repeats,
        "bench.rows": config.bench.rows,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if config.producer.batch < 0:
        raise ConfigError(
            f"producer.batch must be 0 (a tenth of a second's rows) or positive, got {config.producer.batch}"
        )
    if config.producer.rate < 0:
        raise ConfigError(f"producer.rate must be zero (as fast as possible) or positive, got {config.producer.rate}")
    for name, port in (
        ("tdengine.port", config.tdengine.port),
        ("server.port", config.server.port),
        ("viewer.port", config.viewer.port),
    ):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} must be a TCP port (0-65535), got {port}")
    if config.tdengine.dsn:
        parse_dsn(config.tdengine.dsn)


def as_dict(config: Config, masked: bool = True) -> dict[str, dict[str, Any]]:
    """The config as plain data in the form a config file takes: durations as text, secrets masked unless asked."""
    result: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        values = dataclasses.asdict(getattr(config, name))
        for key, expected in _section_types(name).items():
            if _is_duration(expected):
                values[key] = format_duration(values[key])
        if masked:
            for key in SECRET_KEYS & values.keys():
                values[key] = "****"
            if name == "tdengine" and values.get("dsn"):
                values["dsn"] = mask_dsn(values["dsn"])
        result[name] = values
    return result


def to_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """`as_dict`'s data as a TOML document that `load_config` reads back."""
    return tomli_w.dumps({section: dict(values) for section, values in data.items()})
