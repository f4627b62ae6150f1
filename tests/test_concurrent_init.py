"""Many training processes starting at the same moment on a database nobody has set up yet.

Six real processes (spawn), released together by a barrier, each call the public API the way
a training script does. Exactly one of them migrates (or adopts); the others wait on the
migration lock, find the work done, and carry on; nothing fails, nothing is applied twice.
Each process reports the revisions *it* ran, from Alembic's own log records.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL

from tests import spawned
from tests.legacy_schemas import RUN_IDS, create_legacy_database
from tests.test_revisions_roundtrip import revisions_in_order
from training_db import TrainingDB
from training_db.core.settings import sqlite_url
from training_db.schema import migrations

PROCESSES = 6
SPAWN = multiprocessing.get_context("spawn")
RESULT_TIMEOUT_S = 120


def start_together(url: URL, first_call: str) -> list[tuple[int, list[str], str | None]]:
    barrier = SPAWN.Barrier(PROCESSES)
    results = SPAWN.Queue()
    text_url = url.render_as_string(hide_password=False)
    processes = [
        SPAWN.Process(
            target=spawned.start_training, args=(text_url, index, first_call, barrier, results)
        )
        for index in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=RESULT_TIMEOUT_S) for _ in processes]
    for process in processes:
        process.join(timeout=RESULT_TIMEOUT_S)
    outcomes.sort()
    assert [process.exitcode for process in processes] == [0] * PROCESSES, outcomes
    return outcomes


def applied_revisions(messages: list[str]) -> list[str]:
    """The revisions a process ran: Alembic logs 'Running upgrade 0001 -> 0002, ...'."""
    return [
        message.split("->")[1].split(",")[0].strip()
        for message in messages
        if message.startswith("Running upgrade")
    ]


def stored_runs(url: URL) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert migrations.current_revision(connection) == migrations.head_revision()
            return sorted(connection.exec_driver_sql("SELECT run_id FROM training_runs").scalars())
    finally:
        engine.dispose()


def test_processes_starting_on_an_empty_database_migrate_it_once(empty_url: URL) -> None:
    outcomes = start_together(empty_url, first_call="mixed")

    assert [error for _, _, error in outcomes] == [None] * PROCESSES
    ran = {index: applied_revisions(messages) for index, messages, _ in outcomes}
    migrators = [index for index, revisions in ran.items() if revisions]
    assert len(migrators) == 1, ran
    assert ran[migrators[0]] == revisions_in_order()  # every revision once, in order
    assert stored_runs(empty_url) == sorted(f"started-{index}" for index in range(PROCESSES))


def test_processes_starting_on_an_old_module_database_adopt_it_once(
    empty_url: URL, backend: str
) -> None:
    create_legacy_database(empty_url, backend, 2)

    outcomes = start_together(empty_url, first_call="init_db")

    assert [error for _, _, error in outcomes] == [None] * PROCESSES
    adopters = [
        index
        for index, messages, _ in outcomes
        if any(message.startswith("adopted ") for message in messages)
    ]
    assert len(adopters) == 1
    started = [f"started-{index}" for index in range(PROCESSES)]
    assert stored_runs(empty_url) == sorted([*RUN_IDS, *started])


def test_a_second_process_is_told_what_to_run(empty_url: URL, backend: str) -> None:
    """Behind, ahead and unversioned, as another process (with its own engine) sees them."""
    migrations.upgrade(empty_url, "0002")
    behind = _first_use_error(empty_url)
    assert "at revision 0002, behind" in behind and "`training-db upgrade`" in behind

    migrations.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_newer'")
    assert "ffff_newer" in (ahead := _first_use_error(empty_url))
    assert "upgrade the mangodb package" in ahead

    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
    engine.dispose()
    unversioned = _first_use_error(empty_url)
    assert "no Alembic version" in unversioned and "`training-db upgrade`" in unversioned


def _first_use_error(url: URL) -> str:
    results = SPAWN.Queue()
    process = SPAWN.Process(
        target=spawned.first_use, args=(url.render_as_string(hide_password=False), results)
    )
    process.start()
    message = results.get(timeout=RESULT_TIMEOUT_S)
    process.join(timeout=RESULT_TIMEOUT_S)
    assert message is not None, "the other process wrote to a database it should refuse"
    assert not message.startswith("unexpected"), message
    return str(message)


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Any:
    yield
    assert multiprocessing.active_children() == []


def test_a_database_at_head_is_opened_without_waiting_for_the_lock(
    db_url: URL, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual start finds the database at head: it must not queue for the migration lock
    (held here by another connection), or every start would wait behind every other."""
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "0.2")
    monkeypatch.setenv("TRAINING_DB_STATEMENT_TIMEOUT", "2")
    monkeypatch.setattr(migrations, "MIGRATION_LOCK_WAIT_S", 1)
    if backend == "sqlite":
        assert db_url.database is not None
        holder = sqlite3.connect(db_url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock a migrating process holds
    else:
        engine = sa.create_engine(db_url)
        holder_connection = engine.connect()
        holder_connection.execute(
            sa.text("SELECT pg_advisory_lock(:key)"), {"key": migrations._MIGRATION_LOCK_KEY}
        )
    try:
        database = TrainingDB(db_url)
        database.init_db()
        migrations.upgrade(db_url)
        assert database.get_run("nothing-here") is None
        database.dispose()
    finally:
        if backend == "sqlite":
            holder.close()
        else:
            holder_connection.close()
            engine.dispose()


def test_a_process_waits_for_a_migration_longer_than_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: ordinary writes give up after TRAINING_DB_BUSY_TIMEOUT, but a migration may
    take longer (a rebuilt table), and a starting process must wait it out, not fail."""
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "0.1")
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode = WAL")  # as every connection of mangodb's does
    holder.execute("BEGIN IMMEDIATE")  # another process, mid-migration
    release = threading.Timer(1.0, holder.execute, args=("ROLLBACK",))
    release.start()
    try:
        migrations.upgrade(sqlite_url(path))
    finally:
        release.join()
        holder.close()
    assert stored_runs(sqlite_url(path)) == []
