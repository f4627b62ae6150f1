"""mangodb: the training-runs database.

Training scripts import plain functions from here::

    from training_db import insert_run, update_run_status, attach_crash_data

They act on the database chosen by the ``TRAINING_DB_*`` environment variables (or by
:func:`configure`). :class:`TrainingDB` offers the same functions as methods for code that
talks to two databases at once.
"""

from training_db.api import (
    attach_blog_post,
    attach_conversation,
    attach_crash_data,
    compare_gradient_methods,
    configure,
    delete_history,
    delete_run_objectives,
    delete_tag,
    finish_from_wandb,
    finish_run,
    get_db,
    get_history,
    get_objective_statistics,
    get_run,
    get_run_objectives,
    get_stats,
    get_tags,
    heartbeat,
    init_db,
    insert_objective,
    insert_run,
    log_history,
    mark_stale_runs,
    query_runs,
    query_runs_by_objectives,
    record_wandb_run,
    set_tags,
    update_objective_metric,
    update_run_status,
)
from training_db.db import TrainingDB
from training_db.errors import (
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
)
from training_db.wandb_files import WandbFileError

__all__ = [
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
    "WandbFileError",
    "attach_blog_post",
    "attach_conversation",
    "attach_crash_data",
    "compare_gradient_methods",
    "configure",
    "delete_history",
    "delete_run_objectives",
    "delete_tag",
    "finish_from_wandb",
    "finish_run",
    "get_db",
    "get_history",
    "get_objective_statistics",
    "get_run",
    "get_run_objectives",
    "get_stats",
    "get_tags",
    "heartbeat",
    "init_db",
    "insert_objective",
    "insert_run",
    "log_history",
    "mark_stale_runs",
    "query_runs",
    "query_runs_by_objectives",
    "record_wandb_run",
    "set_tags",
    "update_objective_metric",
    "update_run_status",
]
