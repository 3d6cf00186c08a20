"""A Perspective server that processes the tables' changes once per batch of updates, not once per update.

By default a perspective-python 4.3.0 `Server` processes after every `table.update` or `remove`: each one
recomputes the views of its table and notifies them, and every notified client re-reads its view. One feed
batch updates the window, the latest table and each derived table (a remove and an update), so a client
viewing several of them re-read several times per batch. With `on_poll_request` the server instead asks to
be polled; `UpdateBatcher.batch()` holds those requests back until the batch is whole, then polls once, so
each view is recomputed and notified once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import perspective


class UpdateBatcher:
    """Owns a Perspective `Server` whose processing waits for the end of each `batch()`.

    Changes made outside a batch (another client's request) are processed at once, as without batching.
    """

    def __init__(self) -> None:
        self.server = perspective.Server(on_poll_request=self._requested)
        self._batches = 0
        self._pending = False
        self._state = threading.Lock()
        self._polling = threading.Lock()

    def new_local_client(self) -> perspective.Client:
        return self.server.new_local_client()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold processing back while the body updates tables; process everything once at its end."""
        with self._state:
            self._batches += 1
        try:
            yield
        finally:
            with self._state:
                self._batches -= 1
            self._drain()

    def _requested(self, _server: perspective.Server) -> None:
        with self._state:
            self._pending = True
            if self._batches:
                return
        self._drain()

    def _drain(self) -> None:
        """Poll while changes are pending and no other thread is polling; a request that comes during a poll is
        seen by the loop's next check, so none waits for the next update."""
        while self._pending and self._polling.acquire(blocking=False):
            try:
                with self._state:
                    if self._batches:
                        return
                    self._pending = False
                self.server.poll()
            finally:
                self._polling.release()
