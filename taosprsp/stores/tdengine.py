"""The TDengine store, through taosAdapter's WebSocket API (`taos-ws-py`, imported as `taosws`).

Over 400 lines: it is one class, the whole `Store` interface against TDengine (schema, writes, reads, claims);
the bind building and the server-wide catalog and drops are apart already.

Writes go through one prepared stmt2 statement with columnar binds, several subtables per call and tags
bound once per subtable (the binds are made in `taosprsp.stores.stmt2`, whose `bind_rounds`, `_run_lists` and
`MAX_ROWS_PER_SUBTABLE_BIND` stay importable from here). Reads select times as `CAST(ts AS BIGINT)`, so no
timestamp string is parsed.
The feed's TMQ subscription is in `taosprsp.stores.tmq`; the server's databases, topics and consumer groups,
and dropping them, in `taosprsp.stores.tdengine_server` (whose `DatabaseOptions` and `LIVE_CONSUMER_STATUSES`
stay importable from here).

A producer claims its subtables in `taosprsp_claims`, a normal table of the database: one row per producer
(claimed at, heartbeat, super table, subtable range, who), rewritten every `CLAIM_HEARTBEAT_SECONDS` by a
thread with its own connection and deleted when the producer stops. TDengine has no transactions, so a
claim is written first and read back after: a producer that then sees any other live claim on its
subtables withdraws its own. Of two producers claiming at once, the later reader always sees the earlier
writer, so at most one goes on; a claim not rewritten for `CLAIM_STALE_SECONDS` (its producer was killed)
no longer counts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from taosprsp.datasets import (
    SUBTABLE_COLUMN,
    TICKS_PER_SECOND,
    Dataset,
    Field,
    Precision,
    epoch_ticks,
    identifier,
    now_ticks,
)
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
from taosprsp.stores.stmt2 import MAX_ROWS_PER_SUBTABLE_BIND as MAX_ROWS_PER_SUBTABLE_BIND
from taosprsp.stores.stmt2 import BindCalls, BindPlan, column_binders
from taosprsp.stores.stmt2 import _run_lists as _run_lists
from taosprsp.stores.stmt2 import bind_rounds as bind_rounds
from taosprsp.stores.tdengine_server import LIVE_CONSUMER_STATUSES as LIVE_CONSUMER_STATUSES
from taosprsp.stores.tdengine_server import DatabaseOptions as DatabaseOptions
from taosprsp.stores.tdengine_server import ServerCatalog

SUBTABLES_PER_CREATE = 200
BOUNDS_PER_QUERY = 500
"""Per-subtable bounds OR-ed into one read: a few tens of kilobytes of SQL, well under TDengine's 1 MB."""
CLAIMS_TABLE = "taosprsp_claims"
CLAIM_HEARTBEAT_SECONDS = 5.0
CLAIM_STALE_SECONDS = 20.0
CLAIM_ATTEMPTS = 3
HOLDER_LENGTH = 1024
SCHEMALESS_TIME_COLUMN = "_ts"
"""The time column TDengine gives the super tables schemaless writes create."""
_TAOSWS_PROTOCOL: dict[SchemalessProtocol, str] = {"line": "Line", "telnet": "Telnet", "json": "Json"}
_TAOSWS_PRECISION: dict[Precision, str] = {"ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


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


def _arrow(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """Rows as the driver returns them, as an Arrow table of `schema`."""
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.table([pa.array(column, f.type) for column, f in zip(columns, schema, strict=True)], schema=schema)


class TDengineStore(ServerCatalog, Store):
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
        self._binds = BindPlan(taosws)
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
        self._binds.forget_tags()

    def _prepared(self, dataset: Dataset) -> Any:
        if self._statement is None:
            self._use_database()
            statement = self._conn.stmt2_statement()
            statement.prepare(dataset.insert_sql(self.stable))
            self._statement = statement
        return self._statement

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

    def as_lists(self, dataset: Dataset, batch: pa.Table) -> BindCalls:
        """`batch` as the stmt2 helpers take it (`BindPlan.as_lists`), with this store's kept tags and layout."""
        return self._binds.as_lists(dataset, batch)

    def write_lists(
        self,
        dataset: Dataset,
        calls: BindCalls,
        refused: str = "TDengine refused a bind",
    ) -> int:
        """Bind and execute what `as_lists` made, one bind call per item of `calls`; returns rows written. On
        its own it is the bare client, nothing left to convert: `bench` measures `write` against it."""
        statement = self._prepared(dataset)
        binders = [binder for _, binder in column_binders(self._taosws, dataset, self.database.precision)]
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
        return now_ticks(self.database.precision)

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
