"""An MQTT broker for `demo --mqtt` and the bench: the one at `mqtt.url` when it answers, else Debian's
mosquitto started as a background process of taosprsp (pid file, `ps`, `teardown`) on that address.

The broker taosprsp starts listens on loopback only and admits anonymous clients there, keeps its sessions in
memory (`persistence false`: a restart forgets them) and queues without limit for an absent persistent
session (`max_queued_messages 0`; mosquitto's default of 1,000 would drop messages while an ingester is away).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import time
from dataclasses import dataclass

from taosprsp.config import Config, ensure_directory
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.lifecycle.processes import ProcessInfo, last_line, process_start_time, spawn, state_dir, stop_processes
from taosprsp.mqtt import BrokerOptions

SBIN = "/usr/sbin:/usr/local/sbin"
"""Where Debian installs mosquitto: off a normal user's PATH."""
START_SECONDS = 10.0
PROBE_SECONDS = 0.5


def mosquitto_binary() -> str | None:
    """The mosquitto executable, on PATH or where Debian puts it; None when it is not installed."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=SBIN)


def mosquitto_config(host: str, port: int) -> str:
    """A mosquitto.conf for a broker on `host:port` (see the module docstring)."""
    return (
        "# Written by taosprsp; `taosprsp teardown` stops this broker.\n"
        f"listener {port} {host}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"
    )


def answers(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    """Whether anything accepts TCP connections at `host:port` within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_mosquitto(config: Config, name: str, host: str, port: int) -> ProcessInfo:
    """mosquitto on `host:port` as the background process `name`, once it accepts connections."""
    binary = mosquitto_binary()
    if binary is None:
        raise TaosprspError(
            "mosquitto is not installed (sudo apt-get install mosquitto), and no MQTT broker answers at "
            f"{host}:{port}: install it, or point mqtt.url at a broker",
            ExitCode.UNREACHABLE,
        )
    conf = ensure_directory(state_dir(config), "state.dir") / f"{name}.conf"
    conf.write_text(mosquitto_config(host, port))
    info = spawn(config, name, [binary, "-c", str(conf)])
    deadline = time.monotonic() + START_SECONDS
    while not answers(host, port, timeout=0.2):
        if process_start_time(info.pid) is None or time.monotonic() > deadline:
            stop_processes(config, names=[name])
            said = last_line(info.log.read_text(errors="replace")) if info.log.exists() else ""
            raise TaosprspError(
                f"mosquitto did not start on {host}:{port}: {said or 'it said nothing'} (log {info.log})"
            )
        time.sleep(0.05)
    return info


@dataclass(frozen=True)
class BrokerDecision:
    """Which broker is used and why; `started` when taosprsp started it (stop it with `stop_processes`)."""

    url: str
    reason: str
    started: ProcessInfo | None = None


def ensure_broker(config: Config, name: str) -> BrokerDecision:
    """The broker at `mqtt.url` when it answers; else mosquitto started there as process `name`, which only a
    plain `mqtt://` URL on loopback allows (anything else is refused with what to do)."""
    options = BrokerOptions.from_settings(config.mqtt)
    host, port, tls, transport, _ = options.address
    if answers(host, port):
        return BrokerDecision(options.describe(), f"an MQTT broker answers at {options.describe()}")
    if tls or transport != "tcp" or not _loopback(host):
        raise TaosprspError(
            f"no MQTT broker answers at {options.describe()}; taosprsp starts mosquitto only for a plain "
            "mqtt:// URL on this machine (e.g. mqtt://127.0.0.1:1883): start that broker, or change mqtt.url",
            ExitCode.UNREACHABLE,
        )
    info = start_mosquitto(config, name, host, port)
    return BrokerDecision(options.describe(), f"started mosquitto on {host}:{port} (pid {info.pid})", info)
