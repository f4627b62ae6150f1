"""The dialect-specific SQL, in one place: JSON value extraction and upserts.

Everything else in the package is dialect-neutral. Values always travel as bound
parameters, JSON paths included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from training_db.core.errors import InvalidArgumentError

JsonPath = Sequence[str | int]
"""Steps into a JSON document, as `training_db.store.filters.parse_json_path` makes them.

A ``str`` step is an object key, an ``int`` step an array index (negative counts from the
end). Each step is exact on both backends: a key never selects an array element, an index
never selects an object member, and a step into a scalar or a missing value finds nothing.
"""

# SQLite's json_type() names for each JSON kind we compare on.
_SQLITE_NUMBER_TYPES = ("integer", "real")
_SQLITE_BOOLEAN_TYPES = ("true", "false")


def sqlite_json_path(path: JsonPath) -> str:
    """``['training', 0, -1]`` → ``$."training"[0][#-1]``: keys always quoted.

    SQLite before 3.45 compares a path's key with the key's text as stored in the document,
    escapes and all, and this package stores documents as ``json.dumps`` writes them (ASCII,
    ``\\u00b2`` for ``²``); so a key is written here in that same escaped form. Newer SQLite
    decodes the escapes on both sides, and finds it too.
    """
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]" if step >= 0 else f"[#{step}]")
        else:
            parts.append(f'."{_quotable(step, json.dumps(step)[1:-1])}"')
    return "".join(parts)


def postgresql_json_path(path: JsonPath) -> str:
    """``['training', 0, -1]`` → ``strict $."training"[0][last]``, a SQL/JSON path.

    Strict mode makes each step exact: a key on anything but an object, an index on
    anything but an array, or a missing member or element is an error, which the
    ``silent`` flag of `jsonb_path_query_first` turns into no value. The ``->`` operator is
    not exact: with an integer it returns a scalar itself (``'5'::jsonb -> 0`` is ``5``).
    """
    parts = ["strict $"]
    for step in path:
        if isinstance(step, int) and step >= 0:
            parts.append(f"[{step}]")
        elif isinstance(step, int):
            parts.append("[last]" if step == -1 else f"[last - {-step - 1}]")
        else:
            parts.append(f'."{_quotable(step, json.dumps(step, ensure_ascii=False)[1:-1])}"')
    return "".join(parts)


def _quotable(key: str, escaped: str) -> str:
    """``escaped`` (``key`` with JSON escapes), which may go between double quotes in a path.

    SQLite's path syntax has no escape for a double quote, so such a key cannot be
    addressed there; it is refused on both backends alike.
    """
    if '"' in key:
        raise InvalidArgumentError(f"JSON key {key!r} must not contain a double quote")
    return escaped


def _pg_value(column: Any, path: JsonPath) -> Any:
    """The JSONB value at ``path``, or NULL where the path leads nowhere."""
    if not path:
        return column
    return sa.func.jsonb_path_query_first(
        column,
        sa.cast(sa.literal(postgresql_json_path(path)), postgresql.JSONPATH()),
        sa.func.jsonb_build_object(),
        sa.true(),
        type_=postgresql.JSONB(),
    )


def _pg_text(value: Any) -> Any:
    """A JSONB scalar as text (``#>> '{}'``): a string unquoted, a number as written."""
    return value.op("#>>", return_type=sa.Text())(sa.literal([], postgresql.ARRAY(sa.Text())))


def json_number(dialect: str, column: Any, path: JsonPath) -> ColumnElement[float]:
    """The number at ``path`` as a 64-bit float, or NULL when it is absent or not a number.

    Both backends compare the same doubles: PostgreSQL's numeric and SQLite's integer
    would otherwise compare large integers differently.
    """
    if dialect == "postgresql":
        return sa.case(
            (
                sa.func.jsonb_typeof(_pg_value(column, path)) == "number",
                sa.cast(_pg_text(_pg_value(column, path)), sa.Double()),
            ),
            else_=sa.null(),
        )
    sqlite_path = sqlite_json_path(path)
    return sa.case(
        (
            sa.func.json_type(column, sqlite_path).in_(_SQLITE_NUMBER_TYPES),
            sa.cast(sa.func.json_extract(column, sqlite_path), sa.Double()),
        ),
        else_=sa.null(),
    )


def json_string(dialect: str, column: Any, path: JsonPath) -> ColumnElement[str]:
    """The string at ``path``, or NULL when it is absent or not a string.

    Ordered by code point on both backends: SQLite compares UTF-8 bytes, and PostgreSQL
    does too under the "C" collation, whatever the database's locale.
    """
    if dialect == "postgresql":
        return sa.case(
            (
                sa.func.jsonb_typeof(_pg_value(column, path)) == "string",
                _pg_text(_pg_value(column, path)),
            ),
            else_=sa.null(),
        ).collate("C")
    sqlite_path = sqlite_json_path(path)
    return sa.case(
        (
            sa.func.json_type(column, sqlite_path) == "text",
            sa.func.json_extract(column, sqlite_path),
        ),
        else_=sa.null(),
    )


def json_boolean_text(dialect: str, column: Any, path: JsonPath) -> ColumnElement[str]:
    """``'true'`` / ``'false'`` for a JSON boolean at ``path``, else NULL."""
    if dialect == "postgresql":
        return sa.case(
            (
                sa.func.jsonb_typeof(_pg_value(column, path)) == "boolean",
                _pg_text(_pg_value(column, path)),
            ),
            else_=sa.null(),
        )
    kind = sa.func.json_type(column, sqlite_json_path(path))
    return sa.case((kind.in_(_SQLITE_BOOLEAN_TYPES), kind), else_=sa.null())


def json_is_null(dialect: str, column: Any, path: JsonPath) -> ColumnElement[bool]:
    """True when the value at ``path`` is absent or JSON null."""
    if dialect == "postgresql":
        kind = sa.func.jsonb_typeof(_pg_value(column, path))
    else:
        kind = sa.func.json_type(column, sqlite_json_path(path))
    return sa.or_(kind.is_(None), kind == "null")


def json_has_path(dialect: str, column: Any, path: JsonPath) -> ColumnElement[bool]:
    """True when ``path`` exists in the document, whatever its value (JSON null included)."""
    if dialect == "postgresql":
        return sa.func.jsonb_typeof(_pg_value(column, path)).is_not(None)
    return sa.func.json_type(column, sqlite_json_path(path)).is_not(None)


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
