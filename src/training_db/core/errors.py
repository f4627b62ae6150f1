"""The exception hierarchy, and the one place where driver errors are translated.

Everything the package raises derives from `TrainingDBError`. Bad arguments raise
`InvalidArgumentError` (also a ``ValueError``, so ``except ValueError`` keeps working) with
a message naming the argument, the bad value and the valid ones. `DatabaseUnavailableError`
means the database could not be reached or failed; it never stands for bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import exc as sa_exc


class TrainingDBError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(TrainingDBError, ValueError):
    """An argument is wrong (type, range, unknown name); nothing was written.

    The message names the argument and, where there is a list, the valid choices.
    """


class UnknownNameError(InvalidArgumentError):
    """A name matched nothing the database knows: a status, filter key, column, JSON path,
    history metric or objective that no stored row has (a typo, usually).

    ``suggestions`` holds the closest known names (the message ends "did you mean ...?").
    A name the database knows but that no row of the query matches is not this error: that
    answer is simply empty.
    """

    def __init__(self, message: str, *, name: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.suggestions = tuple(suggestions)

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments: pickle needs help
        return (_unknown_name_error, (str(self), self.name, self.suggestions))


def _unknown_name_error(message: str, name: str, suggestions: Sequence[str]) -> UnknownNameError:
    return UnknownNameError(message, name=name, suggestions=suggestions)


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


# SQLite's "file is not a database" (SQLITE_NOTADB) arrives as a plain DatabaseError: the file
# cannot be opened as a database, which is unavailability, not a refused statement.
_NOT_A_DATABASE = "file is not a database"


# --- unique violations: which constraint, as the driver tells it ------------------------------


@dataclass(frozen=True)
class UniqueViolation:
    """The unique constraint (or primary key) a write broke, as the driver named it.

    PostgreSQL names the constraint; SQLite names the table and the columns instead (or an
    index by name). Which error a violation becomes is the schema's knowledge, not this
    module's: see `translated_errors`.
    """

    constraint: str | None = None
    table: str | None = None
    columns: tuple[str, ...] = ()

    def describe(self) -> str:
        """The constraint's name, else its table and columns, for a message."""
        if self.constraint:
            return self.constraint
        if self.table and self.columns:
            return f"{self.table}({', '.join(self.columns)})"
        return f"a unique constraint of {self.table}" if self.table else "a unique constraint"


# Maps a unique violation to the error it means (None: not one it knows). The schema layer
# holds the table (``training_db.schema.constraints``); ``Database`` passes it in.
ConstraintErrors = Callable[[UniqueViolation], DuplicateError | None]

_PG_UNIQUE_VIOLATION = "23505"
# SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY (extended result codes).
_SQLITE_UNIQUE_CODES = frozenset({2067, 1555})
_SQLITE_UNIQUE_PREFIX = "UNIQUE constraint failed: "


def unique_violation(exc: sa_exc.IntegrityError) -> UniqueViolation | None:
    """The unique constraint ``exc`` reports, or None when it is another integrity error."""
    orig = exc.orig
    if getattr(orig, "pgcode", None) == _PG_UNIQUE_VIOLATION:
        diag = getattr(orig, "diag", None)
        return UniqueViolation(
            constraint=getattr(diag, "constraint_name", None),
            table=getattr(diag, "table_name", None),
        )
    message = str(orig).strip()
    code = getattr(orig, "sqlite_errorcode", None)  # Python 3.11+
    if not message.startswith(_SQLITE_UNIQUE_PREFIX):
        return UniqueViolation() if code in _SQLITE_UNIQUE_CODES else None
    # "UNIQUE constraint failed: run_tags.run_id, run_tags.key", or "...: index 'name'"
    named = message.removeprefix(_SQLITE_UNIQUE_PREFIX).splitlines()[0].strip()
    if named.startswith("index '") and named.endswith("'"):
        return UniqueViolation(constraint=named.removeprefix("index '").removesuffix("'"))
    qualified = [part.strip().partition(".") for part in named.split(",")]
    tables = {table for table, _, _ in qualified}
    if len(tables) != 1 or not all(column for _, _, column in qualified):
        return UniqueViolation()
    return UniqueViolation(table=tables.pop(), columns=tuple(column for _, _, column in qualified))


def duplicate_error(violation: UniqueViolation) -> DuplicateError:
    """The generic error of a unique violation no table maps: it names the constraint."""
    return DuplicateError(
        f"the write would duplicate a row that must be unique ({violation.describe()})"
    )


@contextmanager
def translated_errors(
    where: str | None = None, *, constraint_errors: ConstraintErrors | None = None
) -> Iterator[None]:
    """Turn driver errors into this package's errors, chained ``from`` the original.

    Pre-checks in the repository give the precise message in the usual case; this catches
    what slips past them (two writers racing for the same id, a server gone away).
    ``where`` (the database, password hidden) starts the message of an unavailable database
    or a refused statement, so that a log line names the file or server at fault.
    ``constraint_errors`` says which error a unique violation means (by constraint); one it
    does not map becomes a `DuplicateError` naming the constraint.
    """
    prefix = f"{where}: " if where else ""
    try:
        yield
    except sa_exc.IntegrityError as exc:
        raise _translate_integrity_error(exc, constraint_errors) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        if exceeds_a_limit(exc):
            raise _too_large(exc) from exc
        raise DatabaseUnavailableError(prefix + describe_operational_error(exc)) from exc
    except sa_exc.DisconnectionError as exc:
        raise DatabaseUnavailableError(f"{prefix}database unavailable: {exc}") from exc
    except sa_exc.DBAPIError as exc:  # DataError, ProgrammingError, ...: refused, not down
        if exceeds_a_limit(exc):
            raise _too_large(exc) from exc
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


def _translate_integrity_error(
    exc: sa_exc.IntegrityError, constraint_errors: ConstraintErrors | None
) -> TrainingDBError:
    violation = unique_violation(exc)
    if violation is not None:
        mapped = constraint_errors(violation) if constraint_errors is not None else None
        return mapped if mapped is not None else duplicate_error(violation)
    message = str(exc.orig)
    first_line = message.strip().splitlines()[0] if message.strip() else type(exc.orig).__name__
    return DatabaseWriteError(f"the database rejected the write: {first_line}")


# PostgreSQL's class 54, program_limit_exceeded: a value too large for an index row (54000),
# a statement too deeply nested (54001), too many columns or arguments. SQLite says the same
# in its message. The same call fails the same way however often it is tried again: the
# input is too large, the server is not down (docs/reliability.md).
_PG_LIMIT_CLASS: Final = "54"
_SQLITE_LIMIT_MESSAGES: Final = (
    "expression tree is too large",
    "too many sql variables",
    "string or blob too big",
    "too many terms in compound select",
    "parser stack overflow",
    "too many columns",
)


def exceeds_a_limit(exc: sa_exc.DBAPIError) -> bool:
    """Whether the database refused the statement because a value or the statement itself
    is beyond one of its limits (a bad argument, not an outage)."""
    code = getattr(exc.orig, "pgcode", None)
    if isinstance(code, str):
        return code.startswith(_PG_LIMIT_CLASS)
    text = str(exc.orig).lower()
    return any(message in text for message in _SQLITE_LIMIT_MESSAGES)


def _too_large(exc: sa_exc.DBAPIError) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"a value or filter is too large for the database: {_first_line(exc)}"
    )


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
