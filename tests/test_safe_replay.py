"""training_db.safe keeps its promise: no call blocks the spool, whatever it raises; a call
that does not fit its signature never raises; spooled calls land once the database is back,
without a manual replay; and `training-db replay` lists what it set aside.

The outages are real (a SQLite path that cannot be opened, a TCP proxy cutting PostgreSQL
off), and the "poison" is a statement the database itself refuses (a trigger), so that it
still fails whatever validation the library adds at the source.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import URL
from sqlalchemy import exc as sa_exc

import training_db
from tests.test_pg_faults import TcpProxy, wait_for
from training_db import TrainingDB, safe
from training_db.cli import main
from training_db.core.errors import (
    CorruptDataError,
    DatabaseUnavailableError,
    DatabaseWriteError,
    DuplicateWandbRunIdError,
    InvalidArgumentError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SchemaVersionError,
)
from training_db.core.settings import sqlite_url
from training_db.safe import SpooledCall

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parent.parent
CLOSED_PORT_URL = "postgresql://trainer@127.0.0.1:1/trainingruns"
# A value the repository cannot store (at the time of writing, OverflowError from datetime
# arithmetic; once validated at the source, InvalidArgumentError): rejected either way.
FAR_PAST = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A spool directory of the test's own; the default database unbound afterwards."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(directory))
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "0")
    monkeypatch.delenv("TRAINING_DB_SPOOL_AUTO_REPLAY", raising=False)
    yield directory
    assert safe.drain(60), "a best-effort call was still running at the end of the test"
    default = training_db.api._default
    training_db.api._default = None
    if default is not None:
        default.dispose()


def refuse_poison(url: URL) -> None:
    """Make the database refuse to insert a run whose host is ``poison`` (a trigger)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            if url.get_backend_name() == "sqlite":
                connection.exec_driver_sql(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON training_runs"
                    " WHEN NEW.host = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
                )
            else:
                connection.exec_driver_sql(
                    "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
                    " BEGIN IF NEW.host = 'poison' THEN RAISE EXCEPTION 'poison refused';"
                    " END IF; RETURN NEW; END $$"
                )
                connection.exec_driver_sql(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON training_runs"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
                )
    finally:
        engine.dispose()


def spool_lines(directory: Path) -> list[bytes]:
    path = directory / "spool.jsonl"
    return path.read_bytes().splitlines() if path.exists() else []


def rejected_entries(directory: Path) -> list[dict[str, Any]]:
    path = directory / "spool.rejected"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def too_deep_to_parse(run_id: str) -> bytes:
    """A record whose JSON nests deeper than the parser's recursion limit."""
    depth = 100_000
    return (
        '{"id":"deep","recorded_at":"2026-01-01T00:00:00+00:00","function":"set_tags",'
        f'"args":[],"kwargs":{{"run_id":"{run_id}","tags":{{"t":{"[" * depth}{"]" * depth}}}}}}}'
    ).encode()


# --- one table says what a failure means -------------------------------------------------------


def _lock_conflict() -> BaseException:
    """A SQLite lock conflict as the driver reports it, inside one of this package's errors."""
    driver = sa_exc.OperationalError("UPDATE ...", {}, sqlite3.OperationalError("locked"))
    driver.orig.sqlite_errorcode = 5  # type: ignore[union-attr]  # SQLITE_BUSY
    error = DatabaseWriteError("the database refused the statement")
    error.__cause__ = driver
    return error


