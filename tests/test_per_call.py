"""The fixed cost of a call, pinned by what it sends, never by a time.

`bench/percall.py` measures the cost; these tests keep its structural causes from coming
back: the number of statements a small read sends, no ``SELECT 1`` before each call on
PostgreSQL, a server-closed pooled connection replaced at checkout, an objective query on
an unknown name that does not walk the runs, and statements built once per question.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL

from training_db import TrainingDB, UnknownNameError
from training_db.schema import RunObjective, TrainingRun
from training_db.store import objectives as store_objectives

UTC = dt.timezone.utc


def statements_of(db: TrainingDB, call: Callable[[], Any]) -> list[str]:
    """The statements ``call`` sends, without BEGIN and COMMIT."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT"):
            sent.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    return sent


def add_runs(db: TrainingDB, first: int, count: int) -> None:
    """``count`` runs, each with two objectives, inserted in bulk."""
    created = dt.datetime(2026, 1, 1, tzinfo=UTC)
    runs = [
        {
            "run_id": f"run-{index:05d}",
            "created_at": created + dt.timedelta(minutes=index),
            "status": "completed",
            "host": "node",
        }
        for index in range(first, first + count)
    ]
    objectives = [
        {"run_id": run["run_id"], "objective_name": name, "raw_mean": 0.5}
        for run in runs
        for name in ("COMT_activity", "DRD5_activity")
    ]
    with db.engine.begin() as connection:
        connection.execute(sa.insert(TrainingRun), runs)
        connection.execute(sa.insert(RunObjective), objectives)


@pytest.fixture
def loaded(db: TrainingDB) -> TrainingDB:
    db.insert_run("run-first", None, {})  # creates the schema the usual way
    add_runs(db, 0, 200)
    return db


