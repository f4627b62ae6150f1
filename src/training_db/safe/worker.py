"""The worker thread that runs best-effort calls, the path of one call from its twin to a
`SafeResult`, `drain`, and the exit hook that replays this process's spooled calls."""

from __future__ import annotations

import atexit
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_db import api
from training_db.api import TrainingDB
from training_db.core.operations import Operation
from training_db.safe import config
from training_db.safe.calls import SafeResult, Status, execute, snapshot
from training_db.safe.config import FIRST_RETRY_S, logger
from training_db.safe.failures import FAILURE_HANDLING, CallAction, classify_failure
from training_db.safe.records import SpooledCall
from training_db.safe.redact import about, describe
from training_db.safe.replaying import ReplayReport, rejection, replay_spool
from training_db.safe.spool import Spool


class _Call:
    """One best-effort call, shared by the caller (who may give up waiting) and the worker."""

    def __init__(self, call: SpooledCall, spool: Spool) -> None:
        self.call = call
        self.spool = spool
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.result: SafeResult[Any] | None = None


class _ExitReplay:
    """A request to the worker, at interpreter exit: replay this process's calls now."""

    def __init__(self) -> None:
        self.done = threading.Event()


@dataclass
class _SpoolState:
    """Per spool, in this process: may new calls skip the spool, and when to replay it."""

    spool: Spool
    blocked: bool = False  # records of this process wait in the spool
    last_attempt: float = -math.inf  # monotonic time of the last replay or failed call
    failures: int = 0  # attempts in a row that found the database unavailable
    database: TrainingDB | None = None  # the database the calls were made for
    spooled: int = 0  # calls of this process appended to the spool so far

    def failed(self) -> None:
        """A call or a replay could not reach the database: this process's calls wait."""
        self.blocked = True
        self.failures += 1
        self.last_attempt = time.monotonic()

    def replayed(self, spooled_before: int) -> None:
        """A replay that began when ``spooled_before`` calls had been spooled went through.

        Later calls may go straight to the database again, unless a call of this process
        was spooled meanwhile (by a caller that stopped waiting, say): the replay may not
        have seen it, and what follows it must not overtake it. The count is raised only
        once a record is written, so a record counted before the replay began is in the
        file the replay read.
        """
        self.failures, self.last_attempt = 0, time.monotonic()
        self.blocked = self.spooled != spooled_before

    def append(self, call: SpooledCall, error: str) -> SafeResult[Any]:
        """Spool ``call`` (see `_spool_and_warn`); the calls after it wait behind it."""
        result = _spool_and_warn(self.spool, call, error)
        if result.status == "spooled":
            self.blocked = True
            self.spooled += 1
        return result

    def next_replay(self) -> float | None:
        """When the worker replays this spool by itself (monotonic time); None: it does not.

        Only while calls of this process wait in it, and only into the database they were
        made for while that is still the default one: a process that rebinds the default
        replays through its next call instead (so a spool is never replayed into a
        database its calls did not choose).
        """
        if not self.blocked or self.database is None or self.database is not api._default:
            return None
        if self.failures == 0:
            return self.last_attempt  # the database answered last time: at once
        ceiling = max(config.replay_interval(), FIRST_RETRY_S)
        return self.last_attempt + min(FIRST_RETRY_S * 2.0 ** min(self.failures - 1, 30), ceiling)


