"""`taosprsp ingest mqtt`: options in, one call of the library's ingester, a summary out."""

from __future__ import annotations

import typer

from taosprsp.cli.common import (
    State,
    background_option,
    broker_url_option,
    choice,
    count_option,
    database_option,
    out,
    run_duration_option,
    stable_option,
    value_of,
)
from taosprsp.config import PayloadFormat
from taosprsp.errors import ExitCode, TaosprspError

PayloadFormatChoice = choice("PayloadFormatChoice", PayloadFormat)


def mqtt(
    ctx: typer.Context,
    url: str | None = broker_url_option(),
    topic: str | None = typer.Option(
        None,
        "--topic",
        help="Topic pattern: levels -> subtable and tags, e.g. 'plant/{location}/{tbname}/power'. "
        "\\[default: mqtt.topic]",
    ),
    payload_format: PayloadFormatChoice | None = typer.Option(
        None, "--format", help="json, or line (InfluxDB line protocol). \\[default: mqtt.format]"
    ),
    client_id: str | None = typer.Option(
        None, "--client-id", help="Client id the broker keeps the session under. \\[default: mqtt.client_id]"
    ),
    clean_session: bool | None = typer.Option(
        None,
        "--clean-session/--persistent-session",
        help="Drop the broker's session on exit: messages published while no ingester runs are lost. "
        "\\[default: persistent]",
    ),
    batch: int | None = typer.Option(None, "--batch", "-b", min=1, help="Messages per write. \\[default: mqtt.batch]"),
    count: int | None = count_option("messages"),
    duration: float | None = run_duration_option(),
    background: bool = background_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Subscribe to an MQTT broker and write every message into the store in batches, acknowledging each one
    only after its row is written; Ctrl-C or SIGTERM writes what is in hand and summarizes.

    Malformed messages are counted by reason (with a sample) and never stop the ingester.

    Examples:

        taosprsp ingest mqtt --url mqtt://127.0.0.1:1883 --topic 'plant/{location}/{tbname}/power'
        taosprsp --json ingest mqtt --format line --count 100000
    """
    from taosprsp.lifecycle import mark_ready
    from taosprsp.mqtt import BrokerOptions, IngestOptions, MessageMapping, ingest
    from taosprsp.produce import StopSignal
    from taosprsp.progress import live_ingest_stats
    from taosprsp.stores import dataset_for, open_store, resolve_kind

    state: State = ctx.obj
    config = state.config(
        mqtt={
            "url": url,
            "topic": topic,
            "format": value_of(payload_format),
            "client_id": client_id,
            "clean_session": clean_session,
            "batch": batch,
        },
        dataset={"stable": stable},
        database={"name": database},
    )
    if background:
        state.detach(config, "ingest-mqtt", "ingester")
        return
    options = IngestOptions.from_settings(config.mqtt, count=count, duration=duration)
    kind = resolve_kind(config)
    store = open_store(config, kind)
    try:
        dataset = dataset_for(store, config)
        mapping = MessageMapping.from_settings(config.mqtt, dataset, config.database.precision, config.stable)
        with StopSignal() as stop, live_ingest_stats(state.show_progress) as on_stats:
            stats = ingest(
                store,
                dataset,
                mapping,
                BrokerOptions.from_settings(config.mqtt),
                options,
                reopen=lambda: open_store(config, kind),
                on_stats=on_stats,
                stop=stop.event,
                on_ready=mark_ready,
            )
    finally:
        store.close()
    rejected = ", ".join(f"{reason} {n:,}" for reason, n in stats.rejected.counts.items())
    state.emit(
        stats.as_dict(),
        lambda: out.print(
            f"ingested {stats.messages:,} messages from {stats.broker} into {stats.store} in {stats.seconds:.2f} s "
            f"({stats.messages_per_second:,.0f} messages/s): {stats.rows_written:,} rows, "
            f"{stats.rejected.total:,} rejected{f' ({rejected})' if rejected else ''}, "
            f"{stats.redelivered:,} redelivered, errors {stats.errors}, stopped by {stats.stopped_by}",
            markup=False,
            highlight=False,
        ),
    )
    if stats.unacked and not options.persistent:
        raise TaosprspError(
            f"{stats.unacked:,} messages could not be written and the session is not kept (last error: "
            f"{stats.last_error})",
            ExitCode.DATA_LOST,
        )
    if stop.reason == "SIGINT":
        raise KeyboardInterrupt  # written and summarized above; still exit 130, as an interrupted command does
