"""`DerivedUpdate`: what one batch changed in one derived table, applied to its Perspective table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class DerivedUpdate:
    """What one batch changed in one derived table: rows to upsert (Arrow, Perspective-ready) and keys to remove."""

    name: str
    rows: pa.Table
    removed: list[Any] = field(default_factory=list)

    def push(self, table: Any) -> None:
        """Apply to the Perspective table: removals first (an upserted key is never among them)."""
        if self.removed:
            table.remove(self.removed)
        if self.rows.num_rows:
            table.update(self.rows)
