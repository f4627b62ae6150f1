"""The schema, read top to bottom. Alembic revisions in ``alembic/versions`` create it;
a test compares these models with the migrated database on both backends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from training_db.types import Float64, Int64, JSONDocument, UTCDateTime, utc_now

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES: Final = ("launched", "running", "completed", "failed", "crashed")
TERMINAL_STATUSES: Final = ("completed", "failed", "crashed")
OBJECTIVE_DIRECTIONS: Final = ("maximize", "minimize")
RUN_ID_MAX_LENGTH: Final = 255
HISTORY_KINDS: Final = ("float", "int", "json", "float_bp", "int_bp")


def _sql_in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class Base(DeclarativeBase):
    """The models' base: the naming convention, and the portable type of each Python type.

    An ``int`` column is 64-bit (`Int64`, BIGINT on PostgreSQL): anything a user can hand in
    fits. Only the surrogate keys (and the foreign keys to them) and counts bounded far below
    2**31 say ``Integer`` explicitly; ``tests/test_migrations.py`` holds that list.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument(),
        Any: JSONDocument(),
        float: Float64(),
        int: Int64,
        str: String(),
    }


class TrainingRun(Base):
    """One training run, from launch to its end."""

    __tablename__ = "training_runs"

    # Identification
    run_id: Mapped[str] = mapped_column(String(RUN_ID_MAX_LENGTH), primary_key=True)
    wandb_run_id: Mapped[str | None] = mapped_column(unique=True)
    wandb_url: Mapped[str | None]
    run_name: Mapped[str | None]
    chain_of_custody_id: Mapped[str | None]
    # Where it ran
    config_file_path: Mapped[str | None]
    host: Mapped[str | None] = mapped_column(index=True)
    instance_id: Mapped[str | None]
    # Lifecycle
    created_at: Mapped[dt.datetime] = mapped_column(default=utc_now, index=True)
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    duration_seconds: Mapped[float | None]
    status: Mapped[str] = mapped_column(default="launched", index=True)
    # Liveness (issue 6): the last heartbeat of a running run, see runs.mark_stale_runs
    last_heartbeat_at: Mapped[dt.datetime | None]
    # Extracted hyperparameters (see training_db.extraction for where each comes from)
    batch_size: Mapped[int | None]
    learning_rate: Mapped[float | None]
    beta: Mapped[float | None]
    gradient_method: Mapped[str | None] = mapped_column(index=True)
    num_gpus: Mapped[int | None]
    num_objectives: Mapped[int | None]
    num_scaffolds: Mapped[int | None]
    gradient_accumulation_steps: Mapped[int | None]
    model_name: Mapped[str | None]
    optimizer: Mapped[str | None]
    lr_scheduler: Mapped[str | None]
    warmup_steps: Mapped[int | None]
    weight_decay: Mapped[float | None]
    max_grad_norm: Mapped[float | None]
    num_epochs: Mapped[int | None]
    max_steps: Mapped[int | None]
    seed: Mapped[int | None]
    lora_rank: Mapped[int | None]
    num_generations: Mapped[int | None]
    temperature: Mapped[float | None]
    # Final values from the W&B summary
    final_loss: Mapped[float | None]
    total_training_steps: Mapped[int | None]
    # Whole documents
    config_json: Mapped[dict[str, Any] | None]
    final_metrics_json: Mapped[dict[str, Any] | None]
    # Attachments
    blog_post_url: Mapped[str | None]
    conversation_s3_key: Mapped[str | None]
    crash_report_s3_key: Mapped[str | None]
    error_log_s3_key: Mapped[str | None]
    crash_analysis_s3_key: Mapped[str | None]
    # Audit
    created_at_db: Mapped[dt.datetime] = mapped_column(
        default=utc_now, server_default=func.current_timestamp()
    )
    updated_at_db: Mapped[dt.datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=func.current_timestamp()
    )

    objectives: Mapped[list[RunObjective]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: Mapped[list[RunTag]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (CheckConstraint(f"status IN ({_sql_in(RUN_STATUSES)})", name="status"),)

    def __repr__(self) -> str:
        return f"TrainingRun(run_id={self.run_id!r}, status={self.status!r})"


class RunObjective(Base):
    """One objective of a run: how it was configured, and its final values."""

    __tablename__ = "run_objectives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(RUN_ID_MAX_LENGTH), ForeignKey("training_runs.run_id", ondelete="CASCADE")
    )
    objective_name: Mapped[str]
    objective_alias: Mapped[str | None]
    uniprot: Mapped[str | None]
    weight: Mapped[float | None]
    direction: Mapped[str | None]
    raw_mean: Mapped[float | None]
    normalized_mean: Mapped[float | None]
    raw_std: Mapped[float | None]
    normalized_std: Mapped[float | None]

    run: Mapped[TrainingRun] = relationship(back_populates="objectives")

    __table_args__ = (
        UniqueConstraint("run_id", "objective_name"),
        CheckConstraint(
            f"direction IS NULL OR direction IN ({_sql_in(OBJECTIVE_DIRECTIONS)})",
            name="direction",
        ),
        Index("ix_run_objectives_objective_name_raw_mean", "objective_name", "raw_mean"),
    )


class RunTag(Base):
    """Free metadata on a run: one row per key, the value any JSON value."""

    __tablename__ = "run_tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(RUN_ID_MAX_LENGTH), ForeignKey("training_runs.run_id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[Any] = mapped_column(JSONDocument(), nullable=True)

    run: Mapped[TrainingRun] = relationship(back_populates="tags")

    __table_args__ = (UniqueConstraint("run_id", "key"), Index("ix_run_tags_key", "key"))


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
    absent. See :mod:`training_db.history`.
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
        CheckConstraint(f"kind IN ({_sql_in(HISTORY_KINDS)})", name="kind"),
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
