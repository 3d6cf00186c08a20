"""Stores behind one interface: TDengine, or the embedded SQLite file when no server is needed."""

from __future__ import annotations

import sys

from taosprsp.config import Config
from taosprsp.datasets import Dataset
from taosprsp.endpoint import endpoint, reachable
from taosprsp.errors import StoreUnreachable
from taosprsp.stores.base import ResolvedKind, Store, StoreStatus, Watermark
from taosprsp.stores.discover import resolve_dataset
from taosprsp.stores.embedded import EmbeddedStore
from taosprsp.stores.tdengine import DatabaseOptions, TDengineStore

__all__ = [
    "EmbeddedStore",
    "ResolvedKind",
    "Store",
    "StoreStatus",
    "TDengineStore",
    "Watermark",
    "dataset_for",
    "open_store",
    "open_tdengine",
    "resolve_kind",
]


def resolve_kind(config: Config, notice: bool = True) -> ResolvedKind:
    """`tdengine` or `embedded` for the configured `store.kind`.

    `auto` picks TDengine when its port answers within `tdengine.connect_timeout`, else the embedded store,
    with a notice on stderr; `embedded` never touches the network.
    """
    kind = config.store.kind
    if kind != "auto":
        return kind
    target = endpoint(config.tdengine)
    if reachable(target, config.tdengine.connect_timeout):
        return "tdengine"
    if notice:
        print(
            f"notice: TDengine at {target.host}:{target.port} did not answer; using the embedded store "
            f"{config.store.path} (choose with --store)",
            file=sys.stderr,
        )
    return "embedded"


def open_store(config: Config, kind: ResolvedKind | None = None, create: bool = True, verify: bool = False) -> Store:
    """Open the store the config names (or `kind`), resolving `auto` first.

    For the embedded store, `create=False` refuses a file that does not exist yet (rather than creating it
    and its directories), and `verify` checks every page of the file first (a read of the whole file).
    """
    kind = kind or resolve_kind(config)
    if kind == "embedded":
        return EmbeddedStore(config.store.path, config.stable, create=create, verify=verify)
    return open_tdengine(config)


def open_tdengine(config: Config) -> TDengineStore:
    """The TDengine of `[tdengine]`, whatever `store.kind` says (`db purge` works on it alone)."""
    target = endpoint(config.tdengine)
    if not reachable(target, config.tdengine.connect_timeout):
        raise StoreUnreachable(
            f"TDengine at {target.dsn(masked=True)} is unreachable: start it (taosprsp db up), "
            "fix [tdengine] in the config, or use --store embedded"
        )
    database = config.database
    options = DatabaseOptions(
        database.name, database.precision, database.keep, database.wal_retention, database.vgroups
    )
    return TDengineStore(target, options, config.stable, retries=config.tdengine.retries)


def dataset_for(store: Store, config: Config) -> Dataset:
    """The dataset a command works with on `store`: the super table it holds (discovered from its schema), or
    the configured declaration (`dataset.name`) when the store does not hold it yet or it has the same fields.
    """
    where = f"{store.describe()}, table {config.stable}"
    return resolve_dataset(store.discover(), config.declared_dataset, where, exact=store.kind == "tdengine")
