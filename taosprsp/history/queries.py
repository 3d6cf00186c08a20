"""Running history queries: on connections of their own, a few at once, each client's view at a time, timed out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pyarrow as pa

from taosprsp.history.sql import Statement
from taosprsp.history.view import (
    HistoryError,
)
from taosprsp.stores import Store


class QueryLane:
    """One client's queries in the store: those of its latest view, counted until the store has finished them.

    A client is answered when its view's time is up, but the store goes on with the queries (see
    `QueryRunner`); while they run, the client's next view is refused at once, so that no client can stack
    slow queries and hold every connection.
    """

    def __init__(self) -> None:
        self._unfinished = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Whether queries of this lane are still queued or running in the store."""
        with self._lock:
            return self._unfinished > 0

    def enter(self, count: int, timeout: float) -> None:
        """Count `count` queries in, or HistoryError while earlier ones have not finished."""
        with self._lock:
            if self._unfinished:
                queries = f"{self._unfinished} quer{'y' if self._unfinished == 1 else 'ies'}"
                raise HistoryError(
                    f"{queries} of your previous history view still run in the store (the store finishes what "
                    f"it started after the view's {timeout:g} s are up): wait for them, then narrow the time "
                    "range, filter, or group by fewer or coarser columns"
                )
            self._unfinished = count

    def leave(self) -> None:
        """One query finished, failed, or was cancelled before it started."""
        with self._lock:
            self._unfinished -= 1


class QueryRunner:
    """Runs statements on store connections of its own, at most `connections` at once, each view within
    `timeout` seconds.

    A query over its time is abandoned, not stopped: TDengine's client and ADBC's SQLite driver cannot cancel
    a statement (NOT_IMPLEMENTED), so the query finishes on its connection, which then serves the next one;
    the client is answered at once with an error saying what to narrow. Its `QueryLane` keeps it from
    starting more until the store is done.
    """

    def __init__(self, connect: Callable[[], Store], timeout: float, connections: int) -> None:
        self._connect = connect
        self.timeout = timeout
        self.connections = connections
        self._idle: list[Store] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="history-query")

    def adopt(self, store: Store) -> None:
        """Use an open `store` for later queries."""
        self._release(store)

    def run(self, *statements: Statement, lane: QueryLane | None = None) -> list[pa.Table]:
        """The results of `statements`, run side by side for the client of `lane` (None: a lane of their own);
        HistoryError when they take over `timeout` seconds, or while the lane's previous queries run."""
        lane = lane or QueryLane()
        lane.enter(len(statements), self.timeout)
        deadline = time.monotonic() + self.timeout
        futures = []
        try:
            for statement in statements:
                futures.append(self._pool.submit(self._execute, statement, lane))
        except BaseException:  # the pool was shut down: the statements not submitted never run
            for _ in range(len(statements) - len(futures)):
                lane.leave()
            raise
        try:
            return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
        except FutureTimeout:
            waiting = self._cancel(futures, lane)
            if waiting:
                raise HistoryError(
                    f"the store is busy: this view waited {self.timeout:g} s for one of the {self.connections} "
                    "history queries the store runs at once (history.queries); try again shortly"
                ) from None
            raise HistoryError(
                f"the history query took more than {self.timeout:g} s: narrow the time range, filter, or group "
                "by fewer or coarser columns"
            ) from None
        except BaseException:
            self._cancel(futures, lane)  # one query failed: the view is answered with its error
            raise

    @staticmethod
    def _cancel(futures: Sequence[Future[pa.Table]], lane: QueryLane) -> int:
        """Cancel the queries of `futures` not started yet; how many."""
        cancelled = sum(1 for future in futures if future.cancel())
        for _ in range(cancelled):
            lane.leave()  # `_execute` never runs for it
        return cancelled

    def _execute(self, statement: Statement, lane: QueryLane) -> pa.Table:
        try:
            with self._lock:
                store = self._idle.pop() if self._idle else None
            if store is None:
                store = self._connect()
            try:
                result = store.select(statement.sql, statement.schema, statement.parameters)
            except BaseException:
                store.close()  # a connection a query failed on is not trusted with the next
                raise
            self._release(store)
            return result
        finally:
            lane.leave()  # before the result is handed over: the client's next view finds the lane free

    def _release(self, store: Store) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        """Close every idle connection; those still running close when their query ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        self._pool.shutdown(wait=False, cancel_futures=True)
        for store in idle:
            store.close()
