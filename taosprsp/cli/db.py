"""`taosprsp db seed` and `db status`: create and backfill the schema, and say what the store holds."""

from __future__ import annotations

import typer
from rich.table import Table

from taosprsp.cli.common import (
    State,
    database_option,
    duration_option,
    out,
    seed_option,
    stable_option,
    tables_option,
)


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
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Create the database, super table and subtables (idempotent); optionally backfill history.

    Ctrl-C writes the batch in hand, prints what was written and exits 130 (SIGTERM or SIGHUP: the same, exit 0).

    Example:

        taosprsp db seed --store embedded --rows 1000000 --span 1d
    """
    from taosprsp.produce import StopSignal
    from taosprsp.progress import progress_bar
    from taosprsp.seed import seed as backfill
    from taosprsp.stores import dataset_for, open_store

    state: State = ctx.obj
    config = state.config(dataset={"tables": tables, "stable": stable}, database={"name": database})
    with (
        StopSignal() as stop,
        open_store(config, verify=True) as store,
        progress_bar("seeding", rows, rows > 0 and state.show_progress) as bar,
    ):
        # --drop starts over from the declaration; otherwise rows have to fit the table the store holds
        dataset = config.declared_dataset if drop else dataset_for(store, config)
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
            stop=stop.event,
        )
    state.emit(
        summary.as_dict(),
        lambda: out.print(
            f"seeded {summary.dataset} in {summary.store}: {summary.tables} subtables, {summary.rows:,} rows "
            f"in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s)"
            + (f"; interrupted, {rows - summary.rows:,} rows not written" if summary.interrupted else "")
        ),
    )
    if summary.interrupted and stop.reason == "SIGINT":
        raise KeyboardInterrupt  # what was written is summarized above; an interrupted command exits 130


def status(ctx: typer.Context, database: str | None = database_option(), stable: str | None = stable_option()) -> None:
    """Say whether the store answers, its version, its databases and the rows in the served super table.

    Exits 4 when TDengine is configured (--store tdengine) and unreachable; 1 when the embedded store's file
    does not exist (status never creates it) or is damaged.

    Example:

        taosprsp --store tdengine db status
    """
    from taosprsp.stores import dataset_for, open_store

    state: State = ctx.obj
    config = state.config(dataset={"stable": stable}, database={"name": database})
    with open_store(config, create=False, verify=True) as store:
        dataset = dataset_for(store, config)
        found = store.status(dataset)
    fields = [f"{f.name} {f.tdengine_type()}{' TAG' if f in dataset.tags else ''}" for f in dataset.fields]

    def human() -> None:
        table = Table(show_header=False, box=None)
        for key, value in (
            ("store", found.kind),
            ("target", found.target),
            ("reachable", "yes" if found.reachable else "no"),
            ("version", found.version),
            ("databases", ", ".join(found.databases)),
            (f"rows in {config.stable}", "-" if found.rows is None else f"{found.rows:,}"),
            ("subtables", "-" if found.subtables is None else f"{found.subtables:,}"),
            (f"fields ({dataset.name})", ", ".join(fields)),
            *((("left out", ", ".join(dataset.left_out)),) if dataset.left_out else ()),
        ):
            table.add_row(key, str(value))
        out.print(table)

    state.emit({**found.__dict__, "dataset": dataset.name, "fields": fields, "left_out": list(dataset.left_out)}, human)


def purge(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Drop what is listed; without it, only list."),
) -> None:
    """List what taosprsp left on the TDengine server, and with --yes drop it.

    Left over are the throwaway databases of test and bench runs that were killed (taosprsp_test_*,
    taosprsp_bench_*, with their topics and consumer groups) and taosprsp consumer groups (taosprsp-*: a
    serve's, a forwarder's) no consumer uses. Nothing else is touched. Works on the server of \\[tdengine],
    whatever --store says.

    Example:

        taosprsp db purge          # list
        taosprsp db purge --yes    # drop
    """
    from taosprsp.stores import open_tdengine
    from taosprsp.stores.leftovers import purge as purge_leftovers

    state: State = ctx.obj
    config = state.config()
    with open_tdengine(config) as store:
        found = purge_leftovers(store, remove=yes)
        where = store.describe()

    def human() -> None:
        if not found:
            out.print(f"nothing left over on {where}", highlight=False)
            return
        out.print(f"dropped from {where}:" if yes else f"left over on {where} (drop with --yes):", highlight=False)
        for line in found.lines():
            out.print(f"  {line}", highlight=False, markup=False)

    state.emit({**found.as_dict(), "removed": yes and bool(found)}, human)
