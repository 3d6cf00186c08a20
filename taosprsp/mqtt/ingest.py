"""`ingest mqtt`: subscribe to a broker and write what arrives into the store in batches, losing nothing.

Nothing is lost at QoS 1 because a message is acknowledged to the broker only after its row is in the
store: the network thread only collects messages, this loop decodes a batch, writes it, then acknowledges
every message of it in arrival order. A persistent session (a fixed client id, no clean start) keeps on the
broker whatever was unacknowledged when the process died, and the broker sends it again on reconnect with
its DUP flag set. A redelivered message does not become a second row: both stores keep one row per
(subtable, timestamp), a second write replacing the first, and within a batch only the last row per key is
kept. (A message stamped on arrival gets a new timestamp when it comes again: only a timestamp in the
payload makes redelivery exact.)

The broker sends at most Receive Maximum unacknowledged messages (MQTT v5), so a store that stalls holds
the broker back instead of filling this process's memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pyarrow as pa

from taosprsp.datasets import Dataset
from taosprsp.errors import TaosprspError
from taosprsp.mqtt.broker import MAX_RECEIVE, BrokerOptions, BufferedClient, Received, connect, disconnect
from taosprsp.mqtt.decode import BatchDecoder
from taosprsp.mqtt.mapping import MessageMapping, Rejections
from taosprsp.pacing import RecentCounts
from taosprsp.produce import RETRY_DELAYS
from taosprsp.progress import STATS_EVERY_SECONDS
from taosprsp.stores.base import Store

if TYPE_CHECKING:
    from taosprsp.config import MqttSettings

IDLE_SECONDS = 0.25
"""How long the loop waits for a first message before it looks at its stop conditions again."""
UNSUBSCRIBE_WAIT_SECONDS = 2.0
FINAL_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class IngestOptions:
    """What to subscribe to and how to batch. `topics` empty means the mapping's topic pattern.

    `persistent` keeps the session on the broker under `client_id`, so nothing is lost while the ingester
    is away; a message waits at most `flush_interval` seconds before its batch is written.
    """

    client_id: str = "taosprsp-ingest"
    topics: tuple[str, ...] = ()
    qos: int = 1
    persistent: bool = True
    batch: int = 5_000
    flush_interval: float = 0.02
    count: int | None = None
    duration: float | None = None

    @classmethod
    def from_settings(cls, settings: MqttSettings, **run: Any) -> IngestOptions:
        return cls(
            client_id=settings.client_id,
            topics=tuple(settings.topics),
            qos=settings.qos,
            persistent=not settings.clean_session,
            batch=settings.batch,
            flush_interval=settings.flush_interval,
            **run,
        )

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged messages the broker may send: a few batches' worth, so one is written while the
        next arrives."""
        return min(MAX_RECEIVE, max(1_000, 4 * self.batch))


@dataclass
class IngestStats:
    """Running totals; `as_dict` is the `--json` summary.

    `messages` were acknowledged (their rows written, or rejected); `records` are the JSON objects or lines
    they held; `duplicates` rows were dropped because their (subtable, timestamp) came again in the same
    batch; `redelivered` messages came again after a restart or reconnect (their rows replace themselves);
    `unacked` messages were left unacknowledged at the end because the store would not take them (the
    broker keeps them in a persistent session); `lag_seconds` is how long the oldest message of the last
    batch waited.
    """

    broker: str
    subscriptions: list[str]
    client_id: str
    store: str
    dataset: str
    format: str
    messages: int = 0
    records: int = 0
    rows_written: int = 0
    duplicates: int = 0
    redelivered: int = 0
    arrival_stamped: int = 0
    rejected: Rejections = field(default_factory=Rejections)
    batches: int = 0
    errors: int = 0
    reconnects: int = 0
    unacked: int = 0
    backlog: int = 0
    seconds: float = 0.0
    lag_seconds: float = 0.0
    last_error: str = ""
    stopped_by: str = ""
    recent: RecentCounts = field(default_factory=RecentCounts, repr=False)

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def messages_per_second_now(self) -> float:
        """Messages/s over the last second or so."""
        return self.recent.per_second(self.messages_per_second)

    def note(self, now: float) -> None:
        self.recent.note(now, self.messages)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("recent", "rejected")}
        data["rejected"] = self.rejected.total
        data["rejected_by_reason"] = dict(self.rejected.counts)
        data["rejected_samples"] = dict(self.rejected.samples)
        data["messages_per_second"] = round(self.messages_per_second, 1)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


