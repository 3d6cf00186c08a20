"""The embedded store's wake-up: a commit by another process wakes the watcher, and no row is missed.

A real second process writes to a real embedded store (SQLite in WAL mode through ADBC). A wake is the
watcher returning True from a 5 s wait: woken by the commit, not by the fallback timeout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from taosprsp.datasets import METERS
from taosprsp.stores.base import Watermark
from taosprsp.stores.embedded import EmbeddedStore
from taosprsp.wake import StoreWatcher

FALLBACK_SECONDS = 5.0
ROWS_PER_BATCH = 50

# The writer: one batch per `write` line on stdin (acknowledged on stdout), `burst N` writes N batches
# back to back with short pauses; batch k holds timestamps k*1000 .. k*1000+ROWS_PER_BATCH-1.
WRITER = """
import sys, time
import numpy as np, pyarrow as pa
from taosprsp.datasets import METERS, SUBTABLE_COLUMN
from taosprsp.stores.embedded import EmbeddedStore

store = EmbeddedStore(sys.argv[1], "meters")
rows = int(sys.argv[2])
batch_number = 0

def write():
    global batch_number
    ts = batch_number * 1000 + np.arange(rows)
    columns = {SUBTABLE_COLUMN: pa.array(["d0"] * rows), "ts": pa.array(ts, pa.int64()),
               "current": pa.array(np.ones(rows), pa.float32()), "voltage": pa.array(np.full(rows, 220), pa.int32()),
               "phase": pa.array(np.zeros(rows), pa.float32()), "groupid": pa.array(np.zeros(rows), pa.int32()),
               "location": pa.array(["SanFrancisco"] * rows)}
    store.write(METERS, pa.table(columns, schema=METERS.arrow_schema()))
    batch_number += 1

print("ready", flush=True)
for line in sys.stdin:
    command = line.split()
    if command[0] == "write":
        write()
    elif command[0] == "burst":
        for _ in range(int(command[1])):
            write()
            time.sleep(0.003)
    print("done", flush=True)
store.close()
"""


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.sqlite"
    with EmbeddedStore(path, "meters") as store:
        store.ensure_schema(METERS, 1)
    yield path


@pytest.fixture
def writer(store_path: Path) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store_path), str(ROWS_PER_BATCH)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    if process.stdin:
        process.stdin.close()
    process.wait(timeout=30)


def send(process: subprocess.Popen, command: str) -> None:
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


@pytest.mark.parametrize("method", ["inotify", "stat"])
def test_every_commit_of_another_process_wakes_the_watcher_and_no_row_is_missed(
    store_path: Path, writer: subprocess.Popen, method: str
) -> None:
    with StoreWatcher(store_path, method=method) as watcher, EmbeddedStore(store_path, "meters") as store:
        assert watcher.method == method
        watermark = Watermark()
        read: list[np.ndarray] = []

        def read_new() -> int:
            rows = store.read_after(METERS, watermark)
            watermark.advance(rows)
            read.append(rows["ts"].to_numpy())
            return rows.num_rows

        for _ in range(10):
            send(writer, "write")
            assert watcher.wait(FALLBACK_SECONDS), "the commit did not wake the watcher before the fallback"
            assert read_new() == ROWS_PER_BATCH  # the whole commit is visible once the watcher wakes
            assert writer.stdout is not None and writer.stdout.readline().strip() == "done"

        burst = 40
        send(writer, f"burst {burst}")
        while sum(len(ts) for ts in read) < (10 + burst) * ROWS_PER_BATCH:
            assert watcher.wait(FALLBACK_SECONDS), "rows were still to come, yet the wait ran into the fallback"
            read_new()
        everything = np.concatenate(read)
        expected = (np.arange(10 + burst)[:, None] * 1000 + np.arange(ROWS_PER_BATCH)).ravel()
        assert np.array_equal(np.sort(everything), expected)  # every row once, none twice


def test_a_wait_without_commits_times_out(store_path: Path) -> None:
    with StoreWatcher(store_path) as watcher:
        assert watcher.wait(0.05) is False


def test_interrupt_ends_a_wait_from_another_thread(store_path: Path) -> None:
    with StoreWatcher(store_path) as watcher:
        results: list[bool] = []
        thread = threading.Thread(target=lambda: results.append(watcher.wait(60.0)))
        thread.start()
        watcher.interrupt()
        thread.join(timeout=30)
        assert not thread.is_alive() and results == [False]


def test_a_commit_made_before_the_wait_is_reported_at_once(store_path: Path, writer: subprocess.Popen) -> None:
    with StoreWatcher(store_path) as watcher:
        send(writer, "write")
        assert writer.stdout is not None and writer.stdout.readline().strip() == "done"
        assert watcher.wait(0.0) is True
        assert watcher.wait(0.0) is False  # reported once
