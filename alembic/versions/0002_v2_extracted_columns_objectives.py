"""v2: the rest of the 20 extracted columns, query indexes, and run_objectives.

Existing runs get the new extracted columns backfilled from their config_json, by the
extraction rules of these columns as this revision froze them (below): the package's live
rules (``training_db.schema.extraction``) may change later without changing what this
revision does when it replays.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from training_db.core.types import JSONDocument
from training_db.schema.migrations import refuse_data_loss

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_EXTRACTED_COLUMNS: dict[str, sa.types.TypeEngine[object]] = {
    "gradient_accumulation_steps": sa.Integer(),
    "model_name": sa.String(),
    "optimizer": sa.String(),
    "lr_scheduler": sa.String(),
    "warmup_steps": sa.Integer(),
    "weight_decay": sa.Double(),
    "max_grad_norm": sa.Double(),
    "num_epochs": sa.Integer(),
    "max_steps": sa.Integer(),
    "seed": sa.Integer(),
    "lora_rank": sa.Integer(),
    "num_generations": sa.Integer(),
    "temperature": sa.Double(),
}
SUMMARY_COLUMNS: dict[str, sa.types.TypeEngine[object]] = {
    "final_loss": sa.Double(),
    "total_training_steps": sa.Integer(),
}
RUN_INDEXES = ("status", "gradient_method", "created_at", "host")


# --- the extraction rules of the v2 columns, frozen -------------------------------------------
# Copied from the package's extraction rules as they stood when 0007 was the head, so that
# this revision replays the same way whatever the package does later: never import them.
# Only the columns this revision adds are backfilled (the v1 code filled the v1 columns).
# One deliberate difference: the integer bound is the column's as 0002 creates it (below).

EXTRACTION_RULES: dict[str, tuple[tuple[str, ...], type[int] | type[float] | type[str]]] = {
    "gradient_accumulation_steps": (("gradient_accumulation_steps",), int),
    "model_name": (("model_name", "base_model", "model_name_or_path"), str),
    "optimizer": (("optimizer", "optim"), str),
    "lr_scheduler": (("lr_scheduler", "lr_scheduler_type", "scheduler"), str),
    "warmup_steps": (("warmup_steps",), int),
    "weight_decay": (("weight_decay",), float),
    "max_grad_norm": (("max_grad_norm", "grad_clip"), float),
    "num_epochs": (("num_epochs", "num_train_epochs", "epochs"), int),
    "max_steps": (("max_steps",), int),
    "seed": (("seed",), int),
    "lora_rank": (("lora_rank", "lora_r"), int),
    "num_generations": (("num_generations",), int),
    "temperature": (("temperature",), float),
}
# The INTEGER columns this revision adds hold 32 bits on PostgreSQL (revision 0007 widens
# them) and 64 on SQLite. A whole number that does not fit is left out of its column (it
# stays exact in config_json): the live rule's 64-bit bound made the UPDATE, and so the
# whole upgrade of a v1 database on PostgreSQL, fail on a seed of 2**31.
INTEGER_BITS = {"postgresql": 32}


def _extract(config: Mapping[str, Any], name: str, integer_bits: int) -> Any:
    """One column's value: its keys in config['training'], the top level, then the other
    top-level sections in order; the first usable scalar wins. None when there is none."""
    keys, kind = EXTRACTION_RULES[name]
    for section in _sections_in_lookup_order(config):
        for key in keys:
            if key in section:
                value = _convert(section[key], kind, integer_bits)
                if value is not None:
                    return value
    return None


def _sections_in_lookup_order(config: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    training = config.get("training")
    if isinstance(training, Mapping):
        yield training
    yield config
    for key, section in config.items():
        if key != "training" and isinstance(section, Mapping):
            yield section


def _convert(value: Any, kind: type, integer_bits: int) -> Any:
    """A decoded JSON value as the column's type, or None when it is not usable as one."""
    if value is None or isinstance(value, (Mapping, list)):
        return None
    try:
        if kind is int:
            return _to_int(value, integer_bits)
        if kind is float:
            if isinstance(value, bool):
                return None
            number = float(value)
            return number if math.isfinite(number) else None
        return str(value) if not isinstance(value, bool) else str(value).lower()
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None


