"""A duplicate that slips past the repository's checks raises the error of the constraint it
broke, found by the constraint's name, on both backends (issue 17).

Each case writes the duplicate row with a raw INSERT inside ``db.write(...)``, so the
repository's pre-checks never run and the database's unique constraint is what refuses it:
the path two racing writers take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint
from sqlalchemy.orm import Session

from training_db import (
    DatabaseWriteError,
    DuplicateError,
    DuplicateWandbRunIdError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    TrainingDB,
)
from training_db.schema import (
    Base,
    HistoryMetric,
    RunHistory,
    RunHistoryKeyMetrics,
    RunObjective,
    RunTag,
    TrainingRun,
)
from training_db.schema.constraints import DUPLICATE_ERRORS, GENERIC_DUPLICATES

OLD_CATCH_ALL = "a run with this run_id already exists"


def models_unique_constraints() -> set[str]:
    """Every primary key, unique constraint and unique index the models declare."""
    names = set()
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            if isinstance(constraint, (PrimaryKeyConstraint, UniqueConstraint)):
                names.add(str(constraint.name))
        names.update(str(index.name) for index in table.indexes if index.unique)
    return names


def test_every_unique_constraint_has_an_entry() -> None:
    """A new table's unique constraint must be mapped, or listed as generic on purpose."""
    declared = models_unique_constraints()
    assert "pk_training_runs" in declared and "uq_training_runs_wandb_run_id" in declared
    mapped, generic = set(DUPLICATE_ERRORS), set(GENERIC_DUPLICATES)
    assert not mapped & generic, "a constraint is both mapped and generic"
    assert declared - mapped - generic == set(), "unique constraints without an entry"
    assert (mapped | generic) - declared == set(), "entries for constraints that do not exist"


# --- each mapped constraint, violated for real ------------------------------------------------


def add_run(session: Session, run_id: str, wandb_run_id: str | None = None) -> None:
    session.execute(sa.insert(TrainingRun).values(run_id=run_id, wandb_run_id=wandb_run_id))


def add_metric(session: Session, name: str) -> int:
    inserted = session.execute(sa.insert(HistoryMetric).values(name=name))
    return int(inserted.inserted_primary_key[0])


def add_history(session: Session, run_id: str, metric_id: int) -> None:
    session.execute(
        sa.insert(RunHistory).values(
            run_id=run_id,
            metric_id=metric_id,
            kind="float",
            num_points=0,
            first_step=0,
            last_step=0,
            step_data=b"R" + bytes(24),
            value_data=b"",
        )
    )


def duplicate_objective(session: Session) -> None:
    for _ in range(2):
        session.execute(
            sa.insert(RunObjective).values(run_id="run-1", objective_name="COMT_activity")
        )


def duplicate_tag(session: Session) -> None:
    for value in ("alice", "bob"):
        session.execute(sa.insert(RunTag).values(run_id="run-1", key="owner", value=value))


def duplicate_metric_name(session: Session) -> None:
    for _ in range(2):
        add_metric(session, "train/loss")


def duplicate_history(session: Session) -> None:
    metric_id = add_metric(session, "train/loss")
    add_history(session, "run-1", metric_id)
    add_history(session, "run-1", metric_id)


def duplicate_key_metrics(session: Session) -> None:
    for _ in range(2):
        session.execute(sa.insert(RunHistoryKeyMetrics).values(run_id="run-1", step=7))


def duplicate_tag_id(session: Session) -> None:
    for key in ("owner", "team"):
        session.execute(sa.insert(RunTag).values(id=41, run_id="run-1", key=key, value=1))


@dataclass(frozen=True)
class Violation:
    """Rows that break ``constraint`` (after run-1 exists), and what the caller is told."""

    constraint: str
    write: Callable[[Session], None]
    error: type[DuplicateError]
    message: str


