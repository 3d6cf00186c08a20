"""`taosprsp produce`: options in, one call of the library's producer, a summary out."""

from __future__ import annotations

import typer

from taosprsp.cli.common import (
    ProtocolChoice,
    State,
    background_option,
    choice,
    duration_option,
    out,
    seed_option,
    tables_option,
    value_of,
)
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.produce import Sink

SinkChoice = choice("SinkChoice", Sink)


def produce(
    ctx: typer.Context,
    rate: float | None = typer.Option(
        None,
        "--rate",
        "-r",
        min=0,
        help="Target rows/s across all subtables (0: as fast as possible). \\[default: producer.rate]",
    ),
    interval: float | None = duration_option(
        "--interval",
        help="Seed style: one batch every INTERVAL (e.g. 250ms); the rate becomes batch/interval.",
    ),
    batch: int | None = typer.Option(
        None,
        "--batch",
        "-b",
        min=1,
        help="Rows per write. \\[default: a tenth of a second's rows, at most 10,000]",
    ),
    count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N rows."),
    duration: float | None = duration_option("--duration", "-d", help="Stop after this long (e.g. 30s)."),
    tables: int | None = tables_option("Subtables to spread rows over."),
    protocol: ProtocolChoice | None = typer.Option(
        None,
        "--protocol",
        help="stmt2 (columnar binds), or schemaless line, telnet or json (TDengine only).",
    ),
    sink: SinkChoice = typer.Option(
        "store",
        "--sink",
        help="store: write; null: generate and encode only, to show the generator's ceiling.",
    ),
    seed_value: int | None = seed_option(),
    background: bool = background_option(),
) -> None:
    """Generate rows with numpy and write them at a controlled rate; Ctrl-C or SIGTERM flushes and summarizes.

    Rows that could not be written after reconnecting are counted and make the exit code 5.

    Examples:

        taosprsp produce --rate 50000 --duration 30s
        taosprsp produce --interval 250ms --batch 250 --tables 10
        taosprsp --json produce --count 1000000 --rate 0 --sink null
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.produce import ProduceOptions, StopSignal
    from taosprsp.produce import produce as run_produce
    from taosprsp.progress import live_produce_stats
    from taosprsp.stores import open_store, resolve_kind

    state: State = ctx.obj
    config = state.config(
        dataset={"tables": tables},
        producer={
            "rate": rate,
            "batch": batch,
            "interval": interval,
            "protocol": value_of(protocol),
            "seed": seed_value,
        },
    )
    if background:
        from taosprsp.lifecycle import start_background

        info = start_background(config, "produce", state.argv_without_background())
        state.emit(
            info.as_dict(), lambda: out.print(f"producer running in the background: pid {info.pid}, log {info.log}")
        )
        return
    options = ProduceOptions.from_settings(
        config.producer,
        config.dataset.tables,
        count=count,
        sink=sink.value,
        duration=duration,
    )
    dataset = get_dataset(config.dataset.name)
    kind = resolve_kind(config) if sink.value == "store" else None
    store = open_store(config, kind) if kind else None
    try:
        with StopSignal() as stop, live_produce_stats(state.show_progress) as on_stats:
            stats = run_produce(
                store,
                dataset,
                config.stable,
                config.database.precision,
                options,
                reopen=(lambda: open_store(config, kind)) if kind else None,
                on_stats=on_stats,
                stop=stop.event,
            )
    finally:
        if store is not None:
            store.close()
    state.emit(
        stats.as_dict(),
        lambda: out.print(
            f"produced {stats.rows_written:,} rows into {stats.store} in {stats.seconds:.2f} s "
            f"({stats.rows_per_second:,.0f} rows/s, {stats.batches:,} batches of {stats.batch}); "
            f"failed {stats.rows_failed:,}, errors {stats.errors}, stopped by {stats.stopped_by}"
        ),
    )
    if stats.rows_failed:
        raise TaosprspError(
            f"{stats.rows_failed:,} rows could not be written (last error: {stats.last_error})", ExitCode.DATA_LOST
        )
