"""The settings: one frozen dataclass per config section, their defaults, and `Config`, the settings of one run.

The defaults are documented, with comments, in `configs/default.toml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from taosprsp.config.durations import DAY, Duration
from taosprsp.datasets import Dataset, Precision, get_dataset

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
MAX_VGROUPS = 1024

StoreKind = Literal["auto", "tdengine", "embedded"]
Protocol = Literal["stmt2", "line", "telnet", "json"]
FeedMode = Literal["auto", "tmq", "poll"]
PayloadFormat = Literal["json", "line"]
TimestampUnit = Literal["", "s", "ms", "us", "ns"]


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
    gather_rows: int = 100
    """The feed applies rows to the Perspective tables once this many have come, or once the first has waited
    `max_delay`: every apply costs about the same (an update of every table, a re-read by every view), so a
    trickle of rows is applied in fewer, larger steps."""
    max_delay: Duration = 0.04
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
        from taosprsp.config.load import load_config  # here, not at the top: loading builds on these settings

        return load_config(overrides={k: dict(v) for k, v in sections.items()}, base=self)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("source", "origins", "datasets", "operations")
}


def section_types(section: str) -> dict[str, Any]:
    """The type hints of the keys of `section`, `Duration` marks kept."""
    return typing.get_type_hints(SECTIONS[section], include_extras=True)
