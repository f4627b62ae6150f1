"""W&B runs into the database: at the end of training, and a backfill of a whole folder.

These span a file read and one or more transactions, so they take the database: the file is
parsed before its transaction starts (`training_db.core.wandb_files`), and each run is
recorded by the repository function `training_db.store.wandb.record_run` in one
transaction. See docs/guide/wandb.md.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from training_db.core.operations import Operations, write
from training_db.core.wandb_files import (
    WandbFileError,
    find_run_dirs,
    is_live_run,
    locate_run_file,
    read_run,
    require_wandb,
    wait_for_exit_record,
)
from training_db.db import Database
from training_db.store.wandb import ACTIONS, ImportResult, preview_run, record_run

logger = logging.getLogger(__name__)


# --- one run -----------------------------------------------------------------------------------


def record_wandb_run(
    db: Database,
    run_dir: str | os.PathLike[str],
    run_id: str | None = None,
    *,
    status: str | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Record a W&B run from its local directory (or ``.wandb`` file) in one transaction.

    Creates the run or completes the one already there: config and extracted columns,
    the config's objectives, every history value, the final summary, status (exit code
    0 ``completed``, other codes ``failed``, no exit record ``crashed``; ``status``
    overrides), W&B run id and times. ``run_id`` defaults to the run already carrying
    this W&B run id, then the config's ``RUN_ID``, then the W&B run id. Recording the
    same log twice writes nothing (``action='unchanged'``); ``dry_run`` only says what
    would happen. Needs the ``wandb`` extra; see docs/guide/wandb.md.
    """
    log = read_run(run_dir)  # parsed before the transaction starts
    if dry_run:
        return db.read(preview_run, log, run_id, status=status)
    return db.write(record_run, log, run_id, status=status)


def finish_from_wandb(
    db: Database,
    run_id: str | None,
    wandb_run: object,
    *,
    status: str | None = None,
    timeout: float = 30.0,
) -> ImportResult:
    """Record a run at the end of training from its ``wandb`` Run (or its directory).

    A finished Run: waits up to ``timeout`` s for W&B to write the end of its log
    (``finish()`` returns before that), then records it whole. A live Run: records what
    W&B has written so far as ``running``. A path (all arguments JSON-serialisable, so
    the call can be spooled) is read as it is. Otherwise as `record_wandb_run`.
    """
    run_file, status = settle(wandb_run, status, timeout)
    return record_wandb_run(db, run_file, run_id, status=status)


# --- the end of training -------------------------------------------------------------------


def settle(wandb_run: object, status: str | None, timeout: float) -> tuple[Path, str | None]:
    """The log file of ``wandb_run`` and the status to record it with.

    A live ``Run`` (not finished yet) is recorded as ``running`` unless ``status`` says
    otherwise: its log holds only what W&B has written so far (whole 32 KiB blocks). For a
    finished ``Run``, wait up to ``timeout`` seconds for W&B to write the end of the log
    (``wandb.finish()`` returns before it has). A path is read as it is.
    """
    run_file = locate_run_file(wandb_run)
    if is_live_run(wandb_run):
        logger.warning(
            "W&B run %s is still live: recording what W&B has written so far; call "
            "finish_from_wandb after wandb.finish() to record the whole run",
            run_file.parent.name,
        )
        return run_file, status or "running"
    if not isinstance(wandb_run, (str, os.PathLike)) and not wait_for_exit_record(
        run_file, timeout
    ):
        logger.warning(
            "%s: no exit record after %.0f s; recording what is there", run_file, timeout
        )
    return run_file, status


# --- backfill ---------------------------------------------------------------------------------

ProgressCallback = Callable[[int, int, ImportResult], None]


def import_directories(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    db: Database,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> list[ImportResult]:
    """Record every W&B run directory found at or under ``paths``; never stops at a bad one.

    A run directory is any folder holding a ``run-*.wandb`` file (``wandb/run-*``,
    ``wandb/offline-run-*``). Each is recorded in its own transaction with
    ``db.record_wandb_run``; a directory that fails becomes a ``failed`` result whose
    ``error`` says why, and the walk goes on (a root path that does not exist, too). With
    ``dry_run`` nothing is written and each result says what would happen.
    ``progress(done, total, result)`` is called after each directory.
    """
    require_wandb()  # one clear ImportError, rather than one failure per directory
    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    results: list[ImportResult] = []
    run_dirs: list[Path] = []
    for root in roots:
        try:
            run_dirs.extend(find_run_dirs([root]))
        except WandbFileError as exc:
            results.append(ImportResult(path=str(root), action="failed", error=str(exc)))
    run_dirs = sorted(set(run_dirs))
    total = len(results) + len(run_dirs)
    for index, failed in enumerate(results, start=1):
        if progress is not None:
            progress(index, total, failed)
    for run_dir in run_dirs:
        try:
            result = record_wandb_run(db, run_dir, dry_run=dry_run)
        except Exception as exc:  # one bad directory must not stop the backfill
            result = ImportResult(
                path=str(run_dir),
                action="failed",
                dry_run=dry_run,
                error=f"{type(exc).__name__}: {exc}",
            )
            logger.warning("W&B import of %s failed: %s", run_dir, result.error)
        results.append(result)
        if progress is not None:
            progress(len(results), total, result)
    return results


def count_actions(results: Iterable[ImportResult]) -> dict[str, int]:
    """``{action: count}`` for every action, 0 included (for a closing summary line)."""
    counts = Counter(result.action for result in results)
    return {action: counts.get(action, 0) for action in ACTIONS}


class WandbOperations(Operations):
    """W&B runs recorded from their local files (each in one transaction)."""

    record_wandb_run = write(record_wandb_run, scope="database")
    finish_from_wandb = write(finish_from_wandb, scope="database")
