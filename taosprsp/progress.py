"""Progress and live stats on a terminal; silence when output is piped or `--json` is asked for."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
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
