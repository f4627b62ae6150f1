"""The binary codec of a stored series: ascending steps and 8-byte numbers, compactly.

Pure functions, no database: `encode_series` turns ``{step: value}`` into the columns of a
``run_history`` row (`EncodedSeries`), `decode_series` gives it back exactly. A NaN or
±Infinity is kept bit for bit; a series that is not all ints or all numbers is JSON.
"""

from __future__ import annotations

import itertools
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import sub
from typing import Any, Final

from training_db.core.errors import CorruptDataError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BIG_ENDIAN = sys.byteorder == "big"
_FLOAT_EXACT_INT = 2**53
_RANGE_TAG, _DELTAS_TAG, _BITMAP_TAG = b"R", b"Z", b"B"
# Step bitmaps: flag bytes 0/1 as the digits of a binary number, and each byte's eight flags.
_FLAG_DIGITS: Final = bytes.maketrans(b"\x00\x01", b"01")
_BYTE_FLAGS: Final = tuple(bytes((byte >> bit) & 1 for bit in range(8)) for byte in range(256))
# Number kinds and their array typecodes; "<kind>_bp" stores them as packed byte planes.
_TYPECODES: Final = {"float": "d", "int": "q"}
_PACKED_SUFFIX: Final = "_bp"
# Shorter series are stored plain: packing them saves a few bytes at best.
_MIN_PACKED_POINTS: Final = 16
# A byte plane with more distinct values than this is noise that deflate cannot shrink.
_MAX_DISTINCT_IN_PACKED_PLANE: Final = 64


def _pack(typecode: str, values: Sequence[float] | Sequence[int]) -> bytes:
    packed = array(typecode, values)
    if _BIG_ENDIAN:  # pragma: no cover - stored little-endian everywhere
        packed.byteswap()
    return packed.tobytes()


def _unpack(typecode: str, data: bytes) -> list[Any]:
    unpacked = array(typecode)
    unpacked.frombytes(data)
    if _BIG_ENDIAN:  # pragma: no cover
        unpacked.byteswap()
    return unpacked.tolist()


