"""What a failure means: can retrying cure it? One table says, for calls and for replays."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Literal

from sqlalchemy import exc as sa_exc

from training_db.core.errors import (
    CorruptDataError,
    DatabaseUnavailableError,
    DuplicateError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SchemaVersionError,
    is_lock_conflict,
)

Failure = Literal["transient", "already-applied", "unknown-run", "invalid", "refused"]
CallAction = Literal["spool", "drop", "reject"]
ReplayAction = Literal["keep", "done", "reject"]

#: For each kind of failure (see `classify_failure`): what becomes of a call that failed so,
#: and of a replayed record. ``spool``/``keep``: into the spool, or kept there in order (the
#: replay stops at it); ``drop``: logged, not kept; ``done``: the record is removed (its
#: effect is there); ``reject``: moved to ``spool.rejected`` with the reason, and a replay
#: goes on with the next record. docs/reliability.md shows the same table.
FAILURE_HANDLING: Final[Mapping[Failure, tuple[CallAction, ReplayAction]]] = {
    "transient": ("spool", "keep"),
    "already-applied": ("drop", "done"),
    "unknown-run": ("spool", "reject"),
    "invalid": ("drop", "reject"),
    "refused": ("reject", "reject"),
}

# Failures that another attempt can cure: the database is down, busy, or behind in schema
# (an operator can upgrade it), or a network or pool timeout.
_TRANSIENT_ERRORS: Final = (
    DatabaseUnavailableError,
    SchemaVersionError,
    TimeoutError,
    ConnectionError,
    sa_exc.TimeoutError,
)
# PostgreSQL read_only_sql_transaction: a standby or a database made read-only for
# maintenance. Writes work again once it is writable, as with a read-only SQLite file.
_PG_READ_ONLY: Final = "25006"


def classify_failure(function: str, exc: BaseException) -> Failure:
    """Whether retrying ``function`` can cure the failure ``exc``; the first rule that matches.

    1. ``already-applied``: ``insert_run``/``insert_objective`` found its row there (a replay
       of a call that had reached the database).
    2. ``transient``: `DatabaseUnavailableError`, `SchemaVersionError`, a lock conflict, a
       timeout, a read-only PostgreSQL.
    3. ``unknown-run``: `RunNotFoundError` (the run's ``insert_run`` may be waiting in a spool).
    4. ``refused``: `CorruptDataError` (stored data is damaged, not the call).
    5. ``invalid``: `InvalidArgumentError` and any other ``ValueError`` or ``TypeError``, a
       duplicate (`DuplicateError`).
    6. ``refused``: everything else: `DatabaseWriteError` (the database refused the
       statement) and any unexpected exception, which is a deterministic bug as far as a
       retry can tell.
    """
    if (function == "insert_run" and isinstance(exc, RunAlreadyExistsError)) or (
        function == "insert_objective" and isinstance(exc, ObjectiveAlreadyExistsError)
    ):
        return "already-applied"
    if isinstance(exc, _TRANSIENT_ERRORS) or any(map(_transient_cause, _causes(exc))):
        return "transient"
    if isinstance(exc, RunNotFoundError):
        return "unknown-run"
    if isinstance(exc, CorruptDataError):
        return "refused"
    if isinstance(exc, (ValueError, TypeError, DuplicateError)):
        return "invalid"
    return "refused"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (a bounded walk: chains can loop)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__


def _transient_cause(exc: BaseException) -> bool:
    if is_lock_conflict(exc):
        return True
    orig = getattr(exc, "orig", None)
    return getattr(orig, "pgcode", None) == _PG_READ_ONLY
