"""URL resolution order, engine settings per backend, and passwords kept out of output."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from training_db import TrainingDB
from training_db.core.errors import InvalidArgumentError
from training_db.core.settings import (
    default_sqlite_path,
    make_engine,
    mask_password,
    resolve_url,
    safe_url,
)

PG_ENV = {
    "TRAINING_DB_HOST": "db.example.internal",
    "TRAINING_DB_PORT": "6543",
    "TRAINING_DB_NAME": "trainingruns",
    "TRAINING_DB_USER": "trainingadmin",
    "TRAINING_DB_PASSWORD": "p@ss:w/rd%",
    "TRAINING_DB_SSLMODE": "require",
}


def test_explicit_url_wins_over_everything() -> None:
    env = {"TRAINING_DB_URL": "sqlite:///env.db", **PG_ENV, "TRAINING_DB_PATH": "/x.db"}
    assert str(resolve_url("sqlite:///explicit.db", env)) == "sqlite:///explicit.db"


def test_env_url_wins_over_host_and_path() -> None:
    env = {"TRAINING_DB_URL": "sqlite:///env.db", **PG_ENV, "TRAINING_DB_PATH": "/x.db"}
    assert str(resolve_url(None, env)) == "sqlite:///env.db"


def test_host_vars_make_a_postgres_url() -> None:
    url = resolve_url(None, {**PG_ENV, "TRAINING_DB_PATH": "/x.db"})
    assert url.drivername == "postgresql+psycopg2"
    assert url.host == "db.example.internal"
    assert url.port == 6543
    assert url.database == "trainingruns"
    assert url.username == "trainingadmin"
    assert url.password == "p@ss:w/rd%"  # special characters survive
    assert url.query == {"sslmode": "require"}


def test_bare_postgresql_urls_use_psycopg2() -> None:
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg2"
    env_url = resolve_url(None, {"TRAINING_DB_URL": "postgresql://u@h/db"})
    assert env_url.drivername == "postgresql+psycopg2"
    assert resolve_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"


def test_host_defaults() -> None:
    url = resolve_url(None, {"TRAINING_DB_HOST": "h"})
    assert url.port == 5432
    assert url.query == {}


def test_bad_port_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgumentError, match="TRAINING_DB_PORT"):
        resolve_url(None, {"TRAINING_DB_HOST": "h", "TRAINING_DB_PORT": "fivefour"})


def test_path_var(tmp_path: Path) -> None:
    url = resolve_url(None, {"TRAINING_DB_PATH": str(tmp_path / "runs.db")})
    assert url.drivername == "sqlite"
    assert url.database == str(tmp_path / "runs.db")


def test_default_location_follows_xdg(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path)}
    assert default_sqlite_path(env) == tmp_path / "mangodb" / "training_runs.db"
    assert resolve_url(None, env).database == str(tmp_path / "mangodb" / "training_runs.db")


def test_default_location_without_xdg() -> None:
    assert default_sqlite_path({}) == Path.home() / ".local/share/mangodb/training_runs.db"


def test_password_is_masked_everywhere() -> None:
    url = resolve_url(None, PG_ENV)
    for text in (safe_url(url), str(url), repr(url), repr(TrainingDB(url))):
        assert "p@ss:w/rd%" not in text
        assert "***" in text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),
        (
            "postgresql://u:a/b:c#d%e@host/db?sslmode=require",
            "postgresql://u:***@host/db?sslmode=require",
        ),
        ("postgresql://:pw@/db", "postgresql://:***@/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://root:pw/trainingruns", "postgresql://***"),
        ("postgresql://u:pw@host:notaport/db", "postgresql://***"),
        ("not a url", "***"),
        ("u:pw@host/db", "***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////data/runs@2025.db", "sqlite:////data/runs@2025.db"),
        (
            "sqlite:///file:/data/a@b.db?mode=ro&uri=true",
            "sqlite:///file:/data/a@b.db?mode=ro&uri=true",
        ),
        ("sqlite://", "sqlite://"),
        ("pöstgres://u:pw@h/db", "***"),
    ],
)
def test_mask_password_in_any_text(text: str, masked: str) -> None:
    assert mask_password(text) == masked
    assert safe_url(text) == masked


def test_safe_url_of_a_url_with_an_at_in_its_host() -> None:
    """A URL made in code is masked up to its last '@' too, not only by SQLAlchemy."""
    url = sa.URL.create("postgresql+psycopg2", "u", "pw", host="rest-of-pw@host", database="db")
    assert "rest-of-pw" not in safe_url(url)
    assert safe_url(url).startswith("postgresql+psycopg2://u:***@")


@pytest.mark.parametrize(
    ("url", "drivername", "database"),
    [
        ("sqlite://", "sqlite", None),
        ("sqlite:///runs.db", "sqlite", "runs.db"),
        ("sqlite+pysqlite:////data/runs.db", "sqlite+pysqlite", "/data/runs.db"),
        ("sqlite:///file:/data/runs.db?mode=ro&uri=true", "sqlite", "file:/data/runs.db"),
        ("postgresql://u:p%40ss@h:6543/db?sslmode=require", "postgresql+psycopg2", "db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2", "db"),
        ("postgresql://u@[::1]:5432/db", "postgresql+psycopg2", "db"),
    ],
)
def test_valid_urls_resolve_as_before(url: str, drivername: str, database: str | None) -> None:
    for resolved in (resolve_url(url), resolve_url(None, {"TRAINING_DB_URL": url})):
        assert resolved.drivername == drivername
        assert resolved.database == database


def test_percent_encoded_password_survives() -> None:
    assert resolve_url("postgresql://u:p%40ss%3Aw%2Frd%25@h/db").password == "p@ss:w/rd%"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRAINING_DB_HOST": "h", "TRAINING_DB_PORT": "70000"}, r"TRAINING_DB_PORT .*1\.\.65535"),
        ({"TRAINING_DB_HOST": "user:secret@h"}, "TRAINING_DB_HOST must be a host name"),
        ({"TRAINING_DB_HOST": "postgresql://h/db"}, "TRAINING_DB_HOST must be a host name"),
        ({"TRAINING_DB_URL": "postgresql://u:pw@h:0/db"}, r"TRAINING_DB_URL .*port is not in"),
    ],
)
def test_bad_host_variables(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        resolve_url(None, env)
    assert "secret" not in str(raised.value)


def test_sqlite_engine_creates_parent_folders_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "runs.db"
    engine = make_engine(
        f"sqlite:///{path}", env={"TRAINING_DB_BUSY_TIMEOUT": "2.5"}, create_folder=True
    )
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 2500
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()
    assert path.parent.is_dir()


def test_migration_engine_turns_foreign_keys_off(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}", env={}, for_migrations=True)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRAINING_DB_BUSY_TIMEOUT": "soon"}, "TRAINING_DB_BUSY_TIMEOUT"),
        ({"TRAINING_DB_BUSY_TIMEOUT": "-1"}, "must not be negative"),
        ({"TRAINING_DB_SQLITE_SYNCHRONOUS": "SOMETIMES"}, "TRAINING_DB_SQLITE_SYNCHRONOUS"),
    ],
)
def test_bad_engine_settings(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", env=env)


def test_memory_database_works_across_calls() -> None:
    database = TrainingDB("sqlite://")
    database.insert_run("r", None, {})
    assert database.get_run("r") is not None


def test_postgres_engine_replaces_dead_connections_without_a_ping_and_sets_timeouts(
    pg_empty_url: sa.URL,
) -> None:
    """No ``SELECT 1`` per checkout (the per-call cost): a pooled connection whose backend
    was terminated is found closed at checkout and replaced, and the timeouts apply."""
    engine = make_engine(
        pg_empty_url,
        env={"TRAINING_DB_CONNECT_TIMEOUT": "3", "TRAINING_DB_STATEMENT_TIMEOUT": "1.5"},
    )
    try:
        assert not engine.pool._pre_ping  # type: ignore[attr-defined]
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        # Terminated from another engine, while it idles in the pool.
        admin = sa.create_engine(pg_empty_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 5000)")
        finally:
            admin.dispose()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
    finally:
        engine.dispose()
