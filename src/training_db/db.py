"""``TrainingDB``: one database, its engine, and the public API as methods.

Every public method is one transaction around one repository function: it happens whole
or not at all. The module-level functions in ``training_db`` call the same methods on a
default instance that :func:`configure` (re)binds.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from training_db import migrations, runs
from training_db.errors import translated_errors
from training_db.runs import RunDict
from training_db.settings import is_memory_sqlite, make_engine, resolve_url, safe_url

P = ParamSpec("P")
R = TypeVar("R")


class TrainingDB:
    """A training-runs database at ``url`` (resolved from the env vars when None).

    Nothing connects until the first call. On first use an empty database is created at the
    newest schema revision; a database behind (or ahead of) this code's revision raises
    :class:`~training_db.errors.SchemaVersionError` naming the command that fixes it.
    """

    def __init__(self, url: str | URL | None = None, *, create_if_empty: bool = True) -> None:
        self.url: URL = resolve_url(url)
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
        self._ensure_schema()
        return self._writers if write else self._readers

    def dispose(self) -> None:
        """Close every pooled connection (the object stays usable)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()

    def _ensure_schema(self) -> None:
        if self._schema_checked:
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
        with translated_errors(), self._sessions(write=True).begin() as session:
            return work(session, *args, **kwargs)

    def _read(
        self, work: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        with translated_errors(), self._sessions(write=False).begin() as session:
            return work(session, *args, **kwargs)

    # --- schema ----------------------------------------------------------------------------

    def schema_state(self) -> migrations.SchemaState:
        """The database's revision next to this code's head (does not migrate)."""
        with translated_errors(), self.engine.connect() as connection:
            return migrations.schema_state(connection)

    def init_db(self) -> None:
        """Create or upgrade the database to the newest revision (idempotent)."""
        # An in-memory database exists only inside our engine; a file or server is migrated
        # through its own engine (SQLite foreign keys off, see settings.make_engine).
        target = self.engine if is_memory_sqlite(self.url) else self.url
        with translated_errors():
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
    ) -> None:
        """Set a run's status and any of the given fields.

        ``running`` sets ``started_at`` (now, unless given or already set); ``completed``,
        ``failed`` and ``crashed`` set ``ended_at`` likewise and ``duration_seconds`` from
        ``started_at`` when not given. A summary given as ``final_metrics_json`` also fills
        ``final_loss``, ``total_training_steps`` and ``duration_seconds`` from its
        ``train/loss``, ``_step`` and ``_runtime`` unless those are given explicitly.
        """
        self._write(
            runs.update_run_status,
            run_id,
            status,
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
        run's tags. Timestamps are timezone-aware UTC.
        """
        return self._read(runs.get_run, run_id)

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
        return self._read(runs.query_runs, filters, order_by, limit)

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
