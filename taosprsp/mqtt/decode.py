"""Messages to one Arrow table per batch: parse each payload once, build every column in one go.

Per message there is only what cannot be columnar: the JSON (or line) parse and picking the mapped values
into a tuple. Topics are matched once per distinct topic and cached. Columns are built from the tuples by
Arrow, typed by inference and cast to the dataset's types, so a wrong type shows up as a failed cast;
only then is the column walked value by value to find, reject and sample the bad rows.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND
from taosprsp.mqtt.mapping import MessageMapping, Reason, Rejections
from taosprsp.mqtt.payload import LineError, parse_line
from taosprsp.stores.base import BEFORE_ANY_ROW

MAX_CACHED_TOPICS = 100_000
_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    TypeError,
    ValueError,
)


class Message(Protocol):
    """What the decoder reads of a message (paho's MQTTMessage has it): `timestamp` is `time.monotonic()`
    at arrival."""

    @property
    def topic(self) -> str: ...

    payload: bytes
    timestamp: float


@dataclass(frozen=True)
class Decoded:
    """A batch in the store layout, grouped by subtable, one row per (subtable, timestamp)."""

    table: pa.Table
    records: int
    duplicates: int
    arrival_stamped: int


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    def get(document: Any) -> Any:
        for part in path:
            document = document[part]
        return document

    return get


def _picker(keys: list[tuple[str, ...]]) -> Callable[[Any], tuple]:
    """A function taking the values at `keys` out of a document as a tuple; a missing one is a KeyError."""
    if all(len(key) == 1 for key in keys) and len(keys) > 1:
        return operator.itemgetter(*(key[0] for key in keys))  # one C call for top-level keys
    getters = [_getter(key) for key in keys]
    return lambda document: tuple(get(document) for get in getters)


def _optional(path: tuple[str, ...]) -> Callable[[Any], Any]:
    get = _getter(path)

    def value(document: Any) -> Any:
        try:
            return get(document)
        except (KeyError, TypeError):
            return None

    return value


class BatchDecoder:
    """Turns batches of messages into Arrow tables for one mapping, counting what it rejects in `rejections`.

    Rows stamped on arrival get timestamps that strictly increase per subtable, also across batches, so two
    messages arriving within one tick do not collapse into one row.
    """

    def __init__(self, mapping: MessageMapping, rejections: Rejections) -> None:
        self.mapping = mapping
        self.rejections = rejections
        self.schema = mapping.dataset.arrow_schema()
        split = (lambda path: tuple(path.split("."))) if mapping.format == "json" else (lambda path: (path,))
        self._names = [name for name, _ in mapping.paths if name != mapping.timestamp]
        self._pick = _picker([split(path) for name, path in mapping.paths if name != mapping.timestamp])
        timestamp_path = dict(mapping.paths).get(mapping.timestamp)
        self._stamp = _optional(split(timestamp_path)) if timestamp_path else (lambda document: None)
        self._topic_names = mapping.topic.names
        self._slots: dict[str, int] = {}
        self._topic_rejects: dict[str, tuple[Reason, str]] = {}
        self._slot_values: list[tuple] = []
        self._slot_arrays: list[pa.Array] | None = None
        self._last_arrival: dict[str, int] = {}

    # --- per message ---------------------------------------------------------------------------------

    def _slot(self, topic: str) -> int:
        """The cache slot of a topic's captured values, or -1 when the topic is rejected."""
        if len(self._slots) + len(self._topic_rejects) >= MAX_CACHED_TOPICS:
            self._slots.clear()
            self._topic_rejects.clear()
            self._slot_values.clear()
            self._slot_arrays = None
        if topic in self._topic_rejects:
            return -1
        levels = self.mapping.topic.match(topic)
        if levels is None:
            self._topic_rejects[topic] = ("unknown_topic", f"does not match {self.mapping.topic.text!r}")
            return -1
        values = []
        for name, level in zip(self._topic_names, levels, strict=True):
            try:
                values.append(pa.array([level]).cast(self.mapping.arrow_type(name))[0].as_py())
            except _CONVERSION_ERRORS:
                self._topic_rejects[topic] = (
                    "wrong_type",
                    f"{name}: topic level {level!r} is not {self.mapping.kind(name)}",
                )
                return -1
        if SUBTABLE_COLUMN in self._topic_names and not values[self._topic_names.index(SUBTABLE_COLUMN)]:
            self._topic_rejects[topic] = ("missing_field", "the subtable level is empty")
            return -1
        self._slots[topic] = len(self._slot_values)
        self._slot_values.append(tuple(values))
        self._slot_arrays = None
        return self._slots[topic]

    def decode(self, messages: Sequence[Message]) -> Decoded:
        """The rows of `messages` (bad records counted in `rejections`), deduplicated and grouped by subtable."""
        rows: list[tuple] = []
        stamps: list[Any] = []
        slots: list[int] = []
        origins: list[int] = []
        reject = self.rejections.add
        pick, stamp, json_format = self._pick, self._stamp, self.mapping.format == "json"
        for index, message in enumerate(messages):
            topic = message.topic
            slot = self._slots.get(topic)
            if slot is None:
                slot = self._slot(topic)
            if slot < 0:
                reason, detail = self._topic_rejects[topic]
                reject(reason, topic, message.payload, detail)
                continue
            if json_format:
                try:
                    document = orjson.loads(message.payload)
                except orjson.JSONDecodeError as exc:
                    reject("not_json", topic, message.payload, str(exc))
                    continue
                documents = document if type(document) is list else (document,)
                for document in documents:
                    if type(document) is not dict:
                        reject(
                            "not_object",
                            topic,
                            message.payload,
                            f"expected a JSON object, got {type(document).__name__}",
                        )
                        continue
                    try:
                        rows.append(pick(document))
                    except (KeyError, TypeError, IndexError) as exc:
                        reject("missing_field", topic, message.payload, f"no {exc} in the payload")
                        continue
                    stamps.append(stamp(document))
                    slots.append(slot)
                    origins.append(index)
            else:
                try:
                    text = message.payload.decode("utf-8")
                except UnicodeDecodeError as exc:
                    reject("bad_line", topic, message.payload, f"not UTF-8: {exc}")
                    continue
                for line in text.splitlines():
                    if not line.strip() or line.startswith("#"):
                        continue
                    try:
                        values, timestamp = parse_line(line)
                        rows.append(pick(values))
                    except LineError as exc:
                        reject("bad_line", topic, line.encode(), str(exc))
                        continue
                    except KeyError as exc:
                        reject("missing_field", topic, line.encode(), f"no {exc} in the line")
                        continue
                    stamps.append(timestamp)
                    slots.append(slot)
                    origins.append(index)
        return self._build(messages, rows, stamps, slots, origins)

    # --- per batch -----------------------------------------------------------------------------------

    def _reject_row(
        self, bad: np.ndarray, row: int, reason: Reason, detail: str, messages: Sequence[Message], origins: list[int]
    ) -> None:
        if not bad[row]:
            bad[row] = True
            message = messages[origins[row]]
            self.rejections.add(reason, message.topic, message.payload, detail)

    def _column(
        self, name: str, values: Sequence[Any], bad: np.ndarray, messages: Sequence[Message], origins: list[int]
    ) -> pa.Array:
        target = self.mapping.arrow_type(name)
        try:
            inferred = pa.array(values)
            if pa.types.is_boolean(inferred.type):
                raise TypeError("booleans are not numbers")
            return inferred if inferred.type == target else inferred.cast(target)
        except _CONVERSION_ERRORS:
            pass
        converted = []
        for row, value in enumerate(values):
            try:
                if type(value) is bool:
                    raise TypeError("booleans are not numbers")
                converted.append(pa.array([value]).cast(target)[0].as_py())
            except _CONVERSION_ERRORS:
                converted.append(None)
                detail = f"{name}: expected {self.mapping.kind(name)}, got {value!r:.60}"
                self._reject_row(bad, row, "wrong_type", detail, messages, origins)
        return pa.array(converted, target)

    def _timestamps(
        self, stamps: list[Any], bad: np.ndarray, messages: Sequence[Message], origins: list[int]
    ) -> pa.Array:
        """Payload timestamps as ticks of the precision, null where a record had none."""
        try:
            inferred = pa.array(stamps)
            if not (
                pa.types.is_integer(inferred.type)
                or pa.types.is_floating(inferred.type)
                or pa.types.is_null(inferred.type)
            ):
                raise TypeError(str(inferred.type))
            return self.mapping.to_ticks(inferred)
        except _CONVERSION_ERRORS:
            pass
        kept: list[Any] = []
        for row, value in enumerate(stamps):
            if value is None or (type(value) in (int, float)):
                kept.append(value)
            else:
                kept.append(None)
                detail = (
                    f"{self.mapping.timestamp}: expected a number in {self.mapping.timestamp_unit}, got {value!r:.60}"
                )
                self._reject_row(bad, row, "wrong_type", detail, messages, origins)
        return self.mapping.to_ticks(
            pa.array(kept, pa.float64() if any(type(v) is float for v in kept) else pa.int64())
        )

    def _topic_column(self, position: int, slots: list[int]) -> pa.Array:
        if self._slot_arrays is None:
            self._slot_arrays = [
                pa.array([values[i] for values in self._slot_values], self.mapping.arrow_type(name))
                for i, name in enumerate(self._topic_names)
            ]
        return self._slot_arrays[position].take(pa.array(slots, pa.int32()))

    def _stamp_on_arrival(self, names: pa.Array, arrivals: np.ndarray) -> np.ndarray:
        """Arrival ticks, nudged so they strictly increase per subtable, continuing from earlier batches."""
        encoded = names.dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        dictionary = encoded.dictionary.to_pylist()
        order = np.argsort(codes, kind="stable")
        stamped = np.empty_like(arrivals)
        for group in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
            name = dictionary[codes[group[0]]]
            steps = np.arange(len(group))
            floor = self._last_arrival.get(name, BEFORE_ANY_ROW) + 1
            ticks = np.maximum.accumulate(np.maximum(arrivals[group] - steps, floor)) + steps
            stamped[group] = ticks
            self._last_arrival[name] = int(ticks[-1])
        return stamped

    def _build(
        self, messages: Sequence[Message], rows: list[tuple], stamps: list[Any], slots: list[int], origins: list[int]
    ) -> Decoded:
        count = len(rows)
        if not count:
            return Decoded(self.schema.empty_table(), 0, 0, 0)
        bad = np.zeros(count, dtype=bool)
        arrays: dict[str, pa.Array] = {}
        for name, values in zip(self._names, zip(*rows, strict=True), strict=True):
            arrays[name] = self._column(name, values, bad, messages, origins)
        for position, name in enumerate(self._topic_names):
            arrays[name] = self._topic_column(position, slots)
        timestamps = self._timestamps(stamps, bad, messages, origins)
        names = arrays[SUBTABLE_COLUMN]
        for row in np.flatnonzero(pc.fill_null(pc.equal(names, ""), True).to_numpy(zero_copy_only=False)):
            self._reject_row(bad, int(row), "missing_field", "the subtable name is empty", messages, origins)
        good = ~bad
        stamped_rows = np.flatnonzero(timestamps.is_null().to_numpy(zero_copy_only=False) & good)
        ticks = timestamps.fill_null(0).to_numpy(zero_copy_only=False).copy()
        if len(stamped_rows):
            offset = time.time() - time.monotonic()
            seconds = np.array([messages[origins[row]].timestamp for row in stamped_rows]) + offset
            arrivals = (seconds * TICKS_PER_SECOND[self.mapping.precision]).astype(np.int64)
            ticks[stamped_rows] = self._stamp_on_arrival(names.take(pa.array(stamped_rows)), arrivals)
        arrays[self.mapping.timestamp] = pa.array(ticks, pa.int64())
        table = pa.table([arrays[f.name] for f in self.schema], schema=self.schema)
        if bad.any():
            table = table.filter(pa.array(good))
        kept = table.num_rows
        table = _last_per_key(table, self.mapping.timestamp)
        return Decoded(table, count, kept - table.num_rows, len(stamped_rows))


def _last_per_key(table: pa.Table, timestamp: str) -> pa.Table:
    """One row per (subtable, timestamp), the last one received (as TDengine keeps the last write), sorted."""
    if table.num_rows > 1:
        numbered = table.append_column("__row", pa.array(np.arange(table.num_rows)))
        last = numbered.group_by([SUBTABLE_COLUMN, timestamp], use_threads=False).aggregate([("__row", "max")])
        if last.num_rows < table.num_rows:
            table = table.take(np.sort(last["__row_max"].to_numpy()))
    return table.sort_by([(SUBTABLE_COLUMN, "ascending"), (timestamp, "ascending")])
