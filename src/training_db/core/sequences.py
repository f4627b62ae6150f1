"""PostgreSQL sequences after rows were written with explicit primary keys.

Copying a database (or adopting an old one) inserts rows with the ids they already had; the
``SERIAL`` sequence behind each integer id does not see those inserts, so the next ordinary
insert would be handed id 1 and collide. SQLite needs nothing: it takes ``max(rowid) + 1``.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import Connection, Table


def reset_sequences(connection: Connection, tables: Iterable[Table]) -> None:
    """Point each table's id sequence at ``max(id)`` so the next insert gets ``max(id) + 1``.

    Only single-column integer primary keys have a sequence; other tables are left alone. An
    empty table's sequence restarts at 1.
    """
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        key = list(table.primary_key.columns)
        if len(key) != 1 or not isinstance(key[0].type, sa.Integer):
            continue
        column = key[0]
        sequence = connection.execute(
            sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table.fullname, "column": column.name},
        ).scalar_one_or_none()
        if sequence is None:
            continue
        highest = connection.execute(sa.select(sa.func.max(table.c[column.name]))).scalar()
        # setval(seq, n, is_called): with is_called false the next value is n itself.
        connection.execute(
            sa.text("SELECT setval(:sequence, :value, :is_called)"),
            {"sequence": sequence, "value": highest or 1, "is_called": highest is not None},
        )
