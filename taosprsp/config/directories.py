"""The directories settings name (`state.dir`), created on first use."""

from __future__ import annotations

import os
from pathlib import Path

from taosprsp.errors import TaosprspError


def ensure_directory(path: str | os.PathLike[str], setting: str) -> Path:
    """`path` as a directory, created with its parents when missing, for the setting `setting` that names it.

    One line saying which setting to change when it cannot be: a file in the way, a read-only parent.
    """
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TaosprspError(f"{setting}: {directory} is a file, not a directory; choose another {setting}") from None
    except OSError as exc:
        raise TaosprspError(
            f"{setting}: cannot create the directory {directory} ({exc.strerror or exc}); "
            f"choose another {setting} or run from a writable directory"
        ) from None
    return directory
