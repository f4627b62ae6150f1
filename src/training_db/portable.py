"""The dialect-specific SQL, in one place: JSON value extraction and upserts.

Everything else in the package is dialect-neutral. Values always travel as bound
parameters, JSON paths included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

# SQLite's json_type() names for each JSON kind we compare on.
_SQLITE_NUMBER_TYPES = ("integer", "real")
_SQLITE_BOOLEAN_TYPES = ("true", "false")


def sqlite_json_path(keys: Sequence[str]) -> str:
    """``['training', 'batch_size']`` → ``$."training"."batch_size"``; digits index arrays."""
    parts = ["$"]
    for key in keys:
        if '"' in key:
            raise ValueError(f"JSON key {key!r} must not contain a double quote")
        parts.append(f"[{key}]" if key.isdigit() else f'."{key}"')
    return "".join(parts)


def _pg_path(keys: Sequence[str]) -> Any:
    return sa.literal(list(keys), postgresql.ARRAY(sa.Text()))


def json_number(dialect: str, column: Any, keys: Sequence[str]) -> ColumnElement[float]:
    """The number at ``keys`` inside a JSON column, or NULL when it is absent or not a number."""
    if dialect == "postgresql":
        path = _pg_path(keys)
        return sa.case(
            (
                sa.func.jsonb_typeof(column.op("#>", return_type=postgresql.JSONB())(path))
                == "number",
                sa.cast(column.op("#>>", return_type=sa.Text())(path), sa.Double()),
            ),
            else_=sa.null(),
        )
    sqlite_path = sqlite_json_path(keys)
    return sa.case(
        (
            sa.func.json_type(column, sqlite_path).in_(_SQLITE_NUMBER_TYPES),
            sa.func.json_extract(column, sqlite_path),
        ),
        else_=sa.null(),
    )


def json_string(dialect: str, column: Any, keys: Sequence[str]) -> ColumnElement[str]:
    """The string at ``keys`` inside a JSON column, or NULL when it is absent or not a string."""
    if dialect == "postgresql":
        path = _pg_path(keys)
        return sa.case(
            (
                sa.func.jsonb_typeof(column.op("#>", return_type=postgresql.JSONB())(path))
                == "string",
                column.op("#>>", return_type=sa.Text())(path),
            ),
            else_=sa.null(),
        )
    sqlite_path = sqlite_json_path(keys)
    return sa.case(
        (
            sa.func.json_type(column, sqlite_path) == "text",
            sa.func.json_extract(column, sqlite_path),
        ),
        else_=sa.null(),
    )


def json_boolean_text(dialect: str, column: Any, keys: Sequence[str]) -> ColumnElement[str]:
    """``'true'`` / ``'false'`` for a JSON boolean at ``keys``, else NULL."""
    if dialect == "postgresql":
        path = _pg_path(keys)
        return sa.case(
            (
                sa.func.jsonb_typeof(column.op("#>", return_type=postgresql.JSONB())(path))
                == "boolean",
                column.op("#>>", return_type=sa.Text())(path),
            ),
            else_=sa.null(),
        )
    sqlite_path = sqlite_json_path(keys)
    kind = sa.func.json_type(column, sqlite_path)
    return sa.case((kind.in_(_SQLITE_BOOLEAN_TYPES), kind), else_=sa.null())


def json_is_null(dialect: str, column: Any, keys: Sequence[str]) -> ColumnElement[bool]:
    """True when the value at ``keys`` is absent or JSON null."""
    if dialect == "postgresql":
        path = _pg_path(keys)
        return sa.or_(
            column.op("#>", return_type=postgresql.JSONB())(path).is_(None),
            sa.func.jsonb_typeof(column.op("#>", return_type=postgresql.JSONB())(path)) == "null",
        )
    sqlite_path = sqlite_json_path(keys)
    return sa.func.json_type(column, sqlite_path).is_(None) | (
        sa.func.json_type(column, sqlite_path) == "null"
    )


def upsert(
    session: Session,
    table: Table,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """Insert a row, or update ``update_columns`` of the row with the same conflict key."""
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        pg_insert = postgresql.insert(table).values(**values)
        statement = pg_insert.on_conflict_do_update(
            index_elements=list(conflict_columns),
            set_={name: pg_insert.excluded[name] for name in update_columns},
        )
    elif dialect == "sqlite":
        lite_insert = sqlite.insert(table).values(**values)
        statement = lite_insert.on_conflict_do_update(
            index_elements=list(conflict_columns),
            set_={name: lite_insert.excluded[name] for name in update_columns},
        )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    session.execute(statement)
