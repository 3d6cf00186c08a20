"""Client sessions of the history table, for a Perspective Tornado handler, and what the dashboard needs to
show it: the table's name, its WebSocket, the time-range presets and the default panel.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import perspective

from taosprsp.access.protocol import REQUEST_KINDS, MalformedRequest, parse_request, refusal
from taosprsp.config import Config
from taosprsp.datasets import Dataset
from taosprsp.history.handler import HistoryBackend, HistoryHandler
from taosprsp.history.view import AUTO_BUCKET, HistorySource
from taosprsp.stores import ResolvedKind, open_store

HISTORY_PATH = "/history"
"""The WebSocket path the history table is served on, beside the live tables' `/websocket`."""
COLUMN_PATHS_REQUEST = next(field for field, kind in REQUEST_KINDS.items() if kind == "view_column_paths_req")
MAX_QUEUED_REQUESTS = 256
"""Requests of one client that wait while its session answers another (the viewer sends a handful at once)."""
THREADS_PER_QUERY = 4
"""Threads answering history sessions per query the store runs at once (`history.queries`): a session waiting
on the store holds one; the others answer the rest of the clients meanwhile."""
BUCKET_COLUMN = "bucket"
"""The default history panel's time-bucket expression."""
PRESETS: tuple[tuple[str, int | None], ...] = (
    ("15 min", 900),
    ("1 h", 3_600),
    ("24 h", 86_400),
    ("7 d", 604_800),
    ("all", None),
)
"""Time ranges the dashboard offers, ending now (seconds; None: no bound)."""


def history_table_name(table: str) -> str:
    """The history table beside the live table `table`."""
    return f"{table}_history"


def history_websocket(live_websocket: str) -> str:
    """The history table's WebSocket beside a server's live one (`ws://host:8080/websocket` ->
    `ws://host:8080/history`), keeping its query (a token)."""
    parts = urlsplit(live_websocket)
    beside = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit(parts._replace(path=beside + HISTORY_PATH))


class HistorySession:
    """One client's session: a perspective `VirtualServer` over a handler of its own.

    Requests of one session are answered one at a time, in order (the `VirtualServer` holds the session's
    view configs and is not to be entered twice at once), by one thread at a time: a request arriving while
    another thread answers the session is queued for that thread, and its own caller returns at once. So a
    client waiting on a slow view holds one of the server's threads, not every thread its requests reach.
    """

    def __init__(self, backend: HistoryBackend, send: Callable[[bytes], None]) -> None:
        self.handler = HistoryHandler(backend)
        self._server = perspective.VirtualServer(self.handler)
        self._send = send
        self._lock = threading.Lock()
        self._queued: deque[bytes] = deque()
        self._answering = False

    def handle_request(self, message: bytes) -> None:
        """Answer `message`, and any request of this session queued meanwhile; or queue it when another thread
        is answering this session (refused when `MAX_QUEUED_REQUESTS` wait already)."""
        with self._lock:
            full = len(self._queued) >= MAX_QUEUED_REQUESTS
            if not full:
                self._queued.append(message)
            answer_here = not full and not self._answering
            self._answering = self._answering or answer_here
        if full:
            self._send(refusal(parse_request(message), f"more than {MAX_QUEUED_REQUESTS} history requests wait"))
        if not answer_here:
            return
        try:
            while True:
                with self._lock:
                    if not self._queued:
                        self._answering = False
                        return
                    message = self._queued.popleft()
                self.handler.answers_column_paths = _asks_column_paths(message)
                self._send(self._server.handle_request(message))
        except BaseException:
            with self._lock:
                self._answering = False
            raise

    def close(self) -> None:
        self.handler.close()


def _asks_column_paths(message: bytes) -> bool:
    """Whether `message` is a `View.column_paths` request (the `VirtualServer` answers what it cannot read)."""
    try:
        return parse_request(message).kinds == (COLUMN_PATHS_REQUEST,)
    except MalformedRequest:
        return False


class HistoryServer:
    """What `PerspectiveTornadoHandler` takes as `perspective_server`: sessions over one history backend."""

    def __init__(self, backend: HistoryBackend) -> None:
        self.backend = backend

    @property
    def table(self) -> str:
        return self.backend.source.name

    @property
    def threads(self) -> int:
        """How many threads the sessions' requests should run on (the Tornado handler's executor)."""
        return THREADS_PER_QUERY * self.backend.limits.queries

    def new_session(self, send: Callable[[bytes], None]) -> HistorySession:
        return HistorySession(self.backend, send)

    def close(self) -> None:
        self.backend.close()


def open_history(config: Config, kind: ResolvedKind, dataset: Dataset) -> HistoryServer:
    """The history table of the config's dataset in the store of `kind`, under `<table>_history`, with the
    limits of `[history]`."""
    source = HistorySource(history_table_name(config.perspective_table), dataset, config.database.precision)
    return HistoryServer(HistoryBackend(source, lambda: open_store(config, kind), config.history))


def history_document(config: Config, dataset: Dataset, websocket_url: str | None = None) -> dict[str, Any]:
    """What the dashboard needs for its history panel (`dashboard.json`'s `history`) over `dataset`: the table,
    its WebSocket (None: `path` on the page's own server), the presets and the panel's view."""
    timestamp = dataset.timestamp.name
    headline = list(dataset.headline)
    return {
        "table": history_table_name(config.perspective_table),
        "websocket": websocket_url,
        "path": HISTORY_PATH,
        "timestamp": timestamp,
        "presets": [{"label": label, "seconds": seconds} for label, seconds in PRESETS],
        "title": f"History: mean {' and '.join(headline)} per time bucket (width from the range)",
        "config": {
            "plugin": "Datagrid",
            "settings": False,
            "expressions": {BUCKET_COLUMN: f"bucket(\"{timestamp}\", '{AUTO_BUCKET}')"},
            "group_by": [BUCKET_COLUMN],
            "split_by": [],
            "columns": headline,
            "aggregates": {name: "avg" for name in headline},
            "sort": [[BUCKET_COLUMN, "desc"]],
            "filter": [],
        },
    }
