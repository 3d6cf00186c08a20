"""Derived tables: small Perspective tables kept up to date from the raw rows, for the dashboard's panels.

With a view attached, a Perspective 4.3.0 `table.update` costs time in proportion to the rows already in the
table, so a grouped view over the 100 k-row window makes every poll slow. The feed instead folds each batch
of raw rows into a few small tables that the panels view directly:

- `groups`: one row per group (e.g. per `location`) with sum, count, min, max and mean of each value
  column, over the last `horizon_seconds` (or since the feed started when the horizon is None);
- `pivot`: one row per time bucket with a column per group value, the mean of one column, for line charts
  (a chart grouped by time alone costs a third of one also split by group, per update); buckets older than
  the horizon are retired, so the table holds horizon/bucket rows. The group values are fixed when the table
  is made (serve takes those its store holds): rows of a value that comes later are in the `groups` table
  but not charted until serve restarts (`/api/stats` lists such values).

Both fold a batch columnar (numpy over the batch's rows), then merge the few (group, bucket) partials it
produced into a small state. A row whose bucket is still held updates it, even when it comes late; a row
older than the held buckets is ignored and counted in `rows_ignored`.

`derived_specs(config, dataset)` declares the tables `serve` hosts and the default dashboard views, from the
dataset (group tag, numeric columns) and `server.bucket` / `server.horizon`; `DerivedTables.host` creates
them on a Perspective client and `DerivedTables.push` folds a batch into them (the feed calls it for every
batch, before the latest table, so a row shown as latest is already in the aggregates).

A `DerivedSpec` is the single extension point. A new kind (a filter, a spectrum) plugs in as:
1. its name in `DerivedKind`, and the checks of its parameters in `DerivedSpec.__post_init__` (`specs`);
2. a state class beside `AggregateState` (`aggregate`): `fold(rows)` takes a batch in the store layout (any order, late
   rows included) and returns what it touched and retired;
3. a table class beside `AggregateTable` and `PivotTable` (`aggregate`): `project(touched, retired)` returns a
   `DerivedUpdate`, and its schema in `DerivedSpec.perspective_schema`;
4. a branch in `DerivedTables.__init__` (`tables`) that builds them, sharing a state between specs that fold alike;
5. the spec added to `derived_specs` (`declare`), so that serve hosts it and a panel can name it.
Nothing in the feed or serve changes: they host and push whatever `derived_specs` declares.

The signal operations declared in the config (`[operations.NAME]`, `taosprsp.ops`) are the kinds `series` and
`spectrum`: each spec carries its `Operation`, and all of them run together in one `OperationTables`
(operations chain, so they step in order on each batch).
"""

from __future__ import annotations

from taosprsp.derived.aggregate import AggregateState, AggregateTable, PivotTable
from taosprsp.derived.declare import (
    declared_groups,
    default_specs,
    derived_specs,
    groups_table_name,
    operation_specs,
    pivot_table_name,
)
from taosprsp.derived.specs import (
    AGGREGATES,
    DEFAULT_BUCKET_SECONDS,
    DEFAULT_HORIZON_SECONDS,
    MAX_CHART_CELLS,
    OPERATION_KINDS,
    SLOT_COLUMN,
    DerivedKind,
    DerivedSpec,
    numeric_columns,
)
from taosprsp.derived.tables import PREFILL_MAX_ROWS, PREFILL_SLICE_ROWS, DerivedTables
from taosprsp.derived.update import DerivedUpdate

__all__ = [
    "AGGREGATES",
    "DEFAULT_BUCKET_SECONDS",
    "DEFAULT_HORIZON_SECONDS",
    "MAX_CHART_CELLS",
    "OPERATION_KINDS",
    "SLOT_COLUMN",
    "PREFILL_MAX_ROWS",
    "PREFILL_SLICE_ROWS",
    "AggregateState",
    "AggregateTable",
    "DerivedKind",
    "DerivedSpec",
    "DerivedTables",
    "DerivedUpdate",
    "PivotTable",
    "declared_groups",
    "default_specs",
    "derived_specs",
    "groups_table_name",
    "numeric_columns",
    "operation_specs",
    "pivot_table_name",
]
