"""Completing a run: the composite writes that span runs, objectives and history.

Each is one repository function (it takes a ``Session``, never commits), so the whole
completion is one transaction: recorded entirely, or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from training_db.core.errors import InvalidArgumentError
from training_db.core.operations import ALWAYS, Operations, when, write
from training_db.core.validation import (
    document,
    optional_int,
    optional_number,
    optional_text,
    optional_timestamp,
)
from training_db.schema import TERMINAL_STATUSES
from training_db.store import runs
from training_db.store.history import log_history
from training_db.store.objectives import objectives_from_summary, store_summary_objective


def finish_run(
    session: Session,
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
    runs.validate_run_id(run_id)
    if status not in TERMINAL_STATUSES:
        raise InvalidArgumentError(
            f"finish_run needs a terminal status, got {status!r}; "
            f"valid: {', '.join(TERMINAL_STATUSES)}"
        )
    stored = document("summary", summary)
    values = runs.summary_columns(stored)
    ended = optional_timestamp("ended_at", ended_at)
    duration = optional_number("duration_seconds", duration_seconds)
    if ended is not None:
        values["ended_at"] = ended
    if duration is not None:
        values["duration_seconds"] = duration
    if stored is not None:
        values["final_metrics_json"] = stored
    summary_objectives = objectives_from_summary(stored)

    run = runs.load_run(session, run_id, for_update=True)
    runs.apply_status(run, status, values)
    session.flush()
    for objective in summary_objectives:
        store_summary_objective(session, run_id, objective)
    if history is not None:
        log_history(session, run_id, history)


def update_run_status(
    session: Session,
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
    runs.validate_run_id(run_id)
    runs.validate_status(status)
    summary = document("final_metrics_json", final_metrics_json)
    given: dict[str, Any] = {
        "duration_seconds": optional_number("duration_seconds", duration_seconds),
        "ended_at": optional_timestamp("ended_at", ended_at),
        "started_at": optional_timestamp("started_at", started_at),
        "wandb_run_id": optional_text("wandb_run_id", wandb_run_id),
        "wandb_url": optional_text("wandb_url", wandb_url),
        "final_loss": optional_number("final_loss", final_loss),
        "total_training_steps": optional_int("total_training_steps", total_training_steps),
    }
    values = runs.summary_columns(summary)
    values.update({key: value for key, value in given.items() if value is not None})
    if summary is not None:
        values["final_metrics_json"] = summary
    run = runs.load_run(session, run_id, for_update=True)
    runs.check_wandb_run_id_free(session, values.get("wandb_run_id"), run_id)
    runs.apply_status(run, status, values)
    session.flush()
    if history_json is not None:
        log_history(session, run_id, history_json)


class CompletionOperations(Operations):
    """Status changes that may carry a summary and a history: one transaction each."""

    # The twin records the call time where the direct call would use "now".
    update_run_status = write(
        update_run_status,
        idempotent=True,
        now={
            "started_at": when("status", "running"),
            "ended_at": when("status", *TERMINAL_STATUSES),
        },
        history=("history_json",),
    )
    finish_run = write(finish_run, idempotent=True, now={"ended_at": ALWAYS}, history=("history",))
