"""Wake the feed as soon as another process commits to the embedded store, instead of at the next poll.

Two signals, because neither alone is enough:
- a file signal: the producer's commit writes the SQLite file's `-wal` (and a checkpoint writes the file
  itself). It is cheap to wait for (inotify: no CPU while idle; else `os.stat` every few milliseconds), but
  it fires on the first frame written, before the commit is visible: SQLite publishes a commit only after
  the last frame (and, at `synchronous=FULL`, an fsync) by updating its shared-memory index, which no file
  event reports. A reader woken by the first frame would find nothing and sleep through the commit.
- `PRAGMA data_version`, SQLite's own counter that changes when another connection commits. It is exact
  but costs a query (~30 us here), too much to poll every millisecond while idle.

So the watcher waits for the file signal, then polls `data_version` at a short interval until the commit
is visible, and returns. The `-shm` file is not read directly: opening and closing a file descriptor of it
in this process would release the POSIX locks the store's own SQLite connection holds on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import adbc_driver_sqlite.dbapi as adbc

WakeMethod = Literal["auto", "inotify", "stat"]
Signal = Literal["write", "timeout", "interrupt"]

# <sys/inotify.h>
_IN_MODIFY = 0x00000002
_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_EVENT_HEADER = struct.Struct("iIII")


def _libc_inotify() -> ctypes.CDLL | None:
    """libc when it has inotify (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return libc if hasattr(libc, "inotify_init1") else None


class _Inotify:
    """Modifications of some files of one directory, through the kernel's inotify (via ctypes)."""

    def __init__(self, libc: ctypes.CDLL, directory: Path, names: set[str]) -> None:
        self.names = {name.encode() for name in names}
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        # the directory, not the files: SQLite deletes `-wal` when its last connection closes and makes a
        # new one when the next opens, which would end a watch on the file itself
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO) < 0:
            error = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(error, f"inotify_add_watch {directory} failed")

    def fileno(self) -> int:
        return self.fd

    def changed(self) -> bool:
        """Drain the queued events; True when one was about a watched file."""
        seen = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                _, _, _, length = _EVENT_HEADER.unpack_from(data, offset)
                start = offset + _EVENT_HEADER.size
                seen = seen or data[start : start + length].rstrip(b"\0") in self.names
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)


class _StatPoller:
    """Modifications of some files, seen as a change of their size or mtime."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.token = self._token()

    def _token(self) -> tuple:
        token = []
        for path in self.paths:
            try:
                st = os.stat(path)
                token.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                token.append(None)
        return tuple(token)

    def changed(self) -> bool:
        token = self._token()
        if token == self.token:
            return False
        self.token = token
        return True


class StoreWatcher:
    """Waits until another process commits to the SQLite file at `path`, or until a timeout.

    `wait(timeout)` returns True once a commit not reported before is visible to a new read, False when
    `timeout` passed without one (or on `interrupt()`); a caller that reads after every return, whichever
    the value, misses nothing and reads at most `timeout` late. A commit read after a False return may
    still be reported by the next `wait`: that read then finds nothing new.
    `method` is `inotify` (Linux), `stat` (polls `os.stat` every `stat_interval` seconds) or `auto`.

    After a write to the files, `data_version` is polled for `settle` seconds from the latest write, at
    `confirm_interval` doubling up to `MAX_CONFIRM_INTERVAL`: a commit is published shortly after its
    last frame, and a write that publishes nothing (a checkpoint) stops costing queries after `settle`.
    """

    MAX_CONFIRM_INTERVAL = 0.008

    def __init__(
        self,
        path: str | Path,
        method: WakeMethod = "auto",
        stat_interval: float = 0.002,
        confirm_interval: float = 0.001,
        settle: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self.stat_interval = stat_interval
        self.confirm_interval = confirm_interval
        self.settle = settle
        self._inotify: _Inotify | None = None
        self._poller: _StatPoller | None = None
        libc = _libc_inotify() if method in ("auto", "inotify") else None
        if method == "inotify" and libc is None:
            raise OSError("inotify is not available on this system")
        if libc is not None:
            try:
                self._inotify = _Inotify(libc, self.path.parent, {self.path.name, self.path.name + "-wal"})
            except OSError:
                if method == "inotify":
                    raise
        if self._inotify is None:  # no inotify here, or its per-user limits are used up
            self._poller = _StatPoller([self.path, Path(f"{self.path}-wal")])
        self._conn = adbc.connect(str(self.path), autocommit=True)
        self._cursor = self._conn.cursor()
        self._version = self._data_version()
        # a write seen in one `wait` may publish its commit after that `wait` timed out: stay armed across
        self._settle_until = 0.0
        self._interrupt_read, self._interrupt_write = os.pipe()
        os.set_blocking(self._interrupt_read, False)
        # `interrupt` comes from another thread, maybe after `close`: never write to a closed (or reused) fd
        self._closing = threading.Lock()
        self._closed = False
        self.method: WakeMethod = "inotify" if self._inotify else "stat"

    def _data_version(self) -> int:
        self._cursor.execute("PRAGMA data_version")
        return int(self._cursor.fetchone()[0])

    def _committed(self) -> bool:
        """Whether another connection committed since the last look, remembering the new version."""
        version = self._data_version()
        if version == self._version:
            return False
        self._version = version
        return True

    def _interrupted(self) -> bool:
        try:
            return bool(os.read(self._interrupt_read, 4096))
        except BlockingIOError:
            return False

    def _file_signal(self, timeout: float) -> Signal:
        """Wait up to `timeout` seconds for a write to the watched files."""
        if self._inotify is not None:
            ready, _, _ = select.select([self._inotify, self._interrupt_read], [], [], timeout)
            if self._interrupted():
                return "interrupt"
            return "write" if ready and self._inotify.changed() else "timeout"
        assert self._poller is not None
        deadline = time.monotonic() + timeout
        while not self._poller.changed():
            if self._interrupted():
                return "interrupt"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            time.sleep(min(self.stat_interval, remaining))
        return "write"

    def wait(self, timeout: float) -> bool:
        """True as soon as a commit not reported yet is visible; False after `timeout` seconds or on `interrupt()`."""
        deadline = time.monotonic() + timeout
        if self._committed():
            return True
        interval = self.confirm_interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            armed = now < self._settle_until
            signal = self._file_signal(min(interval, deadline - now) if armed else deadline - now)
            if signal == "interrupt":
                return False
            if signal == "write":
                self._settle_until = time.monotonic() + self.settle
                interval = self.confirm_interval
            elif armed:
                interval = min(interval * 2, self.MAX_CONFIRM_INTERVAL)
            if time.monotonic() < self._settle_until and self._committed():
                return True

    def interrupt(self) -> None:
        """Make a `wait` in another thread return now (to stop the feed without waiting for its timeout); safe
        to call after `close`."""
        with self._closing:
            if not self._closed:
                os.write(self._interrupt_write, b"x")

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            os.close(self._interrupt_read)
            os.close(self._interrupt_write)
        if self._inotify is not None:
            self._inotify.close()
        self._cursor.close()
        self._conn.close()

    def __enter__(self) -> StoreWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
