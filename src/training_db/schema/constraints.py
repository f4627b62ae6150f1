"""Which error a duplicate raises, by the unique constraint it broke: one table for all.

The repository checks for duplicates before it writes and raises the precise error (naming
the run, the id); what slips past those checks — two writers racing for the same id — is
caught by the database's own unique constraints and translated here, by constraint *name*
(never by the wording of a driver's message). The naming convention in `schema.base` makes
the names predictable; PostgreSQL reports the name, SQLite the table and columns, which
`constraint_name` maps back to the name through ``Base.metadata``.

Every unique constraint and primary key of the models is in `DUPLICATE_ERRORS` or, for the
surrogate keys the database hands out, in `GENERIC_DUPLICATES`; a test keeps it so. A
violation of a constraint in neither (a table added without an entry here, a legacy name)
raises the generic `DuplicateError` naming the constraint.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Final, NamedTuple

from sqlalchemy import Index, PrimaryKeyConstraint, UniqueConstraint

from training_db.core.errors import (
    DuplicateError,
    DuplicateWandbRunIdError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    UniqueViolation,
    duplicate_error,
)
from training_db.schema.base import Base


class Duplicate(NamedTuple):
    """The error a constraint's violation raises, and its message."""

    error: type[DuplicateError]
    message: str


DUPLICATE_ERRORS: Final[Mapping[str, Duplicate]] = {
    "pk_training_runs": Duplicate(RunAlreadyExistsError, "a run with this run_id already exists"),
    "uq_training_runs_wandb_run_id": Duplicate(
        DuplicateWandbRunIdError, "another run already has this wandb_run_id"
    ),
    "uq_run_objectives_run_id_objective_name": Duplicate(
        ObjectiveAlreadyExistsError, "the run already has an objective of this name"
    ),
    "uq_run_tags_run_id_key": Duplicate(DuplicateError, "the run already has a tag with this key"),
    "uq_history_metrics_name": Duplicate(
        DuplicateError, "this history metric name is already registered"
    ),
    "pk_run_history": Duplicate(DuplicateError, "the run already has a history of this metric"),
    "uq_run_history_key_metrics_run_id_step": Duplicate(
        DuplicateError, "the run already has key metrics at this step"
    ),
}

# Surrogate keys the database hands out: a duplicate means a row was written with an
# explicit id (a copy into a table that has rows, say). The generic message names them.
GENERIC_DUPLICATES: Final = frozenset(
    {"pk_run_objectives", "pk_run_tags", "pk_history_metrics", "pk_run_history_key_metrics"}
)


def constraint_error(violation: UniqueViolation) -> DuplicateError | None:
    """The error ``violation`` means; None for a constraint the models do not have.

    Passed to `training_db.core.errors.translated_errors` by ``Database``.
    """
    name = constraint_name(violation)
    if name is None:
        return None
    duplicate = DUPLICATE_ERRORS.get(name)
    if duplicate is None:
        return duplicate_error(UniqueViolation(constraint=name))
    return duplicate.error(duplicate.message)


def constraint_name(violation: UniqueViolation) -> str | None:
    """The name of the models' constraint ``violation`` is about, or None."""
    if violation.constraint is not None:
        return violation.constraint if violation.constraint in unique_constraints() else None
    if violation.table is None:
        return None
    return _names_by_columns().get((violation.table, frozenset(violation.columns)))


@cache
def unique_constraints() -> Mapping[str, tuple[str, tuple[str, ...]]]:
    """Every unique constraint, primary key and unique index of the models: name → (table,
    columns)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        uniques: list[UniqueConstraint | PrimaryKeyConstraint | Index] = [
            constraint
            for constraint in table.constraints
            if isinstance(constraint, (UniqueConstraint, PrimaryKeyConstraint))
        ]
        uniques += [index for index in table.indexes if index.unique]
        for unique in uniques:
            assert isinstance(unique.name, str), f"unnamed unique constraint on {table.name}"
            found[unique.name] = (table.name, tuple(column.name for column in unique.columns))
    return found


@cache
def _names_by_columns() -> Mapping[tuple[str, frozenset[str]], str]:
    """SQLite names a violated constraint by its table and columns: those, back to the name."""
    return {
        (table, frozenset(columns)): name for name, (table, columns) in unique_constraints().items()
    }
