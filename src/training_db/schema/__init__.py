"""The schema: `Base` and one module per table family, read top to bottom.

Alembic revisions in ``alembic/versions`` create it; a test compares these models with the
migrated database on both backends. Import models from here
(``from training_db.schema import TrainingRun``).
"""

from training_db.schema.base import NAMING_CONVENTION, RUN_ID_MAX_LENGTH, Base
from training_db.schema.history import (
    HISTORY_KINDS,
    HistoryMetric,
    RunHistory,
    RunHistoryKeyMetrics,
)
from training_db.schema.objectives import OBJECTIVE_DIRECTIONS, RunObjective
from training_db.schema.runs import RUN_STATUSES, TERMINAL_STATUSES, RunTag, TrainingRun

__all__ = [
    "HISTORY_KINDS",
    "NAMING_CONVENTION",
    "OBJECTIVE_DIRECTIONS",
    "RUN_ID_MAX_LENGTH",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "Base",
    "HistoryMetric",
    "RunHistory",
    "RunHistoryKeyMetrics",
    "RunObjective",
    "RunTag",
    "TrainingRun",
]
