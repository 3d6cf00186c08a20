"""Issue 13, access to served data: origin, token, read-only clients, per-client limits, static files.

Every test talks to a real Tornado application on 127.0.0.1 holding a real perspective.Server, through
Tornado's WebSocket client and perspective's AsyncClient, as a browser or a script would: first the
access package's parts on their own, then the same defences through the real `serve` (LiveServer, the CLI).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import perspective
import pyarrow as pa
import pytest
import tornado.web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import cli_env, start_producer, wait_until
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from typer.testing import CliRunner

from taosprsp.access import (
    VIEWER_FILES,
    AccessControlled,
    AccessPolicy,
    GuardedPerspectiveHandler,
    application_settings,
    check_exposure,
    may_serve,
    tls_context,
)
from taosprsp.access.protocol import REQUEST_KINDS, VIEWING, WRITING, parse_request
from taosprsp.cli import app as cli
from taosprsp.client import fetch_table
from taosprsp.config import Config, as_dict, load_config
from taosprsp.datasets import METERS
from taosprsp.errors import ConfigError
from taosprsp.lifecycle import stop_processes
from taosprsp.seed import seed
from taosprsp.serve import LiveServer, served_access
from taosprsp.stores import open_store
from taosprsp.web import DashboardFiles, missing_assets, page_origin, viewer_dir

VIEWER = Path(__file__).resolve().parent.parent / "viewer"
TOKEN = "test-token-0123456789abcdef"
TABLE = "meters"
ROWS = 100_000
MB = 1024 * 1024


def policy(**overrides) -> AccessPolicy:
    settings = {"bind_host": "127.0.0.1", "max_client_queue_bytes": 64 * MB, "max_pending_requests": 256, **overrides}
    return AccessPolicy(**settings)


def meters(rows: int) -> bytes:
    """`rows` rows as Arrow IPC: ~20 bytes a row, so a full `to_arrow` answer is ~2 MB."""
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "current": np.random.default_rng(1).random(rows) * 20,
            "location": pa.array(np.array(["north", "south", "east", "west"])[np.arange(rows) % 4]),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class Stats(AccessControlled):
    """Stands in for `/api/stats`: any JSON handler behind the policy."""

    def get(self) -> None:
        self.write({"ok": True})


@dataclass
class Served:
    """A running application: its port and the server-side table (through a local client)."""

    port: int
    server: perspective.Server
    table: perspective.Table
    scheme: str = "http"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def websocket(self) -> str:
        return f"{self.scheme.replace('http', 'ws')}://127.0.0.1:{self.port}/websocket"


@contextmanager
def serving(
    access: AccessPolicy,
    rows: int = 1000,
    executor: ThreadPoolExecutor | None = None,
    ssl_options: ssl.SSLContext | None = None,
) -> Iterator[Served]:
    """A Tornado application on a free port, on its own IOLoop thread, as `serve` runs it."""
    server = perspective.Server()
    table = server.new_local_client().table(meters(rows), index="id", name=TABLE)
    executor = executor or ThreadPoolExecutor(max_workers=2)
    started = threading.Event()
    state: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application(
            [
                (r"/websocket", GuardedPerspectiveHandler, {"perspective_server": server, "executor": executor}),
                (r"/api/stats", Stats),
                (r"/(.*)", DashboardFiles, {"path": str(VIEWER), "default_filename": "index.html"}),
            ],
            websocket_max_message_size=64 * MB,
            **application_settings(access),
        )
        http = app.listen(0, address="127.0.0.1", ssl_options=ssl_options)
        state.update(loop=loop, http=http, port=next(iter(http._sockets.values())).getsockname()[1])
        started.set()
        loop.run_forever()
        http.stop()
        loop.close()

    thread = threading.Thread(target=run, name="access-test-server", daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield Served(state["port"], server, table, "https" if ssl_options else "http")
    finally:
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)
        executor.shutdown(wait=False, cancel_futures=True)


@asynccontextmanager
async def perspective_client(
    url: str, headers: dict[str, str] | None = None, **options
) -> AsyncIterator[perspective.AsyncClient]:
    """An AsyncClient over a Tornado WebSocket (as taosprsp.client.connect), with request headers."""
    connection = await websocket_connect(
        HTTPRequest(url, headers=headers or {}, **options), ping_interval=None, max_message_size=1 << 30
    )

    async def send(message: bytes) -> None:
        await connection.write_message(message, binary=True)

    client = perspective.AsyncClient(send)

    async def read() -> None:
        while (message := await connection.read_message()) is not None:
            await client.handle_response(message)

    reader = asyncio.ensure_future(read())
    try:
        yield client
    finally:
        connection.close()
        reader.cancel()


async def handshake_status(url: str, headers: dict[str, str]) -> int:
    """101 when the WebSocket opens, else the HTTP status that refused it."""
    try:
        connection = await websocket_connect(HTTPRequest(url, headers=headers), ping_interval=None)
    except HTTPClientError as exc:
        return exc.code
    connection.close()
    return 101


async def http_get(url: str, **options) -> tuple[int, dict[str, str], bytes]:
    response = await AsyncHTTPClient().fetch(url, raise_error=False, follow_redirects=False, **options)
    return response.code, dict(response.headers), response.body


async def until(predicate) -> None:
    """Return once `predicate()` holds; callers bound the wait with `asyncio.wait_for`."""
    while not predicate():
        await asyncio.sleep(0.02)


# --- origin ---------------------------------------------------------------------------------------------


def test_cross_origin_websocket_is_refused() -> None:
    with serving(policy()) as served:
        assert asyncio.run(handshake_status(served.websocket, {"Origin": "http://evil.example"})) == 403
        assert asyncio.run(handshake_status(served.websocket, {"Origin": "http://127.0.0.1:1"})) == 403


def test_same_origin_and_allowed_origins_and_scripts_without_origin_may_connect() -> None:
    with serving(policy(allowed_origins=("https://Dashboards.example.com:8443/",))) as served:
        assert asyncio.run(handshake_status(served.websocket, {"Origin": served.origin})) == 101
        assert asyncio.run(handshake_status(served.websocket, {"Origin": "https://dashboards.example.com:8443"})) == 101
        assert asyncio.run(handshake_status(served.websocket, {})) == 101


def test_page_of_a_rebound_host_name_is_refused_without_a_token() -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 is same-origin with itself; its Host header gives it away."""
    rebound = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
    with serving(policy()) as served:
        assert asyncio.run(handshake_status(served.websocket, rebound)) == 403
        assert asyncio.run(http_get(f"{served.origin}/api/stats", headers={"Host": "evil.example:8080"}))[0] == 403
        assert asyncio.run(handshake_status(served.websocket, {"Host": f"localhost:{served.port}"})) == 101


