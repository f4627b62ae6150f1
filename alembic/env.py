"""Alembic environment: the same database as the package, the models as the target.

A connection handed in by ``training_db.schema.migrations`` (``config.attributes["connection"]``)
is used as it is, inside the transaction and lock its caller holds. Otherwise the URL is
``-x url=...``, else resolved from the TRAINING_DB_* variables like the package does.

A database made by the old hand-written module (mangodb tables, no ``alembic_version``) is
not touched from here: ``alembic`` stops with a message naming ``training-db upgrade``, which
adopts it (recognises its revision, rebuilds its tables with every row, stamps it).
``-x allow_data_loss=true`` lets a downgrade delete data (see ``refuse_data_loss``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection

from training_db.core.settings import make_engine, resolve_url, safe_url
from training_db.schema import Base
from training_db.schema.migrations import (
    acquire_migration_lock,
    is_unversioned,
    unversioned_message,
)

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url_override() -> str | None:
    return context.get_x_argument(as_dictionary=True).get("url")


def _configure(connection: Connection) -> None:
    # Batch mode lets SQLite (which cannot ALTER most things) run the same revisions;
    # on PostgreSQL it is a no-op.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit the SQL to stdout instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=resolve_url(_url_override()),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url_override(), for_migrations=True)
    try:
        # One transaction for the whole command, begun before configuring so that Alembic
        # joins it: on SQLite too (which Alembic would otherwise commit once per revision),
        # a step that fails or refuses leaves the database as it was.
        with (
            engine.connect().execution_options(sqlite_write=True) as connection,
            connection.begin(),
        ):
            acquire_migration_lock(connection)
            if is_unversioned(connection):
                raise CommandError(unversioned_message(safe_url(engine.url)))
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
