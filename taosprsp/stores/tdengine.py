"""The TDengine store, through taosAdapter's WebSocket API (`taos-ws-py`, imported as `taosws`).

Writes go through one prepared stmt2 statement with columnar binds, several subtables per call and tags
bound once per subtable. Reads select times as `CAST(ts AS BIGINT)`, so no timestamp string is parsed.
The feed's TMQ subscription is in `taosprsp.stores.tmq`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Field, Precision, identifier
from taosprsp.endpoint import Endpoint
from taosprsp.errors import ConfigError, StoreError, StoreUnreachable, TaosprspError
from taosprsp.stores.base import SchemalessProtocol, Store, StoreStatus, Watermark

# TDengine refuses more rows than this for one subtable in one bind ([0x0236] bind number out of range).
MAX_ROWS_PER_SUBTABLE_BIND = 32_767
SUBTABLES_PER_CREATE = 200
DAY_SECONDS = 86_400
_TAOSWS_PROTOCOL: dict[SchemalessProtocol, str] = {"line": "Line", "telnet": "Telnet", "json": "Json"}
_TAOSWS_PRECISION: dict[Precision, str] = {"ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


@dataclass(frozen=True)
class DatabaseOptions:
    """The `CREATE DATABASE` options taosprsp sets (from `[database]`); durations in seconds."""

    name: str
    precision: Precision
    keep: float
    wal_retention: float

    def create_sql(self) -> str:
        keep_days = max(1, int(self.keep // DAY_SECONDS))
        return (
            f"CREATE DATABASE IF NOT EXISTS `{identifier(self.name, 'database.name')}` "
            f"PRECISION '{self.precision}' KEEP {keep_days}d WAL_RETENTION_PERIOD {int(self.wal_retention)}"
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
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(float(value))


def bind_rounds(names: pa.Array) -> list[list[tuple[int, int]]]:
    """(start, stop) row ranges per bind call: each call binds every subtable's run at most once and at
    most `MAX_ROWS_PER_SUBTABLE_BIND` rows of it; a longer run continues in the next call."""
    codes = pc.dictionary_encode(names).indices.to_numpy()
    edges = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    bounds = np.concatenate([[0], edges, [len(codes)]])
    rounds: list[list[tuple[int, int]]] = []
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        for index, chunk_start in enumerate(range(start, stop, MAX_ROWS_PER_SUBTABLE_BIND)):
            if index == len(rounds):
                rounds.append([])
            rounds[index].append((chunk_start, min(stop, chunk_start + MAX_ROWS_PER_SUBTABLE_BIND)))
    return rounds


class TDengineStore(Store):
    """A TDengine database reached through taosAdapter (`ws://host:6041`)."""

    kind = "tdengine"
    takes_schemaless = True

    def __init__(self, endpoint: Endpoint, database: DatabaseOptions, stable: str, retries: int = 1) -> None:
        import taosws

        self._taosws = taosws
        self.endpoint = endpoint
        self.database = database
        self.stable = identifier(stable, "dataset.stable")
        self.retries = retries
        self._statement: Any = None
        self._tag_cache: dict[str, list[Any]] = {}
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

    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False) -> None:
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
        names = dataset.subtable_names(tables)
        values = dataset.tag_values(tables)
        for start in range(0, tables, SUBTABLES_PER_CREATE):
            clauses = []
            for i in range(start, min(tables, start + SUBTABLES_PER_CREATE)):
                tags = ", ".join(_sql_literal(values[f.name][i]) for f in dataset.tags)
                clauses.append(
                    f"IF NOT EXISTS `{self.database.name}`.`{names[i]}` USING {self._qualified} TAGS ({tags})"
                )
            self._execute("CREATE TABLE " + " ".join(clauses))

    def drop(self, dataset: Dataset) -> None:
        # a database with a topic on it cannot be dropped; `serve` recreates the feed's topic
        self._execute(f"DROP TOPIC IF EXISTS `{self.topic_name()}`")
        self._execute(f"DROP DATABASE IF EXISTS `{self.database.name}`")
        self._statement = None
        self._tag_cache.clear()

    def _prepared(self, dataset: Dataset) -> Any:
        if self._statement is None:
            self._use_database()
            statement = self._conn.stmt2_statement()
            statement.prepare(dataset.insert_sql(self.stable))
            self._statement = statement
        return self._statement

    def _tags(self, dataset: Dataset, batch: pa.Table, row: int) -> list[Any]:
        name = batch[SUBTABLE_COLUMN][row].as_py()
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
        statement = self._prepared(dataset)
        binders = self._column_binders(dataset)
        columns = [(binder, batch[f.name].to_numpy()) for f, binder in binders]
        names = batch[SUBTABLE_COLUMN].combine_chunks()
        try:
            with driver_errors(f"TDengine refused a batch of {batch.num_rows} rows"):
                for ranges in bind_rounds(names):
                    statement.bind(
                        [
                            self._taosws.stmt2_bind_param_view(
                                table_name=names[start].as_py(),
                                tags=self._tags(dataset, batch, start),
                                columns=[binder(values[start:stop].tolist()) for binder, values in columns],
                            )
                            for start, stop in ranges
                        ]
                    )
                    statement.execute()
        except StoreError:
            self._statement = None  # a statement that failed part-way is prepared afresh for the next batch
            raise
        return batch.num_rows

    def _table(self, dataset: Dataset, rows: list[tuple]) -> pa.Table:
        schema = dataset.arrow_schema()
        if not rows:
            return schema.empty_table()
        columns = list(zip(*rows, strict=True))
        return pa.table([pa.array(column, f.type) for column, f in zip(columns, schema, strict=True)], schema=schema)

    def last_timestamps(self, dataset: Dataset) -> dict[str, int]:
        rows = self._rows(f"SELECT tbname, CAST(LAST(ts) AS BIGINT) FROM {self._qualified} PARTITION BY tbname")
        return {name: int(ts) for name, ts in rows}

    def read_after(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        sql = f"SELECT {dataset.select_list()} FROM {self._qualified} WHERE ts > {int(watermark.low)} ORDER BY ts"
        return watermark.select_newer(self._table(dataset, self._rows(sql)))

    def read_latest(self, dataset: Dataset, limit: int) -> pa.Table:
        sql = f"SELECT {dataset.select_list()} FROM {self._qualified} ORDER BY ts DESC LIMIT {int(limit)}"
        return self._table(dataset, self._rows(sql)[::-1])

    def count(self, dataset: Dataset) -> int:
        rows = self._rows(f"SELECT COUNT(*) FROM {self._qualified}")
        return int(rows[0][0]) if rows else 0

    def status(self, dataset: Dataset) -> StoreStatus:
        version = self._rows("SELECT SERVER_VERSION()")[0][0]
        databases = tuple(row[0] for row in self._rows("SHOW DATABASES"))
        rows = self.count(dataset) if self.database.name in databases and self._stable_exists() else None
        return StoreStatus(
            self.kind, self.endpoint.dsn(self.database.name, masked=True), True, str(version), databases, rows
        )

    def _stable_exists(self) -> bool:
        rows = self._rows(
            "SELECT stable_name FROM information_schema.ins_stables "
            f"WHERE db_name = {_sql_literal(self.database.name)} AND stable_name = {_sql_literal(self.stable)}"
        )
        return bool(rows)

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
