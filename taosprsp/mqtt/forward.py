"""`forward mqtt`: every new row of the store published onward to a broker as a JSON object, as the edge seed's
message bus carries TDengine's rows on.

New rows come the way `serve`'s feed gets them, through the store's own read path: on TDengine a TMQ
subscription (`taosprsp.stores.tmq`) pushes every row as stored; the embedded store is read after a watermark
(`Store.snapshot`, then `Store.read_new` every `interval`: rows in the order the store took them, each once).
Either way forwarding starts with the rows stored after it starts.

Each row is one message on the topic its pattern gives it (`taosprsp/{stable}/{tbname}`: `{stable}` and any
field in braces), its payload the whole row, subtable and tags included: `{"tbname": "d0", "ts":
1714000000000, "current": 10.3, ...}`, times as integers in the database precision (or `mqtt.timestamp_unit`).
At QoS 1 the broker confirms every message; those still unconfirmed when forwarding ends are counted. (The
embedded store keeps one row per subtable and timestamp: a row written again replaces the first, is stored
anew, and is forwarded again.)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision
from taosprsp.mqtt.broker import BrokerOptions
from taosprsp.mqtt.mapping import MessageMapping
from taosprsp.mqtt.publish import DEFAULT_INFLIGHT, Publisher, messages
from taosprsp.progress import STATS_EVERY_SECONDS
from taosprsp.stores.base import Store
from taosprsp.stores.tdengine import TDengineStore
from taosprsp.stores.tmq import subscribe

if TYPE_CHECKING:
    from taosprsp.config import MqttSettings

DEFAULT_FORWARD_TOPIC = "taosprsp/{stable}/{tbname}"
FORWARD_GROUP_PREFIX = "taosprsp-forward-"
MAX_UNCONFIRMED = 50_000
"""Messages handed to the client but not confirmed before reading waits: memory stays bounded while the
broker is slow or away (the client resends what it holds once it is back)."""


@dataclass(frozen=True)
class ForwardOptions:
    """Where rows go and for how long: `count` rows, `duration` seconds, or until stopped."""

    topic: str = DEFAULT_FORWARD_TOPIC
    qos: int = 1
    inflight: int = DEFAULT_INFLIGHT
    interval: float = 0.1
    """Seconds between reads of the embedded store (TDengine pushes rows)."""
    timestamp_unit: str = ""
    count: int | None = None
    duration: float | None = None

    @classmethod
    def from_settings(cls, settings: MqttSettings, **run: Any) -> ForwardOptions:
        return cls(
            topic=settings.forward_topic,
            qos=settings.qos,
            inflight=settings.inflight,
            interval=settings.forward_interval,
            timestamp_unit=settings.timestamp_unit,
            **run,
        )


@dataclass
class ForwardStats:
    """Running totals; `as_dict` is the `--json` summary. `messages` the broker confirmed (at QoS 0: sent)."""

    broker: str
    topic: str
    store: str
    dataset: str
    rows_read: int = 0
    messages: int = 0
    unconfirmed: int = 0
    batches: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_error: str = ""
    stopped_by: str = ""

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "messages_per_second": round(self.messages_per_second, 1)}


def forward_mapping(
    dataset: Dataset, precision: Precision, stable: str, topic: str = DEFAULT_FORWARD_TOPIC, timestamp_unit: str = ""
) -> MessageMapping:
    """The topic of each row from `topic` (`{stable}` filled in), its payload every field of the row."""
    mapping = MessageMapping.build(
        dataset, precision, topic.replace("{stable}", stable), "json", timestamp_unit=timestamp_unit
    )
    names = (SUBTABLE_COLUMN, *(f.name for f in dataset.fields))
    return dataclasses.replace(mapping, paths=tuple((name, name) for name in names))


def forward_group(database: str, stable: str) -> str:
    """The TMQ consumer group of `forward mqtt` on a super table: one forwarder per table."""
    return f"{FORWARD_GROUP_PREFIX}{database}-{stable}"


def new_rows(
    store: Store,
    dataset: Dataset,
    interval: float,
    group: str,
    stop: threading.Event,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[pa.Table]:
    """Batches of the rows the store takes from now on, each row once, until `stop`; `on_ready()` runs once
    rows stored afterwards are sure to come."""
    if isinstance(store, TDengineStore):
        with subscribe(store, dataset, group, stop) as subscription:
            if on_ready is not None:
                on_ready()
            yield from (batch for batch in subscription if batch.num_rows)
        return
    watermark = store.snapshot(dataset, 0).watermark
    if on_ready is not None:
        on_ready()
    while not stop.is_set():
        started = time.perf_counter()
        rows = store.read_new(dataset, watermark)
        if rows.num_rows:
            yield rows
        stop.wait(max(0.0, interval - (time.perf_counter() - started)))


def forward(
    store: Store,
    dataset: Dataset,
    mapping: MessageMapping,
    broker: BrokerOptions,
    options: ForwardOptions,
    group: str,
    on_stats: Callable[[ForwardStats], None] | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> ForwardStats:
    """Publish every row the store takes from now on (see `forward_mapping`) until `count` rows, `duration`
    seconds (which sets `stop`) or `stop`; returns the totals. `group` is the TMQ consumer group on TDengine
    (`forward_group`); `on_ready()` runs once every row stored afterwards is sure to be forwarded."""
    stop = stop or threading.Event()
    stats = ForwardStats(broker.describe(), mapping.topic.text, store.describe(), dataset.name)
    store.ensure_schema(dataset, 0)
    publisher = Publisher(broker, qos=options.qos, inflight=options.inflight)
    started = time.perf_counter()
    deadline = started + options.duration if options.duration else None
    # a timer ends the reading when the duration is up, also while no row comes
    timer = threading.Timer(options.duration, stop.set) if options.duration else None
    last_report = 0.0
    try:
        if timer is not None:
            timer.start()
        rows = closing(new_rows(store, dataset, options.interval, group, stop, on_ready))
        with rows as batches:  # closed on leaving: a TMQ subscription ends with it, count reached or not
            for batch in batches:
                if options.count is not None:
                    batch = batch.slice(0, options.count - stats.rows_read)
                publisher.send(*messages(mapping, batch))
                stats.rows_read += batch.num_rows
                stats.batches += 1
                publisher.wait_below(MAX_UNCONFIRMED, stop)
                now = time.perf_counter()
                _note(stats, publisher, now - started)
                if on_stats and now - last_report >= STATS_EVERY_SECONDS:
                    on_stats(stats)
                    last_report = now
                if options.count is not None and stats.rows_read >= options.count:
                    stats.stopped_by = "count"
                    break
        if not stats.stopped_by:
            stats.stopped_by = "duration" if deadline and time.perf_counter() >= deadline else "signal"
        publisher.drain()
    finally:
        if timer is not None:
            timer.cancel()
        publisher.close()
    _note(stats, publisher, time.perf_counter() - started)
    if on_stats:
        on_stats(stats)
    return stats


def _note(stats: ForwardStats, publisher: Publisher, seconds: float) -> None:
    stats.messages = publisher.confirmed
    stats.unconfirmed = publisher.unconfirmed
    stats.errors, stats.last_error = publisher.errors, publisher.last_error
    stats.seconds = seconds
