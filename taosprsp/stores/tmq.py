"""The feed's TMQ subscription: TDengine pushes every new row of the super table to a consumer.

The topic (`TDengineStore.topic_name()`, created when missing) selects the store layout; the consumer
polls it on the feed's thread and hands back Arrow batches until the feed stops.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from taosprsp.datasets import SUBTABLE_COLUMN, Dataset, Precision, epoch_ticks
from taosprsp.endpoint import Endpoint
from taosprsp.stores.tdengine import TDengineStore, driver_errors


def consumer_conf(endpoint: Endpoint, group_id: str, retries: int) -> dict[str, str]:
    """A consumer in `group_id` that starts at new rows and commits as it goes."""
    return {
        "td.connect.websocket.scheme": endpoint.scheme,
        "td.connect.ip": endpoint.host,
        "td.connect.port": str(endpoint.port),
        "td.connect.user": endpoint.user,
        "td.connect.pass": endpoint.password,
        "group.id": group_id,
        "auto.offset.reset": "latest",
        "enable.auto.commit": "true",
        "conn_retries": str(retries),
    }


def subscribe(
    store: TDengineStore, dataset: Dataset, group_id: str, stop: threading.Event, poll_seconds: float = 0.05
) -> Iterator[pa.Table]:
    """Subscribe now to every new row of the store's super table; returns the batches as they are pushed.

    The subscription starts before this returns, so rows written afterwards arrive even if iteration
    starts later. Iteration ends, and the consumer closes, when `stop` is set.
    """
    import taosws

    topic = store.create_topic(dataset)
    with driver_errors(f"could not subscribe to topic {topic}"):
        consumer = taosws.Consumer(conf=consumer_conf(store.endpoint, group_id, store.retries))
        consumer.subscribe([topic])
    return _batches(consumer, dataset, store.database.precision, stop, poll_seconds)


def _batches(
    consumer: Any, dataset: Dataset, precision: Precision, stop: threading.Event, poll_seconds: float
) -> Iterator[pa.Table]:
    schema = dataset.arrow_schema()
    time_columns = {i for i, f in enumerate(schema) if f.name != SUBTABLE_COLUMN and dataset.field(f.name).is_time}
    try:
        while not stop.is_set():
            message = consumer.poll(timeout=poll_seconds)
            if message is None:
                continue
            rows = [row for block in message for row in block]
            if not rows:
                continue
            columns = list(zip(*rows, strict=True))
            arrays = [
                pa.array(epoch_ticks(list(values), precision) if i in time_columns else values, f.type)
                for i, (values, f) in enumerate(zip(columns, schema, strict=True))
            ]
            yield pa.table(arrays, schema=schema)
    finally:
        consumer.close()
