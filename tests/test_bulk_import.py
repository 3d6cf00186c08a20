"""A large import: many blocks, each one write, under the embedded store's bulk-load settings and checkpoints."""

from __future__ import annotations

import threading
from pathlib import Path

import adbc_driver_sqlite.dbapi as adbc
import pytest

from taosprsp import csvfiles
from taosprsp.csvfiles import import_csv
from taosprsp.datasets import Dataset, declare
from taosprsp.stores import EmbeddedStore, Store, Watermark
from taosprsp.stores.sqlite_file import PAGE_SIZE

ROWS = 3000
BAD = {1234: "abc", 2890: "1.5.5"}
"""Data rows (0-based) whose temp does not convert, in blocks well after the first."""
SETTINGS = ("synchronous", "cache_size", "wal_autocheckpoint", "page_size")


def readings() -> Dataset:
    return declare(
        "readings",
        {
            "columns": [{"name": "ts", "type": "TIMESTAMP"}, {"name": "temp", "type": "DOUBLE"}],
            "tags": [{"name": "site", "type": "VARCHAR(8)"}],
        },
        "the test",
    )


def write_csv(path: Path) -> Path:
    """ROWS rows over 5 subtables, one second apart, the rows of BAD with a temp that is not a number."""
    start = 1_714_521_600_000  # 2024-05-01T00:00:00Z in ms
    lines = ["tbname,ts,temp,site"]
    for i in range(ROWS):
        temp = BAD.get(i, f"{i / 10}")
        lines.append(f"s{i % 5},{start + i // 5 * 1000},{temp},site{i % 5}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 KiB (~140 rows), so that a few thousand rows take many blocks and writes."""
    monkeypatch.setattr(csvfiles, "BLOCK_BYTES", 4096)


def settings(store: EmbeddedStore) -> dict[str, int]:
    """The settings of the store's own connection."""
    return {name: store._query(f"PRAGMA {name}").column(0)[0].as_py() for name in SETTINGS}


def test_a_file_of_many_blocks_is_imported_whole_and_its_bad_rows_keep_their_lines(
    small_blocks: None, store: Store, tmp_path: Path
) -> None:
    dataset = readings()
    path = write_csv(tmp_path / "many.csv")
    summary = import_csv(store, [path], dataset, "ms")
    assert (summary.rows_read, summary.rows_written, summary.rows_bad) == (ROWS, ROWS - len(BAD), len(BAD))
    assert [(bad.line, bad.reason) for bad in summary.bad_rows] == [
        (row + 2, "temp: not a DOUBLE") for row in sorted(BAD)
    ]
    rows = store.read_after(dataset, Watermark())
    assert rows.num_rows == store.count(dataset) == ROWS - len(BAD)
    assert sorted(rows["temp"].to_pylist()) == sorted(i / 10 for i in range(ROWS) if i not in BAD)


def test_a_bulk_load_puts_its_connection_back_and_leaves_every_row_in_the_file(
    small_blocks: None, tmp_path: Path
) -> None:
    """The settings of the import's connection are undone, its checkpoint thread is gone, and once the store
    is closed the WAL has been copied into the file: a new connection finds every row in a sound file."""
    dataset = readings()
    path = tmp_path / "store.sqlite"
    store = EmbeddedStore(path, "readings")
    try:
        before = settings(store)
        summary = import_csv(store, [write_csv(tmp_path / "many.csv")], dataset, "ms")
        assert settings(store) == before
        assert not [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]
    finally:
        store.close()
    assert not path.with_name(path.name + "-wal").exists()
    again = EmbeddedStore(path, "readings", create=False, verify=True)  # quick_check of every page
    try:
        assert again.count(dataset) == summary.rows_written == ROWS - len(BAD)
    finally:
        again.close()


def test_a_new_store_file_takes_larger_pages_and_an_older_one_keeps_its_own(small_blocks: None, tmp_path: Path) -> None:
    new = EmbeddedStore(tmp_path / "new.sqlite", "readings")
    try:
        assert settings(new)["page_size"] == PAGE_SIZE
    finally:
        new.close()
    older = tmp_path / "older.sqlite"
    with adbc.connect(str(older), autocommit=True) as conn, conn.cursor() as cursor:
        for sql in ("PRAGMA page_size = 4096", "PRAGMA journal_mode = wal", "CREATE TABLE other (x INTEGER)"):
            cursor.execute(sql)
            cursor.fetchall()
    store = EmbeddedStore(older, "readings")
    try:
        summary = import_csv(store, [write_csv(tmp_path / "many.csv")], readings(), "ms")
        assert settings(store)["page_size"] == 4096
        assert store.count(readings()) == summary.rows_written == ROWS - len(BAD)
    finally:
        store.close()
