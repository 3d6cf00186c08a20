"""The feed's TMQ subscription: TDengine pushes every new row of the super table to a consumer.

The topic (`TDengineStore.topic_name()`, created when missing) selects the store layout; the consumer
polls it on the feed's thread and hands back Arrow batches until the feed stops.

The consumer group is the serve's own (`Config.consumer_group`): stable, so a restarted serve reuses it
instead of leaving one more group on the server each run. A group that already holds committed offsets
would resume from them and replay every row written while no serve ran (up to the WAL retention), which
the snapshot the feed loads already covers: so an idle leftover is dropped before subscribing, and the
group is dropped again when the subscription closes, unless another consumer is in it. Each start thus
begins at the newest row; a serve never resumes a stream where an earlier one stopped.

taos-ws-py 0.7.0 holds the GIL for the whole of a `poll`, its wait included: the feed polls briefly and
waits on its stop event in between (which releases the GIL), so the web server's thread is never held up
for more than one short poll.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from types import TracebackType
from typing import Any

import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, epoch_ticks
from taosprsp.endpoint import Endpoint
from taosprsp.errors import StoreError, TaosprspError
from taosprsp.stores.tdengine import LIVE_CONSUMER_STATUSES, TDengineStore, driver_errors

POLL_SECONDS = 0.005
"""How long one `poll` may wait for a message: the longest the GIL is held for the feed at a time."""
IDLE_SECONDS = 0.005
"""How long the feed waits (GIL released) after a poll that brought nothing."""


def client_id() -> str:
    """This process's consumer name on the server (`client_id` in SHOW CONSUMERS): host and process id."""
    return f"taosprsp-{socket.gethostname()}-{os.getpid()}"


def consumer_conf(endpoint: Endpoint, group_id: str, retries: int) -> dict[str, str]:
    """A consumer in `group_id`, named after this process, that starts at new rows and commits as it goes."""
    return {
        "td.connect.websocket.scheme": endpoint.scheme,
        "td.connect.ip": endpoint.host,
        "td.connect.port": str(endpoint.port),
        "td.connect.user": endpoint.user,
        "td.connect.pass": endpoint.password,
        "group.id": group_id,
        "client.id": client_id(),
        "auto.offset.reset": "latest",
        "enable.auto.commit": "true",
        "conn_retries": str(retries),
    }


def claim_group(store: TDengineStore, topic: str, group: str) -> None:
    """Make `group` fresh before subscribing: an idle or lost leftover on `topic` is dropped (it would replay
    from its last commit); a group with a subscribed consumer belongs to a running serve, and sharing it would
    split the rows between the two, so that is refused. (Consumers are checked first: the server lists a new
    consumer at once, its group on the topic only after the next rebalance.)"""
    live = sorted({client for client, status in store.consumers(group) if status in LIVE_CONSUMER_STATUSES})
    if live:
        raise StoreError(
            f"consumer group {group} on topic {topic} is in use by {', '.join(live)}: another serve follows this "
            "table, or one ended without stopping less than 12 s ago (TDengine's session timeout); set "
            "server.group to run a second serve, or start again in a few seconds"
        )
    if group in store.consumer_groups(topic):
        store.drop_consumer_group(group, topic, force=True)


def release_group(store: TDengineStore, topic: str, group: str) -> None:
    """After this process's consumer closed: drop `group` unless a subscribed consumer of another process is
    in it. The closed consumer may be listed until the server's next rebalance (2 s), hence the forced drop."""
    mine = client_id()
    if any(client != mine and status in LIVE_CONSUMER_STATUSES for client, status in store.consumers(group)):
        return
    store.drop_consumer_group(group, topic, force=True)


class Subscription:
    """A consumer of the feed's topic in consumer group `group`: iterating it yields the batches TDengine
    pushes until `stop` is set, and an empty batch after each poll that brought nothing. `close` (or leaving
    a `with` block) closes the consumer and drops the group unless another consumer is in it; a group that
    cannot be dropped then (the server went away) is dropped by the next serve that claims it, or by
    `taosprsp db purge`."""

    def __init__(
        self, store: TDengineStore, dataset: Dataset, group: str, stop: threading.Event, poll_seconds: float
    ) -> None:
        import taosws

        self.store = store
        self.dataset = dataset
        self.group = group
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.topic = store.create_topic(dataset)
        self._closed = False
        claim_group(store, self.topic, group)
        with driver_errors(f"could not subscribe to topic {self.topic}"):
            self._consumer: Any = taosws.Consumer(conf=consumer_conf(store.endpoint, group, store.retries))
        try:
            with driver_errors(f"could not subscribe to topic {self.topic}"):
                self._consumer.subscribe([self.topic])
        except StoreError:
            self.close()
            raise

    def __iter__(self) -> Iterator[pa.Table]:
        schema = self.dataset.arrow_schema()
        times = {i for i, f in enumerate(schema) if f.name != SUBTABLE_COLUMN and self.dataset.field(f.name).is_time}
        precision = self.store.database.precision
        while not self.stop.is_set():
            with driver_errors(f"the consumer of topic {self.topic} failed"):
                message = self._consumer.poll(timeout=self.poll_seconds)
            rows = [] if message is None else [row for block in message for row in block]
            if not rows:
                self.stop.wait(IDLE_SECONDS)
                yield schema.empty_table()  # the feed applies rows it held back once they are due
                continue
            columns = list(zip(*rows, strict=True))
            arrays = [
                pa.array(epoch_ticks(list(values), precision) if i in times else values, f.type)
                for i, (values, f) in enumerate(zip(columns, schema, strict=True))
            ]
            yield pa.table(arrays, schema=schema)

    def close(self) -> None:
        """Close the consumer and release its group; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with suppress(StoreError), driver_errors(f"closing the consumer of topic {self.topic}"):
            self._consumer.close()
        with suppress(TaosprspError):
            release_group(self.store, self.topic, self.group)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def subscribe(
    store: TDengineStore, dataset: Dataset, group: str, stop: threading.Event, poll_seconds: float = POLL_SECONDS
) -> Subscription:
    """Subscribe now to every new row of the store's super table in consumer group `group`.

    The subscription starts before this returns, so rows written afterwards arrive even if iteration
    starts later. Close it (or use it in a `with` block) when done.
    """
    return Subscription(store, dataset, group, stop, poll_seconds)
