"""``query_runs`` filters and ordering, turned into SQL clauses.

Every key is checked against a whitelist (the ``training_runs`` columns and a few named
filters); every value is converted to the column's type and travels as a bound parameter.
Filter values may arrive as strings from a web form or a command line.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute

from training_db import portable
from training_db.errors import InvalidArgumentError
from training_db.models import RunTag, TrainingRun
from training_db.types import as_utc

OPERATORS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in")
MAX_LIMIT: Final = 10_000
JSON_COLUMNS: Final = frozenset({"config_json", "final_metrics_json"})
NAMED_FILTERS: Final = (
    "min_duration_hours",
    "created_after",
    "has_blog_post",
    "has_crash_analysis",
)
PREFIXED_FILTERS: Final = ("config.", "summary.", "tag.")

_ORDER_BY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE)
_TRUE_TEXT = frozenset({"true", "1", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"false", "0", "no", "n", "off"})


def filterable_columns() -> dict[str, InstrumentedAttribute[Any]]:
    """The ``training_runs`` columns a filter or ``order_by`` may name."""
    return {
        name: getattr(TrainingRun, name)
        for name in (column.key for column in TrainingRun.__table__.columns)
        if name not in JSON_COLUMNS
    }


_COLUMNS: Final = filterable_columns()


def validate_limit(limit: Any) -> int:
    """``limit`` as an int in 1..MAX_LIMIT, or ValueError."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def order_by_clauses(order_by: str) -> list[ColumnElement[Any]]:
    """``'duration_seconds DESC'`` → ORDER BY clauses, NULLs last, ties broken by run_id."""
    if not isinstance(order_by, str):
        raise InvalidArgumentError(
            f"order_by must be a string like 'created_at DESC', got {order_by!r}"
        )
    match = _ORDER_BY.match(order_by)
    if match is None or match.group(1) not in _COLUMNS:
        raise InvalidArgumentError(
            f"order_by must be a column name with optional ASC or DESC, got {order_by!r}; "
            f"columns: {', '.join(sorted(_COLUMNS))}"
        )
    column = _COLUMNS[match.group(1)]
    descending = (match.group(2) or "ASC").upper() == "DESC"
    ordered = column.desc() if descending else column.asc()
    # NULLS LAST only where NULLs can occur: on a NOT NULL column (created_at) it would stop
    # PostgreSQL from reading the column's index backwards. SQLite sorts NULLs first in ASC.
    nullable = TrainingRun.__table__.c[match.group(1)].nullable
    clauses: list[ColumnElement[Any]] = [ordered.nulls_last() if nullable else ordered]
    if match.group(1) != "run_id":
        clauses.append(TrainingRun.run_id.asc())
    return clauses


def run_filter_clauses(
    filters: Mapping[str, Any] | None, dialect: str
) -> list[ColumnElement[bool]]:
    """WHERE clauses for ``query_runs`` filters (ANDed by the caller)."""
    if filters is None:
        return []
    if not isinstance(filters, Mapping):
        raise InvalidArgumentError(f"filters must be a dict, got {type(filters).__name__}")
    clauses: list[ColumnElement[bool]] = []
    for key, value in filters.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(f"filter keys must be strings, got {key!r}")
        clauses.append(_filter_clause(key, value, dialect))
    return clauses


def _filter_clause(key: str, value: Any, dialect: str) -> ColumnElement[bool]:
    if key in _COLUMNS:
        column = _COLUMNS[key]
        convert = _converter_for(column)
        return _apply_operators(key, value, column, convert)
    if key == "min_duration_hours":
        hours = _to_float(key, value)
        return TrainingRun.duration_seconds >= hours * 3600.0
    if key == "created_after":
        return TrainingRun.created_at > _to_datetime(key, value)
    if key == "has_blog_post":
        return _presence(TrainingRun.blog_post_url, _to_bool(key, value))
    if key == "has_crash_analysis":
        return _presence(TrainingRun.crash_analysis_s3_key, _to_bool(key, value))
    if key.startswith("config.") and len(key) > len("config."):
        keys = key[len("config.") :].split(".")
        return _json_filter(key, value, dialect, TrainingRun.config_json, keys)
    if key.startswith("summary.") and len(key) > len("summary."):
        keys = [key[len("summary.") :]]
        return _json_filter(key, value, dialect, TrainingRun.final_metrics_json, keys)
    if key.startswith("tag.") and len(key) > len("tag."):
        tag_key = key[len("tag.") :]
        if value is None or value == {"eq": None}:
            # Like config.<path>: None, a run without the tag matches too.
            return sa.not_(
                sa.exists().where(
                    RunTag.run_id == TrainingRun.run_id,
                    RunTag.key == tag_key,
                    RunTag.value.is_not(None),
                )
            )
        matches = _json_filter(key, value, dialect, RunTag.value, [])
        return sa.exists().where(
            RunTag.run_id == TrainingRun.run_id, RunTag.key == tag_key, matches
        )
    raise InvalidArgumentError(
        f"unknown filter {key!r}; filters are the training_runs columns "
        f"({', '.join(sorted(_COLUMNS))}), {', '.join(NAMED_FILTERS)}, "
        "and keys starting with 'config.', 'summary.' or 'tag.'"
    )


def _presence(column: Any, wanted: bool) -> ColumnElement[bool]:
    present = sa.and_(column.is_not(None), column != "")
    return present if wanted else sa.not_(present)


