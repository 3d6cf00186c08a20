"""Which Perspective requests a client may send, read from the protobuf bytes, and refusals as answers.

perspective-python 4.3 has no read-only switch: a session executes whatever its client asks, including
`Table.update`, `Table.clear` and `Table.delete` on the tables `serve` feeds. `GuardedSession` sits in
front of a session, reads each request's kind from the wire and answers the ones a viewer has no business
sending with a `ServerError` for that request id, so the client's call fails cleanly and the connection
stays up.

The message layout is `perspective.proto` of perspective-dev/perspective v4.3.0
(rust/perspective-client/perspective.proto): `Request { uint32 msg_id = 1; string entity_id = 2;
oneof client_req { ... } }` and `Response { ...; ServerError server_error = 50; }`. Only the top level
is read: the request kind is the field number of the `oneof` member.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

MSG_ID_FIELD = 1
ENTITY_ID_FIELD = 2
SERVER_ERROR_FIELD = 50

# Field number -> request kind, every member of `Request.client_req` in perspective.proto v4.3.0.
# VIEWING is what reading and viewing need; each entry says why it cannot change a hosted table.
# The browser dashboard was measured to send 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 21 and 24.
VIEWING: dict[int, str] = {
    3: "get_features_req",  # which features (group_by, filters...) the server offers
    4: "get_hosted_tables_req",  # table names; `open_table` is answered from it
    37: "remove_hosted_tables_update_req",  # ends the client's own hosted-tables subscription
    5: "table_make_port_req",  # the viewer asks for one; a port only labels the source of later updates
    6: "table_make_view_req",  # a view is the client's own query over a table
    7: "table_schema_req",
    8: "table_size_req",
    9: "table_validate_expr_req",  # the viewer's expression editor; nothing is stored
    10: "view_column_paths_req",
    11: "view_delete_req",  # frees a view, not a table
    12: "view_dimensions_req",
    13: "view_expression_schema_req",
    14: "view_get_config_req",
    15: "view_schema_req",
    16: "view_to_arrow_req",
    17: "server_system_info_req",  # the engine's heap size and CPU time
    18: "view_collapse_req",  # 18, 19, 23: tree state of the client's own view
    19: "view_expand_req",
    20: "view_get_min_max_req",
    21: "view_on_update_req",  # a subscription: answered on every table update, never on its own
    22: "view_remove_on_update_req",
    23: "view_set_depth_req",
    24: "view_to_columns_string_req",
    25: "view_to_csv_req",
    26: "view_to_rows_string_req",
    36: "view_to_ndjson_string_req",
    29: "table_on_delete_req",  # 29, 30, 34, 35: being told a table or view went away
    30: "table_remove_delete_req",
    34: "view_on_delete_req",
    35: "view_remove_delete_req",
}

# Requests that create a table or change or delete a hosted one: refused unless clients may write.
WRITING: dict[int, str] = {
    27: "make_table_req",  # `Client.table`: a new hosted table (server memory, and a name others may open)
    28: "table_delete_req",  # `Table.delete`: the feed and /api/stats break until restart
    31: "table_remove_req",  # `Table.remove`: drops rows by index
    32: "table_replace_req",  # `Table.replace`, and `Table.clear` (a replace with no rows)
    33: "table_update_req",  # `Table.update`: writes rows
}

REQUEST_KINDS: dict[int, str] = {**VIEWING, **WRITING}


class MalformedRequest(ValueError):
    """Bytes that are not a Perspective `Request` (a real client never sends them)."""


@dataclass(frozen=True)
class Request:
    """The top level of one request: its id, the table or view it addresses, and its kind(s)."""

    msg_id: int
    entity_id: str
    kinds: tuple[int, ...]

    @property
    def names(self) -> str:
        """The kinds as perspective.proto names them, for messages and logs."""
        if not self.kinds:
            return "an empty request"
        return ", ".join(REQUEST_KINDS.get(kind, f"unknown request field {kind}") for kind in self.kinds)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedRequest("truncated or overlong varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def parse_request(data: bytes) -> Request:
    """Read `msg_id`, `entity_id` and every other top-level field number of a `Request`.

    Protobuf decoders keep the last of repeated fields and of `oneof` members, so a message naming
    several kinds keeps them all here: the guard refuses it unless every one is allowed.
    """
    msg_id, entity_id, kinds = 0, b"", []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise MalformedRequest("field number 0")
        if wire_type == 0:
            value, position = _varint(data, position)
            if field == MSG_ID_FIELD:
                msg_id = value & 0xFFFFFFFF
                continue
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise MalformedRequest("truncated field")
            if field == ENTITY_ID_FIELD:
                entity_id = data[position : position + length]
            position += length
            if field == ENTITY_ID_FIELD:
                continue
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
            if position > len(data):
                raise MalformedRequest("truncated field")
        else:
            raise MalformedRequest(f"wire type {wire_type}")
        kinds.append(field)
    try:
        entity = entity_id.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("entity_id is not UTF-8") from exc
    return Request(msg_id, entity, tuple(kinds))


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


def refusal(request: Request, message: str) -> bytes:
    """A `Response` carrying `ServerError{message}` for `request`: the client's call raises `message`."""
    server_error = _length_delimited(1, message.encode("utf-8"))  # status_code SERVER_ERROR = 0 is the default
    response = _encode_varint(MSG_ID_FIELD << 3) + _encode_varint(request.msg_id)
    if request.entity_id:
        response += _length_delimited(ENTITY_ID_FIELD, request.entity_id.encode("utf-8"))
    return response + _length_delimited(SERVER_ERROR_FIELD, server_error)


def read_only_refusal(request: Request) -> str:
    """What a refused client is told."""
    return (
        f"refused {request.names}: this taosprsp server is read-only for its clients "
        "(its operator can set server.clients_can_write = true)"
    )


class Session(Protocol):
    """What perspective's `Server.new_session` returns (`PySession`)."""

    def handle_request(self, message: bytes) -> None: ...

    def close(self) -> None: ...


class GuardedSession:
    """A Perspective session that executes viewing requests and answers writing ones with an error.

    `send_response` must be the callback the wrapped session was created with: refusals travel the
    same way as answers. With `clients_can_write` every request passes, as with a bare session.
    `peer` names the client in log lines.
    """

    def __init__(
        self, session: Session, send_response: Callable[[bytes], None], clients_can_write: bool, peer: str
    ) -> None:
        self._session = session
        self._send_response = send_response
        self._clients_can_write = clients_can_write
        self._peer = peer
        self._closed = False
        self._logged: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def handle_request(self, message: bytes) -> None:
        """Execute, or refuse with a `ServerError`; raises `MalformedRequest` for bytes that are no request."""
        if self._closed:
            return
        if self._clients_can_write:
            self._session.handle_request(message)
            return
        request = parse_request(message)
        if request.kinds and all(kind in VIEWING for kind in request.kinds):
            self._session.handle_request(message)
            return
        with self._lock:
            first = request.kinds not in self._logged
            self._logged.add(request.kinds)
        if first:  # once per kind and client: a looping client must not flood the log
            logger.warning(
                "refused %s on %r from %s (clients are read-only)", request.names, request.entity_id, self._peer
            )
        self._send_response(refusal(request, read_only_refusal(request)))

    def close(self) -> None:
        self._closed = True
        self._session.close()
