"""``query_runs`` filters and ordering, turned into SQL clauses.

Every key is checked against a whitelist (the ``training_runs`` columns and a few named
filters); every value is converted to the column's type and travels as a bound parameter.
Filter values may arrive as strings from a web form or a command line. A value no backend
could match or bind (an unknown status, a timestamp beyond year 9999 in UTC, an integer
beyond 64 bits, text with a NUL) is an `InvalidArgumentError`, never a driver's exception.

A query that matched nothing because a ``config.``/``summary.``/``tag.`` path exists in no
run raises `UnknownNameError` with the closest paths (`require_known_paths`).

``config.<path>`` follows one grammar, read by `parse_json_path` into steps (object keys
and array indices) that `training_db.core.portable` compiles to the same meaning on both
backends; docs/guide/querying.md states it for users.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from training_db.core import portable
from training_db.core.errors import InvalidArgumentError, UnknownNameError
from training_db.core.suggest import hint, require_one_of, suggestions
from training_db.core.types import as_utc
from training_db.core.validation import parse_iso
from training_db.schema import RUN_STATUSES, RunTag, TrainingRun
from training_db.store.records import is_known_name, name_found, remember_known_name

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
# Columns whose CHECK constraint allows only these values: any other value matches nothing,
# so with eq, ne and in it is surely a typo ("complete") and is refused.
COLUMN_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {"status": RUN_STATUSES}
# The range of an integer both backends can bind (SQLite's INTEGER is 64-bit).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_ORDER_BY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE)
_TRUE_TEXT = frozenset({"true", "1", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"false", "0", "no", "n", "off"})


# Filters are built on the tables' Core columns, not the mapped attributes: the statements
# they go into are executed on the session's connection, without the ORM (see
# ``records.execute``), and read the same SQL.
RUNS: Final = TrainingRun.__table__.c
TAGS: Final = RunTag.__table__.c


def filterable_columns() -> dict[str, ColumnElement[Any]]:
    """The ``training_runs`` columns a filter or ``order_by`` may name."""
    return {column.key: column for column in RUNS if column.key not in JSON_COLUMNS}


_COLUMNS: Final = filterable_columns()


def order_by_clauses(order_by: str) -> tuple[ColumnElement[Any], ...]:
    """``'duration_seconds DESC'`` → ORDER BY clauses, NULLs last, ties broken by run_id."""
    if not isinstance(order_by, str):
        raise InvalidArgumentError(
            f"order_by must be a string like 'created_at DESC', got {order_by!r}"
        )
    return _order_by_clauses(order_by)


@functools.lru_cache(maxsize=128)
def _order_by_clauses(order_by: str) -> tuple[ColumnElement[Any], ...]:
    # Made once per spelling: a caller polling with the same order pays for it once.
    match = _ORDER_BY.match(order_by)
    if match is None or match.group(1) not in _COLUMNS:
        name = match.group(1) if match is not None else order_by.strip().split(" ")[0]
        close = suggestions(name, _COLUMNS)
        listed = "" if close else f"; columns: {', '.join(sorted(_COLUMNS))}"
        raise UnknownNameError(
            f"order_by must be a column name with optional ASC or DESC, got {order_by!r}"
            f"{hint(close)}{listed}",
            name=name,
            suggestions=close,
        )
    column = _COLUMNS[match.group(1)]
    descending = (match.group(2) or "ASC").upper() == "DESC"
    ordered = column.desc() if descending else column.asc()
    # NULLS LAST only where NULLs can occur: on a NOT NULL column (created_at) it would stop
    # PostgreSQL from reading the column's index backwards. SQLite sorts NULLs first in ASC.
    nullable = RUNS[match.group(1)].nullable
    clauses: list[ColumnElement[Any]] = [ordered.nulls_last() if nullable else ordered]
    if match.group(1) != "run_id":
        clauses.append(RUNS.run_id.asc())
    return tuple(clauses)


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
        return _apply_operators(key, value, column, convert, COLUMN_CHOICES.get(key))
    if key == "min_duration_hours":
        hours = _to_float(key, value)
        return RUNS.duration_seconds >= hours * 3600.0
    if key == "created_after":
        return RUNS.created_at > _to_datetime(key, value)
    if key == "has_blog_post":
        return presence(RUNS.blog_post_url, _to_bool(key, value))
    if key == "has_crash_analysis":
        return presence(RUNS.crash_analysis_s3_key, _to_bool(key, value))
    if key.startswith("config.") and len(key) > len("config."):
        path = parse_json_path(key, key[len("config.") :])
        return _json_filter(key, value, dialect, RUNS.config_json, path)
    if key.startswith("summary.") and len(key) > len("summary."):
        # One top-level key, verbatim: W&B summary keys hold slashes and dots.
        summary_path: list[str | int] = [_json_key(key, key[len("summary.") :])]
        return _json_filter(key, value, dialect, RUNS.final_metrics_json, summary_path)
    if key.startswith("tag.") and len(key) > len("tag."):
        tag_key = _checked_text(key, key[len("tag.") :])
        if value is None or value == {"eq": None}:
            # Like config.<path>: None, a run without the tag matches too.
            return sa.not_(
                sa.exists().where(
                    TAGS.run_id == RUNS.run_id,
                    TAGS.key == tag_key,
                    TAGS.value.is_not(None),
                )
            )
        matches = _json_filter(key, value, dialect, TAGS.value, [])
        return sa.exists().where(TAGS.run_id == RUNS.run_id, TAGS.key == tag_key, matches)
    close = suggestions(key, [*_COLUMNS, *NAMED_FILTERS])
    listed = (
        ""
        if close
        else f"; filters are the training_runs columns ({', '.join(sorted(_COLUMNS))}), "
        f"{', '.join(NAMED_FILTERS)}, and keys starting with 'config.', 'summary.' or 'tag.'"
    )
    raise UnknownNameError(
        f"unknown filter {key!r}{hint(close)}{listed}", name=key, suggestions=close
    )


def presence(column: Any, wanted: bool) -> ColumnElement[bool]:
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
    choices: tuple[str, ...] | None = None,
) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for operator, operand in _operator_items(key, value):
        if operator == "in":
            values = _in_values(key, operand)
            converted = [_choice(key, convert(key, item), choices) for item in values]
            clauses.append(column.in_(converted))
        elif operand is None:
            clauses.append(_null_comparison(key, operator, column))
        else:
            converted_operand = convert(key, operand)
            if operator in ("eq", "ne"):
                converted_operand = _choice(key, converted_operand, choices)
            clauses.append(_compare(operator, column, converted_operand))
    return sa.and_(*clauses)


def _choice(key: str, value: Any, choices: tuple[str, ...] | None) -> Any:
    """``value`` if the column allows it (or allows anything), else InvalidArgumentError."""
    if choices is not None:
        require_one_of(value, choices, f"filter {key!r}: unknown value {value!r}")
    return value


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
    python_type = _python_type(column)
    if python_type is bool:
        return _to_bool
    if python_type is int:
        return _to_int
    if python_type is float:
        return _to_float
    if python_type is dt.datetime:
        return _to_datetime
    return _to_str


def _python_type(column: Any) -> type:
    """The Python type of a column's values, looking through a TypeDecorator.

    ``UTCDateTime`` (a TypeDecorator) reports ``object`` itself; its ``impl`` knows.
    """
    column_type = column.type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    try:
        python_type: type = column_type.python_type
    except NotImplementedError:  # pragma: no cover - every training_runs type has one
        return object
    return python_type


def _checked_text(key: str, text: str) -> str:
    """``text`` if both backends can bind it: no NUL character, no lone surrogate.

    PostgreSQL cannot hold a NUL in text, and neither driver can encode a lone surrogate.
    """
    if "\x00" in text:
        raise InvalidArgumentError(f"filter {key!r}: text must not contain NUL, got {text!r}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"filter {key!r}: {text!r} is not valid Unicode (it has a lone surrogate)"
            ) from None
    return text


def _as_float(key: str, value: int | float) -> float:
    """``float(value)``, or InvalidArgumentError for an int beyond a float's range."""
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgumentError(
            f"filter {key!r}: {_number_text(value)} is out of range for a 64-bit float"
        ) from None


