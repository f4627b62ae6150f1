"""Checks of argument values that know no table: text, numbers, timestamps, documents.

Each returns the value in the form the database stores, or raises `InvalidArgumentError`
naming the argument. Repository functions call them before their first statement, so a
bad call writes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Any, Final

from training_db.core import jsoncodec
from training_db.core.errors import InvalidArgumentError
from training_db.core.types import INT64_MAX, INT64_MIN, as_utc, fits_int64

MAX_LIMIT: Final = 10_000


def check_text(name: str, value: Any) -> str:
    """A string the database can hold: no NUL character, no lone surrogate."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} must not contain NUL characters")
    try:
        jsoncodec.check_unicode(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"{name}: {exc}") from None
    return value


def optional_text(name: str, value: Any) -> str | None:
    """`check_text` of a value that may be None or a path."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return check_text(name, value)


def optional_number(name: str, value: Any) -> float | None:
    """A number for a float column; NaN becomes NULL (SQLite cannot store NaN in a column)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = jsoncodec.to_jsonable(value) if type(value).__module__ == "numpy" else value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float64's range (10**400)
        raise InvalidArgumentError(
            f"{name} is out of range for a float column: an int of {len(str(abs(value)))} digits"
        ) from None
    return None if math.isnan(number) else number


def optional_int(name: str, value: Any) -> int | None:
    """A whole number for a 64-bit integer column (NaN is None, like a float column's).

    An int stays exact (through a float, 2**53 + 1 would lose its last digit); one beyond
    64 bits is an `InvalidArgumentError`, which a summary value is skipped on.
    """
    if type(value).__module__ == "numpy":
        value = jsoncodec.to_jsonable(value)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        as_float = optional_number(name, value)
        if as_float is None:
            return None
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}")
        number = int(as_float)
    if not fits_int64(number):
        raise InvalidArgumentError(
            f"{name} must fit in 64 bits ({INT64_MIN}..{INT64_MAX}), got {value!r}"
        )
    return number


def optional_timestamp(name: str, value: Any) -> dt.datetime | None:
    """A datetime or ISO 8601 string as aware UTC (naive means UTC)."""
    if value is None:
        return None
    try:
        if isinstance(value, dt.datetime):
            return as_utc(value)
        if isinstance(value, str):
            return as_utc(parse_iso(value))
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidArgumentError(
            f"{name} is out of range: {value!r} is not between years 1 and 9999 in UTC"
        ) from None
    except ValueError:
        pass
    raise InvalidArgumentError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}")


def document(name: str, value: Any) -> dict[str, Any] | None:
    """A JSON-able dict, checked now so that a bad value fails before anything is written."""
    if value is None:
        return None
    if not jsoncodec.is_mapping_like(value):
        raise InvalidArgumentError(
            f"{name} must be a dict, got {type(value).__name__} "
            "(a dict-like object such as wandb.run.summary works too)"
        )
    converted = jsoncodec.to_jsonable(value, path=name)
    jsoncodec.encode_document(converted)  # raises on keys the database cannot hold
    assert isinstance(converted, dict)
    return converted


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp (trailing ``Z`` allowed) as aware UTC; naive means UTC.

    ValueError when the text is not a timestamp, or when in UTC it falls outside the years
    1 to 9999 (``0001-01-01T00:00+05:00``).
    """
    try:
        return as_utc(parse_iso(text))
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC (years 1 to 9999)") from None


def parse_iso(text: str) -> dt.datetime:
    """The datetime an ISO 8601 string spells (``Z`` allowed), aware or naive as written."""
    stripped = text.strip()
    if stripped.endswith(("Z", "z")):
        stripped = stripped[:-1] + "+00:00"
    return dt.datetime.fromisoformat(stripped)


def validate_limit(limit: Any) -> int:
    """``limit`` as an int in 1..MAX_LIMIT, or ValueError."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit
