"""`serve`: a perspective-python Server behind Tornado, fed incrementally from the store.

The IOLoop only moves WebSocket messages: Perspective requests run on an executor, and the feed reads the
store and updates the tables on its own thread, so no query or large update blocks a client.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import perspective
import tornado.web
from perspective.handlers.tornado import PerspectiveTornadoHandler

from taosprsp.config import Config, parse_duration
from taosprsp.datasets import SUBTABLE_COLUMN, get_dataset
from taosprsp.errors import ConfigError, TaosprspError, cannot_listen
from taosprsp.feed import RING_COLUMN, Feed, window_schema
from taosprsp.stores import open_store, resolve_kind
from taosprsp.viewer import REQUIRED_ASSET, dashboard_document, dashboard_routes, viewer_dir


def feed_mode(config: Config, kind: str) -> str:
    """`tmq` or `poll`: `auto` subscribes on TDengine and polls the embedded store."""
    mode = config.server.feed
    if mode == "auto":
        return "tmq" if kind == "tdengine" else "poll"
    if mode == "tmq" and kind != "tdengine":
        raise ConfigError("--feed tmq needs TDengine (TMQ is TDengine's subscription); the embedded store polls: use --feed poll")
    return mode


class StatsHandler(tornado.web.RequestHandler):
    def initialize(self, service: "LiveServer") -> None:
        self.service = service

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(self.service.stats()))


class MissingAssets(tornado.web.RequestHandler):
    def initialize(self, message: str) -> None:
        self.message = message

    def get(self, _: str = "") -> None:
        self.set_status(503)
        self.set_header("Content-Type", "text/plain")
        self.write(self.message + "\n")


def _listen_error(config: Config, error: BaseException) -> BaseException:
    """A port already in use (or not allowed) as a user error; anything else unchanged."""
    if isinstance(error, OSError):
        return cannot_listen(config.server.host, config.server.port, error)
    return error


@dataclass
class LiveServer:
    """One running `serve`: Perspective tables, the feed thread and the Tornado server.

    `start()` runs everything on background threads and returns once listening (tests, bench, demo);
    `serve_forever()` runs the IOLoop in the calling thread until SIGINT or SIGTERM.
    """

    config: Config
    kind: str = ""
    on_ready: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.kind = self.kind or resolve_kind(self.config)
        self.mode = feed_mode(self.config, self.kind)
        self.dataset = get_dataset(self.config.dataset.name)
        self.server = perspective.Server()
        client = self.server.new_local_client()
        self.window = client.table(window_schema(self.dataset), index=RING_COLUMN, name=self.config.perspective_table)
        self.latest = client.table(self.dataset.perspective_schema(), index=SUBTABLE_COLUMN, name=self.config.latest_table)
        self.feed = Feed(self.dataset, self.config.database.precision, self.window, self.latest, self.mode, self.config.server.limit)
        self.stop_event = threading.Event()
        self.url = ""
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="perspective")
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: Any = None
        self._feed_ready = threading.Event()
        self._feed_error: BaseException | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "store": self.kind,
            "feed": self.feed.stats.as_dict(),
            "tables": {self.config.perspective_table: self.window.size(), self.config.latest_table: self.latest.size()},
            "window_limit": self.config.server.limit,
        }

    def _application(self) -> tornado.web.Application:
        routes: list[tuple] = [
            (r"/websocket", PerspectiveTornadoHandler, {"perspective_server": self.server, "executor": self._executor}),
            (r"/api/stats", StatsHandler, {"service": self}),
        ]
        directory = viewer_dir()
        if (directory / REQUIRED_ASSET).is_file():
            routes += dashboard_routes(dashboard_document(self.config), directory)
        else:
            routes.append((r"/(.*)", MissingAssets, {"message": f"the dashboard's npm assets are missing: run `npm ci --prefix {directory}`"}))
        return tornado.web.Application(
            routes,
            websocket_max_message_size=self.config.server.max_message_mb * 1024 * 1024,
            websocket_ping_interval=parse_duration(self.config.server.ping_interval),
        )

    def _run_feed(self) -> None:
        try:
            store = open_store(self.config, self.kind)
        except BaseException as exc:
            self._feed_error = exc
            self._feed_ready.set()
            return
        try:
            store.ensure_schema(self.dataset, self.config.dataset.tables)
            if self.mode == "tmq":
                # subscribe before the snapshot: rows arriving in between come through both and the
                # watermark drops the second copy, where the other order would lose them
                subscription = store.subscribe(self.dataset, f"taosprsp-serve-{int(time.time() * 1000)}", self.stop_event)  # type: ignore[attr-defined]
                self.feed.load_snapshot(store, self.config.server.limit)
                self._feed_ready.set()
                self.feed.follow(subscription, self.stop_event)
            else:
                self.feed.load_snapshot(store, self.config.server.limit)
                self._feed_ready.set()
                self.feed.poll(store, parse_duration(self.config.server.interval), self.stop_event)
        except BaseException as exc:
            self._feed_error = exc
            self.feed.stats.last_error = str(exc)
            self._feed_ready.set()
        finally:
            store.close()

    def _listen(self) -> None:
        self._http = self._application().listen(self.config.server.port, address=self.config.server.host)
        port = next(iter(self._http._sockets.values())).getsockname()[1]
        self.url = f"http://{self.config.server.host}:{port}/"

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

    @property
    def websocket_url(self) -> str:
        return self.url.replace("http://", "ws://") + "websocket"

    def start(self) -> "LiveServer":
        """Start the feed and the server on background threads; returns when both are up."""
        self._start_feed()
        listening = threading.Event()
        failures: list[BaseException] = []

        def run_loop() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._listen()
            except BaseException as exc:
                failures.append(exc)
                return
            finally:
                listening.set()
            self._loop.run_forever()
            self._http.stop()
            self._loop.close()

        thread = threading.Thread(target=run_loop, name="tornado", daemon=True)
        thread.start()
        self._threads.append(thread)
        listening.wait()
        if failures:
            self.stop()
            raise _listen_error(self.config, failures[0])
        if self.on_ready:
            self.on_ready(self.url)
        return self

    def stop(self) -> None:
        """Stop the feed and the server; safe to call twice."""
        self.stop_event.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=10)
        self._executor.shutdown(wait=False)

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM in the calling (main) thread."""
        self._start_feed()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._listen()
        except OSError as exc:
            self.stop_event.set()
            raise _listen_error(self.config, exc) from exc
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, loop.stop)
        if self.on_ready:
            self.on_ready(self.url)
        try:
            loop.run_forever()
        finally:
            self.stop_event.set()
            self._http.stop()
            for thread in self._threads:
                thread.join(timeout=10)
            self._executor.shutdown(wait=False)
            loop.close()
