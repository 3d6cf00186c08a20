"""Where the MQTT broker is and how to log in: the URL and options, and a connected paho-mqtt client.

MQTT v5 only, on purpose: its Receive Maximum lets the ingester hold acknowledgements for a whole batch
until the batch is in the store. Under 3.1.1 the broker alone decides how many unacknowledged messages a
client may hold (mosquitto: 20 by default), so batches could never grow past that.

The client is paho-mqtt's with a shorter read path (`BufferedClient`): paho reads a packet with one
`select` and three `recv` calls and builds an MQTT v5 `Properties` object for every PUBLISH, which took
~80% of the ingester's time (~130 of ~170 us per message measured here).
"""

from __future__ import annotations

import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from taosprsp.errors import ConfigError, ExitCode, TaosprspError

if TYPE_CHECKING:
    from taosprsp.config import MqttSettings

SCHEMES = {
    "mqtt": (1883, False, "tcp"),
    "mqtts": (8883, True, "tcp"),
    "ws": (80, False, "websockets"),
    "wss": (443, True, "websockets"),
}
MAX_RECEIVE = 65_535
"""The largest Receive Maximum MQTT v5 allows: unacknowledged messages the broker may send one client."""
READ_CHUNK = 256 * 1024
"""Bytes taken from the socket per `recv`: many small packets at once."""
PACKETS_PER_READ = 10_000
"""Packets handled in one wake-up of the network thread at most, so that its writes (acknowledgements) go out."""
MAX_TOPIC_NAMES = 100_000
"""Decoded topic names kept: devices publish to the same topics again and again."""
_PUBACK = struct.Struct("!BBH")


@dataclass(slots=True)
class Delivered:
    """A QoS 1 message as `BufferedClient` hands it over: the attributes of paho's `MQTTMessage` the ingester
    reads (`timestamp` is `time.monotonic()` at arrival), without what paho builds for each message."""

    topic: str
    payload: bytes
    mid: int
    dup: bool
    timestamp: float
    qos: int = 1


Received = Delivered | paho.MQTTMessage
"""A message `on_message` gets from a `BufferedClient`."""


class BufferedClient(paho.Client):
    """paho-mqtt's client with a faster read path and acknowledgements sent in one go.

    - Reads take up to `READ_CHUNK` bytes from the socket, and every packet in them is handled before the
      network thread waits again (paho: one packet per wake-up, three `recv` calls per packet).
    - With manual acks under MQTT v5, a whole QoS 1 PUBLISH without properties (what devices send) in that
      buffer goes straight to `on_message` as a `Delivered`: paho builds an `MQTTMessage` with a
      `threading.Condition`, and an MQTT v5 `Properties` object, for every one, and matches per-topic
      callbacks (which this client does not offer on that path). Every other packet, and one split across
      two reads, takes paho's own path.
    - `ack_all` queues the PUBACKs of a whole batch as one write, where `ack` queues one packet (and wakes
      the network thread) per message.

    These override private methods of paho-mqtt 2.1-2.2 (hence its pinned range); every test of
    `taosprsp.mqtt` runs through them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_position = 0
        self._topic_names: dict[bytes, str] = {}

    def reconnect(self) -> paho.MQTTErrorCode:
        self._read_buffer, self._read_position = b"", 0  # bytes of the last connection are not this one's
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_position >= len(self._read_buffer):
            chunk = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing waits: paho expects it
            if not chunk:
                return chunk  # the connection closed
            self._read_buffer, self._read_position = chunk, 0
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()  # the keepalive's measure, as paho keeps it
        start = self._read_position
        self._read_position = min(len(self._read_buffer), start + bufsize)
        return self._read_buffer[start : self._read_position]

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """Handle the packets that have arrived, until the socket has no more (or `PACKETS_PER_READ` were
        handled, so that writes get their turn) and the buffer is empty: a byte left in it would wait for
        the next packet to wake the thread."""
        direct = self._manual_ack and self._protocol == paho.MQTTv5 and self.on_message is not None
        handled = 0
        while True:
            if self._sock is None:
                return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
            if direct and self._in_packet["command"] == 0:  # between packets: the buffer starts with one
                handled += self._deliver_publishes()
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            handled += 1
            drained = self._read_position >= len(self._read_buffer)
            if drained and (rc == paho.MQTTErrorCode.MQTT_ERR_AGAIN or handled >= PACKETS_PER_READ):
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _deliver_publishes(self) -> int:
        """Hand every whole QoS 1 PUBLISH without properties at the front of the buffer to `on_message`;
        stop at any other packet, or a partial one. Returns how many were handed over."""
        buffer, position, end = self._read_buffer, self._read_position, len(self._read_buffer)
        on_message, userdata, names = self.on_message, self._userdata, self._topic_names
        arrived = time.monotonic()
        delivered = 0
        while position < end and buffer[position] & 0xF6 == paho.PUBLISH | 0x02:  # QoS 1; DUP, RETAIN any
            length, at, shift = 0, position + 1, 0
            while at < end and shift <= 21:  # the remaining length: at most 4 bytes of 7 bits
                byte = buffer[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break
            packet_end = at + length
            topic_end = at + 2 + int.from_bytes(buffer[at : at + 2], "big")
            properties_at = topic_end + 2
            if packet_end > end or properties_at >= packet_end or buffer[properties_at] != 0:
                break
            raw = buffer[at + 2 : topic_end]
            topic = names.get(raw)
            if topic is None:
                if len(names) >= MAX_TOPIC_NAMES:
                    names.clear()
                topic = names[raw] = raw.decode("utf-8", "replace")
            mid = int.from_bytes(buffer[topic_end:properties_at], "big")
            message = Delivered(
                topic, buffer[properties_at + 1 : packet_end], mid, bool(buffer[position] & 0x08), arrived
            )
            on_message(self, userdata, message)
            position = packet_end
            delivered += 1
        self._read_position = position
        return delivered

    def ack_all(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages of this connection (manual acks), in one write."""
        if mids:
            acks = b"".join(_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids)
            self._packet_queue(paho.PUBACK, acks, 0, 0)


