"""The TDengine store, through taosAdapter's WebSocket API (`taos-ws-py`, imported as `taosws`).

Writes go through one prepared stmt2 statement with columnar binds, several subtables per call and tags
bound once per subtable. Reads select times as `CAST(ts AS BIGINT)`, so no timestamp string is parsed.
The feed's TMQ subscription is in `taosprsp.stores.tmq`.

A producer claims its subtables in `taosprsp_claims`, a normal table of the database: one row per producer
(claimed at, heartbeat, super table, subtable range, who), rewritten every `CLAIM_HEARTBEAT_SECONDS` by a
thread with its own connection and deleted when the producer stops. TDengine has no transactions, so a
claim is written first and read back after: a producer that then sees any other live claim on its
subtables withdraws its own. Of two producers claiming at once, the later reader always sees the earlier
writer, so at most one goes on; a claim not rewritten for `CLAIM_STALE_SECONDS` (its producer was killed)
no longer counts.

The feed's consumer groups live on the server until dropped, and TDengine refuses to drop a topic a consumer
still holds, or a database with a topic on it: `drop` removes every consumer group of the database's topics,
then the topics, then the database, retrying while the server settles (a closed consumer leaves its group on
the mnode's next rebalance, within a few seconds).
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Field, Precision, epoch_ticks, identifier
from taosprsp.endpoint import Endpoint
from taosprsp.errors import ConfigError, StoreError, StoreUnreachable, TaosprspError
from taosprsp.generate import subtables as subtable_range
from taosprsp.stores.base import (
    BEFORE_ANY_ROW,
    Claim,
    SchemalessProtocol,
    Store,
    StoreStatus,
    SubtablesClaimed,
    Watermark,
    claimed_message,
)
from taosprsp.stores.discover import tdengine_dataset, with_existing
from taosprsp.stores.faults import classify

# TDengine refuses more rows than this for one subtable in one bind ([0x0236] bind number out of range).
MAX_ROWS_PER_SUBTABLE_BIND = 32_767
SUBTABLES_PER_CREATE = 200
BOUNDS_PER_QUERY = 500
"""Per-subtable bounds OR-ed into one read: a few tens of kilobytes of SQL, well under TDengine's 1 MB."""
CLAIMS_TABLE = "taosprsp_claims"
CLAIM_HEARTBEAT_SECONDS = 5.0
CLAIM_STALE_SECONDS = 20.0
CLAIM_ATTEMPTS = 3
HOLDER_LENGTH = 1024
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
SCHEMALESS_TIME_COLUMN = "_ts"
"""The time column TDengine gives the super tables schemaless writes create."""
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
"""A subtable name stmt2 takes as it is; TDengine reads any other (upper case, `-`, a reserved word) whole and
as written only between backquotes."""
_TAOSWS_PROTOCOL: dict[SchemalessProtocol, str] = {"line": "Line", "telnet": "Telnet", "json": "Json"}
_TAOSWS_PRECISION: dict[Precision, str] = {"ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


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


@contextmanager
def driver_errors(message: str, error: type[TaosprspError] = StoreError) -> Iterator[None]:
    """Raise what the driver raises inside the block as `error("<message>: <driver's words>")`.

    taosws raises `taosws.Error` subclasses, and a pyo3 PanicException (a BaseException) on some faults,
    so everything is caught except the exceptions that stop the program.
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:
        raise error(f"{message}: {exc}") from exc


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(float(value))


class _HeartbeatClaim(Claim):
    """A claim row kept fresh by a thread on its own connection (`store`), deleted on release."""

    def __init__(self, store: TDengineStore, stamp: int, write: Callable[[], None], first: int, tables: int) -> None:
        super().__init__(first, tables)
        self._store = store
        self._stamp = stamp
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(write,), name="claim-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, write: Callable[[], None]) -> None:
        while not self._stop.wait(CLAIM_HEARTBEAT_SECONDS):
            try:
                write()
            except TaosprspError:
                pass  # the producer meets the same outage and reports it; the next beat tries again

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        try:
            self._store.delete_claim(self._stamp)
        except TaosprspError:
            pass  # the server is gone: the claim goes stale on its own
        finally:
            self._store.close()


def bind_rounds(names: pa.Array | pa.ChunkedArray) -> list[list[tuple[str, int, int]]]:
    """(subtable, start, stop) row ranges per bind call, from the subtable names of a batch whose rows come
    grouped by subtable: each call binds every subtable's run at most once and at most
    `MAX_ROWS_PER_SUBTABLE_BIND` rows of it; a longer run continues in the next call."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    if len(names) == 0:
        return []
    # one compute call finds the runs and their names: a fixed cost of microseconds, where several calls
    # (a comparison, then taking the names) cost tens of them, most of a small batch's time
    runs = pc.run_end_encode(names)
    stops = runs.run_ends.to_numpy().tolist()
    rounds: list[list[tuple[str, int, int]]] = []
    for name, start, stop in zip(runs.values.to_pylist(), [0, *stops[:-1]], stops, strict=True):
        for index, chunk_start in enumerate(range(start, stop, MAX_ROWS_PER_SUBTABLE_BIND)):
            if index == len(rounds):
                rounds.append([])
            rounds[index].append((name, chunk_start, min(stop, chunk_start + MAX_ROWS_PER_SUBTABLE_BIND)))
    return rounds


def _bound_name(name: str) -> str:
    """A subtable name as a stmt2 bind takes it (see `_PLAIN_NAME`)."""
    return name if _PLAIN_NAME.fullmatch(name) else f"`{name}`"


def _arrow(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """Rows as the driver returns them, as an Arrow table of `schema`."""
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.table([pa.array(column, f.type) for column, f in zip(columns, schema, strict=True)], schema=schema)


def _run_lists(column: pa.ChunkedArray, bounds: list[tuple[int, int]], shared: bool) -> list[list[Any]]:
    """A column as the stmt2 helpers take it: a Python list per run (start, stop) of `bounds`.

    Without NULLs a run goes through numpy's `tolist`, the fastest way to Python values (faster than
    Arrow's `to_pylist` for every type here); with NULLs, Python values with None. With `shared`, a run
    equal to the run before it takes the same list: the subtables of a generated batch usually share their
    timestamps, and a timestamp is a dear Python int to make (comparing the bytes costs a tenth of it).
    """
    if column.null_count:
        values = column.to_pylist()
        return [values[start:stop] for start, stop in bounds]
    array = column.to_numpy()
    lists: list[list[Any]] = []
    previous = b""
    for start, stop in bounds:
        run = array[start:stop]
        if shared:
            raw = run.tobytes()
            if lists and raw == previous:
                lists.append(lists[-1])
                continue
            previous = raw
        lists.append(run.tolist())
    return lists


class TDengineStore(Store):
    """A TDengine database reached through taosAdapter (`ws://host:6041`)."""

    kind = "tdengine"
    takes_schemaless = True
    # taos-ws-py 0.7.0 holds the GIL for a whole call, its wait on the network included: no other thread of
    # the process runs while a write is on its way
    writes_release_the_gil = False

    def __init__(self, endpoint: Endpoint, database: DatabaseOptions, stable: str, retries: int = 1) -> None:
        import taosws

        self._taosws = taosws
        self.endpoint = endpoint
        self.database = database
        self.stable = identifier(stable, "dataset.stable")
        self.retries = retries
        self._statement: Any = None
        self._tag_cache: dict[str, list[Any]] = {}
        self._known_rounds: tuple[pa.Array, list[list[tuple[str, str, int, int]]]] | None = None
        self._conn = self._connect()

    def _connect(self) -> Any:
        # conn_retries bounds taosws' own reconnect loop (5 tries with backoff by default), so that a down
        # server fails in about a second instead of several.
        dsn = f"{self.endpoint.dsn()}?conn_retries={self.retries}&retry_backoff_ms=100&retry_backoff_max_ms=500"
        with driver_errors(f"TDengine at {self.endpoint.dsn(masked=True)} did not answer", StoreUnreachable):
            return self._taosws.connect(dsn)

    def describe(self) -> str:
        return f"TDengine at {self.endpoint.dsn(self.database.name, masked=True)}"

    @property
    def _qualified(self) -> str:
        return f"`{self.database.name}`.`{self.stable}`"

    @property
    def _subtables_where(self) -> str:
        """The condition selecting the super table's subtables in `information_schema.ins_tables`."""
        return f"db_name = {_sql_literal(self.database.name)} AND stable_name = {_sql_literal(self.stable)}"

    def _execute(self, sql: str) -> int:
        with driver_errors(f"TDengine refused `{sql[:200]}`"):
            return self._conn.execute(sql)

    def _rows(self, sql: str) -> list[tuple]:
        with driver_errors(f"TDengine refused `{sql[:200]}`"):
            return list(self._conn.query(sql))

    def _existing_precision(self) -> str | None:
        rows = self._rows(
            f"SELECT `precision` FROM information_schema.ins_databases WHERE name = {_sql_literal(self.database.name)}"
        )
        return rows[0][0] if rows else None

    def _use_database(self) -> None:
        # stmt2 fails with "db is not specified" unless the connection has a current database.
        self._execute(f"USE `{self.database.name}`")

    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False, first: int = 0) -> None:
        if drop:
            self.drop(dataset)
        existing = self._existing_precision()
        if existing is not None and existing != self.database.precision:
            raise ConfigError(
                f"database {self.database.name} exists with precision {existing!r}, "
                f"the config says {self.database.precision!r}: "
                f"set database.precision = {existing!r} or seed with --drop"
            )
        self._execute(self.database.create_sql())
        self._use_database()
        self._execute(dataset.create_stable_sql(self.database.name, self.stable))
        names, values = subtable_range(dataset, tables, first)
        for start in range(0, tables, SUBTABLES_PER_CREATE):
            clauses = []
            for i in range(start, min(tables, start + SUBTABLES_PER_CREATE)):
                tags = ", ".join(_sql_literal(values[f.name][i].as_py()) for f in dataset.tags)
                clauses.append(
                    f"IF NOT EXISTS `{self.database.name}`.`{names[i]}` USING {self._qualified} TAGS ({tags})"
                )
            self._execute("CREATE TABLE " + " ".join(clauses))

    def drop(self, dataset: Dataset) -> None:
        self.drop_database(self.database.name)  # `serve` recreates the feed's topic
        self._statement = None
        self._tag_cache.clear()

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

    def _prepared(self, dataset: Dataset) -> Any:
        if self._statement is None:
            self._use_database()
            statement = self._conn.stmt2_statement()
            statement.prepare(dataset.insert_sql(self.stable))
            self._statement = statement
        return self._statement

    def _tags(self, dataset: Dataset, batch: pa.Table, name: str, row: int) -> list[Any]:
        """The tag views of subtable `name`, whose tags are on `row` of `batch`; made once per subtable."""
        tags = self._tag_cache.get(name)
        if tags is None:
            tags = [getattr(self._taosws, f.spec.stmt2_tag)(batch[f.name][row].as_py()) for f in dataset.tags]
            self._tag_cache[name] = tags
        return tags

    def _column_binders(self, dataset: Dataset) -> list[tuple[Field, Callable[[list], Any]]]:
        precision = self.database.precision
        return [(f, getattr(self._taosws, f.stmt2_column_helper(precision))) for f in dataset.columns]

    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        if batch.num_rows == 0:
            return 0
        try:
            self.write_lists(
                dataset, self.as_lists(dataset, batch), f"TDengine refused a batch of {batch.num_rows} rows"
            )
        except StoreError:
            self._statement = None  # a statement that failed part-way is prepared afresh for the next batch
            raise
        return batch.num_rows

    def as_lists(self, dataset: Dataset, batch: pa.Table) -> list[list[tuple[str, list[Any], list[list[Any]]]]]:
        """`batch` as the stmt2 helpers take it: per bind call, one (subtable, tag views, column lists) per run.

        The helpers take Python lists only: each column is converted run by run (`_run_lists`).
        """
        rounds = self._rounds(batch[SUBTABLE_COLUMN])
        bounds = [(start, stop) for runs in rounds for _, _, start, stop in runs]
        columns = [_run_lists(batch[f.name], bounds, shared=f.is_time) for f in dataset.columns]
        per_run = iter(zip(*columns, strict=True))
        return [
            [(bound, self._tags(dataset, batch, name, start), list(next(per_run))) for name, bound, start, _ in runs]
            for runs in rounds
        ]

    def _rounds(self, names: pa.ChunkedArray) -> list[list[tuple[str, str, int, int]]]:
        """`bind_rounds` of a batch's subtable names, each name also as the bind takes it; kept for the next
        batch, since a steady producer sends one layout batch after batch and comparing the names costs a
        tenth of finding their runs again."""
        names = names.combine_chunks()
        if self._known_rounds is not None and self._known_rounds[0].equals(names):
            return self._known_rounds[1]
        rounds = [[(name, _bound_name(name), start, stop) for name, start, stop in runs] for runs in bind_rounds(names)]
        self._known_rounds = (names, rounds)
        return rounds

    def write_lists(
        self,
        dataset: Dataset,
        calls: list[list[tuple[str, list[Any], list[list[Any]]]]],
        refused: str = "TDengine refused a bind",
    ) -> int:
        """Bind and execute what `as_lists` made, one bind call per item of `calls`; returns rows written. On
        its own it is the bare client, nothing left to convert: `bench` measures `write` against it."""
        statement = self._prepared(dataset)
        binders = [binder for _, binder in self._column_binders(dataset)]
        rows = 0
        with driver_errors(refused):
            for runs in calls:
                statement.bind(
                    [
                        self._taosws.stmt2_bind_param_view(
                            table_name=name,
                            tags=tags,
                            columns=[binder(values) for binder, values in zip(binders, columns, strict=True)],
                        )
                        for name, tags, columns in runs
                    ]
                )
                statement.execute()
                rows += sum(len(columns[0]) for _, _, columns in runs)
        return rows

    def _table(self, dataset: Dataset, rows: list[tuple]) -> pa.Table:
        return _arrow(rows, dataset.arrow_schema())

    def select(self, sql: str, schema: pa.Schema, parameters: Sequence[Any] = ()) -> pa.Table:
        if parameters:
            raise ValueError("TDengine SQL carries its values as escaped literals, not parameters")
        return _arrow(self._rows(sql), schema)

    def last_timestamps(self, dataset: Dataset) -> dict[str, int]:
        ts = f"`{dataset.timestamp.name}`"
        rows = self._rows(f"SELECT tbname, CAST(LAST({ts}) AS BIGINT) FROM {self._qualified} PARTITION BY tbname")
        return {name: int(ts) for name, ts in rows}

    def read_after(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        """Rows after `low`, and the rows of subtables marked below it (quiet or new ones) after their own mark."""
        ts = f"`{dataset.timestamp.name}`"
        low = int(watermark.low)
        bounds = [
            f"(tbname IN ({', '.join(_sql_literal(name) for name in names)})"
            f"{'' if mark == BEFORE_ANY_ROW else f' AND {ts} > {int(mark)}'} AND {ts} <= {low})"
            for mark, names in watermark.laggards().items()
        ]
        queries = [
            f"{ts} > {low}",
            *(" OR ".join(bounds[i : i + BOUNDS_PER_QUERY]) for i in range(0, len(bounds), BOUNDS_PER_QUERY)),
        ]
        parts = [
            self._table(dataset, self._rows(f"SELECT {dataset.select_list()} FROM {self._qualified} WHERE {where}"))
            for where in queries
        ]
        rows = pa.concat_tables(parts).sort_by(dataset.timestamp.name)
        return watermark.select_newer(rows)

    def read_new(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        """`read_after` of every subtable, those created since the last read included (from their first row)."""
        where = self._subtables_where
        existing = self._rows(f"SELECT COUNT(*) FROM information_schema.ins_tables WHERE {where}")
        if existing and int(existing[0][0]) != len(watermark.per_subtable):
            names = self._rows(f"SELECT table_name FROM information_schema.ins_tables WHERE {where}")
            watermark.include(name for (name,) in names)
        return super().read_new(dataset, watermark)

    def read_latest_per_subtable(self, dataset: Dataset) -> pa.Table:
        def selected(f: Field, value: str) -> str:
            return f"CAST({value} AS BIGINT) AS `{f.name}`" if f.is_time else f"{value} AS `{f.name}`"

        columns = [selected(f, f"LAST_ROW(`{f.name}`)") for f in dataset.columns]
        tags = [selected(f, f"`{f.name}`") for f in dataset.tags]
        # partitioned by the tags too (constant per subtable) so that they may be selected beside LAST_ROW
        partition = ", ".join(["tbname", *(f"`{f.name}`" for f in dataset.tags)])
        sql = f"SELECT tbname, {', '.join(columns + tags)} FROM {self._qualified} PARTITION BY {partition}"
        return self._table(dataset, self._rows(sql)).sort_by(dataset.timestamp.name)

    def read_latest(self, dataset: Dataset, limit: int) -> pa.Table:
        ts = f"`{dataset.timestamp.name}`"
        sql = f"SELECT {dataset.select_list()} FROM {self._qualified} ORDER BY {ts} DESC LIMIT {int(limit)}"
        return self._table(dataset, self._rows(sql)[::-1])

    def read_range(
        self, dataset: Dataset, start: int | None = None, end: int | None = None, subtables: Sequence[str] = ()
    ) -> pa.Table:
        ts = f"`{dataset.timestamp.name}`"
        where = ["1 = 1"]
        if start is not None:
            where.append(f"{ts} >= {int(start)}")
        if end is not None:
            where.append(f"{ts} < {int(end)}")
        if subtables:
            where.append(f"tbname IN ({', '.join(_sql_literal(name) for name in subtables)})")
        sql = f"SELECT {dataset.select_list()} FROM {self._qualified} WHERE {' AND '.join(where)}"
        rows = self._table(dataset, self._rows(sql))
        return rows.sort_by([(SUBTABLE_COLUMN, "ascending"), (dataset.timestamp.name, "ascending")])

    def discover(self) -> Dataset | None:
        if self.database.name not in {row[0] for row in self._rows("SHOW DATABASES")} or not self._stable_exists():
            return None
        dataset = tdengine_dataset(self.stable, self._rows(f"DESCRIBE {self._qualified}"), self.describe())
        return with_existing(dataset, self.existing_subtables(dataset))

    def existing_subtables(self, dataset: Dataset) -> pa.Table:
        """`tbname` and the tags of every subtable of the super table, rows or not (`SELECT TAGS`), in the order
        they were created (then by name)."""
        schema = dataset.subtables_schema()
        tags = "".join(f", `{f.name}`" for f in dataset.tags)
        rows = self._rows(f"SELECT TAGS tbname{tags} FROM {self._qualified}")
        where = self._subtables_where
        created = dict(
            self._rows(
                f"SELECT table_name, CAST(create_time AS BIGINT) FROM information_schema.ins_tables WHERE {where}"
            )
        )
        rows.sort(key=lambda row: (int(created.get(row[0], 0)), str(row[0])))
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in schema]
        for index, f in enumerate(dataset.tags, start=1):
            if f.is_time:
                ticks = iter(
                    epoch_ticks([v for v in columns[index] if v is not None], self.database.precision).tolist()
                )
                columns[index] = [None if v is None else next(ticks) for v in columns[index]]
        return pa.table([pa.array(column, f.type) for column, f in zip(columns, schema, strict=True)], schema=schema)

    def count(self, dataset: Dataset) -> int:
        rows = self._rows(f"SELECT COUNT(*) FROM {self._qualified}")
        return int(rows[0][0]) if rows else 0

    def status(self, dataset: Dataset) -> StoreStatus:
        version = self.server_version()
        databases = tuple(row[0] for row in self._rows("SHOW DATABASES"))
        exists = self.database.name in databases and self._stable_exists()
        subtables = None
        if exists:
            where = self._subtables_where
            subtables = int(self._rows(f"SELECT COUNT(*) FROM information_schema.ins_tables WHERE {where}")[0][0])
        return StoreStatus(
            self.kind,
            self.endpoint.dsn(self.database.name, masked=True),
            True,
            version,
            databases,
            self.count(dataset) if exists else None,
            subtables=subtables,
        )

    def _stable_exists(self, stable: str | None = None) -> bool:
        name = stable or self.stable
        rows = self._rows(
            "SELECT stable_name FROM information_schema.ins_stables "
            f"WHERE db_name = {_sql_literal(self.database.name)} AND stable_name = {_sql_literal(name)}"
        )
        return bool(rows)

    def last_by_tag(self, stables: Sequence[str], tag: str) -> dict[str, int]:
        """The newest time per value of tag `tag` over those of the schemaless super tables `stables` that
        exist and have that tag: where earlier schemaless writes left off."""
        newest: dict[str, int] = {}
        for stable in dict.fromkeys(stables):
            if not self._stable_exists(stable):
                continue
            qualified = f"`{self.database.name}`.`{stable}`"
            # DESCRIBE rows: field, type, length, note (TAG for tags), ...
            if not any(row[0] == tag and "TAG" in str(row[3]).upper() for row in self._rows(f"DESCRIBE {qualified}")):
                continue  # written before the tag was: its rows are in subtables no new write reaches
            time_column = f"`{SCHEMALESS_TIME_COLUMN}`"
            sql = f"SELECT `{tag}`, CAST(LAST({time_column}) AS BIGINT) FROM {qualified} PARTITION BY `{tag}`"
            for value, ts in self._rows(sql):
                if value is not None:
                    newest[str(value)] = max(newest.get(str(value), BEFORE_ANY_ROW), int(ts))
        return newest

    def write_text(self, dataset: Dataset, lines: list[str], protocol: SchemalessProtocol) -> int:
        self._use_database()
        with driver_errors(f"TDengine refused {len(lines)} {protocol} lines"):
            self._conn.schemaless_insert(
                lines=lines,
                protocol=getattr(self._taosws.PySchemalessProtocol, _TAOSWS_PROTOCOL[protocol]),
                precision=getattr(self._taosws.PySchemalessPrecision, _TAOSWS_PRECISION[self.database.precision]),
                ttl=0,
                req_id=0,
            )
        return len(lines)

    def _now(self) -> int:
        return time.time_ns() // (1_000_000_000 // TICKS_PER_SECOND[self.database.precision])

    @property
    def _claims(self) -> str:
        return f"`{self.database.name}`.`{CLAIMS_TABLE}`"

    def claim(self, dataset: Dataset, first: int, tables: int, holder: str) -> Claim:
        # the claim's own connection: its heartbeat thread must not share the producer's
        keeper = TDengineStore(self.endpoint, self.database, self.stable, self.retries)
        try:
            return keeper._take_claim(dataset, first, tables, holder[:HOLDER_LENGTH])
        except BaseException:
            keeper.close()
            raise

    def _take_claim(self, dataset: Dataset, first: int, tables: int, holder: str) -> Claim:
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {self._claims} (`ts` TIMESTAMP, `heartbeat` TIMESTAMP, "
            f"`stable` VARCHAR(192), `first_table` INT, `tables` INT, `holder` VARCHAR({HOLDER_LENGTH}))"
        )
        others: list[tuple[int, int, str]] = []
        for attempt in range(CLAIM_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0.1, 0.5))  # two producers that saw each other try again apart
            stamp = self._now()

            def write(stamp: int = stamp) -> None:
                self._execute(
                    f"INSERT INTO {self._claims} VALUES ({stamp}, {self._now()}, {_sql_literal(self.stable)}, "
                    f"{first}, {tables}, {_sql_literal(holder)})"
                )

            write()
            rows = self._rows(
                "SELECT CAST(`ts` AS BIGINT), CAST(`heartbeat` AS BIGINT), `first_table`, `tables`, `holder` "
                f"FROM {self._claims} WHERE `stable` = {_sql_literal(self.stable)}"
            )
            if not any(row[0] == stamp and row[4] == holder for row in rows):
                continue  # another claim was written with the same timestamp over this one
            fresh = self._now() - int(CLAIM_STALE_SECONDS * TICKS_PER_SECOND[self.database.precision])
            others = [
                (int(start), int(count), str(who))
                for ts, beat, start, count, who in rows
                if ts != stamp
                and int(beat) >= fresh
                and int(start) < first + tables
                and first < int(start) + int(count)
            ]
            if not others:
                return _HeartbeatClaim(self, stamp, write, first, tables)
            self.delete_claim(stamp)
        raise SubtablesClaimed(claimed_message(self.describe(), dataset, first, tables, others))

    def delete_claim(self, stamp: int) -> None:
        """Withdraw the claim written at `stamp`."""
        self._execute(f"DELETE FROM {self._claims} WHERE `ts` = {int(stamp)}")

    def topic_name(self) -> str:
        """The feed's topic; topic names are global to a server, so it names the database too."""
        return f"{self.database.name}_{self.stable}_feed"

    def create_topic(self, dataset: Dataset) -> str:
        """Create the feed's topic unless it exists; returns its name.

        It selects the store layout with times cast to epoch integers, so consumers parse no timestamps.
        """
        topic = self.topic_name()
        self._execute(f"CREATE TOPIC IF NOT EXISTS `{topic}` AS SELECT {dataset.select_list()} FROM {self._qualified}")
        return topic

    def close(self) -> None:
        try:
            if self._statement is not None:
                self._statement.close()
            self._conn.close()
        except Exception:
            pass  # closing a connection to a server that went away has nothing left to release
