"""MQTT in and out: `ingest mqtt` writes what devices publish into the store, `produce --sink mqtt`
publishes generated rows as devices would, both through one topic-and-payload mapping per dataset, and
`forward mqtt` publishes every new row of the store onward."""

from taosprsp.mqtt.broker import BrokerOptions
from taosprsp.mqtt.forward import ForwardOptions, ForwardStats, forward, forward_group, forward_mapping
from taosprsp.mqtt.ingest import IngestOptions, IngestStats, ingest
from taosprsp.mqtt.mapping import DEFAULT_TOPIC, PAYLOAD_FORMATS, MessageMapping, PayloadFormat, Rejections
from taosprsp.mqtt.publish import publish

__all__ = [
    "BrokerOptions",
    "DEFAULT_TOPIC",
    "ForwardOptions",
    "ForwardStats",
    "IngestOptions",
    "IngestStats",
    "MessageMapping",
    "PAYLOAD_FORMATS",
    "PayloadFormat",
    "Rejections",
    "forward",
    "forward_group",
    "forward_mapping",
    "ingest",
    "publish",
]
