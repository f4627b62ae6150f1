"""Repository functions for run objectives, and the atomic run completion.

Like `training_db.store.runs`, each function takes a ``Session`` and never commits; arguments
are validated before the first statement, so a bad call writes nothing.

An objective row holds how one objective of a run was configured (alias, UniProt id, weight,
direction) and its final values: the four metric types ``raw_mean``, ``normalized_mean``,
``raw_std`` and ``normalized_std``. A NaN value is stored as NULL: SQLite cannot keep NaN in
a float column, and a missing value should match no threshold on either backend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from training_db.core import portable
from training_db.core.errors import InvalidArgumentError, ObjectiveAlreadyExistsError
from training_db.core.operations import Operations, read, write
from training_db.core.suggest import require_one_of, unknown_name
from training_db.core.validation import (
    check_text,
    optional_number,
    optional_text,
    validate_limit,
)
from training_db.schema import (
    OBJECTIVE_DIRECTIONS,
    RunObjective,
    TrainingRun,
)
from training_db.store import runs
from training_db.store.records import (
    RECORD_COLUMNS,
    RunDict,
    execute,
    name_found,
    run_id_of,
    run_to_dict,
    tags_by_run,
)
from training_db.store.runs import touch_run

METRIC_TYPES: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
FILTER_KEYS: Final = ("min", "max", "metric")
DEFAULT_METRIC: Final = "raw_mean"
OBJECTIVE_NAME_MAX_LENGTH: Final = 255
# How many distinct names at most are compared with one that matched nothing.
MAX_KNOWN_NAMES: Final = 10_000
# W&B summary keys ``objectives/<alias>/<metric_type>``; an alias ends in its direction.
SUMMARY_OBJECTIVES_PREFIX: Final = "objectives/"

ObjectiveDict = dict[str, Any]
_RUNS: Final = TrainingRun.__table__.c


# A W&B objective alias ends in the direction (``COMT_activity_maximize``); without it, it is
# the objective's name.
ALIAS_DIRECTION_SUFFIXES: Final = {"_maximize": "maximize", "_minimize": "minimize"}


def split_objective_alias(alias: str) -> tuple[str, str | None]:
    """``(objective name, direction)`` of a W&B objective alias; direction None without suffix."""
    for suffix, direction in ALIAS_DIRECTION_SUFFIXES.items():
        if alias.endswith(suffix):
            return alias[: -len(suffix)], direction
    return alias, None


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
    return check_text("objective_name", objective_name)


def validate_metric_type(metric_type: Any) -> str:
    return require_one_of(metric_type, METRIC_TYPES, f"unknown metric type {metric_type!r}")


def validate_direction(direction: Any) -> str | None:
    if direction is not None and direction not in OBJECTIVE_DIRECTIONS:
        raise InvalidArgumentError(
            f"unknown direction {direction!r}; valid: {', '.join(OBJECTIVE_DIRECTIONS)} or None"
        )
    return None if direction is None else str(direction)


def metric_value(name: str, value: Any) -> float | None:
    """A metric value for a float column: NaN (and None) become NULL, ±Inf is kept."""
    return optional_number(name, value)


def _optional_status(status: Any) -> str | None:
    return None if status is None else runs.validate_status(status)


def _optional_gradient_method(gradient_method: Any) -> str | None:
    if gradient_method is None:
        return None
    return check_text("gradient_method", gradient_method)


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
    """Record one configured objective of a run (at launch, once per config objective).

    ``direction`` is ``maximize``, ``minimize`` or None. A run that already has an
    objective of this name raises
    `ObjectiveAlreadyExistsError` and nothing is written.
    """
    runs.validate_run_id(run_id)
    values = {
        "run_id": run_id,
        "objective_name": validate_objective_name(objective_name),
        "objective_alias": optional_text("objective_alias", objective_alias),
        "uniprot": optional_text("uniprot", uniprot),
        "weight": optional_number("weight", weight),
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
    touch_run(session, run_id)


def update_objective_metric(
    session: Session, run_id: str, objective_name: str, metric_type: str, value: float | None
) -> None:
    """Set one final value of an objective, creating the objective when launch did not.

    ``metric_type`` is ``raw_mean``, ``normalized_mean``, ``raw_std`` or
    ``normalized_std``. NaN is stored as NULL, so it never matches a threshold; ±Infinity
    is kept.
    """
    runs.validate_run_id(run_id)
    validate_objective_name(objective_name)
    validate_metric_type(metric_type)
    number = metric_value("value", value)
    runs.require_run(session, run_id)
    _upsert_metrics(session, run_id, objective_name, {metric_type: number})
    touch_run(session, run_id)


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
    """Delete every objective of a run (cleanup); returns how many there were."""
    runs.validate_run_id(run_id)
    runs.require_run(session, run_id)
    result = session.execute(sa.delete(RunObjective).where(RunObjective.run_id == run_id))
    deleted = int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        touch_run(session, run_id)
    return deleted


# --- reads ------------------------------------------------------------------------------------


def objective_to_dict(objective: RunObjective) -> ObjectiveDict:
    return {column.key: getattr(objective, column.key) for column in RunObjective.__table__.columns}


def get_run_objectives(session: Session, run_id: str) -> list[dict[str, Any]]:
    """Every column of each of the run's objectives, ordered by objective name."""
    runs.validate_run_id(run_id)
    runs.require_run(session, run_id)
    rows = session.scalars(
        sa.select(RunObjective)
        .where(RunObjective.run_id == run_id)
        .order_by(RunObjective.objective_name)
    )
    return [objective_to_dict(row) for row in rows]


