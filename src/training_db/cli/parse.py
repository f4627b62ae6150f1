"""The command line's small languages, parsed into the library's filters.

``--where 'config.training.batch_size>=64'``, ``--since 7d``, ``--tag owner=alice``,
objective conditions (``'COMT_activity>=0.8'``) and durations (``30m``). Each parser
raises ValueError naming the option and the form it expects; the group turns that into
one line on stderr.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, Final

from training_db.core.validation import parse_timestamp

_WHERE = re.compile(r"^\s*(?P<key>[^<>=!\s][^<>=!]*?)\s*(?P<op>>=|<=|!=|==|=|>|<)\s*(?P<value>.*)$")
_WHERE_OPERATORS: Final = {
    "=": "eq",
    "==": "eq",
    "!=": "ne",
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_OBJECTIVE_CONDITION = re.compile(
    r"^\s*(?P<name>[^<>=\s]+)\s*(?P<op>>=|<=|==|=)\s*(?P<value>\S+)\s*$"
)


def parse_where(expressions: Iterable[str]) -> dict[str, Any]:
    """``'config.training.batch_size>=64'`` → ``{'config.training.batch_size': {'gte': '64'}}``."""
    filters: dict[str, Any] = {}
    for expression in expressions:
        match = _WHERE.match(expression)
        if match is None:
            raise ValueError(
                f"--where {expression!r}: expected KEY OP VALUE with OP one of = != > >= < <="
            )
        key, value = match.group("key").strip(), match.group("value").strip()
        operators = filters.setdefault(key, {})
        operators[_WHERE_OPERATORS[match.group("op")]] = value
    return filters


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``7d``, ``12h``, ``30m`` ago, or an ISO 8601 timestamp."""
    match = _SINCE.match(text)
    if match is None:
        try:
            return parse_timestamp(text)
        except ValueError:
            raise ValueError(
                f"--since {text!r}: use e.g. 7d, 12h, 30m or an ISO timestamp"
            ) from None
    amount, unit = float(match.group(1)), match.group(2)
    now = now or dt.datetime.now(dt.timezone.utc)
    return now - dt.timedelta(**{_UNITS[unit]: amount})


def parse_tags(pairs: Iterable[str]) -> dict[str, str]:
    """``['owner=alice']`` → ``{'tag.owner': 'alice'}``: tag equality filters."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[f"tag.{key}"] = value
    return tags


def parse_objective_conditions(conditions: Iterable[str], metric: str) -> dict[str, Any]:
    """``'COMT_activity>=0.8'`` → ``{'COMT_activity': {'metric': metric, 'min': 0.8}}``."""
    filters: dict[str, dict[str, Any]] = {}
    for condition in conditions:
        match = _OBJECTIVE_CONDITION.match(condition)
        if match is None:
            raise ValueError(
                f"{condition!r}: expected OBJECTIVE>=VALUE or OBJECTIVE<=VALUE (bounds are "
                "inclusive), e.g. 'COMT_activity>=0.8'"
            )
        bounds = filters.setdefault(match.group("name"), {"metric": metric})
        value = _number(match.group("value"), condition)
        if match.group("op") in (">=", "==", "="):
            bounds["min"] = value
        if match.group("op") in ("<=", "==", "="):
            bounds["max"] = value
    return filters


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where!r}: {text!r} is not a number") from None


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``2h``, ``1d``, ``45s`` → a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r}: use e.g. 30m, 2h, 1d")
    return dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
