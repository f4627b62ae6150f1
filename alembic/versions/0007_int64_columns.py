"""64-bit integers on PostgreSQL: the integer columns of ``training_runs`` that hold user values.

The integer extracted hyperparameters (``batch_size`` ... ``num_generations``) and
``total_training_steps`` were ``INTEGER``, so on PostgreSQL a seed of 2**31 failed the whole
``insert_run`` call while SQLite accepted it. They become ``BIGINT``. A whole number beyond 64
bits is left out of its column by the code (it stays exact in ``config_json`` or
``final_metrics_json``).

Which integer columns change, and why only these:

* widened: every column that holds a user's value — the eleven integer extracted columns
  and ``total_training_steps``.
* kept ``INTEGER``: the surrogate keys ``run_objectives.id``, ``run_tags.id``,
  ``history_metrics.id`` and ``run_history_key_metrics.id``, and the foreign key
  ``run_history.metric_id``. The database hands these numbers out; they are never a user's
  value. Also kept: ``run_history.num_points``, the number of points in one series. One
  ``log_history`` call holds every one of those points in memory as a Python object, so the
  count stays far below 2**31. Widening any of them would rewrite ``run_history`` or
  ``run_history_key_metrics``, the largest tables, under an exclusive lock, while every
  training process waits in ``init_db()``. (``first_step``, ``last_step`` and ``step`` have
  been ``BIGINT`` since 0004.)

SQLite: nothing to do. Its INTEGER columns hold 64 bits already, and a batch rebuild of
``training_runs`` only to rename the declared type would copy every run for nothing. The
models declare these columns as ``types.Int64``: BIGINT on PostgreSQL, INTEGER on SQLite.

PostgreSQL: one ``ALTER TABLE`` for all twelve columns, so the table is rewritten once rather
than twelve times.

Downgrade on PostgreSQL narrows them back to ``INTEGER``. A value outside the 32-bit range
would make that ALTER fail, so the downgrade first refuses, naming the columns that hold such
values (``refuse_narrowing``). When data loss is allowed, those values are set to NULL; the
extracted ones remain in ``config_json``. On SQLite the downgrade does nothing either:
revision 0006 stores the same 64-bit values there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.schema.migrations import refuse_narrowing

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _set_types(sql_type: str) -> None:
    """One ALTER TABLE for every column: PostgreSQL rewrites the table once."""
    changes = ", ".join(f"ALTER COLUMN {name} TYPE {sql_type}" for name in USER_INTEGER_COLUMNS)
    op.execute(f"ALTER TABLE training_runs {changes}")


def upgrade() -> None:
    if _on_postgresql():
        _set_types("BIGINT")


def downgrade() -> None:
    if not _on_postgresql():
        return
    refuse_narrowing(revision, "training_runs", USER_INTEGER_COLUMNS, INT32_MIN, INT32_MAX)
    # Reached with values that do not fit only when data loss was allowed: they become NULL.
    runs = sa.table(
        "training_runs", *(sa.column(name, sa.BigInteger()) for name in USER_INTEGER_COLUMNS)
    )
    fits = {name: runs.c[name].between(INT32_MIN, INT32_MAX) for name in USER_INTEGER_COLUMNS}
    op.execute(
        sa.update(runs)
        .where(sa.or_(*(sa.not_(fit) for fit in fits.values())))
        .values({name: sa.case((fit, runs.c[name])) for name, fit in fits.items()})
    )
    _set_types("INTEGER")
