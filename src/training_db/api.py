"""The module-level API that training scripts import, bound to a default database.

``configure(url)`` (re)binds it; until then the first call resolves the URL from the
``TRAINING_DB_*`` environment variables (see :mod:`training_db.settings`).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import URL

from training_db.db import TrainingDB

P = ParamSpec("P")
R = TypeVar("R")

_default: TrainingDB | None = None
_default_lock = threading.Lock()


def configure(url: str | URL | None = None) -> TrainingDB:
    """Bind the module-level functions to the database at ``url``.

    With ``None`` the URL is resolved from the environment variables again. Returns the
    new default :class:`TrainingDB`; the previous one's connections are closed.
    """
    global _default
    database = TrainingDB(url)
    with _default_lock:
        previous, _default = _default, database
    if previous is not None:
        previous.dispose()
    return database


def get_db() -> TrainingDB:
    """The default database of the module-level functions (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TrainingDB()
        return _default


def on_default_db(method: Callable[Concatenate[TrainingDB, P], R]) -> Callable[P, R]:
    """A module-level function that calls ``method`` on the current default database."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(get_db(), *args, **kwargs)

    # help() and the docs show the training code's signature, without the method's ``self``.
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return call


init_db = on_default_db(TrainingDB.init_db)
insert_run = on_default_db(TrainingDB.insert_run)
update_run_status = on_default_db(TrainingDB.update_run_status)
get_run = on_default_db(TrainingDB.get_run)
query_runs = on_default_db(TrainingDB.query_runs)
get_stats = on_default_db(TrainingDB.get_stats)
attach_blog_post = on_default_db(TrainingDB.attach_blog_post)
attach_conversation = on_default_db(TrainingDB.attach_conversation)
attach_crash_data = on_default_db(TrainingDB.attach_crash_data)
set_tags = on_default_db(TrainingDB.set_tags)
get_tags = on_default_db(TrainingDB.get_tags)
delete_tag = on_default_db(TrainingDB.delete_tag)
insert_objective = on_default_db(TrainingDB.insert_objective)
update_objective_metric = on_default_db(TrainingDB.update_objective_metric)
get_run_objectives = on_default_db(TrainingDB.get_run_objectives)
query_runs_by_objectives = on_default_db(TrainingDB.query_runs_by_objectives)
get_objective_statistics = on_default_db(TrainingDB.get_objective_statistics)
compare_gradient_methods = on_default_db(TrainingDB.compare_gradient_methods)
delete_run_objectives = on_default_db(TrainingDB.delete_run_objectives)
finish_run = on_default_db(TrainingDB.finish_run)
log_history = on_default_db(TrainingDB.log_history)
get_history = on_default_db(TrainingDB.get_history)
delete_history = on_default_db(TrainingDB.delete_history)
# reliability (issue 6)
heartbeat = on_default_db(TrainingDB.heartbeat)
mark_stale_runs = on_default_db(TrainingDB.mark_stale_runs)
# W&B (issue 10)
record_wandb_run = on_default_db(TrainingDB.record_wandb_run)
finish_from_wandb = on_default_db(TrainingDB.finish_from_wandb)
