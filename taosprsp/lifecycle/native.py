"""TDengine from the installed binaries (`db up --native`): taosd and taosadapter as background processes,
with their config, data and logs under `<state dir>/native`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from taosprsp.config import Config, ensure_directory
from taosprsp.endpoint import endpoint
from taosprsp.errors import ExitCode, TaosprspError
from taosprsp.lifecycle.processes import running_record, spawn, state_dir
from taosprsp.lifecycle.readiness import NATIVE_PORT

SERVER_BINARIES = ("taosd", "taosadapter")


def native_dir(config: Config) -> Path:
    """Config, data and logs of the TDengine started by `db up --native`."""
    return state_dir(config) / "native"


def native_config_dir(config: Config) -> Path:
    """Where taos.cfg and taosadapter.toml of the native TDengine are."""
    return native_dir(config) / "cfg"


def write_native_config(config: Config) -> Path:
    """Write taos.cfg and taosadapter.toml for a TDengine on this host; the directory holding them."""
    cfg, data, logs = native_config_dir(config), native_dir(config) / "data", native_dir(config) / "log"
    for directory in (cfg, data, logs):
        ensure_directory(directory, "state.dir")
    (cfg / "taos.cfg").write_text(
        "# Written by `taosprsp db up --native`; `taosprsp teardown --purge` deletes this directory.\n"
        f"firstEp     localhost:{NATIVE_PORT}\n"
        "fqdn        localhost\n"
        f"serverPort  {NATIVE_PORT}\n"
        f"dataDir     {data}\n"
        f"logDir      {logs}\n"
    )
    # JSON strings are valid TOML basic strings.
    (cfg / "taosadapter.toml").write_text(
        "# Written by `taosprsp db up --native`.\n"
        f"port = {endpoint(config.tdengine).port}\n"
        f"taosConfigDir = {json.dumps(str(cfg))}\n\n"
        "[log]\n"
        f"path = {json.dumps(str(logs))}\n"
    )
    return cfg


def start_native(config: Config) -> str:
    """Start taosd and taosadapter, each unless it already runs (pid files as `start_background` keeps them).

    Returns "started" or, when both ran, "already running". Raises TaosprspError (exit 6) when the binaries
    are not on PATH.
    """
    binaries = {name: shutil.which(name) for name in SERVER_BINARIES}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        raise TaosprspError(
            f"--native runs the installed TDengine, and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH: install the TDengine 3.3 server, start Docker and run `taosprsp db up`, "
            "or use the embedded store with `--store embedded`",
            ExitCode.NO_ENGINE,
        )
    cfg = write_native_config(config)
    commands = {
        "taosd": [str(binaries["taosd"]), "-c", str(cfg)],
        "taosadapter": [str(binaries["taosadapter"]), "-c", str(cfg / "taosadapter.toml")],
    }
    action = "already running"
    for name, argv in commands.items():
        if running_record(config, name) is None:
            spawn(config, name, argv)
            action = "started"
    return action


def native_benchmark_command(config: Config) -> list[str]:
    """The installed taosBenchmark pointed at the native TDengine's config, before its own arguments."""
    tool = shutil.which("taosBenchmark")
    if tool is None:
        raise TaosprspError("--benchmark needs taosBenchmark, which is not on PATH: it comes with the TDengine server")
    return [tool, "-c", str(native_config_dir(config))]
