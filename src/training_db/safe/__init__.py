"""Best-effort calls for training code: they never raise, never block for long, lose nothing.

```python
from training_db import safe

safe.insert_run(run_id, None, config, host="ec2")
```

Each write function of the public API has a twin here with the same signature. A call runs
in a daemon worker thread and is waited for at most ``TRAINING_DB_SAFE_TIMEOUT`` seconds
(default 20). What happens to a call that fails depends on whether retrying it could cure
the failure; `classify_failure` decides, by one table (`FAILURE_HANDLING`, shown in
docs/reliability.md):

* *transient* (the database could not be reached, a lock conflict, a timeout, a schema an
  operator can upgrade): one warning is logged (logger ``training_db.safe``) and the call
  is appended to a durable local spool, to be applied later by `replay`;
* *invalid* arguments (a ``ValueError`` or ``TypeError`` from validation, a duplicate, or
  arguments that do not fit the signature): logged and dropped, as the training scripts'
  own ``try``/``except`` did: sending it again could not make it right;
* *refused* (the database refused the statement, stored data is damaged, any unexpected
  exception): retrying gives the same answer, so the call is kept in ``spool.rejected``
  instead of waiting in the spool, where it would hold back every later call.

Each function returns a `SafeResult`, which is true when the call reached the database.

Replays record what the original call would have: "now" is captured when the call is made
(``created_at`` of ``insert_run``, ``started_at`` of ``update_run_status('running')``,
``ended_at`` of a terminal status, of ``finish_run`` and of ``attach_crash_data``, and the
heartbeat time).

The spool is the JSON-lines file ``spool.jsonl`` in ``$TRAINING_DB_SPOOL_DIR`` (default
``$XDG_STATE_HOME/mangodb/spool``, i.e. ``~/.local/state/mangodb/spool``), one record per
call: ``{"id", "recorded_at", "function", "args", "kwargs"}``. Values are encoded with
`training_db.core.jsoncodec` (NaN, ±Infinity and NUL survive) and datetimes are tagged as
``{"$datetime": "<ISO 8601>"}``. Records never hold the database URL or a password.

While records of this process wait in the spool, later calls join them there, so that the
calls of a process reach the database in the order they were made. Unless
``TRAINING_DB_SPOOL_AUTO_REPLAY=0``, they do not wait long: a call first replays a non-empty
spool (at most once per ``TRAINING_DB_SPOOL_REPLAY_INTERVAL`` seconds, default 30); the
worker thread replays them as soon as the database answers again, trying after 1 s, then
2 s, 4 s, ... up to that interval; and an ``atexit`` hook replays them once more when the
interpreter exits (for at most the safe timeout). With automatic replay off, they wait for
`replay` or ``training-db replay``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import functools
import inspect
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, Literal, ParamSpec, TypeVar
from urllib.parse import quote, quote_plus

from sqlalchemy import exc as sa_exc

from training_db import api
from training_db.api import TrainingDB
from training_db.core import jsoncodec
from training_db.core.errors import (
    CorruptDataError,
    DatabaseUnavailableError,
    DuplicateError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SchemaVersionError,
    is_lock_conflict,
)
from training_db.core.settings import url_password
from training_db.core.types import utc_now
from training_db.schema import TERMINAL_STATUSES
from training_db.store import history as history_store
from training_db.store import runs

logger = logging.getLogger("training_db.safe")

TIMEOUT_ENV: Final = "TRAINING_DB_SAFE_TIMEOUT"
SPOOL_DIR_ENV: Final = "TRAINING_DB_SPOOL_DIR"
AUTO_REPLAY_ENV: Final = "TRAINING_DB_SPOOL_AUTO_REPLAY"
REPLAY_INTERVAL_ENV: Final = "TRAINING_DB_SPOOL_REPLAY_INTERVAL"
DEFAULT_TIMEOUT_S: Final = 20.0
DEFAULT_REPLAY_INTERVAL_S: Final = 30.0

SPOOL_FILE: Final = "spool.jsonl"
REJECTED_FILE: Final = "spool.rejected"
# Separate lock files: the spool itself is replaced by a rewrite, and a lock held on the old
# file would not exclude a writer that opened the new one.
LOCK_FILE: Final = "spool.lock"
REPLAY_LOCK_FILE: Final = "replay.lock"

WRITE_FUNCTIONS: Final = (
    "insert_run",
    "update_run_status",
    "attach_blog_post",
    "attach_conversation",
    "attach_crash_data",
    "set_tags",
    "delete_tag",
    "insert_objective",
    "update_objective_metric",
    "delete_run_objectives",
    "finish_run",
    "log_history",
    "heartbeat",
)
# Arguments holding a W&B history, normalised before spooling (see _deterministic).
_HISTORY_ARGUMENTS: Final = {
    "update_run_status": "history_json",
    "finish_run": "history",
    "log_history": "history",
}
_DATETIME_TAG: Final = "$datetime"
_ESCAPE_TAG: Final = "$spooled"  # wraps a user dict whose only key is one of these two tags
_SPOOL_TAGS: Final = frozenset({_DATETIME_TAG, _ESCAPE_TAG})
_RECORD_KEYS: Final = ("id", "recorded_at", "function", "args", "kwargs")

T = TypeVar("T")
P = ParamSpec("P")
Status = Literal["ok", "spooled", "dropped", "rejected", "lost"]


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


# --- the best-effort functions ----------------------------------------------------------------


def _best_effort(twin: Callable[P, SafeResult[T]]) -> Callable[P, SafeResult[T]]:
    """``twin``, made to drop a call whose arguments do not fit its signature.

    Python checks a call's arguments against the signature before the body runs, so a
    mistyped keyword would raise ``TypeError`` into the training code. The wrapper takes
    any arguments, binds them to ``twin``'s own signature and drops (logged, status
    ``dropped``) a call that does not bind; ``inspect.signature`` of the wrapper is still the
    twin's.
    """
    signature = inspect.signature(twin)
    name = twin.__name__

    @functools.wraps(twin)
    def call(*args: P.args, **kwargs: P.kwargs) -> SafeResult[T]:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            run_id = kwargs.get("run_id", args[0] if args else None)
            problem = _describe(TypeError(f"{name}() {exc}"))
            return _drop(name, None, {"run_id": run_id}, problem)
        return twin(*args, **kwargs)

    return call


@_best_effort
def insert_run(
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
) -> SafeResult[None]:
    """Best-effort `training_db.insert_run`; ``created_at`` defaults to the call time."""
    return _call(
        "insert_run",
        {
            "run_id": run_id,
            "wandb_run_id": wandb_run_id,
            "config_dict": config_dict,
            "chain_of_custody_id": chain_of_custody_id,
            "run_name": run_name,
            "config_file_path": config_file_path,
            "host": host,
            "instance_id": instance_id,
            "created_at": created_at,
        },
    )


@_best_effort
def update_run_status(
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
) -> SafeResult[None]:
    """Best-effort `training_db.update_run_status`.

    ``running`` without ``started_at`` records the call time as ``started_at``, a terminal
    status without ``ended_at`` the call time as ``ended_at`` (given explicitly, they replace
    an earlier value, where the direct call would keep it).
    """
    return _call(
        "update_run_status",
        {
            "run_id": run_id,
            "status": status,
            "duration_seconds": duration_seconds,
            "final_metrics_json": final_metrics_json,
            "ended_at": ended_at,
            "started_at": started_at,
            "wandb_run_id": wandb_run_id,
            "wandb_url": wandb_url,
            "final_loss": final_loss,
            "total_training_steps": total_training_steps,
            "history_json": history_json,
        },
    )


@_best_effort
def attach_blog_post(run_id: str, blog_url: str) -> SafeResult[None]:
    """Best-effort `training_db.attach_blog_post`."""
    return _call("attach_blog_post", {"run_id": run_id, "blog_url": blog_url})


@_best_effort
def attach_conversation(run_id: str, conversation_s3_key: str) -> SafeResult[None]:
    """Best-effort `training_db.attach_conversation`."""
    return _call(
        "attach_conversation", {"run_id": run_id, "conversation_s3_key": conversation_s3_key}
    )


@_best_effort
def attach_crash_data(
    run_id: str,
    error_log_s3_key: str | None,
    crash_report_s3_key: str | None,
    crash_analysis_s3_key: str | None,
) -> SafeResult[None]:
    """Best-effort `training_db.attach_crash_data`; a run without ``ended_at`` gets the
    call time, also when the call is replayed later."""
    return _call(
        "attach_crash_data",
        {
            "run_id": run_id,
            "error_log_s3_key": error_log_s3_key,
            "crash_report_s3_key": crash_report_s3_key,
            "crash_analysis_s3_key": crash_analysis_s3_key,
        },
    )


@_best_effort
def set_tags(run_id: str, tags: Mapping[str, Any]) -> SafeResult[None]:
    """Best-effort `training_db.set_tags`."""
    return _call("set_tags", {"run_id": run_id, "tags": tags})


@_best_effort
def delete_tag(run_id: str, key: str) -> SafeResult[bool]:
    """Best-effort `training_db.delete_tag`."""
    return _call("delete_tag", {"run_id": run_id, "key": key})


@_best_effort
def insert_objective(
    run_id: str,
    objective_name: str,
    objective_alias: str | None = None,
    uniprot: str | None = None,
    weight: float | None = None,
    direction: str | None = None,
) -> SafeResult[None]:
    """Best-effort `training_db.insert_objective`."""
    return _call(
        "insert_objective",
        {
            "run_id": run_id,
            "objective_name": objective_name,
            "objective_alias": objective_alias,
            "uniprot": uniprot,
            "weight": weight,
            "direction": direction,
        },
    )


@_best_effort
def update_objective_metric(
    run_id: str, objective_name: str, metric_type: str, value: float | None
) -> SafeResult[None]:
    """Best-effort `training_db.update_objective_metric`."""
    return _call(
        "update_objective_metric",
        {
            "run_id": run_id,
            "objective_name": objective_name,
            "metric_type": metric_type,
            "value": value,
        },
    )


@_best_effort
def delete_run_objectives(run_id: str) -> SafeResult[int]:
    """Best-effort `training_db.delete_run_objectives`."""
    return _call("delete_run_objectives", {"run_id": run_id})


@_best_effort
def finish_run(
    run_id: str,
    status: str = "completed",
    summary: Mapping[str, Any] | None = None,
    *,
    ended_at: dt.datetime | str | None = None,
    duration_seconds: float | None = None,
    history: Any = None,
) -> SafeResult[None]:
    """Best-effort `training_db.finish_run`; ``ended_at`` defaults to the call time."""
    return _call(
        "finish_run",
        {
            "run_id": run_id,
            "status": status,
            "summary": summary,
            "ended_at": ended_at,
            "duration_seconds": duration_seconds,
            "history": history,
        },
    )


@_best_effort
def log_history(run_id: str, history: Any) -> SafeResult[int]:
    """Best-effort `training_db.log_history`."""
    return _call("log_history", {"run_id": run_id, "history": history})


@_best_effort
def heartbeat(run_id: str, *, at: dt.datetime | str | None = None) -> SafeResult[None]:
    """Best-effort `training_db.heartbeat`; ``at`` defaults to the call time."""
    return _call("heartbeat", {"run_id": run_id, "at": at})


def drain(timeout: float | None = None) -> bool:
    """Wait until no call is left in the worker (calls still running after their timeout)
    and it is not replaying the spool.

    True when the worker is idle. Useful before a process exits on purpose.
    """
    return _worker().wait_idle(timeout)


# --- configuration ----------------------------------------------------------------------------


def spool_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$TRAINING_DB_SPOOL_DIR``, else ``$XDG_STATE_HOME/mangodb/spool``."""
    env = os.environ if env is None else env
    if env.get(SPOOL_DIR_ENV):
        return Path(env[SPOOL_DIR_ENV]).expanduser()
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "mangodb" / "spool"


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    """A positive number of seconds from the environment; a bad value warns and falls back."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        logger.warning("%s=%r is not a valid number of seconds; using %g", name, raw, default)
        return default
    return value


def _timeout() -> float:
    return _env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, allow_zero=False)


def _auto_replay() -> bool:
    return os.environ.get(AUTO_REPLAY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# --- deterministic, serialisable calls --------------------------------------------------------


@dataclass(frozen=True)
class SpooledCall:
    """One call as the spool holds it: ``args``/``kwargs`` are decoded Python values."""

    id: str
    recorded_at: dt.datetime
    function: str
    args: list[Any]
    kwargs: dict[str, Any]

    def to_line(self) -> str:
        """The record as one JSON line (no newline)."""
        body = {
            "id": self.id,
            "recorded_at": self.recorded_at.isoformat(),
            "function": self.function,
            "args": _encode_value(self.args, "args"),
            "kwargs": _encode_value(self.kwargs, "kwargs"),
        }
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str | bytes) -> SpooledCall:
        """Parse a spool line; ValueError saying what is wrong with it.

        Only ValueError: a line nested too deeply to parse (RecursionError), say, is as
        malformed as a line cut short, and must not stop a replay.
        """
        try:
            body = json.loads(line)
        except Exception as exc:
            raise ValueError(f"not JSON: {_describe(exc)}") from None
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        missing = [key for key in _RECORD_KEYS if key not in body]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        function, args, kwargs = body["function"], body["args"], body["kwargs"]
        if function not in WRITE_FUNCTIONS:
            raise ValueError(f"unknown function {function!r}")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args must be a list and kwargs an object")
        if not isinstance(body["id"], str) or not isinstance(body["recorded_at"], str):
            raise ValueError("id and recorded_at must be strings")
        try:
            recorded_at = dt.datetime.fromisoformat(body["recorded_at"])
            decoded_args = _decode_value(args)
            decoded_kwargs = _decode_value(kwargs)
        except Exception as exc:
            raise ValueError(f"undecodable value: {_describe(exc)}") from None
        return cls(body["id"], recorded_at, function, decoded_args, decoded_kwargs)


def _encode_value(value: Any, path: str) -> Any:
    """Tag datetimes, then the jsoncodec steps: plain JSON with NaN/Inf/NUL made storable."""
    return jsoncodec.encode_document(jsoncodec.to_jsonable(_tag(value), path))


def _tag(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_DATETIME_TAG: value.isoformat()}
    if isinstance(value, Mapping):
        tagged = {key: _tag(item) for key, item in value.items()}
        if len(tagged) == 1 and next(iter(tagged)) in _SPOOL_TAGS:
            return {_ESCAPE_TAG: tagged}
        return tagged
    if isinstance(value, (list, tuple)):
        return [_tag(item) for item in value]
    return value


def _decode_value(value: Any) -> Any:
    return _untag(jsoncodec.decode_document(value))


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, item),) = value.items()
            if key == _DATETIME_TAG and isinstance(item, str):
                return dt.datetime.fromisoformat(item)
            if key == _ESCAPE_TAG and isinstance(item, dict):
                return {name: _untag(entry) for name, entry in item.items()}
        return {name: _untag(entry) for name, entry in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def _deterministic(function: str, arguments: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The call with every "now" default filled in and its history in one canonical shape.

    A W&B history (a DataFrame, columns or rows) becomes row dicts holding exactly the
    values that would be stored, so the spool can hold it and a replay stores the same.
    """
    # Cheap checks that need no database: a call failing them is dropped now instead of
    # waiting in the spool for a replay to reject it.
    runs.validate_run_id(arguments["run_id"])
    status = arguments.get("status")
    if function == "update_run_status":
        runs.validate_status(status)
    if function == "insert_run" and arguments["created_at"] is None:
        arguments["created_at"] = now
    elif function == "update_run_status":
        if status == "running" and arguments["started_at"] is None:
            arguments["started_at"] = now
        if status in TERMINAL_STATUSES and arguments["ended_at"] is None:
            arguments["ended_at"] = now
    elif function in ("finish_run", "attach_crash_data") and arguments.get("ended_at") is None:
        arguments["ended_at"] = now  # attach_crash_data has no such argument: see _execute
    elif function == "heartbeat" and arguments["at"] is None:
        arguments["at"] = now
    history_argument = _HISTORY_ARGUMENTS.get(function)
    if history_argument is not None and arguments[history_argument] is not None:
        arguments[history_argument] = _history_rows(arguments[history_argument])
    return arguments


