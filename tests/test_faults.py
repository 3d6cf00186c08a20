"""Store faults split into what a reconnect can cure and what it cannot, with TDengine's code and words.

Connection faults come from the real driver here: taosws connecting to a closed port, to a peer that resets
the connection, and to an HTTP server that is not taosAdapter. Server-side faults cannot be produced without
a server, so their texts are quoted from a real TDengine 3.3.7.5 run (issue 10, ../shared/TDENGINE.md) and
from TDengine's error-code reference (docs/en/14-reference/09-error-code.md in taosdata/TDengine); each test
names its source.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import taosws

from taosprsp.errors import StoreError, StoreUnreachable
from taosprsp.stores.faults import classify, error_code, server_message

# taosws retries a refused connection 5 times with backoff unless told otherwise
QUICK = "conn_retries=1&retry_backoff_ms=50&retry_backoff_max_ms=100"

# A peer that accepts and resets at once. It runs in its own process: taosws holds the GIL while it
# connects, so a listener thread in this process would never get to accept.
RESETTING_PEER = """
import socket, struct
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""

# An HTTP server that answers the WebSocket upgrade with 404, as a wrong port or path would.
REFUSING_HTTP_PEER = """
import socket
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
    conn.close()
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def driver_error(dsn: str) -> BaseException:
    try:
        taosws.connect(dsn)
    except taosws.Error as exc:
        return exc
    raise AssertionError(f"taosws connected to {dsn}")


@contextmanager
def peer(script: str) -> Iterator[int]:
    """Run a listener script in its own process; yields the port it prints."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        yield int(process.stdout.readline())  # type: ignore[union-attr]
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_refused_connection_is_a_connection_fault_with_the_drivers_code() -> None:
    exc = driver_error(f"ws://root:taosdata@127.0.0.1:{closed_port()}?{QUICK}")
    fault = classify(exc)
    assert isinstance(exc, taosws.ConnectionError)
    assert (fault.kind, fault.code, fault.retryable) == ("connection", 0xE001, True)
    assert fault.message.startswith("WebSocket internal error: IO error: Connection refused")


def test_a_connection_reset_by_the_peer_is_a_connection_fault() -> None:
    with peer(RESETTING_PEER) as port:
        fault = classify(driver_error(f"ws://root:taosdata@127.0.0.1:{port}?{QUICK}"))
    assert fault.kind == "connection" and fault.code == 0xE001
    assert "reset by peer" in fault.message


def test_an_http_server_that_is_not_taosadapter_is_permanent() -> None:
    with peer(REFUSING_HTTP_PEER) as port:
        fault = classify(driver_error(f"ws://root:taosdata@127.0.0.1:{port}?{QUICK}"))
    assert fault.kind == "permanent" and fault.code == 0xE001
    assert "HTTP error: 404" in fault.message


def test_a_consumer_that_cannot_connect_is_a_connection_fault() -> None:
    conf = {
        "td.connect.websocket.scheme": "ws",
        "td.connect.ip": "127.0.0.1",
        "td.connect.port": str(closed_port()),
        "group.id": "taosprsp-test-faults",
        "conn_retries": "1",
    }
    with pytest.raises(taosws.ConsumerException) as raised:
        taosws.Consumer(conf=conf)
    assert classify(raised.value).kind == "connection"


def test_a_malformed_dsn_is_permanent_though_the_driver_calls_it_a_connection_error() -> None:
    exc = driver_error("not a dsn")
    assert isinstance(exc, taosws.ConnectionError)
    fault = classify(exc)
    assert (fault.kind, fault.code) == ("permanent", None)
    assert fault.message.startswith("No `:` found in not a dsn")


def test_the_fault_is_found_through_the_stores_wrapping_error() -> None:
    exc = driver_error(f"ws://root:taosdata@127.0.0.1:{closed_port()}?{QUICK}")
    try:
        raise StoreError(f"TDengine refused a batch of 100 rows: {exc}") from exc
    except StoreError as wrapped:
        fault = classify(wrapped)
    assert (fault.kind, fault.code) == ("connection", 0xE001)
    assert str(fault).startswith("[0xE001] WebSocket internal error: IO error: Connection refused")


