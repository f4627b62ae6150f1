"""The models' base: naming convention, portable types, and the helpers every table uses.

Constraint names follow `NAMING_CONVENTION`, so they are predictable: batch migrations can
find them on SQLite, and `training_db.schema.constraints` maps each unique constraint to
the error a duplicate raises.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Final

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase

from training_db.core.types import Float64, Int64, JSONDocument, UTCDateTime

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
RUN_ID_MAX_LENGTH: Final = 255


def sql_in(values: tuple[str, ...]) -> str:
    """``'a', 'b'``: a CHECK constraint's list of allowed values (constants, never input)."""
    return ", ".join(f"'{value}'" for value in values)


class Base(DeclarativeBase):
    """The models' base: the naming convention, and the portable type of each Python type.

    An ``int`` column is 64-bit (`Int64`, BIGINT on PostgreSQL): anything a user can hand in
    fits. Only the surrogate keys (and the foreign keys to them) and counts bounded far below
    2**31 say ``Integer`` explicitly; ``tests/test_migrations.py`` holds that list.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument(),
        Any: JSONDocument(),
        float: Float64(),
        int: Int64,
        str: String(),
    }
