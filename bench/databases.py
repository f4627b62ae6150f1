"""Throwaway databases on each backend, raw driver connections, bulk loads and sizes.

SQLite databases are files in a temporary folder; PostgreSQL databases are created as
``mangodb_bench_*`` on the server named by ``TRAINING_DB_BENCH_POSTGRES_URL`` (an admin URL)
and dropped at the end. Raw ``sqlite3`` connections get the same PRAGMAs as the package's
engine (WAL, ``synchronous=FULL``, foreign keys on), so a raw figure is the same work on the
same durability settings, minus the package.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import psycopg2
import sqlalchemy as sa
from sqlalchemy import URL, make_url

from training_db.core.settings import sqlite_url

PG_ENV: Final = "TRAINING_DB_BENCH_POSTGRES_URL"
DEFAULT_PG_ADMIN_URL: Final = "postgresql+psycopg2://root@127.0.0.1:5432/test"
BACKENDS: Final = ("sqlite", "postgresql")
# Our tables, children first: what storage is summed over.
OUR_TABLES: Final = (
    "training_runs",
    "run_objectives",
    "run_tags",
    "history_metrics",
    "run_history",
    "run_history_key_metrics",
)
MLFLOW_TABLES: Final = ("runs", "metrics", "latest_metrics", "params", "tags")
# Where each system keeps the history (the rest is the run, its config and its summary).
OUR_HISTORY_TABLES: Final = ("history_metrics", "run_history", "run_history_key_metrics")
MLFLOW_HISTORY_TABLES: Final = ("metrics",)
NAIVE_TABLE: Final = "bench_naive_history"


def pg_admin_url() -> URL:
    raw = os.environ.get(PG_ENV) or DEFAULT_PG_ADMIN_URL
    url = make_url(raw)
    return url.set(drivername="postgresql+psycopg2")


def dsn(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy URL (for psycopg2.connect)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Backend:
    """Creates the databases of one backend and drops them afterwards."""

    def __init__(self, name: str) -> None:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"mangodb_bench_{name}_"))
        self._created: list[str] = []
        self._admin: sa.Engine | None = None
        if name == "postgresql":
            self._admin = sa.create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")

    def new_database(self, label: str) -> URL:
        """A new, empty database."""
        if self.name == "sqlite":
            return sqlite_url(self.workdir / f"{label}.db")
        assert self._admin is not None
        name = f"mangodb_bench_{os.getpid()}_{label}_{uuid.uuid4().hex[:8]}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return pg_admin_url().set(database=name)

    def version(self) -> str:
        if self.name == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        assert self._admin is not None
        with self._admin.connect() as connection:
            return str(connection.exec_driver_sql("SHOW server_version").scalar())

    def close(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as connection:
                for name in self._created:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._created.clear()
            self._admin.dispose()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- raw driver connections ------------------------------------------------------------------


def raw_connect(url: URL) -> Any:
    """A DB-API connection with no autobegin: callers use :func:`raw_transaction`."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        connection = sqlite3.connect(url.database, isolation_level=None, timeout=15.0)
        connection.execute("PRAGMA busy_timeout = 15000")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        return connection
    connection = psycopg2.connect(dsn(url))
    connection.autocommit = False
    return connection


def is_sqlite_connection(connection: Any) -> bool:
    return isinstance(connection, sqlite3.Connection)


@contextlib.contextmanager
def raw_transaction(connection: Any) -> Iterator[Any]:
    """One write transaction on a raw connection; yields a cursor."""
    if is_sqlite_connection(connection):
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return
    with connection, connection.cursor() as cursor:  # psycopg2: commit or roll back
        yield cursor


def raw_read(connection: Any, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
    """Rows of one read statement (its own short transaction on PostgreSQL)."""
    if is_sqlite_connection(connection):
        return connection.execute(sql, params).fetchall()
    with connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- bulk loads (setup only: never timed) --------------------------------------------------------


def _copy_text(value: Any) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(value).hex()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_lines(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    for row in rows:
        yield "\t".join(_copy_text(value) for value in row) + "\n"


COPY_CHUNK_ROWS: Final = 50_000


def copy_into(
    cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL ``COPY table (columns) FROM STDIN`` in text format, 50,000 rows at a time."""
    names = ", ".join(columns)
    lines = copy_lines(rows)
    while True:
        chunk = "".join(itertools.islice(lines, COPY_CHUNK_ROWS))
        if not chunk:
            return
        cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN", io.StringIO(chunk))


def bulk_insert(
    connection: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert many rows in one transaction: COPY on PostgreSQL, executemany on SQLite."""
    with raw_transaction(connection) as cursor:
        if is_sqlite_connection(connection):
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        else:
            copy_into(cursor, table, columns, rows)


def analyze(url: URL) -> None:
    """Fresh planner statistics (PostgreSQL's autovacuum would gather them soon anyway)."""
    connection = raw_connect(url)
    try:
        if is_sqlite_connection(connection):
            connection.execute("ANALYZE")
        else:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
    finally:
        connection.close()


# --- storage -----------------------------------------------------------------------------


def storage_bytes(url: URL, tables: Sequence[str]) -> dict[str, int]:
    """Bytes per table, indexes and TOAST included, after compaction.

    SQLite: ``VACUUM`` then page accounting with the ``dbstat`` virtual table (each index
    counted with its table). PostgreSQL: ``VACUUM FULL`` then ``pg_total_relation_size``.
    """
    connection = raw_connect(url)
    try:
        if is_sqlite_connection(connection):
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("VACUUM")
            owner = dict(
                connection.execute(
                    "SELECT name, tbl_name FROM sqlite_master WHERE tbl_name IN "
                    f"({', '.join('?' for _ in tables)})",
                    tuple(tables),
                )
            )
            sizes = dict.fromkeys(tables, 0)
            for name, size in connection.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
            ):
                if name in owner:
                    sizes[owner[name]] += int(size)
            return sizes
        connection.autocommit = True
        sizes = {}
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"VACUUM FULL {table}")
                cursor.execute("SELECT pg_total_relation_size(%s)", (table,))
                sizes[table] = int(cursor.fetchone()[0])
        return sizes
    finally:
        connection.close()


def sqlite_file_bytes(url: URL) -> int:
    """The database file's size (after the VACUUM that :func:`storage_bytes` runs)."""
    assert url.database is not None
    return Path(url.database).stat().st_size
