"""The `taosprsp` command: thin wrappers that turn options into calls of the library.

Errors a user can cause surface as one red line on stderr and a documented exit code (README, "Exit
codes"); `-v` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table

from taosprsp import __version__
from taosprsp.config import Config, as_dict, load_config, parse_duration, to_toml
from taosprsp.errors import ExitCode, TaosprspError

GLOBAL_FLAGS = {"--json", "--verbose", "-v", "-vv", "-vvv", "--quiet", "-q"}
GLOBAL_VALUED = {"--config", "-c", "--store"}


def hoist_global_options(args: list[str], own_json: frozenset[str] = frozenset({"bench"})) -> list[str]:
    """Move global options written after the subcommand (`taosprsp db seed --store embedded`) to the front.

    `--json` stays in place for commands that have their own `--json PATH` option.
    """
    front: list[str] = []
    rest: list[str] = []
    command: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.split("=", 1)[0]
        if arg == "--":
            rest.extend(args[index:])
            break
        if name in GLOBAL_VALUED:
            take = 1 if "=" in arg else 2
            front.extend(args[index:index + take])
            index += take
            continue
        if command is None and not arg.startswith("-"):
            command = arg
        if arg in GLOBAL_FLAGS and not (arg == "--json" and command in own_json):
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


class GlobalOptionsGroup(TyperGroup):
    """Accepts the global options anywhere on the command line, as users write them."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        global _invocation
        _invocation = list(args)
        return super().parse_args(ctx, hoist_global_options(list(args)))


