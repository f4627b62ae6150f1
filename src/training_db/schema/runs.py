"""Runs: one row per training run, from launch to its end, and its free-form tags."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from training_db.core.types import JSONDocument, utc_now
from training_db.schema.base import RUN_ID_MAX_LENGTH, Base, sql_in

if TYPE_CHECKING:
    from training_db.schema.objectives import RunObjective

RUN_STATUSES: Final = ("launched", "running", "completed", "failed", "crashed")
TERMINAL_STATUSES: Final = ("completed", "failed", "crashed")


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
    # Extracted hyperparameters (see training_db.schema.extraction for where each comes from)
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
        cascade="all, delete-orphan", passive_deletes=True
    )
    tags: Mapped[list[RunTag]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (CheckConstraint(f"status IN ({sql_in(RUN_STATUSES)})", name="status"),)

    def __repr__(self) -> str:
        return f"TrainingRun(run_id={self.run_id!r}, status={self.status!r})"


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
