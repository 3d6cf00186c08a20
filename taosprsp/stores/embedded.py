"""The embedded store: one SQLite file in WAL mode, read and written through Arrow's ADBC driver.

Why SQLite and not DuckDB: the producer and the server are separate processes using the same file at the
same time. DuckDB's file lock admits one writing process and no readers in other processes; SQLite in WAL
mode admits one writer and any number of concurrent readers, and readers never block the writer. ADBC
moves Arrow tables in and out without per-row Python (measured here: ~0.6 M rows/s ingest, ~1 M rows/s
read into Arrow, against ~0.46 M rows/s for the stdlib's `executemany`).

Like TDengine, the table keeps one row per (subtable, timestamp): a `UNIQUE (ts, tbname) ON CONFLICT REPLACE`
constraint makes a second write of the same key replace the first, and its index (timestamp first, so rows
arriving in time order append at its end) is also the index reads by time use. A file written before the key
gets it the first time `ensure_schema` opens it (duplicate keys keep the row written last). Rows keep SQLite's
rowid in the order they were stored (a replaced row takes a new, higher one), which the feed reads by.

`<stable>__subtables` records every subtable with its tags, in the order they were created: `ensure_schema`
creates the ones a producer will write, and a write creates any it has not seen (as TDengine creates a
subtable on its first write), so a table an import or an MQTT ingest filled is discovered with its subtables.

A large load (`bulk_load`, an import) writes in the order of the key, time first, so that each row lands at
the end of the key's index rather than all over it, with `synchronous = NORMAL` and a 64 MiB page cache on
its connection (measured, 1 M rows of 10 columns: 1.6-2.2 s of CPU to ingest, against 3.0-3.2 s in subtable
order with the defaults). In WAL mode NORMAL skips the sync at each commit: a committed batch survives the
process dying but may be lost with the machine (power loss, OS crash), never corrupting the file; importing
the file again writes what was lost, and nothing twice.

Two producers on the same subtables are kept apart by an open-file-description lock on the byte range
[first, first + tables) of `<file>-<stable>.claims`: the kernel releases it when the producer exits, however it
exits, and `<stable>__claims` in the store names who holds what for the refusal message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import adbc_driver_sqlite.dbapi as adbc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.config import ensure_directory
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, identifier
from taosprsp.errors import StoreError
from taosprsp.generate import subtables as subtable_range
from taosprsp.stores.base import (
    Claim,
    Snapshot,
    Store,
    StoreStatus,
    SubtablesClaimed,
    Watermark,
    claimed_message,
)
from taosprsp.stores.discover import sqlite_dataset, with_existing

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
BULK_CACHE_KIB = 65_536
"""The page cache of a bulk load's connection (SQLite's default is 2 MiB): the key's index stays in memory."""
_UNUSABLE_FILE = ("file is not a database", "malformed", "SQLITE_CORRUPT", "SQLITE_NOTADB")
"""What SQLite says of a file that is not one of its databases, or is one with damaged pages."""
_PROTOTYPE = {"integer": "0", "floating": "0.0", "string": "''"}
"""A typed literal per Arrow family: the first row of every read, so that ADBC, which infers each column's type
from the first rows it sees, infers the declared one even when those rows hold NULLs (apache/arrow-adbc#581)."""


def _family(kind: pa.DataType) -> str:
    if pa.types.is_floating(kind):
        return "floating"
    return "string" if pa.types.is_string(kind) else "integer"


_OVERLAPPING = '"first" < ? AND ? < "first" + "tables"'
"""A recorded claim overlapping subtables first..first+tables-1 (parameters: first + tables, first)."""
_FLOCK = "hhqqi4x"
"""Linux's `struct flock` (type, whence, start, length, pid, padding), for `fcntl` range locks."""


def _range_lock(fd: int, kind: int, first: int, tables: int, command: int = fcntl.F_OFD_SETLK) -> int:
    """Lock (or unlock, or with F_OFD_GETLK test) bytes first..first+tables-1 of `fd`; returns the lock type the
    kernel answers with (for F_OFD_GETLK: F_UNLCK when nothing else holds any of them).

    Open-file-description locks, unlike POSIX record locks, conflict between two opens in one process and are
    not dropped when the process closes some other descriptor of the file."""
    answer = fcntl.fcntl(fd, command, struct.pack(_FLOCK, kind, os.SEEK_SET, first, tables, 0))
    return struct.unpack(_FLOCK, answer)[0]


