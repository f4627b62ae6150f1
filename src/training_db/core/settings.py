"""Where the database is and how to connect to it.

One function resolves the connection URL from (in order) an explicit argument, the
``TRAINING_DB_*`` environment variables, and the embedded SQLite default, and checks it
before anything connects; one function makes the engine for it. Each backend quirk is one
small named function. One function, `mask_password`, takes the password out of any URL-like
text: every message this package builds from a URL goes through it.
"""

from __future__ import annotations

import difflib
import os
import re
import select
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from training_db.core.errors import (
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    InvalidArgumentError,
)

DEFAULT_DB_FILENAME = "training_runs.db"
DEFAULT_SQLITE_BUSY_TIMEOUT_S = 15.0
DEFAULT_CONNECT_TIMEOUT_S = 10
DEFAULT_SQLITE_SYNCHRONOUS = "FULL"
SQLITE_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

# The backends and drivers mangodb installs and is tested on; a bare dialect means the first.
SUPPORTED_DRIVERS: Final = {"sqlite": ("pysqlite",), "postgresql": ("psycopg2",)}
URL_SHAPE: Final = "dialect[+driver]://user:password@host[:port]/database"
VALID_URLS: Final = (
    "sqlite:///PATH (a file), sqlite:// (in memory), or "
    "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (driver psycopg2: the same as "
    "postgresql+psycopg2://)"
)
PERCENT_ENCODING_HINT: Final = (
    "percent-encode @ : / % # ? in a user name or password (%40 %3A %2F %25 %23 %3F)"
)
MASK: Final = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]{0,39}")
# libpq also takes the password as a query parameter: ?password=... or ?sslpassword=...
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&]*", re.IGNORECASE)


def default_sqlite_path(env: Mapping[str, str] | None = None) -> Path:
    """The embedded database file used when no ``TRAINING_DB_*`` variable is set.

    ``$XDG_DATA_HOME/mangodb/training_runs.db``, i.e. ``~/.local/share/mangodb/training_runs.db``
    on most machines.
    """
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "mangodb" / DEFAULT_DB_FILENAME


def resolve_url(
    url: str | URL | None = None,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "the url argument",
) -> URL:
    """Resolve the database URL: explicit > TRAINING_DB_URL > TRAINING_DB_HOST > PATH > default.

    ``TRAINING_DB_HOST`` selects PostgreSQL (psycopg2) with ``TRAINING_DB_PORT`` (5432),
    ``TRAINING_DB_NAME``, ``TRAINING_DB_USER``, ``TRAINING_DB_PASSWORD`` and an optional
    ``TRAINING_DB_SSLMODE`` (``require`` for RDS). ``TRAINING_DB_PATH`` selects a SQLite file.

    The URL is checked here, before anything connects: one that does not parse, a bad port,
    or a dialect or driver other than SQLite and PostgreSQL through psycopg2 raises
    `InvalidArgumentError` naming where it came from (``source`` for ``url``, e.g.
    ``"--url"``; else the variable) and the valid forms, never the password.
    """
    env = os.environ if env is None else env
    if url is not None:
        return _checked_url(url, source)
    if env.get("TRAINING_DB_URL"):
        return _checked_url(env["TRAINING_DB_URL"], "TRAINING_DB_URL")
    if env.get("TRAINING_DB_HOST"):
        return _postgres_url_from_env(env)
    if env.get("TRAINING_DB_PATH"):
        return sqlite_url(Path(env["TRAINING_DB_PATH"]).expanduser())
    return sqlite_url(default_sqlite_path(env))


def _checked_url(url: str | URL, source: str) -> URL:
    """``url`` parsed, with the default driver, checked as `resolve_url` describes."""
    parsed = _parse_url(url, source)
    _check_dialect(parsed, source)
    _check_parts(parsed, source, url.count("@") if isinstance(url, str) else 0)
    return _with_default_driver(parsed)


