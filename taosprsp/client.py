"""A Python Perspective client over the server's WebSocket, for tests, `bench` and scripts.

perspective-python 4.3 has no `websocket()` helper for Python: this wires `perspective.AsyncClient` to a
Tornado WebSocket (binary frames both ways, one reader task feeding every message to the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import perspective
import pyarrow as pa
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

MAX_MESSAGE_BYTES = 1 << 30


@asynccontextmanager
async def connect(url: str, timeout: float = 10.0, token: str = "") -> AsyncIterator[perspective.AsyncClient]:
    """An AsyncClient connected to `ws://host:port/websocket`, presenting `token` when one is given (the server's
    `server.token`); the socket closes on exit."""
    # a header, not the query: the token stays out of URLs that end up in logs and error messages
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # tornado's client refuses messages over 10 MiB by default and the pending call then never returns
    conn = await asyncio.wait_for(
        websocket_connect(HTTPRequest(url, headers=headers), max_message_size=MAX_MESSAGE_BYTES, ping_interval=None),
        timeout,
    )

    conn.protocol.set_nodelay(True)  # requests are small: Nagle's algorithm would hold one back behind the last

    async def send_request(message: bytes) -> None:
        await conn.write_message(message, binary=True)

    client = perspective.AsyncClient(send_request)

    async def read() -> None:
        while (message := await conn.read_message()) is not None:
            await client.handle_response(message)

    reader = asyncio.ensure_future(read())
    try:
        yield client
    finally:
        conn.close()
        reader.cancel()


async def table_arrow(url: str, name: str, timeout: float = 30.0, token: str = "") -> pa.Table:
    """Every row of the served table `name`, as Arrow."""
    async with connect(url, token=token) as client:
        table = await asyncio.wait_for(client.open_table(name), timeout)
        view = await table.view()
        data = await asyncio.wait_for(view.to_arrow(), timeout)
        await view.delete()
    return pa.ipc.open_stream(data).read_all()


def fetch_table(url: str, name: str, timeout: float = 30.0, token: str = "") -> pa.Table:
    """`table_arrow` for synchronous callers."""
    return asyncio.run(table_arrow(url, name, timeout, token))
