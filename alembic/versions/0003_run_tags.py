"""run_tags: free metadata on runs, one row per key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.core.types import JSONDocument
from training_db.schema.migrations import refuse_data_loss

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", JSONDocument(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["training_runs.run_id"],
            name=op.f("fk_run_tags_run_id_training_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_tags")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_run_tags_run_id_key")),
    )
    op.create_index("ix_run_tags_key", "run_tags", ["key"])


def downgrade() -> None:
    refuse_data_loss(revision, tables=["run_tags"])
    op.drop_index("ix_run_tags_key", table_name="run_tags")
    op.drop_table("run_tags")