app = typer.Typer(
    name="taosprsp",
    cls=GlobalOptionsGroup,
    help="IoT time series from TDengine (or an embedded store) into live Perspective dashboards.\n\n"
    "Every stage of the pipeline is a subcommand and reads one TOML config (--config).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="The database: start it, seed it, check it.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class StoreChoice(str, Enum):
    auto = "auto"
    tdengine = "tdengine"
    embedded = "embedded"


@dataclass
class State:
    """Global options, shared by every command through the Typer context."""

    config_path: Optional[Path] = None
    store: Optional[str] = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config(self, **sections: dict[str, Any]) -> Config:
        """The effective config: the global options and this command's flags over file, environment, defaults."""
        merged: dict[str, dict[str, Any]] = {"store": {"kind": self.store}}
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return load_config(self.config_path, overrides=merged)


_current = State()
_invocation: list[str] = []


def _state() -> State:
    """The global options of the invocation being run (set by `main_options`)."""
    return _current


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Map the library's user errors to one red line and an exit code, in one place."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TaosprspError as exc:
            if _state().verbose:
                err.print(traceback.format_exc(), style="dim", markup=False, highlight=False)
            err.print(f"error: {exc}", style="bold red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err.print("interrupted", style="yellow")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def emit(data: Any, human: Callable[[], None]) -> None:
    """Print `data` as JSON on stdout with --json, else call `human` to render it."""
    if _state().json:
        typer.echo(json.dumps(data, default=str))
    else:
        human()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taosprsp {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", envvar="TAOSPRSP_CONFIG", help="TOML config file (see configs/default.toml).",
        dir_okay=False,
    ),
    store: Optional[StoreChoice] = typer.Option(
        None, "--store", help="auto: TDengine when it answers, else the embedded store. \\[default: auto]",
    ),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON document on stdout."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or live stats."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """IoT time series from TDengine (or an embedded store) into live Perspective dashboards."""
    global _current
    _current = State(config, store.value if store else None, json_output, verbose, quiet)


# --- config -------------------------------------------------------------------------------------------


@config_app.command("show")
@handle_errors
def config_show() -> None:
    """Print the effective config (flags > TAOSPRSP_* environment > --config file > defaults), secrets masked.

    Example:

        taosprsp --config configs/stocks.toml config show
    """
    config = _state().config()
    emit({"source": config.source, **as_dict(config)}, lambda: out.print(f"# from {config.source}\n" + to_toml(as_dict(config)), markup=False, highlight=False))


# --- db -----------------------------------------------------------------------------------------------


@db_app.command("seed")
@handle_errors
def db_seed(
    tables: Optional[int] = typer.Option(None, "--tables", "-t", min=1, help="Subtables to create. \\[default: dataset.tables]"),
    rows: int = typer.Option(0, "--rows", "-n", min=0, help="Rows of history to backfill, spread over the subtables."),
    span: str = typer.Option("1d", "--span", help="How far back the backfilled history reaches (e.g. 1h, 7d)."),
    drop: bool = typer.Option(False, "--drop", help="Drop and recreate the database (TDengine) or table (embedded) first."),
    seed_value: Optional[int] = typer.Option(None, "--seed", help="Random seed, for a reproducible backfill."),
) -> None:
    """Create the database, super table and subtables (idempotent); optionally backfill history.

    Example:

        taosprsp db seed --store embedded --rows 1000000 --span 1d
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.progress import interactive, progress_bar
    from taosprsp.seed import seed
    from taosprsp.stores import open_store

    state = _state()
    config = state.config(dataset={"tables": tables})
    span_seconds = parse_duration(span, "--span")
    dataset = get_dataset(config.dataset.name)
    with open_store(config) as store, progress_bar("seeding", rows, rows > 0 and interactive(state.quiet or state.json)) as bar:
        summary = seed(
            store, dataset, config.dataset.tables, config.database.precision, rows=rows, span_seconds=span_seconds,
            drop=drop, seed_value=seed_value, on_progress=(lambda n: bar.advance(0, n)) if bar else None,
        )
    emit(summary.as_dict(), lambda: out.print(
        f"seeded {summary.dataset} in {summary.store}: {summary.tables} subtables, {summary.rows:,} rows "
        f"in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s)"
    ))


@db_app.command("status")
@handle_errors
def db_status() -> None:
    """Say whether the store answers, its version, its databases and the rows in the served super table.

    Exits 4 when TDengine is configured (--store tdengine) and unreachable.

    Example:

        taosprsp --store tdengine db status
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.stores import open_store

    config = _state().config()
    with open_store(config) as store:
        status = store.status(get_dataset(config.dataset.name))

    def human() -> None:
        table = Table(show_header=False, box=None)
        for key, value in (
            ("store", status.kind), ("target", status.target), ("reachable", "yes" if status.reachable else "no"),
            ("version", status.version), ("databases", ", ".join(status.databases)),
            (f"rows in {config.stable}", "-" if status.rows is None else f"{status.rows:,}"),
        ):
            table.add_row(key, str(value))
        out.print(table)

    emit(status.__dict__, human)


# --- produce ------------------------------------------------------------------------------------------


@app.command()
@handle_errors
def produce(
    rate: Optional[float] = typer.Option(None, "--rate", "-r", min=0, help="Target rows/s across all subtables (0: as fast as possible). \\[default: producer.rate]"),
    interval: Optional[str] = typer.Option(None, "--interval", help="Seed style: one batch every INTERVAL (e.g. 250ms); the rate becomes batch/interval."),
    batch: Optional[int] = typer.Option(None, "--batch", "-b", min=1, help="Rows per write. \\[default: a tenth of a second's rows, at most 10,000]"),
    count: Optional[int] = typer.Option(None, "--count", "-n", min=1, help="Stop after N rows."),
    duration: Optional[str] = typer.Option(None, "--duration", "-d", help="Stop after this long (e.g. 30s)."),
    tables: Optional[int] = typer.Option(None, "--tables", "-t", min=1, help="Subtables to spread rows over. \\[default: dataset.tables]"),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="stmt2 (columnar binds), or schemaless line, telnet or json (TDengine only)."),
    sink: str = typer.Option("store", "--sink", help="store: write; null: generate and encode only, to show the generator's ceiling."),
    seed_value: Optional[int] = typer.Option(None, "--seed", help="Random seed, for a reproducible run."),
    background: bool = typer.Option(False, "--background", help="Run detached; pid file and log under the state directory (see `taosprsp ps`)."),
) -> None:
    """Generate rows with numpy and write them at a controlled rate; Ctrl-C or SIGTERM flushes and summarizes.

    Rows that could not be written after reconnecting are counted and make the exit code 5.

    Examples:

        taosprsp produce --rate 50000 --duration 30s
        taosprsp produce --interval 250ms --batch 250 --tables 10
        taosprsp --json produce --count 1000000 --rate 0 --sink null
    """
    from taosprsp.datasets import get_dataset
    from taosprsp.produce import ProduceOptions, StopSignal, produce as run_produce
    from taosprsp.progress import interactive, live_produce_stats
    from taosprsp.stores import open_store, resolve_kind

    state = _state()
    if sink not in ("store", "null"):
        raise TaosprspError(f"--sink must be store or null, got {sink!r}", ExitCode.USAGE)
    config = state.config(
        dataset={"tables": tables},
        producer={"rate": rate, "batch": batch, "interval": interval, "protocol": protocol, "seed": seed_value},
    )
    if background:
        from taosprsp.lifecycle import start_background

        info = start_background(config, "produce", _argv_without_background())
        emit(info.as_dict(), lambda: out.print(f"producer running in the background: pid {info.pid}, log {info.log}"))
        return
    options = ProduceOptions.from_settings(
        config.producer, config.dataset.tables, count=count, sink=sink,
        duration=parse_duration(duration, "--duration") if duration else None,
    )
    dataset = get_dataset(config.dataset.name)
    kind = resolve_kind(config) if sink == "store" else None
    store = open_store(config, kind) if kind else None
    try:
        with StopSignal() as stop, live_produce_stats(interactive(state.quiet or state.json)) as on_stats:
            stats = run_produce(
                store, dataset, config.stable, config.database.precision, options,
                reopen=(lambda: open_store(config, kind)) if kind else None, on_stats=on_stats, stop=stop.event,
            )
    finally:
        if store is not None:
            store.close()
    emit(stats.as_dict(), lambda: out.print(
        f"produced {stats.rows_written:,} rows into {stats.store} in {stats.seconds:.2f} s "
        f"({stats.rows_per_second:,.0f} rows/s, {stats.batches:,} batches of {stats.batch}); "
        f"failed {stats.rows_failed:,}, errors {stats.errors}, stopped by {stats.stopped_by}"
    ))
    if stats.rows_failed:
        raise TaosprspError(
            f"{stats.rows_failed:,} rows could not be written (last error: {stats.last_error})", ExitCode.DATA_LOST
        )


# --- serve and viewer ---------------------------------------------------------------------------------


@app.command()
@handle_errors
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind. \\[default: server.host, 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=0, max=65535, help="Port (0: any free one). \\[default: server.port]"),
    feed: Optional[str] = typer.Option(None, "--feed", help="tmq (TDengine push), poll, or auto (tmq on TDengine, poll otherwise)."),
    interval: Optional[str] = typer.Option(None, "--interval", help="Poll interval, e.g. 100ms. \\[default: server.interval]"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Rows kept in the rolling-window table. \\[default: server.limit]"),
    background: bool = typer.Option(False, "--background", help="Run detached; pid file and log under the state directory."),
) -> None:
    """Serve live Perspective tables over a WebSocket (/websocket) and the dashboard at /.

    Two tables per dataset: a rolling window of the newest rows, and the latest row per subtable.
    Rows are read incrementally (only what is newer than each subtable's watermark) and pushed as Arrow.

    Examples:

        taosprsp serve
        taosprsp serve --store tdengine --feed poll --interval 100ms --port 8080
    """
    from taosprsp.serve import LiveServer

    state = _state()
    config = state.config(server={"host": host, "port": port, "feed": feed, "interval": interval, "limit": limit})
    if background:
        from taosprsp.lifecycle import start_background

        info = start_background(config, "serve", _argv_without_background())
        emit(info.as_dict(), lambda: out.print(f"server running in the background: pid {info.pid}, log {info.log}"))
        return

    def ready(url: str) -> None:
        websocket = url.replace("http://", "ws://") + "websocket"
        if state.json:
            typer.echo(json.dumps({"url": url, "websocket": websocket, "tables": [config.perspective_table, config.latest_table]}))
        else:
            err.print(f"serving {config.perspective_table} and {config.latest_table} from the {service.kind} store "
                      f"({service.mode} feed)\n  dashboard: {url}\n  websocket: {websocket}\nCtrl-C to stop", highlight=False)
        sys.stdout.flush()

    service = LiveServer(config, on_ready=ready)
    service.serve_forever()


@app.command()
@handle_errors
def viewer(
    ws: str = typer.Option("ws://127.0.0.1:8080/websocket", "--ws", help="WebSocket of a running `taosprsp serve`."),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=0, max=65535, help="Port for the dashboard. \\[default: viewer.port]"),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
) -> None:
    """Serve the dashboard (offline: assets from viewer/node_modules) against a given server, and open it.

    `taosprsp serve` already serves the dashboard at its own /; use this for a server elsewhere.

    Example:

        taosprsp viewer --ws ws://dashboards.example.com:8080/websocket --no-open
    """
    from taosprsp.viewer import serve_viewer

    config = _state().config(viewer={"port": port, "open": False if no_open else None})
    serve_viewer(config, ws, config.viewer.open, on_ready=lambda url: err.print(f"dashboard: {url} (data from {ws})", highlight=False))