class _Worker:
    """A daemon thread running the calls one at a time, in the order they were made, and
    replaying this process's spooled calls when the database answers again."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.calls: queue.SimpleQueue[_Call | _ExitReplay] = queue.SimpleQueue()
        self.unfinished = 0
        self.idle = threading.Condition()
        self.replaying = False  # replaying on its own (between calls, or at exit)
        self.states: dict[Path, _SpoolState] = {}
        self.states_lock = threading.Lock()
        self.running: _Call | None = None  # the call being run now
        self.thread = threading.Thread(target=self._run, name="training_db.safe", daemon=True)
        self.thread.start()

    def submit(self, call: _Call) -> bool:
        """Queue ``call``; False while the worker replays on its own.

        A call made during such a replay would only join the spool behind this process's
        records, so its caller spools it at once instead of waiting for the replay.
        """
        with self.idle:
            if self.replaying:
                return False
            self.unfinished += 1
            self.calls.put(call)
        return True

    def wait_idle(self, timeout: float | None) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.unfinished == 0 and not self.replaying, timeout)

    def hanging(self) -> bool:
        """A call is still running although its caller gave up waiting for it.

        Calls made meanwhile go straight to the spool: queueing them behind the hung call
        would cost each caller the whole timeout.
        """
        running = self.running
        return running is not None and running.abandoned

    def state(self, spool: Spool) -> _SpoolState:
        with self.states_lock:
            state = self.states.get(spool.path)
            if state is None:
                state = self.states[spool.path] = _SpoolState(spool)
            return state

    def waiting(self) -> list[_SpoolState]:
        """The spools holding calls of this process that the worker would replay."""
        with self.states_lock:
            states = list(self.states.values())
        return [state for state in states if state.next_replay() is not None]

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                self._replay_waiting(due_only=True)
            elif isinstance(item, _ExitReplay):
                try:
                    self._replay_waiting(due_only=False)
                finally:
                    item.done.set()
            else:
                self._run_call(item)

    def _next(self) -> _Call | _ExitReplay | None:
        """The next request; None when a replay of this process's spooled calls is due."""
        due = [when for state in self.waiting() if (when := state.next_replay()) is not None]
        timeout = max(min(due) - time.monotonic(), 0.0) if due and config.auto_replay() else None
        try:
            return self.calls.get(timeout=timeout)
        except queue.Empty:
            return None

    def _run_call(self, pending: _Call) -> None:
        self.running = pending
        try:
            self._handle(pending)
        except Exception as exc:  # pragma: no cover - a bug here must not stop the worker
            logger.exception("training_db.safe worker: unexpected error")
            with pending.lock:
                if pending.result is None and not pending.abandoned:
                    pending.result = SafeResult(pending.call.function, "lost", error=str(exc))
            pending.done.set()
        finally:
            self.running = None
            with self.idle:
                self.unfinished -= 1
                self.idle.notify_all()

    def _replay_waiting(self, *, due_only: bool) -> None:
        """Replay the spools holding calls of this process: those due, or all of them."""
        if not config.auto_replay():
            return  # turned off since the replay was scheduled
        with self.idle:
            if due_only and self.unfinished:
                return  # a call came in meanwhile: it goes first (and replays if it must)
            self.replaying = True
        try:
            now = time.monotonic()
            for state in self.waiting():
                when, database = state.next_replay(), state.database
                if when is not None and database is not None and (not due_only or when <= now):
                    self._replay_state(state, database)
        except Exception:  # pragma: no cover - a bug here must not stop the worker
            logger.exception("training_db.safe worker: unexpected error while replaying")
        finally:
            with self.idle:
                self.replaying = False
                self.idle.notify_all()

    def _replay_state(self, state: _SpoolState, database: TrainingDB) -> None:
        spooled_before = state.spooled
        try:
            report = replay_spool(state.spool, database, blocking=False)
        except Exception as exc:
            report = ReplayReport(state.spool.path, error=describe(exc, database), stopped=True)
        if report.stopped or report.busy:
            state.failed()
            why = "another process is replaying it" if report.busy else report.error
            logger.debug("replay of %s postponed: %s", state.spool.path, why)
        else:
            state.replayed(spooled_before)  # still blocked if calls were spooled meanwhile

    def _handle(self, pending: _Call) -> None:
        with pending.lock:
            if pending.abandoned:
                return  # already in the spool: the caller stopped waiting for it
        outcome, error = self._attempt(pending)
        call = pending.call
        with pending.lock:
            if pending.abandoned:
                logger.info(
                    "%s, given up on after its timeout, has finished: %s",
                    about(call.function, call.kwargs.get("run_id")),
                    "ok" if isinstance(outcome, SafeResult) else (error or outcome),
                )
                return
            if isinstance(outcome, SafeResult):
                pending.result = outcome
            elif outcome == "drop":
                pending.result = drop(call.function, call.kwargs.get("run_id"), error or "")
            elif outcome == "reject":
                pending.result = _reject_and_warn(pending.spool, call, error or "")
            else:
                pending.result = self.state(pending.spool).append(call, error or "")
        pending.done.set()

    def _attempt(self, pending: _Call) -> tuple[SafeResult[Any] | CallAction, str | None]:
        """Replay first if needed, then the call: a SafeResult, or what to do with it and why."""
        call, spool = pending.call, pending.spool
        state = self.state(spool)
        try:
            database = api.get_db()
            _ = database.engine  # a bad setting fails here, not as a "bad argument"
        except Exception as exc:
            state.failed()
            return "spool", f"the database is not configured: {describe(exc)}"
        state.database = database
        if spool.has_records():
            waited = time.monotonic() - state.last_attempt
            if config.auto_replay() and waited >= config.replay_interval():
                state.last_attempt = time.monotonic()
                spooled_before = state.spooled
                try:
                    report = replay_spool(spool, database, blocking=False)
                except Exception as exc:
                    report = ReplayReport(spool.path, error=describe(exc), stopped=True)
                if report.stopped or report.busy:
                    state.failed()
                    why = "another process is replaying" if report.busy else report.error
                    return "spool", f"earlier spooled calls could not be replayed ({why})"
                state.replayed(spooled_before)
            if state.blocked:
                return "spool", "earlier calls of this process are waiting in the spool"
        else:
            state.blocked = False  # replayed meanwhile (by a replay command, say)
        try:
            value = execute(database, call)
        except Exception as exc:
            # An unknown run may be one whose insert_run is itself waiting in the spool
            # (the database refused it a moment ago): the call is spooled behind it. If the
            # run never appears, replay moves the call to spool.rejected, reported, not lost.
            action = FAILURE_HANDLING[classify_failure(call.function, exc)][0]
            if action == "spool":
                state.failed()
            return action, describe(exc)
        return SafeResult(call.function, "ok", value=value), None


