"""The programmatic entry to Alembic: upgrade, downgrade, and the schema version check.

The revisions live once, in the repository's top-level ``alembic/`` folder, which the wheel
installs as the package ``training_db.revisions``; both ``alembic upgrade head`` in a
checkout and :func:`upgrade` here run the very same files.

:func:`upgrade` also adopts a database made by the old hand-written module (tables but no
``alembic_version``; see :mod:`training_db.schema.adoption`). A downgrade that would delete data
refuses unless it is allowed explicitly (see :func:`refuse_data_loss`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic import context as alembic_context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine

from training_db.core.errors import (
    InvalidArgumentError,
    SchemaVersionError,
    TrainingDBError,
    translated_errors,
)
from training_db.core.settings import make_engine, safe_url
from training_db.schema import adoption

logger = logging.getLogger(__name__)

# Any fixed 64-bit number: the PostgreSQL advisory lock held while migrating, so that many
# training processes calling init_db() at once migrate exactly once.
_MIGRATION_LOCK_KEY: Final = 0x6D616E676F6462  # "mangodb"
UPGRADE_COMMAND: Final = "training-db upgrade"
# How long a process waits on SQLite for another process's migration, which may rebuild a
# large table; ordinary writes keep TRAINING_DB_BUSY_TIMEOUT. PostgreSQL's lock wait is
# bounded only by TRAINING_DB_STATEMENT_TIMEOUT.
MIGRATION_LOCK_WAIT_S: Final = 600
# `alembic -x allow_data_loss=true downgrade ...`, or downgrade(..., allow_data_loss=True).
ALLOW_DATA_LOSS: Final = "allow_data_loss"


class DataLossError(SchemaVersionError, CommandError):
    """A downgrade would delete data and was not allowed to; nothing was changed.

    Also an Alembic ``CommandError``, so ``alembic downgrade`` prints the message, not a trace.
    ``revision`` is the step that refused and ``losses`` what it would delete, so that another
    face (``training-db downgrade``) can name its own way to allow it.
    """

    def __init__(self, message: str, *, revision: str = "", losses: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.revision = revision
        self.losses = tuple(losses)

    @property
    def loss_summary(self) -> str:
        """What the step would delete and that nothing changed, without how to allow it."""
        return _loss_summary(self.revision, self.losses)


def _loss_summary(revision: str, losses: Sequence[str]) -> str:
    return f"downgrading revision {revision} would delete {'; '.join(losses)}. Nothing was changed."


def script_location() -> str:
    """The folder holding ``env.py`` and ``versions/``.

    In an installed wheel it is the package folder ``training_db/revisions``; in a source
    checkout (editable install) it is the top-level ``alembic/`` next to ``src/``.
    """
    package_dir = Path(__file__).resolve().parents[1]  # training_db/
    for candidate in (package_dir / "revisions", package_dir.parent.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return str(candidate)
    raise SchemaVersionError(  # pragma: no cover - a broken installation
        f"the Alembic revisions are missing next to {package_dir}; reinstall mangodb"
    )


def alembic_config(
    connection: Connection | None = None, *, allow_data_loss: bool = False
) -> Config:
    """An Alembic ``Config`` built in code; the connection, when given, is used as it is."""
    config = Config()
    config.set_main_option("script_location", script_location())
    if connection is not None:
        config.attributes["connection"] = connection
    config.attributes[ALLOW_DATA_LOSS] = allow_data_loss
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
        raise SchemaVersionError(unversioned_message(where))
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


def unversioned_message(where: str) -> str:
    return (
        f"the database at {where} has mangodb tables but no Alembic version (made by the old "
        f"hand-written module?); run `{UPGRADE_COMMAND}` (or init_db()) to adopt it: its "
        "revision is recognised, its rows kept, and it is upgraded to head"
    )


def is_unversioned(connection: Connection) -> bool:
    """Whether the database has mangodb tables but no Alembic version (so needs adopting)."""
    return current_revision(connection) is None and adoption.has_mangodb_tables(
        adoption.database_shape(connection)
    )


@functools.cache
def revision_shapes() -> tuple[tuple[str, adoption.Shape], ...]:
    """Each revision, oldest first, with the tables and column names it leaves behind.

    Found by running the revisions themselves on a scratch in-memory SQLite database, so
    they remain the only description of the schema.
    """
    script = ScriptDirectory(script_location())
    revisions = [revision.revision for revision in reversed(list(script.walk_revisions()))]
    scratch = make_engine("sqlite://", for_migrations=True)
    shapes = []
    try:
        with scratch.connect() as connection:
            for revision in revisions:
                with connection.begin():
                    command.upgrade(alembic_config(connection), revision)
                    shapes.append((revision, adoption.database_shape(connection)))
    finally:
        scratch.dispose()
    return tuple(shapes)


def adopt(connection: Connection, where: str) -> str | None:
    """Adopt an unversioned database made by the old module; returns the stamped revision.

    Does nothing (returns None) for a database that is versioned, or has none of mangodb's
    tables. Runs in the caller's transaction, which should hold the migration lock.
    """
    if not is_unversioned(connection):
        return None
    found = adoption.database_shape(connection)
    revision = adoption.matching_revision(found, revision_shapes(), where)
    copied = adoption.rebuild(
        connection,
        revision,
        found,
        lambda target: command.upgrade(alembic_config(connection), target),
        where,
    )
    logger.info("adopted %s as revision %s, rows kept: %s", where, revision, copied)
    return revision


def upgrade(target: str | URL | Engine | None = None, revision: str = "head") -> None:
    """Bring the database to ``revision`` through the Alembic revisions (idempotent).

    ``target`` is a URL (resolved as usual when None) or, for an in-memory SQLite database
    that only exists inside it, the engine itself. A database made by the old hand-written
    module is adopted first (see :mod:`training_db.schema.adoption`); one whose tables match no
    revision raises SchemaVersionError saying what differs, and nothing is changed.
    """
    _with_migration_engine(
        target,
        lambda config: command.upgrade(config, revision),
        adopting=True,
        done_at=head_revision() if revision == "head" else None,
    )


def downgrade(
    target: str | URL | Engine | None, revision: str, *, allow_data_loss: bool = False
) -> None:
    """Take the database back to ``revision``.

    A step that would delete rows or values that cannot be recomputed raises
    :class:`DataLossError` and nothing is changed, unless ``allow_data_loss`` is true.
    """
    _with_migration_engine(
        target,
        lambda config: command.downgrade(config, revision),
        allow_data_loss=allow_data_loss,
    )


def _with_migration_engine(
    target: str | URL | Engine | None,
    action: Callable[[Config], None],
    *,
    adopting: bool = False,
    allow_data_loss: bool = False,
    done_at: str | None = None,
) -> None:
    run = functools.partial(
        _run_locked,
        action=action,
        adopting=adopting,
        allow_data_loss=allow_data_loss,
        done_at=done_at,
    )
    if isinstance(target, Engine):
        with _translated(target.url):
            run(target)
        return
    engine = make_engine(target, for_migrations=True)
    try:
        with _translated(engine.url):
            run(engine)
    finally:
        engine.dispose()


@contextmanager
def _translated(url: URL) -> Iterator[None]:
    """Driver errors as this package's (an unreachable server: `DatabaseUnavailableError`),
    and Alembic's refusal of a revision it cannot find or reach as `InvalidArgumentError`."""
    try:
        with translated_errors(safe_url(url)):
            yield
    except CommandError as exc:
        if isinstance(exc, TrainingDBError):  # DataLossError: already says what to do
            raise
        known = ", ".join(["base", *revision_ids(), "head"])
        raise InvalidArgumentError(f"{exc}; revisions: {known}") from exc