@app.command()
@handle_errors
def demo(
    rate: float = typer.Option(1000.0, "--rate", "-r", min=1, help="Rows/s the background producer writes."),
    history: int = typer.Option(36_000, "--history", min=0, help="Rows of the past hour seeded into an empty store."),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=0, max=65535, help="Server port. \\[default: server.port]"),
) -> None:
    """The whole pipeline in one command: store, seed, producer, server and dashboard; Ctrl-C stops it all.

    Uses TDengine when one answers (or starts one with `db up` where Docker runs), else the embedded store.

    Examples:

        taosprsp demo
        taosprsp --config configs/stocks.toml demo --store embedded --port 8090
    """
    from taosprsp.demo import run_demo
    from taosprsp.progress import interactive

    state = _state()
    config = state.config(server={"port": port})

    def ready(url: str, choice: Any) -> None:
        if state.json:
            typer.echo(json.dumps({"url": url, "websocket": url.replace("http://", "ws://") + "websocket",
                                   "store": choice.kind, "reason": choice.reason}))
        else:
            err.print(f"{choice.reason}\nproducing {rate:g} rows/s in the background; dashboard: {url}\nCtrl-C to stop everything",
                      highlight=False)
        sys.stdout.flush()

    run_demo(config, rate, history, ready, show_progress=interactive(state.quiet or state.json))


