"""Validation: what the types alone do not check, and the one-line errors that name where a bad value was set."""

from __future__ import annotations

import difflib
import re

from taosprsp.config.durations import format_duration
from taosprsp.config.settings import (
    COMMAND_LINE,
    MAX_GROUP_LENGTH,
    MAX_SUBTABLES,
    MAX_VGROUPS,
    MIN_INTERVAL,
    Config,
    StateSettings,
    StoreSettings,
)
from taosprsp.datasets import DATASETS, identifier
from taosprsp.endpoint import parse_dsn
from taosprsp.errors import ConfigError, ExitCode

_GROUP_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_GROUP_LENGTH}}}")


def closest(word: str, choices: list[str]) -> str:
    """`; did you mean 'x'?` for a choice close to `word`, or nothing when none is."""
    match = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def exit_code(where: str | None) -> ExitCode:
    """A bad value is a usage error (exit 2) when it came from the command line, else a config error (exit 3)."""
    return ExitCode.USAGE if where == COMMAND_LINE else ExitCode.CONFIG


def _refused(config: Config, key: str, problem: str) -> ConfigError:
    """`key`'s value refused, naming where it was set; exit 2 when that was the command line."""
    where = config.origins.get(key)
    shown = f"{key} in {where}" if where else key
    return ConfigError(f"{shown}: {problem}", exit_code(where))


def validate(config: Config) -> None:
    """Check what the types alone do not: the dataset, names, ranges and the DSN."""
    if config.dataset.name not in DATASETS and config.dataset.name not in config.datasets:
        choices = [*DATASETS, *config.datasets]
        shown = f"{config.dataset.name!r} is not one of {', '.join(choices)}{closest(config.dataset.name, choices)}"
        raise _refused(config, "dataset.name", shown)
    for key, name in (("database.name", config.database.name), ("dataset.stable", config.stable)):
        try:
            identifier(name, key)
        except ConfigError as exc:
            exc.exit_code = exit_code(config.origins.get(key))
            raise
    if not config.store.path.strip():
        raise _refused(config, "store.path", f"must name a file, e.g. {StoreSettings.path}")
    if not config.state.dir.strip():
        raise _refused(config, "state.dir", f"must name a directory, e.g. {StateSettings.dir}")
    positive = {
        "dataset.tables": config.dataset.tables,
        "server.limit": config.server.limit,
        "server.gather_rows": config.server.gather_rows,
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
            exc.exit_code = exit_code(config.origins.get("tdengine.dsn"))
            raise
