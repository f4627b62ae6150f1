"""v1: the training_runs table as the first hand-written module created it.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.core.types import JSONDocument, UTCDateTime
from training_db.schema.migrations import refuse_data_loss

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("wandb_run_id", sa.String(), nullable=True),
        sa.Column("wandb_url", sa.String(), nullable=True),
        sa.Column("run_name", sa.String(), nullable=True),
        sa.Column("chain_of_custody_id", sa.String(), nullable=True),
        sa.Column("config_file_path", sa.String(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("instance_id", sa.String(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("learning_rate", sa.Double(), nullable=True),
        sa.Column("beta", sa.Double(), nullable=True),
        sa.Column("gradient_method", sa.String(), nullable=True),
        sa.Column("num_gpus", sa.Integer(), nullable=True),
        sa.Column("num_objectives", sa.Integer(), nullable=True),
        sa.Column("num_scaffolds", sa.Integer(), nullable=True),
        sa.Column("config_json", JSONDocument(), nullable=True),
        sa.Column("final_metrics_json", JSONDocument(), nullable=True),
        sa.Column("blog_post_url", sa.String(), nullable=True),
        sa.Column("conversation_s3_key", sa.String(), nullable=True),
        sa.Column("crash_report_s3_key", sa.String(), nullable=True),
        sa.Column("error_log_s3_key", sa.String(), nullable=True),
        sa.Column("crash_analysis_s3_key", sa.String(), nullable=True),
        sa.Column(
            "created_at_db",
            UTCDateTime(),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at_db",
            UTCDateTime(),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('launched', 'running', 'completed', 'failed', 'crashed')",
            name=op.f("ck_training_runs_status"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_training_runs")),
        sa.UniqueConstraint("wandb_run_id", name=op.f("uq_training_runs_wandb_run_id")),
    )


def downgrade() -> None:
    refuse_data_loss(revision, tables=["training_runs"])
    op.drop_table("training_runs")
