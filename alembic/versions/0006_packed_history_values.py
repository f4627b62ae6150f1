"""Packed history values and step bitmaps in ``run_history``.

* ``kind`` may be ``float_bp`` or ``int_bp``: a series of 16 or more numbers is stored as
  byte planes, the repetitive high planes (sign, exponent, leading mantissa bits) deflated
  and the noisy low planes as they are (the package's ``pack_planes``): the same
  numbers, bit for bit, in ~17% less space on noisy float64 series and about half on
  float32-exact ones (a ``torch`` loss's ``.item()``).
* ``step_data`` may be a bitmap over first..last step (tag ``B``), for steps logged with a
  few gaps: 22 bytes for 100 steps instead of ~40.

Rows written before keep their encodings and read as before; the upgrade only widens the
CHECK constraint on ``kind``. The downgrade rewrites packed values and step bitmaps in the
encodings revision 0005 reads (nothing is lost), then narrows the constraint again. The two
decoders it needs are copied below as they were, so that later changes to the package's
codec cannot change this downgrade.

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


# --- the decoders this downgrade needs, frozen -------------------------------------------------
# Copied from the package's history codec (``decode_steps``' bitmap branch, ``unpack_planes``)
# as this revision introduced them. Only bitmaps are decoded here: steps in the range ("R")
# and deltas ("Z") encodings are what 0005 reads already, and stay byte for byte. That is why
# the wrap-around the package's decoder later gained for deltas of steps more than 2**63
# apart does not concern this copy: no "Z" row is decoded, and a bitmap's steps lie between
# its first and last step, both 64-bit, so its deltas (the first step, then gaps between 1
# and the bitmap's length in bits, which a row could never store near 2**63 of) fit int64
# without wrapping.

_BYTE_FLAGS = tuple(bytes((byte >> bit) & 1 for bit in range(8)) for byte in range(256))


def _bitmap_steps(step_data: bytes) -> list[int]:
    """The steps of a ``B`` bitmap: its first step (int64), then one bit per step after it."""
    body = step_data[1:]
    if len(body) < 8:
        raise ValueError("corrupt history steps: a bitmap without its first step")
    (first,) = struct.unpack_from("<q", body)
    flags = b"".join(_BYTE_FLAGS[byte] for byte in body[8:])
    return list(itertools.compress(itertools.count(first), flags))


def _unpack_planes(data: bytes) -> bytes:
    """The little-endian 8-byte numbers stored as byte planes (``float_bp``/``int_bp``):
    a mask byte (bit j: plane j is deflated), the raw-deflate stream of the deflated planes,
    then the other planes; planes in ascending j within each part."""
    mask = data[0] if data else 0
    deflated = [byte for byte in range(8) if mask >> byte & 1]
    if not deflated:
        raise ValueError("corrupt history values: no packed byte planes")
    decompressor = zlib.decompressobj(-15)
    try:
        high = decompressor.decompress(data[1:])
    except zlib.error as exc:
        raise ValueError(f"corrupt history values: {exc}") from None
    low = decompressor.unused_data
    count = len(high) // len(deflated)
    if (
        not decompressor.eof
        or not high
        or len(high) != len(deflated) * count
        or len(low) != (8 - len(deflated)) * count
    ):
        raise ValueError("corrupt history values: byte planes missing or of unequal length")
    order = deflated + [byte for byte in range(8) if not mask >> byte & 1]
    planes = high + low
    numbers = bytearray(8 * count)
    for position, byte in enumerate(order):
        numbers[byte::8] = planes[position * count : (position + 1) * count]
    return bytes(numbers)


def _plain_steps(step_data: bytes) -> bytes:
    """Steps in the deltas encoding of revision 0005 (a bitmap is turned into deltas)."""
    if not step_data.startswith(b"B"):
        return step_data
    steps = _bitmap_steps(step_data)
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
                        _unpack_planes(bytes(row.value_data))
                        if row.kind.endswith("_bp")
                        else row.value_data
                    ),
                }
                for row in rows
            ],
        )
        after = (rows[-1].run_id, rows[-1].metric_id)
    _replace_kind_check(PLAIN_KINDS)
