"""`serve`: a perspective-python Server behind Tornado, fed incrementally from the store.

The IOLoop only moves WebSocket messages: Perspective requests run on an executor, and the feed reads the
store and updates the tables on its own thread, so no query or large update blocks a client.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import perspective
import tornado.httpserver
import tornado.web
from perspective.handlers.tornado import PerspectiveTornadoHandler

from taosprsp.config import Config
from taosprsp.dashboard import dashboard_document
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, get_dataset
from taosprsp.errors import ConfigError, TaosprspError
from taosprsp.feed import RING_COLUMN, Feed, window_schema
from taosprsp.stores import ResolvedKind, Store, TDengineStore, open_store, resolve_kind
from taosprsp.stores.tmq import subscribe
from taosprsp.web import WEBSOCKET_PATH, JsonHandler, dashboard_routes, http_url, listen, viewer_dir, ws_url

ResolvedFeedMode = Literal["tmq", "poll"]
"""How the feed follows the store once `server.feed = "auto"` has been resolved."""


def feed_mode(config: Config, kind: ResolvedKind) -> ResolvedFeedMode:
    """`tmq` or `poll`: `auto` subscribes on TDengine and polls the embedded store."""
    mode = config.server.feed
    if mode == "auto":
        return "tmq" if kind == "tdengine" else "poll"
    if mode == "tmq" and kind != "tdengine":
        raise ConfigError(
            "--feed tmq needs TDengine (TMQ is TDengine's subscription); the embedded store polls: use --feed poll"
        )
    return mode


def make_tables(
    client: perspective.Client, dataset: Dataset, window_name: str | None = None, latest_name: str | None = None
) -> tuple[perspective.Table, perspective.Table]:
    """The two tables `serve` feeds: the rolling window (a ring indexed by `rid`) and the latest row per subtable.

    Names default to generated ones; pass them to serve the tables under the config's names.
    """
    window = client.table(window_schema(dataset), index=RING_COLUMN, name=window_name)
    latest = client.table(dataset.perspective_schema(), index=SUBTABLE_COLUMN, name=latest_name)
    return window, latest


@dataclass
class LiveServer:
    """One running `serve`: Perspective tables, the feed thread and the Tornado server.

    `start()` runs everything on background threads and returns once listening (tests, bench, demo);
    `serve_forever()` runs the IOLoop in the calling thread until SIGINT or SIGTERM.
    """

    config: Config
    kind: ResolvedKind | None = None
    on_ready: Callable[[str], None] | None = None
    url: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.kind = self.kind or resolve_kind(self.config)
        self.mode = feed_mode(self.config, self.kind)
        self.dataset = get_dataset(self.config.dataset.name)
        self.server = perspective.Server()
        self.window, self.latest = make_tables(
            self.server.new_local_client(), self.dataset, self.config.perspective_table, self.config.latest_table
        )
        self.feed = Feed(
            self.dataset, self.config.database.precision, self.window, self.latest, self.config.server.limit
        )
        self.stop_event = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="perspective")
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._feed_ready = threading.Event()
        self._feed_error: BaseException | None = None

    @property
    def websocket_url(self) -> str:
        return ws_url(self.url)

    def stats(self) -> dict[str, Any]:
        """What `/api/stats` answers."""
        return {
            "store": self.kind,
            "feed": {"mode": self.mode, **self.feed.stats.as_dict()},
            "tables": {self.config.perspective_table: self.window.size(), self.config.latest_table: self.latest.size()},
            "window_limit": self.config.server.limit,
        }

    def start(self) -> LiveServer:
        """Start the feed and the server on background threads; returns when both are up."""
        self._start_feed()
        listening = threading.Event()
        failures: list[BaseException] = []

        def run_loop() -> None:
            try:
                loop = self._listen_on_new_loop()
            except BaseException as exc:
                failures.append(exc)
                return
            finally:
                listening.set()
            self._run_until_stopped(loop)

        thread = threading.Thread(target=run_loop, name="tornado", daemon=True)
        thread.start()
        self._threads.append(thread)
        listening.wait()
        if failures:
            self.stop()
            raise failures[0]
        if self.on_ready:
            self.on_ready(self.url)
        return self

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM in the calling (main) thread."""
        self._start_feed()
        try:
            loop = self._listen_on_new_loop()
        except BaseException:
            self.stop()
            raise
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, loop.stop)
        if self.on_ready:
            self.on_ready(self.url)
        try:
            self._run_until_stopped(loop)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the feed and the server; safe to call twice."""
        self.stop_event.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._executor.shutdown(wait=False)

    def _application(self) -> tornado.web.Application:
        perspective_handler = {"perspective_server": self.server, "executor": self._executor}
        routes: list[tornado.web.Rule] = [
            tornado.web.url(WEBSOCKET_PATH, PerspectiveTornadoHandler, perspective_handler),
            tornado.web.url(r"/api/stats", JsonHandler, {"document": self.stats}),
            *dashboard_routes(dashboard_document(self.config), viewer_dir()),
        ]
        return tornado.web.Application(
            routes,
            websocket_max_message_size=self.config.server.max_message_mb * 1024 * 1024,
            websocket_ping_interval=self.config.server.ping_interval,
        )

    def _listen_on_new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop for this thread with the server listening on it; `self.url` says where."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._http, port = listen(self._application(), self.config.server.host, self.config.server.port)
        except BaseException:
            loop.close()
            raise
        self._loop = loop
        self.url = http_url(self.config.server.host, port)
        return loop

    def _run_until_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run `loop` until `stop()` (or a signal) stops it, then close the server and the loop."""
        try:
            loop.run_forever()
        finally:
            if self._http is not None:
                self._http.stop()
            loop.close()

    def _start_feed(self) -> None:
        thread = threading.Thread(target=self._run_feed, name="feed", daemon=True)
        thread.start()
        self._threads.append(thread)
        self._feed_ready.wait()
        if self._feed_error is not None:
            error = self._feed_error
            if isinstance(error, TaosprspError):
                raise error
            raise TaosprspError(f"the feed could not start: {error}") from error

    def _run_feed(self) -> None:
        try:
            store = open_store(self.config, self.kind)
        except BaseException as exc:
            self._feed_error = exc
            self._feed_ready.set()
            return
        try:
            self._follow(store)
        except BaseException as exc:
            self._feed_error = exc
            self.feed.stats.last_error = str(exc)
            self._feed_ready.set()
        finally:
            store.close()

    def _follow(self, store: Store) -> None:
        """Load the snapshot, say the feed is ready, then follow the store until stopped."""
        store.ensure_schema(self.dataset, self.config.dataset.tables)
        limit = self.config.server.limit
        if self.mode == "tmq":
            assert isinstance(store, TDengineStore), "feed_mode allows tmq on TDengine only"
            # subscribe before the snapshot: rows arriving in between come through both and the
            # watermark drops the second copy, where the other order would lose them
            group = f"taosprsp-serve-{int(time.time() * 1000)}"
            subscription = subscribe(store, self.dataset, group, self.stop_event)
            self.feed.load_snapshot(store, limit)
            self._feed_ready.set()
            self.feed.follow(subscription, self.stop_event)
        else:
            self.feed.load_snapshot(store, limit)
            self._feed_ready.set()
            self.feed.poll(store, self.config.server.interval, self.stop_event)
