"""Questions asked of one training curve: where it plateaus, where it spikes, where two diverge.

Pure Python over plain lists, so the functions work on whatever the history module returns
(a *columns* dict, ``{"_step": [...], "train/loss": [...]}``) without numpy or pandas.

Every detector takes a series as two aligned sequences, ``steps`` (whole numbers, strictly
increasing) and ``values``, and answers with step numbers, never list positions: steps are
what a plot's x axis and W&B show. All window sizes count *logged points*, not step numbers;
with a metric logged every 10 steps, ``window=10`` spans 100 steps.

Thresholds are relative to the series itself (its range, or its rolling median absolute
deviation) so one default suits a loss near 0.01 and a reward near 500 alike.
"""

from __future__ import annotations

import itertools
import math
import numbers
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal

from training_db.core.errors import InvalidArgumentError
from training_db.store.history import STEP_KEY

Direction = Literal["maximize", "minimize"]
DIRECTIONS: Final = ("maximize", "minimize")

# The MAD used by detect_spikes is never below these, so a perfectly flat stretch (MAD 0)
# still has a scale: a real jump off it is a spike, while float rounding noise
# (~1e-16 relative) is not. Relative to the rolling median, with an absolute floor for
# series that sit at 0.
MAD_FLOOR_RELATIVE: Final = 1e-6
MAD_FLOOR_ABSOLUTE: Final = 1e-12


# --- input ------------------------------------------------------------------------------------


def series_points(
    columns: Mapping[str, Sequence[Any]], key: str, *, keep_non_finite: bool = False
) -> tuple[list[int], list[float]]:
    """The ``(steps, values)`` of one metric from a columns dict, ready for the detectors.

    Rows where ``key`` was not logged (None) or holds something that is not a real number
    (a string, a dict of a histogram, a bool) are skipped. NaN and +/-inf are skipped too,
    because plateau and divergence need finite values; pass ``keep_non_finite=True`` to
    keep them for `detect_spikes`, which reports them as instabilities.
    A metric the columns dict does not have gives two empty lists.

    Raises ValueError when ``_step`` is missing, a column's length differs from
    ``_step``'s, or a step of a kept row is not a whole number.
    """
    if STEP_KEY not in columns:
        raise InvalidArgumentError(
            f"columns has no {STEP_KEY!r} column; keys are {sorted(columns)}"
        )
    if key not in columns:
        return [], []
    step_column, value_column = columns[STEP_KEY], columns[key]
    if len(value_column) != len(step_column):
        raise InvalidArgumentError(
            f"column {key!r} has {len(value_column)} values but {STEP_KEY!r} has "
            f"{len(step_column)}; a columns dict must be aligned on {STEP_KEY!r}"
        )
    steps: list[int] = []
    values: list[float] = []
    for raw_step, raw_value in zip(step_column, value_column, strict=True):
        value = _as_float(raw_value)
        if value is None or not (keep_non_finite or math.isfinite(value)):
            continue
        steps.append(_as_step(raw_step))
        values.append(value)
    return steps, values


