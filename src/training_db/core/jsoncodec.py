"""Lossless JSON documents for configs, summaries and tags.

Two steps, both pure functions:

* `to_jsonable` turns what training code really holds (NumPy scalars and arrays,
  ``datetime``, ``Path``, ``Enum``, tuples, sets) into plain JSON values, and names the key
  path of anything it cannot convert.
* `encode_document` / `decode_document` map the values that a database's JSON
  type cannot hold onto small tagged objects and back. PostgreSQL's JSON types reject NaN,
  ±Infinity and the NUL character, and JSONB prints large floats without an exponent (so
  ``1e16`` would come back as an int). A tagged object is a one-key dict:

  ``{"$float": "NaN" | "Infinity" | "-Infinity" | "<repr>"}``
      a non-finite float, a float of magnitude >= 1e16, or -0.0 (JSONB drops its sign);
  ``{"$str0": ["part", "part"]}``
      a string containing NUL characters, split at them;
  ``{"$literal": {...}}``
      a user dict that happens to have exactly one of these reserved keys, escaped.

  Everything else is stored as itself, so SQL JSON functions on the stored document work
  as users expect (a finite number is a JSON number).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from training_db.core.errors import InvalidArgumentError

_FLOAT_TAG = "$float"
_NUL_STRING_TAG = "$str0"
_LITERAL_TAG = "$literal"
_RESERVED_KEYS = frozenset({_FLOAT_TAG, _NUL_STRING_TAG, _LITERAL_TAG})
_LARGE_FLOAT = 1e16
# Containers nested deeper than this are refused (before recursing into them): no real
# config comes close, and Python and the databases have recursion limits of their own.
MAX_DEPTH = 200


class NotJSONSerializableError(InvalidArgumentError, TypeError):
    """A value in a document has no JSON form; the message names its key path."""


def to_jsonable(value: Any, path: str = "$") -> Any:
    """Convert ``value`` to plain JSON types (dict, list, str, int, float, bool, None).

    Raises NotJSONSerializableError naming the key path (``$.training.optimizer``) of the
    first value that has no natural JSON form, or that lies deeper than `MAX_DEPTH`
    containers (checked before recursing, so a self-containing dict is an error too).
    Mapping-like objects that are not ``Mapping``s (a W&B ``Summary``: ``keys()`` and
    ``[]``, or anything with ``items()``) are converted as dicts.
    """
    return _to_jsonable(value, path, 0)


def _to_jsonable(value: Any, path: str, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):  # before str/int: StrEnum and IntEnum are both
        return _to_jsonable(value.value, path, depth)
    if isinstance(value, str):
        _check_unicode_at(value, path)
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # numpy.float64 subclasses float
        return float(value)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        _check_depth(path, depth)
    if isinstance(value, Mapping):
        return _object(value.items(), path, depth)
    if isinstance(value, (list, tuple)):
        return [
            _to_jsonable(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)
        ]
    if isinstance(value, (set, frozenset)):
        return [_to_jsonable(item, f"{path}[]", depth + 1) for item in sorted(value, key=repr)]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if type(value).__module__ == "numpy":
        return _numpy_to_jsonable(value, path)
    items = mapping_items(value)
    if items is not None:
        _check_depth(path, depth)
        return _object(items, path, depth)
    raise NotJSONSerializableError(
        f"value at {path} of type {type(value).__name__} cannot be stored as JSON"
    )


def _check_depth(path: str, depth: int) -> None:
    if depth >= MAX_DEPTH:
        shown = path if len(path) <= 80 else f"{path[:77]}..."
        raise NotJSONSerializableError(
            f"value at {shown} is nested deeper than {MAX_DEPTH} levels (the limit)"
        )


def _object(items: Iterable[tuple[Any, Any]], path: str, depth: int) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, item in items:
        text_key = _json_key(key, path)
        converted[text_key] = _to_jsonable(item, f"{path}.{text_key}", depth + 1)
    return converted


def is_mapping_like(value: Any) -> bool:
    """A ``Mapping``, or an object whose class has ``items()``, or ``keys()`` and ``[]``.

    W&B's ``Summary`` (and its nested dicts) are dict-like without being Mappings. Looked
    up on the class: a ``Summary`` answers any attribute of an instance by raising KeyError.
    """
    if isinstance(value, Mapping):
        return True
    if isinstance(value, (str, bytes, list, tuple, set, frozenset)):
        return False
    cls = type(value)
    return callable(getattr(cls, "items", None)) or (
        callable(getattr(cls, "keys", None)) and callable(getattr(cls, "__getitem__", None))
    )


def mapping_items(value: Any) -> Iterable[tuple[Any, Any]] | None:
    """The ``(key, value)`` pairs of a dict-like object (`is_mapping_like`), else None."""
    if isinstance(value, Mapping):
        return value.items()
    if not is_mapping_like(value):
        return None
    if callable(getattr(type(value), "items", None)):
        return list(value.items())
    return [(key, value[key]) for key in value.keys()]  # noqa: SIM118 - not a dict


def _check_unicode_at(text: str, path: str) -> None:
    try:
        check_unicode(text)
    except NotJSONSerializableError as exc:
        raise NotJSONSerializableError(f"value at {path}: {exc}") from None


def _json_key(key: Any, path: str) -> str:
    if isinstance(key, str):
        _check_unicode_at(key, path)
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return json.dumps(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    raise NotJSONSerializableError(
        f"key {key!r} at {path} of type {type(key).__name__} cannot be a JSON object key"
    )


def _numpy_to_jsonable(value: Any, path: str) -> Any:
    """NumPy scalars and arrays by duck typing, so NumPy is never imported here."""
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist(), path)
    if hasattr(value, "item"):
        return to_jsonable(value.item(), path)
    raise NotJSONSerializableError(  # pragma: no cover - every numpy value has tolist()
        f"value at {path} of type numpy.{type(value).__name__} cannot be stored as JSON"
    )


def encode_document(value: Any) -> Any:
    """Map a plain JSON value to the form stored in the database (see the module docstring)."""
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _LARGE_FLOAT or _is_negative_zero(value):
            return {_FLOAT_TAG: _float_text(value)}
        return value
    if isinstance(value, str):
        check_unicode(value)
        if "\x00" in value:
            return {_NUL_STRING_TAG: value.split("\x00")}
        return value
    if isinstance(value, dict):
        encoded = {_encode_key(key): encode_document(item) for key, item in value.items()}
        if len(value) == 1 and next(iter(value)) in _RESERVED_KEYS:
            return {_LITERAL_TAG: encoded}
        return encoded
    if isinstance(value, list):
        return [encode_document(item) for item in value]
    return value


def check_unicode(text: str) -> None:
    """NotJSONSerializableError for a string with lone surrogates (not encodable as UTF-8)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NotJSONSerializableError(
                f"string {text[:40]!r} is not valid Unicode (it has a lone surrogate)"
            ) from None


