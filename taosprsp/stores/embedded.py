"""The embedded store: one SQLite file in WAL mode, read and written through Arrow's ADBC driver.

Why SQLite and not DuckDB: the producer and the server are separate processes using the same file at the
same time. DuckDB's file lock admits one writing process and no readers in other processes; SQLite in WAL
mode admits one writer and any number of concurrent readers, and readers never block the writer. ADBC
moves Arrow tables in and out without per-row Python (measured here: ~0.6 M rows/s ingest, ~1 M rows/s
read into Arrow, against ~0.46 M rows/s for the stdlib's `executemany`).
"""

from __future__ import annotations

from pathlib import Path

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, LogicalKind, identifier
from taosprsp.errors import StoreError
from taosprsp.stores.base import Store, StoreStatus, Watermark

_SQLITE_TYPES: dict[LogicalKind, str] = {
    "timestamp": "INTEGER",
    "date": "INTEGER",
    "float": "REAL",
    "double": "REAL",
    "int": "INTEGER",
    "uint": "INTEGER",
    "bigint": "INTEGER",
    "varchar": "TEXT",
}
BUSY_TIMEOUT_MS = 10_000


class EmbeddedStore(Store):
    """A local file store that needs no server. `stable` names the table that stands for the super table."""

    kind = "embedded"

    def __init__(self, path: str | Path, stable: str) -> None:
        self.path = Path(path)
        self.stable = identifier(stable, "dataset.stable")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: ADBC refuses `journal_mode=wal` inside its implicit transaction, and each ingest is
        # still one transaction. The stdlib's sqlite3 is not used beside it on purpose: two SQLite
        # libraries in one process release each other's POSIX locks on the same file.
        self._conn = adbc.connect(str(self.path), autocommit=True)
        self._cursor = self._conn.cursor()
        self._query(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._query("PRAGMA journal_mode = wal")

    @property
    def _subtables(self) -> str:
        return f"{self.stable}__subtables"

    def describe(self) -> str:
        return f"embedded store {self.path}"

    def _query(self, sql: str, parameters: tuple = ()) -> pa.Table:
        self._cursor.execute(sql, parameters=parameters or None)
        return self._cursor.fetch_arrow_table()

    def _exists(self) -> bool:
        found = self._query("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?", (self.stable,))
        return found["n"][0].as_py() > 0

    def drop(self, dataset: Dataset) -> None:
        for table in (self.stable, self._subtables):
            self._query(f'DROP TABLE IF EXISTS "{table}"')

    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False) -> None:
        if drop:
            self.drop(dataset)
        columns = ", ".join(f'"{f.name}" {_SQLITE_TYPES[f.kind]}' for f in dataset.fields)
        self._cursor.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.stable}" ("{SUBTABLE_COLUMN}" TEXT NOT NULL, {columns})'
        )
        self._cursor.execute(f'CREATE INDEX IF NOT EXISTS "{self.stable}_ts" ON "{self.stable}" (ts)')
        tags = ", ".join(f'"{f.name}" {_SQLITE_TYPES[f.kind]}' for f in dataset.tags)
        self._cursor.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._subtables}" ("{SUBTABLE_COLUMN}" TEXT PRIMARY KEY, {tags})'
        )
        names = dataset.subtable_names(tables)
        known = set(self._query(f'SELECT "{SUBTABLE_COLUMN}" FROM "{self._subtables}"')[SUBTABLE_COLUMN].to_pylist())
        missing = [i for i, name in enumerate(names) if name not in known]
        if missing:
            values = dataset.tag_values(tables)
            subtables = pa.table(
                {
                    SUBTABLE_COLUMN: pa.array([names[i] for i in missing], pa.string()),
                    **{f.name: pa.array(values[f.name][missing], f.spec.arrow) for f in dataset.tags},
                }
            )
            self._cursor.adbc_ingest(self._subtables, subtables, mode="append")

    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        if batch.num_rows:
            try:
                self._cursor.adbc_ingest(self.stable, batch, mode="append")
            except adbc.Error as exc:
                raise StoreError(f"{self.describe()} refused a batch of {batch.num_rows} rows: {exc}") from exc
        return batch.num_rows

    def _select(self, dataset: Dataset) -> str:
        names = ", ".join(f'"{n}"' for n in dataset.arrow_schema().names)
        return f'SELECT {names} FROM "{self.stable}"'

    def _typed(self, dataset: Dataset, table: pa.Table) -> pa.Table:
        schema = dataset.arrow_schema()
        if table.num_rows == 0:
            return schema.empty_table()
        return table.cast(schema)

    def last_timestamps(self, dataset: Dataset) -> dict[str, int]:
        if not self._exists():
            return {}
        newest = self._query(
            f'SELECT "{SUBTABLE_COLUMN}", max(ts) AS ts FROM "{self.stable}" GROUP BY "{SUBTABLE_COLUMN}"'
        )
        return dict(zip(newest[SUBTABLE_COLUMN].to_pylist(), newest["ts"].to_pylist(), strict=True))

    def read_after(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        rows = self._query(f"{self._select(dataset)} WHERE ts > ? ORDER BY ts", (watermark.low,))
        return watermark.select_newer(self._typed(dataset, rows))

    def read_latest(self, dataset: Dataset, limit: int) -> pa.Table:
        rows = self._query(f"SELECT * FROM ({self._select(dataset)} ORDER BY ts DESC LIMIT ?) ORDER BY ts", (limit,))
        return self._typed(dataset, rows)

    def count(self, dataset: Dataset) -> int:
        if not self._exists():
            return 0
        return self._query(f'SELECT count(*) AS n FROM "{self.stable}"')["n"][0].as_py()

    def status(self, dataset: Dataset) -> StoreStatus:
        return StoreStatus(
            kind=self.kind,
            target=str(self.path),
            reachable=True,
            version="SQLite " + self._query("SELECT sqlite_version() AS v")["v"][0].as_py(),
            databases=(self.path.name,),
            rows=self.count(dataset),
        )

    def close(self) -> None:
        self._cursor.close()
        self._conn.close()
