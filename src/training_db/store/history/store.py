"""W&B history: every logged value of every run, stored losslessly as compact arrays.

Layout (see ``schema.RunHistory``): one row per (run, metric) holding that metric's steps
and values as binary arrays (`codec`), plus a metric-name dictionary (``history_metrics``).
A run of 149 keys x 100 steps is 149 small rows instead of ~15,000; reading one metric of
one run is one primary-key lookup; and the runs table never carries history bytes. The
input shapes are in `shapes`, the per-step key metrics in `keymetrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core import jsoncodec
from training_db.core.operations import Operations, read, write
from training_db.core.suggest import unknown_name
from training_db.schema import HistoryMetric, RunHistory, RunHistoryKeyMetrics
from training_db.store.history.codec import decode_series, encode_series
from training_db.store.history.keymetrics import key_metrics_of, store_key_metrics
from training_db.store.history.rows import HISTORY_TABLE, load_series, metric_ids
from training_db.store.history.shapes import (
    STEP_KEY,
    HistoryColumns,
    MetricSeries,
    metric_name,
    normalize_history,
    step_number,
    to_columns,
)
from training_db.store.records import is_known_name, remember_known_name
from training_db.store.runs import lock_run, require_run, validate_run_id

# How many metric names at most are compared with one that no run logged.
MAX_KNOWN_METRICS: Final = 10_000


def log_history(session: Session, run_id: str, history: Any) -> int:
    """Append W&B history to a run; returns the number of values stored.

    ``history`` is a dict of column -> list (``{c: df[c].tolist()}``), a pandas
    DataFrame, a list of row dicts (as ``scan_history()`` yields) or one row dict. A
    (metric, step) logged again replaces the earlier value, so calling this every N steps
    keeps everything logged so far if the run crashes. In the column shapes NaN means "not
    logged"; in row dicts a NaN that is present is a logged NaN and is kept. The per-step
    key metrics table is filled from the same values.
    """
    validate_run_id(run_id)
    incoming = normalize_history(history)
    # Read-merge-write below: writers of one run take turns (two ranks of one trainer).
    lock_run(session, run_id)
    if not incoming:
        return 0
    ids = metric_ids(session, incoming, create=True)
    existing = load_series(session, run_id, [ids[name] for name in incoming])
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
        session.execute(sa.insert(HISTORY_TABLE), inserts)
    if updates:
        session.execute(sa.update(RunHistory), updates)
    steps = sorted({step for points in incoming.values() for step in points})
    store_key_metrics(session, run_id, steps, merged_series, key_metrics_of(session))
    return sum(len(points) for points in incoming.values())


def get_history(
    session: Session,
    run_id: str,
    keys: Sequence[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> HistoryColumns:
    """A run's history as columns aligned on ``_step``: ``{'_step': [...], key: [...]}``.

    A value is None where the key was not logged at that step, NaN where a NaN was
    logged. ``keys`` selects metrics (only those rows are read); ``min_step`` and
    ``max_step`` bound the steps, inclusive. A key no run has logged raises
    `UnknownNameError` with the closest metric names (`list_metrics` lists them); a key
    other runs logged but this one did not, or not within the steps, is simply absent.
    """
    columns = read_history(session, run_id, keys, min_step, max_step)
    if keys is not None:
        require_known_metrics(session, [key for key in _key_list(keys) if key not in columns])
    return columns


def _key_list(keys: Sequence[str] | str) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def require_known_metrics(session: Session, keys: Sequence[str]) -> None:
    """`UnknownNameError` for the first of ``keys`` that no run has logged.

    A database without history has nothing to compare a name with: nothing is raised.
    """
    if not keys:
        return
    names = [
        name
        for name in map(metric_name, keys)
        if name != STEP_KEY and not is_known_name(session, "metric", name)
    ]
    if not names:
        return
    logged = set(
        session.scalars(
            sa.select(HistoryMetric.name)
            .join(RunHistory, RunHistory.metric_id == HistoryMetric.id)
            .where(HistoryMetric.name.in_(names))
            .distinct()
        )
    )
    for name in logged:
        remember_known_name(session, "metric", name)
    unknown = [name for name in names if name not in logged]
    if not unknown:
        return
    known = session.scalars(
        sa.select(HistoryMetric.name).order_by(HistoryMetric.name).limit(MAX_KNOWN_METRICS)
    ).all()
    if known:
        raise unknown_name(f"no run has logged the metric {unknown[0]!r}", unknown[0], known)


def read_history(
    session: Session,
    run_id: str,
    keys: Sequence[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> HistoryColumns:
    """`get_history` without the check of ``keys``: an unknown key is simply absent."""
    validate_run_id(run_id)
    if isinstance(keys, str):
        keys = [keys]
    lower = None if min_step is None else step_number(min_step, "min_step")
    upper = None if max_step is None else step_number(max_step, "max_step")
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
        names = [metric_name(key) for key in keys]
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


def list_metrics(session: Session, run_id: str | None = None) -> list[dict[str, Any]]:
    """The history metrics logged, by name: of one run (``run_id``) or of every run.

    Each is a dict: ``metric`` (the W&B key), ``num_runs`` (runs that logged it),
    ``num_points`` (logged values, over those runs), ``first_step`` and ``last_step``.
    """
    statement = sa.select(
        HistoryMetric.name,
        sa.func.count(),
        sa.func.sum(RunHistory.num_points),
        sa.func.min(RunHistory.first_step),
        sa.func.max(RunHistory.last_step),
    ).join(HistoryMetric, HistoryMetric.id == RunHistory.metric_id)
    if run_id is not None:
        validate_run_id(run_id)
        require_run(session, run_id)
        statement = statement.where(RunHistory.run_id == run_id)
    rows = session.execute(statement.group_by(HistoryMetric.name).order_by(HistoryMetric.name))
    return [
        {
            "metric": name,
            "num_runs": int(num_runs),
            "num_points": int(num_points),
            "first_step": int(first_step),
            "last_step": int(last_step),
        }
        for name, num_runs, num_points, first_step, last_step in rows
    ]


def has_history(session: Session, run_id: str) -> bool:
    return (
        session.scalar(sa.select(RunHistory.metric_id).where(RunHistory.run_id == run_id).limit(1))
        is not None
    )


def delete_history(session: Session, run_id: str) -> int:
    """Remove a run's history and key metrics; returns the number of metrics removed."""
    validate_run_id(run_id)
    lock_run(session, run_id)
    session.execute(sa.delete(RunHistoryKeyMetrics).where(RunHistoryKeyMetrics.run_id == run_id))
    result = session.execute(sa.delete(RunHistory).where(RunHistory.run_id == run_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def history_json(session: Session, run_id: str) -> str | None:
    """The run's history as the JSON text of its columns dict, or None without history."""
    if not has_history(session, run_id):
        return None
    return jsoncodec.dumps(read_history(session, run_id))


def metric_series(
    session: Session, metric: str, run_ids: Sequence[str]
) -> dict[str, dict[int, Any]]:
    """One metric of many runs in one query: ``run_id -> {step: value}``."""
    name = metric_name(metric)
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


class HistoryOperations(Operations):
    """History: every logged value of a run, appended during training and read as columns."""

    log_history = write(log_history, idempotent=True, history=("history",))
    get_history = read(get_history)
    list_metrics = read(list_metrics)
    delete_history = write(delete_history, safe=False)
