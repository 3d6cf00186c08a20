"""Pacing and running totals of a producer: the schedule a paced run keeps (`keep_pace`), its stats
(`ProduceStats`, whose `as_dict` is the `--json` summary) and the recent rate the live stats line shows
(`RecentCounts`). Shared by `produce`, the MQTT publisher and the MQTT ingester.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

from taosprsp.config import Protocol

BEHIND_SECONDS = 1.0


@dataclass
class RecentCounts:
    """A running count's samples over the last second or so, for the rate the live stats line shows."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def note(self, now: float, count: int) -> None:
        self.samples.append((now, count))
        while len(self.samples) > 2 and now - self.samples[0][0] > 1.0:
            self.samples.pop(0)

    def per_second(self, overall: float) -> float:
        """The count's rate over the samples; `overall` until there are two of them."""
        if len(self.samples) < 2:
            return overall
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class ProduceStats:
    """Running totals; `as_dict` is the documented `--json` summary."""

    store: str
    dataset: str
    protocol: Protocol
    target_rate: float
    batch: int
    tables: int
    rows_written: int = 0
    rows_failed: int = 0
    rows_rejected: int = 0
    """Of `rows_failed`: rows in batches the store refused for good (not retried)."""
    batches: int = 0
    errors: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    lag_seconds: float = 0.0
    ahead_seconds: float = 0.0
    last_error: str = ""
    stopped_by: str = ""
    recent: RecentCounts = field(default_factory=RecentCounts, repr=False)

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_second_now(self) -> float:
        """Rows/s over the last second or so."""
        return self.recent.per_second(self.rows_per_second)

    @property
    def behind(self) -> bool:
        return self.target_rate > 0 and self.lag_seconds > BEHIND_SECONDS

    @property
    def ran_ahead(self) -> bool:
        """Whether timestamps ran more than `BEHIND_SECONDS` ahead of the clock (rows faster than ticks)."""
        return self.ahead_seconds > BEHIND_SECONDS

    def note(self, now: float) -> None:
        self.recent.note(now, self.rows_written)

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "recent"}
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["behind"] = self.behind
        return data


def keep_pace(stats: ProduceStats, rate: float, started: float, done: int, now: float, stop: threading.Event) -> None:
    """Wait until `done` rows are due at `rate` rows/s from `started` (no wait at rate 0, as fast as possible),
    or `stop`; `stats.lag_seconds` is how far behind that schedule they came."""
    if rate <= 0:
        return
    due = started + done / rate
    stats.lag_seconds = max(0.0, now - due)
    if due > now:
        stop.wait(due - now)