class _Inbox:
    """Messages handed over by the network thread, each with the connection it came on.

    `due()` waits until a batch is due: `batch` messages are in, or the first one has waited `flush_interval`
    (or `idle` seconds pass with none). A batch is due at once when its first message came while the last
    batch was being written, so under load batches grow by themselves and no message waits longer.
    """

    def __init__(self, batch: int, flush_interval: float) -> None:
        self.batch = batch
        self.flush_interval = flush_interval
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.full = threading.Event()
        self.first_at = 0.0
        self.messages: list[tuple[Received, int]] = []
        self.connection = 0

    def put(self, client: paho.Client, userdata: Any, message: Received) -> None:
        with self.lock:
            if not self.messages:
                self.first_at = message.timestamp
                self.arrived.set()
            self.messages.append((message, self.connection))
            if len(self.messages) >= self.batch:
                self.full.set()

    def due(self, idle: float) -> None:
        if self.arrived.wait(idle):
            self.full.wait(max(0.0, self.first_at + self.flush_interval - time.monotonic()))

    def take(self) -> list[tuple[Received, int]]:
        with self.lock:
            taken, self.messages = self.messages, []
            self.arrived.clear()
            self.full.clear()
        return taken

    def __len__(self) -> int:
        return len(self.messages)


class _Subscriber:
    """The broker side: subscribes on every (re)connect and reports when the broker confirmed it."""

    def __init__(
        self, inbox: _Inbox, subscriptions: list[str], qos: int, stats: IngestStats, on_ready: Callable[[], None] | None
    ) -> None:
        self.inbox = inbox
        self.subscriptions = subscriptions
        self.qos = qos
        self.stats = stats
        self.on_ready = on_ready
        self.ready = threading.Event()
        self.refused = ""
        self.unsubscribed = threading.Event()

    def prepare(self, client: paho.Client) -> None:
        client.on_message = self.inbox.put
        client.on_subscribe = self.on_subscribe
        client.on_unsubscribe = lambda *args: self.unsubscribed.set()

    def on_connected(self, client: paho.Client, session_present: bool, properties: Any) -> None:
        # Packet ids belong to a connection: messages of an earlier one are never acknowledged on this one
        # (a resumed session sends them again, flagged DUP).
        with self.inbox.lock:
            self.inbox.connection += 1
            if self.inbox.connection > 1:
                self.stats.reconnects += 1
        client.subscribe([(topic, self.qos) for topic in self.subscriptions])

    def on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list, properties: Any) -> None:
        refused = [
            f"{topic} ({reason})"
            for topic, reason in zip(self.subscriptions, reasons, strict=True)
            if reason.is_failure
        ]
        if refused:
            self.refused = f"the broker refused the subscription to {', '.join(refused)}"
        elif not self.ready.is_set():
            self.ready.set()
            if self.on_ready is not None:
                self.on_ready()


