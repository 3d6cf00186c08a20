"""The embedded store: one SQLite file in WAL mode, read and written through Arrow's ADBC driver.

Why SQLite and not DuckDB: the producer and the server are separate processes using the same file at the
same time. DuckDB's file lock admits one writing process and no readers in other processes; SQLite in WAL
mode admits one writer and any number of concurrent readers, and readers never block the writer. ADBC
moves Arrow tables in and out without per-row Python (measured here: ~0.6 M rows/s ingest, ~1 M rows/s
read into Arrow, against ~0.46 M rows/s for the stdlib's `executemany`).

A large load (`bulk_load`, an import) writes in time order, the key's first column, so that each row lands at
the end of the key's index rather than all over it, with `synchronous = NORMAL` and a 64 MiB page cache on
its connection (measured, 1 M rows of 10 columns: 1.6-2.2 s of CPU to ingest, against 3.0-3.2 s in subtable
order with the defaults). In WAL mode NORMAL skips the sync at each commit: a committed batch survives the
process dying but may be lost with the machine (power loss, OS crash), never corrupting the file; importing
the file again writes what was lost, and nothing twice. The WAL is copied into the file by `Checkpoints` on a
thread of its own after each batch, while the next one is written, rather than by the writer at its commit
(~10% less wall time for that import); the writer still checkpoints when the WAL passes `BULK_WAL_BYTES`, so
that a long import does not grow the WAL without bound.

The file itself (connection, tables, the (subtable, timestamp) key, `<stable>__subtables`, claims) is
`taosprsp.stores.sqlite_file.SqliteFile`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset
from taosprsp.errors import StoreError
from taosprsp.stores.base import Snapshot, StoreStatus, Watermark
from taosprsp.stores.discover import sqlite_dataset, with_existing
from taosprsp.stores.sqlite_file import Checkpoints, SqliteFile, to_sqlite

BULK_CACHE_KIB = 65_536
"""The page cache of a bulk load's connection (SQLite's default is 2 MiB): the key's index stays in memory."""
BULK_WAL_BYTES = 32 << 20
"""The WAL size at which a bulk load's writer checkpoints itself: the checkpoints of `Checkpoints` run while it
appends, so without this the WAL would grow until the load ends. Its own checkpoint finds little left to copy,
and the next write starts the WAL over, in pages the system already holds (~5% faster than letting it grow to
128 MiB for 1 M rows)."""
_PROTOTYPE = {"integer": "0", "floating": "0.0", "string": "''"}
"""A typed literal per Arrow family: the first row of every read, so that ADBC, which infers each column's type
from the first rows it sees, infers the declared one even when those rows hold NULLs (apache/arrow-adbc#581)."""


def _family(kind: pa.DataType) -> str:
    if pa.types.is_floating(kind):
        return "floating"
    return "string" if pa.types.is_string(kind) else "integer"