def _history_rows(history: Any) -> list[dict[str, Any]]:
    series = history_store.normalize_history(history)
    rows: dict[int, dict[str, Any]] = {}
    for metric, points in series.items():
        for step, value in points.items():
            rows.setdefault(step, {history_store.STEP_KEY: step})[metric] = value
    return [rows[step] for step in sorted(rows)]


def _snapshot(function: str, arguments: dict[str, Any]) -> SpooledCall:
    """The call as it will be spooled and run: encoded now, so later changes to the caller's
    objects cannot leak in, and decoded back, so a direct call and a replay see the same."""
    now = utc_now()
    arguments = _deterministic(function, arguments, now)
    draft = SpooledCall(uuid.uuid4().hex, now, function, [], arguments)
    return SpooledCall.from_line(draft.to_line())


def _execute(database: TrainingDB, call: SpooledCall) -> Any:
    if call.function == "attach_crash_data":
        # the public method has no ended_at: the captured call time goes to the variant
        # that uses it only where the direct call would have used "now"
        return database.write(runs.attach_crash_data_at, *call.args, **call.kwargs)
    return getattr(database, call.function)(*call.args, **call.kwargs)


# --- what a failure means: can retrying cure it? ----------------------------------------------

Failure = Literal["transient", "already-applied", "unknown-run", "invalid", "refused"]
CallAction = Literal["spool", "drop", "reject"]
ReplayAction = Literal["keep", "done", "reject"]

