"""Lifecycle: start TDengine (in Docker, or the installed binaries), run taosprsp in the background, stop it all.

- `processes`: pid files, starting a process detached, `ps`, stopping only what taosprsp started
- `readiness`: where a started TDengine answers, and waiting until taosAdapter does
- `docker`: the Docker engine and the labelled container
- `native`: taosd and taosadapter from the installed binaries
- `up`: `db up` (either way, then taosBenchmark) and its report
- `down`: `teardown`
- `mosquitto`: the MQTT broker of `demo --mqtt` and the bench (imported on its own: it loads the MQTT client)
"""

from taosprsp.lifecycle.docker import (
    MANAGED_LABEL,
    Container,
    docker_problem,
    docker_run_args,
    inspect_container,
    remove_container,
    require_docker,
)
from taosprsp.lifecycle.down import TeardownSummary, teardown
from taosprsp.lifecycle.native import native_dir, write_native_config
from taosprsp.lifecycle.processes import (
    ProcessInfo,
    ProcessStatus,
    list_processes,
    mark_ready,
    process_start_time,
    spawn,
    start_background,
    state_dir,
    stop_processes,
)
from taosprsp.lifecycle.readiness import rest_url, wait_ready
from taosprsp.lifecycle.up import UpResult, benchmark_args, db_up, docker_up, native_up

__all__ = [
    "MANAGED_LABEL",
    "Container",
    "ProcessInfo",
    "ProcessStatus",
    "TeardownSummary",
    "UpResult",
    "benchmark_args",
    "db_up",
    "docker_problem",
    "docker_run_args",
    "docker_up",
    "inspect_container",
    "list_processes",
    "mark_ready",
    "native_dir",
    "native_up",
    "process_start_time",
    "remove_container",
    "require_docker",
    "rest_url",
    "spawn",
    "start_background",
    "state_dir",
    "stop_processes",
    "teardown",
    "wait_ready",
    "write_native_config",
]