def test_an_unreachable_store_without_a_code_is_a_connection_fault() -> None:
    # the words open_store uses when the port check fails, before any driver call
    fault = classify(
        StoreUnreachable("TDengine at ws://root:****@10.0.0.9:6041 is unreachable: start it (taosprsp db up)")
    )
    assert fault.kind == "connection" and fault.code is None


def test_a_schemaless_type_mismatch_is_permanent_with_the_servers_message() -> None:
    # as the real 3.3.7.5 server answered a JSON write after a telnet write (issue 10, ../shared/TDENGINE.md)
    text = "[0x3002] SML … point type and db type mismatch, db type:NCHAR, point type:DOUBLE, key:groupid"
    fault = classify(StoreError(f"TDengine refused 20000 json lines: {text}"))
    assert (fault.kind, fault.code, fault.retryable) == ("permanent", 0x3002, False)
    assert fault.message == "SML … point type and db type mismatch, db type:NCHAR, point type:DOUBLE, key:groupid"


@pytest.mark.parametrize(
    "text",
    [
        # ../shared/TDENGINE.md: more than 32,767 rows of one subtable in one stmt2 bind
        "[0x0236] bind number out of range or not match",
        # issue 10: DROP TOPIC right after consumer.close()
        "[0x03EB] Internal error: Topic subscribed cannot be dropped",
        # issue 10 and ../shared/TDENGINE.md: a fifth database with 2 vgroups on a 9-vnode server
        "[0x03BA] Vnodes exhausted",
        # error-code reference, parser: a table that does not exist
        "[0x2603] Table does not exist",
        # error-code reference, mnode: a wrong password
        "[0x0357] Authentication failure",
    ],
)
def test_data_schema_and_privilege_errors_are_permanent(text: str) -> None:
    fault = classify(StoreError(f"TDengine refused a batch of 10 rows: {text}"))
    assert fault.kind == "permanent" and fault.code == error_code(text)


@pytest.mark.parametrize(
    "text",
    [
        # error-code reference, rpc: the native client's full code keeps its low four digits over WebSocket
        "[0x8000000B] Unable to establish connection",
        "[0x0018] Conn is broken",
        "[0x0019] Conn read timeout",
        "[0x0213] Disconnected from server",
        # error-code reference, common: a server restarting
        "[0x0130] Database is starting up",
    ],
)
def test_network_and_startup_errors_are_connection_faults(text: str) -> None:
    assert classify(StoreError(f"TDengine refused a batch of 10 rows: {text}")).kind == "connection"


def test_tls_spoken_to_a_plain_server_is_permanent() -> None:
    # what taosws 0.7.0 reported here after Python's http.server answered its upgrade with HTTP/1.0 404
    text = (
        "[0xE001] Internal error: `WebSocket internal error: IO error: "
        "received corrupt message of type InvalidContentType`"
    )
    wrapped = StoreUnreachable(f"TDengine at ws://root:****@127.0.0.1:8000 did not answer: {text}")
    assert classify(wrapped).kind == "permanent"


def test_a_message_without_a_code_is_judged_by_its_words() -> None:
    # ../shared/TDENGINE.md: stmt2 prepared without a current database
    assert classify(StoreError("TDengine refused a batch of 10 rows: db is not specified")).kind == "permanent"
    # the embedded store's stand-in for an outage in tests/test_produce.py
    assert classify(StoreError("connection reset by peer")).kind == "connection"


def test_server_message_drops_code_prefix_and_quoting() -> None:
    assert server_message("[0xE001] Internal error: `WebSocket internal error: HTTP error: 404 Not Found`") == (
        "WebSocket internal error: HTTP error: 404 Not Found"
    )