#: For each kind of failure (see `classify_failure`): what becomes of a call that failed so,
#: and of a replayed record. ``spool``/``keep``: into the spool, or kept there in order (the
#: replay stops at it); ``drop``: logged, not kept; ``done``: the record is removed (its
#: effect is there); ``reject``: moved to ``spool.rejected`` with the reason, and a replay
#: goes on with the next record. docs/reliability.md shows the same table.
FAILURE_HANDLING: Final[Mapping[Failure, tuple[CallAction, ReplayAction]]] = {
    "transient": ("spool", "keep"),
    "already-applied": ("drop", "done"),
    "unknown-run": ("spool", "reject"),
    "invalid": ("drop", "reject"),
    "refused": ("reject", "reject"),
}

# Failures that another attempt can cure: the database is down, busy, or behind in schema
# (an operator can upgrade it), or a network or pool timeout.
_TRANSIENT_ERRORS: Final = (
    DatabaseUnavailableError,
    SchemaVersionError,
    TimeoutError,
    ConnectionError,
    sa_exc.TimeoutError,
)
# PostgreSQL read_only_sql_transaction: a standby or a database made read-only for
# maintenance. Writes work again once it is writable, as with a read-only SQLite file.
_PG_READ_ONLY: Final = "25006"


def classify_failure(function: str, exc: BaseException) -> Failure:
    """Whether retrying ``function`` can cure the failure ``exc``; the first rule that matches.

    1. ``already-applied``: ``insert_run``/``insert_objective`` found its row there (a replay
       of a call that had reached the database).
    2. ``transient``: `DatabaseUnavailableError`, `SchemaVersionError`, a lock conflict, a
       timeout, a read-only PostgreSQL.
    3. ``unknown-run``: `RunNotFoundError` (the run's ``insert_run`` may be waiting in a spool).
    4. ``refused``: `CorruptDataError` (stored data is damaged, not the call).
    5. ``invalid``: `InvalidArgumentError` and any other ``ValueError`` or ``TypeError``, a
       duplicate (`DuplicateError`).
    6. ``refused``: everything else: `DatabaseWriteError` (the database refused the
       statement) and any unexpected exception, which is a deterministic bug as far as a
       retry can tell.
    """
    if (function == "insert_run" and isinstance(exc, RunAlreadyExistsError)) or (
        function == "insert_objective" and isinstance(exc, ObjectiveAlreadyExistsError)
    ):
        return "already-applied"
    if isinstance(exc, _TRANSIENT_ERRORS) or any(map(_transient_cause, _causes(exc))):
        return "transient"
    if isinstance(exc, RunNotFoundError):
        return "unknown-run"
    if isinstance(exc, CorruptDataError):
        return "refused"
    if isinstance(exc, (ValueError, TypeError, DuplicateError)):
        return "invalid"
    return "refused"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (a bounded walk: chains can loop)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__


