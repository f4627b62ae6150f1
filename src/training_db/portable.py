"""The dialect-specific SQL, in one place: JSON value extraction and upserts.

Everything else in the package is dialect-neutral. Values always travel as bound
parameters, JSON paths included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from training_db.errors import InvalidArgumentError

# SQLite's json_type() names for each JSON kind we compare on.
_SQLITE_NUMBER_TYPES = ("integer", "real")
_SQLITE_BOOLEAN_TYPES = ("true", "false")


def sqlite_json_path(keys: Sequence[str]) -> str:
    """``['training', 'batch_size']`` → ``$."training"."batch_size"``; digits index arrays."""
    parts = ["$"]
    for key in keys:
        if '"' in key:
            raise InvalidArgumentError(f"JSON key {key!r} must not contain a double quote")
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
    table: FromClause,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """Insert a row, or update ``update_columns`` of the row with the same conflict key."""
    upsert_many(session, table, [values], conflict_columns, update_columns)


def upsert_many(
    session: Session,
    table: FromClause,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """Insert rows, updating ``update_columns`` of rows whose conflict key exists already."""
    if not rows:
        return
    statement = _dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict_columns),
        set_={name: statement.excluded[name] for name in update_columns},
    )
    _execute_rows(session, statement, rows)


def insert_ignoring_conflicts(
    session: Session,
    table: FromClause,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
) -> None:
    """Insert rows, skipping those whose conflict key exists already (a racing writer's)."""
    if not rows:
        return
    statement = _dialect_insert(session, table).on_conflict_do_nothing(
        index_elements=list(conflict_columns)
    )
    _execute_rows(session, statement, rows)


def _execute_rows(session: Session, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    if len(rows) == 1:
        session.execute(statement.values(**rows[0]))
    else:
        session.execute(statement, list(rows))


def _dialect_insert(session: Session, table: FromClause) -> Any:
    """The dialect's INSERT construct, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    target = cast(Table, table)  # a mapped class's __table__ is typed as a FromClause
    if dialect == "postgresql":
        return postgresql.insert(target)
    if dialect == "sqlite":
        return sqlite.insert(target)
    raise NotImplementedError(f"upsert is not implemented for {dialect}")  # pragma: no cover
