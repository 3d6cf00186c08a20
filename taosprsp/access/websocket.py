"""The Perspective WebSocket of `serve`, guarded: origin, token, read-only requests and per-client limits.

Per-client limits bound what one client can make the server hold. Answers wait in memory from the
moment Perspective produces them until the socket has taken them; a client that asks and never reads
would grow that queue without end (issue 13: 356 MB -> 1.97 GB in 22 s). Each answer is counted from
`send_response` (on whatever thread Perspective calls it) until the Future of Tornado's
`write_message` resolves, i.e. the bytes left Tornado's write buffer for the kernel.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future as ThreadFuture
from typing import Any

from perspective.handlers.tornado import PerspectiveTornadoHandler
from tornado.websocket import WebSocketClosedError

from taosprsp.access.policy import AccessControlled
from taosprsp.access.protocol import GuardedSession, MalformedRequest

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # RFC 6455 close code


class GuardedPerspectiveHandler(AccessControlled, PerspectiveTornadoHandler):
    """`PerspectiveTornadoHandler` that only opens for an allowed origin and a valid token (when set),
    refuses table-changing requests (unless `clients_can_write`) and disconnects a client beyond
    `max_client_queue_bytes` queued or `max_pending_requests` pending.

    Route arguments are those of `PerspectiveTornadoHandler` (`perspective_server`, `executor`, ...);
    the policy comes from the application's settings (`application_settings`).
    """

    def check_origin(self, origin: str) -> bool:
        return self.access_policy.allows_origin(origin, self.request.host)

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Nagle's algorithm holds a small message back until the previous one is acknowledged, and the peer
        # delays that acknowledgement: an update notification then waited 5-40 ms on loopback
        self.set_nodelay(True)
        policy = self.access_policy
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self._pending_requests = 0
        self._closing = False
        self.session = GuardedSession(
            self.server.new_session(self._send_response),
            self._send_response,
            policy.clients_can_write,
            self.request.remote_ip or "?",
        )

    def _send_response(self, message: bytes) -> None:
        """Queue an answer for writing on the IOLoop, or disconnect the client if its queue is full."""
        cap = self.access_policy.max_client_queue_bytes
        with self._lock:
            if self._closing:
                return
            # one answer of any size always fits in an empty queue: a client may fetch a large table
            overflow = self._queued_bytes > 0 and self._queued_bytes + len(message) > cap
            if overflow:
                self._closing = True
                queued = self._queued_bytes
            else:
                self._queued_bytes += len(message)
        if overflow:
            self.loop.add_callback(
                self._disconnect,
                f"{queued + len(message)} bytes of answers would wait for it, over its limit of {cap} "
                "(server.max_client_queue_mb): it does not read them",
            )
        else:
            self.loop.add_callback(self._write, message)

    def _write(self, message: bytes) -> None:
        size = len(message)
        try:
            written = self.write_message(message, binary=True)
        except WebSocketClosedError:
            self._written(size)
            return
        written.add_done_callback(lambda future: self._written(size, future))

    def _written(self, size: int, future: Any = None) -> None:
        if future is not None and not future.cancelled():
            future.exception()  # a closed socket is expected here; retrieving it keeps asyncio quiet
        with self._lock:
            self._queued_bytes -= size

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, bytes):
            return
        with self._lock:
            if self._closing:
                return
            self._pending_requests += 1
            overflow = self._pending_requests > self.access_policy.max_pending_requests
            if overflow:
                self._closing = True
        if overflow:
            self._disconnect(
                f"more than {self.access_policy.max_pending_requests} requests pending (server.max_pending_requests)"
            )
        elif self.executor is None:
            self._handle_request(message)
        else:
            self.executor.submit(self._handle_request, message).add_done_callback(self._log_failure)

    def _handle_request(self, message: bytes) -> None:
        try:
            self.session.handle_request(message)
        except MalformedRequest as exc:
            with self._lock:
                self._closing = True
            self.loop.add_callback(self._disconnect, f"it sent a message that is not a Perspective request ({exc})")
        finally:
            with self._lock:
                self._pending_requests -= 1

    @staticmethod
    def _log_failure(future: ThreadFuture) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.error("a Perspective request failed", exc_info=future.exception())

    def _disconnect(self, why: str) -> None:
        """Close at once, dropping what is queued: a client that does not read would never take a close frame."""
        connection = self.ws_connection
        if connection is None:
            return
        logger.warning("disconnected WebSocket client %s: %s", self.request.remote_ip, why)
        self.close(POLICY_VIOLATION, "client limit exceeded")
        connection.stream.close()

    def on_close(self) -> None:
        with self._lock:
            self._closing = True
        super().on_close()