VIOLATIONS = [
    Violation(
        "pk_training_runs",
        lambda session: add_run(session, "run-1"),
        RunAlreadyExistsError,
        "a run with this run_id already exists",
    ),
    Violation(
        "uq_training_runs_wandb_run_id",
        lambda session: add_run(session, "run-2", wandb_run_id="wandb-1"),
        DuplicateWandbRunIdError,
        "another run already has this wandb_run_id",
    ),
    Violation(
        "uq_run_objectives_run_id_objective_name",
        duplicate_objective,
        ObjectiveAlreadyExistsError,
        "the run already has an objective of this name",
    ),
    Violation(
        "uq_run_tags_run_id_key",
        duplicate_tag,
        DuplicateError,
        "the run already has a tag with this key",
    ),
    Violation(
        "uq_history_metrics_name",
        duplicate_metric_name,
        DuplicateError,
        "this history metric name is already registered",
    ),
    Violation(
        "pk_run_history",
        duplicate_history,
        DuplicateError,
        "the run already has a history of this metric",
    ),
    Violation(
        "uq_run_history_key_metrics_run_id_step",
        duplicate_key_metrics,
        DuplicateError,
        "the run already has key metrics at this step",
    ),
    # a surrogate key listed as generic: the message names the constraint
    Violation(
        "pk_run_tags",
        duplicate_tag_id,
        DuplicateError,
        "the write would duplicate a row that must be unique (pk_run_tags)",
    ),
]


def test_every_mapped_constraint_is_provoked_below() -> None:
    provoked = {violation.constraint for violation in VIOLATIONS}
    assert set(DUPLICATE_ERRORS) <= provoked
    assert provoked - set(DUPLICATE_ERRORS) <= set(GENERIC_DUPLICATES)


@pytest.mark.parametrize("violation", VIOLATIONS, ids=lambda violation: violation.constraint)
def test_a_duplicate_past_the_checks_raises_its_constraints_error(
    db: TrainingDB, violation: Violation
) -> None:
    db.insert_run("run-1", "wandb-1", {})
    with pytest.raises(DuplicateError) as raised:
        db.write(violation.write)
    assert type(raised.value) is violation.error
    assert str(raised.value) == violation.message
    assert isinstance(raised.value.__cause__, sa.exc.IntegrityError)
    # the transaction was rolled back whole: run-1 alone, untouched
    assert [run["run_id"] for run in db.query_runs()] == ["run-1"]


def test_a_constraint_no_table_maps_is_a_generic_duplicate(db: TrainingDB) -> None:
    """A unique constraint the models do not have (a table added without an entry) is never
    reported as a duplicate run: the generic error names the constraint, or on SQLite (whose
    message has no constraint names) its table and column."""

    def duplicate_scratch_rows(session: Session) -> None:
        session.execute(
            sa.text(
                "CREATE TABLE scratch_things (name VARCHAR(20), "
                "CONSTRAINT uq_scratch_things_name UNIQUE (name))"
            )
        )
        for _ in range(2):
            session.execute(sa.text("INSERT INTO scratch_things (name) VALUES ('x')"))

    with pytest.raises(DuplicateError) as raised:
        db.write(duplicate_scratch_rows)
    assert type(raised.value) is DuplicateError
    message = str(raised.value)
    assert OLD_CATCH_ALL not in message
    named = (
        "uq_scratch_things_name"
        if db.engine.dialect.name == "postgresql"
        else "scratch_things(name)"
    )
    assert message == f"the write would duplicate a row that must be unique ({named})"


def test_an_unmapped_expression_index_is_named_on_both_backends(db: TrainingDB) -> None:
    """SQLite names a unique index on an expression by its name (it has no columns to name)."""

    def duplicate_lowercase_names(session: Session) -> None:
        session.execute(sa.text("CREATE TABLE scratch_names (name VARCHAR(20))"))
        session.execute(
            sa.text("CREATE UNIQUE INDEX ux_scratch_names_lower ON scratch_names (lower(name))")
        )
        for name in ("Ada", "ADA"):
            session.execute(sa.text("INSERT INTO scratch_names VALUES (:name)"), {"name": name})

    with pytest.raises(DuplicateError) as raised:
        db.write(duplicate_lowercase_names)
    assert type(raised.value) is DuplicateError
    assert str(raised.value) == (
        "the write would duplicate a row that must be unique (ux_scratch_names_lower)"
    )


def test_other_integrity_errors_are_not_duplicates(db: TrainingDB) -> None:
    """A broken CHECK constraint is a refused write, not a duplicate."""

    def bad_status(session: Session) -> None:
        session.execute(sa.insert(TrainingRun).values(run_id="run-x", status="exploded"))

    with pytest.raises(DatabaseWriteError, match="the database rejected the write"):
        db.write(bad_status)