@pytest.fixture
def pings(loaded: TrainingDB, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pool's liveness pings (``pool_pre_ping`` sends one per checkout)."""
    counted: list[int] = []
    dialect = loaded.engine.dialect
    original = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        counted.append(1)
        return original(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", do_ping)
    return counted


def test_a_missing_run_is_one_select(loaded: TrainingDB) -> None:
    sent = statements_of(loaded, lambda: loaded.get_run("no-such-run"))
    assert len(sent) == 1 and sent[0].lstrip().upper().startswith("SELECT")


def test_a_found_run_is_two_selects(loaded: TrainingDB) -> None:
    sent = statements_of(loaded, lambda: loaded.get_run("run-00001"))
    assert len(sent) == 2  # the run, its tags


def test_an_empty_query_runs_is_one_select(loaded: TrainingDB) -> None:
    sent = statements_of(loaded, lambda: loaded.query_runs({"host": "no-such-host"}))
    assert len(sent) == 1


def test_an_objective_query_matching_nothing_is_one_select(loaded: TrainingDB) -> None:
    """A known objective whose bound no run meets: the first empty answer also checks that
    the name exists (did-you-mean); the database remembers it, so a poller asking again
    sends the query alone."""

    def ask() -> Any:
        return loaded.query_runs_by_objectives({"COMT_activity": {"min": 2.0}})

    assert len(statements_of(loaded, ask)) == 2  # the query, the name check
    assert len(statements_of(loaded, ask)) == 1
    assert ask() == []


def test_an_unknown_objective_is_checked_every_time(loaded: TrainingDB) -> None:
    """Only names found are remembered: a misspelt one raises on every call."""
    for _ in range(2):
        with pytest.raises(UnknownNameError, match="COMT_activity"):
            loaded.query_runs_by_objectives({"COMT_activity_": {"min": 0.5}})


def test_no_ping_before_a_call(loaded: TrainingDB, pings: list[int]) -> None:
    for _ in range(3):
        loaded.get_run("no-such-run")
        loaded.query_runs({"host": "no-such-host"})
    assert pings == []


def test_the_same_question_reuses_its_statement(loaded: TrainingDB) -> None:
    question = {"COMT_activity": {"min": 2.0}, "DRD5_activity": {"max": 0.9}}
    loaded.query_runs_by_objectives(question)
    before = store_objectives._objective_query.cache_info()
    loaded.query_runs_by_objectives({"DRD5_activity": {"min": 3.0}, "COMT_activity": {"max": 0.2}})
    after = store_objectives._objective_query.cache_info()
    assert after.hits == before.hits + 1  # same shape, other values: built once
    assert after.currsize == before.currsize


def test_query_runs_answers_match_after_reuse(loaded: TrainingDB) -> None:
    """A cached statement is keyed by the values with their types: 1 and True differ."""
    assert len(loaded.query_runs({"host": "node"}, limit=5)) == 5
    assert len(loaded.query_runs({"host": "node"}, limit=5)) == 5
    assert len(loaded.query_runs({"host": "node"}, limit=7)) == 7
    assert loaded.query_runs({"batch_size": 1}) == []
    with pytest.raises(ValueError, match="batch_size"):
        loaded.query_runs({"batch_size": True})


def _sqlite_steps(db: TrainingDB, call: Callable[[], Any]) -> int:
    """SQLite virtual-machine instructions (in units of 100) of the objective statement."""
    steps = [0]
    used: list[Any] = []

    def count() -> int:
        steps[0] += 1
        return 0

    def listen(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "run_objectives" in statement and not used:  # the query, not a name check after it
            raw = conn.connection.driver_connection
            raw.set_progress_handler(count, 100)
            used.append(raw)

    def done(*_: Any) -> None:
        for raw in used:
            raw.set_progress_handler(None, 100)

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    sa.event.listen(db.engine, "after_cursor_execute", done)
    try:
        call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
        sa.event.remove(db.engine, "after_cursor_execute", done)
        for raw in used:
            raw.set_progress_handler(None, 100)
    assert used, "the objective statement was not sent"
    return steps[0]


def _pg_plan(db: TrainingDB, call: Callable[[], Any]) -> str:
    captured: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "run_objectives" in statement:
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    statement, parameters = captured[0]
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}", parameters
        )
        return "\n".join(row[0] for row in rows)


def test_an_unknown_objective_does_not_walk_the_runs(loaded: TrainingDB, backend: str) -> None:
    def ask() -> Any:
        with pytest.raises(UnknownNameError):
            loaded.query_runs_by_objectives({"no_such_objective": {"min": 0.5}})

    if backend == "postgresql":
        sa_analyze(loaded)
        plan = _pg_plan(loaded, ask)
        assert "One-Time Filter" in plan, plan
        assert "never executed" in plan, plan  # the join is not run at all
        return
    small = _sqlite_steps(loaded, ask)
    add_runs(loaded, 200, 1800)  # ten times the runs
    sa_analyze(loaded)
    large = _sqlite_steps(loaded, ask)
    assert large <= small + 2, (small, large)


def sa_analyze(db: TrainingDB) -> None:
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_pooled_connection_closed_by_the_server_is_replaced_at_checkout(
    loaded: TrainingDB, db_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """No round trip and no retry: the checkout sees the closed socket and reconnects."""
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        loaded.get_run("run-first")
        with admin.connect() as connection:
            pids = connection.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).scalars()
            for pid in list(pids):
                connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)")
        caplog.set_level(logging.INFO, logger="training_db.db")
        assert loaded.get_run("run-first") is not None
        assert not [r for r in caplog.records if "retrying once" in r.getMessage()]
    finally:
        admin.dispose()


def test_a_known_objective_matching_nothing_does_not_walk_the_runs(
    loaded: TrainingDB, backend: str
) -> None:
    """The poll of a control plane: a known objective, a bound no run meets yet. The work
    of the query must not grow with the number of runs."""

    def ask() -> Any:
        return loaded.query_runs_by_objectives({"COMT_activity": {"min": 2.0}})

    if backend == "postgresql":
        sa_analyze(loaded)
        plan = _pg_plan(loaded, ask)
        # The objectives' index answers first; the runs are not read beyond a first row.
        read = [int(rows) for rows in re.findall(r"on training_runs.*?actual rows=(\d+)", plan)]
        assert all(rows <= 1 for rows in read), plan
        return
    small = _sqlite_steps(loaded, ask)
    add_runs(loaded, 200, 1800)  # ten times the runs
    sa_analyze(loaded)
    large = _sqlite_steps(loaded, ask)
    assert large <= small + 2, (small, large)
