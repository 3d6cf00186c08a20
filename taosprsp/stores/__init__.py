"""Stores behind one interface: TDengine, or the embedded SQLite file when no server is needed."""

from __future__ import annotations

import sys

from taosprsp.config import Config, endpoint, parse_duration
from taosprsp.datasets import Precision
from taosprsp.errors import StoreUnreachable
from taosprsp.stores.base import Store, StoreStatus, Watermark
from taosprsp.stores.embedded import EmbeddedStore
from taosprsp.stores.tdengine import DatabaseOptions, TDengineStore, reachable

__all__ = ["Store", "StoreStatus", "Watermark", "EmbeddedStore", "TDengineStore", "open_store", "resolve_kind"]


def resolve_kind(config: Config, notice: bool = True) -> str:
    """`tdengine` or `embedded` for the configured `store.kind`.

    `auto` picks TDengine when its port answers within `tdengine.connect_timeout`, else the embedded store,
    with a notice on stderr; `embedded` never touches the network.
    """
    kind = config.store.kind
    if kind != "auto":
        return kind
    target = endpoint(config.tdengine)
    if reachable(target, parse_duration(config.tdengine.connect_timeout)):
        return "tdengine"
    if notice:
        print(
            f"notice: TDengine at {target.host}:{target.port} did not answer; using the embedded store "
            f"{config.store.path} (choose with --store)",
            file=sys.stderr,
        )
    return "embedded"


def open_store(config: Config, kind: str | None = None) -> Store:
    """Open the store the config names (or `kind`), resolving `auto` first."""
    kind = kind or resolve_kind(config)
    if kind == "embedded":
        return EmbeddedStore(config.store.path, config.stable)
    target = endpoint(config.tdengine)
    if not reachable(target, parse_duration(config.tdengine.connect_timeout)):
        raise StoreUnreachable(
            f"TDengine at {target.dsn(masked=True)} is unreachable: start it (taosprsp db up), "
            "fix [tdengine] in the config, or use --store embedded"
        )
    precision: Precision = config.database.precision  # type: ignore[assignment]
    options = DatabaseOptions(config.database.name, precision, config.database.keep, config.database.wal_retention)
    return TDengineStore(target, options, config.stable, retries=config.tdengine.retries)
