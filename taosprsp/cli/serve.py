"""`taosprsp serve` (live Perspective tables and the dashboard) and `taosprsp viewer` (the dashboard alone)."""

from __future__ import annotations

import sys

import typer

from taosprsp.cli.common import (
    FeedChoice,
    State,
    background_option,
    database_option,
    duration_option,
    err,
    insecure_option,
    port_option,
    stable_option,
    token_hint,
    token_option,
    value_of,
    warn_loudly,
)
from taosprsp.config import MIN_INTERVAL

TOKEN_OPTION = "--token"


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
        minimum=MIN_INTERVAL,
        help="Poll interval, e.g. 100ms (at least 1ms). \\[default: server.interval]",
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="Rows kept in the rolling-window table. \\[default: server.limit]",
    ),
    background: bool = background_option(),
    database: str | None = database_option(),
    stable: str | None = stable_option(),
    token: str | None = token_option(),
    insecure: bool = insecure_option(),
) -> None:
    """Serve live Perspective tables over a WebSocket (/websocket) and the dashboard at /.

    Tables per dataset: a rolling window of the newest rows, the latest row per subtable, and derived
    aggregates per group and per time bucket (what the dashboard's grid and chart view).
    Rows are read incrementally (on the embedded store as soon as a producer commits) and pushed as Arrow.
    Clients may read, not write; beyond loopback a token is required (README, "Security").

    Examples:

        taosprsp serve
        taosprsp serve --store tdengine --feed poll --interval 100ms --port 8080
        taosprsp serve --store tdengine --database mydb --stable mytable   # your own super table
        TAOSPRSP_SERVER_TOKEN=$(openssl rand -hex 24) taosprsp serve --host 0.0.0.0
    """
    from taosprsp.access.policy import TOKEN_ENV
    from taosprsp.lifecycle import mark_ready
    from taosprsp.serve import LiveServer, served_access
    from taosprsp.web import ws_url

    state: State = ctx.obj
    config = state.config(
        server={
            "host": host,
            "port": port,
            "feed": value_of(feed),
            "interval": interval,
            "limit": limit,
            "token": token,
        },
        dataset={"stable": stable},
        database={"name": database},
    )
    if background:
        warn_loudly(served_access(config, insecure).exposure_warning)  # refused here, not in a log nobody reads
        secrets = {TOKEN_ENV: token} if token else {}
        state.detach(config, "serve", "server", secret_options=(TOKEN_OPTION,), secrets=secrets)
        return

    def ready(url: str) -> None:
        websocket = ws_url(url)
        state.emit(
            {
                "url": url,
                "websocket": websocket,
                "tables": [config.perspective_table, config.latest_table, *service.derived.hosted],
                "token_required": bool(config.server.token),
            },
            lambda: err.print(
                f"serving {config.perspective_table} and {config.latest_table} from the {service.kind} store "
                f"({service.mode} feed)\n  dashboard: {url}\n  websocket: {websocket}"
                f"{token_hint(config.server.token)}\nCtrl-C to stop",
                highlight=False,
            ),
        )
        sys.stdout.flush()
        mark_ready()

    service = LiveServer(config, on_ready=ready, insecure=insecure)
    warn_loudly(service.access.exposure_warning)
    service.serve_forever()


def viewer(
    ctx: typer.Context,
    ws: str = typer.Option("ws://127.0.0.1:8080/websocket", "--ws", help="WebSocket of a running `taosprsp serve`."),
    port: int | None = port_option("Port for the dashboard.", "viewer.port"),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
    token: str | None = token_option(),
    insecure: bool = insecure_option(),
) -> None:
    """Serve the dashboard (offline: assets from viewer/node_modules) against a given server, and open it.

    `taosprsp serve` already serves the dashboard at its own /; use this for a server elsewhere. That server
    must list this page's origin in its server.allowed_origins (printed at start). With server.token set,
    this page asks for the same token and the dashboard presents it to the server.

    Example:

        taosprsp viewer --ws ws://dashboards.example.com:8080/websocket --no-open
    """
    from taosprsp.web import page_origin, serve_viewer

    state: State = ctx.obj
    config = state.config(viewer={"port": port, "open": False if no_open else None}, server={"token": token})

    def ready(url: str) -> None:
        origin = page_origin(url)
        err.print(
            f"dashboard: {url} (data from {ws}){token_hint(config.server.token)}\n"
            f'  that server must allow this page: server.allowed_origins = ["{origin}"] '
            f"(or TAOSPRSP_SERVER_ALLOWED_ORIGINS={origin})",
            highlight=False,
            markup=False,
        )

    serve_viewer(config, ws, config.viewer.open, on_ready=ready, insecure=insecure, on_warning=warn_loudly)
