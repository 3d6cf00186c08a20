"""`taosprsp serve` (live Perspective tables and the dashboard) and `taosprsp viewer` (the dashboard alone)."""

from __future__ import annotations

import sys

import typer

from taosprsp.cli.common import FeedChoice, State, background_option, duration_option, err, out, port_option, value_of


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to bind. \\[default: server.host, 127.0.0.1]"),
    port: int | None = port_option("Port (0: any free one).", "server.port"),
    feed: FeedChoice | None = typer.Option(
        None,
        "--feed",
        help="tmq (TDengine push), poll, or auto (tmq on TDengine, poll otherwise).",
    ),
    interval: float | None = duration_option(
        "--interval",
        help="Poll interval, e.g. 100ms. \\[default: server.interval]",
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="Rows kept in the rolling-window table. \\[default: server.limit]",
    ),
    background: bool = background_option(),
) -> None:
    """Serve live Perspective tables over a WebSocket (/websocket) and the dashboard at /.

    Two tables per dataset: a rolling window of the newest rows, and the latest row per subtable.
    Rows are read incrementally (only what is newer than each subtable's watermark) and pushed as Arrow.

    Examples:

        taosprsp serve
        taosprsp serve --store tdengine --feed poll --interval 100ms --port 8080
    """
    from taosprsp.serve import LiveServer
    from taosprsp.web import ws_url

    state: State = ctx.obj
    config = state.config(
        server={"host": host, "port": port, "feed": value_of(feed), "interval": interval, "limit": limit}
    )
    if background:
        from taosprsp.lifecycle import start_background

        info = start_background(config, "serve", state.argv_without_background())
        state.emit(
            info.as_dict(), lambda: out.print(f"server running in the background: pid {info.pid}, log {info.log}")
        )
        return

    def ready(url: str) -> None:
        websocket = ws_url(url)
        state.emit(
            {"url": url, "websocket": websocket, "tables": [config.perspective_table, config.latest_table]},
            lambda: err.print(
                f"serving {config.perspective_table} and {config.latest_table} from the {service.kind} store "
                f"({service.mode} feed)\n  dashboard: {url}\n  websocket: {websocket}\nCtrl-C to stop",
                highlight=False,
            ),
        )
        sys.stdout.flush()

    service = LiveServer(config, on_ready=ready)
    service.serve_forever()


def viewer(
    ctx: typer.Context,
    ws: str = typer.Option("ws://127.0.0.1:8080/websocket", "--ws", help="WebSocket of a running `taosprsp serve`."),
    port: int | None = port_option("Port for the dashboard.", "viewer.port"),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
) -> None:
    """Serve the dashboard (offline: assets from viewer/node_modules) against a given server, and open it.

    `taosprsp serve` already serves the dashboard at its own /; use this for a server elsewhere.

    Example:

        taosprsp viewer --ws ws://dashboards.example.com:8080/websocket --no-open
    """
    from taosprsp.web import serve_viewer

    state: State = ctx.obj
    config = state.config(viewer={"port": port, "open": False if no_open else None})
    serve_viewer(
        config,
        ws,
        config.viewer.open,
        on_ready=lambda url: err.print(f"dashboard: {url} (data from {ws})", highlight=False),
    )