def _parse_url(url: str | URL, source: str) -> URL:
    if isinstance(url, URL):
        return url
    if not isinstance(url, str):
        raise InvalidArgumentError(
            f"{source} must be a URL string or a sqlalchemy URL, got {type(url).__name__}; "
            f"use {VALID_URLS}"
        )
    try:
        return make_url(url)
    # Neither error's text is shown: it quotes the URL's text, which may hold the password.
    except ArgumentError:
        why = "it cannot be parsed"
    except ValueError:  # SQLAlchemy's int() of what stands after the host's ':'
        why = (
            "its port is not a number (with no '@host' part, the password after 'user:' "
            f"reads as a port); {PERCENT_ENCODING_HINT}"
        )
    raise InvalidArgumentError(_invalid(source, url, why))


def _invalid(source: str, text: str, why: str) -> str:
    """The one-line message for a URL that is not valid: it shows the scheme, nothing more."""
    scheme = _scheme(text)
    shown = f"scheme {scheme!r}" if scheme else "no 'dialect://' at its start"
    hint = "" if scheme else "; for a SQLite file use sqlite:///PATH or TRAINING_DB_PATH"
    return f"{source} is not a valid database URL ({shown}): {why}; expected {URL_SHAPE}{hint}"


def _scheme(text: str) -> str | None:
    scheme, separator, _ = text.partition("://")
    return scheme if separator and _SCHEME.fullmatch(scheme) else None


def _check_dialect(url: URL, source: str) -> None:
    """SQLite (pysqlite) or PostgreSQL (psycopg2) only: those are installed and tested."""
    backend, _, driver = url.drivername.partition("+")
    drivers = SUPPORTED_DRIVERS.get(backend)
    if drivers is not None:
        if driver and driver not in drivers:
            raise InvalidArgumentError(
                f"{source} names the driver {driver!r} for {backend}, which mangodb does not "
                f"support; valid: {VALID_URLS}"
            )
        return
    what = "which mangodb does not support" if _sqlalchemy_knows(url) else "unknown to SQLAlchemy"
    close = difflib.get_close_matches(backend, SUPPORTED_DRIVERS, n=1, cutoff=0.6)
    hint = f" (use {close[0]}:// instead)" if close else ""
    raise InvalidArgumentError(
        f"{source} names the database dialect {backend!r}, {what}{hint}; valid: {VALID_URLS}"
    )


def _sqlalchemy_knows(url: URL) -> bool:
    """Whether SQLAlchemy has the dialect (loads its class; does not import a driver)."""
    try:
        url.get_dialect()
    except (NoSuchModuleError, ArgumentError, ImportError):
        return False
    return True


def _check_parts(url: URL, source: str, at_signs: int) -> None:
    """What parses but cannot be meant, checked without showing the parts themselves.

    ``at_signs`` is the number of ``@`` in the URL's text (0 for a URL object).
    """
    text = url.drivername + "://"
    if url.port is not None and not 0 < url.port < 65536:
        raise InvalidArgumentError(_invalid(source, text, "its port is not in 1..65535"))
    if url.get_backend_name() != "postgresql":
        return
    if at_signs > 1 or (url.host and "@" in url.host):
        # postgresql://user:p@ss@host/db: SQLAlchemy ends the password at the first '@', so
        # the rest of the password would become the host name or the database name, and
        # libpq's error would show it. An '@' in a database name must be written %40.
        raise InvalidArgumentError(
            _invalid(source, text, f"it has more than one '@'; {PERCENT_ENCODING_HINT}")
        )
    if url.password and not url.username:
        raise InvalidArgumentError(
            _invalid(source, text, "it has a password but no user name before the ':'")
        )


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
    host = env["TRAINING_DB_HOST"]
    if "@" in host or "/" in host:
        # Not echoed: a URL or user:password@host put here would show its password.
        raise InvalidArgumentError(
            "TRAINING_DB_HOST must be a host name or address, without '@' or '/'; put a URL "
            "in TRAINING_DB_URL, or the user and password in TRAINING_DB_USER and "
            "TRAINING_DB_PASSWORD"
        )
    port = env.get("TRAINING_DB_PORT") or "5432"
    try:
        port_number = int(port)
    except ValueError:
        port_number = 0
    if not 0 < port_number < 65536:
        raise InvalidArgumentError(
            f"TRAINING_DB_PORT must be a port number in 1..65535, got {port!r}"
        )
    return URL.create(
        "postgresql+psycopg2",
        username=env.get("TRAINING_DB_USER") or None,
        password=env.get("TRAINING_DB_PASSWORD") or None,
        host=host,
        port=port_number,
        database=env.get("TRAINING_DB_NAME") or "trainingruns",
        query=query,
    )


