"""Repository functions for runs: launch to end, stats, heartbeats and stale runs.

Each function takes a ``Session`` and never commits: the caller (``TrainingDB``) owns the
transaction, so a composite call is one transaction and a failure anywhere writes nothing.
Arguments are validated before the first statement.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core.errors import (
    DuplicateWandbRunIdError,
    InvalidArgumentError,
    RunAlreadyExistsError,
    RunNotFoundError,
)
from training_db.core.operations import ALWAYS, Operations, read, write
from training_db.core.suggest import require_one_of
from training_db.core.types import utc_now
from training_db.core.validation import (
    check_text,
    document,
    optional_int,
    optional_number,
    optional_text,
    optional_timestamp,
    validate_limit,
)
from training_db.schema import (
    RUN_ID_MAX_LENGTH,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    TrainingRun,
)
from training_db.schema.extraction import extract_columns
from training_db.store import filters as run_filters
from training_db.store.records import (
    RUN_BY_ID,
    RUNS_SELECT,
    RunDict,
    execute,
    run_id_of,
    run_to_dict,
    tags_by_run,
)

if TYPE_CHECKING:
    pass

# W&B summary keys that fill columns when a summary is stored.
SUMMARY_LOSS_KEY: Final = "train/loss"
SUMMARY_STEP_KEY: Final = "_step"
SUMMARY_RUNTIME_KEY: Final = "_runtime"


# --- argument checks ------------------------------------------------------------------------


def validate_run_id(run_id: Any) -> str:
    """A run id is a non-empty string of at most 255 characters."""
    if not isinstance(run_id, str):
        raise InvalidArgumentError(f"run_id must be a string, got {type(run_id).__name__}")
    if not run_id or not run_id.strip():
        raise InvalidArgumentError("run_id must not be empty")
    if len(run_id) > RUN_ID_MAX_LENGTH:
        raise InvalidArgumentError(
            f"run_id must be at most {RUN_ID_MAX_LENGTH} characters, got {len(run_id)}"
        )
    return check_text("run_id", run_id)


def validate_status(status: Any) -> str:
    return require_one_of(status, RUN_STATUSES, f"unknown status {status!r}")


# --- reads ------------------------------------------------------------------------------------


def load_run(session: Session, run_id: str, *, for_update: bool = False) -> TrainingRun:
    """The run, or RunNotFoundError; ``for_update`` locks its row (see `lock_run`)."""
    statement = sa.select(TrainingRun).where(TrainingRun.run_id == run_id)
    if for_update:
        statement = statement.with_for_update(key_share=True)
    run = session.scalars(statement).one_or_none()
    if run is None:
        raise RunNotFoundError(run_id)
    return run


def require_run(session: Session, run_id: str) -> None:
    """RunNotFoundError unless the run exists (without loading it)."""
    found = session.scalar(sa.select(TrainingRun.run_id).where(TrainingRun.run_id == run_id))
    if found is None:
        raise RunNotFoundError(run_id)


def lock_run(session: Session, run_id: str) -> None:
    """Lock the run's row until the transaction ends; RunNotFoundError if there is none.

    Writers that read a run's rows, merge and write them back (its history and key
    metrics) take this lock first, so two of them on one run take turns instead of one
    overwriting the other's merge. On PostgreSQL it is ``FOR NO KEY UPDATE``: it queues
    such writers and ``UPDATE``s of the run, but not the foreign-key checks of rows
    inserted for the run elsewhere (``FOR KEY SHARE``). SQLite needs no row lock: its write
    transactions begin ``IMMEDIATE`` and so run one at a time.
    """
    found = session.scalar(
        sa.select(TrainingRun.run_id)
        .where(TrainingRun.run_id == run_id)
        .with_for_update(key_share=True)
    )
    if found is None:
        raise RunNotFoundError(run_id)


def get_run(session: Session, run_id: str) -> RunDict | None:
    """Every column of a run as a dict, or None when there is no such run.

    ``config_json`` and ``final_metrics_json`` are JSON text (``json.loads`` gives NaN back
    as NaN); ``config`` and ``final_metrics`` hold the parsed documents; ``tags`` the
    run's tags. Timestamps are timezone-aware UTC. ``history_json`` is the JSON text of
    the run's history columns (None without history), read when first accessed.
    """
    validate_run_id(run_id)
    row = execute(session, RUN_BY_ID, {"run_id": run_id}).one_or_none()
    if row is None:
        return None
    return run_to_dict(row, tags_by_run(session, [run_id])[run_id])


def query_runs(
    session: Session,
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
    ties by run_id); ``limit`` is 1 to 10,000. A misspelt name raises `UnknownNameError`
    with the closest known ones: a column, a status, or (when nothing matched) a
    ``config.``/``summary.``/``tag.`` path that no run has.
    """
    dialect = session.get_bind().dialect.name
    question = _question_key(filters, order_by, limit, dialect)
    statement = _QUESTIONS.get(question) if question is not None else None
    if statement is None:
        statement = (
            RUNS_SELECT.where(*run_filters.run_filter_clauses(filters, dialect))
            .order_by(*run_filters.order_by_clauses(order_by))
            .limit(validate_limit(limit))
        )
        if question is not None:
            _QUESTIONS.put(question, statement)
    rows = execute(session, statement).all()
    if not rows:
        run_filters.require_known_paths(session, filters)
    tags = tags_by_run(session, [run_id_of(row) for row in rows])
    return [run_to_dict(row, tags[run_id_of(row)]) for row in rows]