# --- read-only clients ----------------------------------------------------------------------------------


def test_same_origin_client_views_the_table_and_gets_updates() -> None:
    with serving(policy()) as served:

        async def view() -> tuple[int, int, int]:
            async with perspective_client(served.websocket, {"Origin": served.origin}) as client:
                assert TABLE in await client.get_hosted_table_names()
                table = await client.open_table(TABLE)
                view = await table.view(columns=["current"], group_by=["location"], aggregates={"current": "avg"})
                updated = asyncio.Event()
                await view.on_update(lambda *_: updated.set())
                arrow = pa.ipc.open_stream(await view.to_arrow()).read_all()
                served.table.update({"id": [ROWS + 1], "current": [1.0], "location": ["north"]})
                await asyncio.wait_for(updated.wait(), 10)
                size = await table.size()
                await view.delete()
                return arrow.num_rows, len(await table.schema()), size

        assert asyncio.run(view()) == (5, 3, 1001)  # four groups and the total; three columns; one more row


WRITES = {
    "update": lambda client, table: table.update({"id": [0], "current": [99999.0], "location": ["HACKED"]}),
    "clear": lambda client, table: table.clear(),
    "replace": lambda client, table: table.replace({"id": [1], "current": [1.0], "location": ["x"]}),
    "remove": lambda client, table: table.remove([0, 1, 2]),
    "delete": lambda client, table: table.delete(),
    "create a table": lambda client, table: client.table({"x": [1]}, name="planted"),
}