class _RangeClaim(Claim):
    """The lock of one producer on its subtables in an embedded store: held by an open file description."""

    def __init__(self, fd: int, first: int, tables: int) -> None:
        super().__init__(first, tables)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the description releases its locks
            self._fd = None


def _to_sqlite(batch: pa.Table) -> pa.Table:
    """SQLite integers are signed 64-bit: BIGINT UNSIGNED goes in as the same 64 bits read signed."""
    for index, field in enumerate(batch.schema):
        if pa.types.is_uint64(field.type):
            batch = batch.set_column(index, field.name, pc.cast(batch[field.name], pa.int64(), safe=False))
    return batch


class EmbeddedStore(Store):
    """A local file store that needs no server. `stable` names the table that stands for the super table."""

    kind = "embedded"

    def __init__(self, path: str | Path, stable: str, create: bool = True, verify: bool = False) -> None:
        """Open (or with `create`, create) the file; `verify` runs SQLite's quick_check over every page first.

        What the user can get wrong (a directory, a read-only or missing place, a file that is not SQLite or
        is damaged) is a StoreError naming the path, never ADBC's own "failed to allocate memory".
        """
        self.path = Path(path)
        self.stable = identifier(stable, "dataset.stable")
        self._check_path(create)
        # Autocommit: ADBC refuses `journal_mode=wal` inside its implicit transaction, and each ingest is
        # still one transaction. The stdlib's sqlite3 is not used beside it on purpose: two SQLite
        # libraries in one process release each other's POSIX locks on the same file.
        try:
            self._conn = adbc.connect(str(self.path), autocommit=True)
        except adbc.Error as exc:
            raise self._refused(exc) from exc
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._cursor = self._conn.cursor()
        self._recorded: set[str] | None = None
        """Subtables known to be in `<stable>__subtables` (read at the first write)."""
        try:
            self._query(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._query("PRAGMA journal_mode = wal")
            if verify:
                self._verify()
        except BaseException:
            self.close()
            raise

    def _check_path(self, create: bool) -> None:
        """Refuse, before SQLite sees it, a path it could only fail on with a misleading message."""
        if self.path.is_dir():
            raise StoreError(
                f"store.path: {self.path} is a directory; name a file, e.g. {self.path / 'embedded.sqlite'}"
            )
        if self.path.exists():
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise StoreError(f"store.path: {self.path} is not readable and writable by this user")
            return
        if not create:
            raise StoreError(f"no embedded store at {self.path}: create one with `taosprsp db seed`, or fix store.path")
        parent = ensure_directory(self.path.parent, "store.path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"store.path: cannot create {self.path}: the directory {parent} is not writable; "
                "choose another store.path or run from a writable directory"
            )

    def _verify(self) -> None:
        found = self._query("PRAGMA quick_check(1)").column(0)[0].as_py()
        if found != "ok":
            detail = " ".join(str(found).split())
            raise StoreError(
                f"{self.path} is damaged (SQLite quick_check: {detail}): restore a copy, or move it aside and "
                "seed a new store"
            )

    def _refused(self, exc: adbc.Error) -> StoreError:
        """An ADBC error as one line; a file that is not SQLite or is damaged says so and what to do."""
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if any(mark in reason for mark in _UNUSABLE_FILE):
            return StoreError(
                f"{self.path} is not a usable SQLite database ({reason}): move it aside, or choose another store.path"
            )
        return StoreError(f"{self.describe()}: {reason}")

    @property
    def _claims(self) -> str:
        return f"{self.stable}__claims"

    @property
    def claims_path(self) -> Path:
        """The file whose byte ranges producers lock (see the module's docstring)."""
        return self.path.with_name(f"{self.path.name}-{self.stable}.claims")

    @property
    def _subtables(self) -> str:
        return f"{self.stable}__subtables"

    def describe(self) -> str:
        return f"embedded store {self.path}"

    def _off_main_thread(self, call: Callable[[], T]) -> T:
        """Run an ADBC call on this store's worker thread when called on the main thread.

        On the main thread ADBC's driver manager answers SIGINT by cancelling the statement, which the
        SQLite driver does not implement: Ctrl-C during a write failed it with NOT_IMPLEMENTED (though
        SQLite finished it) and never reached Python's handler, so `produce` and `db seed` could not stop
        cleanly. On a worker thread the statement just completes, and Ctrl-C goes to the main thread's
        handler (a stop flag, or KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return call()
        return self._worker.submit(call).result()

    def _query(self, sql: str, parameters: tuple = ()) -> pa.Table:
        def run() -> pa.Table:
            self._cursor.execute(sql, parameters=parameters or None)
            return self._cursor.fetch_arrow_table()

        try:
            return self._off_main_thread(run)
        except adbc.Error as exc:
            raise self._refused(exc) from exc

    def _exists(self) -> bool:
        found = self._query("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?", (self.stable,))
        return found["n"][0].as_py() > 0

    def drop(self, dataset: Dataset) -> None:
        for table in (self.stable, self._subtables, self._claims):
            self._query(f'DROP TABLE IF EXISTS "{table}"')
        self._recorded = None

    def _create_table_sql(self, dataset: Dataset, name: str) -> str:
        """The super table's stand-in: one row per (subtable, timestamp), a second write replacing the first."""
        ts = dataset.timestamp.name
        columns = ", ".join(
            f'"{f.name}" {f.sqlite_type()}{" NOT NULL" if f.name == ts else ""}' for f in dataset.fields
        )
        return (
            f'CREATE TABLE IF NOT EXISTS "{name}" ("{SUBTABLE_COLUMN}" TEXT NOT NULL, {columns}, '
            f'UNIQUE ("{ts}", "{SUBTABLE_COLUMN}") ON CONFLICT REPLACE)'
        )

    def _keyed(self) -> bool:
        found = self._query("SELECT count(*) AS n FROM pragma_index_list(?) WHERE origin = 'u'", (self.stable,))
        return found["n"][0].as_py() > 0

    def _add_key(self, dataset: Dataset) -> None:
        """Rebuild a table written before the (subtable, timestamp) key with it; duplicates keep the last row."""
        staging = f"{self.stable}__keyed"
        names = ", ".join(f'"{n}"' for n in dataset.arrow_schema().names)
        self._query("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find the key
        try:
            if not self._keyed():
                self._query(f'DROP TABLE IF EXISTS "{staging}"')
                self._query(self._create_table_sql(dataset, staging))
                self._query(f'INSERT INTO "{staging}" ({names}) SELECT {names} FROM "{self.stable}" ORDER BY _rowid_')
                self._query(f'DROP TABLE "{self.stable}"')
                self._query(f'ALTER TABLE "{staging}" RENAME TO "{self.stable}"')
            self._query("COMMIT")
        except BaseException:
            self._query("ROLLBACK")
            raise

    def ensure_schema(self, dataset: Dataset, tables: int, drop: bool = False, first: int = 0) -> None:
        if drop:
            self.drop(dataset)
        self._query(self._create_table_sql(dataset, self.stable))
        if not self._keyed():
            self._add_key(dataset)
        tags = ", ".join(f'"{f.name}" {f.sqlite_type()}' for f in dataset.tags)
        self._query(
            f'CREATE TABLE IF NOT EXISTS "{self._subtables}" '
            f'("{SUBTABLE_COLUMN}" TEXT PRIMARY KEY ON CONFLICT IGNORE, {tags})'
        )
        names, values = subtable_range(dataset, tables, first)
        known = set(self._query(f'SELECT "{SUBTABLE_COLUMN}" FROM "{self._subtables}"')[SUBTABLE_COLUMN].to_pylist())
        missing = [i for i, name in enumerate(names) if name not in known]
        if missing:
            subtables = pa.table(
                {
                    SUBTABLE_COLUMN: pa.array([names[i] for i in missing], pa.string()),
                    **{f.name: values[f.name].take(pa.array(missing)) for f in dataset.tags},
                }
            )
            rows = _to_sqlite(subtables)
            self._off_main_thread(lambda: self._cursor.adbc_ingest(self._subtables, rows, mode="append"))
            self._recorded = None  # read again at the next write

    def write(self, dataset: Dataset, batch: pa.Table) -> int:
        if batch.num_rows:
            rows = _to_sqlite(batch)
            try:
                self._record_subtables(dataset, rows)
                self._off_main_thread(lambda: self._cursor.adbc_ingest(self.stable, rows, mode="append"))
            except adbc.Error as exc:
                raise StoreError(f"{self.describe()} refused a batch of {batch.num_rows} rows: {exc}") from exc
        return batch.num_rows

    def _record_subtables(self, dataset: Dataset, rows: pa.Table) -> None:
        """Record the subtables of `rows` not recorded yet, with the tags of their first row."""
        if self._recorded is None:
            known = self._query(f'SELECT "{SUBTABLE_COLUMN}" FROM "{self._subtables}"')[SUBTABLE_COLUMN]
            self._recorded = set(known.to_pylist())
        new = [name for name in pc.unique(rows[SUBTABLE_COLUMN]).to_pylist() if name not in self._recorded]
        if not new:
            return
        position = pc.index_in(rows[SUBTABLE_COLUMN], value_set=pa.array(new, pa.string()))
        of_new = np.flatnonzero(pc.is_valid(position).to_numpy(zero_copy_only=False))
        _, first = np.unique(position.take(pa.array(of_new)).to_numpy(), return_index=True)
        subtables = rows.select([SUBTABLE_COLUMN, *(f.name for f in dataset.tags)]).take(pa.array(of_new[first]))
        self._off_main_thread(lambda: self._cursor.adbc_ingest(self._subtables, subtables, mode="append"))
        self._recorded.update(new)

    def bulk_order(self, dataset: Dataset) -> list[tuple[str, str]]:
        return [(dataset.timestamp.name, "ascending"), (SUBTABLE_COLUMN, "ascending")]

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        before = {name: self._query(f"PRAGMA {name}").column(0)[0].as_py() for name in ("synchronous", "cache_size")}
        self._query("PRAGMA synchronous = NORMAL")
        self._query(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
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
        """The rowid of the row stored last (0 when none): rowids only grow, a replaced row takes a new one."""
        if not self._exists():
            return 0
        return self._query(f'SELECT coalesce(max(_rowid_), 0) AS n FROM "{self.stable}"')["n"][0].as_py()

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

    def claim(self, dataset: Dataset, first: int, tables: int, holder: str) -> Claim:
        self._query(
            f'CREATE TABLE IF NOT EXISTS "{self._claims}" ("first" INTEGER NOT NULL, "tables" INTEGER NOT NULL, '
            '"holder" TEXT NOT NULL)'
        )
        try:
            fd = os.open(self.claims_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {self.claims_path} to claim subtables: {exc.strerror or exc}") from exc
        try:
            _range_lock(fd, fcntl.F_WRLCK, first, tables)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {self.claims_path}: {exc.strerror or exc}") from exc
            raise SubtablesClaimed(
                claimed_message(self.describe(), dataset, first, tables, self._holders(first, tables))
            ) from None
        # whoever held an overlapping range before has stopped, or this lock would have been refused
        self._query(f'DELETE FROM "{self._claims}" WHERE {_OVERLAPPING}', (first + tables, first))
        self._query(f'INSERT INTO "{self._claims}" VALUES (?, ?, ?)', (first, tables, holder))
        return _RangeClaim(fd, first, tables)

    def _holders(self, first: int, tables: int) -> list[tuple[int, int, str]]:
        """The recorded claims overlapping first..first+tables-1 whose producers still hold their lock."""
        recorded = self._query(
            f'SELECT "first", "tables", "holder" FROM "{self._claims}" WHERE {_OVERLAPPING}',
            (first + tables, first),
        ).to_pylist()
        held = []
        fd = os.open(self.claims_path, os.O_RDWR)
        try:
            for claim in recorded:
                kind = _range_lock(fd, fcntl.F_WRLCK, claim["first"], claim["tables"], fcntl.F_OFD_GETLK)
                if kind != fcntl.F_UNLCK:
                    held.append((claim["first"], claim["tables"], claim["holder"]))
        finally:
            os.close(fd)
        return held

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

    def close(self) -> None:
        self._worker.shutdown(wait=True)  # a statement still running (Ctrl-C came meanwhile) finishes first
        self._cursor.close()
        self._conn.close()
