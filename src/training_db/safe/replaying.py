"""Replay: the spooled calls applied in order, each record settled by what its failure means
(`training_db.safe.failures`), and a report of what became of every line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_db import api
from training_db.api import TrainingDB
from training_db.core.types import utc_now
from training_db.safe.calls import execute
from training_db.safe.config import logger
from training_db.safe.failures import FAILURE_HANDLING, classify_failure
from training_db.safe.records import SpooledCall
from training_db.safe.redact import describe, redact
from training_db.safe.spool import REJECTED_FILE, Spool


@dataclass(frozen=True)
class MalformedLine:
    """A spool line that is not a record; moved to ``spool.rejected``."""

    line: int
    reason: str


@dataclass(frozen=True)
class RejectedRecord:
    """A record that retrying cannot cure (see `classify_failure`); moved to ``spool.rejected``.

    Bad arguments, a run that does not exist, a statement the database refused, damaged
    stored data, or an unexpected exception.
    """

    line: int
    record_id: str
    function: str
    reason: str


@dataclass
class ReplayReport:
    """What `replay` did with each line of the spool.

    ``applied``: calls that reached the database now; ``already_present``: inserts whose row
    was there (the original call had reached the database); ``failed``: the call that failed
    for a transient reason and stays in the spool (``error`` says why); ``pending``: the
    records after it, not tried (they stay too, in order); ``rejected`` (records retrying
    cannot cure) and ``malformed`` (lines that are not records): moved to ``spool.rejected``
    with their line numbers, the replay going on past them. ``busy``: another process was
    replaying.
    """

    spool_path: Path
    applied: int = 0
    already_present: int = 0
    failed: int = 0
    pending: int = 0
    rejected: list[RejectedRecord] = field(default_factory=list)
    malformed: list[MalformedLine] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False
    busy: bool = False

    @property
    def remaining(self) -> int:
        """Records left in the spool for a later replay."""
        return self.failed + self.pending

    @property
    def ok(self) -> bool:
        """Everything in the spool was applied (or was there already) and nothing rejected."""
        return not (self.busy or self.remaining or self.rejected or self.malformed)

    def summary(self) -> str:
        """One line for people (the CLI prints it)."""
        if self.busy:
            return f"{self.spool_path}: another process is replaying it; nothing done"
        parts = [
            f"{self.applied} applied",
            f"{self.already_present} already present",
            f"{self.failed} failed",
            f"{self.pending} pending",
            f"{len(self.rejected)} rejected",
            f"{len(self.malformed)} malformed",
        ]
        text = f"{self.spool_path}: " + ", ".join(parts)
        if self.malformed:
            text += " (malformed lines: " + ", ".join(str(m.line) for m in self.malformed) + ")"
        if self.error:
            text += f"; stopped: {self.error}"
        return text


def replay(
    spool_dir: str | os.PathLike[str] | None = None, db: TrainingDB | None = None
) -> ReplayReport:
    """Apply the spooled calls in order to ``db`` (the default database when None).

    Idempotent: a record applied is removed from the spool (atomically); replaying again, or
    replaying a call that had in fact reached the database, changes nothing. The first record
    that fails for a transient reason (`classify_failure`: the database unreachable, locked,
    behind in schema) stops the replay, keeping it and every later record in order. Records
    that retrying cannot cure, and lines that are not records, are moved to
    ``spool.rejected`` with their line numbers and reasons, and the replay goes on with the
    next record. Waits while another process replays.
    """
    return replay_spool(Spool(spool_dir), db, blocking=True)


def replay_spool(spool: Spool, db: TrainingDB | None, *, blocking: bool) -> ReplayReport:
    """`replay` of ``spool``; unless ``blocking``, ``busy`` instead of waiting for another
    process's replay (the worker's way: a call must not wait behind it)."""
    report = ReplayReport(spool.path)
    if not spool.has_records():
        return report
    with spool.replay_lock(blocking=blocking) as acquired:
        if not acquired:
            report.busy = True
            return report
        with spool.locked():
            lines = spool.read_lines()
        database = api.get_db() if db is None else db
        keep: list[bool] = []
        rejected: list[dict[str, Any]] = []
        for number, raw in enumerate(lines, start=1):
            keep.append(_replay_line(database, number, raw, report, rejected))
        with spool.locked():
            current = spool.read_lines()
            if current[: len(lines)] != lines:  # pragma: no cover - only if the locks were bypassed
                report.error = "the spool changed during the replay; it was left as it is"
                return report
            spool.reject(rejected)
            kept = [line for line, wanted in zip(lines, keep, strict=True) if wanted]
            spool.rewrite(kept + current[len(lines) :])
    _log_replay(report)
    return report


def _replay_line(
    database: TrainingDB,
    number: int,
    raw: bytes,
    report: ReplayReport,
    rejected: list[dict[str, Any]],
) -> bool:
    """Apply one spool line; True when it stays in the spool."""
    if not raw.strip():
        return False
    if report.stopped:
        report.pending += 1
        return True
    text = raw.decode("utf-8", errors="replace")
    try:
        call = SpooledCall.from_line(raw)
    except ValueError as exc:
        reason = redact(str(exc))
        report.malformed.append(MalformedLine(number, reason))
        rejected.append(rejection(number, reason, text))
        return False
    try:
        execute(database, call)
    except Exception as exc:
        action = FAILURE_HANDLING[classify_failure(call.function, exc)][1]
        if action == "done":
            report.already_present += 1
            return False
        reason = describe(exc, database)
        if action == "reject":
            report.rejected.append(RejectedRecord(number, call.id, call.function, reason))
            rejected.append(rejection(number, reason, text, call))
            return False
        report.failed += 1
        report.error = reason
        report.stopped = True
        return True
    report.applied += 1
    return False


def rejection(
    number: int | None, reason: str, text: str, call: SpooledCall | None = None
) -> dict[str, Any]:
    """A ``spool.rejected`` entry: when, the spool line (None: rejected when it was called),
    why, the record's function and id (None for a line that is not a record), the text."""
    return {
        "rejected_at": utc_now().isoformat(),
        "line": number,
        "reason": reason,
        "function": None if call is None else call.function,
        "record_id": None if call is None else call.id,
        "text": text,
    }


def _log_replay(report: ReplayReport) -> None:
    if report.rejected or report.malformed:
        logger.warning("spool replay moved lines to %s: %s", REJECTED_FILE, report.summary())
    elif report.applied or report.already_present:
        logger.info("spool replay: %s", report.summary())
