"""The ``run_history`` rows of a run: metric ids, and its stored series read back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core import portable
from training_db.schema import HistoryMetric, RunHistory
from training_db.store.history.codec import decode_series
from training_db.store.history.shapes import MetricSeries

HISTORY_TABLE: Final = cast(sa.Table, RunHistory.__table__)


def metric_ids(session: Session, names: Iterable[str], *, create: bool) -> dict[str, int]:
    """Ids of metric names in the dictionary, adding the missing ones when ``create``."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    found: dict[str, int] = dict(
        session.execute(
            sa.select(HistoryMetric.name, HistoryMetric.id).where(HistoryMetric.name.in_(wanted))
        ).all()
    )
    missing = [name for name in wanted if name not in found]
    if missing and create:
        portable.insert_ignoring_conflicts(
            session, HistoryMetric.__table__, [{"name": name} for name in missing], ("name",)
        )
        added = sa.select(HistoryMetric.name, HistoryMetric.id).where(
            HistoryMetric.name.in_(missing)
        )
        found.update(session.execute(added).all())
    return found


def load_series(session: Session, run_id: str, ids: Sequence[int]) -> dict[int, dict[int, Any]]:
    rows = session.execute(
        sa.select(
            RunHistory.metric_id,
            RunHistory.kind,
            RunHistory.step_data,
            RunHistory.value_data,
            RunHistory.value_json,
        ).where(RunHistory.run_id == run_id, RunHistory.metric_id.in_(ids))
    )
    return {
        metric_id: decode_series(kind, step_data, value_data, value_json)
        for metric_id, kind, step_data, value_data, value_json in rows
    }


def stored_series(session: Session, run_id: str, ids: Mapping[str, int]) -> MetricSeries:
    """This run's stored series of the metrics ``{name: id}`` (unlogged ones left out)."""
    if not ids:
        return {}
    names = {metric_id: name for name, metric_id in ids.items()}
    return {
        names[metric_id]: points
        for metric_id, points in load_series(session, run_id, list(ids.values())).items()
    }
