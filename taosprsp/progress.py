"""Progress and live stats on a terminal; silence when output is piped or `--json` is asked for."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

stderr = Console(stderr=True)


def interactive(quiet: bool = False) -> bool:
    """Whether to draw live output: on a terminal and not asked to be quiet."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int, show: bool) -> Iterator[Progress | None]:
    """A rows progress bar on stderr when `show`, else `None`."""
    if not show:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        progress.add_task(description, total=total)
        yield progress


@contextmanager
def live_produce_stats(show: bool) -> Iterator[Callable[[Any], None] | None]:
    """A one-line live view of a producer's stats on stderr when `show`; yields the update callback."""
    if not show:
        yield None
        return
    with Live(console=stderr, refresh_per_second=4, transient=False) as live:

        def update(stats: Any) -> None:
            pace = "[bold red]BEHIND: the store cannot keep up with the target rate[/]" if stats.behind else "[green]on pace[/]"
            if stats.target_rate <= 0:
                pace = "[cyan]as fast as possible[/]"
            live.update(Text.from_markup(
                f"rows {stats.rows_written:>12,}  now {stats.rows_per_second_now:>10,.0f}/s  "
                f"overall {stats.rows_per_second:>10,.0f}/s  errors {stats.errors}  failed {stats.rows_failed:,}  "
                f"lag {stats.lag_seconds:5.2f}s  {pace}"
            ))

        yield update
