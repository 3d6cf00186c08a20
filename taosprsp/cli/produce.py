"""`taosprsp produce`: options in, one call of the library's producer, a summary out."""

from __future__ import annotations

import typer

from taosprsp.cli.common import (
    ProtocolChoice,
    State,
    background_option,
    choice,
    count_option,
    database_option,
    duration_option,
    err,
    out,
    run_duration_option,
    seed_option,
    stable_option,
    tables_option,
    value_of,
)
from taosprsp.config import MIN_INTERVAL
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
        minimum=MIN_INTERVAL,
        help="Seed style: one batch every INTERVAL (e.g. 250ms, at least 1ms); the rate becomes batch/interval, "
        "so it does not go with --rate.",
    ),
    batch: int | None = typer.Option(
        None,
        "--batch",
        "-b",
        min=1,
        help="Rows per write. \\[default: a tenth of a second's rows, at most 10,000]",
    ),
    count: int | None = count_option("rows"),
    duration: float | None = run_duration_option(),
    tables: int | None = tables_option("Subtables to spread rows over."),
    protocol: ProtocolChoice | None = typer.Option(
        None,
        "--protocol",
        help="stmt2 (columnar binds), or schemaless line, telnet or json (TDengine only).",
    ),
    sink: SinkChoice = typer.Option(
        "store",
        "--sink",
        help="store: write; null: generate and encode only, to show the generator's ceiling; mqtt: publish each "
        "row as a message to mqtt.url (mqtt.topic, mqtt.format), as devices would.",
    ),
    seed_value: int | None = seed_option(),
    first_table: int = typer.Option(
        0,
        "--first-table",
        min=0,
        help="Number of the first subtable (d0 is 0): producers on disjoint subtables run side by side.",
    ),
    background: bool = background_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Generate rows with numpy and write them at a controlled rate; Ctrl-C or SIGTERM flushes and summarizes.

    Rows that could not be written after reconnecting, or that the store refused (not retried: a reconnect
    cannot cure a schema mismatch), are counted and make the exit code 5.

    Examples:

        taosprsp produce --rate 50000 --duration 30s
        taosprsp produce --interval 250ms --batch 250 --tables 10
        taosprsp produce --rate 5000 --tables 10 --first-table 10   # beside one on d0..d9
        taosprsp --json produce --count 1000000 --rate 0 --sink null
        taosprsp produce --sink mqtt --rate 1000   # simulated devices; `ingest mqtt` takes them in
    """
    from taosprsp.lifecycle import mark_ready
    from taosprsp.pacing import ProduceStats
    from taosprsp.produce import ProduceOptions, StopSignal
    from taosprsp.produce import produce as run_produce
    from taosprsp.progress import live_produce_stats
    from taosprsp.stores import dataset_for, open_store, resolve_kind

    state: State = ctx.obj
    config = state.config(
        dataset={"tables": tables, "stable": stable},
        database={"name": database},
        producer={
            "rate": rate,
            "batch": batch,
            "interval": interval,
            "protocol": value_of(protocol),
            "seed": seed_value,
        },
    )
    if background:
        state.detach(config, "produce", "producer")
        return
    options = ProduceOptions.from_settings(
        config.producer,
        config.dataset.tables,
        count=count,
        sink=sink.value,
        duration=duration,
        first_table=first_table,
    )
    kind = resolve_kind(config) if sink.value == "store" else None
    store = open_store(config, kind) if kind else None
    try:
        dataset = dataset_for(store, config) if store is not None else config.declared_dataset
        with StopSignal() as stop, live_produce_stats(state.show_progress) as show:

            def on_stats(stats: ProduceStats) -> None:
                if stats.rows_written:
                    mark_ready()  # for --background: the first rows are in
                show(stats)

            if sink.value == "mqtt":
                from taosprsp.mqtt import BrokerOptions, MessageMapping, publish

                mapping = MessageMapping.from_settings(config.mqtt, dataset, config.database.precision, config.stable)
                stats = publish(
                    dataset,
                    mapping,
                    BrokerOptions.from_settings(config.mqtt),
                    options,
                    qos=config.mqtt.qos,
                    inflight=config.mqtt.inflight,
                    on_stats=on_stats,
                    stop=stop.event,
                )
            else:
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
            f"failed {stats.rows_failed:,} ({stats.rows_rejected:,} refused by the store), errors {stats.errors}, "
            f"stopped by {stats.stopped_by}"
        ),
    )
    if stats.ran_ahead:
        err.print(
            f"warning: timestamps ran {stats.ahead_seconds:,.1f} s ahead of the clock: at "
            f"{config.database.precision} precision a subtable takes at most one row per tick; spread the rows over "
            "more --tables, or use a finer database.precision",
            style="yellow",
            markup=False,
            highlight=False,
        )
    if stats.rows_failed:
        refused = f"{stats.rows_rejected:,} refused by the store, not retried; " if stats.rows_rejected else ""
        raise TaosprspError(
            f"{stats.rows_failed:,} rows could not be written ({refused}last error: {stats.last_error})",
            ExitCode.DATA_LOST,
        )
    if stop.reason == "SIGINT":
        raise KeyboardInterrupt  # flushed and summarized above; still exit 130, as an interrupted command does
