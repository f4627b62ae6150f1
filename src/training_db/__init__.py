"""mangodb: the training-runs database.

Training scripts import plain functions from here::

    from training_db import insert_run, update_run_status, attach_crash_data

They act on the database chosen by the ``TRAINING_DB_*`` environment variables (or by
:func:`configure`). :class:`TrainingDB` offers the same operations as methods for code that
talks to two databases at once. Each operation is declared once, in its family in
``training_db.store`` (or ``training_db.ops``); the functions here are made from those
declarations (see `training_db.core.operations`).
"""

from training_db import api
from training_db.api import TrainingDB, configure, get_db, init_db
from training_db.core.errors import (
    CorruptDataError,
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    DatabaseWriteError,
    DuplicateError,
    DuplicateWandbRunIdError,
    InvalidArgumentError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SchemaVersionError,
    TrainingDBError,
    UnknownNameError,
)
from training_db.core.wandb_files import WandbFileError

globals().update(api.FUNCTIONS)

__all__ = [  # noqa: PLE0604 - the functions are made from the declared operations
    "CorruptDataError",
    "DatabaseNotFoundError",
    "DatabaseUnavailableError",
    "DatabaseWriteError",
    "DuplicateError",
    "DuplicateWandbRunIdError",
    "InvalidArgumentError",
    "ObjectiveAlreadyExistsError",
    "RunAlreadyExistsError",
    "RunNotFoundError",
    "SchemaVersionError",
    "TrainingDB",
    "TrainingDBError",
    "UnknownNameError",
    "WandbFileError",
    "configure",
    "get_db",
    "init_db",
    *sorted(api.FUNCTIONS),
]