def ingest(
    store: Store,
    dataset: Dataset,
    mapping: MessageMapping,
    broker: BrokerOptions,
    options: IngestOptions,
    reopen: Callable[[], Store] | None = None,
    on_stats: Callable[[IngestStats], None] | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> IngestStats:
    """Ingest until `count` messages, `duration` seconds or `stop`; returns the totals.

    `on_ready()` runs once the broker confirmed the subscriptions. A failed write is retried (through
    `reopen` when given) with backoff, holding the batch's acknowledgements, until it succeeds or `stop`.
    `store` stays the caller's to close; stores opened through `reopen` are closed here.
    """
    stop = stop or threading.Event()
    subscriptions = list(options.topics) or [mapping.subscription()]
    stats = IngestStats(
        broker.describe(), subscriptions, options.client_id, store.describe(), dataset.name, mapping.format
    )
    store.ensure_schema(dataset, 0)
    inbox = _Inbox(options.batch, options.flush_interval)
    subscriber = _Subscriber(inbox, subscriptions, options.qos, stats, on_ready)
    client = connect(
        broker,
        options.client_id,
        persistent=options.persistent,
        manual_ack=True,
        receive_maximum=options.receive_maximum,
        prepare=subscriber.prepare,
        on_connected=subscriber.on_connected,
    )
    writer = _Writer(store, dataset, mapping, client, inbox, stats, reopen, stop)
    started = time.perf_counter()
    deadline = started + options.duration if options.duration else None
    last_report = 0.0
    try:
        while not stop.is_set():
            if subscriber.refused:
                raise TaosprspError(subscriber.refused)
            inbox.due(IDLE_SECONDS)
            writer.handle(inbox.take())
            now = time.perf_counter()
            stats.seconds = now - started
            stats.note(now)
            stats.backlog = len(inbox)
            if on_stats and now - last_report >= STATS_EVERY_SECONDS:
                on_stats(stats)
                last_report = now
            if options.count is not None and stats.messages >= options.count:
                stats.stopped_by = "count"
                break
            if deadline and now >= deadline:
                stats.stopped_by = "duration"
                break
        stats.stopped_by = stats.stopped_by or "signal"
        if not options.persistent:
            # Without a session on the broker, what arrives after the last write would be lost: stop the
            # flow first, then write what came before the broker's confirmation.
            client.unsubscribe(subscriptions)
            subscriber.unsubscribed.wait(UNSUBSCRIBE_WAIT_SECONDS)
        writer.handle(inbox.take(), final=True)
    finally:
        disconnect(client)
        if writer.store is not store:
            writer.store.close()
        stats.seconds = time.perf_counter() - started
        stats.backlog = 0
        if on_stats:
            on_stats(stats)
    return stats


class _Writer:
    """Decodes, writes and then acknowledges one batch of messages at a time."""

    def __init__(
        self,
        store: Store,
        dataset: Dataset,
        mapping: MessageMapping,
        client: BufferedClient,
        inbox: _Inbox,
        stats: IngestStats,
        reopen: Callable[[], Store] | None,
        stop: threading.Event,
    ) -> None:
        self.given = store
        self.store = store
        self.dataset = dataset
        self.client = client
        self.inbox = inbox
        self.stats = stats
        self.reopen = reopen
        self.stop = stop
        self.decoder = BatchDecoder(mapping, stats.rejected)

    def handle(self, batch: list[tuple[Received, int]], final: bool = False) -> None:
        if not batch:
            return
        messages = [message for message, _ in batch]
        decoded = self.decoder.decode(messages)
        table = decoded.table
        redelivered = sum(1 for message in messages if message.dup)
        if not self._write(table, final):
            self.stats.unacked += len(batch)
            return
        self._acknowledge(batch)
        stats = self.stats
        stats.messages += len(batch)
        stats.records += decoded.records
        stats.rows_written += table.num_rows
        stats.duplicates += decoded.duplicates
        stats.redelivered += redelivered
        stats.arrival_stamped += decoded.arrival_stamped
        stats.batches += 1
        stats.lag_seconds = time.monotonic() - min(message.timestamp for message in messages)

    def _acknowledge(self, batch: list[tuple[Received, int]]) -> None:
        """Acknowledge the messages of `batch` that came on this connection, in the order they arrived."""
        connection = self.inbox.connection
        due = [message for message, on_connection in batch if message.qos and on_connection == connection]
        if all(message.qos == 1 for message in due):
            self.client.ack_all([message.mid for message in due])
            return
        for message in due:
            self.client.ack(message.mid, message.qos)

    def _write(self, table: pa.Table, final: bool) -> bool:
        """Write `table`, retrying with backoff (through `reopen` when given) until it is written; a stop
        ends the retries, after a last few short ones for the final batch."""
        if not table.num_rows:
            return True
        attempt = 0
        while True:
            try:
                self.store.write(self.dataset, table)
                return True
            except TaosprspError as exc:
                self._failed(exc)
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            if final:
                if attempt > len(RETRY_DELAYS):
                    return False
                time.sleep(min(delay, FINAL_RETRY_SECONDS))
            elif self.stop.wait(delay):
                return False
            if self.reopen is not None:
                try:
                    if self.store is not self.given:
                        self.store.close()
                    self.store = self.reopen()
                except TaosprspError as exc:
                    self._failed(exc)

    def _failed(self, exc: TaosprspError) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(exc)
