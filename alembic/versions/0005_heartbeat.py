"""Heartbeats: ``training_runs.last_heartbeat_at``, for finding runs that died silently.

A running run records a heartbeat every few minutes; ``mark_stale_runs`` turns running runs
whose last sign of life (the heartbeat, else ``started_at``) is too old into ``crashed``.

No index on the column: the stale-run query selects ``status = 'running'`` (indexed, and
few rows) and compares a COALESCE over two columns, which a single-column index would not
serve, while every heartbeat would pay for updating it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.core.types import UTCDateTime
from training_db.schema.migrations import refuse_data_loss

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("last_heartbeat_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    refuse_data_loss(revision, columns={"training_runs": ["last_heartbeat_at"]})
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("last_heartbeat_at")
