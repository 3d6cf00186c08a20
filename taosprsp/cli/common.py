"""What every command shares: the global options (`ctx.obj`), the one error handler, choices and option groups.

Errors a user can cause surface as one red line on stderr and a documented exit code (README, "Exit
codes"); `-v` adds the traceback. A bad value on the command line is a usage error (exit 2); the same value
in a config file or the environment is a config error (exit 3).
"""

from __future__ import annotations

import functools
import json
import traceback
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

# Typer 0.29 vendors Click and exports only BadParameter of its exceptions; the others are caught here.
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from taosprsp.config import Config, FeedMode, Protocol, StoreKind, format_duration, load_config, parse_duration
from taosprsp.errors import ConfigError, ExitCode, TaosprspError
from taosprsp.progress import interactive

ARGV = "taosprsp.argv"
"""`ctx.meta` key of the invocation's arguments as written, for running the same command detached."""

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def choice(name: str, values: Any) -> type[Enum]:
    """A Typer choice holding a Literal type's values: the set is declared once, in the library."""
    return Enum(name, [(value, value) for value in typing.get_args(values)], type=str)


StoreChoice = choice("StoreChoice", StoreKind)
ProtocolChoice = choice("ProtocolChoice", Protocol)
FeedChoice = choice("FeedChoice", FeedMode)


def value_of(chosen: Enum | None) -> str | None:
    """The plain value of a chosen Typer choice, or None when the option was not given."""
    return None if chosen is None else chosen.value


