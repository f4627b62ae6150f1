"""File-system durability helpers shared by the spool (``safe/``) and backups (``ops/``)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's writes, or a folder's entries, to disk.

    A rename is durable only once the folder holding it is flushed too, so callers flush
    the file and then its parent folder.
    """
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
