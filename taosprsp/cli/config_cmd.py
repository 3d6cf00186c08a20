"""`taosprsp config show`: the effective configuration, as the TOML file that would produce it."""

from __future__ import annotations

import typer

from taosprsp.cli.common import State, out
from taosprsp.config import as_dict, to_toml


def show(ctx: typer.Context) -> None:
    """Print the effective config (flags > TAOSPRSP_* environment > --config file > defaults), secrets masked.

    Example:

        taosprsp --config configs/stocks.toml config show
    """
    state: State = ctx.obj
    config = state.config()
    shown = as_dict(config)
    state.emit(
        {"source": config.source, **shown},
        lambda: out.print(f"# from {config.source}\n" + to_toml(shown), markup=False, highlight=False),
    )
