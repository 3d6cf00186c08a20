"""`serve`: a perspective-python Server behind Tornado, fed incrementally from the store.

The IOLoop only moves WebSocket messages: Perspective requests run on an executor, and the feed reads the
store and updates the tables on its own thread, so no query or large update blocks a client.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import perspective
import tornado.httpserver
import tornado.web

from taosprsp.access import (
    AccessPolicy,
    GuardedPerspectiveHandler,
    application_settings,
    check_exposure,
    server_policy,
    tls_context,
)
from taosprsp.batching import UpdateBatcher
from taosprsp.config import Config
from taosprsp.dashboard import dashboard_document
from taosprsp.datasets import SUBTABLE_COLUMN, Dataset
from taosprsp.derived import DerivedTables, declared_groups, derived_specs
from taosprsp.errors import STOP_SIGNALS, ConfigError, TaosprspError
from taosprsp.feed import RING_COLUMN, Feed, Pacing, window_schema
from taosprsp.history import HISTORY_PATH, history_document, open_history
from taosprsp.stores import ResolvedKind, Store, TDengineStore, dataset_for, open_store, resolve_kind
from taosprsp.stores.tmq import subscribe
from taosprsp.wake import StoreWatcher
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


@dataclass(frozen=True)
class ServedAccess:
    """How `serve` admits clients: the policy every handler checks, TLS, and the warning `--insecure` earns."""

    policy: AccessPolicy
    tls: ssl.SSLContext | None
    exposure_warning: str | None


def served_access(config: Config, insecure: bool = False) -> ServedAccess:
    """The `[server]` access settings checked: `ConfigError` for a bad token, origin or certificate, or for
    binding beyond loopback without a token unless `insecure`."""
    server = config.server
    warning = check_exposure(server.host, server.token, insecure)
    return ServedAccess(server_policy(server, server.host), tls_context(server.certfile, server.keyfile), warning)


def make_tables(
    client: perspective.Client, dataset: Dataset, window_name: str | None = None, latest_name: str | None = None
) -> tuple[perspective.Table, perspective.Table]:
    """The two tables `serve` feeds: the rolling window (a ring indexed by `rid`) and the latest row per subtable.

    Names default to generated ones; pass them to serve the tables under the config's names.
    """
    window = client.table(window_schema(dataset), index=RING_COLUMN, name=window_name)
    latest = client.table(dataset.perspective_schema(), index=SUBTABLE_COLUMN, name=latest_name)
    return window, latest


def feed_pacing(config: Config) -> Pacing:
    """How often the feed reads and applies, from `[server]`."""
    server = config.server
    return Pacing(server.interval, server.min_interval, server.gather_rows, server.max_delay)


def charted_groups(store: Store, dataset: Dataset, config: Config) -> list[Any]:
    """The group tag's values the line chart draws a series of: those of the subtables `store` holds, after
    those of the configured subtables when `dataset` is the declared one (a producer will write them)."""
    held = store.existing_subtables(dataset)[dataset.group_tag].to_pylist()
    declared = declared_groups(dataset, config.dataset.tables) if dataset == config.declared_dataset else []
    return list(dict.fromkeys([*declared, *held]))


@dataclass
class LiveServer:
    """One running `serve`: Perspective tables, the feed thread and the Tornado server.

    `start()` runs everything on background threads and returns once listening (tests, bench, demo);
    `serve_forever()` runs the IOLoop in the calling thread until SIGINT or SIGTERM.

    Clients are guarded by the `[server]` access settings (see `taosprsp.access`). Binding beyond loopback
    without `server.token` raises `ConfigError` unless `insecure`; `access.exposure_warning` then says what
    that exposes, for the caller to print loudly.
    """

    config: Config
    kind: ResolvedKind | None = None
    on_ready: Callable[[str], None] | None = None
    insecure: bool = False
    url: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.access = served_access(self.config, self.insecure)
        self.kind = self.kind or resolve_kind(self.config)
        self.mode = feed_mode(self.config, self.kind)
        with open_store(self.config, self.kind) as store:
            self.dataset = dataset_for(store, self.config)
            # the tables only: serve reads what producers write and never invents subtables of its own
            store.ensure_schema(self.dataset, 0)
            groups = charted_groups(store, self.dataset, self.config)
        self.batcher = UpdateBatcher()
        self.server = self.batcher.server
        client = self.batcher.new_local_client()
        self.window, self.latest = make_tables(
            client, self.dataset, self.config.perspective_table, self.config.latest_table
        )
        # the tables the dashboard's panels view, declared from the dataset and [server] bucket and horizon
        self.derived = DerivedTables(
            self.dataset, self.config.database.precision, derived_specs(self.config, self.dataset, groups)
        )
        self.derived.host(client)
        self.feed = Feed(
            self.dataset,
            self.config.database.precision,
            self.window,
            self.latest,
            self.config.server.limit,
            self.derived,
            self.batcher.batch,
        )
        self._watcher: StoreWatcher | None = None
        self.stop_event = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="perspective")
        # the history table's queries wait on the store: their own threads keep the live tables answering
        self.history = open_history(self.config, self.kind, self.dataset)
        self._history_executor = ThreadPoolExecutor(max_workers=self.history.threads, thread_name_prefix="history")
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
            "feed": {
                "mode": self.mode,
                "wake": self._watcher.method if self._watcher is not None else "off",
                **self.feed.stats.as_dict(),
            },
            "tables": {
                self.config.perspective_table: self.window.size(),
                self.config.latest_table: self.latest.size(),
                **{name: table.size() for name, table in self.derived.hosted.items()},
            },
            "derived_rows_ignored": self.derived.rows_ignored,
            "groups_not_charted": self.derived.groups_not_charted,
            "operations": self.derived.operation_stats(),
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
        """Run until SIGINT, SIGTERM or SIGHUP (its terminal closed) in the calling (main) thread.

        Each signal stops everything cleanly; after SIGINT this raises KeyboardInterrupt, so that an
        interrupted command still exits 130 (SIGTERM, how `teardown` stops a server, returns normally).
        """
        self._start_feed()
        try:
            loop = self._listen_on_new_loop()
        except BaseException:
            self.stop()
            raise
        received: list[signal.Signals] = []

        def stop_on(sig: signal.Signals) -> None:
            received.append(sig)
            loop.stop()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop_on, sig)
        if self.on_ready:
            self.on_ready(self.url)
        try:
            self._run_until_stopped(loop)
        finally:
            self.stop()
        if signal.SIGINT in received:
            raise KeyboardInterrupt

    def stop(self) -> None:
        """Stop the feed and the server; safe to call twice."""
        self.stop_event.set()
        if self._watcher is not None:
            self._watcher.interrupt()  # the feed thread stops now, not after its poll interval
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        self._executor.shutdown(wait=False)
        self._history_executor.shutdown(wait=False)
        self.history.close()

    def _application(self) -> tornado.web.Application:
        perspective_handler = {"perspective_server": self.server, "executor": self._executor}
        history_handler = {"perspective_server": self.history, "executor": self._history_executor}
        document = {
            **dashboard_document(self.config, dataset=self.dataset, specs=self.derived.specs),
            "history": history_document(self.config, self.dataset),
        }
        routes: list[tornado.web.Rule] = [
            tornado.web.url(WEBSOCKET_PATH, GuardedPerspectiveHandler, perspective_handler),
            tornado.web.url(r"/api/stats", JsonHandler, {"document": self.stats}),
            tornado.web.url(HISTORY_PATH, GuardedPerspectiveHandler, history_handler),
            *dashboard_routes(document, viewer_dir()),
        ]
        return tornado.web.Application(
            routes,
            websocket_max_message_size=self.config.server.max_message_mb * 1024 * 1024,
            websocket_ping_interval=self.config.server.ping_interval,
            **application_settings(self.access.policy),
        )

    def _listen_on_new_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop for this thread with the server listening on it; `self.url` says where."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = self.config.server
            self._http, port = listen(self._application(), server.host, server.port, self.access.tls)
        except BaseException:
            loop.close()
            raise
        self._loop = loop
        self.url = http_url(self.config.server.host, port, tls=self.access.tls is not None)
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
        limit = self.config.server.limit
        if self.mode == "tmq":
            assert isinstance(store, TDengineStore), "feed_mode allows tmq on TDengine only"
            # subscribe before the snapshot: rows arriving in between come through both and the
            # watermark drops the second copy, where the other order would lose them
            # (the group is dropped when the subscription closes: see taosprsp.stores.tmq)
            with subscribe(store, self.dataset, self.config.consumer_group, self.stop_event) as subscription:
                self.feed.load_snapshot(store, limit)
                self._feed_ready.set()
                self.feed.follow(subscription, self.stop_event, feed_pacing(self.config))
        else:
            # watching before the snapshot: a commit after it wakes the first wait
            self._watcher = self._watch_store()
            try:
                self.feed.load_snapshot(store, limit)
                self._feed_ready.set()
                self.feed.poll(store, feed_pacing(self.config), self.stop_event, self._watcher)
            finally:
                if self._watcher is not None:
                    self._watcher.close()

    def _watch_store(self) -> StoreWatcher | None:
        """A watcher of the embedded store's file when `server.wake` is on; None (plain polling) otherwise, or
        when the file cannot be watched (the stats say why)."""
        if self.kind != "embedded" or not self.config.server.wake:
            return None
        try:
            return StoreWatcher(self.config.store.path)
        except OSError as exc:
            interval = self.config.server.interval
            self.feed.stats.last_error = f"no wake-up on commits, polling every {interval:g} s: {exc}"
            return None
