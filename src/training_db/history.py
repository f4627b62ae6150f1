"""W&B history: every logged value of every run, stored losslessly as compact arrays.

Layout (see ``models.RunHistory``): one row per (run, metric) holding that metric's steps
and values as binary arrays, plus a metric-name dictionary (``history_metrics``). A run of
149 keys x 100 steps is 149 small rows instead of ~15,000; reading one metric of one run
is one primary-key lookup; and the runs table never carries history bytes.

Missing versus logged NaN
    W&B's DataFrame marks "not logged at this step" with NaN. In the *columns* shapes
    (``{column: list}`` and a pandas DataFrame) NaN and None therefore mean "not logged"
    and are not stored. In the *rows* shape (``scan_history()``-style dicts, and what
    `log_history` is given during training) a key that is present is a logged
    value, so a diverged loss logged as NaN is stored as NaN; an absent key or None is
    "not logged". Reading returns None for "not logged" and NaN for a logged NaN.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import sub
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db import jsoncodec, portable, runs
from training_db.errors import CorruptDataError, InvalidArgumentError
from training_db.models import HistoryMetric, RunHistory, RunHistoryKeyMetrics
from training_db.runs import lock_run, optional_number, require_run, validate_run_id

STEP_KEY: Final = "_step"
TIMESTAMP_KEY: Final = "_timestamp"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
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

# metric name -> {step: value}
MetricSeries = dict[str, dict[int, Any]]
HistoryColumns = dict[str, list[Any]]


# A W&B objective alias ends in the direction (``COMT_activity_maximize``); without it, it is
# the objective's name.
ALIAS_DIRECTION_SUFFIXES: Final = {"_maximize": "maximize", "_minimize": "minimize"}


def split_objective_alias(alias: str) -> tuple[str, str | None]:
    """``(objective name, direction)`` of a W&B objective alias; direction None without suffix."""
    for suffix, direction in ALIAS_DIRECTION_SUFFIXES.items():
        if alias.endswith(suffix):
            return alias[: -len(suffix)], direction
    return alias, None


@dataclass(frozen=True)
class KeyMetricMapping:
    """Which history keys fill the ``run_history_key_metrics`` columns (first present wins).

    ``objective_scores_json`` holds one score per objective at each step: the value of
    ``objectives/<alias>/<score_metric>`` under the objective's name (the alias without its
    ``_maximize`` / ``_minimize`` suffix, as ``finish_run`` names objectives), e.g.
    ``{"COMT_activity": 0.81, "SA_score": 3.2}``. The score is ``raw_mean`` unless
    ``score_metric`` says otherwise (the metric ``query_runs_by_objectives`` compares by
    default); ``score_metric=None`` leaves the column empty. Every metric of every objective
    stays in the full history either way.
    """

    loss: tuple[str, ...] = ("train/loss", "loss")
    grad_norm: tuple[str, ...] = ("train/grad_norm", "grad_norm")
    learning_rate: tuple[str, ...] = ("train/learning_rate", "learning_rate", "lr")
    objective_prefix: str = "objectives/"
    score_metric: str | None = "raw_mean"
    timestamp: str = TIMESTAMP_KEY

    def source_keys(self) -> set[str]:
        return {*self.loss, *self.grad_norm, *self.learning_rate, self.timestamp}

    def scored_objective(self, key: str) -> str | None:
        """The name of the objective whose score history key ``key`` holds, else None."""
        if self.score_metric is None or not key.startswith(self.objective_prefix):
            return None
        alias, slash, metric = key[len(self.objective_prefix) :].rpartition("/")
        if not slash or metric != self.score_metric:
            return None
        return split_objective_alias(alias)[0] or None

    def score_keys(self, keys: Iterable[str]) -> dict[str, str]:
        """``{history key: objective name}`` for the score keys among ``keys``, in key order
        (two aliases of one objective: the later key's value wins)."""
        return {
            key: objective
            for key in sorted(keys)
            if (objective := self.scored_objective(key)) is not None
        }


DEFAULT_KEY_METRICS: Final = KeyMetricMapping()


# --- input shapes -----------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _step_number(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{where}: a step must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value).__module__ == "numpy":
        value = jsoncodec.to_jsonable(value)
        return _step_number(value, where)
    if not isinstance(value, int):
        raise InvalidArgumentError(f"{where}: a step must be a whole number, got {value!r}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidArgumentError(f"{where}: step {value} does not fit in 64 bits")
    return value


def normalize_history(history: Any) -> MetricSeries:
    """Any supported history shape → ``{metric: {step: value}}`` (see the module docstring).

    Shapes: a pandas DataFrame; a dict of column → list (``_step`` gives the steps, else
    0..n-1); a list of row dicts (``_step`` in each row, else the row's position); a single
    row dict of scalars.
    """
    if _looks_like_dataframe(history):
        columns = {str(name): history[name].tolist() for name in history.columns}
        return _from_columns(columns)
    if isinstance(history, Mapping):
        if any(isinstance(value, (list, tuple)) for value in history.values()):
            return _from_columns(history)
        return _from_rows([history])
    if isinstance(history, (list, tuple)):
        return _from_rows(history)
    raise InvalidArgumentError(
        "history must be a dict of column -> list, a list of row dicts, a single row dict or "
        f"a pandas DataFrame; got {type(history).__name__}"
    )


def _looks_like_dataframe(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "iloc") and not isinstance(value, Mapping)


def _from_columns(columns: Mapping[Any, Any]) -> MetricSeries:
    lengths = {len(values) for values in columns.values() if isinstance(values, (list, tuple))}
    if any(not isinstance(values, (list, tuple)) for values in columns.values()):
        raise InvalidArgumentError("history columns must all be lists")
    if len(lengths) > 1:
        raise InvalidArgumentError(
            f"history columns must have the same length, got lengths {sorted(lengths)}"
        )
    length = lengths.pop() if lengths else 0
    raw_steps = columns.get(STEP_KEY)
    steps: list[int | None]
    if raw_steps is None:
        steps = list(range(length))
    else:
        steps = [
            None if _is_missing(step) else _step_number(step, f"history[{STEP_KEY!r}][{index}]")
            for index, step in enumerate(raw_steps)
        ]
    series: MetricSeries = {}
    for name, values in columns.items():
        key = _metric_name(name)
        if key == STEP_KEY:
            continue
        points = series.setdefault(key, {})
        for index, (step, value) in enumerate(zip(steps, values, strict=True)):
            if step is None:
                continue
            value_type = type(value)
            # The common case first: plain floats and ints need no conversion.
            if value_type is float:
                if not math.isnan(value):  # NaN is "not logged" in the columns shapes
                    points[step] = value
            elif value_type is int:
                points[step] = value
            elif not _is_missing(value):
                points[step] = jsoncodec.to_jsonable(value, f"history[{key!r}][{index}]")
    return {key: points for key, points in series.items() if points}


def _from_rows(rows: Iterable[Any]) -> MetricSeries:
    series: MetricSeries = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidArgumentError(
                f"history row {index} must be a dict, got {type(row).__name__}"
            )
        raw_step = row.get(STEP_KEY, index)
        step = _step_number(raw_step, f"history row {index} {STEP_KEY}")
        for name, value in row.items():
            key = _metric_name(name)
            if key == STEP_KEY or value is None:
                continue
            series.setdefault(key, {})[step] = jsoncodec.to_jsonable(
                value, f"history row {index}[{key!r}]"
            )
    return series


def _metric_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"history keys must be non-empty strings, got {name!r}")
    if "\x00" in name:
        raise InvalidArgumentError(f"history key {name!r} contains a NUL character")
    jsoncodec.check_unicode(name)
    return name


# --- compact arrays ---------------------------------------------------------------------------


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
    if stride <= _INT64_MAX and all(b - a == stride for a, b in pairwise(steps)):
        return _RANGE_TAG + struct.pack("<qqq", steps[0], stride, len(steps))
    differences = [steps[0], *map(sub, steps[1:], steps)]
    if max(differences) > _INT64_MAX:  # steps far apart (-1 and 2**63 - 1): wrap around
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
    return (number - _INT64_MIN) % 2**64 + _INT64_MIN


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
    if not all(_INT64_MIN <= value <= _INT64_MAX for value in ints):
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


# --- repository -------------------------------------------------------------------------------


def metric_ids(session: Session, names: Iterable[str], *, create: bool) -> dict[str, int]:
    """Ids of metric names in the dictionary, adding the missing ones when ``create``."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    found: dict[str, int] = dict(
        session.execute(
            sa.select(HistoryMetric.name, HistoryMetric.id).where(HistoryMetric.name.in_(wanted))
        ).all()
    )
    missing = [name for name in wanted if name not in found]
    if missing and create:
        portable.insert_ignoring_conflicts(
            session, HistoryMetric.__table__, [{"name": name} for name in missing], ("name",)
        )
        added = sa.select(HistoryMetric.name, HistoryMetric.id).where(
            HistoryMetric.name.in_(missing)
        )
        found.update(session.execute(added).all())
    return found


def log_history(
    session: Session,
    run_id: str,
    history: Any,
    key_metrics: KeyMetricMapping = DEFAULT_KEY_METRICS,
) -> int:
    """Merge ``history`` into the run's stored history; returns the number of values written.

    A (metric, step) logged again replaces the earlier value; everything else is kept, so
    calling this every N steps during training and once more at the end is safe.
    """
    validate_run_id(run_id)
    incoming = normalize_history(history)
    # Read-merge-write below: writers of one run take turns (two ranks of one trainer).
    lock_run(session, run_id)
    if not incoming:
        return 0
    ids = metric_ids(session, incoming, create=True)
    existing = _load_series(session, run_id, [ids[name] for name in incoming])
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    merged_series: MetricSeries = {}
    for name, points in incoming.items():
        metric_id = ids[name]
        merged = existing.get(metric_id, {})
        merged.update(points)
        merged_series[name] = merged
        encoded = encode_series(merged)
        row = {"run_id": run_id, "metric_id": metric_id, **encoded.__dict__}
        (updates if metric_id in existing else inserts).append(row)
    if inserts:
        # Core INSERT (executemany, batched by the drivers), not the ORM's bulk path.
        session.execute(sa.insert(_HISTORY_TABLE), inserts)
    if updates:
        session.execute(sa.update(RunHistory), updates)
    steps = sorted({step for points in incoming.values() for step in points})
    _store_key_metrics(session, run_id, steps, merged_series, key_metrics)
    return sum(len(points) for points in incoming.values())


def _load_series(session: Session, run_id: str, ids: Sequence[int]) -> dict[int, dict[int, Any]]:
    rows = session.execute(
        sa.select(
            RunHistory.metric_id,
            RunHistory.kind,
            RunHistory.step_data,
            RunHistory.value_data,
            RunHistory.value_json,
        ).where(RunHistory.run_id == run_id, RunHistory.metric_id.in_(ids))
    )
    return {
        metric_id: decode_series(kind, step_data, value_data, value_json)
        for metric_id, kind, step_data, value_data, value_json in rows
    }


def _store_key_metrics(
    session: Session,
    run_id: str,
    steps: Sequence[int],
    series: MetricSeries,
    mapping: KeyMetricMapping,
) -> None:
    """Write the key-metric rows of ``steps`` from the merged series touched by this call."""
    touched = mapping.source_keys() | mapping.score_keys(series).keys()
    relevant = {name: series[name] for name in touched if name in series}
    if not relevant:
        return
    # Keys not touched by this call may still fill a column at these steps: read them too.
    untouched = [key for key in mapping.source_keys() if key not in relevant]
    relevant |= _stored_series(session, run_id, metric_ids(session, untouched, create=False))
    rows = _key_metrics_rows(run_id, steps, relevant, mapping)
    if not rows:
        return
    # Steps the run has no row for yet (all of them, the first time) take a plain INSERT,
    # which the drivers batch; only steps logged again need the slower upsert.
    existing = set(
        session.scalars(
            sa.select(RunHistoryKeyMetrics.step).where(
                RunHistoryKeyMetrics.run_id == run_id,
                RunHistoryKeyMetrics.step.between(rows[0]["step"], rows[-1]["step"]),
            )
        )
    )
    fresh = [row for row in rows if row["step"] not in existing]
    if fresh:
        session.execute(sa.insert(_KEY_METRICS_TABLE), fresh)
    again = [row["step"] for row in rows if row["step"] in existing]
    if again:
        # A step that has a row may hold the scores of objectives this call did not log.
        scores = _stored_score_ids(session, run_id, mapping)
        relevant |= _stored_series(
            session, run_id, {key: id_ for key, id_ in scores.items() if key not in relevant}
        )
        portable.upsert_many(
            session,
            RunHistoryKeyMetrics.__table__,
            _key_metrics_rows(run_id, again, relevant, mapping),
            conflict_columns=("run_id", "step"),
            update_columns=_KEY_METRIC_COLUMNS,
        )


def _stored_series(session: Session, run_id: str, ids: Mapping[str, int]) -> MetricSeries:
    """This run's stored series of the metrics ``{name: id}`` (unlogged ones left out)."""
    if not ids:
        return {}
    names = {metric_id: name for name, metric_id in ids.items()}
    return {
        names[metric_id]: points
        for metric_id, points in _load_series(session, run_id, list(ids.values())).items()
    }


def _stored_score_ids(session: Session, run_id: str, mapping: KeyMetricMapping) -> dict[str, int]:
    """``{name: metric id}`` of the objective-score history keys this run has logged."""
    found: dict[str, int] = dict(
        session.execute(
            sa.select(HistoryMetric.name, HistoryMetric.id)
            .join(RunHistory, RunHistory.metric_id == HistoryMetric.id)
            .where(RunHistory.run_id == run_id)
            .where(HistoryMetric.name.startswith(mapping.objective_prefix, autoescape=True))
        ).all()
    )
    return {name: found[name] for name in mapping.score_keys(found)}


_HISTORY_TABLE: Final = cast(sa.Table, RunHistory.__table__)
_KEY_METRICS_TABLE: Final = cast(sa.Table, RunHistoryKeyMetrics.__table__)
_KEY_METRIC_COLUMNS: Final = (
    "loss",
    "grad_norm",
    "learning_rate",
    "objective_scores_json",
    "timestamp",
)


def _first_number(series: MetricSeries, keys: Sequence[str], step: int) -> float | None:
    for key in keys:
        value = series.get(key, {}).get(step)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return optional_number(key, value)
            except InvalidArgumentError:  # an int no float holds: exact in the history only
                return None
    return None


def _key_metrics_rows(
    run_id: str, steps: Iterable[int], series: MetricSeries, mapping: KeyMetricMapping
) -> list[dict[str, Any]]:
    """The key-metric rows of ``steps``; a step with no key metric gets no row."""
    scored = [(series[key], objective) for key, objective in mapping.score_keys(series).items()]
    stamps = series.get(mapping.timestamp, {})
    rows = []
    for step in steps:
        scores = {objective: points[step] for points, objective in scored if step in points}
        row = {
            "run_id": run_id,
            "step": step,
            "loss": _first_number(series, mapping.loss, step),
            "grad_norm": _first_number(series, mapping.grad_norm, step),
            "learning_rate": _first_number(series, mapping.learning_rate, step),
            "objective_scores_json": scores or None,
            "timestamp": _timestamp(stamps.get(step)),
        }
        if scores or any(row[name] is not None for name in ("loss", "grad_norm", "learning_rate")):
            rows.append(row)
    return rows


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def get_history(
    session: Session,
    run_id: str,
    keys: Sequence[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> HistoryColumns:
    """The run's history as columns aligned on ``_step`` (None where a key was not logged)."""
    validate_run_id(run_id)
    if isinstance(keys, str):
        keys = [keys]
    lower = None if min_step is None else _step_number(min_step, "min_step")
    upper = None if max_step is None else _step_number(max_step, "max_step")
    require_run(session, run_id)
    statement = (
        sa.select(
            HistoryMetric.name,
            RunHistory.kind,
            RunHistory.step_data,
            RunHistory.value_data,
            RunHistory.value_json,
        )
        .join(HistoryMetric, HistoryMetric.id == RunHistory.metric_id)
        .where(RunHistory.run_id == run_id)
    )
    if keys is not None:
        names = [_metric_name(key) for key in keys]
        statement = statement.where(HistoryMetric.name.in_(names))
    if lower is not None:
        statement = statement.where(RunHistory.last_step >= lower)
    if upper is not None:
        statement = statement.where(RunHistory.first_step <= upper)
    series: MetricSeries = {}
    for name, kind, step_data, value_data, value_json in session.execute(statement):
        points = decode_series(kind, step_data, value_data, value_json)
        if lower is not None or upper is not None:
            points = {
                step: value
                for step, value in points.items()
                if (lower is None or step >= lower) and (upper is None or step <= upper)
            }
        series[name] = points
    return to_columns(series)


def to_columns(series: Mapping[str, Mapping[int, Any]]) -> HistoryColumns:
    """``{metric: {step: value}}`` → ``{'_step': [...], metric: [... None where absent]}``."""
    if len(series) == 1:  # one metric (the common read): no union of steps to build
        ((name, points),) = series.items()
        steps = list(points)
        if any(later <= earlier for earlier, later in pairwise(steps)):
            steps.sort()
        return {STEP_KEY: steps, name: [points[step] for step in steps]}
    steps = sorted({step for points in series.values() for step in points})
    columns: HistoryColumns = {STEP_KEY: steps}
    for name in sorted(series):
        points = series[name]
        columns[name] = [points.get(step) for step in steps]
    return columns


def has_history(session: Session, run_id: str) -> bool:
    return (
        session.scalar(sa.select(RunHistory.metric_id).where(RunHistory.run_id == run_id).limit(1))
        is not None
    )


def delete_history(session: Session, run_id: str) -> int:
    """Remove a run's history and key metrics; returns the number of metric rows removed."""
    validate_run_id(run_id)
    lock_run(session, run_id)
    session.execute(sa.delete(RunHistoryKeyMetrics).where(RunHistoryKeyMetrics.run_id == run_id))
    result = session.execute(sa.delete(RunHistory).where(RunHistory.run_id == run_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def update_run_status_with_history(
    session: Session,
    /,
    run_id: str,
    status: str,
    history_json: Any,
    key_metrics: KeyMetricMapping = DEFAULT_KEY_METRICS,
    **fields: Any,
) -> None:
    """``update_run_status`` plus a history (the seed's ``history_json=``), in one transaction."""
    runs.update_run_status(session, run_id, status, **fields)
    if history_json is not None:
        log_history(session, run_id, history_json, key_metrics)


def history_json(session: Session, run_id: str) -> str | None:
    """The run's history as the JSON text of its columns dict, or None without history."""
    if not has_history(session, run_id):
        return None
    return jsoncodec.dumps(get_history(session, run_id))


def metric_series(
    session: Session, metric: str, run_ids: Sequence[str]
) -> dict[str, dict[int, Any]]:
    """One metric of many runs in one query: ``run_id -> {step: value}``."""
    name = _metric_name(metric)
    if not run_ids:
        return {}
    rows = session.execute(
        sa.select(
            RunHistory.run_id,
            RunHistory.kind,
            RunHistory.step_data,
            RunHistory.value_data,
            RunHistory.value_json,
        )
        .join(HistoryMetric, HistoryMetric.id == RunHistory.metric_id)
        .where(HistoryMetric.name == name, RunHistory.run_id.in_(list(run_ids)))
    )
    return {
        run_id: decode_series(kind, step_data, value_data, value_json)
        for run_id, kind, step_data, value_data, value_json in rows
    }