def encode_steps(steps: Sequence[int]) -> bytes:
    """Ascending steps, compactly: an arithmetic run as (first, stride, count) in 25 bytes;
    else a bitmap over first..last (steps logged with a few gaps: 13 bytes per 100 steps) or
    zlib-compressed int64 deltas (sparse steps), whichever is smaller."""
    if not steps:
        return _RANGE_TAG + struct.pack("<qqq", 0, 0, 0)
    stride = steps[1] - steps[0] if len(steps) > 1 else 1
    if stride <= INT64_MAX and all(b - a == stride for a, b in pairwise(steps)):
        return _RANGE_TAG + struct.pack("<qqq", steps[0], stride, len(steps))
    differences = [steps[0], *map(sub, steps[1:], steps)]
    if max(differences) > INT64_MAX:  # steps far apart (-1 and 2**63 - 1): wrap around
        differences = [_as_int64(difference) for difference in differences]
    deltas = _DELTAS_TAG + zlib.compress(_pack("q", differences), 6)
    first, span = steps[0], steps[-1] - steps[0] + 1
    if span // 8 + 9 >= len(deltas):
        return deltas
    flags = bytearray(span)
    for step in steps:
        flags[step - first] = 1
    # flag i becomes bit i: the flags, last first, read as one binary number
    bits = int(flags[::-1].translate(_FLAG_DIGITS), 2)
    return _BITMAP_TAG + struct.pack("<q", first) + bits.to_bytes((span + 7) // 8, "little")


def decode_steps(data: bytes) -> list[int]:
    tag, body = data[:1], data[1:]
    if tag == _RANGE_TAG:
        first, stride, count = struct.unpack("<qqq", body)
        return [first + stride * index for index in range(count)]
    if tag == _BITMAP_TAG:
        if len(body) < 8:
            raise CorruptDataError("corrupt history steps: a bitmap without its first step")
        (first,) = struct.unpack_from("<q", body)
        flags = b"".join(_BYTE_FLAGS[byte] for byte in body[8:])
        return list(itertools.compress(itertools.count(first), flags))
    if tag != _DELTAS_TAG:
        raise CorruptDataError(f"corrupt history steps: unknown encoding {tag!r}")
    differences = _unpack("q", zlib.decompress(body))
    steps = list(accumulate(differences))
    # Ascending steps have positive differences; a negative one was wrapped (encode_steps).
    if len(differences) > 1 and min(differences[1:]) < 0:
        steps = [_as_int64(step) for step in steps]
    return steps


def _as_int64(number: int) -> int:
    """``number`` modulo 2**64, as a signed 64-bit integer (two's complement wrap-around)."""
    return (number - INT64_MIN) % 2**64 + INT64_MIN


def pack_planes(data: bytes) -> bytes | None:
    """Little-endian 8-byte numbers as byte planes, smaller; None when that saves nothing.

    Byte ``j`` of every number forms plane ``j``. In a metric series some planes take few
    distinct values: the high ones (sign, exponent, leading mantissa bits) and, in values
    that came from float32 tensors or small ints, the all-zero low ones. Those planes are
    deflated together; the noisy planes are stored as they are, since deflate only adds bytes
    to noise. :func:`unpack_planes` gives back the same bytes. Layout: one byte whose bit
    ``j`` says plane ``j`` is deflated; the raw-deflate stream of the deflated planes; the
    other planes; planes in ascending ``j`` within each part.
    """
    count = len(data) // 8
    if count < _MIN_PACKED_POINTS:
        return None
    planes = [data[byte::8] for byte in range(8)]
    repetitive = min(count // 2, _MAX_DISTINCT_IN_PACKED_PLANE)
    chosen = [len(set(plane)) <= repetitive for plane in planes]
    if not any(chosen):
        return None
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = compressor.compress(b"".join(itertools.compress(planes, chosen)))
    packed += compressor.flush()
    if len(packed) + 1 >= sum(chosen) * count:
        return None
    mask = sum(1 << byte for byte in range(8) if chosen[byte])
    stored = (plane for plane, deflated in zip(planes, chosen, strict=True) if not deflated)
    return bytes([mask]) + packed + b"".join(stored)


def unpack_planes(data: bytes) -> bytes:
    """The little-endian 8-byte numbers that :func:`pack_planes` packed."""
    mask = data[0] if data else 0
    deflated = [byte for byte in range(8) if mask >> byte & 1]
    if not deflated:
        raise CorruptDataError("corrupt history values: no packed byte planes")
    decompressor = zlib.decompressobj(-15)
    try:
        high = decompressor.decompress(data[1:])
    except zlib.error as exc:
        raise CorruptDataError(f"corrupt history values: {exc}") from None
    low = decompressor.unused_data
    count = len(high) // len(deflated)
    if (
        not decompressor.eof
        or not high
        or len(high) != len(deflated) * count
        or len(low) != (8 - len(deflated)) * count
    ):
        raise CorruptDataError("corrupt history values: byte planes missing or of unequal length")
    order = deflated + [byte for byte in range(8) if not mask >> byte & 1]
    planes = high + low
    numbers = bytearray(8 * count)
    for position, byte in enumerate(order):
        numbers[byte::8] = planes[position * count : (position + 1) * count]
    return bytes(numbers)


def value_kind(values: Iterable[Any]) -> str:
    """``int`` when every value is an int, ``float`` when every value is a number, else ``json``.

    Ints mixed into a float series come back as equal floats (``1`` → ``1.0``).
    """
    values = list(values)
    types = {type(value) for value in values}
    if types <= {float}:
        return "float"
    if not types <= {int, float}:  # bool, str, dict, list, None, subclasses
        return "json"
    ints = [value for value in values if type(value) is int]
    if not all(INT64_MIN <= value <= INT64_MAX for value in ints):
        return "json"
    if float not in types:
        return "int"
    # An int in a float series comes back as the equal float; one too big to be exact in a
    # float64 keeps the whole series as JSON instead, so no value changes.
    return "float" if all(abs(value) <= _FLOAT_EXACT_INT for value in ints) else "json"


@dataclass(frozen=True)
class EncodedSeries:
    kind: str
    num_points: int
    first_step: int
    last_step: int
    step_data: bytes
    value_data: bytes | None
    value_json: list[Any] | None


def encode_series(points: Mapping[int, Any]) -> EncodedSeries:
    steps = sorted(points)
    values = [points[step] for step in steps]
    kind = value_kind(values)
    value_data: bytes | None = None
    value_json: list[Any] | None = None
    if kind == "json":
        value_json = values
    else:
        value_data = _pack(_TYPECODES[kind], values)
        if (packed := pack_planes(value_data)) is not None:
            kind, value_data = f"{kind}{_PACKED_SUFFIX}", packed
    return EncodedSeries(
        kind, len(steps), steps[0], steps[-1], encode_steps(steps), value_data, value_json
    )


def decode_series(
    kind: str, step_data: bytes, value_data: bytes | None, value_json: Any
) -> dict[int, Any]:
    steps = decode_steps(step_data)
    if kind == "json":
        values = list(value_json or [])
    else:
        number_kind = kind.removesuffix(_PACKED_SUFFIX)
        if number_kind not in _TYPECODES or value_data is None:
            raise CorruptDataError(f"corrupt history row: kind {kind!r} without values")
        if kind.endswith(_PACKED_SUFFIX):
            value_data = unpack_planes(value_data)
        values = _unpack(_TYPECODES[number_kind], value_data)
    if len(values) != len(steps):
        raise CorruptDataError(f"corrupt history row: {len(steps)} steps but {len(values)} values")
    return dict(zip(steps, values, strict=True))
