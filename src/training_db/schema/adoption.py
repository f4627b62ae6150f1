"""Adopting a database made by the old hand-written module, which predates Alembic.

Such a database has mangodb's tables but no ``alembic_version``. Its columns were declared
TEXT, REAL and INTEGER, its timestamps are text (``CURRENT_TIMESTAMP``'s
``2025-11-23 10:00:00``, ``isoformat()`` strings with or without ``Z``) and its JSON is text
written by ``json.dumps``, ``NaN`` and ``Infinity`` tokens included, which neither SQLite's
JSON functions nor PostgreSQL's JSONB accept.

Adoption, in the migration transaction (all of it happens, or none):

1. **Match**: the database's tables and column *names* are compared with the tables each
   revision creates (types are ignored). No match: refused, naming what differs.
2. **Rebuild**: the old tables are moved aside, the matching revision creates its tables
   exactly as on a new database and stamps itself, and every row is copied across converted
   through the column types (timestamps parsed to aware UTC, JSON text parsed and re-encoded
   losslessly, numbers and text coerced). A value that cannot be converted, or a row whose
   run does not exist, stops the adoption with a message listing them.
3. Extracted columns the old module left NULL are filled from ``config_json`` by the current
   rules (values it stored are kept), the old tables are dropped, and the caller's ``upgrade``
   runs the later revisions, their data migrations included.

Rebuilding instead of altering column types in place gives the exact DDL of a database that
was migrated from scratch (names of constraints and indexes, JSONB, timestamptz) on both
backends, and it converts values in Python because PostgreSQL cannot cast JSON text that
contains ``NaN`` to JSONB.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from training_db.core import jsoncodec
from training_db.core.errors import SchemaVersionError
from training_db.core.sequences import reset_sequences
from training_db.core.types import Float64, JSONDocument, UTCDateTime, as_utc
from training_db.schema import Base
from training_db.schema.extraction import EXTRACTED_COLUMNS, backfill_extracted_columns

# Where the old tables wait while the new ones are filled: a schema on PostgreSQL (indexes,
# constraints and sequences move with the table, so no name can clash); a prefix on SQLite.
ASIDE_SCHEMA: Final = "mangodb_adoption"
ASIDE_PREFIX: Final = "_mangodb_adoption_"
VERSION_TABLE: Final = "alembic_version"
ADOPTION_BATCH_SIZE: Final = 500
MAX_REPORTED_PROBLEMS: Final = 10

Shape = dict[str, frozenset[str]]

_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?"
    r"\s*(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


# --- matching ---------------------------------------------------------------------------------


def database_shape(connection: Connection) -> Shape:
    """Table name → column names, for every table but Alembic's and SQLite's own."""
    inspector = sa.inspect(connection)
    return {
        table: frozenset(column["name"] for column in inspector.get_columns(table))
        for table in inspector.get_table_names()
        if table != VERSION_TABLE and not table.startswith("sqlite_")
    }


def has_mangodb_tables(shape: Shape) -> bool:
    """Whether any of mangodb's tables is there (other tables alone do not count)."""
    return bool(shape.keys() & Base.metadata.tables.keys())


@dataclass(frozen=True)
class ShapeDifference:
    """How a database's tables differ from one revision's."""

    revision: str
    missing_tables: tuple[str, ...]
    extra_tables: tuple[str, ...]
    missing_columns: dict[str, tuple[str, ...]]
    extra_columns: dict[str, tuple[str, ...]]

    @property
    def size(self) -> int:
        return (
            len(self.missing_tables)
            + len(self.extra_tables)
            + sum(map(len, self.missing_columns.values()))
            + sum(map(len, self.extra_columns.values()))
        )

    def describe(self) -> str:
        parts = []
        if self.missing_tables:
            parts.append(f"missing tables {', '.join(self.missing_tables)}")
        if self.extra_tables:
            parts.append(f"extra tables {', '.join(self.extra_tables)}")
        for table, columns in self.missing_columns.items():
            parts.append(f"{table} lacks columns {', '.join(columns)}")
        for table, columns in self.extra_columns.items():
            parts.append(f"{table} has extra columns {', '.join(columns)}")
        return "; ".join(parts)


def compare_shapes(revision: str, expected: Shape, found: Shape) -> ShapeDifference:
    common = sorted(expected.keys() & found.keys())
    missing = {t: tuple(sorted(expected[t] - found[t])) for t in common}
    extra = {t: tuple(sorted(found[t] - expected[t])) for t in common}
    return ShapeDifference(
        revision,
        tuple(sorted(expected.keys() - found.keys())),
        tuple(sorted(found.keys() - expected.keys())),
        {table: columns for table, columns in missing.items() if columns},
        {table: columns for table, columns in extra.items() if columns},
    )