class EmbeddedStore(SqliteFile):
    """A local file store that needs no server. `stable` names the table that stands for the super table."""

    kind = "embedded"
    _checkpoints: Checkpoints | None = None
    """The checkpoints of a bulk load under way."""

    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        if batch.num_rows:
            rows = to_sqlite(batch)
            try:
                self._record_subtables(dataset, rows)
                self._off_main_thread(lambda: self._cursor.adbc_ingest(self.stable, rows, mode="append"))
            except adbc.Error as exc:
                raise StoreError(f"{self.describe()} refused a batch of {batch.num_rows} rows: {exc}") from exc
            if self._checkpoints is not None:
                self._checkpoints.request()
        return batch.num_rows

    def _record_subtables(self, dataset: Dataset, rows: pa.Table) -> None:
        """Record the subtables of `rows` not recorded yet, with the tags of their first row."""
        if self._recorded is None:
            known = self._query(f'SELECT "{SUBTABLE_COLUMN}" FROM "{self._subtables}"')[SUBTABLE_COLUMN]
            self._recorded = set(known.to_pylist())
        new = [name for name in pc.unique(rows[SUBTABLE_COLUMN]).to_pylist() if name not in self._recorded]
        if not new:
            return
        # the row each new subtable first appears in: index_in answers a value's first position in the set
        first = pc.index_in(pa.array(new, pa.string()), value_set=rows[SUBTABLE_COLUMN].combine_chunks())
        subtables = rows.select([SUBTABLE_COLUMN, *(f.name for f in dataset.tags)]).take(first)
        self._off_main_thread(lambda: self._cursor.adbc_ingest(self._subtables, subtables, mode="append"))
        self._recorded.update(new)

    def bulk_order(self, dataset: Dataset) -> list[tuple[str, str]]:
        # time alone: the rows of one time land together at the end of the (time, subtable) index whatever
        # their order, and a file written in time order, as most are, then needs no sort
        return [(dataset.timestamp.name, "ascending")]

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        page_size = self._query("PRAGMA page_size").column(0)[0].as_py()
        settings = {
            "synchronous": 1,  # NORMAL
            "cache_size": -BULK_CACHE_KIB,
            "wal_autocheckpoint": BULK_WAL_BYTES // page_size,
        }
        before = {name: self._query(f"PRAGMA {name}").column(0)[0].as_py() for name in settings}
        try:
            checkpoints = Checkpoints(self.path)
        except adbc.Error as exc:
            raise self._refused(exc) from exc
        try:
            for name, value in settings.items():
                self._query(f"PRAGMA {name} = {value}")
            self._checkpoints = checkpoints
            yield
        finally:
            self._checkpoints = None
            checkpoints.close()
            for name, value in before.items():
                self._query(f"PRAGMA {name} = {int(value)}")

    def _select(self, dataset: Dataset) -> str:
        names = ", ".join(f'"{n}"' for n in dataset.arrow_schema().names)
        return f'SELECT {names} FROM "{self.stable}"'

    def _read(self, dataset: Dataset, sql: str, parameters: tuple = ()) -> pa.Table:
        """The rows of `sql` (a select of `_select`'s columns) in the store layout, types as declared."""
        return self.select(sql, dataset.arrow_schema(), parameters)

    def select(self, sql: str, schema: pa.Schema, parameters: Sequence[Any] = ()) -> pa.Table:
        prototype = ", ".join(f'{_PROTOTYPE[_family(f.type)]} AS "{f.name}"' for f in schema)
        table = self._query(f"SELECT {prototype} UNION ALL SELECT * FROM ({sql})", tuple(parameters)).slice(1)
        if table.num_rows == 0:
            return schema.empty_table()
        columns = [pc.cast(table.column(i), f.type, safe=not pa.types.is_uint64(f.type)) for i, f in enumerate(schema)]
        return pa.table(columns, schema=schema)

    def last_timestamps(self, dataset: Dataset) -> dict[str, int]:
        if not self._exists():
            return {}
        ts = dataset.timestamp.name
        newest = self._query(
            f'SELECT "{SUBTABLE_COLUMN}", max("{ts}") AS ts FROM "{self.stable}" GROUP BY "{SUBTABLE_COLUMN}"'
        )
        return dict(zip(newest[SUBTABLE_COLUMN].to_pylist(), newest["ts"].to_pylist(), strict=True))

    def read_after(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        ts = dataset.timestamp.name
        rows = self._read(dataset, f'{self._select(dataset)} WHERE "{ts}" > ? ORDER BY "{ts}"', (watermark.low,))
        return watermark.select_newer(rows)

    def read_latest(self, dataset: Dataset, limit: int) -> pa.Table:
        ts = dataset.timestamp.name
        newest = f'{self._select(dataset)} ORDER BY "{ts}" DESC LIMIT ?'
        return self._read(dataset, f'SELECT * FROM ({newest}) ORDER BY "{ts}"', (limit,))

    def read_latest_per_subtable(self, dataset: Dataset) -> pa.Table:
        if not self._exists():
            return dataset.arrow_schema().empty_table()
        ts = dataset.timestamp.name
        names = ", ".join(f'row."{n}"' for n in dataset.arrow_schema().names)
        newest = f'SELECT "{SUBTABLE_COLUMN}" AS name, max("{ts}") AS ts FROM "{self.stable}" GROUP BY name'
        sql = (
            f'SELECT {names} FROM "{self.stable}" AS row JOIN ({newest}) AS newest '
            f'ON row."{ts}" = newest.ts AND row."{SUBTABLE_COLUMN}" = newest.name ORDER BY row."{ts}"'
        )
        return self._read(dataset, sql)

    def _last_rowid(self) -> int:
        """The rowid of the row stored last (0 when none, or no table): rowids only grow, a replaced row takes a
        new one. One query per feed read: the table's existence is asked only when that query fails."""
        try:
            return self._query(f'SELECT coalesce(max(_rowid_), 0) AS n FROM "{self.stable}"')["n"][0].as_py()
        except StoreError:
            if self._exists():
                raise
            return 0

    def snapshot(self, dataset: Dataset, limit: int) -> Snapshot:
        self._query("BEGIN")  # the three reads see the same rows, whatever a producer commits meanwhile
        try:
            last = self._last_rowid()
            latest = self.read_latest_per_subtable(dataset)
            window = self.read_latest(dataset, limit)
        finally:
            self._query("COMMIT")
        watermark = Watermark(sequence=last)
        watermark.advance(latest)
        watermark.advance(window)
        return Snapshot(window, latest, watermark)

    def read_new(self, dataset: Dataset, watermark: Watermark) -> pa.Table:
        """Rows in the order they were stored, after `watermark.sequence`: each once, whatever its timestamp."""
        last = self._last_rowid()
        after = watermark.sequence or 0
        if last < after:
            after = 0  # the table was dropped and created again: every row in it is new
        if last == after:
            watermark.sequence = last
            return dataset.arrow_schema().empty_table()
        rows = self._read(
            dataset, f"{self._select(dataset)} WHERE _rowid_ > ? AND _rowid_ <= ? ORDER BY _rowid_", (after, last)
        )
        watermark.sequence = last
        watermark.advance(rows)
        return rows

    def read_range(
        self, dataset: Dataset, start: int | None = None, end: int | None = None, subtables: Sequence[str] = ()
    ) -> pa.Table:
        ts = dataset.timestamp.name
        where, parameters = ["1 = 1"], []
        if start is not None:
            where.append(f'"{ts}" >= ?')
            parameters.append(start)
        if end is not None:
            where.append(f'"{ts}" < ?')
            parameters.append(end)
        if subtables:
            where.append(f'"{SUBTABLE_COLUMN}" IN ({", ".join("?" for _ in subtables)})')
            parameters.extend(subtables)
        sql = f'{self._select(dataset)} WHERE {" AND ".join(where)} ORDER BY "{SUBTABLE_COLUMN}", "{ts}"'
        return self._read(dataset, sql, tuple(parameters))

    def discover(self) -> Dataset | None:
        if not self._exists():
            return None
        fields = self._query("SELECT name, type FROM pragma_table_info(?)", (self.stable,))
        tags = self._query("SELECT name FROM pragma_table_info(?)", (self._subtables,))
        dataset = sqlite_dataset(
            self.stable,
            list(zip(fields["name"].to_pylist(), fields["type"].to_pylist(), strict=True)),
            set(tags["name"].to_pylist()),
            self.describe(),
        )
        return with_existing(dataset, self.existing_subtables(dataset))

    def existing_subtables(self, dataset: Dataset) -> pa.Table:
        """`tbname` and the tags of every recorded subtable, in the order they were recorded."""
        schema = dataset.subtables_schema()
        names = ", ".join(f'"{n}"' for n in schema.names)
        return self.select(f'SELECT {names} FROM "{self._subtables}" ORDER BY _rowid_', schema)

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
            subtables=self._query(f'SELECT count(*) AS n FROM "{self._subtables}"')["n"][0].as_py()
            if self._exists()
            else 0,
        )
