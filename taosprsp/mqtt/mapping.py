"""How MQTT messages map to rows of a dataset, in the spirit of Telegraf's `topic_parsing`.

A topic pattern such as `plant/{location}/{tbname}/power` names topic levels after fields of the store
layout: `{tbname}` is the subtable, `{location}` a tag (any column or tag may come from a level); `+` is a
level that is ignored and a final `#` ignores the rest. Every field not taken from the topic comes from
the payload, at a path: its own name by default, or a dotted path (`fields = { current = "m.i" }`) into
nested JSON objects. The timestamp is optional in the payload: a message without it is stamped on arrival.

The same pattern drives the publisher, which fills it from each row's subtable and tags.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc

from taosprsp.config import PayloadFormat
from taosprsp.datasets import SUBTABLE_COLUMN, TICKS_PER_SECOND, Dataset, Precision
from taosprsp.errors import ConfigError

if TYPE_CHECKING:
    from taosprsp.config import MqttSettings

PAYLOAD_FORMATS: tuple[PayloadFormat, ...] = get_args(PayloadFormat)
TimeUnit = Literal["s", "ms", "us", "ns"]
UNIT_TICKS: dict[str, int] = {"s": 1, **TICKS_PER_SECOND}
DEFAULT_TOPIC = "taosprsp/{tbname}"
Reason = Literal["unknown_topic", "not_json", "not_object", "bad_line", "missing_field", "wrong_type"]
SAMPLE_CHARS = 200
LOG_EVERY_SECONDS = 10.0

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
log = logging.getLogger("taosprsp.mqtt")


@dataclass(frozen=True)
class TopicPattern:
    """A topic pattern: literal levels, `{field}` levels captured, `+` levels ignored, an optional final `#`."""

    text: str
    levels: tuple[str, ...]
    captures: tuple[tuple[int, str], ...]
    open_ended: bool

    @classmethod
    def parse(cls, text: str, names: tuple[str, ...]) -> TopicPattern:
        """The pattern `text`, whose placeholders must be among `names` (the store layout's fields)."""
        levels = tuple(text.split("/"))
        open_ended = levels[-1] == "#"
        fixed = levels[:-1] if open_ended else levels
        captures: list[tuple[int, str]] = []
        for index, level in enumerate(fixed):
            match = _PLACEHOLDER.match(level)
            if match:
                name = match.group(1)
                if name not in names:
                    raise ConfigError(
                        f"mqtt.topic: {{{name}}} in {text!r} is not a field; use one of {', '.join(names)}"
                    )
                if name in dict(captures).values():
                    raise ConfigError(f"mqtt.topic: {{{name}}} appears twice in {text!r}")
                captures.append((index, name))
            elif not level or "{" in level or "}" in level or "#" in level or ("+" in level and level != "+"):
                raise ConfigError(f"mqtt.topic: bad level {level!r} in {text!r}: use text, {{field}}, + or a final #")
        return cls(text, fixed, tuple(captures), open_ended)

    @property
    def names(self) -> tuple[str, ...]:
        """The fields taken from topic levels, in level order."""
        return tuple(name for _, name in self.captures)

    def subscription(self) -> str:
        """The topic filter that receives every topic of this pattern."""
        levels = ["+" if _PLACEHOLDER.match(level) else level for level in self.levels]
        return "/".join(levels + (["#"] if self.open_ended else []))

    def match(self, topic: str) -> tuple[str, ...] | None:
        """The captured level values of `topic`, or None when it does not fit the pattern."""
        levels = topic.split("/")
        if len(levels) < len(self.levels) or (len(levels) > len(self.levels) and not self.open_ended):
            return None
        captured = dict(self.captures)
        for index, (level, expected) in enumerate(zip(levels, self.levels, strict=False)):
            if index not in captured and expected != "+" and level != expected:
                return None
        return tuple(levels[index] for index, _ in self.captures)

    def format(self, columns: dict[str, pa.Array]) -> pa.Array:
        """The topic of every row, from the captured fields' columns (as text), columnar."""
        captured = dict(self.captures)
        parts: list[pa.Array | pa.Scalar] = []
        for index, level in enumerate(self.levels):
            if index:
                parts.append(pa.scalar("/"))
            if index in captured:
                parts.append(pc.cast(columns[captured[index]], pa.string()))
            else:
                parts.append(pa.scalar("_" if level == "+" else level))
        return pc.binary_join_element_wise(*parts, "")


@dataclass(frozen=True)
class MessageMapping:
    """Topic pattern, payload format and field paths for one dataset; timestamps in `timestamp_unit`."""

    dataset: Dataset
    precision: Precision
    topic: TopicPattern
    format: PayloadFormat = "json"
    paths: tuple[tuple[str, str], ...] = ()
    timestamp_unit: TimeUnit = "ms"
    measurement: str = ""

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        precision: Precision,
        topic: str = DEFAULT_TOPIC,
        format: PayloadFormat = "json",
        fields: dict[str, str] | None = None,
        timestamp_unit: str = "",
        measurement: str = "",
    ) -> MessageMapping:
        """A checked mapping: `fields` maps field names to payload paths (default: each field's own name);
        `timestamp_unit` defaults to the database precision; `measurement` names line protocol output."""
        names = (SUBTABLE_COLUMN,) + tuple(f.name for f in dataset.fields)
        pattern = TopicPattern.parse(topic, names)
        if format not in PAYLOAD_FORMATS:
            raise ConfigError(f"mqtt.format: {format!r} is not one of {', '.join(PAYLOAD_FORMATS)}")
        fields = fields or {}
        for name, path in fields.items():
            if name not in names:
                raise ConfigError(
                    f"mqtt.fields: {name!r} is not a field of {dataset.name}; use one of {', '.join(names)}"
                )
            if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
                raise ConfigError(
                    f"mqtt.fields.{name}: expected a key or a dotted path such as 'm.current', got {path!r}"
                )
            if name in pattern.names:
                raise ConfigError(f"mqtt.fields.{name}: {name} already comes from the topic {topic!r}")
        unit = timestamp_unit or precision
        if unit not in UNIT_TICKS:
            raise ConfigError(f"mqtt.timestamp_unit: {unit!r} is not one of {', '.join(UNIT_TICKS)}")
        paths = tuple((name, fields.get(name, name)) for name in names if name not in pattern.names)
        return cls(dataset, precision, pattern, format, paths, unit, measurement or dataset.name)  # type: ignore[arg-type]

    @classmethod
    def from_settings(
        cls, settings: MqttSettings, dataset: Dataset, precision: Precision, stable: str
    ) -> MessageMapping:
        return cls.build(
            dataset, precision, settings.topic, settings.format, settings.fields, settings.timestamp_unit, stable
        )

    @property
    def timestamp(self) -> str:
        return self.dataset.timestamp.name

    def subscription(self) -> str:
        return self.topic.subscription()

    def kind(self, name: str) -> str:
        """The logical kind of a store-layout field (`varchar` for the subtable name)."""
        return "varchar" if name == SUBTABLE_COLUMN else self.dataset.field(name).kind

    def arrow_type(self, name: str) -> pa.DataType:
        return pa.string() if name == SUBTABLE_COLUMN else self.dataset.field(name).spec.arrow

    def to_ticks(self, values: pa.Array) -> pa.Array:
        """Payload timestamps (integers or fractions in `timestamp_unit`) as int64 ticks of the precision."""
        have, want = UNIT_TICKS[self.timestamp_unit], TICKS_PER_SECOND[self.precision]
        if pa.types.is_floating(values.type):
            return pc.cast(pc.round(pc.multiply(values, want / have)), pa.int64())
        values = pc.cast(values, pa.int64())
        if want >= have:
            return pc.multiply_checked(values, want // have)
        return pc.divide(values, have // want)

    def from_ticks(self, ticks: pa.Array) -> pa.Array:
        """Ticks of the precision as integers in `timestamp_unit`, for payloads."""
        have, want = TICKS_PER_SECOND[self.precision], UNIT_TICKS[self.timestamp_unit]
        return pc.multiply(ticks, want // have) if want >= have else pc.divide(ticks, have // want)


@dataclass
class Rejections:
    """Records that could not become rows, counted by reason, with the first one of each kept as a sample.

    Each reason is logged with its topic when first seen, then at most once every `LOG_EVERY_SECONDS`.
    """

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, dict[str, str]] = field(default_factory=dict)
    logged_at: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: Reason, topic: str, payload: bytes, detail: str, records: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + records
        if reason not in self.samples:
            text = payload[:SAMPLE_CHARS].decode("utf-8", "replace")
            self.samples[reason] = {"topic": topic, "payload": text, "detail": detail}
        now = time.monotonic()
        if now - self.logged_at.get(reason, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            self.logged_at[reason] = now
            log.warning("rejected a message on %s (%s, %d so far): %s", topic, reason, self.counts[reason], detail)

    def as_dict(self) -> dict[str, object]:
        return {"by_reason": dict(self.counts), "samples": dict(self.samples)}
