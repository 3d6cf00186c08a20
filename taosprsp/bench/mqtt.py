"""The mqtt stage: sustained ingest of one-row JSON messages into the store, and broker-publish -> visible in a
Perspective client. It runs when a broker can be had: mosquitto started for the run on a free loopback port
(fresh, and queueing without limit), else the one at `mqtt.url` when it answers; else it is skipped, saying why.

- ingest: 1 and 2 `taosprsp ingest mqtt` processes (2: on a `$share/` subscription, which the broker splits
  between them) subscribe and are then stopped (SIGSTOP); `MQTT_MESSAGES` messages (one row each, JSON,
  `MQTT_TABLES` subtables, from `taosprsp.mqtt.publish`) are published, and the ingesters go on (SIGCONT) and
  drain the backlog into the store. Timed from SIGCONT until the store holds every row (the last growth of its
  row count); CPU per message of the ingesters (and of the broker, when started here) over the same span, from
  `/proc/<pid>/stat`. Neither the ingesters' start-up nor publishing is timed: the simulated devices are one
  slow Python client, where real ones are many.
- latency: `taosprsp serve` and one `taosprsp ingest mqtt` as processes of their own, as deployed; messages
  published from this process at `MQTT_LATENCY_RATE` for `bench.latency_seconds`, a hundredth of a second's a
  call, and a Perspective client (the latency runs' `bare` one) on a thread of it. Each row is timed from the
  moment its batch was handed to the MQTT client to the moment its row delta reached the Perspective client:
  broker, the ingester's `mqtt.flush_interval` and write, the feed (wake on commit, else `server.interval`)
  and the WebSocket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from taosprsp.bench.latency import LatencyResult
from taosprsp.bench.serve_process import ServeProcess, child_config
from taosprsp.bench.stages import Setup, epoch_ms, rounded
from taosprsp.bench.watchers import RowWatcher
from taosprsp.config import READY_FILE_ENV, Config
from taosprsp.datasets import SUBTABLE_COLUMN
from taosprsp.errors import TaosprspError
from taosprsp.lifecycle.mosquitto import answers, mosquitto_binary, start_mosquitto
from taosprsp.lifecycle.processes import stop_processes
from taosprsp.mqtt import BrokerOptions, MessageMapping, publish
from taosprsp.produce import ProduceOptions
from taosprsp.stores import open_store

MQTT_MESSAGES = 60_000
QUICK_MESSAGES = 5_000
MQTT_TABLES = 100
MQTT_LATENCY_RATE = 1_000
INGESTERS = (1, 2)
BENCH_BROKER = "bench-mosquitto"
FIRST_TABLE = 100_000
"""The mqtt stage's subtables start here: its rows never share a (subtable, timestamp) with another stage's."""
LATENCY_DRAIN_SECONDS = 10.0
STALL_SECONDS = 3.0
"""A drain ends when the store's row count stops growing this long (all in, or a broker that dropped some)."""
READY_SECONDS = 60.0
SHARE_GROUP = "taosprsp-bench"


