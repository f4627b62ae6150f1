"""Adopting databases made by the old hand-written module (tables, no ``alembic_version``)."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import URL

from tests.legacy_schemas import (
    EXPECTED_OBJECTIVES,
    EXPECTED_RUNS,
    RUN_IDS,
    SCHEMAS,
    V1_ROWS,
    V2_ROWS,
    create_legacy_database,
    execute_all,
)
from training_db import SchemaVersionError, TrainingDB
from training_db.core.types import JSONDocument, UTCDateTime
from training_db.schema import migrations
from training_db.schema.adoption import ASIDE_PREFIX, ASIDE_SCHEMA, legacy_timestamp, legacy_value

REPO_ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc


def as_text(value: Any) -> str:
    """Comparable text for values holding NaN (NaN != NaN) and -0.0."""
    return json.dumps(value, sort_keys=True, default=str)


def snapshot(url: URL) -> dict[str, Any]:
    """Every table (in every schema), its columns and its rows, to prove nothing changed."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            tables = sorted(inspector.get_table_names())
            return {
                "schemas": sorted(inspector.get_schema_names()),
                "tables": tables,
                "columns": {t: [c["name"] for c in inspector.get_columns(t)] for t in tables},
                "rows": {
                    t: sorted(
                        map(as_text, map(tuple, connection.exec_driver_sql(f"SELECT * FROM {t}")))
                    )
                    for t in tables
                },
            }
    finally:
        engine.dispose()


def schema_differences(url: URL, reference: URL) -> list[Any]:
    """Alembic's comparison of ``url``'s schema with the freshly migrated ``reference``."""
    expected = sa.MetaData()
    reference_engine = sa.create_engine(reference)
    expected.reflect(reference_engine)
    reference_engine.dispose()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, expected))
    finally:
        engine.dispose()


@pytest.mark.parametrize("version", [1, 2])
def test_old_module_database_is_adopted_with_every_row(
    empty_url: URL, backend: str, version: int, migrated_templates: dict[str, URL]
) -> None:
    create_legacy_database(empty_url, backend, version)

    TrainingDB(empty_url).init_db()

    engine = sa.create_engine(empty_url)
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head_revision()
        inspector = sa.inspect(connection)
        assert ASIDE_SCHEMA not in inspector.get_schema_names()
        assert not [t for t in inspector.get_table_names() if t.startswith(ASIDE_PREFIX)]
        if backend == "sqlite":  # the old module's trigger went with its table
            triggers = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            )
            assert triggers.all() == []
    engine.dispose()
    assert schema_differences(empty_url, migrated_templates[backend]) == []

    database = TrainingDB(empty_url)
    for run_id, expected in EXPECTED_RUNS.items():
        run = database.get_run(run_id)
        assert run is not None, run_id
        for key, value in expected.items():
            assert as_text(run[key]) == as_text(value), (run_id, key)
    launched = database.get_run("launched_i-0c3")
    assert launched is not None
    # CURRENT_TIMESTAMP text of the old default reads back as an aware UTC datetime
    assert launched["created_at"].tzinfo is not None
    assert launched["created_at"].utcoffset() == dt.timedelta(0)
    assert launched["created_at_db"] == launched["created_at"]
    completed = database.get_run("mgda_i-0a1")
    assert completed is not None
    assert math.isnan(completed["final_metrics"]["train/loss"])
    assert math.copysign(1.0, completed["final_metrics"]["signed_zero"]) < 0
    assert math.isnan(json.loads(completed["config_json"])["reward"]["baseline"])

    # NULL extracted columns were filled from the config; stored values were kept
    crashed = database.get_run("pcgrad_i-0b2")
    assert crashed is not None
    assert crashed["gradient_method"] == "pcgrad"
    assert crashed["gradient_accumulation_steps"] == 8
    assert crashed["max_steps"] == 500
    assert crashed["model_name"] == "mango-7b"
    assert crashed["seed"] == 3
    if version == 2:
        assert completed["optimizer"] == "adamw"
        assert completed["final_loss"] == 0.123
        assert completed["total_training_steps"] == 1200

    # the documents are real JSON now: SQL JSON functions filter on them
    found = database.query_runs(filters={"config.training.batch_size": 64})
    assert [run["run_id"] for run in found] == ["mgda_i-0a1"]
    assert [r["run_id"] for r in database.query_runs(filters={"summary._step": 1200})] == [
        "mgda_i-0a1"
    ]

    objectives = {row["id"]: row for row in database.get_run_objectives("mgda_i-0a1")}
    if version == 2:
        assert set(objectives) == set(EXPECTED_OBJECTIVES)
        for objective_id, expected in EXPECTED_OBJECTIVES.items():
            for key, value in expected.items():
                assert objectives[objective_id][key] == value, (objective_id, key)
    else:
        assert objectives == {}

    # new rows go in after the adopted ones (the id sequence was moved past them)
    database.insert_objective("mgda_i-0a1", "QED", direction="maximize")
    new_ids = {row["id"] for row in database.get_run_objectives("mgda_i-0a1")} - set(objectives)
    assert new_ids == {max([*objectives, 0]) + 1}
    database.insert_run("new_run", "wb-new", {"training": {"batch_size": 8}})
    database.finish_run(
        "new_run", summary={"train/loss": 0.5, "objectives/QED_maximize/raw_mean": 1}
    )
    assert sorted(run["run_id"] for run in database.query_runs()) == sorted([*RUN_IDS, "new_run"])
    database.dispose()

    TrainingDB(empty_url).init_db()  # adopted once: again is a no-op
    assert len(TrainingDB(empty_url).query_runs()) == len(RUN_IDS) + 1