def revision_ids() -> list[str]:
    """Every revision id this code knows, oldest first."""
    script = ScriptDirectory(script_location())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def require_known_revision(revision: str) -> None:
    """Refuse a revision Alembic could not resolve, before anything asks or connects.

    ``base``, ``head``/``heads``, relative steps (``-1``, ``head-2``) and any prefix of a
    known id that Alembic resolves pass; anything else is `InvalidArgumentError` naming the
    revisions there are (the CLI checks this before asking for confirmation).
    """
    script = ScriptDirectory(script_location())
    if revision in ("base", "head", "heads") or re.fullmatch(r"(head|base)?[-+]\d+", revision):
        return
    try:
        script.get_revision(revision)
    except (CommandError, RevisionError) as exc:
        known = ", ".join(["base", *revision_ids(), "head"])
        raise InvalidArgumentError(f"unknown revision {revision!r}; revisions: {known}") from exc


def refuse_data_loss(
    revision: str,
    *,
    tables: Sequence[str] = (),
    columns: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """First statement of a ``downgrade()`` that drops ``tables`` or ``columns``.

    Raises :class:`DataLossError` naming what would be deleted when any of those tables has
    rows or any of those columns a non-NULL value, unless data loss was allowed
    (``alembic -x allow_data_loss=true downgrade ...``, or
    ``downgrade(..., allow_data_loss=True)``). Empty tables and all-NULL columns go quietly.
    Offline (``--sql``) there is nothing to count.
    """
    connection = _counting_connection()
    if connection is None:
        return
    losses = []
    for table in tables:
        count = connection.execute(sa.select(sa.func.count()).select_from(sa.table(table)))
        if rows := count.scalar_one():
            losses.append(f"{rows} rows of {table}")
    for table, names in (columns or {}).items():
        filled = sa.or_(*(sa.column(name).is_not(None) for name in names))
        count = connection.execute(
            sa.select(sa.func.count()).select_from(sa.table(table)).where(filled)
        )
        if rows := count.scalar_one():
            losses.append(f"{', '.join(names)} of {rows} rows of {table}")
    _refuse_unless_allowed(revision, losses)


def refuse_narrowing(
    revision: str, table: str, columns: Sequence[str], low: int, high: int
) -> None:
    """First statement of a ``downgrade()`` that narrows integer ``columns`` to ``low..high``.

    Like :func:`refuse_data_loss`, for the values that do not fit: raises
    :class:`DataLossError` naming each column that holds one, unless data loss was allowed
    (then the ``downgrade()`` sets them NULL before narrowing, rather than let the ALTER fail
    or truncate them). NULLs and values that fit go quietly.
    """
    connection = _counting_connection()
    if connection is None:
        return
    # One scan counts every column: count(CASE WHEN <outside> THEN 1 END) per column.
    beyond = [
        sa.func.count(sa.case((sa.not_(sa.column(name).between(low, high)), 1))) for name in columns
    ]
    counts = connection.execute(sa.select(*beyond).select_from(sa.table(table))).one()
    losses = [
        f"{name} of {rows} rows of {table} (values outside {low}..{high})"
        for name, rows in zip(columns, counts, strict=True)
        if rows
    ]
    _refuse_unless_allowed(revision, losses)


def _counting_connection() -> Connection | None:
    """The migration's connection, or None offline (``--sql``), where there is nothing to count."""
    migration = alembic_context.get_context()
    if migration.as_sql:
        return None
    assert migration.connection is not None
    return migration.connection


def _refuse_unless_allowed(revision: str, losses: Sequence[str]) -> None:
    if not losses:
        return
    if _data_loss_allowed():
        logger.warning("downgrading %s deletes %s (allowed)", revision, "; ".join(losses))
        return
    raise DataLossError(
        f"{_loss_summary(revision, losses)} Back the database up first; then, to delete them, "
        f"run `alembic -x {ALLOW_DATA_LOSS}=true downgrade ...` or call "
        f"migrations.downgrade(url, revision, {ALLOW_DATA_LOSS}=True)",
        revision=revision,
        losses=losses,
    )


def _data_loss_allowed() -> bool:
    if alembic_context.config.attributes.get(ALLOW_DATA_LOSS):
        return True
    flag = alembic_context.get_x_argument(as_dictionary=True).get(ALLOW_DATA_LOSS, "")
    return flag.strip().lower() in ("1", "true", "yes")


def _is_at(engine: Engine, revision: str) -> bool:
    with engine.connect() as connection:
        return current_revision(connection) == revision


def _wait_for_migrations(connection: Connection) -> None:
    """On SQLite, let BEGIN IMMEDIATE wait as long as another process's migration may take."""
    if connection.dialect.name == "sqlite":
        # On the driver connection: a statement through SQLAlchemy would begin a transaction.
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA busy_timeout = {MIGRATION_LOCK_WAIT_S * 1000:d}")


def acquire_migration_lock(connection: Connection) -> None:
    """Hold the PostgreSQL migration lock until the transaction ends (SQLite: BEGIN IMMEDIATE)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
        )


def _run_locked(
    engine: Engine,
    action: Callable[[Config], None],
    *,
    adopting: bool = False,
    allow_data_loss: bool = False,
    done_at: str | None = None,
) -> None:
    """Run an Alembic command in one transaction that holds the migration lock.

    SQLite: the transaction begins IMMEDIATE, taking the write lock. PostgreSQL: a
    transaction-level advisory lock. Others wait on the lock, then find nothing to do.
    The adoption check runs under the lock too, so only one process adopts.

    A database already at ``done_at`` needs nothing: that is checked without the lock first
    (the usual start of a training process), and again once the lock is held (another
    process did the work while this one waited), so the lock is held only for real work;
    otherwise every process starting on SQLite would queue for the write lock in turn.
    """
    where = safe_url(engine.url)
    if done_at is not None and _is_at(engine, done_at):
        return
    with engine.connect().execution_options(sqlite_write=True) as connection:
        _wait_for_migrations(connection)
        with connection.begin():
            acquire_migration_lock(connection)
            if done_at is not None and current_revision(connection) == done_at:
                return
            if adopting:
                adopt(connection, where)
            elif is_unversioned(connection):
                raise SchemaVersionError(unversioned_message(where))
            action(alembic_config(connection, allow_data_loss=allow_data_loss))
        if connection.dialect.name == "sqlite":
            problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if problems:  # pragma: no cover - would mean a broken revision
                raise SchemaVersionError(f"foreign key check failed after migrating: {problems}")
