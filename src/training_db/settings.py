"""Where the database is and how to connect to it.

One function resolves the connection URL from (in order) an explicit argument, the
``TRAINING_DB_*`` environment variables, and the embedded SQLite default; one function makes
the engine for it. Each backend quirk is one small named function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

from training_db.errors import DatabaseNotFoundError, DatabaseUnavailableError, InvalidArgumentError

DEFAULT_DB_FILENAME = "training_runs.db"
DEFAULT_SQLITE_BUSY_TIMEOUT_S = 15.0
DEFAULT_CONNECT_TIMEOUT_S = 10
DEFAULT_SQLITE_SYNCHRONOUS = "FULL"
SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def default_sqlite_path(env: Mapping[str, str] | None = None) -> Path:
    """The embedded database file used when no ``TRAINING_DB_*`` variable is set.

    ``$XDG_DATA_HOME/mangodb/training_runs.db``, i.e. ``~/.local/share/mangodb/training_runs.db``
    on most machines.
    """
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "mangodb" / DEFAULT_DB_FILENAME


def resolve_url(url: str | URL | None = None, env: Mapping[str, str] | None = None) -> URL:
    """Resolve the database URL: explicit > TRAINING_DB_URL > TRAINING_DB_HOST > PATH > default.

    ``TRAINING_DB_HOST`` selects PostgreSQL (psycopg2) with ``TRAINING_DB_PORT`` (5432),
    ``TRAINING_DB_NAME``, ``TRAINING_DB_USER``, ``TRAINING_DB_PASSWORD`` and an optional
    ``TRAINING_DB_SSLMODE`` (``require`` for RDS). ``TRAINING_DB_PATH`` selects a SQLite file.
    """
    env = os.environ if env is None else env
    if url is not None:
        return _with_default_driver(make_url(url))
    if env.get("TRAINING_DB_URL"):
        return _with_default_driver(make_url(env["TRAINING_DB_URL"]))
    if env.get("TRAINING_DB_HOST"):
        return _postgres_url_from_env(env)
    if env.get("TRAINING_DB_PATH"):
        return sqlite_url(Path(env["TRAINING_DB_PATH"]).expanduser())
    return sqlite_url(default_sqlite_path(env))


def _with_default_driver(url: URL) -> URL:
    """A bare ``postgresql://`` URL uses psycopg2, the driver this package installs.

    SQLAlchemy 2.1 would pick psycopg 3 for it, which is not a dependency.
    """
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg2")
    return url


def sqlite_url(path: Path) -> URL:
    """A SQLite URL for a file path."""
    return URL.create("sqlite", database=str(path))


def _postgres_url_from_env(env: Mapping[str, str]) -> URL:
    query: dict[str, str] = {}
    if env.get("TRAINING_DB_SSLMODE"):
        query["sslmode"] = env["TRAINING_DB_SSLMODE"]
    port = env.get("TRAINING_DB_PORT") or "5432"
    try:
        port_number = int(port)
    except ValueError:
        raise InvalidArgumentError(
            f"TRAINING_DB_PORT must be a port number, got {port!r}"
        ) from None
    return URL.create(
        "postgresql+psycopg2",
        username=env.get("TRAINING_DB_USER") or None,
        password=env.get("TRAINING_DB_PASSWORD") or None,
        host=env["TRAINING_DB_HOST"],
        port=port_number,
        database=env.get("TRAINING_DB_NAME") or "trainingruns",
        query=query,
    )


def safe_url(url: URL | str) -> str:
    """The URL as text with its password masked: the only form that goes into output."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def is_memory_sqlite(url: URL) -> bool:
    return is_sqlite(url) and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite database URL; None for memory, ``file:`` URIs and servers."""
    if not is_sqlite(url) or is_memory_sqlite(url) or _is_sqlite_uri(url):
        return None
    assert url.database is not None
    return Path(url.database).expanduser()


def require_existing_database(url: URL) -> None:
    """`DatabaseNotFoundError` when ``url`` is a SQLite file that does not exist.

    Called before a read connects: SQLite would create an empty file, so a mistyped path
    would read as an empty database instead of an error.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise DatabaseNotFoundError(
            f"no database at {path}: create it with `training-db init` (or init_db()), "
            "or check the path (TRAINING_DB_PATH / TRAINING_DB_URL)"
        )


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise InvalidArgumentError(f"{name} must not be negative, got {raw!r}")
    return value


