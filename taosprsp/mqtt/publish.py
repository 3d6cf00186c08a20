"""`produce --sink mqtt`: simulated devices publish the dataset's rows to a broker, one topic per subtable.

Rows come from the same generator and clock as `produce` (`taosprsp.produce.batches`), at the same held
rate; each row is one message (a JSON object or an InfluxDB line) on the topic the mapping's pattern gives
its subtable and tags, so `ingest mqtt` with the same mapping turns every message back into the row it came
from. Payloads and topics are built columnar per batch; only the hand-over to the client is per message.
`Publisher` is the sending side, shared with `forward mqtt`.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pyarrow as pa

from taosprsp.datasets import Dataset
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.generate import Clock, Generator
from taosprsp.mqtt.broker import MAX_RECEIVE, BrokerOptions, connect, disconnect
from taosprsp.mqtt.mapping import MessageMapping
from taosprsp.mqtt.payload import encode_json, encode_line
from taosprsp.pacing import ProduceStats, keep_pace
from taosprsp.produce import ProduceOptions, batches
from taosprsp.progress import STATS_EVERY_SECONDS
from taosprsp.stores.base import BEFORE_ANY_ROW

DEFAULT_INFLIGHT = 20
"""Unconfirmed QoS 1 messages on the wire: mosquitto's default Receive Maximum (`max_inflight_messages`).
More does not help: paho-mqtt scans its unconfirmed messages on every confirmation (measured here: 10,000
messages/s at 20, 7,500 at 100, 4,400 at 300)."""
MAX_UNCONFIRMED_BATCHES = 10
"""Batches handed to the client but not confirmed before generation waits: memory stays bounded when the
broker is slower than the target rate (the stats then say "behind")."""
MAX_HELD = 60_000
"""Unconfirmed messages the client holds at most: paho-mqtt numbers them with MQTT's 65,535 packet ids and
refuses a message whose id is still in use."""
CONFIRM_WAIT_SECONDS = 30.0


def messages(mapping: MessageMapping, batch: pa.Table) -> tuple[list[str], list[str]]:
    """Topic and payload of every row of `batch`."""
    topics = mapping.topic.format({name: batch[name] for name in mapping.topic.names}).to_pylist()
    payloads = encode_json(mapping, batch) if mapping.format == "json" else encode_line(mapping, batch)
    return topics, payloads


class Publisher:
    """A client publishing at `qos` with at most `inflight` messages unconfirmed on the wire, counting the
    broker's confirmations (at QoS 0: messages written to the socket)."""

    def __init__(
        self, broker: BrokerOptions, client_id: str = "", qos: int = 1, inflight: int = DEFAULT_INFLIGHT
    ) -> None:
        self.qos = qos
        self.sent = 0
        self.confirmed = 0
        """Written by the network thread only."""
        self.errors = 0
        self.last_error = ""
        allowed: list[int] = []

        def prepare(client: paho.Client) -> None:
            client.on_publish = self._confirm
            client.max_inflight_messages_set(inflight)

        def on_connected(client: paho.Client, session_present: bool, properties: Any) -> None:
            allowed.append(getattr(properties, "ReceiveMaximum", MAX_RECEIVE))

        self.client_id = client_id or f"taosprsp-publish-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client = connect(broker, self.client_id, persistent=False, prepare=prepare, on_connected=on_connected)
        if allowed and allowed[0] < inflight:
            disconnect(self.client)
            raise TaosprspError(
                f"the broker at {broker.describe()} takes at most {allowed[0]} unconfirmed messages (its Receive "
                f"Maximum), fewer than {inflight} in flight: lower mqtt.inflight or raise the broker's limit"
            )

    def _confirm(self, *args: Any) -> None:
        self.confirmed += 1

    @property
    def unconfirmed(self) -> int:
        return self.sent - self.confirmed

    def send(self, topics: Sequence[str], payloads: Sequence[str | bytes]) -> None:
        """Hand messages to the client; what is not on the wire yet waits in it (and survives a reconnect).
        Waits (up to `CONFIRM_WAIT_SECONDS`) while the client holds `MAX_HELD` unconfirmed messages."""
        for topic, payload in zip(topics, payloads, strict=True):
            if self.unconfirmed >= MAX_HELD:
                self.drain(CONFIRM_WAIT_SECONDS, below=MAX_HELD // 2)
            info = self.client.publish(topic, payload, self.qos)
            self.sent += 1
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                self.errors += 1
                self.last_error = paho.error_string(info.rc)

    def wait_below(self, most: int, stop: threading.Event) -> None:
        """Wait until at most `most` messages are unconfirmed, or `stop`."""
        while self.unconfirmed > most and not stop.is_set():
            stop.wait(0.005)

    def drain(self, seconds: float = CONFIRM_WAIT_SECONDS, below: int = 1) -> None:
        """Wait up to `seconds` for the broker to confirm every message sent (all but `below` - 1)."""
        waiting_since = time.monotonic()
        while self.unconfirmed >= below and time.monotonic() - waiting_since < seconds:
            time.sleep(0.01)

    def close(self) -> None:
        disconnect(self.client)


def publish(
    dataset: Dataset,
    mapping: MessageMapping,
    broker: BrokerOptions,
    options: ProduceOptions,
    qos: int = 1,
    inflight: int = DEFAULT_INFLIGHT,
    client_id: str = "",
    last: np.ndarray | None = None,
    on_stats: Callable[[ProduceStats], None] | None = None,
    stop: threading.Event | None = None,
    on_sent: Callable[[pa.Table], None] | None = None,
) -> ProduceStats:
    """Publish generated rows until `count`, `duration` or `stop`; returns `produce`'s totals.

    At most `inflight` messages are unconfirmed at a time: no more than the broker's Receive Maximum.
    `rows_written` counts messages the broker confirmed (at QoS 0: sent); `rows_failed` those still
    unconfirmed `CONFIRM_WAIT_SECONDS` after the last one was sent. Timestamps continue after `last` (per
    subtable, e.g. the store's newest) when given, else from the wall clock. `on_sent(batch)` runs as soon
    as a batch is handed to the client.
    """
    stop = stop or threading.Event()
    options.check_rate(mapping.precision)
    if options.protocol != "stmt2":
        raise TaosprspError(
            f"producer.protocol (--protocol) {options.protocol} is for the store; messages take mqtt.format "
            "(json or line)",
            ExitCode.USAGE,
        )
    stats = ProduceStats(
        store=broker.describe(),
        dataset=dataset.name,
        protocol=mapping.format,
        target_rate=options.rate,
        batch=options.batch_rows,
        tables=options.tables,
    )
    publisher = Publisher(broker, client_id, qos, inflight)
    generator = Generator(dataset, options.tables, mapping.precision, options.seed, options.first_table)
    clock = Clock(mapping.precision, np.full(options.tables, BEFORE_ANY_ROW) if last is None else last)
    started = time.perf_counter()
    deadline = started + options.duration if options.duration else None
    last_report = 0.0
    try:
        for batch in batches(options, generator, clock):
            if stop.is_set():
                stats.stopped_by = "signal"
                break
            publisher.send(*messages(mapping, batch))
            if on_sent is not None:
                on_sent(batch)
            stats.batches += 1
            stats.ahead_seconds = max(stats.ahead_seconds, clock.ahead_seconds())
            publisher.wait_below(MAX_UNCONFIRMED_BATCHES * options.batch_rows, stop)
            now = time.perf_counter()
            stats.seconds = now - started
            stats.rows_written = publisher.confirmed
            stats.errors, stats.last_error = publisher.errors, publisher.last_error
            stats.note(now)
            keep_pace(stats, options.rate, started, publisher.sent, now, stop)
            if on_stats and now - last_report >= STATS_EVERY_SECONDS:
                on_stats(stats)
                last_report = now
            if deadline and time.perf_counter() >= deadline:
                stats.stopped_by = "duration"
                break
        else:
            stats.stopped_by = "count"
        stats.stopped_by = stats.stopped_by or "signal"
        publisher.drain()
    finally:
        publisher.close()
    stats.rows_written = publisher.confirmed
    stats.rows_failed = publisher.unconfirmed
    stats.errors, stats.last_error = publisher.errors, publisher.last_error
    stats.seconds = time.perf_counter() - started
    if on_stats:
        on_stats(stats)
    return stats
