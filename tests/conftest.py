"""Two-backend fixtures: every repository test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``TRAINING_DB_TEST_POSTGRES_URL`` (an admin URL, e.g.
``postgresql://root@127.0.0.1:5432/test``); tests create and drop their own databases on
that server. Without the variable the PostgreSQL cases skip with a reason, unless
``TRAINING_DB_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, make_url

from training_db import TrainingDB
from training_db.core.settings import sqlite_url
from training_db.schema import migrations

BACKENDS = ("sqlite", "postgresql")
PG_ENV = "TRAINING_DB_TEST_POSTGRES_URL"
REQUIRE_PG_ENV = "TRAINING_DB_REQUIRE_POSTGRES"
DATA_TABLES = (
    "run_history_key_metrics",
    "run_history",
    "history_metrics",
    "run_tags",
    "run_objectives",
    "training_runs",
)


def _pg_admin_url() -> URL | None:
    raw = os.environ.get(PG_ENV)
    return make_url(raw) if raw else None


def _require_postgres() -> None:
    """Skip (laptop) or fail (CI) when no PostgreSQL server was given."""
    if _pg_admin_url() is not None:
        return
    reason = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://root@127.0.0.1:5432/test)"
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"{REQUIRE_PG_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PostgresServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: URL) -> None:
        self.admin_url = admin_url.set(drivername="postgresql+psycopg2")
        self._engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create_database(self, template: URL | None = None) -> URL:
        """A new database; a copy of ``template`` (which must have no open connection)."""
        name = f"mangodb_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        copy_of = f' TEMPLATE "{template.database}"' if template is not None else ""
        with self._engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy_of}')
        self.created.append(name)
        return self.admin_url.set(database=name)

    def drop_database(self, url: URL) -> None:
        with self._engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        if url.database in self.created:
            self.created.remove(url.database)

    def close(self) -> None:
        for name in list(self.created):
            with self._engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | None]:
    admin = _pg_admin_url()
    if admin is None:
        yield None
        return
    server = PostgresServer(admin)
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql":
        _require_postgres()
    return name


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, pg_server: PostgresServer | None) -> Iterator[URL]:
    """A URL of a brand-new, empty database on the backend under test."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "empty.db")
        return
    assert pg_server is not None
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def pg_empty_url(pg_server: PostgresServer | None) -> Iterator[URL]:
    """A brand-new PostgreSQL database, for the tests that are about PostgreSQL only."""
    _require_postgres()
    assert pg_server is not None
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(scope="session")
def migrated_templates(
    tmp_path_factory: pytest.TempPathFactory, pg_server: PostgresServer | None
) -> dict[str, URL]:
    """One database per backend migrated to head once per session."""
    sqlite_template = sqlite_url(tmp_path_factory.mktemp("template") / "template.db")
    migrations.upgrade(sqlite_template)
    templates = {"sqlite": sqlite_template}
    if pg_server is not None:
        pg_url = pg_server.create_database()
        migrations.upgrade(pg_url)
        templates["postgresql"] = pg_url
    return templates


@pytest.fixture
def db_url(
    backend: str,
    tmp_path: Path,
    migrated_templates: dict[str, URL],
    pg_server: PostgresServer | None,
) -> Iterator[URL]:
    """A database of its own at head with no rows in it (a copy of the migrated template)."""
    if backend == "sqlite":
        template = migrated_templates["sqlite"]
        assert template.database is not None
        target = tmp_path / "runs.db"
        shutil.copyfile(template.database, target)
        yield sqlite_url(target)
        return
    assert pg_server is not None
    url = pg_server.create_database(template=migrated_templates["postgresql"])
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def db(db_url: URL) -> Iterator[TrainingDB]:
    database = TrainingDB(db_url)
    yield database
    database.dispose()


@pytest.fixture
def default_db(db_url: URL) -> Iterator[TrainingDB]:
    """The module-level functions bound to the test database, unbound afterwards."""
    import training_db

    database = training_db.configure(db_url)
    yield database
    training_db.api._default = None
    database.dispose()


@pytest.fixture
def make_config() -> Callable[..., dict[str, object]]:
    def build(**training: object) -> dict[str, object]:
        return {
            "training": {
                "batch_size": 64,
                "learning_rate": 1e-4,
                "gradient_method": "mgda",
                "num_gpus": 4,
                **training,
            },
            "objectives": [
                {"name": "COMT_activity", "alias": "COMT_activity_maximize", "weight": 1.0},
                {"name": "DRD5_activity", "alias": "DRD5_activity_maximize", "weight": 0.5},
            ],
            "model": {"base_model": "mango-7b", "lora_rank": 16},
        }

    return build


def table_snapshot(url: URL) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every data table, to prove that a failed call changed nothing."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: [
                    tuple(row)
                    for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
                ]
                for table in DATA_TABLES
            }
    finally:
        engine.dispose()