def make_engine(
    url: str | URL | None = None,
    *,
    env: Mapping[str, str] | None = None,
    for_migrations: bool = False,
    create_folder: bool | None = None,
) -> Engine:
    """Create the engine for ``url`` (resolved as in `resolve_url`).

    ``for_migrations`` turns SQLite foreign keys off for the connection: batch migrations
    recreate tables, and dropping a parent table with foreign keys on would cascade-delete
    its children. ``create_folder`` (default: ``for_migrations``) creates the folder of a
    new SQLite file; engines that only read must not, so a mistyped path stays an error.
    """
    env = os.environ if env is None else env
    resolved = resolve_url(url, env)
    if is_sqlite(resolved):
        return _make_sqlite_engine(
            resolved,
            env,
            foreign_keys=not for_migrations,
            create_folder=for_migrations if create_folder is None else create_folder,
        )
    return _make_server_engine(resolved, env)


def _make_server_engine(url: URL, env: Mapping[str, str]) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg2":
        connect_args["connect_timeout"] = int(
            _env_float(env, "TRAINING_DB_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S)
        )
        statement_timeout = _env_float(env, "TRAINING_DB_STATEMENT_TIMEOUT", 0.0)
        if statement_timeout:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _is_sqlite_uri(url: URL) -> bool:
    return str(url.query.get("uri", "")).lower() == "true" or str(url.database).startswith("file:")


def _make_sqlite_engine(
    url: URL, env: Mapping[str, str], *, foreign_keys: bool, create_folder: bool
) -> Engine:
    busy_timeout = _env_float(env, "TRAINING_DB_BUSY_TIMEOUT", DEFAULT_SQLITE_BUSY_TIMEOUT_S)
    synchronous = (env.get("TRAINING_DB_SQLITE_SYNCHRONOUS") or DEFAULT_SQLITE_SYNCHRONOUS).upper()
    if synchronous not in SQLITE_SYNCHRONOUS_MODES:
        raise InvalidArgumentError(
            f"TRAINING_DB_SQLITE_SYNCHRONOUS must be one of {', '.join(SQLITE_SYNCHRONOUS_MODES)},"
            f" got {synchronous!r}"
        )
    if is_memory_sqlite(url):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        assert url.database is not None
        if create_folder and not _is_sqlite_uri(url):  # a file: URI names no folder to create
            _create_parent_folder(Path(url.database).expanduser())
        engine = create_engine(url, connect_args={"timeout": busy_timeout})
    _install_sqlite_hooks(
        engine,
        busy_timeout_ms=int(busy_timeout * 1000),
        synchronous=synchronous,
        foreign_keys=foreign_keys,
    )
    return engine


def _create_parent_folder(path: Path) -> None:
    """The folder of a new SQLite file; a path that cannot have one is a clear error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a regular file where a folder of the path should be
        raise DatabaseUnavailableError(
            f"cannot create the folder of the SQLite database {path}: {exc.strerror or exc}"
        ) from exc


def _install_sqlite_hooks(
    engine: Engine, *, busy_timeout_ms: int, synchronous: str, foreign_keys: bool
) -> None:
    """PRAGMAs once per connection, and real transactions.

    pysqlite's own transaction handling defers BEGIN and commits around DDL; we switch it off
    and emit BEGIN ourselves (SQLAlchemy's documented recipe). Write transactions begin
    IMMEDIATE so that a writer takes the lock up front and waits on the busy timeout,
    instead of failing with "database is locked" when upgrading a read lock.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("sqlite_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