@dataclass(frozen=True)
class BrokerOptions:
    """A broker and a login. `session_expiry` is how long the broker keeps a persistent session's
    subscriptions and unacknowledged messages while the client is away."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str = ""
    password: str = ""
    keepalive: float = 30.0
    connect_timeout: float = 10.0
    session_expiry: float = 86_400.0
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_insecure: bool = False

    @classmethod
    def from_settings(cls, settings: MqttSettings) -> BrokerOptions:
        return cls(
            url=settings.url,
            username=settings.username,
            password=settings.password,
            keepalive=settings.keepalive,
            connect_timeout=settings.connect_timeout,
            session_expiry=settings.session_expiry,
            tls_ca=settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            tls_insecure=settings.tls_insecure,
        )

    @property
    def address(self) -> tuple[str, int, bool, str, str]:
        """Host, port, TLS on, transport (`tcp` or `websockets`) and WebSocket path, from `url`."""
        parts = urlsplit(self.url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ConfigError(
                f"mqtt.url: expected mqtt://host:1883 (or mqtts://, ws://, wss://), got {self.describe()!r}"
            )
        default_port, tls, transport = SCHEMES[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError:
            raise ConfigError(f"mqtt.url: bad port in {self.describe()!r}") from None
        return parts.hostname, port, tls, transport, parts.path or "/mqtt"

    def login(self) -> tuple[str, str]:
        """User and password: from the options, else from the URL."""
        parts = urlsplit(self.url)
        return self.username or unquote(parts.username or ""), self.password or unquote(parts.password or "")

    def describe(self) -> str:
        """The URL with any password masked, for messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        return self.url.replace(f":{parts.password}@", ":****@", 1)


def _connect_properties(session_expiry: float, receive_maximum: int) -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = min(int(session_expiry), 0xFFFFFFFF)
    properties.ReceiveMaximum = max(1, min(receive_maximum, MAX_RECEIVE))
    return properties


def connect(
    options: BrokerOptions,
    client_id: str,
    *,
    persistent: bool,
    manual_ack: bool = False,
    receive_maximum: int = MAX_RECEIVE,
    prepare: Callable[[paho.Client], None] | None = None,
    on_connected: Callable[[paho.Client, bool, Any], None] | None = None,
) -> BufferedClient:
    """A paho-mqtt client connected to the broker, its network loop running on its own thread.

    `persistent` keeps the session (subscriptions and unacknowledged messages) on the broker for
    `session_expiry` seconds after the client goes, under a fixed `client_id`; a new connection then
    resumes it. `prepare(client)` sets callbacks before anything can arrive; `on_connected(client,
    session_present, connack_properties)` runs on every (re)connect, before any message of that connection
    is handed over. Waits for the broker's answer; an unreachable broker or a refused login is a
    TaosprspError.
    """
    host, port, tls, transport, path = options.address
    client = BufferedClient(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        transport=transport,
        manual_ack=manual_ack,  # type: ignore[arg-type]
    )
    if transport == "websockets":
        client.ws_set_options(path=path)
    user, password = options.login()
    if user:
        client.username_pw_set(user, password or None)
    if tls:
        client.tls_set(
            ca_certs=options.tls_ca or None,
            certfile=options.tls_cert or None,
            keyfile=options.tls_key or None,
            cert_reqs=ssl.CERT_NONE if options.tls_insecure else ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(options.tls_insecure)
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refusal.append(str(reason))
        elif on_connected is not None:
            on_connected(client, flags.session_present, properties)
        answered.set()

    client.on_connect = on_connect
    if prepare is not None:
        prepare(client)
    client.reconnect_delay_set(1, 8)
    try:
        client.connect(
            host,
            port,
            keepalive=max(1, int(options.keepalive)),
            clean_start=not persistent,
            properties=_connect_properties(options.session_expiry if persistent else 0, receive_maximum),
        )
    except (OSError, ssl.SSLError) as exc:
        raise TaosprspError(
            f"MQTT broker at {options.describe()} is unreachable: {exc}; start it or fix mqtt.url",
            ExitCode.UNREACHABLE,
        ) from None
    client.loop_start()
    if not answered.wait(options.connect_timeout) or refusal:
        client.loop_stop()
        client.disconnect()
        why = (
            f"refused the connection: {refusal[0]}"
            if refusal
            else f"did not answer within {options.connect_timeout:g} s"
        )
        raise TaosprspError(f"MQTT broker at {options.describe()} {why}", ExitCode.UNREACHABLE)
    return client


def disconnect(client: paho.Client, timeout: float = 5.0) -> None:
    """Send what is queued (acknowledgements first), say goodbye and stop the network thread."""
    gone = threading.Event()
    client.on_disconnect = lambda *args: gone.set()
    if client.is_connected():
        client.disconnect()
        gone.wait(timeout)
    client.loop_stop()
