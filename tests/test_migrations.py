"""The Alembic revisions: one head, both directions, models == migrated DDL, data kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from training_db import SchemaVersionError, TrainingDB
from training_db.core.types import JSONDocument
from training_db.schema import Base, migrations
from training_db.schema.migrations import DataLossError

REPO_ROOT = Path(__file__).resolve().parent.parent


def revisions_in_order() -> list[str]:
    script = ScriptDirectory(migrations.script_location())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def current(url: URL) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return migrations.current_revision(connection)
    finally:
        engine.dispose()


def tables(url: URL) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_single_head_and_linear_history() -> None:
    script = ScriptDirectory(migrations.script_location())
    assert len(script.get_heads()) == 1
    assert revisions_in_order()[0] == "0001"
    assert migrations.head_revision() == revisions_in_order()[-1]


def test_the_revisions_exist_once() -> None:
    """The package finds the top-level alembic/ folder, not a copy."""
    assert Path(migrations.script_location()).resolve() == (REPO_ROOT / "alembic").resolve()


def test_upgrade_from_empty_and_idempotent(empty_url: URL) -> None:
    migrations.upgrade(empty_url)
    assert current(empty_url) == migrations.head_revision()
    migrations.upgrade(empty_url)  # again: nothing to do, nothing fails
    assert current(empty_url) == migrations.head_revision()
    assert {"training_runs", "run_objectives", "run_tags", "alembic_version"} <= tables(empty_url)


def test_models_match_migrated_schema(empty_url: URL) -> None:
    """Alembic's autogenerate comparison finds no difference between models and revisions."""
    migrations.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_step_by_step_and_back_up(empty_url: URL) -> None:
    migrations.upgrade(empty_url)
    for revision in reversed(revisions_in_order()[:-1]):
        migrations.downgrade(empty_url, revision)
        assert current(empty_url) == revision
    migrations.downgrade(empty_url, "base")
    assert current(empty_url) is None
    assert "training_runs" not in tables(empty_url)
    migrations.upgrade(empty_url)
    assert current(empty_url) == migrations.head_revision()


def test_v1_rows_survive_and_are_backfilled(empty_url: URL) -> None:
    """A run written at revision 0001 is intact at head, with the v2 columns backfilled."""
    migrations.upgrade(empty_url, "0001")
    config = {
        "training": {"batch_size": 32, "gradient_accumulation_steps": 8, "max_steps": 500},
        "model": {"base_model": "mango-7b"},
        "seed": 3,
    }
    engine = sa.create_engine(empty_url)
    runs_v1 = sa.table(
        "training_runs",
        sa.column("run_id"),
        sa.column("status"),
        sa.column("created_at", sa.DateTime()),
        sa.column("batch_size"),
        sa.column("config_json", sa.JSON()),
        sa.column("created_at_db", sa.DateTime()),
        sa.column("updated_at_db", sa.DateTime()),
    )
    with engine.begin() as connection:
        connection.execute(
            sa.insert(runs_v1).values(
                run_id="old-run",
                status="completed",
                created_at=sa.func.current_timestamp(),
                batch_size=32,
                config_json=config,
                created_at_db=sa.func.current_timestamp(),
                updated_at_db=sa.func.current_timestamp(),
            )
        )
    engine.dispose()
    migrations.upgrade(empty_url)
    run = TrainingDB(empty_url).get_run("old-run")
    assert run is not None
    assert run["status"] == "completed"
    assert run["batch_size"] == 32
    assert run["gradient_accumulation_steps"] == 8
    assert run["max_steps"] == 500
    assert run["model_name"] == "mango-7b"
    assert run["seed"] == 3
    assert json.loads(run["config_json"]) == config


def test_data_survives_downgrade_to_v2(db_url: URL) -> None:
    """Downgrading past run_tags keeps runs and objectives-era data."""
    database = TrainingDB(db_url)
    database.insert_run("keep-me", None, {"training": {"batch_size": 8}})
    database.set_tags("keep-me", {"owner": "alice"})
    database.dispose()
    migrations.downgrade(db_url, "0002", allow_data_loss=True)  # the tag goes, the run stays
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT run_id FROM training_runs")).scalars().all() == [
            "keep-me"
        ]
    engine.dispose()
    migrations.upgrade(db_url)
    again = TrainingDB(db_url).get_run("keep-me")
    assert again is not None and again["batch_size"] == 8