_worker_lock = threading.Lock()
_current_worker: _Worker | None = None


def _worker() -> _Worker:
    """This process's worker (a new one after a fork: threads do not survive it)."""
    global _current_worker
    with _worker_lock:
        worker = _current_worker
        if worker is None or worker.pid != os.getpid() or not worker.thread.is_alive():
            worker = _current_worker = _Worker()
        return worker


def _replay_at_exit() -> None:
    """At interpreter exit, replay the calls this process left in the spool, once more.

    So that a run finishing right after an outage lands without a manual replay. Waits at
    most ``TRAINING_DB_SAFE_TIMEOUT`` and never raises: the exit must not hang or fail
    because the database is still down.
    """
    try:
        worker = _current_worker
        if worker is None or worker.pid != os.getpid() or not worker.thread.is_alive():
            return
        if not config.auto_replay() or not worker.waiting():
            return
        request = _ExitReplay()
        worker.calls.put(request)
        timeout = config.timeout()
        finished = request.done.wait(timeout)
        left = sorted({str(state.spool.path) for state in worker.waiting()})
        if left or not finished:
            logger.warning(
                "at exit, calls of this process are still waiting in %s%s; the next safe"
                " call on this host or `training-db replay` applies them",
                ", ".join(left) or "the spool",
                "" if finished else f" (the replay did not finish within {timeout:g} s)",
            )
    except BaseException:  # at exit nothing may raise, not even an interrupted wait
        return


atexit.register(_replay_at_exit)


# --- one call ---------------------------------------------------------------------------------


