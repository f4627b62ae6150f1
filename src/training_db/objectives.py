"""Repository functions for run objectives, and the atomic run completion.

Like `training_db.runs`, each function takes a ``Session`` and never commits; arguments
are validated before the first statement, so a bad call writes nothing.

An objective row holds how one objective of a run was configured (alias, UniProt id, weight,
direction) and its final values: the four metric types ``raw_mean``, ``normalized_mean``,
``raw_std`` and ``normalized_std``. A NaN value is stored as NULL: SQLite cannot keep NaN in
a float column, and a missing value should match no threshold on either backend.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session, aliased

from training_db import filters, portable, runs
from training_db import history as history_store
from training_db.errors import InvalidArgumentError, ObjectiveAlreadyExistsError
from training_db.models import (
    OBJECTIVE_DIRECTIONS,
    TERMINAL_STATUSES,
    RunObjective,
    TrainingRun,
)
from training_db.runs import RunDict

METRIC_TYPES: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
FILTER_KEYS: Final = ("min", "max", "metric")
DEFAULT_METRIC: Final = "raw_mean"
OBJECTIVE_NAME_MAX_LENGTH: Final = 255
# W&B summary keys ``objectives/<alias>/<metric_type>``; an alias ends in its direction.
SUMMARY_OBJECTIVES_PREFIX: Final = "objectives/"

ObjectiveDict = dict[str, Any]


# --- argument checks ------------------------------------------------------------------------


def validate_objective_name(objective_name: Any) -> str:
    """An objective name is a non-empty string of at most 255 characters."""
    if not isinstance(objective_name, str):
        raise InvalidArgumentError(
            f"objective_name must be a string, got {type(objective_name).__name__}"
        )
    if not objective_name.strip():
        raise InvalidArgumentError("objective_name must not be empty")
    if len(objective_name) > OBJECTIVE_NAME_MAX_LENGTH:
        raise InvalidArgumentError(
            f"objective_name must be at most {OBJECTIVE_NAME_MAX_LENGTH} characters, "
            f"got {len(objective_name)}"
        )
    return runs._check_text("objective_name", objective_name)


def validate_metric_type(metric_type: Any) -> str:
    if metric_type not in METRIC_TYPES:
        raise InvalidArgumentError(
            f"unknown metric type {metric_type!r}; valid: {', '.join(METRIC_TYPES)}"
        )
    return str(metric_type)


def validate_direction(direction: Any) -> str | None:
    if direction is not None and direction not in OBJECTIVE_DIRECTIONS:
        raise InvalidArgumentError(
            f"unknown direction {direction!r}; valid: {', '.join(OBJECTIVE_DIRECTIONS)} or None"
        )
    return None if direction is None else str(direction)


def metric_value(name: str, value: Any) -> float | None:
    """A metric value for a float column: NaN (and None) become NULL, ±Inf is kept."""
    return runs.optional_number(name, value)


def _optional_status(status: Any) -> str | None:
    return None if status is None else runs.validate_status(status)


def _optional_gradient_method(gradient_method: Any) -> str | None:
    if gradient_method is None:
        return None
    return runs._check_text("gradient_method", gradient_method)


def _metric_column(metric_type: str) -> Any:
    return getattr(RunObjective, validate_metric_type(metric_type))


# --- writes -----------------------------------------------------------------------------------


def insert_objective(
    session: Session,
    run_id: str,
    objective_name: str,
    objective_alias: str | None = None,
    uniprot: str | None = None,
    weight: float | None = None,
    direction: str | None = None,
) -> None:
    """Add one configured objective to a run (at launch, once per config objective)."""
    runs.validate_run_id(run_id)
    values = {
        "run_id": run_id,
        "objective_name": validate_objective_name(objective_name),
        "objective_alias": runs._optional_text("objective_alias", objective_alias),
        "uniprot": runs._optional_text("uniprot", uniprot),
        "weight": runs.optional_number("weight", weight),
        "direction": validate_direction(direction),
    }
    runs.require_run(session, run_id)
    existing = session.scalar(
        sa.select(RunObjective.id).where(
            RunObjective.run_id == run_id, RunObjective.objective_name == objective_name
        )
    )
    if existing is not None:
        raise ObjectiveAlreadyExistsError(
            f"run {run_id!r} already has an objective named {objective_name!r}"
        )
    session.add(RunObjective(**values))
    session.flush()
    runs._touch(session, run_id)


def update_objective_metric(
    session: Session, run_id: str, objective_name: str, metric_type: str, value: Any
) -> None:
    """Set one final value of an objective, creating the objective row when it is missing."""
    runs.validate_run_id(run_id)
    validate_objective_name(objective_name)
    validate_metric_type(metric_type)
    number = metric_value("value", value)
    runs.require_run(session, run_id)
    _upsert_metrics(session, run_id, objective_name, {metric_type: number})
    runs._touch(session, run_id)


def _upsert_metrics(
    session: Session, run_id: str, objective_name: str, metrics: Mapping[str, float | None]
) -> None:
    portable.upsert(
        session,
        cast(sa.Table, RunObjective.__table__),  # typed as a FromClause by the mapping
        {"run_id": run_id, "objective_name": objective_name, **metrics},
        conflict_columns=("run_id", "objective_name"),
        update_columns=tuple(metrics),
    )


def delete_run_objectives(session: Session, run_id: str) -> int:
    """Delete every objective of a run; the number of rows deleted."""
    runs.validate_run_id(run_id)
    runs.require_run(session, run_id)
    result = session.execute(sa.delete(RunObjective).where(RunObjective.run_id == run_id))
    deleted = int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        runs._touch(session, run_id)
    return deleted


# --- reads ------------------------------------------------------------------------------------


def objective_to_dict(objective: RunObjective) -> ObjectiveDict:
    return {column.key: getattr(objective, column.key) for column in RunObjective.__table__.columns}


def get_run_objectives(session: Session, run_id: str) -> list[ObjectiveDict]:
    """Every column of every objective of a run, ordered by objective name."""
    runs.validate_run_id(run_id)
    runs.require_run(session, run_id)
    rows = session.scalars(
        sa.select(RunObjective)
        .where(RunObjective.run_id == run_id)
        .order_by(RunObjective.objective_name)
    )
    return [objective_to_dict(row) for row in rows]


@dataclass(frozen=True)
class ObjectiveFilter:
    """One entry of ``query_runs_by_objectives``: a metric within inclusive bounds."""

    objective_name: str
    metric_type: str = DEFAULT_METRIC
    minimum: float | None = None
    maximum: float | None = None


def parse_objective_filters(objective_filters: Any) -> list[ObjectiveFilter]:
    """``{'COMT_activity': {'min': 0.8, 'metric': 'raw_mean'}}`` → checked filters."""
    if not isinstance(objective_filters, Mapping):
        raise InvalidArgumentError(
            f"objective_filters must be a dict, got {type(objective_filters).__name__}"
        )
    if not objective_filters:
        raise InvalidArgumentError(
            "objective_filters needs at least one objective; use query_runs for runs in general"
        )
    parsed: list[ObjectiveFilter] = []
    for name, spec in objective_filters.items():
        validate_objective_name(name)
        if not isinstance(spec, Mapping):
            raise InvalidArgumentError(
                f"objective filter {name!r} must be a dict with keys {', '.join(FILTER_KEYS)}, "
                f"got {spec!r}"
            )
        unknown = [key for key in spec if key not in FILTER_KEYS]
        if unknown:
            raise InvalidArgumentError(
                f"objective filter {name!r}: unknown key {unknown[0]!r}; "
                f"valid: {', '.join(FILTER_KEYS)}"
            )
        parsed.append(
            ObjectiveFilter(
                objective_name=name,
                metric_type=validate_metric_type(spec.get("metric", DEFAULT_METRIC)),
                minimum=_threshold(name, "min", spec.get("min")),
                maximum=_threshold(name, "max", spec.get("max")),
            )
        )
    return parsed


def _threshold(name: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(
            f"objective filter {name!r}: {key!r} must be a number, got {value!r}"
        )
    if math.isnan(value):
        raise InvalidArgumentError(
            f"objective filter {name!r}: {key!r} is NaN, which matches nothing"
        )
    return float(value)


def query_runs_by_objectives(
    session: Session,
    objective_filters: Mapping[str, Mapping[str, Any]],
    gradient_method: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[RunDict]:
    """Runs whose objectives all lie within the given bounds, newest first.

    One inner join per filtered objective: a run matches when it has every named objective
    with a non-NULL value of the filter's metric between ``min`` and ``max`` (inclusive).
    """
    wanted = parse_objective_filters(objective_filters)
    gradient_method = _optional_gradient_method(gradient_method)
    status = _optional_status(status)
    limit = filters.validate_limit(limit)

    statement = sa.select(*runs.RECORD_COLUMNS)
    for index, wanted_objective in enumerate(wanted):
        objective = aliased(RunObjective)
        value = getattr(objective, wanted_objective.metric_type)
        conditions: list[ColumnElement[bool]] = [
            objective.run_id == TrainingRun.run_id,
            objective.objective_name == wanted_objective.objective_name,
            value.is_not(None),
        ]
        if wanted_objective.minimum is not None:
            conditions.append(value >= wanted_objective.minimum)
        if wanted_objective.maximum is not None:
            conditions.append(value <= wanted_objective.maximum)
        statement = statement.join(objective, sa.and_(*conditions)).add_columns(
            *(getattr(objective, metric).label(f"o{index}_{metric}") for metric in METRIC_TYPES)
        )
    if gradient_method is not None:
        statement = statement.where(TrainingRun.gradient_method == gradient_method)
    if status is not None:
        statement = statement.where(TrainingRun.status == status)
    statement = statement.order_by(TrainingRun.created_at.desc(), TrainingRun.run_id.asc())

    rows = session.execute(statement.limit(limit)).all()
    tags = runs.tags_by_run(session, [runs.run_id_of(row) for row in rows])
    width = len(runs.RECORD_COLUMNS)
    found: list[RunDict] = []
    for row in rows:
        result = runs.run_to_dict(row[:width], tags[runs.run_id_of(row)])
        values = iter(row[width:])  # METRIC_TYPES of each filter, in order
        result["objectives"] = {
            wanted_objective.objective_name: {metric: next(values) for metric in METRIC_TYPES}
            for wanted_objective in wanted
        }
        found.append(result)
    return found


def _values_of(
    objective_name: str,
    metric_type: str,
    status: str | None,
    gradient_method: str | None,
) -> tuple[Any, Any]:
    """The non-NULL values of one metric of one objective, with their runs' gradient method."""
    value = _metric_column(metric_type)
    statement = (
        sa.select(
            value.label("value"),
            TrainingRun.gradient_method.label("gradient_method"),
            RunObjective.direction.label("direction"),
        )
        .join(TrainingRun, TrainingRun.run_id == RunObjective.run_id)
        .where(RunObjective.objective_name == objective_name, value.is_not(None))
    )
    if status is not None:
        statement = statement.where(TrainingRun.status == status)
    if gradient_method is not None:
        statement = statement.where(TrainingRun.gradient_method == gradient_method)
    values = statement.cte("objective_values")
    return values, values.c.value