class _StatementCache:
    """The statements of the last questions asked, by question (a small LRU, thread-safe).

    A poller asks the same question again and again; its statement is then built once, and
    so is its cache key (memoized on the statement), which for a 45-column select costs
    more than running it on a small table.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._statements: OrderedDict[Hashable, sa.Select[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> sa.Select[Any] | None:
        with self._lock:
            statement = self._statements.get(key)
            if statement is not None:
                self._statements.move_to_end(key)
            return statement

    def put(self, key: Hashable, statement: sa.Select[Any]) -> None:
        with self._lock:
            self._statements[key] = statement
            self._statements.move_to_end(key)
            while len(self._statements) > self._size:
                self._statements.popitem(last=False)


_QUESTIONS: Final = _StatementCache(256)


def _question_key(filters: Any, order_by: Any, limit: Any, dialect: str) -> Hashable | None:
    """A key that equals another only for the same question, or None (not cached).

    Each value goes in with its type: ``1``, ``1.0`` and ``True`` are equal in Python but
    not the same filter (``True`` is refused for an integer column).
    """
    try:
        frozen = None if filters is None else _frozen(filters)
        return (frozen, _frozen(order_by), _frozen(limit), dialect)
    except TypeError:  # a value that does not hash: build the statement every time
        return None


def _frozen(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return ("mapping", tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = (
            sorted(map(_frozen, value), key=repr)
            if isinstance(value, (set, frozenset))
            else map(_frozen, value)
        )
        return (type(value).__name__, tuple(items))
    if value is None or isinstance(value, (str, int, float, bool, dt.datetime)):
        return (type(value).__name__, value)
    raise TypeError(type(value).__name__)


def count_runs(session: Session, filters: Mapping[str, Any] | None = None) -> int:
    """How many runs match every filter: the filters of ``query_runs``, without its limit."""
    dialect = session.get_bind().dialect.name
    statement = (
        sa.select(sa.func.count())
        .select_from(TrainingRun.__table__)
        .where(*run_filters.run_filter_clauses(filters, dialect))
    )
    return int(execute(session, statement).scalar_one())


def get_stats(session: Session) -> dict[str, int]:
    """Counts: ``total_runs``, one per status, ``with_blog_posts``, ``with_crash_analysis``."""
    present = run_filters.presence  # same notion of "has" as the query filters
    columns = [sa.func.count().label("total_runs")]
    columns += [
        sa.func.coalesce(sa.func.sum(sa.case((TrainingRun.status == status, 1), else_=0)), 0).label(
            status
        )
        for status in RUN_STATUSES
    ]
    columns += [
        sa.func.coalesce(
            sa.func.sum(sa.case((present(TrainingRun.blog_post_url, True), 1), else_=0)), 0
        ).label("with_blog_posts"),
        sa.func.coalesce(
            sa.func.sum(sa.case((present(TrainingRun.crash_analysis_s3_key, True), 1), else_=0)),
            0,
        ).label("with_crash_analysis"),
    ]
    row = session.execute(sa.select(*columns)).one()
    return {key: int(value) for key, value in row._mapping.items()}


# --- writes -----------------------------------------------------------------------------------


def insert_run(
    session: Session,
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
    `DuplicateError` and writes nothing.
    """
    validate_run_id(run_id)
    config = document("config_dict", config_dict)
    values: dict[str, Any] = {
        "run_id": run_id,
        "wandb_run_id": optional_text("wandb_run_id", wandb_run_id),
        "chain_of_custody_id": optional_text("chain_of_custody_id", chain_of_custody_id),
        "run_name": optional_text("run_name", run_name),
        "config_file_path": optional_text("config_file_path", config_file_path),
        "host": optional_text("host", host),
        "instance_id": optional_text("instance_id", instance_id),
        "created_at": optional_timestamp("created_at", created_at) or utc_now(),
        "status": "launched",
        "config_json": config,
        **extract_columns(config),
    }
    if session.get(TrainingRun, run_id) is not None:
        raise RunAlreadyExistsError(f"a run with run_id={run_id!r} already exists")
    check_wandb_run_id_free(session, values["wandb_run_id"], run_id)
    session.add(TrainingRun(**values))
    session.flush()