# --- bench --------------------------------------------------------------------------------------------


@app.command()
@handle_errors
def bench(
    quick: bool = typer.Option(False, "--quick", help="Under a minute, for CI: fewer rows, one repeat, 2 s of latency at 1,000 rows/s."),
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="PATH", dir_okay=False, help="Write the results as JSON (schema taosprsp.bench/1, see `taosprsp.bench`)."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="PATH.png", dir_okay=False, help="Draw throughput per stage and the latency CDFs to a PNG."),
    fail_under: list[str] = typer.Option([], "--fail-under", metavar="STAGE=ROWS_PER_S", help="Exit 7 when STAGE's median is under ROWS_PER_S (repeatable); stages: generate, ingest-<batch>, read, feed."),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1, help="Repeats per stage. \\[default: bench.repeats]"),
    rows: Optional[int] = typer.Option(None, "--rows", min=1, help="Rows per measurement. \\[default: bench.rows]"),
) -> None:
    """Measure rows/s of every stage (generate, ingest, read, feed) and end-to-end latency, against the seeds' way.

    Runs on a fresh temporary store of the configured kind (user data is untouched) and removes it afterwards.
    `taosprsp --json bench` prints the JSON document on stdout instead of the tables.

    Examples:

        taosprsp bench --store embedded --json bench.json --plot bench.png
        taosprsp bench --quick --fail-under ingest-1000=100000
    """
    from taosprsp import bench as benchmark
    from taosprsp.progress import interactive
    from taosprsp.stores import resolve_kind

    state = _state()
    config = state.config(bench={"repeats": repeats, "rows": rows})
    thresholds = benchmark.parse_thresholds(fail_under, config)
    for path, option in ((json_path, "--json"), (plot, "--plot")):
        if path is not None:
            benchmark.check_output_path(path, option)
    with benchmark.step_progress(interactive(state.quiet or state.json)) as on_step:
        report = benchmark.run_bench(config, resolve_kind(config), quick=quick, on_step=on_step)
    if json_path is not None:
        benchmark.write_json(report, json_path)
    if plot is not None:
        benchmark.write_plot(report, plot)
    emit(report.as_dict(), lambda: benchmark.render(report, out))
    failures = benchmark.below_thresholds(report, thresholds)
    if failures:
        raise TaosprspError("; ".join(failures), ExitCode.BELOW_THRESHOLD)


# --- lifecycle ----------------------------------------------------------------------------------------


