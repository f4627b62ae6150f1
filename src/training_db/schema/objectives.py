"""Objectives: how each objective of a run was configured, and its final values."""

from __future__ import annotations

from typing import Final

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from training_db.schema.base import RUN_ID_MAX_LENGTH, Base, sql_in

OBJECTIVE_DIRECTIONS: Final = ("maximize", "minimize")


class RunObjective(Base):
    """One objective of a run: how it was configured, and its final values.

    ``TrainingRun.objectives`` lists a run's objectives; there is no way back from here
    (nothing used one), so this module and ``runs`` do not import each other.
    """

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

    __table_args__ = (
        UniqueConstraint("run_id", "objective_name"),
        CheckConstraint(
            f"direction IS NULL OR direction IN ({sql_in(OBJECTIVE_DIRECTIONS)})",
            name="direction",
        ),
        Index("ix_run_objectives_objective_name_raw_mean", "objective_name", "raw_mean"),
    )
