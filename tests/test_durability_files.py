"""A full disk, a read-only or missing file, a folder or a non-database where the file should be.

Each gives one clear error (a ``TrainingDBError`` whose one-line message names the database
and the cause), changes nothing, and a full disk is usable again once space is freed, with
the best-effort calls made meanwhile spooled on another filesystem and replayed whole.
SQLite only: these are properties of a database *file*.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Engine, event

import training_db
from tests.conftest import table_snapshot
from training_db import (
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    TrainingDB,
    TrainingDBError,
    safe,
)
from training_db.core.settings import sqlite_url

SMALL_FS_BYTES = 2 * 1024 * 1024


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@contextmanager
def small_filesystem(directory: Path, method: str) -> Iterator[str]:
    """Mount a 2 MiB filesystem at ``directory``; yields the method that worked.

    ``filesystem``: tmpfs, else a loop-mounted ext4 image (both need root and a sandbox that
    allows mounts), else ``max_page_count``: no mount, SQLite's own size limit (see
    `DiskFull`). ``max_page_count`` asks for that limit directly.
    """
    directory.mkdir()
    image = directory.with_suffix(".img")
    if method == "filesystem":
        if _run("mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES}", "tmpfs", str(directory)):
            method = "tmpfs"
        else:
            with image.open("wb") as file:
                file.truncate(4 * SMALL_FS_BYTES)
            if _run("mkfs.ext4", "-q", "-F", str(image)) and _run(
                "mount", "-o", "loop", str(image), str(directory)
            ):
                method = "loop"
            else:
                method = "max_page_count"
    try:
        yield method
    finally:
        if method in ("tmpfs", "loop"):
            # lazy: a connection a failed assertion left open must not keep it mounted
            assert _run("umount", "-l", str(directory)), f"could not unmount {directory}"
        image.unlink(missing_ok=True)


class DiskFull:
    """Fills the database's disk, and frees it again.

    On a small filesystem a filler file takes every free byte; with ``max_page_count`` each
    new connection may not grow the file past its current size.
    """

    def __init__(self, directory: Path, method: str) -> None:
        self.directory = directory
        self.method = method
        self.filler = directory / "filler"
        self.full = False

    def watch(self, engine: Engine) -> None:
        """Apply the page limit to ``engine``'s connections (``max_page_count`` only)."""
        if self.method != "max_page_count":
            return

        @event.listens_for(engine, "connect")
        def _limit(dbapi_connection: Any, _record: Any) -> None:
            if self.full:
                cursor = dbapi_connection.cursor()
                pages = cursor.execute("PRAGMA page_count").fetchone()[0]
                cursor.execute(f"PRAGMA max_page_count = {pages:d}")
                cursor.close()

    def fill(self, *engines: Engine) -> None:
        self.full = True
        if self.method == "max_page_count":
            for engine in engines:
                engine.dispose()  # new connections take the limit
            return
        with self.filler.open("wb", buffering=0) as file:
            for block_size in (65536, 4096, 512, 1):  # down to the last byte
                try:
                    while True:
                        file.write(b"\0" * block_size)
                except OSError:
                    pass
        assert os.statvfs(self.directory).f_bavail == 0

    def free(self, *engines: Engine) -> None:
        self.full = False
        self.filler.unlink(missing_ok=True)
        for engine in engines:
            engine.dispose()


def _integrity(url: URL) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.exec_driver_sql("PRAGMA integrity_check").scalars())
    finally:
        engine.dispose()


def _history(steps: range) -> list[dict[str, Any]]:
    return [{"_step": step, "train/loss": 1.0 / (step + 1)} for step in steps]


def _assert_clear(error: BaseException, path: Path, cause: str) -> None:
    """One line naming the file and the cause, without SQLAlchemy's traceback text."""
    message = str(error)
    assert isinstance(error, TrainingDBError), repr(error)
    assert "\n" not in message, message
    assert str(path) in message, message
    assert cause in message, message
    assert "Background on this error" not in message and "[SQL:" not in message, message


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The safe spool, on tmp_path: another filesystem than the full one."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(directory))
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    yield directory
    assert safe.drain(60)
    training_db.api._default = None