def get_objective_statistics(
    session: Session,
    objective_name: str,
    metric_type: str = DEFAULT_METRIC,
    status: str | None = None,
    gradient_method: str | None = None,
) -> dict[str, Any]:
    """Count, mean, min, max and population standard deviation of one objective's metric.

    Only non-NULL values count (NaN is stored as NULL). The variance is computed in SQL in
    two passes, ``avg((x - avg(x))^2)``, which both backends can do and which does not lose
    precision the way ``avg(x*x) - avg(x)^2`` does; the square root is taken in Python
    because not every SQLite build has ``sqrt``. With an infinite value the mean is infinite
    and the standard deviation NaN.
    """
    validate_objective_name(objective_name)
    validate_metric_type(metric_type)
    status = _optional_status(status)
    gradient_method = _optional_gradient_method(gradient_method)

    values, value = _values_of(objective_name, metric_type, status, gradient_method)
    mean = sa.select(sa.func.avg(value)).scalar_subquery().correlate(None)
    variance = (
        sa.select(sa.func.avg((value - mean) * (value - mean))).scalar_subquery().correlate(None)
    )
    row = session.execute(
        sa.select(
            sa.func.count(value),
            sa.func.avg(value),
            sa.func.min(value),
            sa.func.max(value),
            variance,
        ).select_from(values)
    ).one()
    count = int(row[0])
    statistics: dict[str, Any] = {
        "objective_name": objective_name,
        "count": count,
        "avg": None,
        "min": None,
        "max": None,
        "std": None,
    }
    if count == 0:
        return statistics
    statistics.update(
        avg=_sql_float(row[1]),
        min=float(row[2]),
        max=float(row[3]),
        std=_population_std(_sql_float(row[1]), _sql_float(row[4])),
    )
    return statistics


