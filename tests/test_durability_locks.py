"""Long transactions: a long reader does not hold writers up, and a writer kept out longer
than its timeout fails with a clear error instead of hanging."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Connection

from tests.conftest import table_snapshot
from training_db import DatabaseUnavailableError, TrainingDB
from training_db.core.settings import safe_url

WRITES = 20


def _run_count(connection: Connection) -> int:
    return connection.execute(sa.text("SELECT count(*) FROM training_runs")).scalar_one()


def test_a_long_reader_does_not_hold_writers_up(db: TrainingDB, backend: str) -> None:
    db.insert_run("old", None, {})
    engine = db.engine
    if backend == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    # SQLite WAL: an open read transaction; PostgreSQL MVCC: a REPEATABLE READ snapshot
    with engine.connect() as reader, reader.begin():
        assert _run_count(reader) == 1
        started = time.monotonic()
        for index in range(WRITES):
            db.insert_run(f"new-{index}", None, {"training": {"seed": index}})
            db.finish_run(f"new-{index}", summary={"train/loss": 0.5, "_step": 10})
        elapsed = time.monotonic() - started
        assert _run_count(reader) == 1  # the reader still sees its snapshot
        assert db.get_stats()["total_runs"] == WRITES + 1  # the writers committed meanwhile
    assert elapsed < 20, f"{WRITES * 2} writes took {elapsed:.1f} s behind an open reader"


@contextmanager
def _lock_held(backend: str, url: URL) -> Iterator[None]:
    """Another connection holds the write lock (SQLite) or the table lock (PostgreSQL)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as holder:
            if backend == "sqlite":
                holder.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                holder.exec_driver_sql("BEGIN")
                holder.exec_driver_sql("LOCK TABLE training_runs IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()


def test_a_writer_kept_out_fails_clearly_within_bounds(
    db_url: URL, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite waits busy_timeout per attempt; PostgreSQL waits for a lock until statement_timeout
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "1")
    monkeypatch.setenv("TRAINING_DB_STATEMENT_TIMEOUT", "1")
    database = TrainingDB(db_url)
    database.lock_retry_seconds = 2.0
    database.insert_run("before", None, {})
    before = table_snapshot(db_url)
    cause = "database is locked" if backend == "sqlite" else "statement timeout"
    try:
        with _lock_held(backend, db_url):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError) as raised:
                database.insert_run("blocked", None, {})
            elapsed = time.monotonic() - started
        message = str(raised.value)
        assert cause in message and safe_url(db_url) in message, message
        assert "\n" not in message and "Background on this error" not in message, message
        assert 0.5 < elapsed < 30, f"failed after {elapsed:.1f} s"
        assert table_snapshot(db_url) == before
        database.insert_run("after", None, {})  # the lock is gone: writes go through again
        assert database.get_run("after") is not None
    finally:
        database.dispose()
