"""Progress and live stats on a terminal; silence when output is piped or `--json` is asked for.

Every view here is a rich `Progress` on stderr built with `disable=not show`: callers use it the same way whether
or not it draws, so no caller needs an "is there a bar" branch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)

STATS_EVERY_SECONDS = 0.25
"""How often a running job hands its stats to its live stats line."""


def interactive(quiet: bool = False) -> bool:
    """Whether to draw live output: on a terminal and not asked to be quiet."""
    return not quiet and sys.stderr.isatty()


class TaskProgress(Progress):
    """A rich Progress on stderr holding one task (`task_id`), drawn only when `show`; `with` it while the work runs."""

    def __init__(
        self,
        *columns: ProgressColumn,
        show: bool,
        description: str = "",
        total: float | None = None,
        transient: bool = True,
        refresh_per_second: float = 10,
        **fields: Any,
    ) -> None:
        super().__init__(
            *columns,
            console=stderr,
            transient=transient,
            refresh_per_second=refresh_per_second,
            disable=not show,
        )
        self.task_id = self.add_task(description, total=total, **fields)


def spinner(message: str, show: bool) -> TaskProgress:
    """A spinner beside `message` while the block runs."""
    return TaskProgress(SpinnerColumn(), TextColumn("{task.description}"), show=show, description=message)


def progress_bar(description: str, total: int, show: bool) -> TaskProgress:
    """A rows progress bar: `advance(bar.task_id, rows)` as rows are done."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
    )
    return TaskProgress(*columns, show=show, description=description, total=total)


class StatsLine(TaskProgress):
    """A one-line live view of a running job's stats that stays on screen; call it with each new stats."""

    def __init__(self, describe: Callable[[Any], str], show: bool) -> None:
        super().__init__(TextColumn("{task.fields[line]}"), show=show, transient=False, refresh_per_second=4, line="")
        self.describe = describe

    def __call__(self, stats: Any) -> None:
        self.update(self.task_id, line=self.describe(stats))


def describe_produce_stats(stats: Any) -> str:
    """A producer's stats as one line, with whether it keeps the target rate."""
    pace = "[bold red]BEHIND: the store cannot keep up with the target rate[/]" if stats.behind else "[green]on pace[/]"
    if stats.target_rate <= 0:
        pace = "[cyan]as fast as possible[/]"
    return (
        f"rows {stats.rows_written:>12,}  now {stats.rows_per_second_now:>10,.0f}/s  "
        f"overall {stats.rows_per_second:>10,.0f}/s  errors {stats.errors}  failed {stats.rows_failed:,}  "
        f"lag {stats.lag_seconds:5.2f}s  {pace}"
    )


def describe_ingest_stats(stats: Any) -> str:
    """An MQTT ingester's stats as one line."""
    return (
        f"messages {stats.messages:>12,}  now {stats.messages_per_second_now:>9,.0f}/s  "
        f"rows {stats.rows_written:>12,}  rejected {stats.rejected.total:,}  backlog {stats.backlog:,}  "
        f"lag {stats.lag_seconds:5.2f}s  errors {stats.errors}"
    )


def describe_forward_stats(stats: Any) -> str:
    """`forward mqtt`'s stats as one line."""
    return (
        f"rows {stats.rows_read:>12,}  published {stats.messages:>12,}  "
        f"unconfirmed {stats.unconfirmed:,}  errors {stats.errors}"
    )


def live_produce_stats(show: bool) -> StatsLine:
    """The producer's live stats line: `with live_produce_stats(show) as on_stats:` and pass `on_stats` along."""
    return StatsLine(describe_produce_stats, show)


def live_ingest_stats(show: bool) -> StatsLine:
    """The ingester's live stats line: `with live_ingest_stats(show) as on_stats:` and pass `on_stats` along."""
    return StatsLine(describe_ingest_stats, show)


def live_forward_stats(show: bool) -> StatsLine:
    """`forward mqtt`'s live stats line: `with live_forward_stats(show) as on_stats:`."""
    return StatsLine(describe_forward_stats, show)