def matching_revision(found: Shape, revisions: Sequence[tuple[str, Shape]], where: str) -> str:
    """The oldest revision whose tables and column names are exactly ``found``'s.

    The oldest, so that every later revision's data migration still runs on the rows. No
    match raises SchemaVersionError describing the differences from the closest revision.
    """
    differences = [compare_shapes(revision, shape, found) for revision, shape in revisions]
    for difference in differences:
        if difference.size == 0:
            return difference.revision
    closest = min(differences, key=lambda difference: difference.size)
    raise SchemaVersionError(
        f"the database at {where} has mangodb tables but no Alembic version, and its tables "
        f"match no revision; closest is revision {closest.revision}: {closest.describe()}. "
        "Nothing was changed. Make the tables match that revision (add the missing columns, "
        "move other tables to another database), then run `training-db upgrade` again"
    )


# --- converting the old module's values --------------------------------------------------------


def legacy_timestamp(value: Any) -> dt.datetime:
    """An aware UTC datetime from what the old module stored; naive means UTC.

    Text in ISO 8601 / SQL form (``T`` or space, any fraction, ``Z``, ``+00``, ``+05:30``),
    a driver datetime, or a number of seconds since the epoch.
    """
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    text = value.decode() if isinstance(value, bytes) else value
    match = _TIMESTAMP.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a timestamp")
    year, month, day = (int(part) for part in match["date"].split("-"))
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    stamp = dt.datetime(
        year,
        month,
        day,
        int(match["hour"] or 0),
        int(match["minute"] or 0),
        int(match["second"] or 0),
        int(fraction),
    )
    return as_utc(stamp.replace(tzinfo=_zone(match["zone"])))


def _zone(text: str | None) -> dt.tzinfo | None:
    if text is None:
        return None
    if text.upper() == "Z":
        return dt.timezone.utc
    digits = text[1:].replace(":", "")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return dt.timezone(-offset if text[0] == "-" else offset)


def legacy_document(value: Any) -> Any:
    """A JSON document from text (``NaN`` / ``Infinity`` tokens allowed) or a driver value."""
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value).decode()
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not JSON text")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{value[:60]!r} is not JSON ({exc.msg})") from None


def legacy_value(type_: sa.types.TypeEngine[Any], value: Any) -> Any:
    """``value`` as stored by the old module, converted for a column of ``type_``.

    A float NaN becomes NULL, as everywhere in this package (SQLite cannot store it). Raises
    ValueError when the value has no faithful form in that type.
    """
    if value is None:
        return None
    if isinstance(type_, UTCDateTime):
        return legacy_timestamp(value)
    if isinstance(type_, JSONDocument):
        document = legacy_document(value)
        # what the column would refuse on insert (a lone surrogate, a NUL in a key), now
        jsoncodec.encode_document(jsoncodec.to_jsonable(document))
        return document
    if isinstance(type_, (sa.Float, Float64)):
        number = _number(value)
        return None if math.isnan(number) else number
    if isinstance(type_, sa.Integer):
        return _whole_number(value)
    if isinstance(type_, sa.LargeBinary):
        return bytes(value) if not isinstance(value, str) else value.encode()
    if isinstance(type_, sa.String) and not isinstance(value, str):
        return str(value)
    return value


