"""`TrainingDB`, and the module-level API that training scripts import, made from the
declared operations.

Every declared operation (`training_db.core.operations`) becomes a function here with its
exact signature, acting on a default database: ``training_db.insert_run(...)`` is
``get_db().insert_run(...)``. `configure` (re)binds the default; until then the first call
resolves the URL from the ``TRAINING_DB_*`` environment variables
(`training_db.core.settings`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL

from training_db.core.operations import Operation, operations
from training_db.db import Database
from training_db.ops.curves import CurveOperations
from training_db.ops.wandb_import import WandbOperations


class TrainingDB(Database, WandbOperations, CurveOperations):
    """A training-runs database at ``url`` (resolved from the env vars when None).

    Every public operation is a method: one transaction around one repository function
    (or, for the W&B and curve use cases, a few). Nothing connects until the first call.
    The first write to a database that does not exist creates it at the newest schema
    revision; a read of a missing SQLite file raises `DatabaseNotFoundError`; a database
    behind (or ahead of) this code's revision raises `SchemaVersionError` naming the
    command that fixes it. ``key_metrics`` says which history keys fill the per-step
    key-metrics table.
    """


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
    database = _default
    if database is not None:
        return database
    with _default_lock:
        if _default is None:
            _default = TrainingDB()
        return _default


def init_db() -> None:
    """Create or upgrade the default database to the newest revision (idempotent)."""
    get_db().init_db()


def module_function(operation: Operation[Any, Any]) -> Callable[..., Any]:
    """``operation`` as a module-level function on the default database, same signature."""
    method = operation.method

    def function(*args: Any, **kwargs: Any) -> Any:
        return method(_default or get_db(), *args, **kwargs)

    function.__name__ = function.__qualname__ = operation.name
    function.__doc__ = operation.function.__doc__
    function.__module__ = "training_db"
    function.__signature__ = operation.signature  # type: ignore[attr-defined]
    return function


FUNCTIONS: dict[str, Callable[..., Any]] = {
    operation.name: module_function(operation) for operation in operations()
}
globals().update(FUNCTIONS)

__all__ = ["TrainingDB", "configure", "get_db", "init_db", *FUNCTIONS]  # noqa: PLE0604
