"""Heartbeats and stale runs on both backends, the 0005 revision, and heartbeats via safe."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL

import training_db
from tests.conftest import table_snapshot
from training_db import RunNotFoundError, TrainingDB, safe
from training_db.schema import migrations

UTC = dt.timezone.utc


def _running(db: TrainingDB, run_id: str, started_at: dt.datetime) -> None:
    db.insert_run(run_id, None, {}, created_at=started_at - dt.timedelta(minutes=1))
    db.update_run_status(run_id, "running", started_at=started_at)


def _run(db: TrainingDB, run_id: str) -> dict[str, Any]:
    run = db.get_run(run_id)
    assert run is not None
    return run


def test_heartbeat_records_the_time_and_only_moves_forward(db: TrainingDB) -> None:
    start = dt.datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    _running(db, "run-1", start)
    assert _run(db, "run-1")["last_heartbeat_at"] is None

    db.heartbeat("run-1", at=start + dt.timedelta(minutes=10))
    assert _run(db, "run-1")["last_heartbeat_at"] == start + dt.timedelta(minutes=10)

    db.heartbeat("run-1", at=start + dt.timedelta(minutes=5))  # late, e.g. replayed
    assert _run(db, "run-1")["last_heartbeat_at"] == start + dt.timedelta(minutes=10)

    db.heartbeat("run-1", at="2026-05-01T08:20:00Z")
    assert _run(db, "run-1")["last_heartbeat_at"] == start + dt.timedelta(minutes=20)

    before = dt.datetime.now(UTC)
    db.heartbeat("run-1")
    beat = _run(db, "run-1")["last_heartbeat_at"]
    assert before - dt.timedelta(seconds=5) <= beat <= dt.datetime.now(UTC)
    assert _run(db, "run-1")["status"] == "running"  # a heartbeat changes nothing else


def test_heartbeat_is_one_statement(db: TrainingDB) -> None:
    _running(db, "run-1", dt.datetime(2026, 5, 1, tzinfo=UTC))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split(maxsplit=1)[0].upper())

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        db.heartbeat("run-1")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["UPDATE"]


def test_heartbeat_of_an_unknown_run_raises_and_writes_nothing(db: TrainingDB, db_url: URL) -> None:
    _running(db, "run-1", dt.datetime(2026, 5, 1, tzinfo=UTC))
    before = table_snapshot(db_url)
    with pytest.raises(RunNotFoundError, match="run_id='ghost'"):
        db.heartbeat("ghost")
    assert table_snapshot(db_url) == before


def test_mark_stale_runs_crashes_only_silent_running_runs(db: TrainingDB) -> None:
    now = dt.datetime.now(UTC)
    hours = dt.timedelta(hours=1)
    _running(db, "beat-then-silent", now - 3 * hours)
    db.heartbeat("beat-then-silent", at=now - 2 * hours)
    _running(db, "never-beat", now - 2 * hours)
    _running(db, "beating", now - 3 * hours)
    db.heartbeat("beating", at=now - dt.timedelta(minutes=1))
    _running(db, "just-started", now - dt.timedelta(minutes=5))
    _running(db, "finished", now - 5 * hours)
    db.update_run_status("finished", "completed", ended_at=now - 4 * hours)
    db.insert_run("launched-long-ago", None, {}, created_at=now - 9 * hours)

    changed = db.mark_stale_runs(dt.timedelta(minutes=30))

    assert changed == ["beat-then-silent", "never-beat"]  # sorted
    silent = _run(db, "beat-then-silent")
    assert silent["status"] == "crashed"
    assert silent["ended_at"] == silent["last_heartbeat_at"] == now - 2 * hours
    assert silent["duration_seconds"] == pytest.approx(3600)
    never = _run(db, "never-beat")
    assert never["status"] == "crashed"
    assert never["ended_at"] == never["started_at"] == now - 2 * hours
    assert never["duration_seconds"] == 0
    for untouched in ("beating", "just-started"):
        assert _run(db, untouched)["status"] == "running"
        assert _run(db, untouched)["ended_at"] is None
    assert _run(db, "finished")["status"] == "completed"
    assert _run(db, "finished")["ended_at"] == now - 4 * hours
    assert _run(db, "launched-long-ago")["status"] == "launched"

    assert db.mark_stale_runs(dt.timedelta(minutes=30)) == []  # nothing left to do


def test_mark_stale_runs_takes_seconds_and_its_default(db: TrainingDB) -> None:
    now = dt.datetime.now(UTC)
    _running(db, "twenty-minutes", now - dt.timedelta(minutes=20))
    _running(db, "forty-minutes", now - dt.timedelta(minutes=40))
    assert db.mark_stale_runs() == ["forty-minutes"]  # default: 30 minutes
    assert db.mark_stale_runs(600) == ["twenty-minutes"]
    assert db.mark_stale_runs(dt.timedelta.max) == []


def test_find_stale_runs_lists_what_mark_stale_runs_would_change(
    db: TrainingDB, db_url: URL
) -> None:
    now = dt.datetime.now(UTC)
    _running(db, "silent", now - dt.timedelta(hours=2))
    _running(db, "beating", now - dt.timedelta(hours=2))
    db.heartbeat("beating", at=now - dt.timedelta(minutes=1))
    _running(db, "also-silent", now - dt.timedelta(hours=3))
    before = table_snapshot(db_url)
    assert db.find_stale_runs(dt.timedelta(minutes=30)) == ["also-silent", "silent"]
    assert db.find_stale_runs(dt.timedelta.max) == []
    assert table_snapshot(db_url) == before  # a read: nothing changed
    assert db.mark_stale_runs(dt.timedelta(minutes=30)) == ["also-silent", "silent"]
    assert db.find_stale_runs(dt.timedelta(minutes=30)) == []


@pytest.mark.parametrize(
    ("older_than", "message"),
    [
        (-1, "must not be negative"),
        (dt.timedelta(seconds=-1), "must not be negative"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
        ("30m", "must be a timedelta or a number of seconds"),
        (True, "must be a timedelta or a number of seconds"),
    ],
)
def test_mark_stale_runs_rejects_bad_ages(
    db: TrainingDB, db_url: URL, older_than: Any, message: str
) -> None:
    _running(db, "old", dt.datetime(2020, 1, 1, tzinfo=UTC))
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match=message):
        db.mark_stale_runs(older_than)
    assert table_snapshot(db_url) == before


def test_module_level_functions(default_db: TrainingDB) -> None:
    old = dt.datetime(2026, 1, 1, tzinfo=UTC)
    _running(default_db, "run-1", old)
    training_db.heartbeat("run-1", at=old + dt.timedelta(hours=1))
    assert training_db.mark_stale_runs() == ["run-1"]
    run = training_db.get_run("run-1")
    assert run is not None
    assert run["status"] == "crashed"
    assert run["ended_at"] == old + dt.timedelta(hours=1)


def test_revision_0005_adds_the_column_and_keeps_rows(empty_url: URL) -> None:
    migrations.upgrade(empty_url, "0004")
    older = TrainingDB(empty_url, create_if_empty=False)
    engine = sa.create_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO training_runs (run_id, status, created_at, created_at_db,"
                    " updated_at_db) VALUES ('kept', 'running', :t, :t, :t)"
                ),
                {"t": dt.datetime(2026, 1, 1)},
            )
        migrations.upgrade(empty_url)
        assert "last_heartbeat_at" in {
            c["name"] for c in sa.inspect(engine).get_columns("training_runs")
        }
        database = TrainingDB(empty_url)
        assert _run(database, "kept")["last_heartbeat_at"] is None
        database.dispose()
        migrations.downgrade(empty_url, "0004")  # no heartbeat recorded: nothing is lost
        engine.dispose()
        assert "last_heartbeat_at" not in {
            c["name"] for c in sa.inspect(engine).get_columns("training_runs")
        }
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT run_id FROM training_runs")).scalars()
            assert list(kept) == ["kept"]
    finally:
        engine.dispose()
        older.dispose()


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "spool"
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(directory))
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "0")
    yield directory
    assert safe.drain(60)
    training_db.api._default = None


def test_safe_heartbeat_replayed_later_keeps_the_time_of_the_call(
    db: TrainingDB, spool: Path
) -> None:
    _running(db, "run-1", dt.datetime(2026, 1, 1, tzinfo=UTC))
    training_db.configure("postgresql://nobody@127.0.0.1:1/nothing")
    before = dt.datetime.now(UTC)
    result = safe.heartbeat("run-1")
    after = dt.datetime.now(UTC)
    assert result.status == "spooled"

    report = safe.replay(spool, db=db)
    assert (report.applied, report.remaining) == (1, 0)
    beat = _run(db, "run-1")["last_heartbeat_at"]
    assert before <= beat <= after  # the call's time, not the replay's


def test_safe_heartbeat_of_an_unknown_run_waits_then_is_rejected(
    default_db: TrainingDB, spool: Path
) -> None:
    """The run may be waiting in a spool itself, so the heartbeat is spooled, not dropped;
    if the run never comes, the replay moves it to spool.rejected."""
    result = safe.heartbeat("ghost")
    assert result.status == "spooled"
    assert result.error is not None and "RunNotFoundError" in result.error
    report = safe.replay()
    assert [item.function for item in report.rejected] == ["heartbeat"]
    assert (spool / "spool.rejected").exists()
