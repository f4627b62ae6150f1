"""The programmatic entry to Alembic: upgrade, downgrade, and the schema version check.

The revisions live once, in the repository's top-level ``alembic/`` folder, which the wheel
installs as the package ``training_db.migrations``; both ``alembic upgrade head`` in a checkout
and :func:`upgrade` here run the very same files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine

from training_db.errors import SchemaVersionError
from training_db.settings import make_engine, safe_url

logger = logging.getLogger(__name__)

# Any fixed 64-bit number: the PostgreSQL advisory lock held while migrating, so that many
# training processes calling init_db() at once migrate exactly once.
_MIGRATION_LOCK_KEY: Final = 0x6D616E676F6462  # "mangodb"
UPGRADE_COMMAND: Final = "training-db upgrade"


def script_location() -> str:
    """The folder holding ``env.py`` and ``versions/``.

    In an installed wheel it is the package folder ``training_db/migrations``; in a source
    checkout (editable install) it is the top-level ``alembic/`` next to ``src/``.
    """
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "migrations", package_dir.parent.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return str(candidate)
    raise SchemaVersionError(  # pragma: no cover - a broken installation
        f"the Alembic revisions are missing next to {package_dir}; reinstall mangodb"
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` built in code; the connection, when given, is used as it is."""
    config = Config()
    config.set_main_option("script_location", script_location())
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory(script_location()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is stamped with, or None for an unversioned database."""
    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands relative to this code's head revision."""

    current: str | None
    head: str
    has_tables: bool

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    @property
    def is_empty(self) -> bool:
        return self.current is None and not self.has_tables


def schema_state(connection: Connection) -> SchemaState:
    has_tables = sa.inspect(connection).has_table("training_runs")
    return SchemaState(current_revision(connection), head_revision(), has_tables)


def require_current_schema(state: SchemaState, url: URL) -> None:
    """SchemaVersionError with the command that fixes it, unless the schema is at head."""
    if state.is_current:
        return
    where = safe_url(url)
    if state.is_empty:
        raise SchemaVersionError(
            f"the database at {where} has no tables; run `training-db init` (or init_db())"
        )
    if state.current is None:
        raise SchemaVersionError(
            f"the database at {where} has a training_runs table but no Alembic version "
            "(made by the old hand-written module?); adopting such databases is not "
            "supported yet — copy its rows into a new database"
        )
    script = ScriptDirectory(script_location())
    known = {revision.revision for revision in script.walk_revisions()}
    if state.current not in known:
        raise SchemaVersionError(
            f"the database at {where} is at revision {state.current}, which this version of "
            f"mangodb does not know (newer code migrated it?); upgrade the mangodb package"
        )
    raise SchemaVersionError(
        f"the database at {where} is at revision {state.current}, behind this code's "
        f"{state.head}; run `{UPGRADE_COMMAND}` (or `alembic upgrade head`)"
    )


def upgrade(target: str | URL | Engine | None = None, revision: str = "head") -> None:
    """Bring the database to ``revision`` through the Alembic revisions (idempotent).

    ``target`` is a URL (resolved as usual when None) or, for an in-memory SQLite database
    that only exists inside it, the engine itself.
    """
    _with_migration_engine(target, lambda config: command.upgrade(config, revision))


def downgrade(target: str | URL | Engine | None, revision: str) -> None:
    """Take the database back to ``revision``."""
    _with_migration_engine(target, lambda config: command.downgrade(config, revision))


def _with_migration_engine(
    target: str | URL | Engine | None, action: Callable[[Config], None]
) -> None:
    if isinstance(target, Engine):
        _run_locked(target, action)
        return
    engine = make_engine(target, for_migrations=True)
    try:
        _run_locked(engine, action)
    finally:
        engine.dispose()


def acquire_migration_lock(connection: Connection) -> None:
    """Hold the PostgreSQL migration lock until the transaction ends (SQLite: BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
        )


def _run_locked(engine: Engine, action: Callable[[Config], None]) -> None:
    """Run an Alembic command in one transaction that holds the migration lock.

    SQLite: the transaction begins IMMEDIATE, taking the write lock. PostgreSQL: a
    transaction-level advisory lock. Others wait on the lock, then find nothing to do.
    """
    with engine.connect().execution_options(sqlite_write=True) as connection:
        with connection.begin():
            acquire_migration_lock(connection)
            action(alembic_config(connection))
        if connection.dialect.name == "sqlite":
            problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if problems:  # pragma: no cover - would mean a broken revision
                raise SchemaVersionError(f"foreign key check failed after migrating: {problems}")
