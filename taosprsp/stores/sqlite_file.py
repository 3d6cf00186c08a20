"""The file under the embedded store: its SQLite connection, its tables and how producers claim subtables in it.

`SqliteFile` opens the file in WAL mode through Arrow's ADBC driver, creates and migrates the tables, and claims
subtable ranges; `taosprsp.stores.embedded.EmbeddedStore` builds the store's reads and writes on it.

Like TDengine, the table keeps one row per (subtable, timestamp): a `UNIQUE (ts, tbname) ON CONFLICT REPLACE`
constraint makes a second write of the same key replace the first, and its index (timestamp first, so rows
arriving in time order append at its end) is also the index reads by time use. A file written before the key
gets it the first time `ensure_schema` opens it (duplicate keys keep the row written last). Rows keep SQLite's
rowid in the order they were stored (a replaced row takes a new, higher one), which the feed reads by.

`<stable>__subtables` records every subtable with its tags, in the order they were created: `ensure_schema`
creates the ones a producer will write, and a write creates any it has not seen (as TDengine creates a
subtable on its first write), so a table an import or an MQTT ingest filled is discovered with its subtables.

A new file gets 16 KiB pages (SQLite's default is 4 KiB): a large load writes a quarter of the WAL frames and
b-tree pages, each one or two system calls less (measured, 1 M rows of 10 columns: ~15% less wall time to
ingest), while a small commit of a live producer writes its few dirty pages a little larger (~0.5 -> ~0.6 ms a
commit here). A file keeps the page size it was created with.

`Checkpoints` copies the WAL into the file on a thread and connection of its own during a bulk load, so that
the writer does not stop at each commit to copy and fsync (see `EmbeddedStore.bulk_load`).

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.config import ensure_directory
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, identifier
from taosprsp.errors import StoreError
from taosprsp.generate import subtables as subtable_range
from taosprsp.stores.base import (
    Claim,
    Store,
    SubtablesClaimed,
    claimed_message,
)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 16_384
"""Bytes per page of a new file (see the module's docstring)."""
_UNUSABLE_FILE = ("file is not a database", "malformed", "SQLITE_CORRUPT", "SQLITE_NOTADB")
"""What SQLite says of a file that is not one of its databases, or is one with damaged pages."""


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


def to_sqlite(batch: pa.Table) -> pa.Table:
    """SQLite integers are signed 64-bit: BIGINT UNSIGNED goes in as the same 64 bits read signed."""
    for index, field in enumerate(batch.schema):
        if pa.types.is_uint64(field.type):
            batch = batch.set_column(index, field.name, pc.cast(batch[field.name], pa.int64(), safe=False))
    return batch


class Checkpoints:
    """Checkpoints of a file's WAL on a thread and connection of their own, one after each `request`.

    A checkpoint copies the frames committed so far into the file and fsyncs it; a passive one never waits for
    the writer, which goes on appending to the WAL meanwhile (SQLite starts the WAL over at a write that finds
    it all copied and no reader in it). A checkpoint that fails is left to the next one, or to the close of
    the file's last connection, which copies what is left: the rows are in the WAL either way.
    """

    def __init__(self, path: Path) -> None:
        self._conn = adbc.connect(str(path), autocommit=True)
        self._cursor = self._conn.cursor()
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Checkpoint what is committed now, once the checkpoint under way (if any) is done."""
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._cursor.fetchall()
            except adbc.Error:
                continue  # see the class docstring: nothing is lost, the next checkpoint copies it

    def close(self) -> None:
        """Stop after the checkpoint under way, if any."""
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        self._cursor.close()
        self._conn.close()


class SqliteFile(Store):
    """One SQLite file in WAL mode holding the super table `stable` stands for, its subtables and claims: the
    part of the embedded store that is not its reads and writes."""

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
            self._query(f"PRAGMA page_size = {PAGE_SIZE}")  # only a file without tables yet takes it
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
        columns = ", ".join(
            [
                f'"{SUBTABLE_COLUMN}" TEXT PRIMARY KEY ON CONFLICT IGNORE',
                *(f'"{f.name}" {f.sqlite_type()}' for f in dataset.tags),
            ]
        )
        self._query(f'CREATE TABLE IF NOT EXISTS "{self._subtables}" ({columns})')
        if tables:
            self._record_range(dataset, tables, first)

    def _record_range(self, dataset: Dataset, tables: int, first: int) -> None:
        """Record subtables first..first+tables-1 with their generated tags, those not recorded yet."""
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
            rows = to_sqlite(subtables)
            self._off_main_thread(lambda: self._cursor.adbc_ingest(self._subtables, rows, mode="append"))
            self._recorded = None  # read again at the next write

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

    def close(self) -> None:
        self._worker.shutdown(wait=True)  # a statement still running (Ctrl-C came meanwhile) finishes first
        self._cursor.close()
        self._conn.close()
