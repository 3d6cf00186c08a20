"""The one error type a user can cause, and the exit codes the CLI maps it to."""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of the `taosprsp` command (see README, "Exit codes")."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    UNREACHABLE = 4
    DATA_LOST = 5
    NO_ENGINE = 6
    BELOW_THRESHOLD = 7
    INTERRUPTED = 130


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops a running command cleanly: Ctrl-C, SIGTERM (teardown's), SIGHUP (its terminal closed)."""


class TaosprspError(Exception):
    """An error the user can fix; its message says what to do.

    The CLI prints the message as one red line and exits with `exit_code`.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(TaosprspError):
    """A config file, environment variable or flag holds a value taosprsp cannot use."""

    exit_code = ExitCode.CONFIG


class StoreUnreachable(TaosprspError):
    """The configured store (a TDengine server) does not answer."""

    exit_code = ExitCode.UNREACHABLE


class StoreError(TaosprspError):
    """The store answered with an error."""

    exit_code = ExitCode.FAILURE


def cannot_listen(host: str, port: int, error: OSError) -> TaosprspError:
    """A port already in use (or not allowed) as a user error."""
    return TaosprspError(
        f"cannot listen on {host}:{port}: {error.strerror or error}; choose another with --port (0 picks a free one)"
    )