def _to_int(value: Any, integer_bits: int) -> int | None:
    """A whole number that fits the column, or None; exact for ints and their text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            as_float = float(value)
            number = int(as_float) if as_float.is_integer() else None
    else:
        number = int(value)
    limit = 2 ** (integer_bits - 1)
    return number if number is not None and -limit <= number < limit else None


def backfill_extracted_columns(connection: sa.Connection, names: Iterable[str]) -> None:
    """Fill ``names`` of existing runs from their config_json, where they are NULL."""
    names = list(names)
    integer_bits = INTEGER_BITS.get(connection.dialect.name, 64)
    runs = sa.table(
        "training_runs",
        sa.column("run_id", sa.String()),
        sa.column("config_json", JSONDocument()),  # decodes NaN, large floats, NUL strings
        *(sa.column(name) for name in names),
    )
    rows = connection.execute(sa.select(runs).where(runs.c.config_json.is_not(None))).all()
    for row in rows:
        config = row.config_json
        if not isinstance(config, Mapping):
            continue
        values = {
            name: value
            for name in names
            if getattr(row, name) is None
            and (value := _extract(config, name, integer_bits)) is not None
        }
        if values:
            connection.execute(sa.update(runs).where(runs.c.run_id == row.run_id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        for name, type_ in {**NEW_EXTRACTED_COLUMNS, **SUMMARY_COLUMNS}.items():
            batch.add_column(sa.Column(name, type_, nullable=True))
        for column in RUN_INDEXES:
            batch.create_index(op.f(f"ix_training_runs_{column}"), [column])

    op.create_table(
        "run_objectives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("objective_name", sa.String(), nullable=False),
        sa.Column("objective_alias", sa.String(), nullable=True),
        sa.Column("uniprot", sa.String(), nullable=True),
        sa.Column("weight", sa.Double(), nullable=True),
        sa.Column("direction", sa.String(), nullable=True),
        sa.Column("raw_mean", sa.Double(), nullable=True),
        sa.Column("normalized_mean", sa.Double(), nullable=True),
        sa.Column("raw_std", sa.Double(), nullable=True),
        sa.Column("normalized_std", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "direction IS NULL OR direction IN ('maximize', 'minimize')",
            name=op.f("ck_run_objectives_direction"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["training_runs.run_id"],
            name=op.f("fk_run_objectives_run_id_training_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_objectives")),
        sa.UniqueConstraint(
            "run_id", "objective_name", name=op.f("uq_run_objectives_run_id_objective_name")
        ),
    )
    op.create_index(
        "ix_run_objectives_objective_name_raw_mean",
        "run_objectives",
        ["objective_name", "raw_mean"],
    )

    # Offline (`alembic upgrade --sql`) there are no rows to read: the backfill is data work.
    if not op.get_context().as_sql:
        backfill_extracted_columns(op.get_bind(), NEW_EXTRACTED_COLUMNS)


def downgrade() -> None:
    # The extracted columns come back from config_json (the backfill above) on the way up;
    # objectives and the summary columns would not.
    refuse_data_loss(
        revision, tables=["run_objectives"], columns={"training_runs": [*SUMMARY_COLUMNS]}
    )
    op.drop_index("ix_run_objectives_objective_name_raw_mean", table_name="run_objectives")
    op.drop_table("run_objectives")
    with op.batch_alter_table("training_runs") as batch:
        for column in RUN_INDEXES:
            batch.drop_index(op.f(f"ix_training_runs_{column}"))
        for name in reversed([*NEW_EXTRACTED_COLUMNS, *SUMMARY_COLUMNS]):
            batch.drop_column(name)
