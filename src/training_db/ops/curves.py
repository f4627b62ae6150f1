"""Questions across runs' training curves: finders and plots over the history store.

Each function selects runs with the ``query_runs`` filters, reads one metric of every
selected run in one query, and hands the curves to `training_db.ops.analysis` (pure
detectors) or `training_db.ops.plots` (matplotlib, optional).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from training_db.core.errors import InvalidArgumentError, RunNotFoundError
from training_db.core.operations import Operations, read
from training_db.core.suggest import unknown_name
from training_db.db import Database
from training_db.ops import analysis, plots
from training_db.store import history as history_store
from training_db.store.filters import filterable_columns

Curve = tuple[list[int], list[float]]
DEFAULT_RUN_LIMIT: Final = 1000


def metric_curves(
    db: Database, metric: str, run_ids: Sequence[str], *, keep_non_finite: bool = False
) -> dict[str, Curve]:
    """``run_id -> (steps, values)`` of one metric for the runs that logged it."""
    series = db.read(history_store.metric_series, metric, list(run_ids))
    curves: dict[str, Curve] = {}
    for run_id, points in series.items():
        columns = history_store.to_columns({metric: points})
        steps, values = analysis.series_points(columns, metric, keep_non_finite=keep_non_finite)
        if steps:
            curves[run_id] = (steps, values)
    return curves


def require_known_metric(db: Database, metric: str) -> None:
    """`UnknownNameError`, with the closest names, when no run at all has logged ``metric``.

    Called when the selected runs have no curve of it: a misspelt name gets its
    "did you mean", and a name other runs logged keeps the caller's own answer.
    """
    db.read(history_store.require_known_metrics, [metric])


def find_plateaued_runs(
    db: Database,
    metric: str,
    filters: Mapping[str, Any] | None = None,
    *,
    window: int = 10,
    min_relative_change: float = 0.01,
    direction: analysis.Direction | None = None,
    limit: int = DEFAULT_RUN_LIMIT,
) -> list[dict[str, Any]]:
    """Runs whose ``metric`` plateaued: ``[{'run_id', 'run_name', 'plateau_step'}]``.

    ``window`` and ``min_relative_change`` are those of `analysis.detect_plateau`: the
    curve has plateaued from the first step after which its rolling mean (over ``window``
    logged points) moves by less than ``min_relative_change`` of the curve's range.
    """
    runs = db.query_runs(filters, limit=limit)
    curves = metric_curves(db, metric, [run["run_id"] for run in runs])
    if runs and not curves:
        require_known_metric(db, metric)
    found = []
    for run in runs:
        curve = curves.get(run["run_id"])
        if curve is None:
            continue
        step = analysis.detect_plateau(
            *curve, window=window, min_relative_change=min_relative_change, direction=direction
        )
        if step is not None:
            found.append(
                {"run_id": run["run_id"], "run_name": run["run_name"], "plateau_step": step}
            )
    return found


def find_runs_with_spikes(
    db: Database,
    metric: str,
    filters: Mapping[str, Any] | None = None,
    *,
    window: int = 10,
    threshold: float = 5.0,
    limit: int = DEFAULT_RUN_LIMIT,
) -> list[dict[str, Any]]:
    """Runs whose ``metric`` spiked: ``[{'run_id', 'run_name', 'spike_steps'}]``.

    A spike (see `analysis.detect_spikes`) is a value more than ``threshold`` rolling
    median absolute deviations away from the median of the previous ``window`` points, or
    a logged NaN / ±Infinity (a diverged value).
    """
    runs = db.query_runs(filters, limit=limit)
    curves = metric_curves(db, metric, [run["run_id"] for run in runs], keep_non_finite=True)
    if runs and not curves:
        require_known_metric(db, metric)
    found = []
    for run in runs:
        curve = curves.get(run["run_id"])
        if curve is None:
            continue
        spikes = analysis.detect_spikes(*curve, window=window, threshold=threshold)
        if spikes:
            found.append(
                {"run_id": run["run_id"], "run_name": run["run_name"], "spike_steps": spikes}
            )
    return found


def plot_runs(
    db: Database, /, run_ids: Sequence[str], metric: str, output: str | Path, **style: Any
) -> Path:
    """One PNG with ``metric`` of each run against step, the legend by run name."""
    if not run_ids:
        raise InvalidArgumentError("plot_runs needs at least one run id")
    names = {}
    for run_id in run_ids:
        run = db.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        names[run_id] = run["run_name"] or run_id
    curves = metric_curves(db, metric, run_ids)
    if not curves:
        require_known_metric(db, metric)
        raise InvalidArgumentError(f"none of the runs logged {metric!r}")
    return plots.plot_curves(
        {names[run_id]: curves[run_id] for run_id in run_ids if run_id in curves},
        metric,
        output,
        **style,
    )


def plot_groups(
    db: Database,
    /,
    metric: str,
    output: str | Path,
    *,
    group_by: str = "gradient_method",
    filters: Mapping[str, Any] | None = None,
    limit: int = DEFAULT_RUN_LIMIT,
    **style: Any,
) -> Path:
    """One PNG with each group's mean ``metric`` curve ± one standard deviation.

    ``group_by`` is a ``training_runs`` column (e.g. ``gradient_method``, ``batch_size``).
    """
    columns = filterable_columns()
    if group_by not in columns:
        raise unknown_name(
            f"group_by must be a training_runs column, got {group_by!r}", group_by, columns
        )
    runs = db.query_runs(filters, limit=limit)
    curves = metric_curves(db, metric, [run["run_id"] for run in runs])
    groups: dict[str, list[Curve]] = {}
    for run in runs:
        if run["run_id"] in curves:
            groups.setdefault(str(run[group_by]), []).append(curves[run["run_id"]])
    if not groups:
        if runs:
            require_known_metric(db, metric)
        raise InvalidArgumentError(f"no selected run logged {metric!r}")
    return plots.plot_band(dict(sorted(groups.items())), metric, output, **style)


class CurveOperations(Operations):
    """Questions across runs' training curves, and plots of them."""

    find_plateaued_runs = read(find_plateaued_runs, scope="database")
    find_runs_with_spikes = read(find_runs_with_spikes, scope="database")
    plot_runs = read(plot_runs, scope="database")
    plot_groups = read(plot_groups, scope="database")
