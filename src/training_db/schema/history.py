"""History: every logged value of every run as compact arrays, and per-step key metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from training_db.core.types import JSONDocument
from training_db.schema.base import RUN_ID_MAX_LENGTH, Base, sql_in

HISTORY_KINDS: Final = ("float", "int", "json", "float_bp", "int_bp")


class HistoryMetric(Base):
    """The metric-name dictionary: each W&B history key once, referenced by number."""

    __tablename__ = "history_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


class RunHistory(Base):
    """One metric's whole history in one run: its steps and values as compact arrays.

    ``step_data`` holds the logged steps, ascending (an arithmetic run as first/stride/count,
    else zlib-compressed int64 deltas; see ``history.encode_steps``). The
    values depend on ``kind``: ``float`` — little-endian float64 in ``value_data`` (a logged
    NaN or ±Infinity is kept bit for bit); ``int`` — little-endian int64 in ``value_data``;
    ``float_bp`` / ``int_bp`` — the same numbers as byte planes, the repetitive high planes
    deflated (``history.pack_planes``, revision 0006); ``json`` — a JSON list in
    ``value_json`` (strings, dicts, booleans, mixed). A step that was not logged is simply
    absent. See :mod:`training_db.store.history`.
    """

    __tablename__ = "run_history"

    run_id: Mapped[str] = mapped_column(
        String(RUN_ID_MAX_LENGTH),
        ForeignKey("training_runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    )
    metric_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("history_metrics.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    # A count of one series' points: bounded far below 2**31 (see revision 0007).
    num_points: Mapped[int] = mapped_column(Integer)
    first_step: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int] = mapped_column(BigInteger)
    step_data: Mapped[bytes] = mapped_column(LargeBinary)
    value_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    value_json: Mapped[Any] = mapped_column(JSONDocument(), nullable=True)

    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(HISTORY_KINDS)})", name="kind"),
        Index("ix_run_history_metric_id", "metric_id"),
    )


class RunHistoryKeyMetrics(Base):
    """Per-step key metrics of a run, extracted from its history for SQL across runs."""

    __tablename__ = "run_history_key_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(RUN_ID_MAX_LENGTH), ForeignKey("training_runs.run_id", ondelete="CASCADE")
    )
    step: Mapped[int] = mapped_column(BigInteger)
    loss: Mapped[float | None]
    grad_norm: Mapped[float | None]
    learning_rate: Mapped[float | None]
    objective_scores_json: Mapped[dict[str, Any] | None]
    timestamp: Mapped[dt.datetime | None]

    __table_args__ = (UniqueConstraint("run_id", "step"),)