def _operator_items(key: str, value: Any) -> list[tuple[str, Any]]:
    """``{'gte': 1, 'lt': 5}`` → its items; a plain value → ``[('eq', value)]``."""
    if not isinstance(value, Mapping):
        return [("eq", value)]
    if not value:
        raise InvalidArgumentError(
            f"filter {key!r}: an operator dict needs at least one of {OPERATORS}"
        )
    items = []
    for operator, operand in value.items():
        if operator not in OPERATORS:
            raise InvalidArgumentError(
                f"filter {key!r}: unknown operator {operator!r}; valid: {', '.join(OPERATORS)}"
            )
        items.append((operator, operand))
    return items


def _compare(operator: str, left: Any, right: Any) -> ColumnElement[bool]:
    comparisons: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return comparisons[operator](left, right)


def _apply_operators(
    key: str,
    value: Any,
    column: Any,
    convert: Callable[[str, Any], Any],
) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for operator, operand in _operator_items(key, value):
        if operator == "in":
            values = _in_values(key, operand)
            converted = [convert(key, item) for item in values]
            clauses.append(column.in_(converted))
        elif operand is None:
            clauses.append(_null_comparison(key, operator, column))
        else:
            clauses.append(_compare(operator, column, convert(key, operand)))
    return sa.and_(*clauses)


def _null_comparison(key: str, operator: str, column: Any) -> ColumnElement[bool]:
    if operator == "eq":
        return column.is_(None)  # type: ignore[no-any-return]
    if operator == "ne":
        return column.is_not(None)  # type: ignore[no-any-return]
    raise InvalidArgumentError(f"filter {key!r}: None can only be compared with 'eq' or 'ne'")


def _in_values(key: str, operand: Any) -> list[Any]:
    if isinstance(operand, str) or not isinstance(operand, (list, tuple, set, frozenset)):
        raise InvalidArgumentError(f"filter {key!r}: 'in' takes a list of values, got {operand!r}")
    if not operand:
        raise InvalidArgumentError(f"filter {key!r}: 'in' needs at least one value")
    return list(operand)


def _converter_for(column: Any) -> Callable[[str, Any], Any]:
    python_type = column.type.python_type
    if python_type is bool:
        return _to_bool
    if python_type is int:
        return _to_int
    if python_type is float:
        return _to_float
    if python_type is dt.datetime:
        return _to_datetime
    return _to_str


def _to_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidArgumentError(f"filter {key!r}: expected text, got {value!r}")


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"filter {key!r}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number.is_integer():
                return int(number)
    raise InvalidArgumentError(f"filter {key!r}: expected an integer, got {value!r}")


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"filter {key!r}: expected a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"filter {key!r}: expected a number, got {value!r}") from None
    if math.isnan(number):
        raise InvalidArgumentError(f"filter {key!r}: NaN matches nothing; compare with a number")
    return number


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise InvalidArgumentError(f"filter {key!r}: expected true or false, got {value!r}")


def _to_datetime(key: str, value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            pass
    raise InvalidArgumentError(f"filter {key!r}: expected an ISO 8601 timestamp, got {value!r}")


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp (trailing ``Z`` allowed) as aware UTC; naive means UTC."""
    stripped = text.strip()
    if stripped.endswith(("Z", "z")):
        stripped = stripped[:-1] + "+00:00"
    return as_utc(dt.datetime.fromisoformat(stripped))


# --- JSON paths (config., summary., tag.) -------------------------------------------------


def _json_filter(
    key: str, value: Any, dialect: str, column: Any, keys: list[str]
) -> ColumnElement[bool]:
    if any(part == "" for part in keys):
        raise InvalidArgumentError(f"filter {key!r}: empty path segment")
    if any('"' in part for part in keys):
        raise InvalidArgumentError(f"filter {key!r}: JSON keys must not contain a double quote")
    clauses: list[ColumnElement[bool]] = []
    for operator, operand in _operator_items(key, value):
        if operator == "in":
            options = [
                _json_comparison(key, "eq", item, dialect, column, keys)
                for item in _in_values(key, operand)
            ]
            clauses.append(sa.or_(*options))
        else:
            clauses.append(_json_comparison(key, operator, operand, dialect, column, keys))
    return sa.and_(*clauses)


def _json_comparison(
    key: str, operator: str, operand: Any, dialect: str, column: Any, keys: list[str]
) -> ColumnElement[bool]:
    """Compare the JSON value at ``keys`` with ``operand``: numbers as numbers, text as text."""
    if operand is None:
        null = portable.json_is_null(dialect, column, keys)
        if operator == "eq":
            return null
        if operator == "ne":
            return sa.not_(null)
        raise InvalidArgumentError(f"filter {key!r}: None can only be compared with 'eq' or 'ne'")
    if isinstance(operand, bool):
        if operator not in ("eq", "ne"):
            raise InvalidArgumentError(
                f"filter {key!r}: booleans can only be compared with 'eq' or 'ne'"
            )
        extracted = portable.json_boolean_text(dialect, column, keys)
        return _compare(operator, extracted, "true" if operand else "false")
    number = _as_number(operand)
    if number is not None:
        return _compare(operator, portable.json_number(dialect, column, keys), number)
    if isinstance(operand, str):
        return _compare(operator, portable.json_string(dialect, column, keys), operand)
    raise InvalidArgumentError(
        f"filter {key!r}: compare with a number, a string, a boolean or None, got {operand!r}"
    )


def _as_number(operand: Any) -> float | None:
    """A finite number for numeric comparison, from a number or numeric text; else None."""
    if isinstance(operand, bool):
        return None
    if isinstance(operand, (int, float)):
        number = float(operand)
    elif isinstance(operand, str):
        try:
            number = float(operand.strip())
        except ValueError:
            return None
    else:
        return None
    if math.isnan(number):
        raise InvalidArgumentError("NaN matches nothing; compare with a number")
    return number
