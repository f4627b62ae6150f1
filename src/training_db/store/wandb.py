"""Recording one W&B run, read from its local files, in one transaction.

`record_run` is the repository function (it takes a ``Session`` and never commits): it
composes ``insert_run``, ``insert_objective``, ``log_history`` and ``finish_run``, so a run
is recorded whole or not at all. ``record_wandb_run`` (in `training_db.ops.wandb_import`)
reads the file first, outside the transaction, and then calls it.

Which run is recorded
    ``run_id`` when given; otherwise the run that already carries the log's W&B run id;
    otherwise the config's ``RUN_ID`` (or ``run_id``) — the id the launcher inserted the
    run under, so a run inserted at launch without a W&B id is completed rather than
    duplicated; otherwise the W&B run id itself.

Status
    From the log: ``completed`` for exit code 0, ``failed`` for any other exit code,
    ``crashed`` when the log ends without an exit record. An explicit ``status`` wins
    (``running`` records a live run without finishing it).

Idempotency
    Before writing, the stored run is compared with what the log would write (W&B run id,
    status, start and end time, config present, summary, configured objectives, and every
    logged history value). When all of it is already there the result is ``unchanged`` and
    nothing at all is written, so recording a directory twice changes no row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core import jsoncodec
from training_db.core.errors import DuplicateError, InvalidArgumentError
from training_db.core.wandb_files import (
    STEP_KEY,
    WandbFileError,
    WandbRunLog,
)
from training_db.schema import OBJECTIVE_DIRECTIONS, TERMINAL_STATUSES, RunObjective, TrainingRun
from training_db.schema.extraction import extract_columns
from training_db.store import completion, objectives, runs
from training_db.store import history as history_store

logger = logging.getLogger(__name__)

CONFIG_RUN_ID_KEYS: Final = ("RUN_ID", "run_id")
RECORDABLE_STATUSES: Final = ("running", *TERMINAL_STATUSES)
ACTIONS: Final = ("created", "completed", "unchanged", "failed")
CONFIG_OBJECTIVES_KEY: Final = "objectives"


class WandbRunConflictError(DuplicateError):
    """The chosen run already belongs to another W&B run; nothing was written."""


@dataclass(frozen=True)
class ImportResult:
    """What recording one W&B run directory did (or, with ``dry_run``, would do).

    ``action`` is ``created`` (a new run), ``completed`` (an existing run updated from the
    log), ``unchanged`` (everything was recorded already; nothing written) or ``failed``
    (``error`` says why; nothing written).
    """

    path: str
    action: str
    run_id: str | None = None
    wandb_run_id: str | None = None
    status: str | None = None
    history_steps: int = 0
    history_values: int = 0
    objectives_added: int = 0
    truncated: bool = False
    dry_run: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ConfigObjective:
    """One entry of ``config['objectives']``: how the objective was configured."""

    name: str
    alias: str | None = None
    weight: float | None = None
    direction: str | None = None
    uniprot: str | None = None


# --- reading the config -----------------------------------------------------------------------


def objectives_from_config(config: Mapping[str, Any]) -> list[ConfigObjective]:
    """The objectives of ``config['objectives']``: a list of dicts with a ``name`` (or a dict
    name -> spec). Each may have ``alias``, ``weight``, ``direction`` and
    ``params.uniprot`` (or ``uniprot``); a field of the wrong type is left empty. Without a
    valid ``direction``, an alias ending in ``_maximize`` / ``_minimize`` gives it."""
    entries = config.get(CONFIG_OBJECTIVES_KEY)
    specs: list[tuple[Any, Any]]
    if isinstance(entries, Mapping):
        specs = list(entries.items())
    elif isinstance(entries, (list, tuple)):
        specs = [(entry.get("name"), entry) for entry in entries if isinstance(entry, Mapping)]
    else:
        return []
    found: dict[str, ConfigObjective] = {}
    for name, spec in specs:
        if not isinstance(spec, Mapping) or not isinstance(name, str) or not name.strip():
            continue
        alias = _text(spec.get("alias"))
        params = spec.get("params")
        uniprot = _text(params.get("uniprot")) if isinstance(params, Mapping) else None
        direction = spec.get("direction")
        if direction not in OBJECTIVE_DIRECTIONS:
            direction = _direction_from_alias(alias)
        found.setdefault(
            name,
            ConfigObjective(
                name=name,
                alias=alias,
                weight=_number(spec.get("weight")),
                direction=direction,
                uniprot=uniprot or _text(spec.get("uniprot")),
            ),
        )
    return list(found.values())


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _direction_from_alias(alias: str | None) -> str | None:
    return None if alias is None else objectives.split_objective_alias(alias)[1]


def config_run_id(config: Mapping[str, Any]) -> str | None:
    """The launcher's run id recorded in the config (``RUN_ID``, then ``run_id``), if any."""
    for key in CONFIG_RUN_ID_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