@pytest.mark.parametrize("method", ["filesystem", "max_page_count"])
def test_full_disk_fails_clearly_changes_nothing_and_recovers(
    method: str, tmp_path: Path, spool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = tmp_path / "small"
    with small_filesystem(mount, method) as used:
        with capsys.disabled():
            print(f"\n[disk full] method: {used}")
        path = mount / "runs.db"
        url = sqlite_url(path)
        disk = DiskFull(mount, used)
        database = training_db.configure(url)
        disk.watch(database.engine)
        database.insert_run("before", None, {"training": {"seed": 1}})
        database.log_history("before", _history(range(100)))
        before = table_snapshot(url)

        disk.fill(database.engine)
        with pytest.raises(DatabaseUnavailableError) as raised:
            database.insert_run("during", None, {"blob": "x" * 100_000})
        _assert_clear(raised.value, path, "database or disk is full")
        with pytest.raises(DatabaseUnavailableError) as raised:
            database.finish_run(
                "before", summary={"train/loss": 0.1}, history=_history(range(9999))
            )
        _assert_clear(raised.value, path, "database or disk is full")

        # best-effort calls go to the spool, which is on another filesystem
        assert spool.resolve().parts[: len(mount.parts)] != mount.resolve().parts
        spooled = [
            safe.insert_run("during", None, {"blob": "x" * 100_000}),
            safe.log_history("before", _history(range(100, 2000))),
            safe.finish_run(
                "before", summary={"train/loss": 0.1}, history=_history(range(2000, 2100))
            ),
        ]
        assert [result.status for result in spooled] == ["spooled"] * 3, spooled
        assert "database or disk is full" in (spooled[0].error or "")
        # the calls after it queue behind it, so that they reach the database in order
        assert all("waiting in the spool" in (result.error or "") for result in spooled[1:])

        disk.free(database.engine)
        assert table_snapshot(url) == before  # the failed writes left nothing behind
        assert _integrity(url) == ["ok"]

        report = safe.replay()
        assert report.applied == 3, report
        assert not (spool / "spool.jsonl").exists() or (spool / "spool.jsonl").read_text() == ""
        during = database.get_run("during")
        assert during is not None and during["config"] == {"blob": "x" * 100_000}
        finished = database.get_run("before")
        assert finished is not None and finished["status"] == "completed"
        assert finished["final_metrics"] == {"train/loss": 0.1}
        assert database.get_history("before")["_step"] == list(range(2100))
        database.insert_run("after", None, {})  # usable again
        assert _integrity(url) == ["ok"]
        database.dispose()


def _files(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its bytes."""
    return {
        str(file.relative_to(directory)): hashlib.sha256(file.read_bytes()).hexdigest()
        if file.is_file()
        else "folder"
        for file in sorted(directory.rglob("*"))
    }


def _expect_error(url: URL | str, call: Callable[[TrainingDB], Any]) -> TrainingDBError:
    database = TrainingDB(url)
    try:
        with pytest.raises(TrainingDBError) as raised:
            call(database)
    finally:
        database.dispose()
    return raised.value


def _write(database: TrainingDB) -> Any:
    return database.insert_run("new", None, {})


def _read(database: TrainingDB) -> Any:
    return database.get_run("new")


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """A database file at head with one run, its connections closed."""
    folder = tmp_path / "existing"
    folder.mkdir()
    path = folder / "runs.db"
    database = TrainingDB(sqlite_url(path))
    database.insert_run("old", None, {"training": {"seed": 1}})
    database.dispose()
    return path


def test_read_only_uri_refuses_writes_and_still_reads(existing: Path) -> None:
    # Reading a WAL database needs its -wal and -shm files, so SQLite may create those (empty);
    # the database file itself must not change.
    before = _files(existing.parent)["runs.db"]
    url = f"sqlite:///file:{existing}?mode=ro&uri=true"
    error = _expect_error(url, _write)
    _assert_clear(error, existing, "attempt to write a readonly database")
    assert isinstance(error, DatabaseUnavailableError)
    database = TrainingDB(url)
    try:
        old = database.get_run("old")
        assert old is not None and old["config"] == {"training": {"seed": 1}}
    finally:
        database.dispose()
    assert _files(existing.parent)["runs.db"] == before


def test_file_that_cannot_be_written_fails_clearly(existing: Path) -> None:
    """Wrong permissions. Root ignores mode bits, so as root the file is made immutable."""
    if os.geteuid() == 0 and _run("chattr", "+i", str(existing)):
        cause, undo = "chattr +i", ["chattr", "-i", str(existing)]
    else:  # not root (mode bits count), or root without chattr: a read-only URI
        existing.chmod(0o444)
        cause, undo = "chmod 0444", []
    before = hashlib.sha256(existing.read_bytes()).hexdigest()
    try:
        if cause == "chmod 0444" and os.geteuid() == 0:
            url: URL | str = f"sqlite:///file:{existing}?mode=ro&uri=true"
        else:
            url = sqlite_url(existing)
        error = _expect_error(url, _write)
    finally:
        if undo:
            assert _run(*undo)
        existing.chmod(0o644)
    _assert_clear(error, existing, "readonly database")
    assert hashlib.sha256(existing.read_bytes()).hexdigest() == before
    database = TrainingDB(sqlite_url(existing))
    try:
        assert database.get_run("new") is None
    finally:
        database.dispose()


def test_missing_file_read_only_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    for call in (_read, _write):
        error = _expect_error(f"sqlite:///file:{path}?mode=ro&uri=true", call)
        _assert_clear(error, path, "unable to open database file")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_an_error_for_reads_and_created_at_head_by_a_write(
    tmp_path: Path,
) -> None:
    """docs/reliability.md, "Durability": a read of a missing file (a mistyped
    TRAINING_DB_PATH) is an error naming the path and the fix, and creates nothing; the
    first write creates the file (and its folder) at head."""
    path = tmp_path / "new" / "runs.db"
    database = TrainingDB(sqlite_url(path))
    try:
        for read in (
            lambda: database.get_run("new"),
            database.query_runs,
            database.get_stats,
            database.schema_state,
        ):
            with pytest.raises(DatabaseNotFoundError) as raised:
                read()
            _assert_clear(raised.value, path, "training-db init")
        assert list(tmp_path.iterdir()) == []  # not even the folder
        database.insert_run("new", None, {})
        assert path.exists()
        assert database.schema_state().is_current
        assert database.get_run("new") is not None
    finally:
        database.dispose()


@pytest.mark.parametrize("call", [_read, _write])
def test_folder_where_the_file_should_be(tmp_path: Path, call: Callable[[TrainingDB], Any]) -> None:
    path = tmp_path / "runs.db"
    path.mkdir()
    error = _expect_error(sqlite_url(path), call)
    _assert_clear(error, path, "unable to open database file")
    assert list(tmp_path.rglob("*")) == [path]


@pytest.mark.parametrize("call", [_read, _write])
def test_parent_folder_that_is_a_file(tmp_path: Path, call: Callable[[TrainingDB], Any]) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("not a folder\n")
    path = regular / "runs.db"
    error = _expect_error(sqlite_url(path), call)
    _assert_clear(error, path, "cannot create the folder" if call is _write else "no database at")
    assert list(tmp_path.rglob("*")) == [regular]
    assert regular.read_text() == "not a folder\n"


@pytest.mark.parametrize("call", [_read, _write])
def test_file_that_is_not_a_database(tmp_path: Path, call: Callable[[TrainingDB], Any]) -> None:
    path = tmp_path / "runs.db"
    noise = random.Random(11).randbytes(16384)  # no SQLite header: "file is not a database"
    path.write_bytes(noise)
    error = _expect_error(sqlite_url(path), call)
    _assert_clear(error, path, "file is not a database")
    assert isinstance(error, DatabaseUnavailableError)
    assert path.read_bytes() == noise
    assert list(tmp_path.iterdir()) == [path]  # no -wal or -shm next to it
