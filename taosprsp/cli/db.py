"""`taosprsp db seed` and `db status`: create and backfill the schema, and say what the store holds."""

from __future__ import annotations

import typer
from rich.table import Table

from taosprsp.cli.common import State, duration_option, out, seed_option, tables_option


def seed(
    ctx: typer.Context,
    tables: int | None = tables_option("Subtables to create."),
    rows: int = typer.Option(0, "--rows", "-n", min=0, help="Rows of history to backfill, spread over the subtables."),
    span: float = duration_option(
        "--span", default="1d", help="How far back the backfilled history reaches (e.g. 1h, 7d)."
    ),
    drop: bool = typer.Option(
        False, "--drop", help="Drop and recreate the database (TDengine) or table (embedded) first."
    ),
    seed_value: int | None = seed_option(),
) -> None:
    """Create the database, super table and subtables (idempotent); optionally backfill history.

    Example:

        taosprsp db seed --store embedded --rows 1000000 --span 1d
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.progress import progress_bar
    from taosprsp.seed import seed as backfill
    from taosprsp.stores import open_store

    state: State = ctx.obj
    config = state.config(dataset={"tables": tables})
    dataset = get_dataset(config.dataset.name)
    with open_store(config) as store, progress_bar("seeding", rows, rows > 0 and state.show_progress) as bar:
        summary = backfill(
            store,
            dataset,
            config.dataset.tables,
            config.database.precision,
            rows=rows,
            span_seconds=span,
            drop=drop,
            seed_value=seed_value,
            on_progress=lambda done: bar.advance(bar.task_id, done),
        )
    state.emit(
        summary.as_dict(),
        lambda: out.print(
            f"seeded {summary.dataset} in {summary.store}: {summary.tables} subtables, {summary.rows:,} rows "
            f"in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s)"
        ),
    )


def status(ctx: typer.Context) -> None:
    """Say whether the store answers, its version, its databases and the rows in the served super table.

    Exits 4 when TDengine is configured (--store tdengine) and unreachable.

    Example:

        taosprsp --store tdengine db status
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.stores import open_store

    state: State = ctx.obj
    config = state.config()
    with open_store(config) as store:
        found = store.status(get_dataset(config.dataset.name))

    def human() -> None:
        table = Table(show_header=False, box=None)
        for key, value in (
            ("store", found.kind),
            ("target", found.target),
            ("reachable", "yes" if found.reachable else "no"),
            ("version", found.version),
            ("databases", ", ".join(found.databases)),
            (f"rows in {config.stable}", "-" if found.rows is None else f"{found.rows:,}"),
        ):
            table.add_row(key, str(value))
        out.print(table)

    state.emit(found.__dict__, human)