def test_old_module_database_is_refused_on_first_use_with_the_fix(
    empty_url: URL, backend: str
) -> None:
    create_legacy_database(empty_url, backend, 2)
    before = snapshot(empty_url)
    database = TrainingDB(empty_url)
    with pytest.raises(SchemaVersionError, match=r"no Alembic version.*`training-db upgrade`"):
        database.insert_run("x", None, {})
    database.dispose()
    with pytest.raises(SchemaVersionError, match=r"`training-db upgrade`"):
        migrations.downgrade(empty_url, "base")
    assert snapshot(empty_url) == before


def test_database_matching_no_revision_is_refused_with_the_differences(
    empty_url: URL, backend: str
) -> None:
    create_legacy_database(empty_url, backend, 2)
    execute_all(
        empty_url,
        (
            "ALTER TABLE training_runs ADD COLUMN notes TEXT",
            "ALTER TABLE training_runs DROP COLUMN beta",
            "CREATE TABLE run_scaffolds (id INTEGER PRIMARY KEY, run_id TEXT)",
        ),
    )
    before = snapshot(empty_url)
    with pytest.raises(SchemaVersionError) as refused:
        migrations.upgrade(empty_url)
    message = str(refused.value)
    assert "closest is revision 0002" in message
    assert "extra tables run_scaffolds" in message
    assert "training_runs lacks columns beta" in message
    assert "training_runs has extra columns notes" in message
    assert "Nothing was changed" in message
    assert snapshot(empty_url) == before


def test_values_that_cannot_be_converted_are_listed_and_nothing_changes(
    empty_url: URL, backend: str
) -> None:
    create_legacy_database(empty_url, backend, 1)
    execute_all(
        empty_url,
        (
            "UPDATE training_runs SET started_at = 'last tuesday' WHERE run_id = 'pcgrad_i-0b2'",
            "UPDATE training_runs SET config_json = '{\"training\": '"
            " WHERE run_id = 'launched_i-0c3'",
        ),
    )
    before = snapshot(empty_url)
    with pytest.raises(SchemaVersionError) as refused:
        TrainingDB(empty_url).init_db()
    message = str(refused.value)
    assert "run_id='pcgrad_i-0b2': started_at 'last tuesday' is not a timestamp" in message
    assert "run_id='launched_i-0c3': config_json" in message and "is not JSON" in message
    assert "Nothing was changed" in message
    assert snapshot(empty_url) == before


def test_a_row_breaking_a_new_constraint_is_refused(empty_url: URL, backend: str) -> None:
    """The old created_at had only a default; the revisions make it NOT NULL."""
    create_legacy_database(empty_url, backend, 1)
    execute_all(
        empty_url,
        ("INSERT INTO training_runs (run_id, created_at) VALUES ('no_created_at', NULL)",),
    )
    before = snapshot(empty_url)
    with pytest.raises(SchemaVersionError, match=r"breaks a constraint.*created_at"):
        migrations.upgrade(empty_url)
    assert snapshot(empty_url) == before


def test_orphaned_objectives_are_refused(tmp_path: Path) -> None:
    """The old SQLite module never turned foreign keys on: objectives of deleted runs remain."""
    url = URL.create("sqlite", database=str(tmp_path / "legacy.db"))
    create_legacy_database(url, "sqlite", 2)
    execute_all(
        url,
        ("INSERT INTO run_objectives (run_id, objective_name) VALUES ('deleted_run', 'QED')",),
    )
    before = snapshot(url)
    with pytest.raises(
        SchemaVersionError, match=r"1 rows of run_objectives have a run_id that training_runs lacks"
    ):
        migrations.upgrade(url)
    assert snapshot(url) == before


def test_other_tables_alone_are_not_an_old_database(empty_url: URL) -> None:
    """A database holding only someone else's tables gets mangodb's created next to them."""
    execute_all(empty_url, ("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",))
    migrations.upgrade(empty_url)
    tables = snapshot(empty_url)["tables"]
    assert {"notes", "training_runs", "alembic_version"} <= set(tables)