def _transient_cause(exc: BaseException) -> bool:
    if is_lock_conflict(exc):
        return True
    orig = getattr(exc, "orig", None)
    return getattr(orig, "pgcode", None) == _PG_READ_ONLY


# --- messages without secrets -----------------------------------------------------------------


def _secrets() -> set[str]:
    """The password of the default database and of the environment, in the forms it may take
    in text (plain and URL-quoted)."""
    found: set[str] = set()
    candidates: list[str | None] = [os.environ.get("TRAINING_DB_PASSWORD")]
    candidates.append(url_password(os.environ.get("TRAINING_DB_URL", "")))
    default = api._default
    if default is not None:
        candidates.append(default.url.password)
    for password in candidates:
        if password:
            found.update({password, quote(password, safe=""), quote_plus(password)})
    return found


def _redact(text: str) -> str:
    for secret in sorted(_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException, database: TrainingDB | None = None) -> str:
    """The exception's type and first line, without the password (also ``database``'s)."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # an exception whose __str__ fails must not break the caller's path
        lines = []
    first = lines[0] if lines else ""
    text = _redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    password = None if database is None else database.url.password
    return text.replace(password, "***") if password else text


def _about(call: SpooledCall | None, function: str, arguments: Mapping[str, Any]) -> str:
    run_id = call.kwargs.get("run_id") if call is not None else arguments.get("run_id")
    shown = repr(run_id) if isinstance(run_id, str) else "?"
    if len(shown) > 80:
        shown = shown[:77] + "...'"
    return _redact(f"{function}(run_id={shown})")


# --- the spool --------------------------------------------------------------------------------


class Spool:
    """The spool files in ``directory``; every method takes the cross-process locks it needs."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = spool_dir() if directory is None else Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.rejected_path = self.directory / REJECTED_FILE

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    @contextlib.contextmanager
    def _flock(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def locked(self) -> contextlib.AbstractContextManager[bool]:
        """The lock every reader and writer of ``spool.jsonl`` holds."""
        return self._flock(LOCK_FILE)

    def replay_lock(self, *, blocking: bool) -> contextlib.AbstractContextManager[bool]:
        """Held for a whole replay, so that two processes never replay at once."""
        return self._flock(REPLAY_LOCK_FILE, blocking=blocking)

    def append(self, line: str) -> None:
        """Append one record durably (flushed and fsynced before returning)."""
        with self.locked():
            _append_durably(self.path, line.encode("utf-8"))

    def read_lines(self) -> list[bytes]:
        """The spool's lines (a last line cut short by a crash included). Hold ``locked()``."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines

    def rewrite(self, lines: Sequence[bytes]) -> None:
        """Replace the spool by ``lines`` atomically (temp file, fsync, rename).

        Hold ``locked()``.
        """
        temporary = self.directory / f".{SPOOL_FILE}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        _fsync_directory(self.directory)

    def reject(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append entries to ``spool.rejected`` durably. Hold ``locked()``."""
        if not entries:
            return
        text = b"".join(
            json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n" for entry in entries
        )
        _append_durably(self.rejected_path, text[:-1])


def _append_durably(path: Path, data: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        # A writer killed mid-line left no newline: end that line first, so the cut-short
        # record shows up as one malformed line instead of spoiling this one too.
        prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        _write_all(fd, prefix + data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_directory(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- replay -----------------------------------------------------------------------------------


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
    return _replay(Spool(spool_dir), db, blocking=True)


def _replay(spool: Spool, db: TrainingDB | None, *, blocking: bool) -> ReplayReport:
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
        reason = _redact(str(exc))
        report.malformed.append(MalformedLine(number, reason))
        rejected.append(_rejection(number, reason, text))
        return False
    try:
        _execute(database, call)
    except Exception as exc:
        action = FAILURE_HANDLING[classify_failure(call.function, exc)][1]
        if action == "done":
            report.already_present += 1
            return False
        reason = _describe(exc, database)
        if action == "reject":
            report.rejected.append(RejectedRecord(number, call.id, call.function, reason))
            rejected.append(_rejection(number, reason, text, call))
            return False
        report.failed += 1
        report.error = reason
        report.stopped = True
        return True
    report.applied += 1
    return False


def _rejection(
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


# --- the worker thread ------------------------------------------------------------------------

FIRST_RETRY_S: Final = 1.0  # the worker's first replay after a failure; doubling up to the interval


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
        ceiling = max(_replay_interval(), FIRST_RETRY_S)
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
        timeout = max(min(due) - time.monotonic(), 0.0) if due and _auto_replay() else None
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
        if not _auto_replay():
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
            report = _replay(state.spool, database, blocking=False)
        except Exception as exc:
            report = ReplayReport(state.spool.path, error=_describe(exc, database), stopped=True)
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
                    _about(call, call.function, {}),
                    "ok" if isinstance(outcome, SafeResult) else (error or outcome),
                )
                return
            if isinstance(outcome, SafeResult):
                pending.result = outcome
            elif outcome == "drop":
                pending.result = _drop(call.function, call, {}, error or "")
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
            return "spool", f"the database is not configured: {_describe(exc)}"
        state.database = database
        if spool.has_records():
            waited = time.monotonic() - state.last_attempt
            if _auto_replay() and waited >= _replay_interval():
                state.last_attempt = time.monotonic()
                spooled_before = state.spooled
                try:
                    report = _replay(spool, database, blocking=False)
                except Exception as exc:
                    report = ReplayReport(spool.path, error=_describe(exc), stopped=True)
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
            value = _execute(database, call)
        except Exception as exc:
            # An unknown run may be one whose insert_run is itself waiting in the spool
            # (the database refused it a moment ago): the call is spooled behind it. If the
            # run never appears, replay moves the call to spool.rejected, reported, not lost.
            action = FAILURE_HANDLING[classify_failure(call.function, exc)][0]
            if action == "spool":
                state.failed()
            return action, _describe(exc)
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


def _replay_interval() -> float:
    return _env_seconds(REPLAY_INTERVAL_ENV, DEFAULT_REPLAY_INTERVAL_S, allow_zero=True)


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
        if not _auto_replay() or not worker.waiting():
            return
        request = _ExitReplay()
        worker.calls.put(request)
        timeout = _timeout()
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


def _call(function: str, arguments: dict[str, Any]) -> SafeResult[Any]:
    try:
        return _call_unguarded(function, arguments)
    except Exception as exc:  # pragma: no cover - the last line of defence for training code
        error = _describe(exc)
        logger.warning("%s failed inside training_db.safe: %s", function, error)
        return SafeResult(function, "lost", error=error)


def _call_unguarded(function: str, arguments: dict[str, Any]) -> SafeResult[Any]:
    try:
        call = _snapshot(function, arguments)
    except Exception as exc:  # the arguments cannot be validated or encoded: nothing to spool
        return _drop(function, None, arguments, _describe(exc))
    spool = Spool()
    worker = _worker()
    state = worker.state(spool)
    if worker.hanging():
        return state.append(call, "an earlier call is still hanging")
    pending = _Call(call, spool)
    if not worker.submit(pending):
        return state.append(call, "earlier calls of this process are being replayed")
    timeout = _timeout()
    pending.done.wait(timeout)
    with pending.lock:
        if pending.result is not None:
            return pending.result
        pending.abandoned = True
        state.failed()
        return state.append(call, f"no answer within {timeout:g} s")


def _drop(
    function: str, call: SpooledCall | None, arguments: Mapping[str, Any], error: str
) -> SafeResult[Any]:
    logger.warning(
        "%s dropped: %s (a call with wrong arguments is not retried)",
        _about(call, function, arguments),
        error,
    )
    return SafeResult(function, "dropped", error=error)


def _spool_and_warn(spool: Spool, call: SpooledCall, error: str) -> SafeResult[Any]:
    about = _about(call, call.function, {})
    try:
        spool.append(call.to_line())
    except Exception as exc:
        lost = f"{error}; the spool could not be written: {_describe(exc)}"
        logger.warning("%s failed and is LOST: %s", about, lost)
        return SafeResult(call.function, "lost", error=lost)
    logger.warning(
        "%s was not confirmed by the database (%s); spooled to %s as %s for replay",
        about,
        error,
        spool.path,
        call.id,
    )
    return SafeResult(call.function, "spooled", error=error, record_id=call.id)


def _reject_and_warn(spool: Spool, call: SpooledCall, error: str) -> SafeResult[Any]:
    """Keep a call that retrying cannot cure in ``spool.rejected``, out of the spool.

    In the spool it would only be refused again at the next replay, and until then every
    later call of this process would wait behind it. Kept, not dropped: the database (or
    this package) refused a call whose arguments passed validation, which people should see.
    """
    about = _about(call, call.function, {})
    try:
        with spool.locked():
            spool.reject([_rejection(None, error, call.to_line(), call)])
    except Exception as exc:
        lost = f"{error}; spool.rejected could not be written: {_describe(exc)}"
        logger.warning("%s failed and is LOST: %s", about, lost)
        return SafeResult(call.function, "lost", error=lost)
    logger.warning(
        "%s failed for a reason retrying cannot cure (%s); kept in %s as %s, not retried",
        about,
        error,
        spool.rejected_path,
        call.id,
    )
    return SafeResult(call.function, "rejected", error=error, record_id=call.id)


__all__ = [
    "FAILURE_HANDLING",
    "WRITE_FUNCTIONS",
    "CallAction",
    "Failure",
    "MalformedLine",
    "RejectedRecord",
    "ReplayAction",
    "ReplayReport",
    "SafeResult",
    "Spool",
    "SpooledCall",
    "attach_blog_post",
    "attach_conversation",
    "attach_crash_data",
    "classify_failure",
    "delete_run_objectives",
    "delete_tag",
    "drain",
    "finish_run",
    "heartbeat",
    "insert_objective",
    "insert_run",
    "log_history",
    "replay",
    "set_tags",
    "spool_dir",
    "update_objective_metric",
    "update_run_status",
]
