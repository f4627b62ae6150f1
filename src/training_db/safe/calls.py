"""One best-effort call, from its operation's declaration: the call as it is captured when it
is made (`snapshot`), how it runs (`execute`, also at replay) and what it did (`SafeResult`).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from training_db.api import TrainingDB
from training_db.core.errors import InvalidArgumentError
from training_db.core.operations import Operation
from training_db.core.types import utc_now
from training_db.safe.records import SpooledCall, spooled_operation
from training_db.store import history as history_store
from training_db.store import runs

T = TypeVar("T")
Status = Literal["ok", "spooled", "dropped", "rejected", "lost"]

# Cheap checks that need no database, by argument name, for every write whose signature has
# that argument: a call failing one is dropped now instead of waiting in the spool for a
# replay to reject it.
_PRECHECKS: Final[Mapping[str, Callable[[Any], object]]] = {
    "run_id": runs.validate_run_id,
    "status": runs.validate_status,
}


@dataclass(frozen=True)
class SafeResult(Generic[T]):
    """What a best-effort call did; true when it reached the database.

    ``status``: ``ok`` (``value`` is what the API function returned), ``spooled`` (kept in the
    spool as ``record_id``, to be replayed), ``dropped`` (its arguments were wrong; nothing to
    retry), ``rejected`` (the database refused it for good, or it failed unexpectedly: kept
    in ``spool.rejected`` as ``record_id``, not retried) or ``lost`` (it failed and the spool
    could not be written either). ``error`` says why, without the database password.
    """

    function: str
    status: Status
    value: T | None = None
    error: str | None = None
    record_id: str | None = None

    def __bool__(self) -> bool:
        return self.status == "ok"


def snapshot(operation: Operation[..., Any], arguments: dict[str, Any]) -> SpooledCall:
    """The call as it will be spooled and run: encoded now, so later changes to the caller's
    objects cannot leak in, and decoded back, so a direct call and a replay see the same.

    ``arguments`` (every parameter by name, defaults applied) is completed as the
    declaration says: its "now" arguments filled in with the call time, its histories turned
    into the row dicts of exactly the values that would be stored.
    """
    now = utc_now()
    _precheck(operation.signature, arguments)
    operation.fill_now(arguments, now)
    for name in operation.history:
        if arguments.get(name) is not None:
            arguments[name] = _history_rows(arguments[name])
    draft = SpooledCall(uuid.uuid4().hex, now, operation.name, [], arguments)
    return SpooledCall.from_line(draft.to_line())


def _precheck(signature: inspect.Signature, arguments: Mapping[str, Any]) -> None:
    for name, check in _PRECHECKS.items():
        parameter = signature.parameters.get(name)
        if parameter is None:
            continue
        value = arguments[name]
        if value is None and parameter.default is None:
            continue  # an optional argument left out
        check(value)


def _history_rows(history: Any) -> list[dict[str, Any]]:
    """A W&B history in any accepted shape (a DataFrame, columns or rows) as row dicts."""
    series = history_store.normalize_history(history)
    rows: dict[int, dict[str, Any]] = {}
    for metric, points in series.items():
        for step, value in points.items():
            rows.setdefault(step, {history_store.STEP_KEY: step})[metric] = value
    return [rows[step] for step in sorted(rows)]


def execute(database: TrainingDB, call: SpooledCall) -> Any:
    """Run ``call`` on ``database``: the database's method of the operation, or, when the
    declaration names one, its replay function in a write transaction.

    A replay function takes the "now" arguments that the public operation has no parameter
    for (``attach_crash_data_at`` the crash time, used only where the direct call would have
    used "now").
    """
    operation = spooled_operation(call.function)
    if operation is None:  # pragma: no cover - SpooledCall.from_line accepts no other
        raise InvalidArgumentError(f"unknown function {call.function!r}")
    if operation.replay is not None:
        return database.write(operation.replay, *call.args, **call.kwargs)
    return getattr(database, call.function)(*call.args, **call.kwargs)
