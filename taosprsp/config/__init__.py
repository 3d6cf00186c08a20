"""The one shared TOML config: the settings (`settings`), loading and precedence (`load`), validation (`checks`),
durations (`durations`) and writing it out (`dump`).

Precedence, highest first: command-line flag > `TAOSPRSP_<SECTION>_<KEY>` environment variable >
`--config` file > the defaults declared in `settings` (documented, with comments, in `configs/default.toml`).

Durations are written as text (`"250ms"`, `"30s"`, `"1d"`) or a number of seconds and parsed once, in
`durations`: settings hold float seconds. Every public name is re-exported here: import from `taosprsp.config`.
"""

from __future__ import annotations

from taosprsp.config.checks import validate
from taosprsp.config.directories import ensure_directory
from taosprsp.config.dump import as_dict, to_toml
from taosprsp.config.durations import DAY, Duration, format_duration, parse_duration
from taosprsp.config.load import load_config, tomllib
from taosprsp.config.settings import (
    COMMAND_LINE,
    CONFIG_ENV,
    ENV_PREFIX,
    ENVIRONMENT,
    GROUP_PREFIX,
    MAX_GROUP_LENGTH,
    MAX_SUBTABLES,
    MAX_VGROUPS,
    MIN_INTERVAL,
    OTHER_VARIABLES,
    READY_FILE_ENV,
    SECRET_KEYS,
    SECTIONS,
    SERVE_GROUP_PREFIX,
    TEST_DSN_ENV,
    VIEWER_DIR_ENV,
    BenchSettings,
    Config,
    DatabaseSettings,
    DatasetSettings,
    DockerSettings,
    FeedMode,
    HistorySettings,
    MqttSettings,
    PayloadFormat,
    ProducerSettings,
    Protocol,
    ServerSettings,
    StateSettings,
    StoreKind,
    StoreSettings,
    TDengineSettings,
    TimestampUnit,
    ViewerSettings,
)

__all__ = [
    "COMMAND_LINE",
    "CONFIG_ENV",
    "DAY",
    "ENVIRONMENT",
    "ENV_PREFIX",
    "GROUP_PREFIX",
    "MAX_GROUP_LENGTH",
    "MAX_SUBTABLES",
    "MAX_VGROUPS",
    "MIN_INTERVAL",
    "OTHER_VARIABLES",
    "READY_FILE_ENV",
    "SECRET_KEYS",
    "SECTIONS",
    "SERVE_GROUP_PREFIX",
    "TEST_DSN_ENV",
    "VIEWER_DIR_ENV",
    "BenchSettings",
    "Config",
    "DatabaseSettings",
    "DatasetSettings",
    "DockerSettings",
    "Duration",
    "FeedMode",
    "HistorySettings",
    "MqttSettings",
    "PayloadFormat",
    "ProducerSettings",
    "Protocol",
    "ServerSettings",
    "StateSettings",
    "StoreKind",
    "StoreSettings",
    "TDengineSettings",
    "TimestampUnit",
    "ViewerSettings",
    "as_dict",
    "ensure_directory",
    "format_duration",
    "load_config",
    "parse_duration",
    "to_toml",
    "tomllib",
    "validate",
]