@dataclass
class State:
    """The global options of one invocation, shared by every command as `ctx.obj`."""

    config_path: Path | None = None
    store: str | None = None
    json_output: bool = False
    verbose: int = 0
    quiet: bool = False
    argv: list[str] = field(default_factory=list)

    def config(self, **sections: dict[str, Any]) -> Config:
        """The effective config: the global options and this command's flags over file, environment, defaults."""
        merged: dict[str, dict[str, Any]] = {"store": {"kind": self.store}}
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        return load_config(self.config_path, overrides=merged)

    @property
    def show_progress(self) -> bool:
        """Whether to draw progress and live stats: on a terminal, without --quiet or --json."""
        return interactive(self.quiet or self.json_output)

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        """Print `data` as JSON on stdout with --json, else call `human` to render it."""
        if self.json_output:
            typer.echo(json.dumps(data, default=str))
        else:
            human()

    def argv_without_background(self, secret_options: Collection[str] = ()) -> list[str]:
        """This invocation's arguments, for the same command run detached.

        `secret_options` are left out with their values: argv is recorded in the pid file and shown by `ps`,
        so their values travel to the child in its environment instead (`start_background`'s `secrets`).
        """
        kept: list[str] = []
        skip_value = False
        for arg in self.argv:
            if skip_value:
                skip_value = False
            elif arg in secret_options:
                skip_value = True
            elif arg != "--background" and arg.split("=", 1)[0] not in secret_options:
                kept.append(arg)
        return kept

    def detach(
        self,
        config: Config,
        name: str,
        what: str,
        secret_options: Collection[str] = (),
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Run this command detached, recorded as `name`, and say where `what` (e.g. "server") runs.

        `secret_options` and `secrets` as in `argv_without_background` and `start_background`.
        """
        from taosprsp.lifecycle import start_background

        info = start_background(config, name, self.argv_without_background(secret_options), secrets)
        self.emit(
            info.as_dict(), lambda: out.print(f"{what} running in the background: pid {info.pid}, log {info.log}")
        )


class GlobalOptionsGroup(TyperGroup):
    """The root command: global options anywhere on the line, and the library's errors mapped in one place."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV] = list(args)
        return super().parse_args(ctx, self.hoist_global_options(list(args)))

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _usage_error(exc)
        except TaosprspError as exc:
            if isinstance(ctx.obj, State) and ctx.obj.verbose:
                err.print(traceback.format_exc(), style="dim", markup=False, highlight=False)
            err.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err.print("interrupted", style="yellow")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    def global_options(self) -> dict[str, bool]:
        """Each name of a global option (those the root callback receives), and whether it takes a value."""
        return {
            name: not (option.is_flag or option.count)
            for option in self.params
            if option.expose_value
            for name in (*option.opts, *option.secondary_opts)
        }

    def hoist_global_options(self, args: list[str]) -> list[str]:
        """Move global options written after the subcommand (`taosprsp db seed --store embedded`) to the front.

        An option the subcommand declares itself (bench's `--json PATH`) stays where it is.
        """
        globals_ = self.global_options()
        command: Any = self
        front: list[str] = []
        rest: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            name = arg.split("=", 1)[0]
            if arg == "--":
                rest.extend(args[index:])
                break
            if isinstance(command, TyperGroup) and not arg.startswith("-"):
                command = command.commands.get(arg, command)
            if _is_global(name, globals_) and (command is self or name not in _own_options(command)):
                take = 2 if globals_.get(name) and "=" not in arg else 1
                front.extend(args[index : index + take])
                index += take
                continue
            rest.append(arg)
            index += 1
        return front + rest


def _usage_error(exc: UsageError) -> typing.NoReturn:
    """A bad command line as one red line naming where help is, and exit 2; `taosprsp db` alone still shows help."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    err.print(f"error: {exc.format_message()}{where}", style="bold red", markup=False, highlight=False)
    raise typer.Exit(int(ExitCode.USAGE)) from None


def _own_options(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def _is_global(name: str, globals_: dict[str, bool]) -> bool:
    """A global option's name, or a cluster of global short flags such as `-vv`."""
    if name in globals_:
        return True
    letters = name[1:]
    return (
        name.startswith("-")
        and not name.startswith("--")
        and len(letters) > 1
        and all(globals_.get(f"-{letter}") is False for letter in letters)
    )


def _seconds(text: str, minimum: float = 0.0) -> float:
    try:
        seconds = parse_duration(text)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds < minimum:
        raise typer.BadParameter(f"must be at least {format_duration(minimum)}, got {text!r}")
    return seconds


def duration_option(*names: str, help: str, default: str | None = None, minimum: float = 0.0) -> Any:
    """An option holding a duration (`250ms`, `30s`, `1d`) as float seconds; a bad one (or one under `minimum`)
    is a usage error."""
    return typer.Option(
        default, *names, parser=functools.partial(_seconds, minimum=minimum), metavar="DURATION", help=help
    )


def tables_option(help: str) -> Any:
    return typer.Option(None, "--tables", "-t", min=1, help=f"{help} \\[default: dataset.tables]")


def count_option(unit: str) -> Any:
    return typer.Option(None, "--count", "-n", min=1, help=f"Stop after N {unit}.")


def run_duration_option() -> Any:
    return duration_option(
        "--duration", "-d", help="Stop after this long (e.g. 30s); without it (and --count), run until stopped."
    )


def broker_url_option() -> Any:
    return typer.Option(
        None, "--url", help="The MQTT broker: mqtt://host:1883, mqtts://, ws:// or wss://. \\[default: mqtt.url]"
    )


def time_from_option() -> Any:
    return typer.Option(None, "--from", help="First time included (ISO 8601 or epoch).")


def time_to_option() -> Any:
    return typer.Option(None, "--to", help="First time excluded (ISO 8601 or epoch).")


def subtables_option() -> Any:
    return typer.Option([], "--subtable", help="Only this subtable (repeatable).")


def time_bound(text: str | None, precision: str, option: str) -> int | None:
    """A --from/--to time as epoch ticks; a bad one is a usage error (exit 2)."""
    from taosprsp.csvfiles import parse_time

    if text is None:
        return None
    try:
        return parse_time(text, precision, option)
    except TaosprspError as exc:
        raise typer.BadParameter(str(exc)) from None


def database_option() -> Any:
    return typer.Option(None, "--database", help="TDengine database. \\[default: database.name]")


def stable_option() -> Any:
    return typer.Option(
        None,
        "--stable",
        help="Super table (embedded store: table); an existing one is served as it is, declared or not. "
        "\\[default: dataset.stable, else dataset.name]",
    )


def port_option(help: str, default_key: str) -> Any:
    return typer.Option(None, "--port", "-p", min=0, max=65535, help=f"{help} \\[default: {default_key}]")


def seed_option() -> Any:
    return typer.Option(None, "--seed", help="Random seed, for a reproducible run.")


def _token(text: str) -> str:
    from taosprsp.access import check_token

    try:
        check_token(text)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


def token_option() -> Any:
    """`--token`: the token clients must present (server.token); a weak one is a usage error."""
    return typer.Option(
        None,
        "--token",
        parser=_token,
        metavar="TOKEN",
        help="Token every client must present (server.token). Visible in `ps`: prefer TAOSPRSP_SERVER_TOKEN "
        "or the config file.",
    )


def insecure_option() -> Any:
    return typer.Option(
        False,
        "--insecure",
        help="Serve beyond loopback without a token: anyone who can reach the port reads the data.",
    )


def warn_loudly(warning: str | None) -> None:
    """A warning such as what `--insecure` exposes, in red on stderr."""
    if warning:
        err.print(f"WARNING: {warning}", style="bold red", markup=False, highlight=False)


def token_hint(token: str) -> str:
    """How a browser gets in when a token is set (a line to append); the token itself is never printed."""
    return "\n  token required: open the dashboard once as <url>?token=<your token>" if token else ""


def background_option() -> Any:
    return typer.Option(
        False, "--background", help="Run detached; pid file and log under the state directory (see `taosprsp ps`)."
    )
