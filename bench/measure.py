"""Timing and answer checks: every figure is a median over repetitions with its spread.

A *result* is one system's figure in one scenario (ours, a raw-driver limit, MLflow). Before
a reference system is timed, its answer is compared with ours; a mismatch is recorded and
the system is not timed.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# Fast calls are repeated until at least this much time was spent on them (more samples,
# steadier medians on a noisy machine), but never more than MAX_SAMPLES times.
MIN_TOTAL_SECONDS: Final = 0.5
MAX_SAMPLES: Final = 200

OURS: Final = "ours"
RAW: Final = "raw"
MLFLOW: Final = "mlflow"


@dataclass
class Result:
    """One system's figure: per-repetition seconds and the work done in each repetition.

    ``unit`` is ``ms`` (latency per call: lower is better) or a rate such as ``values/s``
    (higher is better). ``seconds`` is empty when the system was not timed (``note`` says why).
    """

    scenario: str
    backend: str
    system: str
    label: str
    unit: str
    kind: str = OURS
    seconds: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    check: str = "ok"
    note: str = ""

    @property
    def timed(self) -> bool:
        return bool(self.seconds)

    @property
    def is_latency(self) -> bool:
        return self.unit == "ms"

    def figures(self) -> list[float]:
        """Per-repetition figures in ``unit``."""
        if self.is_latency:
            return [1000.0 * s / w for s, w in zip(self.seconds, self.work, strict=True)]
        return [w / s for s, w in zip(self.seconds, self.work, strict=True)]

    def cost(self) -> list[float]:
        """Per-repetition seconds per unit of work: what ratios compare."""
        return [s / w for s, w in zip(self.seconds, self.work, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.figures())

    @property
    def median_cost(self) -> float:
        return statistics.median(self.cost())

    @property
    def spread(self) -> tuple[float, float]:
        values = self.figures()
        return min(values), max(values)

    @property
    def iqr(self) -> tuple[float, float]:
        values = sorted(self.figures())
        if len(values) < 4:
            return values[0], values[-1]
        quartiles = statistics.quantiles(values, n=4, method="inclusive")
        return quartiles[0], quartiles[2]

    @property
    def samples(self) -> int:
        return len(self.seconds)


def cost_ratio(numerator: Result | None, denominator: Result | None) -> float | None:
    """Median cost of ``numerator`` over median cost of ``denominator`` (>1: numerator slower)."""
    if numerator is None or denominator is None:
        return None
    if not (numerator.timed and denominator.timed):
        return None
    return numerator.median_cost / denominator.median_cost


def time_calls(
    call: Callable[[], Any],
    repeat: int,
    *,
    work: float = 1.0,
    min_total: float = MIN_TOTAL_SECONDS,
    max_samples: int = MAX_SAMPLES,
) -> tuple[list[float], list[float]]:
    """Time ``call`` at least ``repeat`` times (more while the total is under ``min_total``)."""
    seconds: list[float] = []
    total = 0.0
    with settled_heap():
        while True:
            started = time.perf_counter()
            call()
            elapsed = time.perf_counter() - started
            seconds.append(elapsed)
            total += elapsed
            enough = len(seconds) >= repeat and total >= min_total
            if enough or len(seconds) >= max_samples:
                break
    return seconds, [work] * len(seconds)


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """Collect, then freeze what exists: the setup's garbage is not charged to the first
    sample, and the collector's full passes do not walk the (large) setup data again."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def time_alternating(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """One call of each in turn, ``rounds`` times, the order flipped every round: a noisy
    moment on the machine hurts every call alike."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with settled_heap():
        for index in range(rounds):
            for name in names if index % 2 else reversed(names):
                started = time.perf_counter()
                calls[name]()
                seconds[name].append(time.perf_counter() - started)
    return seconds


def time_batches(
    batches: Sequence[Callable[[], float]],
) -> tuple[list[float], list[float]]:
    """Time each batch once; a batch returns the work it did (values, runs)."""
    seconds: list[float] = []
    work: list[float] = []
    with settled_heap():
        for batch in batches:
            started = time.perf_counter()
            done = batch()
            seconds.append(time.perf_counter() - started)
            work.append(float(done))
    return seconds, work


# --- answer checks -----------------------------------------------------------------------------


class Mismatch(AssertionError):
    """Two systems gave different answers to the same question."""


def same_float(left: Any, right: Any, *, rel: float = 1e-9) -> bool:
    if left is None or right is None:
        return left is right
    left, right = float(left), float(right)
    if math.isnan(left) or math.isnan(right):
        return math.isnan(left) and math.isnan(right)
    return math.isclose(left, right, rel_tol=rel, abs_tol=1e-12)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def expect_same_ids(ours: Sequence[str], theirs: Sequence[str], *, ordered: bool = True) -> None:
    if ordered:
        expect(
            list(ours) == list(theirs),
            f"run ids differ: ours {_preview(ours)} vs theirs {_preview(theirs)}",
        )
    else:
        missing = sorted(set(ours) - set(theirs))
        extra = sorted(set(theirs) - set(ours))
        expect(
            not missing and not extra,
            f"run id sets differ: only ours {missing[:3]}, only theirs {extra[:3]}",
        )


def expect_same_series(
    what: str, ours: Sequence[tuple[int, float]], theirs: Sequence[tuple[int, float]]
) -> None:
    expect(len(ours) == len(theirs), f"{what}: {len(ours)} points vs {len(theirs)}")
    for (step, value), (other_step, other_value) in zip(ours, theirs, strict=True):
        expect(
            step == other_step and same_float(value, other_value, rel=0.0),
            f"{what}: step {step}={value!r} vs step {other_step}={other_value!r}",
        )


def _preview(ids: Sequence[str]) -> str:
    shown = list(ids)[:3]
    return f"{shown}{'…' if len(ids) > 3 else ''} ({len(ids)})"


def checked(result: Result, check: Callable[[], None]) -> bool:
    """Run an answer check; on a mismatch record it on ``result`` and return False."""
    try:
        check()
    except Mismatch as exc:
        result.check = f"MISMATCH: {exc}"
        result.note = "not timed: the answers differ"
        return False
    return True


def interleaved(
    batches: dict[str, Sequence[Callable[[], float]]],
) -> dict[str, tuple[list[float], list[float]]]:
    """Time repetition ``i`` of every system before repetition ``i + 1`` of any.

    On a shared, noisy machine a slow minute then hurts every system alike instead of
    whichever happened to be running.
    """
    timed: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in batches}
    rounds = max((len(system) for system in batches.values()), default=0)
    for index in range(rounds):
        for name, system in batches.items():
            if index < len(system):
                seconds, work = time_batches([system[index]])
                timed[name][0].extend(seconds)
                timed[name][1].extend(work)
    return timed
