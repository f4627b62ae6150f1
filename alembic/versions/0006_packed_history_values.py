"""Packed history values and step bitmaps in ``run_history``.

* ``kind`` may be ``float_bp`` or ``int_bp``: a series of 16 or more numbers is stored as
  byte planes, the repetitive high planes (sign, exponent, leading mantissa bits) deflated
  and the noisy low planes as they are (``training_db.store.history.pack_planes``): the same
  numbers, bit for bit, in ~17% less space on noisy float64 series and about half on
  float32-exact ones (a ``torch`` loss's ``.item()``).
* ``step_data`` may be a bitmap over first..last step (tag ``B``), for steps logged with a
  few gaps: 22 bytes for 100 steps instead of ~40.

Rows written before keep their encodings and read as before; the upgrade only widens the
CHECK constraint on ``kind``. The downgrade rewrites packed values and step bitmaps in the
encodings revision 0005 reads (nothing is lost), then narrows the constraint again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from training_db.store.history import decode_steps, unpack_planes

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAIN_KINDS = "kind IN ('float', 'int', 'json')"
PACKED_KINDS = "kind IN ('float', 'int', 'json', 'float_bp', 'int_bp')"
# Rows rewritten per statement batch by the downgrade.
BATCH = 1_000


def _replace_kind_check(condition: str) -> None:
    with op.batch_alter_table("run_history") as batch:
        batch.drop_constraint(op.f("ck_run_history_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_run_history_kind"), sa.text(condition))


def upgrade() -> None:
    _replace_kind_check(PACKED_KINDS)


def _plain_steps(step_data: bytes) -> bytes:
    """Steps in the deltas encoding of revision 0005 (a bitmap is turned into deltas)."""
    if not step_data.startswith(b"B"):
        return step_data
    steps = decode_steps(step_data)
    deltas = [steps[0], *(b - a for a, b in itertools.pairwise(steps))]
    return b"Z" + zlib.compress(struct.pack(f"<{len(deltas)}q", *deltas), 6)


def downgrade() -> None:
    history = sa.table(
        "run_history",
        sa.column("run_id", sa.String()),
        sa.column("metric_id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("step_data", sa.LargeBinary()),
        sa.column("value_data", sa.LargeBinary()),
    )
    new_encoding = sa.or_(
        history.c.kind.in_(("float_bp", "int_bp")),
        sa.func.substr(history.c.step_data, 1, 1) == sa.literal(b"B", sa.LargeBinary()),
    )
    rewrite = (
        sa.update(history)
        .where(
            history.c.run_id == sa.bindparam("b_run_id"),
            history.c.metric_id == sa.bindparam("b_metric_id"),
        )
        .values(
            kind=sa.bindparam("b_kind"),
            step_data=sa.bindparam("b_step_data"),
            value_data=sa.bindparam("b_value_data"),
        )
    )
    connection = op.get_bind()
    after: tuple[str, int] | None = None
    while True:  # in primary-key order, a batch at a time: memory stays flat
        query = sa.select(history).where(new_encoding)
        if after is not None:
            query = query.where(sa.tuple_(history.c.run_id, history.c.metric_id) > after)
        query = query.order_by(history.c.run_id, history.c.metric_id).limit(BATCH)
        rows = connection.execute(query).all()
        if not rows:
            break
        connection.execute(
            rewrite,
            [
                {
                    "b_run_id": row.run_id,
                    "b_metric_id": row.metric_id,
                    "b_kind": row.kind.removesuffix("_bp"),
                    "b_step_data": _plain_steps(bytes(row.step_data)),
                    "b_value_data": (
                        unpack_planes(bytes(row.value_data))
                        if row.kind.endswith("_bp")
                        else row.value_data
                    ),
                }
                for row in rows
            ],
        )
        after = (rows[-1].run_id, rows[-1].metric_id)
    _replace_kind_check(PLAIN_KINDS)
