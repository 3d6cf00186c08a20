"""`taosprsp import csv` and `taosprsp export csv`: CSV files into a store and back."""

from __future__ import annotations

from pathlib import Path

import typer

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
from taosprsp.errors import ExitCode, TaosprspError


def import_csv(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="CSV files with a header row."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="A declared dataset to take the schema from (else: the table, else inferred)."
    ),
    subtable: str = typer.Option("tbname", "--subtable", help="Column naming each row's subtable."),
    time_column: str | None = typer.Option(
        None, "--time", help="Column holding the timestamp. \\[default: the dataset's, else the first column]"
    ),
    tags: list[str] = typer.Option([], "--tag", help="A column that is a tag (repeatable; inferred schemas only)."),
    delimiter: str = typer.Option(",", "--delimiter", help="Field separator."),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Import CSV files into the super table (created from the schema when missing), in large columnar batches.

    Rows that cannot be read or converted are counted and listed with their line numbers. Importing a file
    twice writes no row twice: one row per subtable and timestamp is kept, in both stores.

    Examples:

        taosprsp --store embedded import csv readings.csv --tag site
        taosprsp import csv a.csv b.csv --stable meters --dataset meters
    """
    from rich.progress import MofNCompleteColumn, SpinnerColumn, TextColumn

    from taosprsp.csvfiles import CsvOptions, default_stable, import_dataset
    from taosprsp.csvfiles import import_csv as run_import
    from taosprsp.progress import TaskProgress
    from taosprsp.stores import open_store

    state: State = ctx.obj
    config = state.config(dataset={"stable": stable, "name": dataset}, database={"name": database})
    if not config.dataset.stable and not dataset:  # no table named anywhere: the first file's name
        config = config.replace(dataset={"stable": default_stable(files[0])})
    options = CsvOptions(subtable, time_column or "", tuple(tags), delimiter)
    columns = (SpinnerColumn(), TextColumn("importing"), MofNCompleteColumn(), TextColumn("rows"))
    with open_store(config) as store, TaskProgress(*columns, show=state.show_progress) as bar:
        target = import_dataset(store, config.declared_dataset if dataset else None, config.stable, files[0], options)
        summary = run_import(
            store,
            files,
            target,
            config.database.precision,
            options,
            on_progress=lambda rows: bar.advance(bar.task_id, rows),
        )

    def human() -> None:
        out.print(
            f"imported {summary.rows_written:,} of {summary.rows_read:,} rows from {summary.files} files into "
            f"{config.stable} ({summary.store}) in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s); "
            f"bad rows: {summary.rows_bad:,}"
        )
        for bad in summary.bad_rows[:20]:
            out.print(f"  {bad.file}:{bad.line}: {bad.reason}", highlight=False)
        if summary.rows_bad > 20:
            out.print(f"  ... and {summary.rows_bad - 20:,} more", highlight=False)

    state.emit(summary.as_dict(), human)
    if summary.rows_bad:
        raise TaosprspError(
            f"{summary.rows_bad:,} rows were not imported (bad rows; listed above with their lines)", ExitCode.DATA_LOST
        )


def export_csv(
    ctx: typer.Context,
    file: Path = typer.Argument(..., dir_okay=False, help="CSV file to write."),
    start: str | None = time_from_option(),
    end: str | None = time_to_option(),
    subtables: list[str] = subtables_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Export rows of the super table to CSV (times in ISO 8601 UTC), which `import csv` reads back.

    Example:

        taosprsp export csv meters.csv --from 2024-05-01T00:00:00Z --to 2024-05-02T00:00:00Z --subtable d0
    """
    from taosprsp.csvfiles import export_csv as run_export
    from taosprsp.stores import dataset_for, open_store

    state: State = ctx.obj
    config = state.config(dataset={"stable": stable}, database={"name": database})
    precision = config.database.precision
    first, last = time_bound(start, precision, "--from"), time_bound(end, precision, "--to")
    with open_store(config, create=False) as store:
        summary = run_export(store, dataset_for(store, config), file, precision, first, last, subtables)
    state.emit(
        summary.as_dict(),
        lambda: out.print(f"exported {summary.rows:,} rows of {config.stable} to {file} in {summary.seconds:.2f} s"),
    )
