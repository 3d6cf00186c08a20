"""`taosprsp demo`: the whole pipeline from one command, and nothing left running after Ctrl-C.

The store is TDengine when one answers (or when `db up` can start one in Docker), else the embedded
store. The demo seeds an hour of history into an empty store, produces in the background, and serves
the dashboard in the foreground; stopping the server stops the producer and removes a container the
demo itself started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taosprsp import lifecycle
from taosprsp.config import Config
from taosprsp.datasets import get_dataset
from taosprsp.endpoint import endpoint, reachable
from taosprsp.seed import seed
from taosprsp.serve import LiveServer
from taosprsp.stores import open_store

PRODUCER = "demo-produce"
HISTORY_SECONDS = 3600.0


@dataclass(frozen=True)
class StoreDecision:
    """Which store the demo uses and why; `started_container` when the demo started TDengine in Docker itself."""

    kind: str
    reason: str
    started_container: bool = False


def choose_store(config: Config, show_progress: bool = False) -> StoreDecision:
    """TDengine when configured and reachable, or startable in Docker; else the embedded store."""
    if config.store.kind != "auto":
        return StoreDecision(config.store.kind, f"--store {config.store.kind}")
    target = endpoint(config.tdengine)
    if reachable(target, config.tdengine.connect_timeout):
        return StoreDecision("tdengine", f"TDengine answers at {target.host}:{target.port}")
    problem = lifecycle.docker_problem()
    if problem is None:
        lifecycle.db_up(config, show_progress=show_progress)
        return StoreDecision("tdengine", "started TDengine in Docker (taosprsp db up)", started_container=True)
    return StoreDecision(
        "embedded", f"no TDengine answers at {target.host}:{target.port} and {problem}: using the embedded store"
    )


def producer_argv(config: Config, kind: str, rate: float) -> list[str]:
    """The command line of the demo's background producer: the same config, store and dataset."""
    argv = ["--config", config.source] if config.source != "defaults" else []
    return [*argv, "--store", kind, "produce", "--rate", f"{rate:g}", "--tables", str(config.dataset.tables)]


def run_demo(
    config: Config,
    rate: float,
    history_rows: int,
    on_ready: Callable[[str, StoreDecision], None],
    show_progress: bool = False,
) -> None:
    """Seed (when empty), produce in the background and serve until SIGINT or SIGTERM; then clean up."""
    choice = choose_store(config, show_progress)
    dataset = get_dataset(config.dataset.name)
    try:
        with open_store(config, choice.kind) as store:
            store.ensure_schema(dataset, config.dataset.tables)
            if store.count(dataset) == 0 and history_rows > 0:
                seed(
                    store,
                    dataset,
                    config.dataset.tables,
                    config.database.precision,
                    rows=history_rows,
                    span_seconds=HISTORY_SECONDS,
                )
        lifecycle.start_background(config, PRODUCER, producer_argv(config, choice.kind, rate))
        LiveServer(config, choice.kind, on_ready=lambda url: on_ready(url, choice)).serve_forever()
    finally:
        lifecycle.stop_processes(config, names=[PRODUCER])
        if choice.started_container:
            lifecycle.remove_container(config, volumes=False)