def _sql_float(value: Any) -> float:
    """An aggregate over at least one value; NULL is SQLite's NaN (PostgreSQL keeps NaN)."""
    return math.nan if value is None else float(value)


def _population_std(average: float, variance: float) -> float:
    """The square root of the variance (never below 0); NaN when a value was infinite."""
    if not (math.isfinite(average) and math.isfinite(variance)):
        return math.nan
    return math.sqrt(max(variance, 0.0))


def compare_gradient_methods(
    session: Session,
    objective_name: str,
    metric_type: str = DEFAULT_METRIC,
    status: str | None = "completed",
) -> list[dict[str, Any]]:
    """Per gradient method: how many runs have a value, their mean and their best value.

    ``best`` is the maximum for a maximized objective (or one of unknown direction) and the
    minimum for a minimized one. The direction is decided from the rows compared:
    ``minimize`` when some say minimize and none says maximize, else ``maximize`` (rows
    without a direction do not vote). Best method first: by ``avg`` in the objective's
    direction, then by ``best``, ties by gradient method (NULL last). ``status=None``
    compares runs of every status. One pass over the rows, in SQL on both backends; the
    handful of groups is ordered here, once the direction is known.
    """
    validate_objective_name(objective_name)
    validate_metric_type(metric_type)
    status = _optional_status(status)

    values, value = _values_of(objective_name, metric_type, status, None)
    method = values.c.gradient_method
    groups = session.execute(
        sa.select(
            method,
            sa.func.count(value),
            sa.func.avg(value),
            sa.func.min(value),
            sa.func.max(value),
            sa.func.count(sa.case((values.c.direction == "minimize", 1))),
            sa.func.count(sa.case((values.c.direction == "maximize", 1))),
        )
        .select_from(values)
        .group_by(method)
    ).all()
    minimizing = sum(group[5] for group in groups)
    maximizing = sum(group[6] for group in groups)
    minimize = bool(minimizing) and not maximizing
    sign = 1.0 if minimize else -1.0  # ascending sort keys: the best first
    found = [
        {
            "gradient_method": gradient_method,
            "num_runs": int(num_runs),
            "avg": float(mean),
            "best": float(lowest if minimize else highest),
        }
        for gradient_method, num_runs, mean, lowest, highest, _, _ in groups
    ]
    return sorted(
        found,
        key=lambda group: (
            sign * group["avg"],
            sign * group["best"],
            group["gradient_method"] is None,
            group["gradient_method"] or "",
        ),
    )


