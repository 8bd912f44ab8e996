"""The embedded database on disk: its directory 0700, the database and its journals 0600,
since they hold every message in clear text."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
# SQLite gives its journals the database file's mode when it creates them; ones left by an
# older, looser release are tightened with it.
SIDECARS = ("-wal", "-shm", "-journal")


def _loose(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def private_dir(path: Path, *, tighten: bool = True) -> None:
    """Create `path` (0700); with `tighten`, an existing one others may read becomes 0700."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    elif tighten and _loose(path):
        logger.warning("%s was readable by other users; its mode is now 0700", path)
        path.chmod(DIR_MODE)


def private_sqlite(database: Path) -> None:
    """Create the database file 0600 before SQLite opens it; tighten one left looser."""
    private_dir(database.parent, tighten=False)
    # An empty file is a valid, empty SQLite database.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    for path in (database, *(database.with_name(database.name + s) for s in SIDECARS)):
        if path.exists() and _loose(path):
            logger.warning("%s was readable by other users; its mode is now 0600", path)
            path.chmod(FILE_MODE)