def check_wandb_run_id_free(session: Session, wandb_run_id: str | None, run_id: str) -> None:
    if wandb_run_id is None:
        return
    owner = session.scalar(
        sa.select(TrainingRun.run_id).where(TrainingRun.wandb_run_id == wandb_run_id)
    )
    if owner is not None and owner != run_id:
        raise DuplicateWandbRunIdError(
            f"wandb_run_id={wandb_run_id!r} already belongs to run {owner!r}"
        )


def summary_columns(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """``final_loss``, ``total_training_steps``, ``duration_seconds`` found in a W&B summary."""
    if not summary:
        return {}
    found: dict[str, Any] = {}
    for column, key, convert in (
        ("final_loss", SUMMARY_LOSS_KEY, optional_number),
        ("total_training_steps", SUMMARY_STEP_KEY, optional_int),
        ("duration_seconds", SUMMARY_RUNTIME_KEY, optional_number),
    ):
        value = summary.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                found[column] = convert(key, value)
            except ValueError:
                continue
    return found


def apply_status(run: TrainingRun, status: str, values: Mapping[str, Any]) -> None:
    """Set ``status`` and ``values`` on ``run``, filling the lifecycle timestamps.

    ``running`` sets ``started_at`` (now) unless given or already set; a terminal status sets
    ``ended_at`` likewise, and ``duration_seconds`` from ``started_at`` when not given (an
    existing duration is kept unless ``ended_at`` changes in this call).
    """
    for name, value in values.items():
        setattr(run, name, value)
    run.status = status
    now = utc_now()
    if status == "running" and run.started_at is None:
        run.started_at = now
    if status in TERMINAL_STATUSES:
        ended_now = "ended_at" in values
        if run.ended_at is None:
            run.ended_at, ended_now = now, True
        derive = ended_now or run.duration_seconds is None
        if derive and "duration_seconds" not in values and run.started_at is not None:
            run.duration_seconds = max(0.0, (run.ended_at - run.started_at).total_seconds())


def _set_fields(session: Session, run_id: str, **fields: Any) -> TrainingRun:
    validate_run_id(run_id)
    run = load_run(session, run_id, for_update=True)
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def attach_blog_post(session: Session, run_id: str, blog_url: str) -> None:
    """Record the blog post written about a run."""
    _set_fields(session, run_id, blog_post_url=check_text("blog_url", blog_url))
    session.flush()


def attach_conversation(session: Session, run_id: str, conversation_s3_key: str) -> None:
    """Record the S3 key of the conversation that launched a run."""
    _set_fields(
        session, run_id, conversation_s3_key=check_text("conversation_s3_key", conversation_s3_key)
    )
    session.flush()


def attach_crash_data(
    session: Session,
    run_id: str,
    error_log_s3_key: str | None,
    crash_report_s3_key: str | None,
    crash_analysis_s3_key: str | None,
) -> None:
    """Record a crash's S3 keys; the run becomes ``crashed``, ``ended_at`` set if unset."""
    keys = {
        "error_log_s3_key": optional_text("error_log_s3_key", error_log_s3_key),
        "crash_report_s3_key": optional_text("crash_report_s3_key", crash_report_s3_key),
        "crash_analysis_s3_key": optional_text("crash_analysis_s3_key", crash_analysis_s3_key),
    }
    validate_run_id(run_id)
    run = load_run(session, run_id, for_update=True)
    given = {name: value for name, value in keys.items() if value is not None}
    apply_status(run, "crashed", given)
    session.flush()


def touch_run(session: Session, run_id: str) -> None:
    """Bump ``updated_at_db`` for a change made in a child table."""
    session.execute(
        sa.update(TrainingRun).where(TrainingRun.run_id == run_id).values(updated_at_db=utc_now())
    )


# --- reliability: heartbeats, stale runs, replayable crash data (issue 6) ------------------

DEFAULT_STALE_AFTER: Final = dt.timedelta(minutes=30)


def heartbeat(session: Session, run_id: str, *, at: dt.datetime | str | None = None) -> None:
    """Record that a run is alive (cheap: one UPDATE by primary key).

    Call it every few minutes while training; `mark_stale_runs` turns running runs
    whose heartbeats stopped into ``crashed``. ``at`` defaults to now; the stored time
    only moves forward. An unknown run raises
    `training_db.errors.RunNotFoundError`.
    """
    validate_run_id(run_id)
    beat = optional_timestamp("at", at) or utc_now()
    stored = TrainingRun.last_heartbeat_at
    newer = sa.literal(beat, TrainingRun.__table__.c.last_heartbeat_at.type)
    result = session.execute(
        sa.update(TrainingRun)
        .where(TrainingRun.run_id == run_id)
        .values(
            last_heartbeat_at=sa.case(
                (sa.or_(stored.is_(None), stored < newer), newer), else_=stored
            )
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise RunNotFoundError(run_id)


def stale_age(older_than: Any) -> dt.timedelta:
    """``older_than`` (a timedelta or a number of seconds) as a non-negative timedelta."""
    if isinstance(older_than, dt.timedelta):
        age = older_than
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        if not math.isfinite(older_than):
            raise InvalidArgumentError(
                f"older_than must be a finite number of seconds, got {older_than!r}"
            )
        try:
            age = dt.timedelta(seconds=older_than)
        except OverflowError:
            raise InvalidArgumentError(f"older_than is out of range: {older_than!r}") from None
    else:
        raise InvalidArgumentError(
            f"older_than must be a timedelta or a number of seconds, got {older_than!r}"
        )
    if age < dt.timedelta(0):
        raise InvalidArgumentError(f"older_than must not be negative, got {older_than!r}")
    return age


def find_stale_runs(
    session: Session, older_than: dt.timedelta | float = DEFAULT_STALE_AFTER
) -> list[str]:
    """The ``running`` runs that `mark_stale_runs` would mark ``crashed`` now; changes nothing.

    Same rule: no heartbeat (or, for a run that never sent one, no ``started_at``) within
    ``older_than`` (a timedelta, or seconds). Returns their run ids, sorted: what
    ``training-db reap --dry-run`` prints.
    """
    query = _stale_runs(older_than)
    if query is None:
        return []
    return list(session.scalars(query.with_only_columns(TrainingRun.run_id)))


def mark_stale_runs(
    session: Session, older_than: dt.timedelta | float = DEFAULT_STALE_AFTER
) -> list[str]:
    """Mark ``running`` runs silent for longer than ``older_than`` as ``crashed``.

    Silent means: no heartbeat (or, for a run that never sent one, no ``started_at``)
    within ``older_than`` (a timedelta, or seconds). Each such run gets ``ended_at`` = its
    last heartbeat (or ``started_at``) and its duration from ``started_at``, all in one
    transaction. Returns the run ids changed, sorted. `find_stale_runs` lists them without
    changing them.
    """
    query = _stale_runs(older_than)
    if query is None:
        return []
    stale = session.scalars(query.with_for_update()).all()
    for run in stale:
        ended = run.last_heartbeat_at or run.started_at or run.created_at
        apply_status(run, "crashed", {"ended_at": ended})
    session.flush()
    return [run.run_id for run in stale]


def _stale_runs(older_than: Any) -> sa.Select[Any] | None:
    """The running runs silent for longer than ``older_than``, by run id; None when no
    datetime is that old."""
    age = stale_age(older_than)
    try:
        cutoff = utc_now() - age
    except OverflowError:
        return None  # older than any datetime: nothing can be that stale
    last_sign = sa.func.coalesce(
        TrainingRun.last_heartbeat_at, TrainingRun.started_at, TrainingRun.created_at
    )
    return (
        sa.select(TrainingRun)
        .where(TrainingRun.status == "running", last_sign < cutoff)
        .order_by(TrainingRun.run_id)
    )


def attach_crash_data_at(
    session: Session,
    run_id: str,
    error_log_s3_key: str | None,
    crash_report_s3_key: str | None,
    crash_analysis_s3_key: str | None,
    *,
    ended_at: dt.datetime | str,
) -> None:
    """`attach_crash_data` with its "now" fixed to ``ended_at``.

    ``training_db.safe`` captures the time of the call, so that a call replayed from the
    spool hours later records the crash when it happened. As in ``attach_crash_data``, the
    time is used only when the run has no ``ended_at`` yet.
    """
    keys = {
        "error_log_s3_key": optional_text("error_log_s3_key", error_log_s3_key),
        "crash_report_s3_key": optional_text("crash_report_s3_key", crash_report_s3_key),
        "crash_analysis_s3_key": optional_text("crash_analysis_s3_key", crash_analysis_s3_key),
    }
    validate_run_id(run_id)
    crashed_at = optional_timestamp("ended_at", ended_at)
    run = load_run(session, run_id, for_update=True)
    given: dict[str, Any] = {name: value for name, value in keys.items() if value is not None}
    if run.ended_at is None and crashed_at is not None:
        given["ended_at"] = crashed_at
    apply_status(run, "crashed", given)
    session.flush()


class RunOperations(Operations):
    """Runs: launch, lifecycle attachments, reads and counts, liveness."""

    insert_run = write(insert_run, now={"created_at": ALWAYS})
    get_run = read(get_run, returns="run")
    query_runs = read(query_runs, returns="runs")
    count_runs = read(count_runs)
    get_stats = read(get_stats)
    attach_blog_post = write(attach_blog_post, idempotent=True)
    attach_conversation = write(attach_conversation, idempotent=True)
    # The twin records the call time as the crash time: a spooled call replays through
    # attach_crash_data_at, which uses it only where the direct call would have used "now".
    attach_crash_data = write(
        attach_crash_data, idempotent=True, now={"ended_at": ALWAYS}, replay=attach_crash_data_at
    )
    heartbeat = write(heartbeat, idempotent=True, now={"at": ALWAYS})
    find_stale_runs = read(find_stale_runs)
    mark_stale_runs = write(mark_stale_runs, safe=False)
