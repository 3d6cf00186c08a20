"""`taosprsp forward mqtt`: options in, one call of the library's forwarder, a summary out."""

from __future__ import annotations

import typer

from taosprsp.cli.common import (
    State,
    background_option,
    broker_url_option,
    count_option,
    database_option,
    out,
    run_duration_option,
    stable_option,
)
from taosprsp.errors import ExitCode, TaosprspError


def mqtt(
    ctx: typer.Context,
    url: str | None = broker_url_option(),
    topic: str | None = typer.Option(
        None,
        "--topic",
        help="Topic of each row: {stable} and any field in braces. \\[default: mqtt.forward_topic]",
    ),
    count: int | None = count_option("rows"),
    duration: float | None = run_duration_option(),
    background: bool = background_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
) -> None:
    """Publish every row the store takes from now on to an MQTT broker, one JSON object per row (QoS mqtt.qos);
    Ctrl-C or SIGTERM waits for the broker to confirm what was sent and summarizes.

    TDengine pushes new rows through TMQ; the embedded store is read after a watermark every
    mqtt.forward_interval. Messages the broker did not confirm make the exit code 5.

    Examples:

        taosprsp forward mqtt --url mqtt://127.0.0.1:1883 --topic 'taosprsp/{stable}/{location}/{tbname}'
        mosquitto_sub -t 'taosprsp/meters/#' -q 1
    """
    from taosprsp.lifecycle import mark_ready
    from taosprsp.mqtt import BrokerOptions, ForwardOptions, forward, forward_group, forward_mapping
    from taosprsp.produce import StopSignal
    from taosprsp.progress import live_forward_stats
    from taosprsp.stores import dataset_for, open_store, resolve_kind

    state: State = ctx.obj
    config = state.config(
        mqtt={"url": url, "forward_topic": topic}, dataset={"stable": stable}, database={"name": database}
    )
    if background:
        state.detach(config, "forward-mqtt", "forwarder")
        return
    options = ForwardOptions.from_settings(config.mqtt, count=count, duration=duration)
    store = open_store(config, resolve_kind(config))
    try:
        dataset = dataset_for(store, config)
        mapping = forward_mapping(
            dataset, config.database.precision, config.stable, options.topic, options.timestamp_unit
        )
        with StopSignal() as stop, live_forward_stats(state.show_progress) as on_stats:
            stats = forward(
                store,
                dataset,
                mapping,
                BrokerOptions.from_settings(config.mqtt),
                options,
                forward_group(config.database.name, config.stable),
                on_stats=on_stats,
                stop=stop.event,
                on_ready=mark_ready,
            )
    finally:
        store.close()
    state.emit(
        stats.as_dict(),
        lambda: out.print(
            f"forwarded {stats.messages:,} of {stats.rows_read:,} new rows from {stats.store} to {stats.broker} "
            f"({stats.topic}) in {stats.seconds:.2f} s; unconfirmed {stats.unconfirmed:,}, errors {stats.errors}, "
            f"stopped by {stats.stopped_by}",
            markup=False,
            highlight=False,
        ),
    )
    if stats.unconfirmed:
        raise TaosprspError(
            f"the broker did not confirm {stats.unconfirmed:,} messages (last error: {stats.last_error or 'none'})",
            ExitCode.DATA_LOST,
        )
    if stop.reason == "SIGINT":
        raise KeyboardInterrupt
