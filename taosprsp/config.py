"""The one shared TOML config: loading, precedence and validation.

Precedence, highest first: command-line flag > `TAOSPRSP_<SECTION>_<KEY>` environment variable >
`--config` file > the defaults declared here (documented, with comments, in `configs/default.toml`).

Durations are written as text (`"250ms"`, `"30s"`, `"1d"`) or a number of seconds and parsed once, here:
settings hold float seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
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

from taosprsp.datasets import DATASETS, Dataset, Precision, declare, get_dataset, identifier
from taosprsp.endpoint import mask_dsn, parse_dsn
from taosprsp.errors import ConfigError, ExitCode, TaosprspError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "TAOSPRSP_"
CONFIG_ENV = "TAOSPRSP_CONFIG"
VIEWER_DIR_ENV = "TAOSPRSP_VIEWER_DIR"
TEST_DSN_ENV = "TAOSPRSP_TEST_DSN"
READY_FILE_ENV = "TAOSPRSP_READY_FILE"
OTHER_VARIABLES = {
    CONFIG_ENV: "the config file, as --config",
    VIEWER_DIR_ENV: "the dashboard's files (a viewer directory with node_modules)",
    TEST_DSN_ENV: "the TDengine the test suite runs against",
    READY_FILE_ENV: "set by --background: the file the detached command creates once it is ready",
}
"""The TAOSPRSP_* variables that are not settings; any other TAOSPRSP_* name must name a config key."""
COMMAND_LINE = "the command line"
ENVIRONMENT = "the environment"
MIN_INTERVAL = 0.001
"""Seconds: the shortest poll or batch interval; below it a loop spins a core doing nothing."""
MAX_SUBTABLES = 1_000_000
"""The most subtables taosprsp creates or writes in one dataset: a bound against a typo such as 100000000."""
SECRET_KEYS = frozenset({"password", "token"})
GROUP_PREFIX = "taosprsp-"
"""How every TMQ consumer group taosprsp makes begins: `db purge` drops idle ones."""
SERVE_GROUP_PREFIX = f"{GROUP_PREFIX}serve-"
"""How the consumer groups `serve` derives begin (`Config.consumer_group`)."""
MAX_GROUP_LENGTH = 192
"""TDengine's longest `group.id`."""
_GROUP_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_GROUP_LENGTH}}}")
MAX_VGROUPS = 1024

StoreKind = Literal["auto", "tdengine", "embedded"]
Protocol = Literal["stmt2", "line", "telnet", "json"]
FeedMode = Literal["auto", "tmq", "poll"]
PayloadFormat = Literal["json", "line"]
TimestampUnit = Literal["", "s", "ms", "us", "ns"]

_DURATION_MARK = "duration"
Duration = Annotated[float, _DURATION_MARK]
"""Seconds; written in TOML and the environment as text such as `"250ms"` or as a number of seconds."""

DAY = 86_400.0
_DURATION_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"d": DAY, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_DURATION_EXAMPLE = "a duration such as '250ms', '30s' or '1d'"


