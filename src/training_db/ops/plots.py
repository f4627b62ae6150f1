"""Training-curve pictures: PNG files with matplotlib, and unicode sparklines for the terminal.

matplotlib is an optional extra (``pip install 'mangodb[plot]'``), so it is imported inside
the plotting functions and the package imports without it. Figures are built with
``matplotlib.figure.Figure`` on an Agg canvas rather than ``pyplot``: no global figure
registry, no GUI backend, safe in a headless job and in threads.

A curve is ``(steps, values)``, as `training_db.ops.analysis.series_points` returns.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from training_db.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

Curve = tuple[Sequence[int], Sequence[float]]

MISSING_MATPLOTLIB: Final = "plotting needs matplotlib: pip install 'mangodb[plot]'"
SPARK_BLOCKS: Final = "▁▂▃▄▅▆▇█"
BAND_ALPHA: Final = 0.2


def plot_curves(
    curves: Mapping[str, Curve],
    metric: str,
    output: str | Path,
    *,
    title: str | None = None,
    width_px: int = 1200,
    height_px: int = 700,
    dpi: int = 100,
) -> Path:
    """Draw one line per run (legend = run name) of ``metric`` against step; write a PNG.

    ``curves`` maps a run name to its ``(steps, values)``. NaN values leave a gap in the
    line. The image is exactly ``width_px * height_px`` pixels. Returns the path written.
    Raises ValueError when there is nothing to draw or a curve's lengths differ, and
    ImportError when matplotlib is not installed.
    """
    if not curves:
        raise InvalidArgumentError("plot_curves needs at least one curve")
    figure, axes = _new_figure(width_px, height_px, dpi)
    for run_name, (steps, values) in curves.items():
        _check_curve(run_name, steps, values)
        axes.plot(list(steps), list(values), label=run_name, linewidth=1.2)
    return _save(figure, axes, metric, title, Path(output), dpi)


def plot_band(
    groups: Mapping[str, Sequence[Curve]],
    metric: str,
    output: str | Path,
    *,
    title: str | None = None,
    width_px: int = 1200,
    height_px: int = 700,
    dpi: int = 100,
) -> Path:
    """Draw each group's mean curve with a +/-1 standard deviation band; write a PNG.

    A group (say, a gradient method) is a list of runs' ``(steps, values)``. At each step
    of the union of its runs' steps, the mean and the sample standard deviation are over
    the runs that logged a finite value there (a diverged run's NaN would blank the whole
    group otherwise); a step only one run logged has no band. The legend shows each group
    and its number of runs; groups without runs are left out. Returns the path written.
    Raises ValueError when no group has a run or a curve's lengths differ, and ImportError
    when matplotlib is not installed.
    """
    if not any(groups.values()):
        raise InvalidArgumentError("plot_band needs at least one group with at least one run")
    figure, axes = _new_figure(width_px, height_px, dpi)
    for group_name, runs in groups.items():
        if not runs:
            continue
        steps, means, spreads = _mean_and_spread(group_name, runs)
        (line,) = axes.plot(steps, means, label=f"{group_name} (n={len(runs)})", linewidth=1.5)
        lower = [mean - spread for mean, spread in zip(means, spreads, strict=True)]
        upper = [mean + spread for mean, spread in zip(means, spreads, strict=True)]
        axes.fill_between(steps, lower, upper, color=line.get_color(), alpha=BAND_ALPHA)
    return _save(figure, axes, metric, title, Path(output), dpi)


def sparkline(values: Sequence[float | None], width: int = 40) -> str:
    """A one-line unicode picture of a series (``▁▂▃▄▅▆▇█``), for terminal tables.

    A series longer than ``width`` is resampled to ``width`` characters, each the mean of
    its bucket of consecutive values (None, "not logged", is ignored within a bucket); a
    shorter series gets one character per value and is not stretched. The lowest bucket is
    ``▁``, the highest ``█``, with eight equal value bands between. A bucket that is all
    None, or holds a NaN or +/-inf (a diverged value should stay visible), is a space. A
    series without variation is drawn as a flat ``▄`` line. Pure Python: no matplotlib.
    """
    if width < 1:
        raise InvalidArgumentError(f"width must be at least 1, got {width}")
    buckets = _bucket_means(values, width)
    finite = [mean for mean in buckets if mean is not None]
    if not finite:
        return " " * len(buckets)
    lowest, span = min(finite), max(finite) - min(finite)
    return "".join(_spark_char(mean, lowest, span) for mean in buckets)


# --- helpers ----------------------------------------------------------------------------------


def _matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
    """The Figure class and the Agg canvas class, or an ImportError saying how to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc
    return Figure, FigureCanvasAgg


def _new_figure(width_px: int, height_px: int, dpi: int) -> tuple[Figure, Axes]:
    """A figure of exactly ``width_px * height_px`` pixels at ``dpi``, on an Agg canvas."""
    if min(width_px, height_px, dpi) < 1:
        raise InvalidArgumentError(
            f"width_px, height_px and dpi must be positive, got {width_px}, {height_px}, {dpi}"
        )
    figure_class, canvas_class = _matplotlib()
    # Constrained layout fits the labels inside the canvas without changing its size.
    figure = figure_class(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    canvas_class(figure)  # attaches itself as figure.canvas
    return figure, figure.add_subplot()


def _save(
    figure: Figure, axes: Axes, metric: str, title: str | None, output: Path, dpi: int
) -> Path:
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    axes.set_title(title if title is not None else metric)
    axes.grid(visible=True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    # No bbox_inches="tight": it would crop the image away from width_px * height_px.
    figure.savefig(output, format="png", dpi=dpi)
    return output


def _check_curve(name: str, steps: Sequence[int], values: Sequence[float]) -> None:
    if len(steps) != len(values):
        raise InvalidArgumentError(
            f"curve {name!r} has {len(steps)} steps but {len(values)} values"
        )


def _mean_and_spread(
    group_name: str, runs: Sequence[Curve]
) -> tuple[list[int], list[float], list[float]]:
    """Steps (union over runs), and the mean and standard deviation across runs at each."""
    by_step: dict[int, list[float]] = {}
    for steps, values in runs:
        _check_curve(group_name, steps, values)
        for step, value in zip(steps, values, strict=True):
            if math.isfinite(value):
                by_step.setdefault(step, []).append(value)
    steps_out = sorted(by_step)
    means = [statistics.fmean(by_step[step]) for step in steps_out]
    spreads = [_stdev(by_step[step]) for step in steps_out]
    return steps_out, means, spreads


def _stdev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _bucket_means(values: Sequence[float | None], width: int) -> list[float | None]:
    """Mean of each of ``min(len(values), width)`` consecutive buckets; None if not drawable."""
    count = min(len(values), width)
    buckets = [
        values[len(values) * k // count : len(values) * (k + 1) // count] for k in range(count)
    ]
    return [_drawable_mean(bucket) for bucket in buckets]


def _drawable_mean(bucket: Sequence[float | None]) -> float | None:
    present = [value for value in bucket if value is not None]
    if not present or not all(math.isfinite(value) for value in present):
        return None
    return math.fsum(present) / len(present)


def _spark_char(mean: float | None, lowest: float, span: float) -> str:
    if mean is None:
        return " "
    if span == 0:
        return SPARK_BLOCKS[3]
    band = int((mean - lowest) / span * len(SPARK_BLOCKS))
    return SPARK_BLOCKS[min(band, len(SPARK_BLOCKS) - 1)]
