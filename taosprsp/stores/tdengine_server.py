"""What the TDengine store knows of the server beyond its own super table: the database options it creates,
the server's databases, topics and consumer groups, and dropping them.

The feed's consumer groups live on the server until dropped, and TDengine refuses to drop a topic a consumer
still holds, or a database with a topic on it: `drop` removes every consumer group of the database's topics,
then the topics, then the database, retrying while the server settles (a closed consumer leaves its group on
the mnode's next rebalance, within a few seconds).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from taosprsp.datasets import Precision, identifier
from taosprsp.errors import StoreError
from taosprsp.stores.faults import classify

DAY_SECONDS = 86_400
SETTLING_CODES = frozenset({0x03D3, 0x03EB, 0x03EC, 0x03EF})
"""What TDengine answers a DROP while consumers leave a group ([0x03EB] Topic subscribed cannot be dropped,
[0x03EC] Consumer group being used), a rebalance ([0x03EF]) or another transaction ([0x03D3]) runs: the mnode
settles them on its rebalance timer (2 s) or when the transaction ends."""
SETTLE_SECONDS = 10.0
SETTLE_STEP_SECONDS = 0.5
LIVE_CONSUMER_STATUSES = frozenset({"ready", "rebalancing"})
"""The `status` of a consumer that is subscribed (SHOW CONSUMERS); `lost` is one whose process went away."""
FORCE_SINCE = (3, 3, 6)
"""The first server version whose DROP TOPIC and DROP CONSUMER GROUP take FORCE (detaching consumers)."""


@dataclass(frozen=True)
class DatabaseOptions:
    """The `CREATE DATABASE` options taosprsp sets (from `[database]`); durations in seconds."""

    name: str
    precision: Precision
    keep: float
    wal_retention: float
    vgroups: int = 2

    def create_sql(self) -> str:
        keep_days = max(1, int(self.keep // DAY_SECONDS))
        return (
            f"CREATE DATABASE IF NOT EXISTS `{identifier(self.name, 'database.name')}` "
            f"PRECISION '{self.precision}' KEEP {keep_days}d WAL_RETENTION_PERIOD {int(self.wal_retention)} "
            f"VGROUPS {int(self.vgroups)}"
        )


class ServerCatalog:
    """The server-wide listings and drops of `TDengineStore`, which provides the connection (`_execute`,
    `_rows`) and its `database`."""

    database: DatabaseOptions
    _execute: Callable[[str], int]
    _rows: Callable[[str], list[tuple]]

    def drop_database(self, name: str) -> None:
        """Drop database `name` with its topics and their consumer groups.

        A database with a topic on it cannot be dropped, nor a topic a consumer still holds: every consumer
        group of the database's topics goes first (detaching consumers), then the topics, then the database.
        """
        for topic in self.topics(name):
            for group in self.consumer_groups(topic):
                self.drop_consumer_group(group, topic, force=True)
            self._execute_settling(f"DROP TOPIC IF EXISTS {self._force}`{topic}`")
        self._execute_settling(f"DROP DATABASE IF EXISTS `{identifier(name, 'database name')}`")

    def _execute_settling(self, sql: str) -> None:
        """Run a DROP that TDengine refuses while the server settles (`SETTLING_CODES`), retrying for up to
        `SETTLE_SECONDS`; any other refusal, or one that outlasts the wait, is raised."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                self._execute(sql)
                return
            except StoreError as exc:
                if classify(exc).code not in SETTLING_CODES or time.monotonic() >= deadline:
                    raise
            time.sleep(SETTLE_STEP_SECONDS)

    @functools.cached_property
    def _force(self) -> str:
        """`FORCE ` where the server takes it: the drop then detaches consumers still attached."""
        numbers = re.findall(r"\d+", self.server_version())
        return "FORCE " if tuple(int(n) for n in numbers[:3]) >= FORCE_SINCE else ""

    def server_version(self) -> str:
        """The server's version, e.g. `3.3.7.5`."""
        return str(self._rows("SELECT SERVER_VERSION()")[0][0])

    def databases(self) -> list[str]:
        """Every database on the server."""
        return sorted(str(row[0]) for row in self._rows("SHOW DATABASES"))

    def topics(self, database: str | None = None) -> list[str]:
        """The topics on `database` (default: this store's)."""
        name = database or self.database.name
        rows = self._rows("SELECT topic_name, db_name FROM information_schema.ins_topics")
        return sorted(str(topic) for topic, db in rows if db == name)

    def subscriptions(self) -> list[tuple[str, str]]:
        """(topic, consumer group) of every consumer group on the server (SHOW SUBSCRIPTIONS lists one row per
        group and vgroup). A group stays until dropped, used or not."""
        rows = self._rows("SELECT topic_name, consumer_group FROM information_schema.ins_subscriptions")
        return sorted({(str(topic), str(group)) for topic, group in rows})

    def consumer_groups(self, topic: str) -> list[str]:
        """The consumer groups on `topic`."""
        return [group for name, group in self.subscriptions() if name == topic]

    def consumers(self, group: str) -> list[tuple[str, str]]:
        """(client id, status) of each consumer the server lists in `group` (SHOW CONSUMERS)."""
        rows = self._rows("SELECT consumer_group, client_id, status FROM performance_schema.perf_consumers")
        return [(str(client), str(status)) for name, client, status in rows if name == group]

    def drop_consumer_group(self, group: str, topic: str, force: bool = False) -> None:
        """Drop `group` on `topic` (gone already is fine); `force` also detaches consumers still in it."""
        self._execute_settling(f"DROP CONSUMER GROUP IF EXISTS {self._force if force else ''}`{group}` ON `{topic}`")