def test_alembic_command_line_stops_on_an_old_database(tmp_path: Path) -> None:
    """`alembic upgrade head` does not adopt; it says which command does, and changes nothing."""
    target = tmp_path / "legacy.db"
    url = URL.create("sqlite", database=str(target))
    create_legacy_database(url, "sqlite", 1)
    before = snapshot(url)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env={"TRAINING_DB_PATH": str(target), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "training-db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(url) == before


def test_the_fixtures_are_the_old_schemas_and_nothing_else() -> None:
    """The v2 fixture is v1 plus migrate_to_v2's statements (a guard on the fixtures)."""
    for backend in ("sqlite", "postgresql"):
        assert SCHEMAS[(backend, 2)][: len(SCHEMAS[(backend, 1)])] == SCHEMAS[(backend, 1)]
    assert V2_ROWS[: len(V1_ROWS)] == V1_ROWS


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2025-11-11 09:30:00", dt.datetime(2025, 11, 11, 9, 30, tzinfo=UTC)),
        ("2025-11-11T09:31:02.123456", dt.datetime(2025, 11, 11, 9, 31, 2, 123456, tzinfo=UTC)),
        ("2025-11-11T11:31:02.5Z", dt.datetime(2025, 11, 11, 11, 31, 2, 500000, tzinfo=UTC)),
        ("2025-11-23 03:59:00.1234567+00", dt.datetime(2025, 11, 23, 3, 59, 0, 123456, tzinfo=UTC)),
        ("2025-11-12T14:00:00+05:30", dt.datetime(2025, 11, 12, 8, 30, tzinfo=UTC)),
        ("2025-11-12 01:00:00-0700", dt.datetime(2025, 11, 12, 8, 0, tzinfo=UTC)),
        (" 2025-11-12 ", dt.datetime(2025, 11, 12, tzinfo=UTC)),
        (b"2025-11-12 08:00", dt.datetime(2025, 11, 12, 8, 0, tzinfo=UTC)),
        (1762853400, dt.datetime(2025, 11, 11, 9, 30, tzinfo=UTC)),
        (dt.datetime(2025, 11, 11, 9, 30), dt.datetime(2025, 11, 11, 9, 30, tzinfo=UTC)),
    ],
)
def test_old_timestamps_are_read_as_utc(stored: Any, expected: dt.datetime) -> None:
    assert legacy_timestamp(stored) == expected
    assert legacy_timestamp(stored).tzinfo == UTC


@pytest.mark.parametrize("stored", ["yesterday", "2025-13-01 00:00:00", "11/12/2025", True, None])
def test_text_that_is_no_timestamp_is_an_error(stored: Any) -> None:
    with pytest.raises(ValueError, match=r"timestamp|month"):
        legacy_timestamp(stored)


@pytest.mark.parametrize(
    ("type_", "stored", "expected"),
    [
        (sa.Integer(), "64", 64),
        (sa.Integer(), 4.0, 4),
        (sa.Integer(), Decimal("12"), 12),
        (sa.Integer(), " 12345678901234567891", 12345678901234567891),
        (sa.Double(), "1e-4", 1e-4),
        (sa.Double(), "NaN", None),
        (sa.Double(), float("inf"), float("inf")),
        (sa.Double(), Decimal("0.5"), 0.5),
        (sa.String(), 81234, "81234"),
        (sa.LargeBinary(), memoryview(b"\x00\x01"), b"\x00\x01"),
        (JSONDocument(), '{"a": NaN, "b": [Infinity]}', {"a": float("nan"), "b": [float("inf")]}),
        (JSONDocument(), {"already": "parsed"}, {"already": "parsed"}),
        (JSONDocument(), "null", None),
        (UTCDateTime(), "2025-11-11 09:30:00", dt.datetime(2025, 11, 11, 9, 30, tzinfo=UTC)),
    ],
)
def test_old_values_are_converted_for_their_column(
    type_: sa.types.TypeEngine[Any], stored: Any, expected: Any
) -> None:
    assert as_text(legacy_value(type_, stored)) == as_text(expected)


@pytest.mark.parametrize(
    ("type_", "stored"),
    [
        (sa.Integer(), 3.5),
        (sa.Integer(), "lots"),
        (sa.Double(), True),
        (JSONDocument(), "{broken"),
        (JSONDocument(), 12),
        (JSONDocument(), '{"bad": "\\ud800"}'),
        (sa.Integer(), Decimal("1.5")),
    ],
)
def test_old_values_without_a_faithful_form_are_errors(
    type_: sa.types.TypeEngine[Any], stored: Any
) -> None:
    with pytest.raises(ValueError, match=r"not (a whole number|a number|JSON)|surrogate"):
        legacy_value(type_, stored)
