"""The `taosprsp` command: thin wrappers that turn options into calls of the library.

The tree is assembled here; each command lives in the module of its group (`db`, `produce`, `serve`,
`bench`, `lifecycle`, `config_cmd`) and what they share in `common`: the global options as `ctx.obj`, the
one place the library's errors become exit codes, choices and option groups.
"""

from __future__ import annotations

import gc
import os

# Start-up: the imports below create ~70,000 objects the collector tracks, nearly all living as long as the
# command; tracing them again and again while they were created took ~0.2 s of every command here. Once
# imported they are frozen (never traced again) and collection resumes for what the command allocates.
gc.disable()
# numpy's OpenBLAS starts a thread per core that spins ~0.1 s of CPU after the import, taken from the
# command's own threads on a small machine; no command does linear algebra that threads would speed up.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import typer  # noqa: E402

from taosprsp import __version__  # noqa: E402
from taosprsp.cli import bench, config_cmd, db, forward, ingest, lifecycle, ops, produce, serve, transfer  # noqa: E402
from taosprsp.cli.common import ARGV, GlobalOptionsGroup, State, StoreChoice, value_of  # noqa: E402
from taosprsp.config import CONFIG_ENV  # noqa: E402

gc.freeze()
gc.enable()

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

app.command()(produce.produce)
app.command()(serve.serve)
app.command()(serve.viewer)
app.command()(lifecycle.demo)
app.command()(bench.bench)
app.command("ps")(lifecycle.ps)
app.command()(lifecycle.teardown)
db_app.command("seed")(db.seed)
db_app.command("status")(db.status)
db_app.command("purge")(db.purge)
db_app.command("up")(lifecycle.db_up)
config_app.command("show")(config_cmd.show)
import_app = typer.Typer(help="Import files into the super table.", no_args_is_help=True)
export_app = typer.Typer(help="Export the super table to files.", no_args_is_help=True)
import_app.command("csv")(transfer.import_csv)
export_app.command("csv")(transfer.export_csv)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(config_app, name="config")
ingest_app = typer.Typer(help="Take rows in from outside: an MQTT broker.", no_args_is_help=True)
forward_app = typer.Typer(help="Send new rows of the store onward: to an MQTT broker.", no_args_is_help=True)
ingest_app.command("mqtt")(ingest.mqtt)
forward_app.command("mqtt")(forward.mqtt)
app.add_typer(ingest_app, name="ingest")
app.add_typer(forward_app, name="forward")
ops_app = typer.Typer(
    help="Signal operations (declared as \\[operations.NAME] tables) over stored history.", no_args_is_help=True
)
ops_app.command("run")(ops.run)
ops_app.command("list")(ops.list_operations)
app.add_typer(ops_app, name="ops")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taosprsp {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        help="TOML config file (see configs/default.toml).",
        dir_okay=False,
    ),
    store: StoreChoice | None = typer.Option(
        None,
        "--store",
        help="auto: TDengine when it answers, else the embedded store. \\[default: auto]",
    ),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON document on stdout."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail; tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or live stats."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """IoT time series from TDengine (or an embedded store) into live Perspective dashboards."""
    ctx.obj = State(config, value_of(store), json_output, verbose, quiet, argv=ctx.meta.get(ARGV, []))


def main() -> None:
    """Console-script entry point."""
    app()
