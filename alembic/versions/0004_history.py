"""v2.1: W&B history — metric-name dictionary, per-(run, metric) arrays, per-step key metrics.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.core.types import JSONDocument, UTCDateTime
from training_db.schema.migrations import refuse_data_loss

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "history_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_metrics")),
        sa.UniqueConstraint("name", name=op.f("uq_history_metrics_name")),
    )
    op.create_table(
        "run_history",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("num_points", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("step_data", sa.LargeBinary(), nullable=False),
        sa.Column("value_data", sa.LargeBinary(), nullable=True),
        sa.Column("value_json", JSONDocument(), nullable=True),
        sa.CheckConstraint("kind IN ('float', 'int', 'json')", name=op.f("ck_run_history_kind")),
        sa.ForeignKeyConstraint(
            ["metric_id"],
            ["history_metrics.id"],
            name=op.f("fk_run_history_metric_id_history_metrics"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["training_runs.run_id"],
            name=op.f("fk_run_history_run_id_training_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "metric_id", name=op.f("pk_run_history")),
    )
    op.create_index("ix_run_history_metric_id", "run_history", ["metric_id"])
    op.create_table(
        "run_history_key_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("loss", sa.Double(), nullable=True),
        sa.Column("grad_norm", sa.Double(), nullable=True),
        sa.Column("learning_rate", sa.Double(), nullable=True),
        sa.Column("objective_scores_json", JSONDocument(), nullable=True),
        sa.Column("timestamp", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["training_runs.run_id"],
            name=op.f("fk_run_history_key_metrics_run_id_training_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_history_key_metrics")),
        sa.UniqueConstraint("run_id", "step", name=op.f("uq_run_history_key_metrics_run_id_step")),
    )


def downgrade() -> None:
    refuse_data_loss(revision, tables=["run_history_key_metrics", "run_history", "history_metrics"])
    op.drop_table("run_history_key_metrics")
    op.drop_index("ix_run_history_metric_id", table_name="run_history")
    op.drop_table("run_history")
    op.drop_table("history_metrics")
