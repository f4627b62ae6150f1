"""The shapes a W&B history arrives in, turned into one: ``{metric: {step: value}}``.

Missing versus logged NaN
    W&B's DataFrame marks "not logged at this step" with NaN. In the *columns* shapes
    (``{column: list}`` and a pandas DataFrame) NaN and None therefore mean "not logged"
    and are not stored. In the *rows* shape (``scan_history()``-style dicts, and what
    ``log_history`` is given during training) a key that is present is a logged value, so
    a diverged loss logged as NaN is stored as NaN; an absent key or None is "not logged".
    Reading returns None for "not logged" and NaN for a logged NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any, Final

from training_db.core import jsoncodec
from training_db.core.errors import InvalidArgumentError
from training_db.store.history.codec import INT64_MAX, INT64_MIN

STEP_KEY: Final = "_step"
TIMESTAMP_KEY: Final = "_timestamp"

# metric name -> {step: value}
MetricSeries = dict[str, dict[int, Any]]
HistoryColumns = dict[str, list[Any]]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def step_number(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{where}: a step must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value).__module__ == "numpy":
        value = jsoncodec.to_jsonable(value)
        return step_number(value, where)
    if not isinstance(value, int):
        raise InvalidArgumentError(f"{where}: a step must be a whole number, got {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
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
            None if _is_missing(step) else step_number(step, f"history[{STEP_KEY!r}][{index}]")
            for index, step in enumerate(raw_steps)
        ]
    series: MetricSeries = {}
    for name, values in columns.items():
        key = metric_name(name)
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
        step = step_number(raw_step, f"history row {index} {STEP_KEY}")
        for name, value in row.items():
            key = metric_name(name)
            if key == STEP_KEY or value is None:
                continue
            series.setdefault(key, {})[step] = jsoncodec.to_jsonable(
                value, f"history row {index}[{key!r}]"
            )
    return series


def metric_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"history keys must be non-empty strings, got {name!r}")
    if "\x00" in name:
        raise InvalidArgumentError(f"history key {name!r} contains a NUL character")
    jsoncodec.check_unicode(name)
    return name


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