# --- deciding ---------------------------------------------------------------------------------


def _checked_status(log: WandbRunLog, status: str | None) -> str:
    if status is None:
        return log.status
    if status not in RECORDABLE_STATUSES:
        raise InvalidArgumentError(
            f"cannot record a W&B run as {status!r}; valid: {', '.join(RECORDABLE_STATUSES)} "
            "or None (from the log)"
        )
    return status


def choose_run_id(session: Session, log: WandbRunLog, run_id: str | None) -> str:
    """The run to record into (see the module docstring for the order)."""
    if run_id is not None:
        return runs.validate_run_id(run_id)
    if log.wandb_run_id is not None:
        owner = session.scalar(
            sa.select(TrainingRun.run_id).where(TrainingRun.wandb_run_id == log.wandb_run_id)
        )
        if owner is not None:
            return owner
    chosen = config_run_id(log.config) or log.wandb_run_id
    if chosen is None:
        raise WandbFileError(f"{log.path}: the log names no W&B run id; pass run_id")
    return runs.validate_run_id(chosen)


def _load(session: Session, run_id: str, *, for_update: bool) -> TrainingRun | None:
    statement = sa.select(TrainingRun).where(TrainingRun.run_id == run_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def _check_conflicts(
    session: Session, run: TrainingRun | None, run_id: str, log: WandbRunLog
) -> None:
    """WandbRunConflictError when the run, or the W&B id, already belongs elsewhere."""
    if log.wandb_run_id is None:
        return
    if run is not None and run.wandb_run_id not in (None, log.wandb_run_id):
        raise WandbRunConflictError(
            f"run {run_id!r} is W&B run {run.wandb_run_id!r}, not {log.wandb_run_id!r}"
        )
    owner = session.scalar(
        sa.select(TrainingRun.run_id).where(TrainingRun.wandb_run_id == log.wandb_run_id)
    )
    if owner is not None and owner != run_id:
        raise WandbRunConflictError(
            f"W&B run {log.wandb_run_id!r} is recorded as run {owner!r}, not {run_id!r}"
        )


def _duration(log: WandbRunLog) -> float | None:
    if log.start_time is None or log.end_time is None:
        return None
    return max(0.0, (log.end_time - log.start_time).total_seconds())


def _same(stored: Any, logged: Any) -> bool:
    """Equal as recorded values: NaN equals NaN, 1 equals 1.0, True does not equal 1."""
    if isinstance(stored, bool) or isinstance(logged, bool):
        return type(stored) is type(logged) and stored == logged
    if isinstance(stored, (int, float)) and isinstance(logged, (int, float)):
        both_nan = (
            isinstance(stored, float)
            and isinstance(logged, float)
            and math.isnan(stored)
            and math.isnan(logged)
        )
        return both_nan or stored == logged
    return jsoncodec.dumps(stored) == jsoncodec.dumps(logged)


def _history_recorded(session: Session, run_id: str, rows: Sequence[Mapping[str, Any]]) -> bool:
    """True when every value of ``rows`` is stored at its step already."""
    keys = sorted({key for row in rows for key, value in row.items() if value is not None})
    keys = [key for key in keys if key != STEP_KEY]
    if not keys:
        return True
    columns = history_store.read_history(session, run_id, keys)
    steps = columns[STEP_KEY]
    stored = {key: dict(zip(steps, columns.get(key, []), strict=False)) for key in keys}
    for row in rows:
        step = row[STEP_KEY]
        for key, value in row.items():
            if key == STEP_KEY or value is None:
                continue
            points = stored[key]
            if step not in points or points[step] is None or not _same(points[step], value):
                return False
    return True


def is_recorded(
    session: Session,
    run: TrainingRun,
    log: WandbRunLog,
    status: str,
    config_objectives: Sequence[ConfigObjective],
) -> bool:
    """Whether recording ``log`` into ``run`` would change nothing it records."""
    if log.wandb_run_id is not None and run.wandb_run_id != log.wandb_run_id:
        return False
    if run.status != status:
        return False
    if log.start_time is not None and run.started_at is None:
        return False
    if log.config and run.config_json is None:
        return False
    if status in TERMINAL_STATUSES and log.end_time is not None and run.ended_at != log.end_time:
        return False
    summary = jsoncodec.to_jsonable(log.summary)
    if run.final_metrics_json is None or not _same(run.final_metrics_json, summary):
        return False
    names = set(
        session.scalars(
            sa.select(RunObjective.objective_name).where(RunObjective.run_id == run.run_id)
        )
    )
    if any(objective.name not in names for objective in config_objectives):
        return False
    return _history_recorded(session, run.run_id, log.history)


def _history_counts(log: WandbRunLog) -> tuple[int, int]:
    values = sum(
        1
        for row in log.history
        for key, value in row.items()
        if key != STEP_KEY and value is not None
    )
    return len(log.history), values


# --- writing ----------------------------------------------------------------------------------


def _fill_missing(run: TrainingRun, log: WandbRunLog) -> None:
    """Fill what launch left empty; what is set already (a launch config) is kept."""
    if run.wandb_run_id is None and log.wandb_run_id is not None:
        run.wandb_run_id = log.wandb_run_id
    if run.started_at is None and log.start_time is not None:
        run.started_at = log.start_time
    if run.config_json is None and log.config:
        config = jsoncodec.to_jsonable(log.config, path="config")
        run.config_json = config
        for column, value in extract_columns(config).items():
            setattr(run, column, value)
    if run.run_name is None and log.display_name is not None:
        run.run_name = log.display_name
    if run.host is None and log.host is not None:
        run.host = log.host


def _add_objectives(
    session: Session, run_id: str, config_objectives: Sequence[ConfigObjective]
) -> int:
    existing = set(
        session.scalars(sa.select(RunObjective.objective_name).where(RunObjective.run_id == run_id))
    )
    added = 0
    for objective in config_objectives:
        if objective.name in existing:
            continue
        objectives.insert_objective(
            session,
            run_id,
            objective.name,
            objective.alias,
            objective.uniprot,
            objective.weight,
            objective.direction,
        )
        added += 1
    return added


def _plan(
    session: Session, log: WandbRunLog, run_id: str | None, status: str | None, *, for_update: bool
) -> tuple[str, list[ConfigObjective], str, TrainingRun | None]:
    """What recording ``log`` starts from, shared by the dry run and the real one: the checked
    status, the objectives named in its config, the target run id and that run (if any),
    after refusing a conflict with another run."""
    checked = _checked_status(log, status)
    config_objectives = objectives_from_config(log.config)
    target = choose_run_id(session, log, run_id)
    run = _load(session, target, for_update=for_update)
    _check_conflicts(session, run, target, log)
    return checked, config_objectives, target, run


def preview_run(
    session: Session, log: WandbRunLog, run_id: str | None = None, *, status: str | None = None
) -> ImportResult:
    """What :func:`record_run` would do, without writing anything (a dry run)."""
    status, config_objectives, target, run = _plan(session, log, run_id, status, for_update=False)
    if run is None:
        action = "created"
    elif is_recorded(session, run, log, status, config_objectives):
        action = "unchanged"
    else:
        action = "completed"
    steps, values = _history_counts(log)
    return _result(log, action, target, status, steps, values, 0, dry_run=True)


def record_run(
    session: Session,
    log: WandbRunLog,
    run_id: str | None = None,
    *,
    status: str | None = None,
) -> ImportResult:
    """Create or complete the run that ``log`` describes (see the module docstring)."""
    status, config_objectives, target, run = _plan(session, log, run_id, status, for_update=True)
    steps = len(log.history)
    if run is not None and is_recorded(session, run, log, status, config_objectives):
        return _result(log, "unchanged", target, status, steps, 0, 0)
    action = "completed" if run is not None else "created"
    if run is None:
        runs.insert_run(
            session,
            target,
            log.wandb_run_id,
            log.config or None,  # a live log may not hold the config yet: filled later
            run_name=log.display_name,
            host=log.host,
            created_at=log.start_time,
        )
    run = runs.load_run(session, target, for_update=True)
    _fill_missing(run, log)
    session.flush()
    added = _add_objectives(session, target, config_objectives)
    values = history_store.log_history(session, target, log.history)
    if status in TERMINAL_STATUSES:
        completion.finish_run(
            session,
            target,
            status,
            log.summary,
            ended_at=log.end_time,
            duration_seconds=_duration(log),
        )
    else:
        completion.update_run_status(session, target, status, final_metrics_json=log.summary)
    return _result(log, action, target, status, steps, values, added)


def _result(
    log: WandbRunLog,
    action: str,
    run_id: str,
    status: str,
    steps: int,
    values: int,
    added: int,
    *,
    dry_run: bool = False,
) -> ImportResult:
    return ImportResult(
        path=str(log.run_dir),
        action=action,
        run_id=run_id,
        wandb_run_id=log.wandb_run_id,
        status=status,
        history_steps=steps,
        history_values=values,
        objectives_added=added,
        truncated=log.truncated,
        dry_run=dry_run,
    )
