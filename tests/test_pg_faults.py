"""PostgreSQL faults on a real server: connections killed by the server (between calls, mid-
transaction, during COMMIT), network blips, a silent server, timeouts and a server restart.

The faults are real: ``pg_terminate_backend`` from an admin connection, a TCP proxy that cuts
connections, ``pg_ctlcluster restart``. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Engine

import training_db
from tests.conftest import PostgresServer
from training_db import DatabaseUnavailableError, TrainingDB, safe

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

RESTART_ENV = "TRAINING_DB_TEST_ALLOW_PG_RESTART"
ADVISORY_KEY = 4242


@pytest.fixture
def admin(db_url: URL) -> Iterator[Engine]:
    """An autocommit superuser engine on the test database, for causing the faults."""
    engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def backends_of(admin: Engine, *, waiting: bool = False) -> list[int]:
    """Backend pids connected to the test database (other than the admin's own)."""
    condition = " AND wait_event_type = 'Lock'" if waiting else ""
    with admin.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    f" AND pid <> pg_backend_pid(){condition}"
                )
            ).scalars()
        )


def terminate(admin: Engine, pids: list[int]) -> None:
    with admin.connect() as connection:
        for pid in pids:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def wait_for(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Background:
    """A call running in a thread, its result or exception collected."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def retried(caplog: pytest.LogCaptureFixture) -> int:
    return sum("connection was lost; retrying once" in r.getMessage() for r in caplog.records)


# --- killed by the server ----------------------------------------------------------------------


def test_a_connection_killed_between_calls_is_replaced(db: TrainingDB, admin: Engine) -> None:
    db.insert_run("run-1", None, {})
    pooled = backends_of(admin)
    assert pooled, "the pool should hold a connection to kill"
    terminate(admin, pooled)
    wait_for(lambda: not set(pooled) & set(backends_of(admin)))

    assert db.get_run("run-1") is not None  # the checkout saw the closed socket and reconnected
    db.update_run_status("run-1", "running")
    db.insert_run("run-2", None, {})
    assert {run["run_id"] for run in db.query_runs()} == {"run-1", "run-2"}


def test_an_idempotent_write_killed_mid_transaction_is_retried_once(
    db: TrainingDB, admin: Engine, db_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    db.insert_run("run-1", None, {})
    caplog.set_level(logging.INFO, logger="training_db.db")
    locker = sa.create_engine(db_url)
    try:
        with locker.connect() as holder:
            holder.execute(sa.text("SELECT 1 FROM training_runs WHERE run_id = 'run-1' FOR UPDATE"))
            call = Background(lambda: db.attach_blog_post("run-1", "https://blog/1"))
            victims = wait_for(lambda: backends_of(admin, waiting=True))  # blocked on the row
            terminate(admin, victims)
            holder.rollback()  # release the row for the retry
        call.join()
    finally:
        locker.dispose()
    assert call.error is None
    assert retried(caplog) == 1
    run = db.get_run("run-1")
    assert run is not None and run["blog_post_url"] == "https://blog/1"


def test_an_insert_killed_before_commit_is_retried_without_a_duplicate(
    db: TrainingDB, admin: Engine, db_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """insert_run is not idempotent, but a connection lost before COMMIT was sent leaves
    nothing behind (the server rolls back a transaction that never got its COMMIT), so the
    one retry is the first real attempt."""
    caplog.set_level(logging.INFO, logger="training_db.db")
    locker = sa.create_engine(db_url)
    try:
        with locker.connect() as holder:
            holder.execute(
                sa.text(
                    "INSERT INTO training_runs (run_id, status, created_at, created_at_db,"
                    " updated_at_db) VALUES ('run-1', 'launched', now(), now(), now())"
                )
            )  # uncommitted: the insert below waits for it
            call = Background(lambda: db.insert_run("run-1", None, {"mine": True}))
            victims = wait_for(lambda: backends_of(admin, waiting=True))
            terminate(admin, victims)
            holder.rollback()
        call.join()
    finally:
        locker.dispose()
    assert call.error is None
    assert retried(caplog) == 1
    run = db.get_run("run-1")
    assert run is not None and run["config"] == {"mine": True}


@pytest.fixture
def commit_blocker(admin: Engine) -> Iterator[Callable[[], None]]:
    """COMMIT on training_runs waits for an advisory lock held by the test (a deferred
    constraint trigger): the way to kill a connection exactly while it commits. Returns the
    function that releases the lock."""
    with admin.connect() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION block_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_advisory_xact_lock({ADVISORY_KEY}); RETURN NULL; END $$"
        )
        connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER block_at_commit AFTER INSERT OR UPDATE ON training_runs"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION block_at_commit()"
        )
    holder = admin.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            released = True

    yield release
    release()
    holder.close()


def committing(admin: Engine) -> list[int]:
    with admin.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event = 'advisory' AND pid <> pg_backend_pid()"
                )
            ).scalars()
        )


def test_an_insert_whose_commit_was_lost_is_not_retried(
    db: TrainingDB,
    admin: Engine,
    commit_blocker: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection died during COMMIT: the outcome is unknown to the client, so a
    non-idempotent write raises instead of being sent again."""
    caplog.set_level(logging.INFO, logger="training_db.db")
    call = Background(lambda: db.insert_run("run-1", None, {}))
    terminate(admin, wait_for(lambda: committing(admin)))
    commit_blocker()
    call.join()
    assert isinstance(call.error, DatabaseUnavailableError)
    assert retried(caplog) == 0
    assert db.get_run("run-1") is None  # this time the server had rolled it back
    db.insert_run("run-1", None, {})  # and the next call works
    assert db.get_run("run-1") is not None


def test_an_idempotent_write_whose_commit_was_lost_is_retried(
    db: TrainingDB,
    admin: Engine,
    db_url: URL,
    commit_blocker: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    commit_blocker()
    db.insert_run("run-1", None, {})
    blocker = sa.create_engine(db_url)
    try:
        with blocker.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            caplog.set_level(logging.INFO, logger="training_db.db")
            call = Background(lambda: db.set_tags("run-1", {"written": "once"}))
            terminate(admin, wait_for(lambda: committing(admin)))
            holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
        call.join()
    finally:
        blocker.dispose()
    assert call.error is None
    assert retried(caplog) == 1
    assert db.get_tags("run-1") == {"written": "once"}


# --- timeouts -----------------------------------------------------------------------------------


def test_statement_timeout_ends_a_blocked_call(
    db_url: URL, admin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_STATEMENT_TIMEOUT", "0.5")
    database = TrainingDB(db_url)
    database.insert_run("run-1", None, {})
    locker = sa.create_engine(db_url)
    try:
        with locker.connect() as holder:
            holder.execute(sa.text("SELECT 1 FROM training_runs WHERE run_id = 'run-1' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="statement timeout"):
                database.attach_blog_post("run-1", "https://blog")
            assert time.monotonic() - started < 0.5 + 5
            holder.rollback()
    finally:
        locker.dispose()
        database.dispose()


class TcpProxy:
    """A TCP forwarder to the PostgreSQL server that can cut every connection (a network
    blip), refuse new ones, or accept and then say nothing (a server that hangs)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "forward"  # or "refuse", "silent"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, base: URL) -> URL:
        return base.set(host="127.0.0.1", port=self.port)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            with self.lock:
                self.sockets.append(client)
            if self.mode == "silent":
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets.append(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        pair = {client: server, server: client}
        try:
            while True:
                readable, _, _ = select.select(list(pair), [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    pair[source].sendall(data)
        except (OSError, ValueError):  # ValueError: cut() closed a socket (fd -1) mid-select
            return
        finally:
            for sock in pair:
                sock.close()

    def cut(self) -> None:
        """Reset every connection through the proxy."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(db_url: URL) -> Iterator[TcpProxy]:
    assert db_url.host is not None
    forwarder = TcpProxy((db_url.host, db_url.port or 5432))
    yield forwarder
    forwarder.close()


def test_a_network_blip_between_calls(db_url: URL, proxy: TcpProxy) -> None:
    database = TrainingDB(proxy.url(db_url))
    try:
        database.insert_run("run-1", None, {})
        proxy.cut()
        assert database.get_run("run-1") is not None
        proxy.cut()
        database.update_run_status("run-1", "running")
        proxy.mode = "refuse"  # the network is down for a moment
        proxy.cut()
        with pytest.raises(DatabaseUnavailableError):
            database.attach_blog_post("run-1", "https://blog")
        proxy.mode = "forward"  # and back
        database.attach_blog_post("run-1", "https://blog")
        run = database.get_run("run-1")
        assert run is not None and run["status"] == "running" and run["blog_post_url"]
    finally:
        database.dispose()


def test_connect_timeout_bounds_a_silent_server(
    db_url: URL, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_CONNECT_TIMEOUT", "2")  # libpq's minimum
    proxy.mode = "silent"
    database = TrainingDB(proxy.url(db_url))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="timeout"):
        database.get_run("run-1")
    assert time.monotonic() - started < 2 + 5
    database.dispose()


def test_safe_calls_to_a_silent_server_return_within_their_timeout(
    db_url: URL, proxy: TcpProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("TRAINING_DB_SAFE_TIMEOUT", "1")
    monkeypatch.setenv("TRAINING_DB_CONNECT_TIMEOUT", "4")
    proxy.mode = "silent"
    training_db.configure(proxy.url(db_url))
    try:
        started = time.monotonic()
        result = safe.insert_run("run-1", None, {})
        assert time.monotonic() - started < 1 + 5
        assert result.status == "spooled"
        assert safe.drain(30)
    finally:
        default, training_db.api._default = training_db.api._default, None
        if default is not None:
            default.dispose()
    report = safe.replay(tmp_path / "spool", db=TrainingDB(db_url))
    assert report.applied == 1


# --- a server restart ---------------------------------------------------------------------------


def test_the_next_call_after_a_server_restart_succeeds(
    db: TrainingDB, pg_server: PostgresServer
) -> None:
    if os.environ.get(RESTART_ENV) != "1":
        pytest.skip(f"restarts the local PostgreSQL cluster; set {RESTART_ENV}=1 (CI does)")
    db.insert_run("run-1", None, {})
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        assert db.get_run("run-1") is not None  # every pooled connection died with the server
        db.update_run_status("run-1", "running")
        run = db.get_run("run-1")
        assert run is not None and run["status"] == "running"
    finally:
        pg_server._engine.dispose()  # the fixtures' admin connections died too
