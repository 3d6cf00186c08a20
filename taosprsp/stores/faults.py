"""Which store errors a reconnect can cure: the split behind produce's retries.

taos-ws-py raises `taosws.Error` subclasses (and, on some faults, pyo3's PanicException, a BaseException)
whose text carries TDengine's error code in brackets: `[0x3002] ...`. Over WebSocket only the low four hex
digits of the code are kept (TDengine's error-code reference says so); a native client reports
`0x80003002`, which names the same error. The stores wrap driver errors in `StoreError` raised `from` the
driver's exception, so the code is looked for along the `__cause__` chain.

A fault is `connection` when the same write can succeed over a new connection a little later (refused,
reset or closed connections, timeouts, a server starting up or electing a leader), and `permanent`
otherwise (data that does not fit the schema, a syntax error, missing privileges or tables, a wrong
password): retrying a permanent fault only delays its message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from taosprsp.errors import StoreUnreachable

FaultKind = Literal["connection", "permanent"]

# TDengine's codes, low four hex digits (docs/en/14-reference/09-error-code.md in taosdata/TDengine, and
# WS_ERROR_NO in taos-ws of taosdata/taos-connector-rust for the 0xE0xx WebSocket client codes).
CONNECTION_CODES = frozenset(
    {
        0x000B,  # Unable to establish connection
        0x0018,  # Conn is broken
        0x0019,  # Conn read timeout
        0x0020,  # some vnode/qnode/mnode(s) out of service
        0x0021,  # some vnode/qnode/mnode(s) conn is broken
        0x0023,  # RPC network error
        0x0024,  # RPC network bus
        0x0125,  # Retry needed
        0x0130,  # Database is starting up
        0x0213,  # Disconnected from server
        0x03D3,  # Conflict transaction not completed
        0x03EA,  # Consumer not ready
        0x03EF,  # Topic being rebalanced
        0x090C,  # Sync leader is unreachable
        0x0911,  # Sync not ready to propose
        0x0914,  # Sync leader is restoring
        0xE001,  # WebSocket error
        0xE002,  # connection closed
        0xE003,  # send message timeout
        0xE004,  # receive message timeout
        0xE005,  # IO error
        0xE008,  # WebSocket disconnected
    }
)

# Without a code, the driver's or the OS's own words for a connection that failed or went away.
_CONNECTION_WORDS = re.compile(
    r"connection refused|connection reset|reset by peer|broken pipe|timed out|timeout"
    r"|connection (?:was already )?closed|websocket has been closed|not connected|disconnected"
    r"|unreachable|os error (?:32|104|110|111|113)\b"
    # SQLite (the embedded store): another process holds the write lock for a moment
    r"|database is locked",
    re.IGNORECASE,
)
# Something answers at the address but it is not taosAdapter: an HTTP refusal instead of a WebSocket upgrade
# (wrong port or path), or TLS where plain WebSocket was expected and the reverse (rustls' words). Reconnecting
# to the same address gets the same answer.
_WRONG_PEER = re.compile(r"HTTP error: 4\d\d|InvalidContentType|certificate", re.IGNORECASE)
_CODE = re.compile(r"\[0x([0-9A-Fa-f]{4,8})\]")
_GENERIC_PREFIX = re.compile(r"^(?:Internal error:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Fault:
    """A store error as produce acts on it: its kind, TDengine's code when there is one, and the server's words."""

    kind: FaultKind
    code: int | None
    message: str

    @property
    def retryable(self) -> bool:
        """Whether retrying on a new connection can succeed."""
        return self.kind == "connection"

    def __str__(self) -> str:
        return f"[0x{self.code:04X}] {self.message}" if self.code is not None else self.message


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def server_message(text: str) -> str:
    """The server's words in a driver's error text: without the code, the generic prefix and the quoting."""
    match = _CODE.search(text)
    words = text[match.end() :] if match else text
    words = _GENERIC_PREFIX.sub("", words.strip())
    return words.strip().strip("`").strip()


def error_code(text: str) -> int | None:
    """TDengine's code in an error text (low four hex digits), or None."""
    match = _CODE.search(text)
    return int(match.group(1), 16) & 0xFFFF if match else None


def classify(exc: BaseException) -> Fault:
    """The fault behind `exc`: a driver exception, or a project error raised from one.

    A code decides when one is present anywhere in the chain; otherwise `StoreUnreachable`, or the words
    of the innermost error.
    """
    chain = _chain(exc)
    for link in chain:
        text = str(link)
        code = error_code(text)
        if code is None:
            continue
        message = server_message(text)
        if code in CONNECTION_CODES and not _WRONG_PEER.search(message):
            return Fault("connection", code, message)
        return Fault("permanent", code, message)
    innermost = str(chain[-1])
    message = server_message(innermost)
    if _WRONG_PEER.search(innermost):
        return Fault("permanent", None, message)
    if any(isinstance(link, StoreUnreachable) for link in chain) or _CONNECTION_WORDS.search(innermost):
        return Fault("connection", None, message)
    return Fault("permanent", None, message)