def parse_duration(value: str | int | float, key: str = "") -> float:
    """Seconds in `value`: a number of seconds or text such as `250ms`, `30s`, `1d`; empty text is zero.

    Anything else is a ConfigError, its message prefixed with `key` when given.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    if isinstance(value, str) and not value.strip():
        return 0.0
    match = _DURATION_TEXT.fullmatch(value) if isinstance(value, str) else None
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
    vgroups: int = 2
    """Vgroups of a database taosprsp creates (TDengine's default); each takes one of the server's few vnodes."""


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
    wake: bool = True
    """Poll feed on the embedded store: read as soon as another process commits (`interval` is then the fallback)."""
    min_interval: Duration = 0.02
    """With `wake`: the least time between two reads (at most `interval`), so that commits coming faster are read
    together."""
    limit: int = 100_000
    bucket: Duration = 1.0
    """Width of the time buckets of the derived tables the dashboard's line chart views."""
    horizon: Duration = 300.0
    """How far back from the newest bucket the derived tables reach; older buckets are retired."""
    table: str = ""
    latest_table: str = ""
    max_message_mb: int = 256
    ping_interval: Duration = 10.0
    allowed_origins: list[str] = field(default_factory=list)
    token: str = ""
    clients_can_write: bool = False
    certfile: str = ""
    keyfile: str = ""
    max_client_queue_mb: int = 64
    max_pending_requests: int = 256
    group: str = ""
    """The TMQ consumer group of the feed; empty: `Config.consumer_group` derives one."""


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
class HistorySettings:
    """What one client's view of the history table (`taosprsp.history`) may cost the store and the server."""

    rows: int = 100_000
    """Rows one slice of stored rows reads at most (the viewer asks for what is on screen)."""
    groups: int = 100_000
    """Groups a grouping level of a view has at most."""
    columns: int = 2_000
    """Columns a split view has at most."""
    timeout: Duration = 30.0
    """How long a view's queries may take before its client is answered with an error."""
    queries: int = 4
    """History queries the store runs at once, each on a connection of its own; a client's next view is refused
    until its previous one's queries have ended, even those past `timeout`."""


@dataclass(frozen=True)
class BenchSettings:
    repeats: int = 3
    rows: int = 200_000
    batch_sizes: list[int] = field(default_factory=lambda: [100, 1_000, 10_000])
    latency_rates: list[int] = field(default_factory=lambda: [1_000, 10_000])
    latency_seconds: float = 5.0


@dataclass(frozen=True)
class MqttSettings:
    """The broker, the ingester's session and mapping (`ingest mqtt`, `produce --sink mqtt`) and `forward mqtt`."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str = ""
    password: str = ""
    client_id: str = "taosprsp-ingest"
    topics: list[str] = field(default_factory=list)
    qos: int = 1
    clean_session: bool = False
    session_expiry: Duration = DAY
    keepalive: Duration = 30.0
    connect_timeout: Duration = 10.0
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_insecure: bool = False
    topic: str = "taosprsp/{tbname}"
    format: PayloadFormat = "json"
    fields: dict = field(default_factory=dict)
    timestamp_unit: TimestampUnit = ""
    batch: int = 5_000
    flush_interval: Duration = 0.02
    inflight: int = 20
    forward_topic: str = "taosprsp/{stable}/{tbname}"
    forward_interval: Duration = 0.1


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
    history: HistorySettings = field(default_factory=HistorySettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    state: StateSettings = field(default_factory=StateSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    source: str = "defaults"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each key set above its default came from (`section.key` -> a file, the environment, the command line)."""
    datasets: Mapping[str, Dataset] = field(default_factory=dict, repr=False)
    """The datasets the config file declares (`[datasets.NAME]`), beside the built-ins."""
    operations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    """The signal operations the config file declares (`[operations.NAME]`), as written: `taosprsp.ops` checks
    them against the dataset they run on (`declare_operations`)."""

    @property
    def declared_dataset(self) -> Dataset:
        """The dataset `dataset.name` names: one the config declares, or a built-in."""
        return get_dataset(self.dataset.name, self.datasets)

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

    @property
    def consumer_group(self) -> str:
        """The feed's TMQ consumer group: `server.group`, or one named after what this serve follows and where
        it listens, so that a restarted serve reuses its group and two serves side by side never share one
        (consumers of one group split the rows between them). With port 0 the port is not known when the feed
        subscribes, so the process id stands in."""
        if self.server.group:
            return self.server.group
        place = str(self.server.port) if self.server.port else f"pid{os.getpid()}"
        host = re.sub(r"[^0-9A-Za-z]+", "_", self.server.host)
        name = f"{SERVE_GROUP_PREFIX}{self.database.name}-{self.stable}-{host}-{place}"
        if len(name) <= MAX_GROUP_LENGTH:
            return name
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]  # a long table name: still one group per place
        return f"{name[: MAX_GROUP_LENGTH - len(digest) - 1]}-{digest}"

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys of some sections replaced, validated like a config file."""
        return load_config(overrides={k: dict(v) for k, v in sections.items()}, base=self)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("source", "origins", "datasets", "operations")
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


def _exit_code(where: str | None) -> ExitCode:
    """A bad value is a usage error (exit 2) when it came from the command line, else a config error (exit 3)."""
    return ExitCode.USAGE if where == COMMAND_LINE else ExitCode.CONFIG


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
                raise ConfigError(f"unknown section [{section}] in {where}{_closest(section, list(SECTIONS))}")
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] in {where} must be a table of keys")
            types_ = _section_types(section)
            for key, value in values.items():
                if key not in types_:
                    raise ConfigError(f"unknown key {section}.{key} in {where}{_closest(key, list(types_))}")
                coerced = _coerce(section, key, value, types_[key], where, from_text)
                if isinstance(coerced, float) and not math.isfinite(coerced):
                    raise ConfigError(f"{section}.{key} in {where}: expected a finite number, got {value!r}")
                layers.setdefault(section, {})[key] = coerced
                origins[f"{section}.{key}"] = where
    except ConfigError as exc:
        exc.exit_code = _exit_code(where)
        raise


def _environment(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The `TAOSPRSP_<SECTION>_<KEY>` variables as settings.

    Any other TAOSPRSP_* name, except those in OTHER_VARIABLES, is an error naming the closest valid one: a
    mistyped variable is refused as a mistyped key in a file is, not silently ignored.
    """
    settings = {
        f"{ENV_PREFIX}{section}_{key}".upper(): (section, key)
        for section in SECTIONS
        for key in _section_types(section)
    }
    found: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if name in settings:
            section, key = settings[name]
            found.setdefault(section, {})[key] = value
        elif name.startswith(ENV_PREFIX) and name not in OTHER_VARIABLES:
            known = [*settings, *OTHER_VARIABLES]
            raise ConfigError(f"unknown variable {name} in the environment{_closest(name, known)}")
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
            f"producer.rate and producer.interval both set the pace in {rate_from}: {fix}", _exit_code(rate_from)
        )
    if _rank(rate_from) < _rank(interval_from):
        return config
    origins = {**config.origins, "producer.interval": rate_from}
    return dataclasses.replace(config, producer=dataclasses.replace(config.producer, interval=0.0), origins=origins)