def _whole_number(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)  # exactly, however large
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    number = _number(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


# --- rebuilding ------------------------------------------------------------------------------


def rebuild(
    connection: Connection,
    revision: str,
    legacy: Shape,
    create_revision: Callable[[str], None],
    where: str,
) -> dict[str, int]:
    """Replace the old tables by ``revision``'s, keeping every row; returns rows per table.

    ``create_revision(revision)`` runs the revisions up to ``revision`` on ``connection`` (in
    the caller's transaction) and stamps it. Raises SchemaVersionError, leaving the caller to
    roll back, when rows cannot be carried over.
    """
    aside = _move_aside(connection, legacy)
    create_revision(revision)
    created = sa.MetaData()
    created.reflect(connection, only=sorted(legacy))
    problems = _orphans(connection, created, aside)
    copied: dict[str, int] = {}
    try:
        for table in created.sorted_tables:
            copied[table.name] = _copy_rows(connection, aside[table.name], _typed(table), problems)
    except sa.exc.IntegrityError as exc:  # a CHECK, NOT NULL or UNIQUE the old tables lacked
        problems.append(f"a row breaks a constraint: {str(exc.orig).strip().splitlines()[0]}")
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise SchemaVersionError(
            f"cannot adopt the database at {where}: "
            + "; ".join(shown)
            + (f"; and {more} more" if more > 0 else "")
            + ". Nothing was changed. Fix or delete those rows with SQL, then run "
            "`training-db upgrade` again"
        )
    runs = legacy.get("training_runs", frozenset())
    backfill_extracted_columns(connection, [name for name in EXTRACTED_COLUMNS if name in runs])
    for table in reversed(created.sorted_tables):
        connection.execute(sa.schema.DropTable(aside[table.name]))
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP SCHEMA {ASIDE_SCHEMA}")
    reset_sequences(connection, created.sorted_tables)
    return copied


def _move_aside(connection: Connection, legacy: Shape) -> dict[str, Table]:
    """Move the old tables out of the way; returns them as Core tables of raw columns."""
    quote = connection.dialect.identifier_preparer.quote
    aside: dict[str, Table] = {}
    metadata = sa.MetaData()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"CREATE SCHEMA {ASIDE_SCHEMA}")
    for name, columns in legacy.items():
        raw_columns: list[sa.Column[Any]] = [sa.Column(column) for column in sorted(columns)]
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"ALTER TABLE {quote(name)} SET SCHEMA {ASIDE_SCHEMA}")
            aside[name] = Table(name, metadata, *raw_columns, schema=ASIDE_SCHEMA)
            continue
        # SQLite index names are global: drop the old ones (the new tables bring their own).
        indexes = connection.execute(
            sa.text(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = :table AND sql IS NOT NULL"
            ),
            {"table": name},
        ).scalars()
        for index in list(indexes):
            connection.exec_driver_sql(f"DROP INDEX {quote(index)}")
        renamed = ASIDE_PREFIX + name
        connection.exec_driver_sql(f"ALTER TABLE {quote(name)} RENAME TO {quote(renamed)}")
        aside[name] = Table(renamed, metadata, *raw_columns)
    return aside


def _typed(created: Table) -> Table:
    """``created`` with the models' column types, which encode values as the package does.

    A column the models no longer have keeps its reflected type.
    """
    model = Base.metadata.tables.get(created.name)
    columns = [
        sa.Column(
            column.name,
            model.c[column.name].type
            if model is not None and column.name in model.c
            else column.type,
            primary_key=column.primary_key,
        )
        for column in created.columns
    ]
    return Table(created.name, sa.MetaData(), *columns)


def _orphans(connection: Connection, created: sa.MetaData, aside: Mapping[str, Table]) -> list[str]:
    """Rows whose foreign key points at no row (the old SQLite module never enforced them)."""
    problems = []
    for table in created.sorted_tables:
        for foreign_key in table.foreign_key_constraints:
            child = aside[table.name]
            parent = aside.get(foreign_key.referred_table.name)
            if parent is None:  # pragma: no cover - the revisions create parents with children
                continue
            pairs = list(zip(foreign_key.column_keys, foreign_key.elements, strict=True))
            matches = sa.and_(
                *(child.c[key] == parent.c[element.column.name] for key, element in pairs)
            )
            present = sa.and_(*(child.c[key].is_not(None) for key, _ in pairs))
            statement = sa.select(sa.func.count()).where(present, ~sa.exists().where(matches))
            count = connection.execute(statement).scalar_one()
            if count:
                columns = ", ".join(foreign_key.column_keys)
                problems.append(
                    f"{count} rows of {table.name} have a {columns} that "
                    f"{foreign_key.referred_table.name} lacks"
                )
    return problems


def _copy_rows(connection: Connection, source: Table, target: Table, problems: list[str]) -> int:
    key = [source.c[column.name] for column in target.primary_key.columns]
    rows = connection.execute(
        sa.select(*(source.c[column.name] for column in target.columns))
        .order_by(*key)
        .execution_options(yield_per=ADOPTION_BATCH_SIZE)
    )
    copied = 0
    for batch in rows.partitions():
        converted = []
        for row in batch:
            values = {}
            for column, value in zip(target.columns, row, strict=True):
                try:
                    values[column.name] = legacy_value(column.type, value)
                except ValueError as exc:
                    ids = ", ".join(f"{c.name}={getattr(row, c.name)!r}" for c in key)
                    problems.append(f"{target.name} {ids}: {column.name} {exc}")
            converted.append(values)
        if problems:
            continue  # keep looking for problems; nothing will be written anyway
        connection.execute(sa.insert(target), converted)
        copied += len(converted)
    return copied
