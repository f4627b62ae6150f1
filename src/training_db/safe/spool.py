"""The spool: where calls wait for a replay, on local disk, shared by the processes of a
machine and user, and durable (fsynced) before a call returns."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from training_db.core.files import fsync_path

SPOOL_DIR_ENV: Final = "TRAINING_DB_SPOOL_DIR"
SPOOL_FILE: Final = "spool.jsonl"
REJECTED_FILE: Final = "spool.rejected"
# Separate lock files: the spool itself is replaced by a rewrite, and a lock held on the old
# file would not exclude a writer that opened the new one.
LOCK_FILE: Final = "spool.lock"
REPLAY_LOCK_FILE: Final = "replay.lock"


def spool_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$TRAINING_DB_SPOOL_DIR``, else ``$XDG_STATE_HOME/mangodb/spool``."""
    env = os.environ if env is None else env
    if env.get(SPOOL_DIR_ENV):
        return Path(env[SPOOL_DIR_ENV]).expanduser()
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "mangodb" / "spool"


class Spool:
    """The spool files in ``directory``; every method takes the cross-process locks it needs."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = spool_dir() if directory is None else Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.rejected_path = self.directory / REJECTED_FILE

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    @contextlib.contextmanager
    def _flock(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def locked(self) -> contextlib.AbstractContextManager[bool]:
        """The lock every reader and writer of ``spool.jsonl`` holds."""
        return self._flock(LOCK_FILE)

    def replay_lock(self, *, blocking: bool) -> contextlib.AbstractContextManager[bool]:
        """Held for a whole replay, so that two processes never replay at once."""
        return self._flock(REPLAY_LOCK_FILE, blocking=blocking)

    def append(self, line: str) -> None:
        """Append one record durably (flushed and fsynced before returning)."""
        with self.locked():
            _append_durably(self.path, line.encode("utf-8"))

    def read_lines(self) -> list[bytes]:
        """The spool's lines (a last line cut short by a crash included). Hold ``locked()``."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines

    def rewrite(self, lines: Sequence[bytes]) -> None:
        """Replace the spool by ``lines`` atomically (temp file, fsync, rename).

        Hold ``locked()``.
        """
        temporary = self.directory / f".{SPOOL_FILE}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        fsync_path(self.directory)

    def reject(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append entries to ``spool.rejected`` durably. Hold ``locked()``."""
        if not entries:
            return
        text = b"".join(
            json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n" for entry in entries
        )
        _append_durably(self.rejected_path, text[:-1])


def _append_durably(path: Path, data: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        # A writer killed mid-line left no newline: end that line first, so the cut-short
        # record shows up as one malformed line instead of spoiling this one too.
        prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        _write_all(fd, prefix + data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_path(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
