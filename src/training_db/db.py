"""``TrainingDB``: one database, its engine, and the public API as methods.

Every public method is one transaction around one repository function: it happens whole
or not at all. The module-level functions in ``training_db`` call the same methods on a
default instance that :func:`configure` (re)binds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from training_db import history as history_store
from training_db import migrations, objectives, runs, wandb_files, wandb_import
from training_db.errors import (
    DatabaseUnavailableError,
    is_connection_lost,
    is_lock_conflict,
    translated_errors,
)
from training_db.history import DEFAULT_KEY_METRICS, HistoryColumns, KeyMetricMapping
from training_db.runs import RunDict, RunRecord
from training_db.settings import (
    is_memory_sqlite,
    make_engine,
    require_existing_database,
    resolve_url,
    safe_url,
    sqlite_file,
)

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger(__name__)


class TrainingDB:
    """A training-runs database at ``url`` (resolved from the env vars when None).

    Nothing connects until the first call. On first use an empty database is created at the
    newest schema revision; a database behind (or ahead of) this code's revision raises
    :class:`~training_db.errors.SchemaVersionError` naming the command that fixes it.
    """

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

    def __repr__(self) -> str:
        return f"TrainingDB({safe_url(self.url)!r})"

    # --- plumbing --------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine, created on first use."""
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.url)
                self._readers = sessionmaker(engine, expire_on_commit=False)
                self._writers = sessionmaker(
                    engine.execution_options(sqlite_write=True), expire_on_commit=False
                )
                self._engine = engine
            return self._engine

    def _sessions(self, *, write: bool) -> sessionmaker[Session]:
        """Sessions for reads, or for writes (which begin IMMEDIATE on SQLite)."""
        _ = self.engine  # creates the session factories
        if not self._schema_checked:
            self._ensure_schema(write=write)
        return self._writers if write else self._readers

    def dispose(self) -> None:
        """Close every pooled connection (the object stays usable)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()

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

    def _write(
        self, work: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``work`` in one write transaction: committed whole, or rolled back whole."""
        return self._transaction(True, work, *args, **kwargs)  # retries: see _transaction

    def _read(
        self, work: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return self._transaction(False, work, *args, **kwargs)

    # --- schema ----------------------------------------------------------------------------

    def schema_state(self) -> migrations.SchemaState:
        """The database's revision next to this code's head (does not migrate).

        Raises `DatabaseNotFoundError` for a SQLite file that does not exist (connecting
        would create it).
        """
        require_existing_database(self.url)
        with translated_errors(safe_url(self.url)), self.engine.connect() as connection:
            return migrations.schema_state(connection)

    def init_db(self) -> None:
        """Create or upgrade the database to the newest revision (idempotent)."""
        # An in-memory database exists only inside our engine; a file or server is migrated
        # through its own engine (SQLite foreign keys off, see settings.make_engine).
        target = self.engine if is_memory_sqlite(self.url) else self.url
        with translated_errors(safe_url(self.url)):
            migrations.upgrade(target)
        self._schema_checked = True

    # --- runs ------------------------------------------------------------------------------

    def insert_run(
        self,
        run_id: str,
        wandb_run_id: str | None,
        config_dict: Mapping[str, Any] | None,
        chain_of_custody_id: str | None = None,
        *,
        run_name: str | None = None,
        config_file_path: str | os.PathLike[str] | None = None,
        host: str | None = None,
        instance_id: str | None = None,
        created_at: dt.datetime | str | None = None,
    ) -> None:
        """Record a launched run with its whole config (called at launch).

        The config is stored in ``config_json`` and the extracted hyperparameter columns are
        filled from it. A duplicate ``run_id`` or ``wandb_run_id`` raises a
        :class:`~training_db.errors.DuplicateError` and writes nothing.
        """
        self._write(
            runs.insert_run,
            run_id,
            wandb_run_id,
            config_dict,
            chain_of_custody_id,
            run_name=run_name,
            config_file_path=config_file_path,
            host=host,
            instance_id=instance_id,
            created_at=created_at,
        )

    def update_run_status(
        self,
        run_id: str,
        status: str,
        *,
        duration_seconds: float | None = None,
        final_metrics_json: Mapping[str, Any] | None = None,
        ended_at: dt.datetime | str | None = None,
        started_at: dt.datetime | str | None = None,
        wandb_run_id: str | None = None,
        wandb_url: str | None = None,
        final_loss: float | None = None,
        total_training_steps: int | None = None,
        history_json: Any = None,
    ) -> None:
        """Set a run's status and any of the given fields.

        ``running`` sets ``started_at`` (now, unless given or already set); ``completed``,
        ``failed`` and ``crashed`` set ``ended_at`` likewise and ``duration_seconds`` from
        ``started_at`` when not given. A summary given as ``final_metrics_json`` also fills
        ``final_loss``, ``total_training_steps`` and ``duration_seconds`` from its
        ``train/loss``, ``_step`` and ``_runtime`` unless those are given explicitly.
        ``history_json`` (a W&B history in any shape :meth:`log_history` takes) is merged
        into the run's stored history in the same transaction.
        """
        self._write(
            history_store.update_run_status_with_history,
            run_id,
            status,
            history_json,
            self.key_metrics,
            duration_seconds=duration_seconds,
            final_metrics_json=final_metrics_json,
            ended_at=ended_at,
            started_at=started_at,
            wandb_run_id=wandb_run_id,
            wandb_url=wandb_url,
            final_loss=final_loss,
            total_training_steps=total_training_steps,
        )

    def get_run(self, run_id: str) -> RunDict | None:
        """Every column of a run as a dict, or None when there is no such run.

        ``config_json`` and ``final_metrics_json`` are JSON text (``json.loads`` gives NaN back
        as NaN); ``config`` and ``final_metrics`` hold the parsed documents; ``tags`` the
        run's tags. Timestamps are timezone-aware UTC. ``history_json`` is the JSON text of
        the run's history columns (None without history), read when first accessed.
        """
        found = self._read(runs.get_run, run_id)
        return None if found is None else self._lazy_history(found)

    def query_runs(
        self,
        filters: Mapping[str, Any] | None = None,
        order_by: str = "created_at DESC",
        limit: int = 100,
    ) -> list[RunDict]:
        """Runs matching every filter, as ``get_run`` dicts.

        Filters: any ``training_runs`` column by equality or an operator dict
        (``{'gte': 64}``; operators ``eq ne gt gte lt lte in``); ``min_duration_hours``;
        ``created_after`` (ISO 8601); ``has_blog_post`` / ``has_crash_analysis`` (bool);
        ``config.<dotted.path>``, ``summary.<key>`` and ``tag.<key>`` on JSON values (numbers
        compare as numbers). ``order_by`` is one column with optional ASC/DESC (NULLs last,
        ties by run_id); ``limit`` is 1 to 10,000.
        """
        found = self._read(runs.query_runs, filters, order_by, limit)
        return [self._lazy_history(run) for run in found]

    def _lazy_history(self, run: RunDict) -> RunRecord:
        run_id = run["run_id"]
        return RunRecord(run, lambda: self._read(history_store.history_json, run_id))

    def get_stats(self) -> dict[str, int]:
        """Counts: ``total_runs``, one per status, ``with_blog_posts``, ``with_crash_analysis``."""
        return self._read(runs.get_stats)

    def attach_blog_post(self, run_id: str, blog_url: str) -> None:
        """Record the blog post written about a run."""
        self._write(runs.attach_blog_post, run_id, blog_url)

    def attach_conversation(self, run_id: str, conversation_s3_key: str) -> None:
        """Record the S3 key of the conversation that launched a run."""
        self._write(runs.attach_conversation, run_id, conversation_s3_key)

    def attach_crash_data(
        self,
        run_id: str,
        error_log_s3_key: str | None,
        crash_report_s3_key: str | None,
        crash_analysis_s3_key: str | None,
    ) -> None:
        """Record a crash's S3 keys; the run becomes ``crashed``, ``ended_at`` set if unset."""
        self._write(
            runs.attach_crash_data,
            run_id,
            error_log_s3_key,
            crash_report_s3_key,
            crash_analysis_s3_key,
        )

    # --- tags ------------------------------------------------------------------------------

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Merge ``tags`` (string keys, JSON-able values) into the run's tags."""
        self._write(runs.set_tags, run_id, tags)

    def get_tags(self, run_id: str) -> dict[str, Any]:
        """The run's tags as a dict."""
        return self._read(runs.get_tags, run_id)

    def delete_tag(self, run_id: str, key: str) -> bool:
        """Remove one tag; True if the run had it."""
        return self._write(runs.delete_tag, run_id, key)

    # --- objectives ------------------------------------------------------------------------

    def insert_objective(
        self,
        run_id: str,
        objective_name: str,
        objective_alias: str | None = None,
        uniprot: str | None = None,
        weight: float | None = None,
        direction: str | None = None,
    ) -> None:
        """Record one configured objective of a run (at launch, once per config objective).

        ``direction`` is ``maximize``, ``minimize`` or None. A run that already has an
        objective of this name raises
        :class:`~training_db.errors.ObjectiveAlreadyExistsError` and nothing is written.
        """
        self._write(
            objectives.insert_objective,
            run_id,
            objective_name,
            objective_alias,
            uniprot,
            weight,
            direction,
        )

    def update_objective_metric(
        self, run_id: str, objective_name: str, metric_type: str, value: float | None
    ) -> None:
        """Set one final value of an objective, creating the objective when launch did not.

        ``metric_type`` is ``raw_mean``, ``normalized_mean``, ``raw_std`` or
        ``normalized_std``. NaN is stored as NULL, so it never matches a threshold; ±Infinity
        is kept.
        """
        self._write(objectives.update_objective_metric, run_id, objective_name, metric_type, value)

    def get_run_objectives(self, run_id: str) -> list[dict[str, Any]]:
        """Every column of each of the run's objectives, ordered by objective name."""
        return self._read(objectives.get_run_objectives, run_id)

    def query_runs_by_objectives(
        self,
        objective_filters: Mapping[str, Mapping[str, Any]],
        gradient_method: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[RunDict]:
        """Runs where every named objective lies within its bounds, newest first.

        ``{'COMT_activity': {'min': 0.8}, 'DRD5_activity': {'min': 0.7, 'max': 0.95,
        'metric': 'normalized_mean'}}``: bounds are inclusive, ``metric`` defaults to
        ``raw_mean``, a NULL (or NaN) value never matches. Each result is a ``get_run`` dict
        plus ``objectives``: ``{name: {metric_type: value}}`` for the filtered objectives.
        Ties in ``created_at`` are ordered by ``run_id``.
        """
        found = self._read(
            objectives.query_runs_by_objectives, objective_filters, gradient_method, status, limit
        )
        return [self._lazy_history(run) for run in found]

    def get_objective_statistics(
        self,
        objective_name: str,
        metric_type: str = "raw_mean",
        status: str | None = None,
        gradient_method: str | None = None,
    ) -> dict[str, Any]:
        """``objective_name``, ``count``, ``avg``, ``min``, ``max`` and ``std`` of one metric.

        ``std`` is the population standard deviation (divided by the count, not count - 1).
        NULL values are left out; with no values, ``avg``, ``min``, ``max`` and ``std`` are None.
        """
        return self._read(
            objectives.get_objective_statistics,
            objective_name,
            metric_type,
            status,
            gradient_method,
        )

    def compare_gradient_methods(
        self, objective_name: str, metric_type: str = "raw_mean", status: str | None = "completed"
    ) -> list[dict[str, Any]]:
        """Per gradient method: ``num_runs``, ``avg`` and ``best`` of one objective, best first.

        ``best`` is the minimum for an objective whose rows say ``minimize`` (and none
        ``maximize``), else the maximum. Methods are ordered by ``avg`` in that direction,
        then by ``best``, then by name. ``status=None`` compares runs of every status.
        """
        return self._read(objectives.compare_gradient_methods, objective_name, metric_type, status)

    def delete_run_objectives(self, run_id: str) -> int:
        """Delete every objective of a run (cleanup); returns how many there were."""
        return self._write(objectives.delete_run_objectives, run_id)

    def finish_run(
        self,
        run_id: str,
        status: str = "completed",
        summary: Mapping[str, Any] | None = None,
        *,
        ended_at: dt.datetime | str | None = None,
        duration_seconds: float | None = None,
        history: Any = None,
    ) -> None:
        """Complete a run in one transaction: all of it is recorded, or nothing.

        Sets the terminal ``status`` (``completed``, ``failed`` or ``crashed``) and its
        timestamps, stores the whole W&B ``summary`` in ``final_metrics_json``, fills
        ``final_loss``, ``total_training_steps`` and ``duration_seconds`` from its
        ``train/loss``, ``_step`` and ``_runtime`` (an explicit ``duration_seconds`` wins), and
        turns each ``objectives/<alias>/<metric_type>`` key into an objective value. The
        alias minus ``_maximize`` / ``_minimize`` is the objective name; the suffix sets the
        direction of an objective that has none. ``history`` (any shape
        :meth:`log_history` takes) is merged into the run's stored history.
        """
        self._write(
            objectives.finish_run,
            run_id,
            status,
            summary,
            ended_at=ended_at,
            duration_seconds=duration_seconds,
            history=history,
            key_metrics=self.key_metrics,
        )

    # --- history ---------------------------------------------------------------------------

    def log_history(self, run_id: str, history: Any) -> int:
        """Append W&B history to a run; returns the number of values stored.

        ``history`` is a dict of column -> list (``{c: df[c].tolist()}``), a pandas
        DataFrame, a list of row dicts (as ``scan_history()`` yields) or one row dict. A
        (metric, step) logged again replaces the earlier value, so calling this every N steps
        keeps everything logged so far if the run crashes. In the column shapes NaN means "not
        logged"; in row dicts a NaN that is present is a logged NaN and is kept. The per-step
        key metrics table is filled from the same values.
        """
        return self._write(history_store.log_history, run_id, history, self.key_metrics)

    def get_history(
        self,
        run_id: str,
        keys: Sequence[str] | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> HistoryColumns:
        """A run's history as columns aligned on ``_step``: ``{'_step': [...], key: [...]}``.

        A value is None where the key was not logged at that step, NaN where a NaN was
        logged. ``keys`` selects metrics (only those rows are read); ``min_step`` and
        ``max_step`` bound the steps, inclusive.
        """
        return self._read(history_store.get_history, run_id, keys, min_step, max_step)

    def delete_history(self, run_id: str) -> int:
        """Remove a run's history and key metrics; returns the number of metrics removed."""
        return self._write(history_store.delete_history, run_id)

    # --- reliability -----------------------------------------------------------------------

    # Lock conflicts are retried for at most this many seconds in total; no new attempt
    # starts after that, though the one running may still wait one SQLite busy timeout.
    lock_retry_seconds: float = 30.0

    def heartbeat(self, run_id: str, *, at: dt.datetime | str | None = None) -> None:
        """Record that a run is alive (cheap: one UPDATE by primary key).

        Call it every few minutes while training; `mark_stale_runs` turns running runs
        whose heartbeats stopped into ``crashed``. ``at`` defaults to now; the stored time
        only moves forward. An unknown run raises
        `training_db.errors.RunNotFoundError`.
        """
        self._write(runs.heartbeat, run_id, at)

    def mark_stale_runs(
        self, older_than: dt.timedelta | float = runs.DEFAULT_STALE_AFTER
    ) -> list[str]:
        """Mark ``running`` runs silent for longer than ``older_than`` as ``crashed``.

        Silent means: no heartbeat (or, for a run that never sent one, no ``started_at``)
        within ``older_than`` (a timedelta, or seconds). Each such run gets ``ended_at`` = its
        last heartbeat (or ``started_at``) and its duration from ``started_at``, all in one
        transaction. Returns the run ids changed, sorted.
        """
        return self._write(runs.mark_stale_runs, older_than)

    def _transaction(
        self,
        write: bool,
        work: Callable[Concatenate[Session, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """One transaction around ``work``, attempted again only when that is safe.

        * A lock conflict (SQLite "database is locked", PostgreSQL deadlock or serialization
          failure) means nothing was committed: retried with exponential backoff and jitter
          until `lock_retry_seconds` have passed.
        * A connection lost mid-call is retried once, on a fresh connection, when nothing can
          have been committed (it was lost before COMMIT was sent: the server rolls back a
          transaction that never got its COMMIT) or when ``work`` is a read or an idempotent
          write (`IDEMPOTENT_WRITES`). Otherwise the outcome is unknown and the error
          is raised; see docs/reliability.md.
        """
        started = time.monotonic()
        lock_attempts = 0
        reconnected = False
        with translated_errors(safe_url(self.url)):
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
                    safe_to_resend = not committing or not write or work in IDEMPOTENT_WRITES
                    if not reconnected and is_connection_lost(cause) and safe_to_resend:
                        reconnected = True
                        logger.info(
                            "%s: the database connection was lost; retrying once",
                            getattr(work, "__name__", "call"),
                        )
                        continue
                    raise

    # --- W&B -------------------------------------------------------------------------------

    def record_wandb_run(
        self,
        run_dir: str | os.PathLike[str],
        run_id: str | None = None,
        *,
        status: str | None = None,
        dry_run: bool = False,
    ) -> wandb_import.ImportResult:
        """Record a W&B run from its local directory (or ``.wandb`` file) in one transaction.

        Creates the run or completes the one already there: config and extracted columns,
        the config's objectives, every history value, the final summary, status (exit code
        0 ``completed``, other codes ``failed``, no exit record ``crashed``; ``status``
        overrides), W&B run id and times. ``run_id`` defaults to the run already carrying
        this W&B run id, then the config's ``RUN_ID``, then the W&B run id. Recording the
        same log twice writes nothing (``action='unchanged'``); ``dry_run`` only says what
        would happen. Needs the ``wandb`` extra; see docs/guide/wandb.md.
        """
        log = wandb_files.read_run(run_dir)  # parsed before the transaction starts
        if dry_run:
            return self._read(wandb_import.preview_run, log, run_id, status=status)
        return self._write(
            wandb_import.record_run, log, run_id, status=status, key_metrics=self.key_metrics
        )

    def finish_from_wandb(
        self,
        run_id: str | None,
        wandb_run: object,
        *,
        status: str | None = None,
        timeout: float = 30.0,
    ) -> wandb_import.ImportResult:
        """Record a run at the end of training from its ``wandb`` Run (or its directory).

        A finished Run: waits up to ``timeout`` s for W&B to write the end of its log
        (``finish()`` returns before that), then records it whole. A live Run: records what
        W&B has written so far as ``running``. A path (all arguments JSON-serialisable, so
        the call can be spooled) is read as it is. Otherwise as :meth:`record_wandb_run`.
        """
        run_file, status = wandb_import.settle(wandb_run, status, timeout)
        return self.record_wandb_run(run_file, run_id, status=status)


# --- reliability: which failures are worth another attempt --------------------------------

LOCK_RETRY_FIRST_DELAY_S: Final = 0.02
LOCK_RETRY_MAX_DELAY_S: Final = 1.0

# Writes that leave the same rows and return the same value when applied twice in a row, so
# a call whose COMMIT was lost with its connection may be sent again. Not here: insert_run
# and insert_objective (a second attempt would report the first one's row as a duplicate),
# and the deletes and mark_stale_runs (their result counts what this very call changed).
IDEMPOTENT_WRITES: Final[frozenset[Callable[..., Any]]] = frozenset(
    {
        runs.attach_blog_post,
        runs.attach_conversation,
        runs.attach_crash_data,
        runs.attach_crash_data_at,
        runs.set_tags,
        runs.heartbeat,
        history_store.update_run_status_with_history,
        history_store.log_history,
        objectives.update_objective_metric,
        objectives.finish_run,
    }
)


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, capped."""
    ceiling = min(LOCK_RETRY_MAX_DELAY_S, LOCK_RETRY_FIRST_DELAY_S * 2.0 ** (attempt - 1))
    # Jitter spreads out writers that collided, so they do not collide again in lockstep.
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not cryptographic
