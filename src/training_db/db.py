"""`Database`: one database, its engine and sessions, and one transaction per operation.

The public operations are declared in the store's families (`training_db.store`); this
class inherits them, so each becomes a method that runs its repository function in one
transaction (`_call`): it happens whole or not at all, and is attempted again only when
that is safe (`_transaction`). ``training_db.TrainingDB`` adds the use cases of ``ops/``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from training_db.core.errors import (
    DatabaseUnavailableError,
    is_connection_lost,
    is_lock_conflict,
    translated_errors,
)
from training_db.core.operations import Operation
from training_db.core.settings import (
    is_memory_sqlite,
    make_engine,
    require_existing_database,
    resolve_url,
    safe_url,
    sqlite_file,
)
from training_db.schema import migrations
from training_db.schema.constraints import constraint_error
from training_db.store.completion import CompletionOperations
from training_db.store.history import DEFAULT_KEY_METRICS, KeyMetricMapping, history_json
from training_db.store.history.keymetrics import KEY_METRICS_INFO
from training_db.store.history.store import HistoryOperations
from training_db.store.objectives import ObjectiveOperations
from training_db.store.records import KNOWN_NAMES_INFO, RunRecord
from training_db.store.runs import RunOperations
from training_db.store.tags import TagOperations

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger(__name__)

LOCK_RETRY_FIRST_DELAY_S: Final = 0.02
LOCK_RETRY_MAX_DELAY_S: Final = 1.0


class Database(
    RunOperations, TagOperations, ObjectiveOperations, CompletionOperations, HistoryOperations
):
    """A training-runs database at ``url`` (resolved from the env vars when None).

    Nothing connects until the first call. The first write to a database that does not
    exist creates it at the newest schema revision; a read of a missing SQLite file raises
    `DatabaseNotFoundError`; a database behind (or ahead of) this code's revision raises
    `SchemaVersionError` naming the command that fixes it. ``key_metrics`` says which
    history keys fill the per-step key-metrics table.
    """

    # Lock conflicts are retried for at most this many seconds in total; no new attempt
    # starts after that, though the one running may still wait one SQLite busy timeout.
    lock_retry_seconds: float = 30.0

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        create_if_empty: bool = True,
        key_metrics: KeyMetricMapping = DEFAULT_KEY_METRICS,
    ) -> None:
        self.url: URL = resolve_url(url)
        self.key_metrics = key_metrics
        self._create_if_empty = create_if_empty
        self._engine: Engine | None = None
        self._readers: sessionmaker[Session]
        self._writers: sessionmaker[Session]
        self._schema_checked = False
        self._lock = threading.Lock()
        self._where: tuple[URL, str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._safe_url()!r})"

    def _safe_url(self) -> str:
        """``safe_url(self.url)``, made once: every call's error messages start with it, and
        masking parses the URL again (tens of microseconds, on every call)."""
        where = self._where
        if where is None or where[0] is not self.url:
            where = self._where = (self.url, safe_url(self.url))
        return where[1]

    # --- engine and sessions ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine, created on first use."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.url)
                # The store functions find this database's key-metric mapping and the names
                # it has confirmed exist (see records.is_known_name) here.
                info = {KEY_METRICS_INFO: self.key_metrics, KNOWN_NAMES_INFO: set()}
                self._readers = sessionmaker(engine, expire_on_commit=False, info=info)
                self._writers = sessionmaker(
                    engine.execution_options(sqlite_write=True),
                    expire_on_commit=False,
                    info=info,
                )
                self._engine = engine
            return self._engine

    def _sessions(self, *, write: bool) -> sessionmaker[Session]:
        """Sessions for reads, or for writes (which begin IMMEDIATE on SQLite)."""
        if self._engine is None:
            _ = self.engine  # creates the session factories
        if not self._schema_checked:
            self._ensure_schema(write=write)
        return self._writers if write else self._readers

    def dispose(self) -> None:
        """Close every pooled connection (the object stays usable)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()

    # --- schema ----------------------------------------------------------------------------

    def schema_state(self) -> migrations.SchemaState:
        """The database's revision next to this code's head (does not migrate).

        Raises `DatabaseNotFoundError` for a SQLite file that does not exist (connecting
        would create it).
        """
        require_existing_database(self.url)
        with translated_errors(self._safe_url()), self.engine.connect() as connection:
            return migrations.schema_state(connection)

    def init_db(self) -> None:
        """Create or upgrade the database to the newest revision (idempotent)."""
        # An in-memory database exists only inside our engine; a file or server is migrated
        # through its own engine (SQLite foreign keys off, see settings.make_engine).
        target = self.engine if is_memory_sqlite(self.url) else self.url
        with translated_errors(self._safe_url()):
            migrations.upgrade(target)
        self._schema_checked = True

    def _ensure_schema(self, *, write: bool) -> None:
        """Check the schema once; the first write to a missing database creates it at head.

        A read never creates anything: a SQLite file that does not exist (a mistyped
        ``TRAINING_DB_PATH``, say) is `DatabaseNotFoundError`, not an empty database.
        """
        file = sqlite_file(self.url)
        if self._create_if_empty and write and file is not None and not file.exists():
            self.init_db()
            return
        state = self.schema_state()
        if state.is_empty and self._create_if_empty:
            self.init_db()
        else:
            migrations.require_current_schema(state, self.url)
        self._schema_checked = True

    # --- transactions ----------------------------------------------------------------------

    def read(
        self, work: Callable[Concatenate[Session, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``work(session, *args, **kwargs)`` in one read transaction.

        For code built on the repository functions (``ops/``, a web layer): the same
        session set-up, error translation and retries as the declared operations.
        """
        return self._transaction(False, False, work, args, kwargs)

    def write(
        self, work: Callable[Concatenate[Session, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``work(session, *args, **kwargs)`` in one write transaction, committed whole
        or rolled back whole. After a lost COMMIT it is not sent again (see `_transaction`)."""
        return self._transaction(True, False, work, args, kwargs)

    def _call(
        self, operation: Operation[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Any:
        """Run a declared operation: its transaction, or its use case with this database."""
        if operation.scope == "database":
            return operation.function(self, *args, **kwargs)
        result = self._transaction(
            operation.kind == "write", operation.idempotent, operation.function, args, kwargs
        )
        if operation.returns == "run":
            return None if result is None else self._lazy_history(result)
        if operation.returns == "runs":
            return [self._lazy_history(run) for run in result]
        return result

    def _lazy_history(self, run: Mapping[str, Any]) -> RunRecord:
        """The run dict, its ``history_json`` read from this database when first accessed."""
        run_id = run["run_id"]
        return RunRecord(run, lambda: self.read(history_json, run_id))

    def _transaction(
        self,
        write: bool,
        idempotent: bool,
        work: Callable[..., R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> R:
        """One transaction around ``work``, attempted again only when that is safe.

        * A lock conflict (SQLite "database is locked", PostgreSQL deadlock or serialization
          failure) means nothing was committed: retried with exponential backoff and jitter
          until `lock_retry_seconds` have passed.
        * A connection lost mid-call is retried once, on a fresh connection, when nothing can
          have been committed (it was lost before COMMIT was sent: the server rolls back a
          transaction that never got its COMMIT) or when ``work`` is a read or an
          ``idempotent`` write. Otherwise the outcome is unknown and the error is raised;
          see docs/reliability.md.
        """
        started = time.monotonic()
        lock_attempts = 0
        reconnected = False
        with translated_errors(self._safe_url(), constraint_errors=constraint_error):
            while True:
                committing = False
                try:
                    with self._sessions(write=write).begin() as session:
                        result = work(session, *args, **kwargs)
                        committing = True  # the block's exit sends COMMIT
                    return result
                except (
                    sa_exc.DBAPIError,
                    sa_exc.DisconnectionError,
                    DatabaseUnavailableError,
                ) as exc:
                    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailableError) else exc
                    remaining = self.lock_retry_seconds - (time.monotonic() - started)
                    if is_lock_conflict(cause) and remaining > 0:
                        lock_attempts += 1
                        delay = min(backoff_delay(lock_attempts), remaining)
                        logger.debug(
                            "%s: lock conflict, attempt %d, retrying in %.3f s",
                            getattr(work, "__name__", "write"),
                            lock_attempts,
                            delay,
                        )
                        time.sleep(delay)
                        continue
                    safe_to_resend = not committing or not write or idempotent
                    if not reconnected and is_connection_lost(cause) and safe_to_resend:
                        reconnected = True
                        logger.info(
                            "%s: the database connection was lost; retrying once",
                            getattr(work, "__name__", "call"),
                        )
                        continue
                    raise


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    ceiling = min(LOCK_RETRY_MAX_DELAY_S, LOCK_RETRY_FIRST_DELAY_S * 2.0 ** (attempt - 1))
    # Jitter spreads out writers that collided, so they do not collide again in lockstep.
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not cryptographic