def _as_float(value: Any) -> float | None:
    """``value`` as a float if it is a real number (numpy scalars included), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _as_step(value: Any) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(float(value))
    raise InvalidArgumentError(f"a {STEP_KEY} must be a whole number, got {value!r}")


def _check_series(steps: Sequence[int], values: Sequence[float], *, finite: bool) -> None:
    """Reject input the detectors cannot answer for, naming the offending step."""
    if len(steps) != len(values):
        raise InvalidArgumentError(f"steps has {len(steps)} items but values has {len(values)}")
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise InvalidArgumentError(
                f"steps must be strictly increasing, got {before} then {after}"
            )
    if finite:
        for step, value in zip(steps, values, strict=True):
            if not math.isfinite(value):
                raise InvalidArgumentError(
                    f"value at step {step} is {value!r}; drop non-finite values first "
                    "(series_points does by default)"
                )


def _check_window(window: int) -> None:
    if window < 1:
        raise InvalidArgumentError(f"window must be at least 1, got {window}")


def _check_direction(direction: str | None, name: str = "direction") -> None:
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidArgumentError(f"{name} must be one of {DIRECTIONS}, got {direction!r}")


def _window_means(values: Sequence[float], window: int) -> list[float]:
    """Mean of every run of ``window`` consecutive values; item i starts at values[i].

    Each mean is summed afresh rather than from running totals, so equal windows give
    bit-identical means: a flat stretch has exactly zero spread.
    """
    return [sum(values[i : i + window]) / window for i in range(len(values) - window + 1)]


def _value_range(values: Sequence[float]) -> float:
    return max(values) - min(values) if values else 0.0


# --- plateau ----------------------------------------------------------------------------------


def detect_plateau(
    steps: Sequence[int],
    values: Sequence[float],
    *,
    window: int = 10,
    min_relative_change: float = 0.01,
    min_points: int | None = None,
    direction: Direction | None = None,
) -> int | None:
    """The first step from which the metric stops improving for the rest of the run, or None.

    Definition. Let ``m(i)`` be the mean of the ``window`` values starting at point ``i``
    (averaging is what keeps step-to-step noise from hiding a plateau) and
    ``tol = min_relative_change * (max(values) - min(values))``. The plateau starts at the
    first point ``p`` such that

    * at least ``min_points`` points remain from ``p`` (default ``2 * window``), so the last
      few points of a still-improving run do not count as a plateau; and
    * from ``p`` to the end, the rolling mean moves by at most ``tol`` in total:

      - ``direction=None``: ``max(m[p:]) - min(m[p:]) <= tol`` (the metric stops *changing*);
      - ``"minimize"``: no later mean is below an earlier one by more than ``tol``;
      - ``"maximize"``: no later mean is above an earlier one by more than ``tol``
        (with a direction, getting worse is "not improving": overfitting plateaus).

    The answer is ``steps[p]``. The bound is on the *total* movement over the rest of the
    run, not step to step, so a slow steady drift is not mistaken for a plateau however
    small each window's change is. Because each window averages forward, a curve that
    eases gradually into its plateau is reported up to about ``window / 2`` points early.
    A constant series plateaus at its first step. Noisy metrics need a larger ``window``
    (the noise of a window mean shrinks as 1/sqrt(window)) or a larger ``min_relative_change``.

    Returns None when there are fewer than ``2 * window`` (or ``min_points``) points, or
    when the metric is still improving by more than ``tol`` within the last
    ``min_points`` points. Raises ValueError for mismatched lengths, unordered steps,
    non-finite values, or ``min_points < window``.
    """
    _check_window(window)
    _check_direction(direction)
    _check_series(steps, values, finite=True)
    needed = 2 * window if min_points is None else min_points
    if needed < window:
        raise InvalidArgumentError(f"min_points must be at least window ({window}), got {needed}")
    if len(values) < max(needed, 2 * window):
        return None
    tolerance = min_relative_change * _value_range(values)
    signed = [-value for value in values] if direction == "maximize" else list(values)
    means = _window_means(signed, window)
    latest_start = len(values) - needed
    plateau_start: int | None = None
    for start, movement in _tail_movements(means, improvement_only=direction is not None):
        if movement > tolerance:
            break
        if start <= latest_start:
            plateau_start = start
    return None if plateau_start is None else steps[plateau_start]


def _tail_movements(
    means: Sequence[float], *, improvement_only: bool
) -> Iterator[tuple[int, float]]:
    """``(p, movement of means[p:])`` for p from the last point back to the first.

    Movement is the spread (max - min) of the tail, or with ``improvement_only`` the largest
    drop from an earlier to a later mean (lower is better). Both only grow as p moves back.
    """
    highest = lowest = means[-1]
    largest_drop = 0.0
    for start in range(len(means) - 1, -1, -1):
        mean = means[start]
        largest_drop = max(largest_drop, mean - lowest)
        highest, lowest = max(highest, mean), min(lowest, mean)
        yield start, largest_drop if improvement_only else highest - lowest


# --- spikes -----------------------------------------------------------------------------------


def detect_spikes(
    steps: Sequence[int], values: Sequence[float], *, window: int = 10, threshold: float = 5.0
) -> list[int]:
    """Steps where the metric jumps away from its recent level, or is NaN/inf.

    Definition. A finite value at point ``i`` is a spike when
    ``|value - median| > threshold * max(MAD, floor)``, where ``median`` and ``MAD`` (median
    absolute deviation from that median) are taken over the finite values among the
    ``window`` points *before* ``i``. Median and MAD rather than mean and standard deviation
    because one earlier spike must not widen the band that judges the next point. For
    Gaussian noise MAD ~ 0.67 sigma, so the default ``threshold=5`` is about 3.4 sigma.

    ``floor = max(MAD_FLOOR_RELATIVE * |median|, MAD_FLOOR_ABSOLUTE)`` (1e-6 relative,
    1e-12 absolute): on a perfectly flat stretch MAD is 0, and the floor lets a real jump
    off it count as a spike while float rounding noise does not. A constant series never
    has a spike.

    NaN and +/-inf are always spikes (a diverged loss is an instability), including in the
    first ``window`` points; finite values there have no history to judge them and are
    never spikes. A sudden level shift is reported at its first few points, until the
    rolling median catches up (about ``window / 2`` points).

    Only earlier points are consulted, so the same test can run live during training. The
    price: on a trend the median lags about ``(window + 1) / 2`` points behind, and when that
    lag is large next to the noise (a fast-falling, noisy curve) ordinary points can cross
    the threshold; a smaller ``window`` follows such a curve more closely.

    Raises ValueError for mismatched lengths or unordered steps.
    """
    _check_window(window)
    _check_series(steps, values, finite=False)
    return [
        step
        for index, (step, value) in enumerate(zip(steps, values, strict=True))
        if not math.isfinite(value)
        or _is_outlier(value, values[max(0, index - window) : index], window, threshold)
    ]


def _is_outlier(value: float, previous: Sequence[float], window: int, threshold: float) -> bool:
    """Whether ``value`` is more than ``threshold`` MADs from the median of ``previous``."""
    reference = [item for item in previous if math.isfinite(item)]
    if len(previous) < window or not reference:
        return False
    median = statistics.median(reference)
    mad = statistics.median(abs(item - median) for item in reference)
    scale = max(mad, MAD_FLOOR_RELATIVE * abs(median), MAD_FLOOR_ABSOLUTE)
    return abs(value - median) > threshold * scale


# --- divergence -------------------------------------------------------------------------------


def detect_divergence(
    steps_a: Sequence[int],
    values_a: Sequence[float],
    steps_b: Sequence[int],
    values_b: Sequence[float],
    *,
    window: int = 10,
    min_steps: int | None = None,
    min_relative_change: float = 0.01,
    direction_a: Direction = "maximize",
    direction_b: Direction = "maximize",
) -> int | None:
    """The first step from which one objective improves while the other gets worse, or None.

    Definition. Both series are compared on the steps they share. At each shared point
    ``i`` (with ``window`` points on either side available), each series' *trend* is the
    mean of the ``window`` points from ``i`` minus the mean of the ``window`` points before
    ``i``, signed so that positive means better for its ``direction``. A trend counts only
    when larger than ``min_relative_change * that series' range`` (smaller is "flat", and
    flat is not diverging). The objectives diverge at ``i`` when one trend is improving and
    the other worsening; they diverge *consistently* when the same one keeps improving and
    the other keeps worsening for ``min_steps`` consecutive shared points (default
    ``window``; counted in logged points, not step numbers). The answer is the shared step
    where that stretch begins. Each trend compares the window before a point with the
    window after it, so a sharp change of course is reported at about the step it happens.

    The defaults treat both series as scores to maximize; pass ``direction_a="minimize"``
    for a loss. Returns None when the series share fewer than ``2 * window + min_steps - 1``
    steps or never diverge that long. Raises ValueError for mismatched lengths, unordered
    steps, non-finite values, an unknown direction, or ``min_steps < 1``.
    """
    _check_window(window)
    _check_direction(direction_a, "direction_a")
    _check_direction(direction_b, "direction_b")
    _check_series(steps_a, values_a, finite=True)
    _check_series(steps_b, values_b, finite=True)
    needed = window if min_steps is None else min_steps
    if needed < 1:
        raise InvalidArgumentError(f"min_steps must be at least 1, got {needed}")
    shared, aligned_a, aligned_b = _align(steps_a, values_a, steps_b, values_b)
    trends_a = _trend_signs(aligned_a, window, min_relative_change, direction_a)
    trends_b = _trend_signs(aligned_b, window, min_relative_change, direction_b)
    streak = 0
    for offset, (trend_a, trend_b) in enumerate(zip(trends_a, trends_b, strict=True)):
        opposite = trend_a * trend_b < 0
        same_as_before = offset > 0 and trends_a[offset - 1] == trend_a
        streak = (streak + 1 if same_as_before else 1) if opposite else 0
        if streak == needed:
            return shared[window + offset - needed + 1]
    return None


def _align(
    steps_a: Sequence[int],
    values_a: Sequence[float],
    steps_b: Sequence[int],
    values_b: Sequence[float],
) -> tuple[list[int], list[float], list[float]]:
    """The steps both series logged, with each series' values at those steps."""
    by_step_a = dict(zip(steps_a, values_a, strict=True))
    by_step_b = dict(zip(steps_b, values_b, strict=True))
    shared = sorted(by_step_a.keys() & by_step_b.keys())
    return shared, [by_step_a[step] for step in shared], [by_step_b[step] for step in shared]


def _trend_signs(
    values: Sequence[float], window: int, min_relative_change: float, direction: Direction
) -> list[int]:
    """+1 improving, -1 worsening, 0 flat, at each point with a full window on each side."""
    means = _window_means(values, window)
    tolerance = min_relative_change * _value_range(values)
    better = 1.0 if direction == "maximize" else -1.0
    signs = []
    for boundary in range(window, len(values) - window + 1):
        change = better * (means[boundary] - means[boundary - window])
        signs.append(0 if abs(change) <= tolerance else (1 if change > 0 else -1))
    return signs
