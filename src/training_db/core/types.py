"""Portable column types, decided once: models just say ``Mapped[datetime]`` or ``Mapped[dict]``.

* `UTCDateTime` — timezone-aware UTC in and out on both backends (SQLite keeps no
  zone; naive datetimes passed in are taken as UTC).
* `JSONDocument` — JSONB on PostgreSQL, JSON on SQLite, lossless for NaN, ±Infinity,
  NUL characters and large floats (see `training_db.core.jsoncodec`).
* `Int64` — a 64-bit integer: BIGINT on PostgreSQL, INTEGER on SQLite (which is 64-bit
  already, and is what the revisions created there). Values beyond 64 bits are not stored
  in a column at all: `fits_int64` is the test the writers apply first.
* `Float64` — a float64 (``Double``) that keeps the sign of ``-0.0`` on PostgreSQL too.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Double, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from training_db.core import jsoncodec

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# BIGINT on PostgreSQL. On SQLite every INTEGER column already holds 64 bits, and a table
# rebuild to rename the declared type would buy nothing, so the variant keeps INTEGER there
# (and the models keep matching what revisions 0001/0002 created).
Int64: Final = BigInteger().with_variant(Integer(), "sqlite")


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        utc = as_utc(value)
        # SQLite's DATETIME storage drops the zone; store the naive UTC wall time.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return as_utc(value)


class JSONDocument(TypeDecorator[Any]):
    """A JSON document: JSONB on PostgreSQL, JSON elsewhere; Python ``None`` is SQL NULL."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return jsoncodec.encode_document(jsoncodec.to_jsonable(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return jsoncodec.decode_document(value)


def fits_int64(value: int) -> bool:
    """Whether ``value`` fits a 64-bit integer column (BIGINT, SQLite's INTEGER)."""
    return INT64_MIN <= value <= INT64_MAX


class _NegativeZero(float):
    """``-0.0`` marked for psycopg2, which is adapted as ``'-0'::float8`` (see `Float64`)."""

    __slots__ = ()


_NEGATIVE_ZERO: Final = _NegativeZero(-0.0)


def _negative_zero_as_float8(value: Any) -> Any:
    """The bind processor of `Float64` on psycopg2: ``-0.0`` marked, anything else as is."""
    if value == 0 and math.copysign(1.0, value) < 0:
        return _NEGATIVE_ZERO
    return value


def _register_negative_zero_adapter() -> None:
    """Teach psycopg2 to send `_NegativeZero` as ``'-0'::float8`` (only that subclass)."""
    # Imported here: only a psycopg2 engine gets this far, and SQLite users never load it.
    from psycopg2.extensions import AsIs, register_adapter  # noqa: PLC0415

    register_adapter(_NegativeZero, lambda _value: AsIs("'-0'::float8"))


class Float64(TypeDecorator[float]):
    """A float64 column (``Double``) that keeps ``-0.0`` on PostgreSQL.

    psycopg2 writes a float into the SQL text as a literal; the server parses ``-0.0`` as a
    ``numeric``, which has no negative zero, before casting it to ``double precision``, so
    the sign was lost. Negative zero is therefore sent as ``'-0'::float8``; every other
    value (NaN and ±Infinity included) goes as before. SQLite's REAL storage cannot keep the
    sign (it stores an integral real as an integer): there the column reads ``0.0``, and the
    run's JSON documents are where ``-0.0`` stays exact.
    """

    impl = Double()
    cache_ok = True

    @property
    def python_type(self) -> type[float]:
        return float

    def bind_processor(self, dialect: Dialect) -> Any:
        """Overridden (instead of ``process_bind_param``) so that drivers other than psycopg2
        pay nothing per value; the implementation type's own processor still runs."""
        inner = super().bind_processor(dialect)
        if dialect.driver != "psycopg2":
            return inner
        _register_negative_zero_adapter()
        if inner is None:
            return _negative_zero_as_float8
        inner_processor = inner

        def process(value: Any) -> Any:  # pragma: no cover - psycopg2's Double has none
            return inner_processor(_negative_zero_as_float8(value))

        return process
