"""`taosprsp ops run` and `ops list`: the signal operations of `[operations.NAME]` over stored history."""

from __future__ import annotations

import typer
from rich.table import Table

from taosprsp.cli.common import (
    State,
    database_option,
    out,
    stable_option,
    subtables_option,
    time_bound,
    time_from_option,
    time_to_option,
)


def run(
    ctx: typer.Context,
    start: str | None = time_from_option(),
    end: str | None = time_to_option(),
    subtables: list[str] = subtables_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Apply the declared operations to a stored time range and write each output into a derived table
    (`<stable>_<operation>`), tagged with the operation, its parameters and its input. Running it again over
    the same range rewrites the same rows.

    Example:

        taosprsp --config configs/ops.toml ops run --from 2024-05-01T00:00:00Z --to 2024-05-02T00:00:00Z
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

    from taosprsp.ops.history import run_operations
    from taosprsp.progress import TaskProgress

    state: State = ctx.obj
    config = state.config(dataset={"stable": stable}, database={"name": database})
    precision = config.database.precision
    first, last = time_bound(start, precision, "--from"), time_bound(end, precision, "--to")
    columns = (TextColumn("ops run"), BarColumn(), MofNCompleteColumn(), TextColumn("subtables"))
    with TaskProgress(*columns, show=state.show_progress) as bar:
        summary = run_operations(
            config, first, last, subtables, lambda done, total: bar.update(bar.task_id, completed=done, total=total)
        )

    def human() -> None:
        out.print(
            f"ran {len(summary.operations)} operations over {summary.subtables} subtables of {config.stable} "
            f"({summary.rows_read:,} rows read) in {summary.seconds:.2f} s",
            highlight=False,
        )
        for run in summary.operations:
            pushed = " (pushed down to SQL)" if run.pushed_down else ""
            out.print(f"  {run.name}: {run.rows_written:,} rows into {run.table}{pushed}", highlight=False)

    state.emit(summary.as_dict(), human)


def list_operations(
    ctx: typer.Context,
    stored: bool = typer.Option(
        False, "--stored", help="Also read each derived table: its rows per recorded lineage (parameters, input)."
    ),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Show the declared operations: kind, input, parameters, the chain from the dataset column, and the live
    and stored tables they fill.

    Example:

        taosprsp --config configs/ops.toml ops list --stored
    """
    from taosprsp.ops import history

    state: State = ctx.obj
    config = state.config(dataset={"stable": stable}, database={"name": database})
    described = history.list_operations(config, stored)

    def human() -> None:
        if not described:
            out.print(f"no operations are declared in {config.source} (see configs/ops.toml)")
            return
        table = Table("operation", "does", "lineage", "live table", "stored table")
        for entry in described:
            table.add_row(
                entry["name"], entry["describe"], entry["lineage"], entry["live_table"], entry["stored_table"]
            )
        out.print(table)
        for entry in described if stored else []:
            versions = entry["stored"] or [{"rows": 0, "params": "(not run yet)", "input": entry["input"]}]
            for version in versions:
                out.print(
                    f"  {entry['stored_table']}: {version['rows']:,} rows, params {version['params']}",
                    highlight=False,
                    markup=False,
                )

    state.emit(described, human)
