"""The exception hierarchy, and the one place where driver errors are translated.

Everything the package raises derives from `TrainingDBError`. Bad arguments raise
`InvalidArgumentError` (also a ``ValueError``, so ``except ValueError`` keeps working) with
a message naming the argument, the bad value and the valid ones. `DatabaseUnavailableError`
means the database could not be reached or failed; it never stands for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc


class TrainingDBError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(TrainingDBError, ValueError):
    """An argument is wrong (type, range, unknown name); nothing was written.

    The message names the argument and, where there is a list, the valid choices.
    """


class CorruptDataError(TrainingDBError, ValueError):
    """Stored data cannot be decoded (a damaged history row, say)."""


class RunNotFoundError(TrainingDBError, LookupError):
    """No run has the given ``run_id``."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no training run with run_id={run_id!r}")
        self.run_id = run_id


class DuplicateError(TrainingDBError, ValueError):
    """A write would duplicate something that must be unique; nothing was written."""


class RunAlreadyExistsError(DuplicateError):
    """A run with this ``run_id`` exists already."""


class DuplicateWandbRunIdError(DuplicateError):
    """Another run already carries this W&B run id."""


class ObjectiveAlreadyExistsError(DuplicateError):
    """The run already has an objective of this name."""


class SchemaVersionError(TrainingDBError):
    """The database schema is not at the revision this code expects."""


class DatabaseUnavailableError(TrainingDBError):
    """The database could not be reached or opened (the message says why)."""


class DatabaseNotFoundError(DatabaseUnavailableError):
    """A read found no SQLite database file at the configured path (reads never create one)."""


class DatabaseWriteError(TrainingDBError):
    """The database refused a write for a reason outside the caller's arguments."""


_UNIQUE_MARKERS = ("unique constraint", "duplicate key value", "unique_violation")
_WANDB_ID = re.compile(r"wandb_run_id")
_OBJECTIVE = re.compile(r"run_objectives")


# SQLite's "file is not a database" (SQLITE_NOTADB) arrives as a plain DatabaseError: the file
# cannot be opened as a database, which is unavailability, not a refused statement.
_NOT_A_DATABASE = "file is not a database"


@contextmanager
def translated_errors(where: str | None = None) -> Iterator[None]:
    """Turn driver errors into this package's errors, chained ``from`` the original.

    Pre-checks in the repository give the precise message in the usual case; this catches
    what slips past them (two writers racing for the same id, a server gone away).
    ``where`` (the database, password hidden) starts the message of an unavailable database
    or a refused statement, so that a log line names the file or server at fault.
    """
    prefix = f"{where}: " if where else ""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise _translate_integrity_error(exc) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise DatabaseUnavailableError(prefix + describe_operational_error(exc)) from exc
    except sa_exc.DisconnectionError as exc:
        raise DatabaseUnavailableError(f"{prefix}database unavailable: {exc}") from exc
    except sa_exc.DBAPIError as exc:  # DataError, ProgrammingError, ...: refused, not down
        if _NOT_A_DATABASE in str(exc.orig).lower():
            raise DatabaseUnavailableError(prefix + describe_operational_error(exc)) from exc
        raise DatabaseWriteError(
            f"{prefix}the database refused the statement: {_first_line(exc)}"
        ) from exc
    # The last line of defence for values the checks before the statement let through:
    # a value the driver or a column type cannot convert is a bad argument, not an outage.
    except sa_exc.StatementError as exc:
        raise InvalidArgumentError(
            f"a value could not be sent to the database: {exc.orig or exc}"
        ) from exc
    except OverflowError as exc:
        raise InvalidArgumentError(f"a value is out of range for the database: {exc}") from exc


def _translate_integrity_error(exc: sa_exc.IntegrityError) -> TrainingDBError:
    message = str(exc.orig)
    lowered = message.lower()
    if any(marker in lowered for marker in _UNIQUE_MARKERS):
        if _WANDB_ID.search(message):
            return DuplicateWandbRunIdError("another run already has this wandb_run_id")
        if _OBJECTIVE.search(message):
            return ObjectiveAlreadyExistsError("the run already has an objective of this name")
        return RunAlreadyExistsError("a run with this run_id already exists")
    first_line = message.strip().splitlines()[0] if message.strip() else type(exc.orig).__name__
    return DatabaseWriteError(f"the database rejected the write: {first_line}")


def describe_operational_error(exc: sa_exc.DBAPIError) -> str:
    """A one-line cause for an operational error, without the statement or the URL."""
    return f"database unavailable: {_first_line(exc)}"


def _first_line(exc: sa_exc.DBAPIError) -> str:
    text = str(exc.orig).strip()
    return text.splitlines()[0] if text else type(exc.orig).__name__


# --- which driver failures are worth another attempt (used by TrainingDB) ----------------

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_SQLITE_LOCK_MESSAGES = ("database is locked", "database table is locked", "database is busy")
# PostgreSQL serialization_failure and deadlock_detected: the transaction was rolled back.
_PG_RETRYABLE_CODES = frozenset({"40001", "40P01"})


def is_lock_conflict(exc: BaseException | None) -> bool:
    """A driver error saying another transaction was in the way (nothing was committed)."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "pgcode", None) in _PG_RETRYABLE_CODES:
        return True
    code = getattr(orig, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    return type(orig).__module__ == "sqlite3" and any(
        message in str(orig).lower() for message in _SQLITE_LOCK_MESSAGES
    )


def is_connection_lost(exc: BaseException | None) -> bool:
    """The connection died under a call (killed by the server, restart, network)."""
    if isinstance(exc, sa_exc.DisconnectionError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)