FAILURES: list[tuple[str, Callable[[], BaseException], safe.Failure]] = [
    ("set_tags", lambda: DatabaseUnavailableError("down"), "transient"),
    ("set_tags", lambda: SchemaVersionError("behind"), "transient"),
    ("set_tags", TimeoutError, "transient"),
    ("set_tags", lambda: sa_exc.TimeoutError("pool"), "transient"),
    ("set_tags", _lock_conflict, "transient"),
    ("insert_run", lambda: RunAlreadyExistsError("there"), "already-applied"),
    ("insert_objective", lambda: ObjectiveAlreadyExistsError("there"), "already-applied"),
    ("set_tags", lambda: RunNotFoundError("ghost"), "unknown-run"),
    ("set_tags", lambda: InvalidArgumentError("tags must be a mapping"), "invalid"),
    ("set_tags", lambda: ValueError("bad"), "invalid"),
    ("set_tags", lambda: TypeError("bad"), "invalid"),
    ("insert_run", lambda: DuplicateWandbRunIdError("taken"), "invalid"),
    ("update_run_status", lambda: RunAlreadyExistsError("there"), "invalid"),
    ("set_tags", lambda: DatabaseWriteError("integer out of range"), "refused"),
    ("log_history", lambda: CorruptDataError("damaged row"), "refused"),
    ("insert_run", lambda: OverflowError("too large"), "refused"),
    ("log_history", lambda: struct.error("out of range"), "refused"),
    ("set_tags", lambda: KeyError("a bug"), "refused"),
    ("set_tags", RecursionError, "refused"),
]


@pytest.mark.parametrize(("function", "make_error", "expected"), FAILURES)
def test_the_failure_table(
    function: str, make_error: Callable[[], BaseException], expected: safe.Failure
) -> None:
    assert safe.classify_failure(function, make_error()) == expected