def _encode_key(key: str) -> str:
    check_unicode(key)
    if "\x00" in key:
        raise NotJSONSerializableError(f"object key {key!r} contains a NUL character")
    return key


def _is_negative_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) < 0


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def decode_document(value: Any) -> Any:
    """Invert `encode_document`."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, item),) = value.items()
            if key == _FLOAT_TAG and isinstance(item, str):
                return float(item)
            if key == _NUL_STRING_TAG and isinstance(item, list):
                return "\x00".join(item)
            if key == _LITERAL_TAG and isinstance(item, dict):
                return _decode_items(item)
        return _decode_items(value)
    if isinstance(value, list):
        # Scalars are returned as they are; only containers can hold a tagged object.
        return [decode_document(item) if type(item) in _CONTAINERS else item for item in value]
    return value


_CONTAINERS = (dict, list)


def _decode_items(mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        key: decode_document(item) if type(item) in _CONTAINERS else item
        for key, item in mapping.items()
    }


def _decode_float_tag(mapping: dict[str, Any]) -> Any:
    """`decode_document` for one JSON object, as the parser builds it (innermost first)."""
    if len(mapping) == 1:
        ((key, item),) = mapping.items()
        if key == _FLOAT_TAG and isinstance(item, str):
            return float(item)
    return mapping


_FLOAT_TAG_DECODER = json.JSONDecoder(object_hook=_decode_float_tag)


def loads_document(text: str) -> Any:
    """``decode_document(json.loads(text))``: a stored document from its JSON text.

    The same answer, cheaper for the common documents, decided by looking at the text:
    without a ``$`` (nor its escape ``\\u0024``) no key can be a tag, so there is nothing to
    decode; with only ``$float`` tags the parser decodes them as it builds each object.
    That is exact because a ``$float`` tag never holds another tag; ``$str0`` and
    ``$literal`` (and any ``\\u`` escape, which could spell a tag's key) take the general path.
    """
    if not isinstance(text, str):
        return decode_document(json.loads(text))
    if "$" not in text and "\\u0024" not in text:
        return json.loads(text)
    if "\\u" in text or _NUL_STRING_TAG in text or _LITERAL_TAG in text:
        return decode_document(json.loads(text))
    return _FLOAT_TAG_DECODER.decode(text)


def dumps(value: Any) -> str:
    """JSON text of a decoded document, NaN and ±Infinity as Python's json module writes them.

    Keys are sorted so the text is the same on SQLite and PostgreSQL (JSONB keeps no order).
    """
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
