"""The per-step key metrics of a run (``run_history_key_metrics``), filled from its history.

Which history keys fill which column is a `KeyMetricMapping`; a database's mapping reaches
the store functions through ``session.info`` (see `key_metrics_of`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core import portable
from training_db.core.errors import InvalidArgumentError
from training_db.core.validation import optional_number
from training_db.schema import HistoryMetric, RunHistory, RunHistoryKeyMetrics
from training_db.store.history.rows import metric_ids, stored_series
from training_db.store.history.shapes import TIMESTAMP_KEY, MetricSeries
from training_db.store.objectives import split_objective_alias

KEY_METRICS_INFO: Final = "key_metrics"


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


def key_metrics_of(session: Session) -> KeyMetricMapping:
    """The key-metric mapping of the database this session belongs to (its ``info``)."""
    mapping = session.info.get(KEY_METRICS_INFO, DEFAULT_KEY_METRICS)
    assert isinstance(mapping, KeyMetricMapping)
    return mapping


def store_key_metrics(
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
    relevant |= stored_series(session, run_id, metric_ids(session, untouched, create=False))
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
        relevant |= stored_series(
            session, run_id, {key: id_ for key, id_ in scores.items() if key not in relevant}
        )
        portable.upsert_many(
            session,
            RunHistoryKeyMetrics.__table__,
            _key_metrics_rows(run_id, again, relevant, mapping),
            conflict_columns=("run_id", "step"),
            update_columns=_KEY_METRIC_COLUMNS,
        )


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