@dataclass(frozen=True)
class DrainResult:
    """`published` messages drained into the store by `ingesters` processes; CPU seconds over the drain (the
    broker's: receiving them from the publisher too)."""

    ingesters: int
    published: int
    ingested: int
    seconds: float
    ingester_cpu_seconds: float | None
    broker_cpu_seconds: float | None

    @property
    def messages_per_second(self) -> float:
        return self.ingested / self.seconds if self.seconds > 0 else 0.0

    def per_message_us(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.ingested else 1e6 * seconds / self.ingested

    def as_dict(self) -> dict[str, Any]:
        return {
            "ingesters": self.ingesters,
            "published": self.published,
            "ingested": self.ingested,
            "seconds": round(self.seconds, 3),
            "messages_per_second": round(self.messages_per_second, 1),
            "ingester_cpu_us_per_message": rounded(self.per_message_us(self.ingester_cpu_seconds), 1),
            "broker_cpu_us_per_message": rounded(self.per_message_us(self.broker_cpu_seconds), 1),
        }


@dataclass
class MqttResult:
    """The mqtt stage, or why it did not run (`skipped`)."""

    broker: str = ""
    skipped: str = ""
    drains: list[DrainResult] = field(default_factory=list)
    latency: LatencyResult | None = None
    flush_interval: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped}
        return {
            "broker": self.broker,
            "ingest": [drain.as_dict() for drain in self.drains],
            "flush_interval_ms": round(self.flush_interval * 1000, 1),
            "latency": self.latency.as_dict() if self.latency else None,
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds process `pid` has used; None where /proc does not say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def bench_broker(setup: Setup) -> Iterator[tuple[BrokerOptions, int | None] | str]:
    """The broker of the run and its pid when started here; or, when there is none, why (text)."""
    if mosquitto_binary() is not None:
        port = _free_port()
        info = start_mosquitto(setup.config, BENCH_BROKER, "127.0.0.1", port)
        try:
            yield BrokerOptions(url=f"mqtt://127.0.0.1:{port}"), info.pid
        finally:
            stop_processes(setup.config, names=[BENCH_BROKER])
        return
    options = BrokerOptions.from_settings(setup.config.mqtt)
    host, port, *_ = options.address
    if answers(host, port):
        yield options, None
    else:
        yield f"mosquitto is not installed and no broker answers at {options.describe()}"


def measure_mqtt(setup: Setup, quick: bool = False) -> MqttResult:
    """The mqtt stage on the scratch store (see the module docstring)."""
    with bench_broker(setup) as found:
        if isinstance(found, str):
            return MqttResult(skipped=found)
        broker, broker_pid = found
        suffix = uuid.uuid4().hex[:8]
        result = MqttResult(broker=broker.describe(), flush_interval=setup.config.mqtt.flush_interval)
        messages = QUICK_MESSAGES if quick else MQTT_MESSAGES
        for run, ingesters in enumerate(INGESTERS):
            topic = f"taosprsp-bench-{suffix}-{run}/{{tbname}}"
            result.drains.append(_drain(setup, broker, broker_pid, topic, ingesters, messages, run))
        result.latency = _latency(setup, broker, f"taosprsp-bench-{suffix}-latency/{{tbname}}")
        return result


def _mapping(setup: Setup, topic: str) -> MessageMapping:
    return MessageMapping.build(setup.dataset, setup.precision, topic, "json")


@contextmanager
def _ingesters(
    config: Config, broker: BrokerOptions, mapping: MessageMapping, count: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `taosprsp ingest mqtt` processes on `config`'s store (2 or more: a `$share/` subscription),
    each subscribed when this yields; stopped on exit."""
    subscription = mapping.subscription() if count == 1 else f"$share/{SHARE_GROUP}/{mapping.subscription()}"
    config = config.replace(
        mqtt={"url": broker.url, "topic": mapping.topic.text, "topics": [subscription], "clean_session": True}
    )
    workdir = Path(tempfile.mkdtemp(prefix="taosprsp-bench-mqtt-"))
    config_file, env = child_config(config, workdir / "ingest.toml")
    logs = [(workdir / f"ingest-{i}.log").open("w") for i in range(count)]
    children: list[subprocess.Popen[bytes]] = []
    try:
        for i, log in enumerate(logs):
            ready = workdir / f"ingest-{i}.ready"
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "taosprsp", "--config", str(config_file), "-q", "ingest", "mqtt"]
                    + ["--client-id", f"{SHARE_GROUP}-{uuid.uuid4().hex[:8]}-{i}"],
                    env={**env, READY_FILE_ENV: str(ready)},
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
            _wait_ready(children[-1], ready, workdir / f"ingest-{i}.log")
        yield children
    finally:
        for child in children:
            child.send_signal(signal.SIGCONT)
            child.terminate()
        for child in children:
            child.wait(30)
        for log in logs:
            log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(child: subprocess.Popen[bytes], ready: Path, log: Path) -> None:
    """Wait until the ingester `child` has subscribed (it creates `ready`)."""
    deadline = time.monotonic() + READY_SECONDS
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            said = log.read_text(errors="replace").strip().splitlines()
            raise TaosprspError(f"bench: an mqtt ingester did not start: {said[-1] if said else 'no output'}")
        time.sleep(0.02)


def _drain(
    setup: Setup, broker: BrokerOptions, broker_pid: int | None, topic: str, ingesters: int, messages: int, run: int
) -> DrainResult:
    """Stop `ingesters` subscribed processes (SIGSTOP), publish `messages`, let them go on (SIGCONT) and time them
    draining the backlog into the store: neither their start-up nor publishing is in the time."""
    mapping = _mapping(setup, topic)
    with (
        _ingesters(setup.config, broker, mapping, ingesters) as children,
        open_store(setup.config, setup.kind) as store,
    ):
        for child in children:
            child.send_signal(signal.SIGSTOP)
        pids = [child.pid for child in children]
        before = store.count(setup.dataset)
        broker_before = _cpu_seconds(broker_pid) if broker_pid else None  # in and out: publishing included
        first = FIRST_TABLE + run * MQTT_TABLES
        produce = ProduceOptions(tables=MQTT_TABLES, rate=0, count=messages, seed=run, first_table=first)
        published = publish(setup.dataset, mapping, broker, produce).rows_written
        cpu_before = _total_cpu(pids)
        started = time.perf_counter()
        for child in children:
            child.send_signal(signal.SIGCONT)
        count, progressed = before, started
        while count < before + published and time.perf_counter() - progressed < STALL_SECONDS:
            time.sleep(0.01)
            now_count = store.count(setup.dataset)
            if now_count > count:
                count, progressed = now_count, time.perf_counter()
        cpu_after, broker_after = _total_cpu(pids), _cpu_seconds(broker_pid) if broker_pid else None
    return DrainResult(
        ingesters,
        published,
        count - before,
        progressed - started,
        None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        None if broker_before is None or broker_after is None else broker_after - broker_before,
    )


def _total_cpu(pids: list[int]) -> float | None:
    seconds = [_cpu_seconds(pid) for pid in pids]
    return None if any(s is None for s in seconds) else sum(s for s in seconds if s is not None)


class _SentTimes:
    """When each batch was handed to the client, and its rows' keys."""

    def __init__(self) -> None:
        self._batches: list[tuple[float, pa.Table]] = []

    def __call__(self, batch: pa.Table) -> None:
        self._batches.append((time.perf_counter(), batch.select([SUBTABLE_COLUMN, "ts"])))

    def table(self, setup: Setup) -> pa.Table:
        """`tbname`, `ts` (ms) and `t_write` (the moment of publishing) of every row published."""
        return pa.concat_tables(
            pa.table(
                {
                    SUBTABLE_COLUMN: keys[SUBTABLE_COLUMN],
                    "ts": epoch_ms(keys["ts"], setup.precision),
                    "t_write": pa.array(np.full(keys.num_rows, at)),
                }
            )
            for at, keys in self._batches
        )


def _latency(setup: Setup, broker: BrokerOptions, topic: str) -> LatencyResult:
    """Publish at `MQTT_LATENCY_RATE` through an ingester process into the served store; time every row from
    publishing to the client seeing it."""
    mapping = _mapping(setup, topic)
    config = setup.config.replace(server={"host": "127.0.0.1", "port": 0, "certfile": "", "keyfile": ""})
    sent = _SentTimes()
    with ServeProcess(config) as served, _ingesters(config, broker, mapping, 1) as _:
        watcher = RowWatcher(served.websocket, config.perspective_table, config.server.token)
        try:
            watcher.start()
            first = FIRST_TABLE + len(INGESTERS) * MQTT_TABLES
            produce = ProduceOptions(
                tables=MQTT_TABLES,
                rate=MQTT_LATENCY_RATE,
                batch=max(1, MQTT_LATENCY_RATE // 100),
                duration=setup.settings.latency_seconds,
                first_table=first,
            )
            stats = publish(setup.dataset, mapping, broker, produce, on_sent=sent)
            published = sent.table(setup)
            deadline = time.perf_counter() + max(LATENCY_DRAIN_SECONDS, 20 * config.server.interval)
            while not watcher.saw_all(published) and time.perf_counter() < deadline:
                time.sleep(0.02)
        finally:
            watcher.stop()
        wake = served.stats()["feed"].get("wake", "off")
    samples = watcher.latencies(published)
    return LatencyResult("mqtt", MQTT_LATENCY_RATE, stats.seconds, stats.rows_written, samples, wake=wake)