def require_known_objective(session: Session, objective_name: str) -> None:
    """`UnknownNameError`, with the closest names, when no run has an objective of this name.

    The reads call it only when their answer is empty: a name some run has keeps its empty
    answer (no values in the filtered runs), and so does any name in a database without
    objectives, which has nothing to compare it with.
    """
    probe = sa.select(RunObjective.id).where(RunObjective.objective_name == objective_name)
    if name_found(session, "objective", objective_name, probe.limit(1)):
        return
    known = session.scalars(
        sa.select(RunObjective.objective_name).distinct().limit(MAX_KNOWN_NAMES)
    ).all()
    if known:
        raise unknown_name(
            f"no run has an objective named {objective_name!r}",
            objective_name,
            known,
        )


def list_objectives(session: Session) -> list[dict[str, Any]]:
    """Every objective name the runs have, by name: ``objective_name``, ``num_runs`` (runs
    with the objective), ``num_values`` (of those, runs with a ``raw_mean``) and
    ``direction`` (``maximize``/``minimize`` when the runs that set one agree, else None)."""
    rows = session.execute(
        sa.select(
            RunObjective.objective_name,
            sa.func.count(),
            sa.func.count(RunObjective.raw_mean),
            sa.func.min(RunObjective.direction),
            sa.func.max(RunObjective.direction),
        )
        .group_by(RunObjective.objective_name)
        .order_by(RunObjective.objective_name)
    ).all()
    return [
        {
            "objective_name": name,
            "num_runs": int(num_runs),
            "num_values": int(num_values),
            "direction": lowest if lowest == highest else None,
        }
        for name, num_runs, num_values, lowest, highest in rows
    ]


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
    """Runs where every named objective lies within its bounds, newest first.

    ``{'COMT_activity': {'min': 0.8}, 'DRD5_activity': {'min': 0.7, 'max': 0.95,
    'metric': 'normalized_mean'}}``: bounds are inclusive, ``metric`` defaults to
    ``raw_mean``, a NULL (or NaN) value never matches. Each result is a ``get_run`` dict
    plus ``objectives``: ``{name: {metric_type: value}}`` for the filtered objectives.
    Ties in ``created_at`` are ordered by ``run_id``. When nothing matches, an objective
    name no run has raises `UnknownNameError` with the closest names.
    """
    wanted = parse_objective_filters(objective_filters)
    gradient_method = _optional_gradient_method(gradient_method)
    status = _optional_status(status)
    limit = validate_limit(limit)

    shape = tuple(
        (each.metric_type, each.minimum is not None, each.maximum is not None) for each in wanted
    )
    statement = _objective_query(shape, gradient_method is not None, status is not None)
    parameters: dict[str, Any] = {"limit": limit}
    for index, each in enumerate(wanted):
        parameters.update(
            {f"name_{index}": each.objective_name, f"min_{index}": each.minimum}
            | {f"max_{index}": each.maximum}
        )
    if gradient_method is not None:
        parameters["gradient_method"] = gradient_method
    if status is not None:
        parameters["status"] = status
    rows = execute(session, statement, parameters).all()
    if not rows:
        for each in wanted:
            require_known_objective(session, each.objective_name)
    tags = tags_by_run(session, [run_id_of(row) for row in rows])
    width = len(RECORD_COLUMNS)
    found: list[RunDict] = []
    for row in rows:
        result = run_to_dict(row[:width], tags[run_id_of(row)])
        values = iter(row[width:])  # METRIC_TYPES of each filter, in order
        result["objectives"] = {
            wanted_objective.objective_name: {metric: next(values) for metric in METRIC_TYPES}
            for wanted_objective in wanted
        }
        found.append(result)
    return found