@pytest.mark.parametrize("write", list(WRITES), ids=list(WRITES))
def test_writing_requests_are_refused_with_an_error_and_the_table_is_unchanged(write: str) -> None:
    with serving(policy()) as served:
        before = served.table.view().to_arrow()

        async def attempt() -> tuple[str, int]:
            async with perspective_client(served.websocket, {"Origin": served.origin}) as client:
                table = await client.open_table(TABLE)
                with pytest.raises(perspective.PerspectiveError) as refused:
                    await asyncio.wait_for(WRITES[write](client, table), 10)
                return str(refused.value), await table.size()  # the connection still answers

        message, size_after = asyncio.run(attempt())
        assert "read-only" in message and "server.clients_can_write" in message
        assert size_after == 1000
        assert served.table.view().to_arrow() == before
        assert served.server.new_local_client().get_hosted_table_names() == [TABLE]


def test_a_write_smuggled_into_a_reading_request_is_refused() -> None:
    """Protobuf keeps the last `oneof` member: a size request followed by an update field is an update."""
    columns = b'{"id": [0], "current": [5.0]}'
    data = b"\x2a" + bytes([len(columns)]) + columns  # MakeTableData.from_cols (5)
    update = b"\x0a" + bytes([len(data)]) + data  # TableUpdateReq.data (1)
    smuggled = (
        b"\x08\x07"  # msg_id 7
        + b"\x12"
        + bytes([len(TABLE)])
        + TABLE.encode()  # entity_id
        + b"\x42\x00"  # table_size_req (8), empty
        + b"\x8a\x02"
        + bytes([len(update)])
        + update
    )  # table_update_req (33)
    assert parse_request(smuggled).kinds == (8, 33)
    with serving(policy()) as served:
        before = served.table.view().to_arrow()

        async def send() -> bytes:
            connection = await websocket_connect(served.websocket, ping_interval=None)
            await connection.write_message(smuggled, binary=True)
            answer = await asyncio.wait_for(connection.read_message(), 10)
            connection.close()
            return answer

        answer = asyncio.run(send())
        assert b"refused table_size_req, table_update_req" in answer and answer.startswith(b"\x08\x07")
        assert served.table.view().to_arrow() == before


def test_clients_can_write_restores_writing() -> None:
    with serving(policy(clients_can_write=True)) as served:

        async def write() -> None:
            async with perspective_client(served.websocket) as client:
                table = await client.open_table(TABLE)
                await table.update({"id": [5000], "current": [1.0], "location": ["x"]})
                await client.table({"x": [1]}, name="planted")

        asyncio.run(write())
        assert served.table.size() == 1001
        assert sorted(served.server.new_local_client().get_hosted_table_names()) == [TABLE, "planted"]


def test_every_request_kind_of_the_protocol_is_decided() -> None:
    """perspective.proto v4.3.0 numbers `Request.client_req` 3..37: each is either viewing or writing."""
    assert sorted(REQUEST_KINDS) == list(range(3, 38))
    assert not set(VIEWING) & set(WRITING)
    assert set(WRITING.values()) == {
        "make_table_req",
        "table_delete_req",
        "table_remove_req",
        "table_replace_req",
        "table_update_req",
    }


# --- token ----------------------------------------------------------------------------------------------


def test_token_is_required_when_configured_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    wrong = "wrong-token-zyxwvutsrqponm"
    with serving(policy(token=TOKEN)) as served:
        ws, same_origin = served.websocket, {"Origin": served.origin}
        assert asyncio.run(handshake_status(ws, {})) == 401
        assert asyncio.run(handshake_status(ws, same_origin)) == 401
        assert asyncio.run(handshake_status(f"{ws}?token={wrong}", {})) == 401
        assert asyncio.run(handshake_status(f"{ws}?token={TOKEN}", {})) == 101
        assert asyncio.run(handshake_status(ws, {**same_origin, "Cookie": f"taosprsp_token={TOKEN}"})) == 101
        assert asyncio.run(handshake_status(ws, {"Authorization": f"Bearer {TOKEN}"})) == 101
        assert asyncio.run(handshake_status(f"{ws}?token={TOKEN}", {"Origin": "http://evil.example"})) == 403

        async def size_with_query_token() -> int:
            async with perspective_client(f"{ws}?token={TOKEN}") as client:
                return await (await client.open_table(TABLE)).size()

        assert asyncio.run(size_with_query_token()) == 1000
        assert asyncio.run(http_get(f"{served.origin}/api/stats"))[0] == 401
        assert asyncio.run(http_get(f"{served.origin}/api/stats?token={TOKEN}"))[0] == 200
        assert asyncio.run(http_get(f"{served.origin}/index.html"))[0] == 401
    logged = caplog.text
    assert "no valid token" in logged and "/websocket" in logged
    assert TOKEN not in logged and wrong not in logged


