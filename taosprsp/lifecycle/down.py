"""`taosprsp teardown`: stop what taosprsp started, and only that."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from typing import Any

from taosprsp.config import Config
from taosprsp.lifecycle.docker import remove_container
from taosprsp.lifecycle.native import native_dir
from taosprsp.lifecycle.processes import stop_processes


@dataclass(frozen=True)
class TeardownSummary:
    """What `teardown` stopped and removed; `docker` says in a sentence what happened to the container."""

    stopped: tuple[dict, ...]
    stale: tuple[dict, ...]
    still_running: tuple[dict, ...]
    docker: str
    container_removed: bool
    volume_removed: bool
    purged: str

    @property
    def nothing_to_stop(self) -> bool:
        return not (
            self.stopped
            or self.stale
            or self.still_running
            or self.container_removed
            or self.volume_removed
            or self.purged
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("stopped", "stale", "still_running"):
            data[key] = list(data[key])
        return {**data, "nothing_to_stop": self.nothing_to_stop}


def teardown(config: Config, volumes: bool = False, purge: bool = False) -> TeardownSummary:
    """Stop what taosprsp started: its background processes (see `stop_processes`), then its TDengine
    container; `volumes` also removes the container's data volume, `purge` the native TDengine's files.

    Harmless to repeat. Without Docker the processes are still stopped and the summary says Docker was skipped.
    """
    stopped, stale, still_running = stop_processes(config)
    docker, container_removed, volume_removed = remove_container(config, volumes)
    purged = ""
    if purge and native_dir(config).exists():
        shutil.rmtree(native_dir(config))
        purged = str(native_dir(config))
    return TeardownSummary(
        tuple(stopped),
        tuple(stale),
        tuple(still_running),
        docker,
        container_removed,
        volume_removed,
        purged,
    )