def call(operation: Operation[..., Any], arguments: dict[str, Any]) -> SafeResult[Any]:
    """Run a call of ``operation`` (``arguments``: every parameter by name) at its best:
    never raising, waiting at most the safe timeout, spooling what may succeed later."""
    try:
        return _call_unguarded(operation, arguments)
    except Exception as exc:  # pragma: no cover - the last line of defence for training code
        error = describe(exc)
        logger.warning("%s failed inside training_db.safe: %s", operation.name, error)
        return SafeResult(operation.name, "lost", error=error)


def _call_unguarded(operation: Operation[..., Any], arguments: dict[str, Any]) -> SafeResult[Any]:
    try:
        spooled = snapshot(operation, arguments)
    except Exception as exc:  # the arguments cannot be validated or encoded: nothing to spool
        return drop(operation.name, arguments.get("run_id"), describe(exc))
    spool = Spool()
    worker = _worker()
    state = worker.state(spool)
    if worker.hanging():
        return state.append(spooled, "an earlier call is still hanging")
    pending = _Call(spooled, spool)
    if not worker.submit(pending):
        return state.append(spooled, "earlier calls of this process are being replayed")
    timeout = config.timeout()
    pending.done.wait(timeout)
    with pending.lock:
        if pending.result is not None:
            return pending.result
        pending.abandoned = True
        state.failed()
        return state.append(spooled, f"no answer within {timeout:g} s")


def drop(function: str, run_id: object, error: str) -> SafeResult[Any]:
    """A call whose arguments are wrong: logged, not kept (sending it again cannot help)."""
    logger.warning(
        "%s dropped: %s (a call with wrong arguments is not retried)",
        about(function, run_id),
        error,
    )
    return SafeResult(function, "dropped", error=error)


def _spool_and_warn(spool: Spool, call: SpooledCall, error: str) -> SafeResult[Any]:
    """Append ``call`` to the spool, to be replayed; ``lost`` when the spool cannot be written."""
    return _keep(
        call,
        error,
        ("spooled", "the spool", spool.path),
        lambda: spool.append(call.to_line()),
        "%s was not confirmed by the database (%s); spooled to %s as %s for replay",
    )


def _reject_and_warn(spool: Spool, call: SpooledCall, error: str) -> SafeResult[Any]:
    """Keep a call that retrying cannot cure in ``spool.rejected``, out of the spool.

    In the spool it would only be refused again at the next replay, and until then every
    later call of this process would wait behind it. Kept, not dropped: the database (or
    this package) refused a call whose arguments passed validation, which people should see.
    """

    def write() -> None:
        with spool.locked():
            spool.reject([rejection(None, error, call.to_line(), call)])

    return _keep(
        call,
        error,
        ("rejected", "spool.rejected", spool.rejected_path),
        write,
        "%s failed for a reason retrying cannot cure (%s); kept in %s as %s, not retried",
    )


def _keep(
    call: SpooledCall,
    error: str,
    where: tuple[Status, str, Path],
    write: Callable[[], None],
    message: str,
) -> SafeResult[Any]:
    """``write`` the call and log ``message`` (the call, the error, the file, the record id);
    a warning saying ``LOST`` and status ``lost`` when the file cannot be written."""
    status, name, path = where
    described = about(call.function, call.kwargs.get("run_id"))
    try:
        write()
    except Exception as exc:
        lost = f"{error}; {name} could not be written: {describe(exc)}"
        logger.warning("%s failed and is LOST: %s", described, lost)
        return SafeResult(call.function, "lost", error=lost)
    logger.warning(message, described, error, path, call.id)
    return SafeResult(call.function, status, error=error, record_id=call.id)


def drain(timeout: float | None = None) -> bool:
    """Wait until no call is left in the worker (calls still running after their timeout)
    and it is not replaying the spool.

    True when the worker is idle. Useful before a process exits on purpose.
    """
    return _worker().wait_idle(timeout)
