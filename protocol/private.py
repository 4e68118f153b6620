"""Files that hold secrets or personal data are readable by their owner only."""

import contextlib
import os
from pathlib import Path

SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def owner_only() -> None:
    """Make every file this process creates from now on 0600 (directories 0700)."""
    os.umask(0o077)


def restrict_db(path: str | Path) -> None:
    """chmod a SQLite database and its side files to 0600.

    Called right after connecting: SQLite creates -wal and -shm with the database file's own
    mode, so a 0600 database keeps them 0600 too (also for a file made before this rule).
    """
    for suffix in SQLITE_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
