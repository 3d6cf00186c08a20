"""`DerivedTables`: all derived tables of one feed, hosted on a Perspective client and pushed each batch."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from taosprsp.datasets import Dataset
from taosprsp.derived.aggregate import AggregateState, AggregateTable, PivotTable
from taosprsp.derived.specs import DerivedSpec, check_spec
from taosprsp.derived.update import DerivedUpdate
from taosprsp.errors import ConfigError
from taosprsp.ops.live import OperationTables

PREFILL_MAX_ROWS = 1_000_000
"""The most stored rows older than the window snapshot that `serve` folds in at start (about a second or
two): at 10 k rows/s a 5-minute horizon holds 3 M rows, and the derived tables then start shorter."""
PREFILL_SLICE_ROWS = 100_000
"""About how many rows each read of the prefill takes, so its memory stays small."""


class DerivedTables:
    """All derived tables of one feed: each batch is folded once per shared state, then projected per table."""

    def __init__(self, dataset: Dataset, precision: str, specs: tuple[DerivedSpec, ...]) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"derived tables: names must be unique, got {', '.join(names)}")
        aggregated = [spec for spec in specs if spec.operation is None]
        for spec in aggregated:
            check_spec(spec, dataset)
        # specs that bucket alike share one state, folding every column any of them names
        alike: dict[tuple, list[DerivedSpec]] = {}
        for spec in aggregated:
            alike.setdefault(_fold_key(spec), []).append(spec)
        states = {
            key: AggregateState(dataset, precision, group[0], tuple(dict.fromkeys(c for s in group for c in s.columns)))
            for key, group in alike.items()
        }
        self.tables: list[AggregateTable | PivotTable] = [
            (PivotTable if spec.kind == "pivot" else AggregateTable)(spec, states[_fold_key(spec)])
            for spec in aggregated
        ]
        operations = [(spec.name, spec.operation) for spec in specs if spec.operation is not None]
        self.operations = OperationTables(dataset, precision, operations) if operations else None
        """The declared signal operations, run together on each batch."""
        self.states = list(states.values())
        self.specs = specs
        self.dataset = dataset
        self.hosted: dict[str, Any] = {}
        """The Perspective tables `push` updates, by name (see `host`)."""

    def host(self, client: Any) -> dict[str, Any]:
        """Create one Perspective table per spec on `client`, under the spec's name; `push` keeps them current."""
        self.hosted = {
            spec.name: client.table(spec.perspective_schema(self.dataset), index=spec.index, name=spec.name)
            for spec in self.specs
        }
        return self.hosted

    def apply(self, rows: pa.Table, older: bool = False) -> list[DerivedUpdate]:
        """Fold a batch of raw rows (store layout, times as epoch integers) in; returns each table's change.

        `older`: rows stamped before those already folded (the feed's prefill at start). The aggregates take
        them; the operations, which take each subtable's samples in time order, leave them out.
        """
        folded = {id(state): state.fold(rows) for state in self.states}
        updates = [table.project(*folded[id(table.state)]) for table in self.tables]
        if self.operations is not None and not older:
            updates.extend(DerivedUpdate(name, changed) for name, changed in self.operations.apply(rows))
        return updates

    def push(self, rows: pa.Table, older: bool = False) -> None:
        """Fold a batch in (`older`: see `apply`) and apply each table's change to its hosted Perspective table."""
        for update in self.apply(rows, older):
            update.push(self.hosted[update.name])

    def first_held(self, newest: int) -> int | None:
        """The oldest timestamp a fold still takes once a row stamped `newest` was folded (the start of the
        oldest held bucket); None when a table keeps everything since the feed started."""
        starts = []
        for state in self.states:
            if state.held_buckets is None:
                return None
            newest_bucket = max(newest // state.bucket_ticks, state.newest_bucket or newest // state.bucket_ticks)
            starts.append((newest_bucket - state.held_buckets + 1) * state.bucket_ticks)
        return min(starts) if starts else None

    @property
    def groups_not_charted(self) -> dict[str, list[Any]]:
        """Per pivot table, the group values seen that have no column of theirs (they came after it was made)."""
        return {
            table.spec.name: table.groups_not_charted
            for table in self.tables
            if isinstance(table, PivotTable) and table.groups_not_charted
        }

    def operation_stats(self) -> dict[str, Any]:
        """For `/api/stats`: samples the operations left out as late, and spectrum windows not evenly spaced."""
        if self.operations is None:
            return {}
        return {
            "samples_ignored": self.operations.samples_ignored,
            "windows_skipped": self.operations.windows_skipped,
            "last_problem": self.operations.last_problem,
        }

    @property
    def rows_ignored(self) -> dict[str, int]:
        """Per table, the rows that came older than its held buckets (operation tables: older than their
        subtable's newest sample, so out of time order)."""
        ignored = {table.spec.name: table.state.rows_ignored for table in self.tables}
        if self.operations is not None:
            ignored.update(dict.fromkeys(self.operations.names, self.operations.samples_ignored))
        return ignored


def _fold_key(spec: DerivedSpec) -> tuple:
    """What specs whose tables can share one `AggregateState` have in common: group, bucket width and horizon."""
    return (spec.group_by, spec.held_buckets and spec.bucket_seconds, spec.held_buckets)
