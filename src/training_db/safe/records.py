"""A spool record: one call as the spool holds it, and its encoding as one JSON line.

``{"id", "recorded_at", "function", "args", "kwargs"}``: values are encoded with
`training_db.core.jsoncodec` (NaN, ±Infinity and NUL survive) and datetimes are tagged as
``{"$datetime": "<ISO 8601>"}``. ``function`` names a declared write that has a twin
(`spooled_operation`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from training_db.core import jsoncodec
from training_db.core.errors import InvalidArgumentError
from training_db.core.operations import Operation, operation
from training_db.safe.redact import describe

_DATETIME_TAG: Final = "$datetime"
_ESCAPE_TAG: Final = "$spooled"  # wraps a user dict whose only key is one of these two tags
_SPOOL_TAGS: Final = frozenset({_DATETIME_TAG, _ESCAPE_TAG})
_RECORD_KEYS: Final = ("id", "recorded_at", "function", "args", "kwargs")


def spooled_operation(name: object) -> Operation[Any, Any] | None:
    """The declared operation a record may name: a write with a twin; None for anything else.

    Looked up in the registry when asked, so that it is the one list of such writes.
    """
    if not isinstance(name, str):
        return None
    try:
        found = operation(name)
    except InvalidArgumentError:
        return None
    return found if found.safe else None


@dataclass(frozen=True)
class SpooledCall:
    """One call as the spool holds it: ``args``/``kwargs`` are decoded Python values."""

    id: str
    recorded_at: dt.datetime
    function: str
    args: list[Any]
    kwargs: dict[str, Any]

    def to_line(self) -> str:
        """The record as one JSON line (no newline)."""
        body = {
            "id": self.id,
            "recorded_at": self.recorded_at.isoformat(),
            "function": self.function,
            "args": _encode_value(self.args, "args"),
            "kwargs": _encode_value(self.kwargs, "kwargs"),
        }
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str | bytes) -> SpooledCall:
        """Parse a spool line; ValueError saying what is wrong with it.

        Only ValueError: a line nested too deeply to parse (RecursionError), say, is as
        malformed as a line cut short, and must not stop a replay.
        """
        try:
            body = json.loads(line)
        except Exception as exc:
            raise ValueError(f"not JSON: {describe(exc)}") from None
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        missing = [key for key in _RECORD_KEYS if key not in body]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        function, args, kwargs = body["function"], body["args"], body["kwargs"]
        if spooled_operation(function) is None:
            raise ValueError(f"unknown function {function!r}")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args must be a list and kwargs an object")
        if not isinstance(body["id"], str) or not isinstance(body["recorded_at"], str):
            raise ValueError("id and recorded_at must be strings")
        try:
            recorded_at = dt.datetime.fromisoformat(body["recorded_at"])
            decoded_args = _decode_value(args)
            decoded_kwargs = _decode_value(kwargs)
        except Exception as exc:
            raise ValueError(f"undecodable value: {describe(exc)}") from None
        return cls(body["id"], recorded_at, function, decoded_args, decoded_kwargs)


def _encode_value(value: Any, path: str) -> Any:
    """Tag datetimes, then the jsoncodec steps: plain JSON with NaN/Inf/NUL made storable."""
    return jsoncodec.encode_document(jsoncodec.to_jsonable(_tag(value), path))


def _tag(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if isinstance(value, Mapping):
        tagged = {key: _tag(item) for key, item in value.items()}
        if len(tagged) == 1 and next(iter(tagged)) in _SPOOL_TAGS:
            return {_ESCAPE_TAG: tagged}
        return tagged
    if isinstance(value, (list, tuple)):
        return [_tag(item) for item in value]
    return value


def _decode_value(value: Any) -> Any:
    return _untag(jsoncodec.decode_document(value))


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, item),) = value.items()
            if key == _DATETIME_TAG and isinstance(item, str):
                return dt.datetime.fromisoformat(item)
            if key == _ESCAPE_TAG and isinstance(item, dict):
                return {name: _untag(entry) for name, entry in item.items()}
        return {name: _untag(entry) for name, entry in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value