def test_page_opened_with_the_token_sets_a_cookie_and_drops_it_from_the_address() -> None:
    with serving(policy(token=TOKEN)) as served:
        status, headers, _ = asyncio.run(http_get(f"{served.origin}/?token={TOKEN}&theme=dark"))
        assert status == 303 and headers["Location"] == "/?theme=dark"
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"taosprsp_token={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        status, _, body = asyncio.run(http_get(f"{served.origin}/", headers={"Cookie": f"taosprsp_token={TOKEN}"}))
        assert status == 200 and b"<title>taosprsp dashboard</title>" in body


def test_binding_beyond_loopback_needs_a_token_unless_insecure() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert check_exposure(host, "", insecure=False) is None
    for host in ("0.0.0.0", "", "192.168.1.20", "::", "dashboards.example.com"):
        with pytest.raises(ConfigError) as refused:
            check_exposure(host, "", insecure=False)
        assert all(
            name in str(refused.value) for name in ("server.token", "TAOSPRSP_SERVER_TOKEN", "--token", "--insecure")
        )
        assert check_exposure(host, TOKEN, insecure=False) is None
        assert "without a token" in check_exposure(host, "", insecure=True)


def test_policy_refuses_weak_tokens_and_non_origins() -> None:
    with pytest.raises(ConfigError, match="server.token must be at least 16"):
        policy(token="short")
    with pytest.raises(ConfigError, match="server.token may only hold"):
        policy(token="a token; with spaces and more")
    with pytest.raises(ConfigError, match="server.allowed_origins"):
        policy(allowed_origins=("dashboards.example.com",))
    assert TOKEN not in repr(policy(token=TOKEN))


# --- per-client limits ----------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_non_reading_client_is_cut_off_at_its_cap_while_an_honest_one_keeps_getting_updates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the cap the flood below queues ~300 answers of ~2 MB each (about 600 MB) for one client."""
    caplog.set_level(logging.WARNING, logger="taosprsp.access")
    cap = 8 * MB
    with serving(policy(max_client_queue_bytes=cap, max_pending_requests=10_000), rows=ROWS) as served:
        updates: list[float] = []
        peak = {"rss": 0}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak["rss"] = max(peak["rss"], rss_bytes())
                time.sleep(0.005)

        def cut_off() -> bool:
            return any("server.max_client_queue_mb" in record.getMessage() for record in caplog.records)

        async def run() -> tuple[int, int]:
            async with perspective_client(served.websocket) as honest:
                honest_view = await (await honest.open_table(TABLE)).view(columns=["current"], group_by=["location"])
                await honest_view.on_update(lambda *_: updates.append(time.monotonic()))

                connection = await websocket_connect(served.websocket, ping_interval=None, max_message_size=1 << 30)

                async def send(message: bytes) -> None:
                    await connection.write_message(message, binary=True)

                greedy = perspective.AsyncClient(send)

                async def read() -> None:
                    while (message := await connection.read_message()) is not None:
                        await greedy.handle_response(message)

                reader = asyncio.ensure_future(read())
                greedy_view = await (await greedy.open_table(TABLE)).view()
                reader.cancel()  # from here on the greedy client asks and never reads
                baseline = rss_bytes()
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                asks = [asyncio.ensure_future(greedy_view.to_arrow()) for _ in range(300)]

                async def feed(first_id: int, stop) -> None:
                    row = first_id
                    while not stop():
                        served.table.update({"id": [row], "current": [1.0], "location": ["north"]})
                        row += 1
                        await asyncio.sleep(0.02)

                await asyncio.wait_for(feed(ROWS, cut_off), 20)
                sampling.set()
                sampler.join()
                seen_at_cut = len(updates)
                await asyncio.wait_for(feed(2 * ROWS, lambda: len(updates) > seen_at_cut + 3), 10)
                drained = 0
                while (await asyncio.wait_for(connection.read_message(), 10)) is not None:
                    drained += 1
                for ask in asks:
                    ask.cancel()
                assert (await honest_view.num_rows()) == 5
                return baseline, drained

        baseline, drained = asyncio.run(run())
        assert cut_off(), "the greedy client was never disconnected"
        growth = peak["rss"] - baseline
        print(
            f"RSS baseline {baseline / MB:.0f} MB, peak growth {growth / MB:.0f} MB, cap {cap / MB:.0f} MB, "
            f"greedy client drained {drained} answers"
        )
        assert growth < 200 * MB, f"serve grew by {growth / MB:.0f} MB with an {cap / MB:.0f} MB cap"
        assert drained < 300