def test_empty_database_is_created_on_first_use(empty_url: URL) -> None:
    database = TrainingDB(empty_url)
    database.insert_run("x", None, {})  # the first write (a read of a missing file is refused)
    assert current(empty_url) == migrations.head_revision()
    assert database.get_run("x") is not None
    database.dispose()


def test_existing_empty_database_is_created_on_first_read(empty_url: URL) -> None:
    """A database that exists with no tables (a new PostgreSQL database, an empty file) is
    migrated to head on first use, reads included; only a missing SQLite file is refused."""
    if empty_url.get_backend_name() == "sqlite":
        assert empty_url.database is not None
        Path(empty_url.database).touch()
    database = TrainingDB(empty_url)
    assert database.get_run("x") is None
    assert current(empty_url) == migrations.head_revision()
    database.dispose()


def test_database_behind_head_is_refused_with_the_fix(empty_url: URL) -> None:
    migrations.upgrade(empty_url, "0002")
    database = TrainingDB(empty_url)
    with pytest.raises(SchemaVersionError, match=r"0002.*training-db upgrade"):
        database.get_run("x")
    database.init_db()
    assert database.get_run("x") is None


def test_database_ahead_of_code_is_refused(db_url: URL) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match=r"ffff_future.*does not know"):
        TrainingDB(db_url).get_run("x")


def test_password_never_in_schema_errors(pg_empty_url: URL) -> None:
    migrations.upgrade(pg_empty_url, "0001")
    with_password = pg_empty_url.set(password="s3cret-pw")
    with pytest.raises(SchemaVersionError) as raised:
        TrainingDB(with_password).get_run("x")
    assert "s3cret-pw" not in str(raised.value)
    assert "***" in str(raised.value)


def test_alembic_command_line_targets_the_same_database(tmp_path: Path) -> None:
    """`alembic upgrade head` from the repo root uses TRAINING_DB_PATH like the package."""
    target = tmp_path / "cli.db"
    env = {"TRAINING_DB_PATH": str(target), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"sqlite:///{target}")
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head_revision()
    engine.dispose()


# --- 64-bit integers (revision 0007) ------------------------------------------------------------

# Integer columns that stay 32-bit on purpose, besides the surrogate keys (see revision 0007):
# the number of points of one series, all of which one log_history call holds in memory.
BOUNDED_COUNTS = {("run_history", "num_points")}
USER_INTEGER_COLUMNS = (
    "batch_size",
    "num_gpus",
    "num_objectives",
    "num_scaffolds",
    "gradient_accumulation_steps",
    "warmup_steps",
    "num_epochs",
    "max_steps",
    "seed",
    "lora_rank",
    "num_generations",
    "total_training_steps",
)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _is_surrogate_key(column: sa.Column[object]) -> bool:
    """A number the database hands out (an autoincrement key), or a foreign key to one."""
    if column is column.table.autoincrement_column:
        return True
    return any(_is_surrogate_key(key.column) for key in column.foreign_keys)


def column_types(url: URL, table: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        return {
            column["name"]: str(column["type"]) for column in sa.inspect(engine).get_columns(table)
        }
    finally:
        engine.dispose()


def test_every_integer_column_holding_user_values_is_64_bit_on_postgresql(
    pg_empty_url: URL,
) -> None:
    """Any integer column of the models that is not a surrogate key is BIGINT once migrated,
    so a column added later cannot bring a 32-bit limit back."""
    migrations.upgrade(pg_empty_url)
    checked = []
    for table in Base.metadata.sorted_tables:
        migrated = column_types(pg_empty_url, table.name)
        for column in table.columns:
            if not isinstance(column.type, sa.Integer) or _is_surrogate_key(column):
                continue
            if (table.name, column.name) in BOUNDED_COUNTS:
                assert migrated[column.name] == "INTEGER"
                continue
            assert migrated[column.name] == "BIGINT", f"{table.name}.{column.name}"
            checked.append(f"{table.name}.{column.name}")
    assert {f"training_runs.{name}" for name in USER_INTEGER_COLUMNS} <= set(checked)


def _run_rows(url: URL) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(f"SELECT run_id, {', '.join(USER_INTEGER_COLUMNS)} FROM training_runs")
            ).mappings()
            return {row["run_id"]: dict(row) for row in rows}
    finally:
        engine.dispose()


