"""History: the whole store pivoted from the dashboard, computed by SQL in the store.

`serve` keeps the newest rows in memory (the live window); this package serves, beside it, a Perspective
virtual table per dataset (`<table>_history`, WebSocket path `/history`) whose group-by, split-by,
filters, sorts and aggregates run as SQL in the store: SQLite for the embedded store, TDengine's dialect
(`INTERVAL` windows with `_wstart`, `PARTITION BY`, its aggregates) for TDengine. Nothing is loaded into
memory but groups and the slices the viewer shows.

- `view`: a Perspective view config checked into a `ViewSpec`; time buckets and their automatic width;
- `sql`: the two dialects and the statements of a view;
- `tree`: a grouped view's rows (the rollup tree, split columns) from one query per grouping level;
- `handler`: the `VirtualServerHandler`, its views and the query runner (the `[history]` limits: rows,
  groups, columns, timeout, queries at once, one view per client at a time);
- `server`: client sessions, and what the dashboard needs for its history panel.

perspective-python 4.3.0's virtual tables do not update: the live tail stays the in-memory window.
"""

from taosprsp.history.handler import HistoryBackend, HistoryHandler, QueryLane
from taosprsp.history.server import (
    HISTORY_PATH,
    HistoryServer,
    history_document,
    history_table_name,
    history_websocket,
    open_history,
)
from taosprsp.history.view import HistoryError, HistorySource, auto_bucket

__all__ = [
    "HISTORY_PATH",
    "HistoryBackend",
    "HistoryError",
    "HistoryHandler",
    "HistoryServer",
    "HistorySource",
    "QueryLane",
    "auto_bucket",
    "history_document",
    "history_table_name",
    "history_websocket",
    "open_history",
]
