"""The curve detectors on constructed series whose answer is known; no database involved.

Tolerances: a plateau or divergence built to start at step S is accepted within half a
window (5 points) of S, the resolution the windowed definitions promise; spikes must be
found exactly.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training_db.ops.analysis import (
    detect_divergence,
    detect_plateau,
    detect_spikes,
    series_points,
)

WINDOW = 10
HALF_WINDOW = WINDOW // 2
STEPS = list(range(120))

finite_floats = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


def exponential_flattening_at(step: int, length: int = 120) -> list[float]:
    """exp decay from 1 that is within 1% of its range of the floor from ``step`` on."""
    rate = math.log(100) / step
    return [math.exp(-rate * t) for t in range(length)]


def ramp_then_flat(kink: int, length: int = 120, noise: float = 0.002) -> list[float]:
    """Falls linearly from 1 to 0 until ``kink``, then flat, with small deterministic noise."""
    rng = random.Random(7)
    return [max(0.0, 1 - t / kink) + rng.uniform(-noise, noise) for t in range(length)]


def rising_until(peak: int, length: int = 100) -> list[float]:
    """Rises by 0.01 per step until ``peak``, then falls by 0.01 per step."""
    return [t / 100 if t <= peak else (2 * peak - t) / 100 for t in range(length)]


# --- series_points ----------------------------------------------------------------------------


def test_series_points_keeps_only_logged_finite_numbers() -> None:
    columns = {
        "_step": [0, 1, 2, 3, 4, 5, 6, 7, 8],
        "train/loss": [0.9, None, 0.7, "n/a", {"hist": 1}, True, math.nan, math.inf, 3],
    }
    assert series_points(columns, "train/loss") == ([0, 2, 8], [0.9, 0.7, 3.0])


def test_series_points_can_keep_non_finite_for_spike_detection() -> None:
    columns = {"_step": [0, 1, 2, 3], "train/loss": [0.9, math.nan, None, -math.inf]}
    steps, values = series_points(columns, "train/loss", keep_non_finite=True)
    assert steps == [0, 1, 3]
    assert values[0] == 0.9
    assert math.isnan(values[1])
    assert values[2] == -math.inf


def test_series_points_converts_whole_float_steps_and_returns_ints() -> None:
    steps, _ = series_points({"_step": [0.0, 10.0], "lr": [1e-3, 1e-4]}, "lr")
    assert steps == [0, 10]
    assert all(type(step) is int for step in steps)


def test_series_points_accepts_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    columns = {"_step": [np.int64(0), np.int64(1)], "loss": [np.float32(0.5), np.float64(0.25)]}
    assert series_points(columns, "loss") == ([0, 1], [0.5, 0.25])


def test_series_points_of_an_unlogged_metric_is_empty() -> None:
    assert series_points({"_step": [0, 1], "train/loss": [1.0, 0.5]}, "eval/loss") == ([], [])


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"train/loss": [1.0]}, "no '_step' column"),
        ({"_step": [0, 1], "train/loss": [1.0]}, "has 1 values but '_step' has 2"),
        ({"_step": [0.5], "train/loss": [1.0]}, "whole number"),
    ],
)
def test_series_points_rejects_malformed_columns(
    columns: dict[str, list[float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        series_points(columns, "train/loss")


@given(st.lists(st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3)), max_size=40))
def test_series_points_returns_aligned_finite_points(raw_values: list[object]) -> None:
    columns = {"_step": list(range(len(raw_values))), "m": raw_values}
    steps, values = series_points(columns, "m")
    assert len(steps) == len(values)
    assert steps == sorted(set(steps))
    assert all(math.isfinite(value) for value in values)
    kept = [raw for raw in raw_values if isinstance(raw, int | float) and math.isfinite(raw)]
    assert values == [float(raw) for raw in kept]


# --- detect_plateau ---------------------------------------------------------------------------


def test_plateau_of_exponential_decay_found_within_half_a_window() -> None:
    plateau = detect_plateau(STEPS, exponential_flattening_at(60), window=WINDOW)
    assert plateau is not None
    # Forward windows report a gradual approach early, never late.
    assert 60 - HALF_WINDOW <= plateau <= 60


def test_plateau_after_a_kink_found_within_half_a_window() -> None:
    plateau = detect_plateau(STEPS, ramp_then_flat(60), window=WINDOW)
    assert plateau is not None
    assert abs(plateau - 60) <= HALF_WINDOW


def test_plateau_is_reported_as_a_step_number_not_a_position() -> None:
    steps = [step * 10 for step in STEPS]
    plateau = detect_plateau(steps, ramp_then_flat(60), window=WINDOW)
    assert plateau is not None
    assert plateau % 10 == 0
    assert abs(plateau - 600) <= HALF_WINDOW * 10


def test_steadily_decreasing_line_never_plateaus() -> None:
    assert detect_plateau(STEPS, [1 - t / 119 for t in STEPS], window=WINDOW) is None


def test_constant_series_plateaus_at_its_first_step() -> None:
    steps = list(range(5, 25))
    assert detect_plateau(steps, [0.3] * 20, window=WINDOW) == 5


def test_plateau_needs_two_windows_of_points() -> None:
    assert detect_plateau(list(range(19)), [0.3] * 19, window=WINDOW) is None
    assert detect_plateau([], [], window=WINDOW) is None


def test_plateau_must_last_min_points() -> None:
    # Improves until step 105, flat for the last 15 points only.
    values = ramp_then_flat(105, noise=0.0)
    assert detect_plateau(STEPS, values, window=WINDOW) is None
    late = detect_plateau(STEPS, values, window=WINDOW, min_points=WINDOW)
    assert late is not None
    assert abs(late - 105) <= HALF_WINDOW


def test_plateau_with_a_direction_ignores_getting_worse() -> None:
    overfitting = [(t - 60) ** 2 / 3600 for t in STEPS]  # loss: best at step 60, then rises
    assert detect_plateau(STEPS, overfitting, window=WINDOW) is None
    plateau = detect_plateau(STEPS, overfitting, window=WINDOW, direction="minimize")
    assert plateau is not None
    assert 60 - 2 * WINDOW <= plateau <= 60
    reward = [-value for value in overfitting]
    assert detect_plateau(STEPS, reward, window=WINDOW, direction="maximize") == plateau
    rising_loss = [t / 100 for t in STEPS]  # never improves: flat from the start
    assert detect_plateau(STEPS, rising_loss, window=WINDOW, direction="minimize") == 0


@pytest.mark.parametrize(
    ("steps", "values", "kwargs", "message"),
    [
        ([0, 1], [1.0], {}, "steps has 2 items but values has 1"),
        ([1, 0], [1.0, 2.0], {}, "strictly increasing"),
        ([0, 1], [1.0, math.nan], {}, "value at step 1 is nan"),
        ([0], [1.0], {"window": 0}, "window must be at least 1"),
        ([0], [1.0], {"min_points": 5}, "min_points must be at least window"),
        ([0], [1.0], {"direction": "up"}, "direction must be one of"),
    ],
)
def test_plateau_rejects_bad_input(
    steps: list[int], values: list[float], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        detect_plateau(steps, values, **kwargs)  # type: ignore[arg-type]


@given(value=finite_floats, length=st.integers(min_value=2 * WINDOW, max_value=80))
def test_constant_series_always_plateaus_at_first_step(value: float, length: int) -> None:
    steps = [3 * t + 7 for t in range(length)]
    assert detect_plateau(steps, [value] * length, window=WINDOW) == 7


@given(st.lists(finite_floats, min_size=2 * WINDOW, max_size=60))
def test_plateau_leaves_at_least_min_points_after_it(values: list[float]) -> None:
    plateau = detect_plateau(list(range(len(values))), values, window=WINDOW)
    assert plateau is None or len(values) - plateau >= 2 * WINDOW


# --- detect_spikes ----------------------------------------------------------------------------


def smooth_decay() -> list[float]:
    return [1 / (1 + 0.05 * t) for t in range(100)]


def test_spikes_injected_at_30_and_70_are_found_exactly() -> None:
    values = smooth_decay()
    values[30] += 1.0
    values[70] -= 0.3
    assert detect_spikes(list(range(100)), values, window=WINDOW) == [30, 70]


def test_smooth_series_has_no_spikes() -> None:
    assert detect_spikes(list(range(100)), smooth_decay(), window=WINDOW) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_spikes(bad: float) -> None:
    values = smooth_decay()
    values[30] += 1.0
    values[50] = bad
    values[70] -= 0.3
    assert detect_spikes(list(range(100)), values, window=WINDOW) == [30, 50, 70]


def test_nan_inside_the_first_window_is_still_a_spike() -> None:
    values = smooth_decay()
    values[2] = math.nan
    assert detect_spikes(list(range(100)), values, window=WINDOW) == [2]


def test_one_jump_off_a_flat_series_is_a_spike() -> None:
    values = [1.0] * 50
    values[25] = 1.5
    assert detect_spikes(list(range(0, 500, 10)), values, window=WINDOW) == [250]


def test_rounding_noise_on_a_flat_series_is_not_a_spike() -> None:
    values = [1000.0] * 50
    values[25] = 1000.0 + 1e-10  # far above the absolute floor, far below the relative one
    assert detect_spikes(list(range(50)), values, window=WINDOW) == []


def test_threshold_sets_how_far_is_a_spike() -> None:
    rng = random.Random(3)
    values = [rng.gauss(0.0, 0.01) for _ in range(60)]
    values[40] = 0.2  # about 20 sigma
    assert 40 in detect_spikes(list(range(60)), values, window=WINDOW, threshold=5.0)
    assert detect_spikes(list(range(60)), values, window=WINDOW, threshold=1000.0) == []


def test_short_and_empty_series_have_no_spikes() -> None:
    assert detect_spikes(list(range(5)), [1.0, 9.0, -4.0, 100.0, 0.0], window=WINDOW) == []
    assert detect_spikes([], [], window=WINDOW) == []


def test_spikes_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="steps has 3 items but values has 2"):
        detect_spikes([0, 1, 2], [1.0, 2.0])


@given(value=finite_floats, length=st.integers(min_value=0, max_value=80))
def test_constant_series_never_has_spikes(value: float, length: int) -> None:
    assert detect_spikes(list(range(length)), [value] * length, window=WINDOW) == []


@given(
    level=st.floats(min_value=-1e6, max_value=1e6),
    jump=st.floats(min_value=1e-3, max_value=1e6),
    position=st.integers(min_value=WINDOW, max_value=49),
)
def test_a_single_jump_off_a_constant_series_is_found(
    level: float, jump: float, position: int
) -> None:
    values = [level] * 50
    values[position] = level + jump * max(1.0, abs(level))
    assert detect_spikes(list(range(50)), values, window=WINDOW) == [position]


# --- detect_divergence ------------------------------------------------------------------------


def test_divergence_when_one_objective_turns_at_40() -> None:
    together = [t / 100 for t in range(100)]
    turned = rising_until(40)
    step = detect_divergence(list(range(100)), together, list(range(100)), turned, window=WINDOW)
    assert step is not None
    assert abs(step - 40) <= HALF_WINDOW


def test_objectives_that_move_together_never_diverge() -> None:
    a = [t / 100 for t in range(100)]
    b = [math.sqrt(t) for t in range(100)]
    assert detect_divergence(list(range(100)), a, list(range(100)), b, window=WINDOW) is None


def test_divergence_follows_each_series_direction() -> None:
    steps = list(range(100))
    loss = [1 - t / 100 for t in steps]  # improving when minimized
    reward = rising_until(40)
    assert (
        detect_divergence(steps, loss, steps, loss[:], window=WINDOW, direction_a="minimize")
        is not None
    )
    step = detect_divergence(
        steps, loss, steps, reward, window=WINDOW, direction_a="minimize", direction_b="maximize"
    )
    assert step is not None
    assert abs(step - 40) <= HALF_WINDOW
    falling_loss_rising_reward = [t / 100 for t in steps]
    assert (
        detect_divergence(
            steps, loss, steps, falling_loss_rising_reward, window=WINDOW, direction_a="minimize"
        )
        is None
    )


def test_divergence_aligns_series_logged_at_different_steps() -> None:
    steps_a = list(range(200))
    steps_b = list(range(0, 200, 2))
    a = [t / 200 for t in steps_a]
    b = [t / 200 if t <= 80 else (160 - t) / 200 for t in steps_b]
    step = detect_divergence(steps_a, a, steps_b, b, window=WINDOW)
    assert step is not None
    assert abs(step - 80) <= HALF_WINDOW * 2


def test_a_short_lived_divergence_needs_min_steps() -> None:
    steps = list(range(100))
    a = [t / 100 for t in steps]
    # b worsens for 8 steps after step 40, then improves again.
    b = [t / 100 if t < 40 else (0.8 - t / 100 if t < 48 else (t - 16) / 100) for t in steps]
    assert detect_divergence(steps, a, steps, b, window=WINDOW) is None
    brief = detect_divergence(steps, a, steps, b, window=WINDOW, min_steps=3)
    assert brief is not None
    assert abs(brief - 40) <= HALF_WINDOW


def test_a_flat_objective_does_not_diverge() -> None:
    steps = list(range(100))
    a = [t / 100 for t in steps]
    assert detect_divergence(steps, a, steps, [0.5] * 100, window=WINDOW) is None


def test_divergence_of_short_or_empty_series_is_none() -> None:
    a = [t / 100 for t in range(19)]
    assert detect_divergence(list(range(19)), a, list(range(19)), a[::-1], window=WINDOW) is None
    assert detect_divergence([], [], [], [], window=WINDOW) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps_a": [0, 1]}, "steps has 2 items but values has 1"),
        ({"values_b": [math.inf]}, "value at step 0 is inf"),
        ({"direction_b": "sideways"}, "direction_b must be one of"),
        ({"min_steps": 0}, "min_steps must be at least 1"),
    ],
)
def test_divergence_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "steps_a": [0],
        "values_a": [1.0],
        "steps_b": [0],
        "values_b": [1.0],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        detect_divergence(**arguments)  # type: ignore[arg-type]


@given(st.lists(finite_floats, max_size=60))
def test_a_series_never_diverges_from_itself(values: list[float]) -> None:
    steps = list(range(len(values)))
    assert detect_divergence(steps, values, steps, values, window=WINDOW, min_steps=1) is None