def test_client_with_too_many_pending_requests_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taosprsp.access")
    executor = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    with serving(policy(max_pending_requests=4), executor=executor) as served:

        async def run() -> int | None:
            connection = await websocket_connect(served.websocket, ping_interval=None)

            async def send(message: bytes) -> None:
                await connection.write_message(message, binary=True)

            client = perspective.AsyncClient(send)
            answers: asyncio.Queue = asyncio.Queue()

            async def read() -> None:
                while (message := await connection.read_message()) is not None:
                    await client.handle_response(message)
                await answers.put(connection.close_code)

            reader = asyncio.ensure_future(read())
            table = await client.open_table(TABLE)
            executor.submit(busy.wait)  # the server is busy: requests wait their turn
            asks = [asyncio.ensure_future(table.size()) for _ in range(10)]
            code = await asyncio.wait_for(answers.get(), 10)
            busy.set()
            for ask in asks:
                ask.cancel()
            reader.cancel()
            return code

        assert asyncio.run(run()) == 1008
        assert any("more than 4 requests pending" in record.getMessage() for record in caplog.records)


def test_malformed_message_disconnects_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taosprsp.access")
    with serving(policy()) as served:

        async def run() -> bytes | None:
            connection = await websocket_connect(served.websocket, ping_interval=None)
            await connection.write_message(b"\x08\xff\xff", binary=True)  # a varint cut short
            return await asyncio.wait_for(connection.read_message(), 10)

        assert asyncio.run(run()) is None
        assert any("not a Perspective request" in record.getMessage() for record in caplog.records)


# --- static files ---------------------------------------------------------------------------------------


def test_only_the_files_the_page_loads_are_served() -> None:
    assets = (VIEWER / "node_modules" / "@perspective-dev").is_dir()
    with serving(policy()) as served:

        def status(path: str) -> int:
            return asyncio.run(http_get(f"{served.origin}/{path}"))[0]

        assert status("") == status("index.html") == status("dashboard.js") == status("dashboard.css") == 200
        if assets:
            assert all(status(path) == 200 for path in VIEWER_FILES)
        for path in (
            "package-lock.json",
            "package.json",
            "README.md",
            "tests/browser_check.mjs",
            "node_modules/ws/package.json",
            "node_modules/@perspective-dev/client/package.json",
            "node_modules/@perspective-dev/viewer/dist/css/pro.css",
            "node_modules/@perspective-dev/viewer/dist/cdn/perspective-viewer.js.map",
            "node_modules/../package-lock.json",
            "./dashboard.js/",
            "screenshots/dashboard.png",
        ):
            assert status(path) == 404, path


def test_allowlist_covers_every_file_the_page_and_its_script_name() -> None:
    named = set()
    for source in ("index.html", "dashboard.js"):
        named |= {
            match.removeprefix("./")
            for match in re.findall(r"""["'](\./[^"'?#]+\.(?:js|css|wasm|json))["']""", (VIEWER / source).read_text())
        }
    named.discard("dashboard.json")  # generated by the server, not a file
    assert named and all(may_serve(path) for path in named), sorted(named - VIEWER_FILES)


# --- TLS ------------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


def test_tls_serves_wss_and_marks_the_token_cookie_secure(tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certfile))
    with serving(policy(token=TOKEN), ssl_options=tls_context(str(certfile), str(keyfile))) as served:

        async def size() -> int:
            async with perspective_client(f"{served.websocket}?token={TOKEN}", ssl_options=trusted) as client:
                return await (await client.open_table(TABLE)).size()

        assert served.websocket.startswith("wss://") and asyncio.run(size()) == 1000
        _, headers, _ = asyncio.run(http_get(f"{served.origin}/?token={TOKEN}", ssl_options=trusted))
        assert "Secure" in headers["Set-Cookie"]
    assert tls_context("", "") is None
    with pytest.raises(ConfigError, match="go together"):
        tls_context(str(certfile), "")
    with pytest.raises(ConfigError, match="does not exist"):
        tls_context(str(tmp_path / "missing.pem"), str(keyfile))


