"""Concurrent writers: many processes on one database finish without errors, nothing is lost,
and a long read does not hold writers up. Real processes (spawn), real databases."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL

from training_db import DatabaseUnavailableError, TrainingDB
from training_db.schema import RunHistoryKeyMetrics

PROCESSES = 8
WRITES_PER_PROCESS = 500
KINDS = 4  # history append, objective value, status update, tag
SPAWN = multiprocessing.get_context("spawn")


def _writer(url: str, process: int, start: Any, results: Any) -> None:
    """One training process: its own run, then a mix of writes, all on one shared database."""
    database = TrainingDB(url)
    run_id = f"stress-{process}"
    try:
        database.insert_run(run_id, None, {"training": {"seed": process}})
        start.wait(timeout=60)
        for index in range(WRITES_PER_PROCESS):
            kind = index % KINDS
            if kind == 0:
                database.log_history(
                    run_id,
                    [{"_step": index, "train/loss": index / 10, "shared/metric": float(process)}],
                )
            elif kind == 1:
                database.update_objective_metric(run_id, f"objective_{index}", "raw_mean", index)
            elif kind == 2:
                database.update_run_status(
                    run_id, "running", total_training_steps=index, final_loss=index / 10
                )
            else:
                database.set_tags(run_id, {f"tag_{index}": index})
        results.put((process, None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((process, f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()


def _indexes(kind: int) -> list[int]:
    return [index for index in range(WRITES_PER_PROCESS) if index % KINDS == kind]


def test_processes_write_at_once_without_errors_and_nothing_is_lost(db_url: URL) -> None:
    url = db_url.render_as_string(hide_password=False)
    start = SPAWN.Event()
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_writer, args=(url, process, start, results))
        for process in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = dict(results.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == dict.fromkeys(range(PROCESSES))  # no process saw an error
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    database = TrainingDB(db_url)
    engine = database.engine
    try:
        for process in range(PROCESSES):
            run_id = f"stress-{process}"
            history = database.get_history(run_id)
            steps = _indexes(0)
            assert history["_step"] == steps
            assert history["train/loss"] == [step / 10 for step in steps]
            assert history["shared/metric"] == [float(process)] * len(steps)
            with engine.connect() as connection:
                key_rows = connection.execute(
                    sa.select(RunHistoryKeyMetrics.step, RunHistoryKeyMetrics.loss)
                    .where(RunHistoryKeyMetrics.run_id == run_id)
                    .order_by(RunHistoryKeyMetrics.step)
                ).all()
            assert [tuple(row) for row in key_rows] == [(step, step / 10) for step in steps]

            objectives = database.get_run_objectives(run_id)
            assert sorted((o["objective_name"], o["raw_mean"]) for o in objectives) == sorted(
                (f"objective_{index}", float(index)) for index in _indexes(1)
            )

            run = database.get_run(run_id)
            assert run is not None
            assert run["status"] == "running"
            last_status_write = _indexes(2)[-1]
            assert run["total_training_steps"] == last_status_write
            assert run["final_loss"] == last_status_write / 10

            assert database.get_tags(run_id) == {f"tag_{index}": index for index in _indexes(3)}
    finally:
        database.dispose()


def test_a_long_read_does_not_block_writers(db: TrainingDB, db_url: URL) -> None:
    """A reader holding a transaction open (a slow export, a notebook) while writers commit.

    SQLite in WAL mode and PostgreSQL's MVCC both let the writers through; the reader keeps
    its snapshot until it ends.
    """
    db.insert_run("before", None, {})
    reader = sa.create_engine(db_url)
    try:
        with reader.connect() as connection:
            if connection.dialect.name == "sqlite":
                transaction = connection.begin()
                connection.exec_driver_sql("BEGIN")  # pysqlite would defer it to the first write
            else:
                # one snapshot for the whole transaction, as a long export would want
                connection.execution_options(isolation_level="REPEATABLE READ")
                transaction = connection.begin()
            count = sa.text("SELECT count(*) FROM training_runs")
            assert connection.execute(count).scalar_one() == 1

            started = time.monotonic()
            for index in range(20):
                db.insert_run(f"during-{index}", None, {"index": index})
                db.update_run_status(f"during-{index}", "running")
            elapsed = time.monotonic() - started

            assert connection.execute(count).scalar_one() == 1  # still its snapshot
            transaction.rollback()
        assert elapsed < 10  # generous: blocked writers would wait out a 15 s busy timeout
        assert len(db.query_runs(limit=100)) == 21
    finally:
        reader.dispose()


def _exclusive_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_sqlite_lock_conflicts_are_retried_with_backoff(
    tmp_path: Path,
    migrated_templates: dict[str, URL],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer that finds the database locked past its busy timeout tries again."""
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "0.05")
    path = _copy_template(migrated_templates, tmp_path)
    database = TrainingDB(f"sqlite:///{path}")
    database.insert_run("run-1", None, {})
    holder = _exclusive_lock(path)
    release = threading.Timer(1.0, holder.rollback)
    caplog.set_level(logging.DEBUG, logger="training_db.db")
    release.start()
    try:
        database.set_tags("run-1", {"written": "while locked"})
    finally:
        release.join()
        holder.close()
    assert database.get_tags("run-1") == {"written": "while locked"}
    retries = [r for r in caplog.records if "lock conflict" in r.getMessage()]
    assert retries, "the write never met the lock: the test proves nothing"
    database.dispose()


def test_sqlite_lock_retries_stop_after_their_budget(
    tmp_path: Path, migrated_templates: dict[str, URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "0.05")
    path = _copy_template(migrated_templates, tmp_path)
    database = TrainingDB(f"sqlite:///{path}")
    database.insert_run("run-1", None, {})
    database.lock_retry_seconds = 1.0
    holder = _exclusive_lock(path)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailableError, match="database is locked"):
            database.set_tags("run-1", {"never": "written"})
    finally:
        holder.rollback()
        holder.close()
    assert time.monotonic() - started < 1.0 + 5  # the budget, plus generous slack
    assert database.get_tags("run-1") == {}
    database.dispose()


def _copy_template(templates: dict[str, URL], tmp_path: Path) -> Path:
    source = templates["sqlite"].database
    assert source is not None
    target = tmp_path / "locked.db"
    target.write_bytes(Path(source).read_bytes())
    return target