def _number_text(number: int | float) -> str:
    """A number for a message; a huge int by its size (its digits could be thousands)."""
    if isinstance(number, int) and number.bit_length() > 128:
        return f"an integer of {number.bit_length()} bits"
    return repr(number)


def _to_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return _checked_text(key, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidArgumentError(f"filter {key!r}: expected text, got {value!r}")


def _to_int(key: str, value: Any) -> int:
    """An integer for an integer column; out of the 64-bit range is an error, not no match.

    SQLite cannot bind such a number at all; refusing it keeps the backends alike.
    """
    number = _parse_int(key, value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidArgumentError(
            f"filter {key!r}: {_number_text(number)} is out of range for a 64-bit integer "
            f"({_INT64_MIN} to {_INT64_MAX})"
        )
    return number


def _parse_int(key: str, value: Any) -> int:
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
    if isinstance(value, int):
        return _as_float(key, value)
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
    parsed: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = parse_iso(value)
    if parsed is None:
        raise InvalidArgumentError(
            f"filter {key!r}: expected an ISO 8601 timestamp or a datetime, got {value!r}"
        )
    try:
        return as_utc(parsed)
    except OverflowError:
        raise InvalidArgumentError(
            f"filter {key!r}: {value!r} is out of range in UTC (years 1 to 9999)"
        ) from None


# --- JSON paths (config., summary., tag.) -------------------------------------------------

_INDEX = re.compile(r"-?[0-9]+")
# PostgreSQL's SQL/JSON path subscripts are 32-bit; no stored array is ever that long.
_MAX_INDEX = 2**31 - 1
PATH_GRAMMAR: Final = (
    "a path is segments separated by '.': an array index (0, 12, -1), "
    'a key (training, é), or a double-quoted key ("a.b", "0")'
)


def parse_json_path(key: str, path: str) -> list[str | int]:
    """``'objectives.-1."a.b"'`` → ``['objectives', -1, 'a.b']``: the steps of a JSON path.

    Segments are separated by dots. A bare ASCII integer (``0``, ``-1``) is an array index;
    any other bare segment, and any double-quoted one (``"0"``, ``"a.b"``), is an object
    key. ``key`` is the whole filter key, for the messages.
    """
    steps: list[str | int] = []
    position = 0
    while True:
        if path.startswith('"', position):
            end = path.find('"', position + 1)
            if end == -1:
                raise _path_error(key, "unbalanced double quote")
            steps.append(_json_key(key, path[position + 1 : end]))
            position = end + 1
        else:
            end = path.find(".", position)
            end = len(path) if end == -1 else end
            steps.append(_bare_step(key, path[position:end]))
            position = end
        if position == len(path):
            return steps
        if path[position] != ".":
            raise _path_error(
                key,
                "a quoted key must be followed by '.' or the end (JSON keys must not "
                "contain a double quote)",
            )
        position += 1


def _bare_step(key: str, segment: str) -> str | int:
    if segment == "":
        raise _path_error(key, "empty path segment")
    if _INDEX.fullmatch(segment) is None:
        return _json_key(key, segment)
    # Count the digits first: int() refuses text of thousands of them.
    digits = segment.lstrip("-").lstrip("0")
    if len(digits) > len(str(_MAX_INDEX)) or abs(int(segment)) > _MAX_INDEX:
        raise InvalidArgumentError(
            f"filter {key!r}: array index {segment} is out of range "
            f"(-{_MAX_INDEX} to {_MAX_INDEX}); quote it to name an object key"
        )
    return int(segment)


def _json_key(key: str, name: str) -> str:
    """An object key that both backends can address, or InvalidArgumentError."""
    if '"' in name:
        # SQLite's JSON path has no escape for a double quote inside a quoted key.
        raise InvalidArgumentError(
            f"filter {key!r}: JSON keys must not contain a double quote, got {name!r}"
        )
    return _checked_text(key, name)


def _path_error(key: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"filter {key!r}: {problem}; {PATH_GRAMMAR}")


def _json_filter(
    key: str, value: Any, dialect: str, column: Any, path: list[str | int]
) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for operator, operand in _operator_items(key, value):
        if operator == "in":
            options = [
                _json_comparison(key, "eq", item, dialect, column, path)
                for item in _in_values(key, operand)
            ]
            clauses.append(sa.or_(*options))
        else:
            clauses.append(_json_comparison(key, operator, operand, dialect, column, path))
    return sa.and_(*clauses)


def _json_comparison(
    key: str, operator: str, operand: Any, dialect: str, column: Any, path: list[str | int]
) -> ColumnElement[bool]:
    """Compare the JSON value at ``path`` with ``operand``: numbers as numbers, text as text."""
    if operand is None:
        null = portable.json_is_null(dialect, column, path)
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
        extracted = portable.json_boolean_text(dialect, column, path)
        return _compare(operator, extracted, "true" if operand else "false")
    number = _as_number(key, operand)
    if number is not None:
        return _compare(operator, portable.json_number(dialect, column, path), number)
    if isinstance(operand, str):
        text = _checked_text(key, operand)
        return _compare(operator, portable.json_string(dialect, column, path), text)
    raise InvalidArgumentError(
        f"filter {key!r}: compare with a number, a string, a boolean or None, got {operand!r}"
    )


def _as_number(key: str, operand: Any) -> float | None:
    """A number for numeric comparison, from a number or numeric text; else None."""
    if isinstance(operand, bool):
        return None
    if isinstance(operand, (int, float)):
        number = _as_float(key, operand)
    elif isinstance(operand, str):
        try:
            number = float(operand.strip())
        except ValueError:
            return None
    else:
        return None
    if math.isnan(number):
        raise InvalidArgumentError(f"filter {key!r}: NaN matches nothing; compare with a number")
    return number


# --- paths no run has: "did you mean" for an empty answer ---------------------------------

# How many of the newest runs' documents are read for the known paths (the suggestions),
# and how many paths at most are compared with a mistyped one.
PATH_SAMPLE: Final = 200
MAX_KNOWN_PATHS: Final = 5_000
_MAX_DEPTH: Final = 8


def require_known_paths(session: Session, filters: Mapping[str, Any] | None) -> None:
    """`UnknownNameError` for a ``config.``/``summary.``/``tag.`` filter whose path no run has.

    Called when a query matched nothing, so it costs nothing on the usual path. A path some
    run has (whatever its value) is known, and the empty answer stands; so does any answer
    in a database without runs, which has nothing to compare a path with. A filter that asks
    for the path's absence (``None``) is never a mistake.
    """
    if not filters:
        return
    dialect = session.get_bind().dialect.name
    for key, value in filters.items():
        if value is None or value == {"eq": None}:
            continue
        if key.startswith("config.") and len(key) > len("config."):
            path = parse_json_path(key, key[len("config.") :])
            _require_document_path(session, dialect, key, TrainingRun.config_json, path)
        elif key.startswith("summary.") and len(key) > len("summary."):
            summary_path: list[str | int] = [key[len("summary.") :]]
            _require_document_path(
                session, dialect, key, TrainingRun.final_metrics_json, summary_path
            )
        elif key.startswith("tag.") and len(key) > len("tag."):
            _require_tag_key(session, key, key[len("tag.") :])


def _require_document_path(
    session: Session, dialect: str, key: str, column: Any, path: list[str | int]
) -> None:
    """`UnknownNameError` when no run's document in ``column`` has ``path`` (filter ``key``):
    the newest runs are looked at first, then all of them in one query,
    and the paths of the newest runs are the suggestions."""
    if is_known_name(session, "path", key):
        return
    documents = session.scalars(
        sa.select(column).order_by(TrainingRun.created_at.desc()).limit(PATH_SAMPLE)
    ).all()
    if not documents:
        return
    if any(_has_path(document, path) for document in documents):
        remember_known_name(session, "path", key)
        return
    # Not among the newest runs: one look at them all before calling it a mistake.
    probe = sa.select(sa.literal(1)).where(portable.json_has_path(dialect, column, path))
    if name_found(session, "path", key, probe.limit(1)):
        return
    prefix, _, written = key.partition(".")
    known: dict[str, None] = {}
    for document in documents:
        if isinstance(document, Mapping):
            if prefix == "summary":
                known.update(dict.fromkeys(str(name) for name in document))
            else:
                known.update(dict.fromkeys(_paths(document)))
        if len(known) >= MAX_KNOWN_PATHS:
            break
    raise _nothing_can_match(key, f"{prefix} {written!r}", written, known)


def _require_tag_key(session: Session, key: str, tag_key: str) -> None:
    """`UnknownNameError` when no run has the tag ``tag_key`` and some run has tags."""
    probe = sa.select(RunTag.key).where(RunTag.key == tag_key).limit(1)
    if name_found(session, "tag", tag_key, probe):
        return
    known = session.scalars(sa.select(RunTag.key).distinct().limit(MAX_KNOWN_PATHS)).all()
    if not known:
        return
    raise _nothing_can_match(key, f"the tag {tag_key!r}", tag_key, known)


def _nothing_can_match(key: str, what: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The error for filter ``key`` on a name no run has (``what``, e.g. "the tag 'x'"),
    suggesting the known names close to ``name``, spelt as filter keys."""
    prefix = key.partition(".")[0]
    close = suggestions(name, known)
    return UnknownNameError(
        f"filter {key!r}: no run has {what}, so nothing can match{hint(close)}",
        name=key,
        suggestions=[f"{prefix}.{each}" for each in close],
    )


def _has_path(document: Any, path: list[str | int]) -> bool:
    node = document
    for step in path:
        if isinstance(step, int) and isinstance(node, list):
            if not -len(node) <= step < len(node):
                return False
            node = node[step]
        elif isinstance(step, str) and isinstance(node, Mapping) and step in node:
            node = node[step]
        else:
            return False
    return True


def _paths(document: Mapping[str, Any], depth: int = 0) -> list[str]:
    """The dotted paths of a document's objects (lists are not entered), as a filter spells
    them: a key with a dot, a quote-worthy digit string, quoted."""
    found: list[str] = []
    for name, value in document.items():
        segment = f'"{name}"' if "." in name or _INDEX.fullmatch(name) else name
        found.append(segment)
        if isinstance(value, Mapping) and depth < _MAX_DEPTH:
            found += [f"{segment}.{inner}" for inner in _paths(value, depth + 1)]
    return found