def _refused(config: Config, key: str, problem: str) -> ConfigError:
    """`key`'s value refused, naming where it was set; exit 2 when that was the command line."""
    where = config.origins.get(key)
    shown = f"{key} in {where}" if where else key
    return ConfigError(f"{shown}: {problem}", _exit_code(where))


def validate(config: Config) -> None:
    """Check what the types alone do not: the dataset, names, ranges and the DSN."""
    if config.dataset.name not in DATASETS and config.dataset.name not in config.datasets:
        choices = [*DATASETS, *config.datasets]
        shown = f"{config.dataset.name!r} is not one of {', '.join(choices)}{_closest(config.dataset.name, choices)}"
        raise _refused(config, "dataset.name", shown)
    for key, name in (("database.name", config.database.name), ("dataset.stable", config.stable)):
        try:
            identifier(name, key)
        except ConfigError as exc:
            exc.exit_code = _exit_code(config.origins.get(key))
            raise
    if not config.store.path.strip():
        raise _refused(config, "store.path", f"must name a file, e.g. {StoreSettings.path}")
    if not config.state.dir.strip():
        raise _refused(config, "state.dir", f"must name a directory, e.g. {StateSettings.dir}")
    positive = {
        "dataset.tables": config.dataset.tables,
        "server.limit": config.server.limit,
        "history.rows": config.history.rows,
        "history.groups": config.history.groups,
        "history.columns": config.history.columns,
        "history.timeout": config.history.timeout,
        "history.queries": config.history.queries,
        "server.max_message_mb": config.server.max_message_mb,
        "tdengine.connect_timeout": config.tdengine.connect_timeout,
        "bench.repeats": config.bench.repeats,
        "bench.rows": config.bench.rows,
        "mqtt.batch": config.mqtt.batch,
        "mqtt.inflight": config.mqtt.inflight,
    }
    for key, value in positive.items():
        if value <= 0:
            raise _refused(config, key, f"must be positive, got {value:g}")
    if not 1 <= config.database.vgroups <= MAX_VGROUPS:
        raise _refused(config, "database.vgroups", f"must be 1 to {MAX_VGROUPS}, got {config.database.vgroups}")
    if config.server.group and not _GROUP_NAME.fullmatch(config.server.group):
        raise _refused(
            config,
            "server.group",
            f"must be at most {MAX_GROUP_LENGTH} letters, digits, '_' or '-' (empty: derived), "
            f"got {config.server.group!r}",
        )
    if config.mqtt.qos not in (0, 1, 2):
        raise _refused(config, "mqtt.qos", f"must be 0, 1 or 2, got {config.mqtt.qos}")
    mqtt_intervals = {
        "mqtt.flush_interval": config.mqtt.flush_interval,
        "mqtt.forward_interval": config.mqtt.forward_interval,
    }
    for key, seconds in mqtt_intervals.items():
        if seconds < MIN_INTERVAL:
            shown = format_duration(seconds)
            raise _refused(config, key, f"must be at least {format_duration(MIN_INTERVAL)}, got {shown}")
    if config.dataset.tables > MAX_SUBTABLES:
        raise _refused(config, "dataset.tables", f"must be at most {MAX_SUBTABLES:,}, got {config.dataset.tables:,}")
    if config.producer.batch < 0:
        raise _refused(
            config, "producer.batch", f"must be 0 (a tenth of a second's rows) or positive, got {config.producer.batch}"
        )
    if config.producer.rate < 0:
        raise _refused(
            config, "producer.rate", f"must be 0 (as fast as possible) or positive, got {config.producer.rate:g}"
        )
    floor = format_duration(MIN_INTERVAL)
    if config.server.interval < MIN_INTERVAL:
        shown = format_duration(config.server.interval)
        raise _refused(
            config, "server.interval", f"must be at least {floor} (a shorter poll spins a core), got {shown}"
        )
    if config.server.bucket < MIN_INTERVAL:
        shown = format_duration(config.server.bucket)
        raise _refused(config, "server.bucket", f"must be at least {floor}, got {shown}")
    if config.server.horizon < config.server.bucket:
        shown = format_duration(config.server.horizon)
        bucket = format_duration(config.server.bucket)
        raise _refused(config, "server.horizon", f"must be at least one bucket ({bucket}), got {shown}")
    if 0 < config.producer.interval < MIN_INTERVAL:
        shown = format_duration(config.producer.interval)
        raise _refused(config, "producer.interval", f"must be 0 (pace by rate) or at least {floor}, got {shown}")
    for key, port in (
        ("tdengine.port", config.tdengine.port),
        ("server.port", config.server.port),
        ("viewer.port", config.viewer.port),
    ):
        if not 0 <= port <= 65535:
            raise _refused(config, key, f"must be a TCP port (0-65535), got {port}")
    if config.tdengine.dsn:
        try:
            parse_dsn(config.tdengine.dsn)
        except ConfigError as exc:
            exc.exit_code = _exit_code(config.origins.get("tdengine.dsn"))
            raise


def ensure_directory(path: str | os.PathLike[str], setting: str) -> Path:
    """`path` as a directory, created with its parents when missing, for the setting `setting` that names it.

    One line saying which setting to change when it cannot be: a file in the way, a read-only parent.
    """
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TaosprspError(f"{setting}: {directory} is a file, not a directory; choose another {setting}") from None
    except OSError as exc:
        raise TaosprspError(
            f"{setting}: cannot create the directory {directory} ({exc.strerror or exc}); "
            f"choose another {setting} or run from a writable directory"
        ) from None
    return directory


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
