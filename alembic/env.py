"""Alembic environment: the same database as the package, the models as the target.

A connection handed in by ``training_db.migrations`` (``config.attributes["connection"]``)
is used as it is, inside the transaction and lock its caller holds. Otherwise the URL is
``-x url=...``, else resolved from the TRAINING_DB_* variables like the package does.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from training_db.migrations import acquire_migration_lock
from training_db.models import Base
from training_db.settings import make_engine, resolve_url

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
        with engine.connect().execution_options(sqlite_write=True) as connection:
            _configure(connection)
            with context.begin_transaction():
                acquire_migration_lock(connection)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
