"""v2: the rest of the 20 extracted columns, query indexes, and run_objectives.

Existing runs get the new extracted columns backfilled from their config_json.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.schema.migrations import refuse_data_loss
from training_db.store.extraction import backfill_extracted_columns

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