def test_the_docs_show_the_failure_table() -> None:
    """docs/reliability.md has one row per kind of failure, with the code's actions."""
    words = {
        "spool": "spooled",
        "drop": "dropped",
        "reject": "rejected",
        "keep": "stays",
        "done": "removed",
    }
    rows = {
        line.split("|")[1].strip(" `"): [cell.strip() for cell in line.split("|")[1:-1]]
        for line in (ROOT / "docs" / "reliability.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for failure, (at_call, at_replay) in safe.FAILURE_HANDLING.items():
        assert failure in rows, failure
        assert words[at_call] in rows[failure][-2], failure
        assert words[at_replay] in rows[failure][-1], failure


# --- never raising on arguments that do not fit ------------------------------------------------


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (
            lambda: safe.update_run_status("run-1", "running", nonsense=1),
            "update_run_status() got an unexpected keyword argument 'nonsense'",
        ),
        (lambda: safe.insert_run("run-1"), "insert_run() missing a required argument"),
        (
            lambda: safe.attach_blog_post("run-1", "https://blog", "extra"),
            "attach_blog_post() too many positional arguments",
        ),
        (lambda: safe.heartbeat("run-1", "2026-01-01"), "too many positional arguments"),
        (safe.finish_run, "missing a required argument: 'run_id'"),
    ],
    ids=["unknown keyword", "missing argument", "extra positional", "keyword-only", "nothing"],
)
def test_a_call_whose_arguments_do_not_bind_is_dropped(
    call: Callable[[], safe.SafeResult[Any]],
    problem: str,
    default_db: TrainingDB,
    spool: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    default_db.insert_run("run-1", None, {})
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    result = call()
    assert result.status == "dropped" and not result
    assert result.error is not None and problem in result.error
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "dropped" in caplog.records[0].getMessage()
    assert spool_lines(spool) == []
    run = default_db.get_run("run-1")
    assert run is not None and run["status"] == "launched" and run["blog_post_url"] is None


# --- a poison never holds back the calls after it ----------------------------------------------


def test_a_call_the_database_refuses_is_kept_aside_and_later_calls_go_through(
    default_db: TrainingDB, db_url: URL, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_poison(db_url)
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    poison = safe.insert_run("poisoned", None, {"lr": 0.1}, host="poison")
    assert poison.status == "rejected" and not poison
    assert poison.error is not None and "poison refused" in poison.error
    assert "spool.rejected" in caplog.text

    assert safe.insert_run("good", None, {}, host="ec2").status == "ok"
    assert safe.set_tags("good", {"after": "the poison"}).status == "ok"
    assert default_db.get_tags("good") == {"after": "the poison"}
    assert default_db.get_run("poisoned") is None
    assert spool_lines(spool) == []

    (entry,) = rejected_entries(spool)
    assert entry["record_id"] == poison.record_id and entry["function"] == "insert_run"
    assert entry["line"] is None and "poison refused" in entry["reason"]
    kept = SpooledCall.from_line(entry["text"])
    assert kept.kwargs["host"] == "poison" and kept.kwargs["config_dict"] == {"lr": 0.1}


def test_records_retrying_cannot_cure_do_not_hold_back_the_replay(
    db: TrainingDB, db_url: URL, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the database refuses, one the repository fails on with an exception that is
    not the library's, and a line too deep to parse, among good records spooled during an
    outage: the good ones are applied in order, the others set aside and listed."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    refuse_poison(db_url)
    training_db.configure(CLOSED_PORT_URL)
    poison = safe.insert_run("poisoned", None, {}, host="poison")
    assert poison.status == "spooled"
    assert safe.insert_run("good", None, {}).status == "spooled"
    unexpected = SpooledCall(
        "unexpected", dt.datetime.now(UTC), "heartbeat", [], {"run_id": "good", "at": FAR_PAST}
    )
    safe.Spool(spool).append(unexpected.to_line())
    safe.Spool(spool).append(too_deep_to_parse("good").decode())
    assert safe.set_tags("good", {"after": "the poison"}).status == "spooled"
    assert safe.finish_run("good", "completed", {"loss": 0.5}).status == "spooled"
    lines = spool_lines(spool)

    report = safe.replay(spool, db=db)

    assert (report.applied, report.already_present, report.remaining) == (3, 0, 0)
    assert [(r.line, r.function, r.record_id) for r in report.rejected] == [
        (1, "insert_run", poison.record_id),
        (3, "heartbeat", "unexpected"),
    ]
    assert "poison refused" in report.rejected[0].reason
    assert [m.line for m in report.malformed] == [4]
    assert not report.ok and "2 rejected" in report.summary()
    assert spool_lines(spool) == []
    run = db.get_run("good")
    assert run is not None and run["status"] == "completed"
    assert db.get_tags("good") == {"after": "the poison"}
    assert db.get_run("poisoned") is None

    entries = rejected_entries(spool)
    assert [(e["line"], e["function"], e["record_id"]) for e in entries] == [
        (1, "insert_run", poison.record_id),
        (3, "heartbeat", "unexpected"),
        (4, None, None),
    ]
    assert [e["text"].encode() for e in entries] == [lines[0], lines[2], lines[3]]
    assert all(e["reason"] for e in entries)


# --- prompt replay: when the database is back, and at exit -------------------------------------


@dataclass
class Outage:
    """The test database, unreachable for real until ``restore()``."""

    url: URL  # what the training process connects to
    direct_url: URL  # where the test reads what arrived
    restore: Callable[[], None]


@pytest.fixture
def outage(backend: str, db_url: URL, tmp_path: Path) -> Iterator[Outage]:
    """SQLite: a folder where the database file should be, then the file put in its place.
    PostgreSQL: a proxy refusing connections, then forwarding them again."""
    refuse_poison(db_url)
    if backend == "sqlite":
        assert db_url.database is not None
        live = tmp_path / "outage" / "runs.db"
        live.mkdir(parents=True)  # "unable to open database file"
        staged = tmp_path / "outage" / "staged.db"
        shutil.copyfile(db_url.database, staged)

        def restore_file() -> None:
            live.rmdir()
            os.replace(staged, live)

        yield Outage(sqlite_url(live), sqlite_url(live), restore_file)
        return
    assert db_url.host is not None
    proxy = TcpProxy((db_url.host, db_url.port or 5432))
    proxy.mode = "refuse"

    def reconnect() -> None:
        proxy.mode = "forward"

    try:
        yield Outage(proxy.url(db_url), db_url, reconnect)
    finally:
        proxy.close()


def run_training_process(
    outage: Outage, spool: Path, command: str, **env: str
) -> tuple[list[str], str, str]:
    """Run tests/safe_workers.py: its calls spool while the database is unreachable; then
    the database comes back and it gets ``command``. Returns (statuses, stdout, stderr)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRAINING_DB_") or key.startswith("TRAINING_DB_TEST_")
    }
    environment |= {
        "TRAINING_DB_URL": outage.url.render_as_string(hide_password=False),
        "TRAINING_DB_SPOOL_DIR": str(spool),
        **env,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.safe_workers", "trained"],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        statuses = child.stdout.readline().split()
        outage.restore()
        out, err = child.communicate(command + "\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return statuses, out, err


def assert_the_run_arrived(outage: Outage, spool: Path) -> None:
    database = TrainingDB(outage.direct_url)
    try:
        run = database.get_run("trained")
        assert run is not None and run["status"] == "completed"
        assert database.get_history("trained")["loss"] == [1.0, 0.5]
        assert database.get_run("trained-poison") is None
    finally:
        database.dispose()
    assert spool_lines(spool) == []
    assert [(e["function"], e["line"]) for e in rejected_entries(spool)] == [("insert_run", 1)]


@pytest.mark.parametrize("when", ["at exit", "while running"])
def test_calls_spooled_in_an_outage_land_without_a_manual_replay(
    when: str, outage: Outage, tmp_path: Path
) -> None:
    """``at exit``: the process ends right after the database is back and the exit hook
    applies its calls; ``while running``: the worker applies them while the process waits,
    making no call. Either way the poison among them is set aside, not in the way."""
    spool = tmp_path / "spool"
    statuses, out, err = run_training_process(
        outage, spool, "exit" if when == "at exit" else "wait"
    )
    assert statuses == ["spooled"] * 5, err
    if when == "while running":
        assert out.split()[-1] == "empty", err
    assert_the_run_arrived(outage, spool)


def test_with_automatic_replay_off_the_calls_wait_for_a_replay(
    outage: Outage, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    statuses, _, err = run_training_process(
        outage, spool, "exit", TRAINING_DB_SPOOL_AUTO_REPLAY="0"
    )
    assert statuses == ["spooled"] * 5, err
    assert len(spool_lines(spool)) == 5
    database = TrainingDB(outage.direct_url)
    try:
        assert database.get_run("trained") is None
        report = safe.replay(spool, db=database)
        assert (report.applied, len(report.rejected)) == (4, 1)
    finally:
        database.dispose()
    assert_the_run_arrived(outage, spool)


def test_the_worker_replays_once_the_database_is_back_in_this_process(
    outage: Outage, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in-process: a call right after the outage joins the spool (the interval has
    not passed), and the worker applies everything, in order, without another call."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "3600")
    training_db.configure(outage.url)
    assert safe.insert_run("poisoned", None, {}, host="poison").status == "spooled"
    assert safe.insert_run("run-1", None, {}).status == "spooled"
    outage.restore()
    result = safe.update_run_status("run-1", "running")
    assert result.status == "spooled"
    assert result.error is not None and "waiting in the spool" in result.error

    database = TrainingDB(outage.direct_url)
    try:
        wait_for(lambda: not spool_lines(spool), timeout=60)
        run = database.get_run("run-1")
        assert run is not None and run["status"] == "running"
    finally:
        database.dispose()
    assert [e["function"] for e in rejected_entries(spool)] == ["insert_run"]
    assert safe.set_tags("run-1", {"next": "call"}).status == "ok"  # straight through again


@pytest.mark.parametrize("back", [True, False], ids=["database back", "still down"])
def test_the_exit_hook_replays_or_says_what_is_left(
    back: bool, outage: Outage, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook the interpreter runs at exit, called here in-process: it applies this
    process's spooled calls, or warns that they wait in the spool; it never raises."""
    training_db.configure(outage.url)
    assert safe.insert_run("poisoned", None, {}, host="poison").status == "spooled"
    assert safe.insert_run("run-1", None, {}).status == "spooled"
    if back:
        outage.restore()
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    safe._replay_at_exit()
    if back:
        assert spool_lines(spool) == []
        assert [e["function"] for e in rejected_entries(spool)] == ["insert_run"]
        database = TrainingDB(outage.direct_url)
        assert database.get_run("run-1") is not None
        database.dispose()
    else:
        assert len(spool_lines(spool)) == 2
        assert "still waiting in" in caplog.text and str(spool) in caplog.text


@contextlib.contextmanager
def run_locked(backend: str, db_url: URL) -> Iterator[None]:
    """Writes to run-1 wait while this is held (SQLite: the whole file; PostgreSQL: the row)."""
    if backend == "sqlite":
        assert db_url.database is not None
        holder = sqlite3.connect(db_url.database, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text("SELECT 1 FROM training_runs WHERE run_id = 'run-1' FOR UPDATE")
            )
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


def test_a_call_spooled_while_a_replay_waits_is_not_overtaken(
    backend: str, db_url: URL, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call replays a record another process left, and the replay waits on a lock until
    the caller gives up: that call and the next are spooled by their callers, after the
    replay read the spool. Once the replay goes through, a later call must still come after
    them, not reach the database first."""
    monkeypatch.setenv("TRAINING_DB_SAFE_TIMEOUT", "1")
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "60")
    database = training_db.configure(db_url)
    database.insert_run("run-1", None, {})
    left_over = SpooledCall(
        "left-over", dt.datetime.now(UTC), "set_tags", [], {"run_id": "run-1", "tags": {"k": "0"}}
    )
    safe.Spool(spool).append(left_over.to_line())
    with run_locked(backend, db_url):
        first = safe.set_tags("run-1", {"k": "A"})  # replays left-over first: waits on the lock
        second = safe.set_tags("run-1", {"k": "B"})
    assert (first.status, second.status) == ("spooled", "spooled")
    assert safe.drain(60)
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "3600")  # no replay from a call
    safe.set_tags("run-1", {"k": "C"})
    assert safe.drain(60)
    safe.replay()
    assert database.get_tags("run-1") == {"k": "C"}  # the last call's value, not B's
    assert spool_lines(spool) == []


# --- what `training-db replay` prints ----------------------------------------------------------


def invoke(url: URL | str, *args: str) -> Any:
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, ["--url", text, *args])


def test_the_replay_command_lists_the_records_it_set_aside(
    db_url: URL, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    refuse_poison(db_url)
    training_db.configure(CLOSED_PORT_URL)
    poison = safe.insert_run("poisoned", None, {}, host="poison")
    safe.insert_run("good", None, {})
    bad_metric = safe.update_objective_metric("good", "COMT", "mean", 0.5)
    safe.attach_blog_post("good", "https://blog")
    assert poison.record_id is not None and bad_metric.record_id is not None

    result = invoke(db_url, "replay", "--spool-dir", str(spool))

    assert result.exit_code == 1, result.output
    assert "2 applied" in result.output and "2 rejected" in result.output
    rejected = [line for line in result.output.splitlines() if "rejected line" in line]
    assert len(rejected) == 2
    assert poison.record_id in rejected[0] and "insert_run" in rejected[0]
    assert "poison refused" in rejected[0]
    assert bad_metric.record_id in rejected[1] and "update_objective_metric" in rejected[1]
    assert "unknown metric type 'mean'" in rejected[1]
    assert str(spool / "spool.rejected") in result.output
    run = TrainingDB(db_url).get_run("good")
    assert run is not None and run["blog_post_url"] == "https://blog"

    again = invoke(db_url, "replay", "--spool-dir", str(spool))
    assert again.exit_code == 0, again.output  # nothing left, nothing new set aside


def test_the_replay_command_says_what_remains(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    training_db.configure(CLOSED_PORT_URL)
    for index in range(3):
        safe.set_tags("run-1", {"index": index})
    result = invoke(CLOSED_PORT_URL, "replay", "--spool-dir", str(spool))
    assert result.exit_code == 1
    assert "1 failed" in result.output and "2 pending" in result.output
    assert "3 records remain in the spool" in result.output
    assert "DatabaseUnavailableError" in result.output
    assert len(spool_lines(spool)) == 3
