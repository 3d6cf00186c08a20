"""`taosprsp demo`: the whole pipeline from one command, and nothing left running after Ctrl-C.

The store is TDengine when one answers (or when `db up` can start one in Docker), else the embedded
store. The demo seeds an hour of history into an empty store, produces in the background, and serves
the dashboard in the foreground; stopping the server (Ctrl-C, SIGTERM, or SIGHUP when its terminal
closes) stops the producer and removes a container the demo itself started.

With `mqtt`, the rows take the edge path: the producer publishes them to an MQTT broker as simulated
devices would (`produce --sink mqtt`), a background `ingest mqtt` writes them into the store, and the
server follows the store as always. The broker is the one at `mqtt.url`, or mosquitto started there when
none answers (`taosprsp.lifecycle.mosquitto`); stopping the demo stops producer, ingester and that broker.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from taosprsp import lifecycle
from taosprsp.config import Config
from taosprsp.endpoint import endpoint, reachable
from taosprsp.lifecycle.mosquitto import BrokerDecision, ensure_broker
from taosprsp.seed import seed
from taosprsp.serve import LiveServer
from taosprsp.stores import dataset_for, open_store

PRODUCER = "demo-produce"
INGESTER = "demo-ingest"
BROKER = "demo-mosquitto"
DEMO_CLIENT_ID = "taosprsp-demo-ingest"
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


def _same_config(config: Config, kind: str) -> list[str]:
    """The global options that give a background command the demo's config and store."""
    return [*(["--config", config.source] if config.source != "defaults" else []), "--store", kind]


def producer_argv(config: Config, kind: str, rate: float, sink: str = "store") -> list[str]:
    """The command line of the demo's background producer: the same config, store and dataset."""
    argv = [*_same_config(config, kind), "produce", "--rate", f"{rate:g}", "--tables", str(config.dataset.tables)]
    return argv if sink == "store" else [*argv, "--sink", sink]


def ingester_argv(config: Config, kind: str) -> list[str]:
    """The command line of the demo's background MQTT ingester: a clean session under the demo's own client id,
    so that neither a user's ingester nor a session left on the broker is touched."""
    return [*_same_config(config, kind), "ingest", "mqtt", "--client-id", DEMO_CLIENT_ID, "--clean-session"]


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_demo(
    config: Config,
    rate: float,
    history_rows: int,
    on_ready: Callable[[str, StoreDecision, BrokerDecision | None], None],
    show_progress: bool = False,
    insecure: bool = False,
    mqtt: bool = False,
) -> None:
    """Seed (when empty), produce in the background and serve until SIGINT, SIGTERM or SIGHUP; then clean up.

    `insecure` lets the server bind beyond loopback without a token (see `LiveServer`); `mqtt` produces
    through a broker and an ingester (see the module docstring). `on_ready(url, store, broker)` runs once the
    server listens (`broker` None without `mqtt`).
    """
    if threading.current_thread() is threading.main_thread():
        # until the server takes these signals over: stop by unwinding, so that the cleanup below runs
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _exit_on)
    choice = choose_store(config, show_progress)
    started: list[str] = []  # upstream first: the ingester takes what the producer sent, the broker goes last
    try:
        broker: BrokerDecision | None = None
        if mqtt:  # first: a broker that cannot be had stops the demo before anything is seeded
            broker = ensure_broker(config, BROKER)
            if broker.started:
                started.append(BROKER)
        with open_store(config, choice.kind) as store:
            dataset = dataset_for(store, config)
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
        if mqtt:
            started.insert(0, INGESTER)
            lifecycle.start_background(config, INGESTER, ingester_argv(config, choice.kind))
        started.insert(0, PRODUCER)
        lifecycle.start_background(
            config, PRODUCER, producer_argv(config, choice.kind, rate, "mqtt" if mqtt else "store")
        )
        LiveServer(
            config, choice.kind, on_ready=lambda url: on_ready(url, choice, broker), insecure=insecure
        ).serve_forever()
    finally:
        for name in started:
            lifecycle.stop_processes(config, names=[name])
        if choice.started_container:
            lifecycle.remove_container(config, volumes=False)