@db_app.command("up")
@handle_errors
def db_up(
    pull: bool = typer.Option(True, "--pull/--no-pull", help="Pull the pinned image (docker.image:docker.tag) before creating the container."),
    benchmark: bool = typer.Option(False, "--benchmark", help="Then pre-populate database.name with taosBenchmark: dataset.tables subtables of meters, 10,000 rows each. It drops and recreates that database."),
    native: bool = typer.Option(False, "--native", help="Run the installed taosd and taosadapter instead of Docker; config, data and logs under state.dir/native."),
    wait: Optional[str] = typer.Option(None, "--wait", help="How long to wait for taosAdapter to answer (e.g. 90s). \\[default: docker.wait]"),
) -> None:
    """Start TDengine in Docker (the pinned image, ports on 127.0.0.1) and wait until taosAdapter answers.

    Idempotent: when TDengine already runs it says so; a stopped container is started again.

    Exits 6 when there is no Docker engine (use --native where TDengine is installed, or --store embedded), 4 when TDengine does not answer in time.

    Examples:

        taosprsp db up
        taosprsp db up --no-pull --benchmark
        taosprsp db up --native
    """
    from taosprsp import lifecycle
    from taosprsp.progress import interactive

    state = _state()
    config = state.config(docker={"wait": wait})
    result = lifecycle.db_up(config, pull=pull, benchmark=benchmark, native=native, show_progress=interactive(state.quiet or state.json))

    def human() -> None:
        where = f"container {result.where} ({result.image})" if result.mode == "docker" else f"native processes ({result.where})"
        verb = "is already running" if result.action == "already running" else f"is up ({result.action} in {result.seconds:.1f} s)"
        out.print(f"TDengine {result.version} {verb} in {where}; taosAdapter at {result.url}", markup=False, highlight=False, soft_wrap=True)
        if result.benchmark:
            out.print(f"taosBenchmark: {result.benchmark}", markup=False, highlight=False, soft_wrap=True)
        for note in result.notes:
            err.print(f"note: {note}", style="yellow", markup=False, highlight=False, soft_wrap=True)

    emit(result.as_dict(), human)


def _uptime(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@app.command("ps")
@handle_errors
def ps() -> None:
    """List the processes taosprsp started in the background (pid files in state.dir), and whether they still run.

    A pid file whose process is gone, or whose pid now belongs to another process, is listed as not alive.

    Examples:

        taosprsp ps
        taosprsp --json ps
    """
    from rich.text import Text

    from taosprsp.lifecycle import list_processes

    processes = list_processes(_state().config())

    def human() -> None:
        if not processes:
            out.print("no background processes")
            return
        table = Table("name", "pid", "alive", "uptime", "last log line")
        for p in processes:
            table.add_row(p.name, str(p.pid), "[green]yes[/]" if p.alive else "[red]no (stale pid file)[/]", _uptime(p.uptime), Text(p.last_log_line))
        out.print(table)

    emit([p.as_dict() for p in processes], human)


@app.command()
@handle_errors
def teardown(
    volumes: bool = typer.Option(False, "--volumes", help="Also remove the container's data volume (docker.volume): the data is gone."),
    purge: bool = typer.Option(False, "--purge", help="Also delete the native TDengine's config, data and logs (state.dir/native)."),
) -> None:
    """Stop only what taosprsp started: its background processes, then its TDengine container.

    A process is signalled (SIGTERM, then SIGKILL after 10 s) only while its pid still belongs to the process taosprsp started; stale pid files are removed without signalling anything. The container is removed only when taosprsp created it.

    Without a Docker engine the processes are still stopped. Running it twice is harmless.

    Examples:

        taosprsp teardown
        taosprsp teardown --volumes --purge
    """
    from taosprsp.lifecycle import teardown as stop_all

    summary = stop_all(_state().config(), volumes=volumes, purge=purge)

    def human() -> None:
        for p in summary.stopped:
            out.print(f"stopped {p['name']} (pid {p['pid']}, {p['signal']})", markup=False, highlight=False, soft_wrap=True)
        for p in summary.stale:
            out.print(f"removed the stale pid file of {p['name']} (pid {p['pid']}: {p['reason']})", markup=False, highlight=False, soft_wrap=True)
        out.print(summary.docker, markup=False, highlight=False, soft_wrap=True)
        if summary.volume_removed:
            out.print("removed its data volume", markup=False, highlight=False, soft_wrap=True)
        if summary.purged:
            out.print(f"deleted {summary.purged}", markup=False, highlight=False, soft_wrap=True)
        if summary.nothing_to_stop:
            out.print("nothing to stop", markup=False, highlight=False, soft_wrap=True)

    emit(summary.as_dict(), human)
    if summary.still_running:
        names = ", ".join(f"{p['name']} (pid {p['pid']})" for p in summary.still_running)
        raise TaosprspError(f"still running after SIGKILL: {names}; their pid files are kept")


def _argv_without_background() -> list[str]:
    """This invocation's arguments, for the same command run detached."""
    return [arg for arg in _invocation if arg != "--background"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