def _insert_runs(url: URL, rows: dict[str, dict[str, object]]) -> None:
    """Runs as code at 0006/0007 writes them (Core, no models): ``{run_id: values}``."""
    runs = sa.table(
        "training_runs",
        *(sa.column(name) for name in ("run_id", "status", "created_at", "created_at_db")),
        sa.column("updated_at_db"),
        sa.column("config_json", JSONDocument()),
        *(sa.column(name) for name in USER_INTEGER_COLUMNS),
    )
    now = sa.func.current_timestamp()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for run_id, values in rows.items():
                connection.execute(
                    sa.insert(runs).values(
                        run_id=run_id,
                        status="completed",
                        created_at=now,
                        created_at_db=now,
                        updated_at_db=now,
                        **values,
                    )
                )
    finally:
        engine.dispose()


def test_0007_widens_with_data_and_narrows_only_what_fits(empty_url: URL) -> None:
    """Data written at 0006 survives 0007; a value beyond 32 bits makes the PostgreSQL
    downgrade refuse (nothing changed) until data loss is allowed, which empties just it."""
    sqlite = empty_url.get_backend_name() == "sqlite"
    migrations.upgrade(empty_url, "0006")
    written: dict[str, dict[str, object]] = {
        "edges": {
            name: INT32_MAX if index % 2 else INT32_MIN
            for index, name in enumerate(USER_INTEGER_COLUMNS)
        }
    }
    if sqlite:  # code at 0006 on SQLite already stores 64-bit values
        written["wide"] = {"seed": 2**40, "total_training_steps": -(2**62)}
    _insert_runs(empty_url, written)

    migrations.upgrade(empty_url, "0007")
    assert current(empty_url) == "0007"
    for run_id, values in written.items():
        assert {k: v for k, v in _run_rows(empty_url)[run_id].items() if k in values} == values
    expected_type = "INTEGER" if sqlite else "BIGINT"
    types = column_types(empty_url, "training_runs")
    assert {types[name] for name in USER_INTEGER_COLUMNS} == {expected_type}
    big = {"seed": 2**31, "total_training_steps": 2**33, "config_json": {"seed": 2**31}}
    _insert_runs(empty_url, {"big": big})
    before = _run_rows(empty_url)
    assert (before["big"]["seed"], before["big"]["total_training_steps"]) == (2**31, 2**33)

    if sqlite:  # nothing was widened, so nothing is narrowed: every value stays
        migrations.downgrade(empty_url, "0006")
        assert current(empty_url) == "0006"
        assert _run_rows(empty_url) == before
        return

    with pytest.raises(DataLossError) as refused:
        migrations.downgrade(empty_url, "0006")
    message = str(refused.value)
    assert "revision 0007 would delete" in message
    assert "seed of 1 rows of training_runs" in message
    assert "total_training_steps of 1 rows of training_runs" in message
    assert "batch_size" not in message  # 2**31 - 1 and -2**31 fit
    assert current(empty_url) == "0007"
    assert _run_rows(empty_url) == before

    migrations.downgrade(empty_url, "0006", allow_data_loss=True)
    assert current(empty_url) == "0006"
    types = column_types(empty_url, "training_runs")
    assert {types[name] for name in USER_INTEGER_COLUMNS} == {"INTEGER"}
    after = _run_rows(empty_url)
    assert after["edges"] == before["edges"]
    assert after["big"] == {**before["big"], "seed": None, "total_training_steps": None}
    migrations.upgrade(empty_url)
    database = TrainingDB(empty_url)
    run = database.get_run("big")
    database.dispose()
    assert run is not None and run["seed"] is None
    assert run["config"] == {"seed": 2**31}  # the document keeps it