ObjectiveShape = tuple[tuple[str, bool, bool], ...]


@functools.lru_cache(maxsize=256)
def _objective_query(
    shape: ObjectiveShape, by_gradient_method: bool, by_status: bool
) -> sa.Select[Any]:
    """The statement of `query_runs_by_objectives` for one shape of filters, built once.

    ``shape``: per filter, its metric and whether it has a minimum and a maximum; the
    names, bounds, gradient method, status and limit are bound parameters (``name_0``,
    ``min_0``, ``max_0``, ..., ``gradient_method``, ``status``, ``limit``). A poller asking
    the same question pays for building and compiling it once.

    Each filter is a join on its own alias of ``run_objectives``, and an uncorrelated
    ``EXISTS`` on its objective name (answered from the name index, once per statement):
    a name no run has ends the query there, instead of the planner walking the runs in
    ``created_at`` order looking for one, which grows with the number of runs.
    """
    objectives = RunObjective.__table__
    statement = sa.select(*RECORD_COLUMNS)
    for index, (metric_type, has_minimum, has_maximum) in enumerate(shape):
        objective = objectives.alias(f"o{index}")
        name = sa.bindparam(f"name_{index}", type_=objectives.c.objective_name.type)
        value = objective.c[metric_type]
        conditions: list[ColumnElement[bool]] = [
            objective.c.run_id == _RUNS.run_id,
            objective.c.objective_name == name,
            value.is_not(None),
        ]
        if has_minimum:
            conditions.append(value >= sa.bindparam(f"min_{index}", type_=value.type))
        if has_maximum:
            conditions.append(value <= sa.bindparam(f"max_{index}", type_=value.type))
        present = (
            sa.exists().where(objectives.c.objective_name == name).correlate_except(objectives)
        )
        statement = (
            statement.join(objective, sa.and_(*conditions))
            .where(present)
            .add_columns(
                *(objective.c[metric].label(f"o{index}_{metric}") for metric in METRIC_TYPES)
            )
        )
    if by_gradient_method:
        statement = statement.where(_RUNS.gradient_method == sa.bindparam("gradient_method"))
    if by_status:
        statement = statement.where(_RUNS.status == sa.bindparam("status"))
    return statement.order_by(_RUNS.created_at.desc(), _RUNS.run_id.asc()).limit(
        sa.bindparam("limit", type_=sa.Integer)
    )


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
    """``objective_name``, ``count``, ``avg``, ``min``, ``max`` and ``std`` of one metric.

    ``std`` is the population standard deviation (divided by the count, not count - 1).
    NULL values are left out; with no values, ``avg``, ``min``, ``max`` and ``std`` are None,
    unless no run has an objective of this name: `UnknownNameError`, with the closest names.
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
    if count == 0:
        require_known_objective(session, objective_name)
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
    """Per gradient method: ``num_runs``, ``avg`` and ``best`` of one objective, best first.

    ``best`` is the minimum for an objective whose rows say ``minimize`` (and none
    ``maximize``), else the maximum. Methods are ordered by ``avg`` in that direction,
    then by ``best``, then by name. ``status=None`` compares runs of every status. An
    objective name no run has raises `UnknownNameError`, with the closest names.
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
    if not groups:
        require_known_objective(session, objective_name)
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


# --- objective values in a W&B summary ------------------------------------------------------


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
        name, direction = split_objective_alias(alias)
        try:
            validate_objective_name(name)
            check_text("objective_alias", alias)
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


class ObjectiveOperations(Operations):
    """Objectives: how each objective of a run was configured, its final values, and the
    questions asked across runs about them."""

    insert_objective = write(insert_objective)
    update_objective_metric = write(update_objective_metric, idempotent=True)
    get_run_objectives = read(get_run_objectives)
    list_objectives = read(list_objectives)
    query_runs_by_objectives = read(query_runs_by_objectives, returns="runs")
    get_objective_statistics = read(get_objective_statistics)
    compare_gradient_methods = read(compare_gradient_methods)
    delete_run_objectives = write(delete_run_objectives)