# --- through `serve` ------------------------------------------------------------------------------------
# The same defences wired into the real `serve`: LiveServer (its feed, tables and routes) and the CLI.

WINDOW_WRITES = {
    "update": lambda client, table: table.update({"rid": [0], "current": [99999.0], "location": ["HACKED"]}),
    "clear": lambda client, table: table.clear(),
    "replace": lambda client, table: table.replace({"rid": [1], "current": [1.0], "location": ["x"]}),
    "remove": lambda client, table: table.remove([0, 1, 2]),
    "delete": lambda client, table: table.delete(),
    "create a table": lambda client, table: client.table({"x": [1]}, name="planted"),
}


def seeded(config: Config, rows: int) -> Config:
    with open_store(config) as store:
        seed(store, METERS, 5, "ms", rows=rows)
    return config


@contextmanager
def live(config: Config, **server: object) -> Iterator[LiveServer]:
    """The real `serve` (feed, tables, routes) on a free loopback port."""
    running = LiveServer(config.replace(server={"port": 0, "interval": "50ms", **server})).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_refuses_a_cross_origin_websocket_and_admits_its_own_page_and_listed_origins(config: Config) -> None:
    with live(config, allowed_origins=["http://127.0.0.1:8081"]) as server:
        ws = server.websocket_url
        assert asyncio.run(handshake_status(ws, {"Origin": "http://evil.example"})) == 403
        assert asyncio.run(handshake_status(ws, {"Origin": "http://127.0.0.1:8082"})) == 403
        assert asyncio.run(handshake_status(ws, {"Origin": page_origin(server.url)})) == 101
        assert asyncio.run(handshake_status(ws, {"Origin": "http://127.0.0.1:8081"})) == 101


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_lets_its_own_page_view_but_refuses_every_write_and_the_tables_stay_as_they_were(
    config: Config,
) -> None:
    with live(seeded(config, 2000)) as server:
        window_before = server.window.view().to_arrow()
        latest_before = server.latest.view().to_arrow()

        async def attempt() -> tuple[dict[str, str], int, int]:
            async with perspective_client(server.websocket_url, {"Origin": page_origin(server.url)}) as client:
                names = {config.perspective_table, config.latest_table, *server.derived.hosted}
                assert set(await client.get_hosted_table_names()) == names
                window = await client.open_table(config.perspective_table)
                view = await window.view(columns=["current"], group_by=["location"])
                grouped = pa.ipc.open_stream(await view.to_arrow()).read_all().num_rows
                refusals = {}
                for name, write in WINDOW_WRITES.items():
                    with pytest.raises(perspective.PerspectiveError) as refused:
                        await asyncio.wait_for(write(client, window), 10)
                    refusals[name] = str(refused.value)
                return refusals, grouped, await window.size()  # still connected, still answered

        refusals, grouped, size = asyncio.run(attempt())
        assert all("read-only" in message for message in refusals.values()), refusals
        assert size == 2000 and grouped > 1
        assert server.window.view().to_arrow() == window_before
        assert server.latest.view().to_arrow() == latest_before
        hosted = server.server.new_local_client().get_hosted_table_names()
        assert sorted(hosted) == sorted([config.perspective_table, config.latest_table, *server.derived.hosted])
        stats = json.loads(urllib.request.urlopen(server.url + "api/stats", timeout=5).read())
        assert stats["tables"][config.perspective_table] == 2000


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_beyond_loopback_needs_a_token_unless_insecure(config: Config) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: once past the token rule, listening fails (exit 1)."""
    env = cli_env(seeded(config, 100))
    serve = ["serve", "--host", "192.0.2.1", "--port", "0"]
    refused = CliRunner().invoke(cli, serve, env=env)
    assert refused.exit_code == 3, refused.output
    assert "serving on 192.0.2.1 needs a token" in refused.stderr and "--insecure" in refused.stderr
    insecure = CliRunner().invoke(cli, [*serve, "--insecure"], env=env)
    assert insecure.exit_code == 1 and "cannot listen on 192.0.2.1" in insecure.stderr
    assert "WARNING: --insecure: serving on 192.0.2.1 without a token" in insecure.stderr
    for way in ({"TAOSPRSP_SERVER_TOKEN": TOKEN}, {}):
        extra = [] if way else ["--token", TOKEN]
        with_token = CliRunner().invoke(cli, [*serve, *extra], env={**env, **way})
        assert with_token.exit_code == 1 and "cannot listen on 192.0.2.1" in with_token.stderr
        assert TOKEN not in with_token.output
    weak = CliRunner().invoke(cli, [*serve, "--token", "short"], env=env)
    assert weak.exit_code == 2 and "at least 16 characters" in weak.stderr


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_cuts_off_a_client_that_does_not_read_while_an_honest_one_keeps_getting_updates(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taosprsp.access")
    with live(seeded(config, 20_000), max_client_queue_mb=1, max_pending_requests=10_000) as server:
        producer = start_producer(config, "--rate", "100", "--duration", "60s", "--tables", "5")
        updates: list[int] = []

        def cut_off() -> bool:
            return any("server.max_client_queue_mb" in record.getMessage() for record in caplog.records)

        async def run() -> bool:
            async with perspective_client(server.websocket_url) as honest:
                latest = await honest.open_table(config.latest_table)
                honest_view = await latest.view()
                await honest_view.on_update(lambda *_: updates.append(1))

                connection = await websocket_connect(server.websocket_url, ping_interval=None, max_message_size=1 << 30)

                async def send(message: bytes) -> None:
                    await connection.write_message(message, binary=True)

                greedy = perspective.AsyncClient(send)

                async def read() -> None:
                    while (message := await connection.read_message()) is not None:
                        await greedy.handle_response(message)

                reader = asyncio.ensure_future(read())
                greedy_view = await (await greedy.open_table(config.perspective_table)).view()
                reader.cancel()  # from here on the greedy client asks and never reads
                asks = [asyncio.ensure_future(greedy_view.to_arrow()) for _ in range(200)]
                await asyncio.wait_for(until(cut_off), 30)
                seen_at_cut = len(updates)
                await asyncio.wait_for(until(lambda: len(updates) > seen_at_cut + 3), 20)
                while (await asyncio.wait_for(connection.read_message(), 10)) is not None:
                    pass  # what was in flight before the cut; then the closed socket
                for ask in asks:
                    ask.cancel()
                return await latest.size() == 5  # the honest connection still answers

        try:
            assert asyncio.run(run())
        finally:
            producer.terminate()
            producer.wait(timeout=30)
    assert any("disconnected WebSocket client" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_answers_only_the_files_the_page_loads(config: Config) -> None:
    if missing_assets(viewer_dir()):
        pytest.skip("viewer assets missing: npm ci --prefix viewer")
    with live(config) as server:

        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(server.url + path, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert status("") == status("dashboard.js") == status("dashboard.json") == status("api/stats") == 200
        assert all(status(path) == 200 for path in VIEWER_FILES)
        for path in ("package-lock.json", "package.json", "node_modules/ws/package.json", "tests/browser_check.mjs"):
            assert status(path) == 404, path


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_with_a_token_asks_every_client_for_it_and_its_python_client_presents_it(config: Config) -> None:
    with live(seeded(config, 300), token=TOKEN) as server:
        for path in ("api/stats", "dashboard.json", ""):
            assert asyncio.run(http_get(server.url + path))[0] == 401, path
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert asyncio.run(http_get(server.url + path, headers=bearer))[0] == 200, path
        status, headers, _ = asyncio.run(http_get(f"{server.url}?token={TOKEN}"))
        assert status == 303 and headers["Location"] == "/" and "HttpOnly" in headers["Set-Cookie"]
        assert asyncio.run(handshake_status(server.websocket_url, {"Origin": page_origin(server.url)})) == 401
        assert fetch_table(server.websocket_url, config.perspective_table, token=TOKEN).num_rows == 300
        with pytest.raises(HTTPClientError) as refused:
            fetch_table(server.websocket_url, config.perspective_table)
        assert refused.value.code == 401


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_serve_over_tls_prints_https_and_serves_wss(config: Config, tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(certfile))
    with live(seeded(config, 200), certfile=str(certfile), keyfile=str(keyfile)) as server:
        assert server.url.startswith("https://127.0.0.1:") and server.websocket_url.startswith("wss://")

        async def size() -> int:
            async with perspective_client(server.websocket_url, ssl_options=trusted) as client:
                return await (await client.open_table(config.perspective_table)).size()

        assert asyncio.run(size()) == 200
        assert asyncio.run(http_get(server.url + "api/stats", ssl_options=trusted))[0] == 200


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_background_serve_gets_its_token_through_the_environment_never_its_command_line(config: Config) -> None:
    env = {**os.environ, **cli_env(seeded(config, 100))}
    try:  # stopped even when starting fails: a child that started but did not answer must not outlive the test
        started = subprocess.run(
            [sys.executable, "-m", "taosprsp", "--json", "serve", "--port", "0", "--token", TOKEN, "--background"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        log = Path(info["log"])
        assert wait_until(lambda: log.exists() and '"url"' in log.read_text(), timeout=60), log.read_text()
        url = next(json.loads(line)["url"] for line in log.read_text().splitlines() if '"url"' in line)
        assert asyncio.run(http_get(url + "api/stats"))[0] == 401
        assert asyncio.run(http_get(url + "api/stats", headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 200
        command_line = Path(f"/proc/{info['pid']}/cmdline").read_bytes()
        assert TOKEN.encode() not in command_line
        assert TOKEN not in Path(info["pidfile"]).read_text() and TOKEN not in started.stdout
        assert TOKEN not in log.read_text()
    finally:
        stop_processes(config, names=["serve"])


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_viewer_prints_the_origin_serve_must_allow_and_guards_its_page_with_the_token(config: Config) -> None:
    if missing_assets(viewer_dir()):
        pytest.skip("viewer assets missing: npm ci --prefix viewer")
    env = {**os.environ, **cli_env(config), "TAOSPRSP_SERVER_TOKEN": TOKEN}
    ws = "ws://127.0.0.9:8080/websocket"
    viewer = subprocess.Popen(
        [sys.executable, "-m", "taosprsp", "viewer", "--ws", ws, "--port", "0", "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        first, _, second = viewer.stderr.readline(), viewer.stderr.readline(), viewer.stderr.readline()
        url = first.split("dashboard: ", 1)[1].split(" ", 1)[0]
        origin = page_origin(url)
        unauthorised = asyncio.run(http_get(url + "dashboard.json"))[0]
        _, _, body = asyncio.run(http_get(url + "dashboard.json", headers={"Authorization": f"Bearer {TOKEN}"}))
    finally:
        viewer.terminate()
        viewer.wait(timeout=10)
    assert f'server.allowed_origins = ["{origin}"]' in second and f"TAOSPRSP_SERVER_ALLOWED_ORIGINS={origin}" in second
    assert unauthorised == 401
    assert json.loads(body)["websocket"] == f"{ws}?token={TOKEN}"  # another site: the browser sends no cookie there


# --- the [server] settings ------------------------------------------------------------------------------


def test_server_access_settings_load_from_toml_and_environment_and_the_token_is_masked(tmp_path: Path) -> None:
    file = tmp_path / "taosprsp.toml"
    file.write_text('[server]\nallowed_origins = ["http://a.example:8081", "https://b.example"]\n')
    assert load_config(file, environ={}).server.allowed_origins == ["http://a.example:8081", "https://b.example"]
    environ = {
        "TAOSPRSP_SERVER_ALLOWED_ORIGINS": "http://a.example:8081, https://b.example",
        "TAOSPRSP_SERVER_TOKEN": TOKEN,
        "TAOSPRSP_SERVER_CLIENTS_CAN_WRITE": "true",
        "TAOSPRSP_SERVER_MAX_CLIENT_QUEUE_MB": "8",
    }
    loaded = load_config(environ=environ)
    assert loaded.server.allowed_origins == ["http://a.example:8081", "https://b.example"]
    assert loaded.server.token == TOKEN and loaded.server.clients_can_write
    access = served_access(loaded)
    assert access.policy.max_client_queue_bytes == 8 * MB and access.policy.clients_can_write
    shown = as_dict(loaded)
    assert shown["server"]["token"] == "****" and TOKEN not in str(shown)
    assert as_dict(Config())["server"]["token"] == ""  # unset shows as unset
    with pytest.raises(ConfigError, match="server.allowed_origins"):
        served_access(load_config(overrides={"server": {"allowed_origins": ["a.example"]}}, environ={}))
