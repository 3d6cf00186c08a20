"""`taosprsp db up`, `ps`, `teardown` and `demo`: what taosprsp starts, lists and stops."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from taosprsp.cli.common import (
    State,
    duration_option,
    err,
    insecure_option,
    out,
    port_option,
    token_hint,
    token_option,
    warn_loudly,
)
from taosprsp.errors import TaosprspError


def db_up(
    ctx: typer.Context,
    pull: bool = typer.Option(
        True,
        "--pull/--no-pull",
        help="Pull the pinned image (docker.image:docker.tag) before creating the container.",
    ),
    benchmark: bool = typer.Option(
        False,
        "--benchmark",
        help="Then pre-populate database.name with taosBenchmark: dataset.tables subtables of meters, "
        "10,000 rows each. It drops and recreates that database.",
    ),
    native: bool = typer.Option(
        False,
        "--native",
        help="Run the installed taosd and taosadapter instead of Docker; config, data and logs under state.dir/native.",
    ),
    wait: float | None = duration_option(
        "--wait",
        help="How long to wait for taosAdapter to answer (e.g. 90s). \\[default: docker.wait]",
    ),
) -> None:
    """Start TDengine in Docker (the pinned image, ports on 127.0.0.1) and wait until taosAdapter answers.

    Idempotent: when TDengine already runs it says so; a stopped container is started again.

    Exits 6 when there is no Docker engine (use --native where TDengine is installed, or --store embedded),
    4 when TDengine does not answer in time.

    Examples:

        taosprsp db up
        taosprsp db up --no-pull --benchmark
        taosprsp db up --native
    """
    from taosprsp import lifecycle

    state: State = ctx.obj
    config = state.config(docker={"wait": wait})
    result = lifecycle.db_up(config, pull=pull, benchmark=benchmark, native=native, show_progress=state.show_progress)

    def human() -> None:
        if result.mode == "docker":
            where = f"container {result.where} ({result.image})"
        else:
            where = f"native processes ({result.where})"
        if result.action == "already running":
            verb = "is already running"
        else:
            verb = f"is up ({result.action} in {result.seconds:.1f} s)"
        out.print(
            f"TDengine {result.version} {verb} in {where}; taosAdapter at {result.url}", markup=False, highlight=False
        )
        if result.benchmark:
            out.print(f"taosBenchmark: {result.benchmark}", markup=False, highlight=False)
        for note in result.notes:
            err.print(f"note: {note}", style="yellow", markup=False, highlight=False)

    state.emit(result.as_dict(), human)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def ps(ctx: typer.Context) -> None:
    """List the processes taosprsp started in the background (pid files in state.dir), and whether they still run.

    A pid file whose process is gone, or whose pid now belongs to another process, is listed as not alive.

    Examples:

        taosprsp ps
        taosprsp --json ps
    """
    from taosprsp.lifecycle import list_processes

    state: State = ctx.obj
    processes = list_processes(state.config())

    def human() -> None:
        if not processes:
            out.print("no background processes")
            return
        table = Table("name", "pid", "alive", "uptime", "last log line")
        for p in processes:
            alive = "[green]yes[/]" if p.alive else "[red]no (stale pid file)[/]"
            table.add_row(p.name, str(p.pid), alive, _uptime(p.uptime), Text(p.last_log_line))
        out.print(table)

    state.emit([p.as_dict() for p in processes], human)


def teardown(
    ctx: typer.Context,
    volumes: bool = typer.Option(
        False,
        "--volumes",
        help="Also remove the container's data volume (docker.volume): the data is gone.",
    ),
    purge: bool = typer.Option(
        False,
        "--purge",
        help="Also delete the native TDengine's config, data and logs (state.dir/native).",
    ),
) -> None:
    """Stop only what taosprsp started: its background processes, then its TDengine container.

    A process is signalled (SIGTERM, then SIGKILL after 10 s) only while its pid still belongs to the process
    taosprsp started; stale pid files are removed without signalling anything. The container is removed only
    when taosprsp created it.

    Without a Docker engine the processes are still stopped. Running it twice is harmless.

    Examples:

        taosprsp teardown
        taosprsp teardown --volumes --purge
    """
    from taosprsp.lifecycle import teardown as stop_all

    state: State = ctx.obj
    summary = stop_all(state.config(), volumes=volumes, purge=purge)

    def human() -> None:
        lines = [f"stopped {p['name']} (pid {p['pid']}, {p['signal']})" for p in summary.stopped]
        lines += [f"removed the stale pid file of {p['name']} (pid {p['pid']}: {p['reason']})" for p in summary.stale]
        lines.append(summary.docker)
        if summary.volume_removed:
            lines.append("removed its data volume")
        if summary.purged:
            lines.append(f"deleted {summary.purged}")
        if summary.nothing_to_stop:
            lines.append("nothing to stop")
        for line in lines:
            out.print(line, markup=False, highlight=False)

    state.emit(summary.as_dict(), human)
    if summary.still_running:
        names = ", ".join(f"{p['name']} (pid {p['pid']})" for p in summary.still_running)
        raise TaosprspError(f"still running after SIGKILL: {names}; their pid files are kept")


def demo(
    ctx: typer.Context,
    rate: float = typer.Option(1000.0, "--rate", "-r", min=1, help="Rows/s the background producer writes."),
    history: int = typer.Option(36_000, "--history", min=0, help="Rows of the past hour seeded into an empty store."),
    port: int | None = port_option("Server port.", "server.port"),
    token: str | None = token_option(),
    insecure: bool = insecure_option(),
    mqtt: bool = typer.Option(
        False,
        "--mqtt",
        help="The edge path: the producer publishes to an MQTT broker (mqtt.url; mosquitto is started there "
        "when none answers) and `ingest mqtt` writes into the store.",
    ),
) -> None:
    """The whole pipeline in one command: store, seed, producer, server and dashboard; Ctrl-C stops it all.

    Uses TDengine when one answers (or starts one with `db up` where Docker runs), else the embedded store.

    Examples:

        taosprsp demo
        taosprsp --config configs/stocks.toml demo --store embedded --port 8090
        taosprsp demo --mqtt   # producer -> broker -> ingest -> store -> serve
    """
    from taosprsp.demo import run_demo
    from taosprsp.serve import served_access
    from taosprsp.web import ws_url

    state: State = ctx.obj
    config = state.config(server={"port": port, "token": token})
    warn_loudly(served_access(config, insecure).exposure_warning)  # before a store is started or seeded

    def ready(url: str, decision: Any, broker: Any) -> None:
        path = f"\n{broker.reason}; publishing to it and ingesting from it" if broker else ""
        state.emit(
            {
                "url": url,
                "websocket": ws_url(url),
                "store": decision.kind,
                "reason": decision.reason,
                "mqtt": {"broker": broker.url, "reason": broker.reason} if broker else None,
            },
            lambda: err.print(
                f"{decision.reason}{path}\nproducing {rate:g} rows/s in the background; dashboard: {url}"
                f"{token_hint(config.server.token)}\nCtrl-C to stop everything",
                highlight=False,
                markup=False,
            ),
        )
        sys.stdout.flush()

    run_demo(config, rate, history, ready, show_progress=state.show_progress, insecure=insecure, mqtt=mqtt)