def mask_password(text: str) -> str:
    """URL-like ``text`` with its password replaced by ``***``; safe for any text.

    The password is everything between the ``:`` that ends the user name and the *last*
    ``@`` (so an unencoded ``@``, ``/`` or ``:`` in it is masked too); the scheme, the user
    name and the host part stay. A ``password=`` query parameter is masked as well. Text
    that does not parse as a URL is not echoed beyond its scheme (``postgresql://***``), as
    its password cannot be located.
    """
    scheme = _scheme(text)
    try:
        make_url(text)
    except (ArgumentError, ValueError):
        return f"{scheme}://{MASK}" if scheme else MASK
    if scheme is None:  # parsed, with a scheme not echoed (SQLAlchemy's takes non-ASCII)
        return MASK
    rest = _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", text[len(scheme) + 3 :])
    userinfo, at, host_part = rest.rpartition("@")
    if not at or rest.startswith("/"):  # no user part: a path (sqlite:///a@b.db) keeps its @
        return f"{scheme}://{rest}"
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':' + MASK if colon else ''}@{host_part}"


def url_password(text: str) -> str | None:
    """The password in URL-like ``text`` as `mask_password` locates it (between the ``:``
    after the user name and the *last* ``@``), for redacting it elsewhere; None if none."""
    scheme = _scheme(text)
    if scheme is None:
        return None
    userinfo, at, _ = text[len(scheme) + 3 :].rpartition("@")
    _, colon, password = userinfo.partition(":")
    return password if at and colon and password else None


def safe_url(url: URL | str) -> str:
    """The URL as text with its password masked: the only form that goes into output."""
    if isinstance(url, URL):
        return mask_password(url.render_as_string(hide_password=True))
    return mask_password(url)


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
    engine = create_engine(url, connect_args=connect_args)
    _install_liveness_check(engine)
    return engine


def _install_liveness_check(engine: Engine) -> None:
    """Replace a pooled connection the server has closed, without a round trip.

    ``pool_pre_ping`` would send ``SELECT 1`` at every checkout: a round trip per call,
    as much as the call's own SQL on a small read. Instead the checkout looks at the
    connection's socket: an idle connection has nothing to read unless the server closed
    it (a terminated backend, a restart, a proxy that cut it), so a readable socket, or one
    libpq already knows is closed, is discarded and the pool connects afresh (SQLAlchemy's
    checkout retry on `DisconnectionError`). A connection that dies silently (the network
    drops with no FIN) passes this check; its first statement then fails, and
    ``Database._transaction`` retries the call once on a fresh connection when that is safe.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if connection_is_closed(dbapi_connection):
            raise DisconnectionError("the server closed this pooled connection")


def connection_is_closed(dbapi_connection: Any) -> bool:
    """Whether an idle psycopg2 connection was closed by its server (no round trip)."""
    if getattr(dbapi_connection, "closed", 0):
        return True
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError):  # the socket is gone
        return True
    # Readable while idle: an end of file or a FATAL message before it. A LISTEN
    # notification would read the same, but this package never LISTENs.
    return bool(readable)


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
        if connection.get_execution_options().get("sqlite_write", False):
            # Through SQLAlchemy: "database is locked" must arrive as its OperationalError,
            # which the retry policy of Database._transaction recognises.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # A deferred BEGIN takes no lock and cannot meet one: sent on the driver's
            # connection, it skips SQLAlchemy's execution path (a read's largest fixed cost
            # after the session itself).
            connection.connection.driver_connection.execute("BEGIN")
