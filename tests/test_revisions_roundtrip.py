"""Every revision, both ways, on both backends, with data written at every step.

Going up, each revision gets the rows code at that revision would write (plain Core SQL, no
models); at head all of them must read back through the public API. Going down, a step that
would delete those rows refuses (DataLossError, nothing changed) until data loss is allowed,
and the rows of the older revisions are still there after each step.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection

from training_db import TrainingDB
from training_db.core.types import JSONDocument, UTCDateTime
from training_db.schema import migrations
from training_db.schema.migrations import DataLossError
from training_db.store.history import encode_series

REPO_ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
CREATED = dt.datetime(2025, 11, 11, 9, 30, tzinfo=UTC)
V1_CONFIG = {
    "training": {"batch_size": 64, "gradient_accumulation_steps": 4, "lr": 3e-5},
    "model": {"base_model": "mango-7b"},
    "reward": {"baseline": float("nan")},
}
V1_SUMMARY = {"train/loss": float("inf"), "_step": 100}
LOSS_HISTORY = {0: 0.5, 10: float("nan"), 20: 0.25}


def revisions_in_order() -> list[str]:
    script = ScriptDirectory(migrations.script_location())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def as_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _runs(*names: str) -> sa.TableClause:
    types: dict[str, Any] = {
        "config_json": JSONDocument(),
        "final_metrics_json": JSONDocument(),
        "created_at": UTCDateTime(),
        "created_at_db": UTCDateTime(),
        "updated_at_db": UTCDateTime(),
        "started_at": UTCDateTime(),
        "last_heartbeat_at": UTCDateTime(),
    }
    return sa.table("training_runs", *(sa.column(name, types.get(name)) for name in names))


RUN_COLUMNS = ("run_id", "status", "created_at", "created_at_db", "updated_at_db")


def _run_row(run_id: str, **values: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": "completed",
        "created_at": CREATED,
        "created_at_db": CREATED,
        "updated_at_db": CREATED,
        **values,
    }


# --- what code at each revision writes --------------------------------------------------------


def write_0001(connection: Connection) -> None:
    row = _run_row(
        "r0001",
        batch_size=64,
        config_json=V1_CONFIG,
        final_metrics_json=V1_SUMMARY,
        started_at=CREATED,
    )
    connection.execute(sa.insert(_runs(*row)).values(**row))


def write_0002(connection: Connection) -> None:
    row = _run_row("r0002", optimizer="adamw", final_loss=0.125, total_training_steps=900)
    connection.execute(sa.insert(_runs(*row)).values(**row))
    objectives = sa.table(
        "run_objectives",
        sa.column("run_id"),
        sa.column("objective_name"),
        sa.column("direction"),
        sa.column("raw_mean"),
    )
    connection.execute(
        sa.insert(objectives),
        [
            {"run_id": "r0001", "objective_name": "COMT", "direction": "maximize", "raw_mean": 0.8},
            {"run_id": "r0002", "objective_name": "COMT", "direction": "maximize", "raw_mean": 0.7},
        ],
    )


def write_0003(connection: Connection) -> None:
    tags = sa.table(
        "run_tags", sa.column("run_id"), sa.column("key"), sa.column("value", JSONDocument())
    )
    connection.execute(
        sa.insert(tags),
        [
            {"run_id": "r0001", "key": "owner", "value": "alice"},
            {"run_id": "r0002", "key": "sweep", "value": {"id": 7, "lr": [1e-4, float("nan")]}},
        ],
    )


def write_0004(connection: Connection) -> None:
    metrics = sa.table("history_metrics", sa.column("id"), sa.column("name"))
    connection.execute(sa.insert(metrics).values(id=1, name="train/loss"))
    encoded = encode_series(LOSS_HISTORY)
    history = sa.table(
        "run_history",
        *(sa.column(name) for name in ("run_id", "metric_id", "kind", "num_points")),
        *(sa.column(name) for name in ("first_step", "last_step", "step_data", "value_data")),
    )
    connection.execute(
        sa.insert(history).values(
            run_id="r0002",
            metric_id=1,
            kind=encoded.kind,
            num_points=encoded.num_points,
            first_step=encoded.first_step,
            last_step=encoded.last_step,
            step_data=encoded.step_data,
            value_data=encoded.value_data,
        )
    )
    key_metrics = sa.table(
        "run_history_key_metrics", sa.column("run_id"), sa.column("step"), sa.column("loss")
    )
    connection.execute(sa.insert(key_metrics).values(run_id="r0002", step=0, loss=0.5))


def write_0005(connection: Connection) -> None:
    runs = _runs("run_id", "last_heartbeat_at")
    connection.execute(
        sa.update(runs).where(runs.c.run_id == "r0001").values(last_heartbeat_at=CREATED)
    )


BEYOND_32_BITS = {"seed": 2**31, "total_training_steps": -(2**40)}


def write_0007(connection: Connection) -> None:
    runs = _runs("run_id", *BEYOND_32_BITS)
    connection.execute(sa.update(runs).where(runs.c.run_id == "r0001").values(**BEYOND_32_BITS))


WRITERS: dict[str, Callable[[Connection], None]] = {
    "0001": write_0001,
    "0002": write_0002,
    "0003": write_0003,
    "0004": write_0004,
    "0005": write_0005,
    "0007": write_0007,
}


def downgrade_refuses(revision: str, url: URL) -> bool:
    """Whether going below ``revision`` with its rows present refuses on this backend: 0007
    narrows integers on PostgreSQL only (SQLite's INTEGER is 64-bit at every revision)."""
    return revision in WRITERS and (revision != "0007" or url.get_backend_name() != "sqlite")


# --- what must still be there at each revision -------------------------------------------------


def _scalar(connection: Connection, sql: str) -> Any:
    return connection.exec_driver_sql(sql).scalar()


def check_0001(connection: Connection) -> None:
    runs = _runs("run_id", "config_json", "final_metrics_json", "batch_size", "started_at")
    row = connection.execute(sa.select(runs).where(runs.c.run_id == "r0001")).one()
    assert as_text(row.config_json) == as_text(V1_CONFIG)
    assert as_text(row.final_metrics_json) == as_text(V1_SUMMARY)
    assert (row.batch_size, row.started_at) == (64, CREATED)


def check_0002(connection: Connection) -> None:
    runs = _runs("run_id", "optimizer", "final_loss", "total_training_steps")
    row = connection.execute(sa.select(runs).where(runs.c.run_id == "r0002")).one()
    assert (row.optimizer, row.final_loss, row.total_training_steps) == ("adamw", 0.125, 900)
    assert _scalar(connection, "SELECT count(*) FROM run_objectives") == 2


def check_0003(connection: Connection) -> None:
    assert _scalar(connection, "SELECT count(*) FROM run_tags") == 2


def check_0004(connection: Connection) -> None:
    assert _scalar(connection, "SELECT count(*) FROM run_history") == 1
    assert _scalar(connection, "SELECT count(*) FROM run_history_key_metrics") == 1


def check_0005(connection: Connection) -> None:
    runs = _runs("run_id", "last_heartbeat_at")
    stamp = connection.execute(sa.select(runs.c.last_heartbeat_at).where(runs.c.run_id == "r0001"))
    assert stamp.scalar_one() == CREATED


def check_0007(connection: Connection) -> None:
    runs = _runs("run_id", *BEYOND_32_BITS)
    row = connection.execute(sa.select(runs).where(runs.c.run_id == "r0001")).one()
    assert row._asdict() == {"run_id": "r0001", **BEYOND_32_BITS}


CHECKS: dict[str, Callable[[Connection], None]] = {
    "0001": check_0001,
    "0002": check_0002,
    "0003": check_0003,
    "0004": check_0004,
    "0005": check_0005,
    "0007": check_0007,
}


def with_connection(url: URL, work: Callable[[Connection], None]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            work(connection)
    finally:
        engine.dispose()


def current(url: URL) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return migrations.current_revision(connection)
    finally:
        engine.dispose()


def check_everything_up_to(url: URL, revision: str | None) -> None:
    order = revisions_in_order()
    applied = order[: order.index(revision) + 1] if revision else []
    for name in applied:
        if name in CHECKS:
            with_connection(url, CHECKS[name])


def check_at_head_through_the_api(url: URL) -> None:
    database = TrainingDB(url)
    old = database.get_run("r0001")
    assert old is not None
    assert as_text(old["config"]) == as_text(V1_CONFIG)
    assert as_text(old["final_metrics"]) == as_text(V1_SUMMARY)
    assert old["created_at"] == CREATED and old["started_at"] == CREATED
    # 0002's backfill filled the columns 0002 added, from the config written at 0001
    assert old["gradient_accumulation_steps"] == 4
    assert old["model_name"] == "mango-7b"
    newer = database.get_run("r0002")
    assert newer is not None and newer["final_loss"] == 0.125
    assert [o["raw_mean"] for o in database.get_run_objectives("r0001")] == [0.8]
    assert database.get_tags("r0001") == {"owner": "alice"}
    assert as_text(database.get_tags("r0002")) == as_text(
        {"sweep": {"id": 7, "lr": [1e-4, float("nan")]}}
    )
    assert as_text(database.get_history("r0002")) == as_text(
        {"_step": [0, 10, 20], "train/loss": list(LOSS_HISTORY.values())}
    )
    if "0005" in revisions_in_order():
        assert old["last_heartbeat_at"] == CREATED
    if "0007" in revisions_in_order():
        assert (old["seed"], old["total_training_steps"]) == tuple(BEYOND_32_BITS.values())
    database.dispose()


def test_every_revision_up_and_down_with_data(empty_url: URL) -> None:
    order = revisions_in_order()
    assert set(WRITERS) >= set(order[:4])  # the data of every known revision is written
    for revision in order:
        migrations.upgrade(empty_url, revision)
        if revision in WRITERS:
            with_connection(empty_url, WRITERS[revision])
        check_everything_up_to(empty_url, revision)
    check_at_head_through_the_api(empty_url)

    for position in range(len(order) - 1, -1, -1):
        revision = order[position]
        below = order[position - 1] if position else "base"
        if downgrade_refuses(revision, empty_url):
            # its rows are there, so going below it would delete them: refused, nothing changed
            with pytest.raises(DataLossError, match=rf"revision {revision} would delete"):
                migrations.downgrade(empty_url, below)
            assert current(empty_url) == revision
            check_everything_up_to(empty_url, revision)
        migrations.downgrade(empty_url, below, allow_data_loss=True)
        assert current(empty_url) == (None if below == "base" else below)
        check_everything_up_to(empty_url, None if below == "base" else below)

    migrations.upgrade(empty_url)  # and back up from nothing
    assert current(empty_url) == migrations.head_revision()


def test_a_refused_downgrade_of_several_steps_changes_nothing(db_url: URL) -> None:
    """head → 0002 with a tag present: 0004 alone would go quietly, but the whole command is
    one transaction, so the refusal at 0003 leaves the database at head."""
    database = TrainingDB(db_url)
    database.insert_run("tagged", None, {"training": {"batch_size": 8}})
    database.set_tags("tagged", {"owner": "alice"})
    database.dispose()
    with pytest.raises(DataLossError, match=r"1 rows of run_tags") as refused:
        migrations.downgrade(db_url, "0002")
    assert "allow_data_loss" in str(refused.value)
    assert current(db_url) == migrations.head_revision()
    assert TrainingDB(db_url).get_tags("tagged") == {"owner": "alice"}


def test_columns_that_come_back_from_the_config_do_not_block_a_downgrade(db_url: URL) -> None:
    """0002's extracted columns are recomputed from config_json on the way up: no loss."""
    database = TrainingDB(db_url)
    database.insert_run("plain", None, {"training": {"batch_size": 8, "max_steps": 300}})
    database.dispose()
    migrations.downgrade(db_url, "0001")
    assert current(db_url) == "0001"
    migrations.upgrade(db_url)
    run = TrainingDB(db_url).get_run("plain")
    assert run is not None and run["max_steps"] == 300 and run["batch_size"] == 8


def test_alembic_command_line_needs_allow_data_loss(tmp_path: Path) -> None:
    target = tmp_path / "cli.db"
    url = URL.create("sqlite", database=str(target))
    database = TrainingDB(url)
    database.insert_run("kept", None, None)
    database.set_tags("kept", {"k": 1})
    database.dispose()
    env = {"TRAINING_DB_PATH": str(target), "PATH": str(Path(sys.executable).parent)}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    refused = alembic("downgrade", "0002")
    assert refused.returncode != 0
    assert "would delete 1 rows of run_tags" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert current(url) == migrations.head_revision()
    allowed = alembic("-x", "allow_data_loss=true", "downgrade", "0002")
    assert allowed.returncode == 0, allowed.stderr
    assert current(url) == "0002"