# --- completion -------------------------------------------------------------------------------


@dataclass
class SummaryObjective:
    """The values one W&B summary gives for one objective."""

    objective_name: str
    objective_alias: str
    direction: str | None
    metrics: dict[str, float | None] = field(default_factory=dict)


def objectives_from_summary(summary: Mapping[str, Any] | None) -> list[SummaryObjective]:
    """The objective values in a W&B summary, from its ``objectives/<alias>/<metric>`` keys.

    ``<alias>`` minus a trailing ``_maximize`` / ``_minimize`` is the objective name; the
    suffix gives the direction. Keys with another shape, another metric part, or a value
    that is not a number are ignored; a NaN value is kept (it is stored as NULL).
    """
    found: dict[str, SummaryObjective] = {}
    for key, value in (summary or {}).items():
        if not key.startswith(SUMMARY_OBJECTIVES_PREFIX):
            continue
        parts = key.split("/")
        if len(parts) != 3 or parts[2] not in METRIC_TYPES:
            continue
        alias, metric = parts[1], parts[2]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name, direction = history_store.split_objective_alias(alias)
        try:
            validate_objective_name(name)
            runs._check_text("objective_alias", alias)
        except ValueError:
            continue  # not a name an objective can have
        entry = found.setdefault(name, SummaryObjective(name, alias, direction))
        entry.metrics[metric] = metric_value(key, value)
    return list(found.values())


def store_summary_objective(session: Session, run_id: str, objective: SummaryObjective) -> None:
    """Write one objective's summary values; alias and direction only fill what is unset."""
    _upsert_metrics(session, run_id, objective.objective_name, objective.metrics)
    session.execute(
        sa.update(RunObjective)
        .where(
            RunObjective.run_id == run_id,
            RunObjective.objective_name == objective.objective_name,
        )
        .values(
            objective_alias=sa.func.coalesce(
                RunObjective.objective_alias, objective.objective_alias
            ),
            direction=sa.func.coalesce(RunObjective.direction, objective.direction),
        )
    )


def finish_run(
    session: Session,
    run_id: str,
    status: str = "completed",
    summary: Mapping[str, Any] | None = None,
    *,
    ended_at: dt.datetime | str | None = None,
    duration_seconds: float | None = None,
    history: Any = None,
    key_metrics: history_store.KeyMetricMapping = history_store.DEFAULT_KEY_METRICS,
) -> None:
    """End a run: terminal status, timestamps, the whole summary, its objective values and
    (when given) its history, merged into what was logged during training."""
    runs.validate_run_id(run_id)
    if status not in TERMINAL_STATUSES:
        raise InvalidArgumentError(
            f"finish_run needs a terminal status, got {status!r}; "
            f"valid: {', '.join(TERMINAL_STATUSES)}"
        )
    document = runs._document("summary", summary)
    values = runs.summary_columns(document)
    ended = runs.optional_timestamp("ended_at", ended_at)
    duration = runs.optional_number("duration_seconds", duration_seconds)
    if ended is not None:
        values["ended_at"] = ended
    if duration is not None:
        values["duration_seconds"] = duration
    if document is not None:
        values["final_metrics_json"] = document
    summary_objectives = objectives_from_summary(document)

    run = runs.load_run(session, run_id, for_update=True)
    runs.apply_status(run, status, values)
    session.flush()
    for objective in summary_objectives:
        store_summary_objective(session, run_id, objective)
    if history is not None:
        history_store.log_history(session, run_id, history, key_metrics)
