"""Repository functions for runs, tags and stats.

Each function takes a ``Session`` and never commits: the caller (``TrainingDB``) owns the
transaction, so a composite call is one transaction and a failure anywhere writes nothing.
Arguments are validated before the first statement.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db import filters, jsoncodec, portable
from training_db.errors import (
    DuplicateWandbRunIdError,
    InvalidArgumentError,
    RunAlreadyExistsError,
    RunNotFoundError,
)
from training_db.extraction import extract_columns
from training_db.models import (
    RUN_ID_MAX_LENGTH,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    RunTag,
    TrainingRun,
)
from training_db.types import INT64_MAX, INT64_MIN, as_utc, fits_int64, utc_now

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_values

TAG_KEY_MAX_LENGTH: Final = 255
# W&B summary keys that fill columns when a summary is stored.
SUMMARY_LOSS_KEY: Final = "train/loss"
SUMMARY_STEP_KEY: Final = "_step"
SUMMARY_RUNTIME_KEY: Final = "_runtime"

RunDict = dict[str, Any]
HISTORY_JSON_KEY: Final = "history_json"
# The JSON text keys of a run dict, each with the key of its parsed document.
JSON_TEXT_KEYS: Final = {"config_json": "config", "final_metrics_json": "final_metrics"}


class _PendingText:
    """What a `RunRecord` stores under a JSON text key until the text is first read."""

    def __repr__(self) -> str:
        return "<JSON text not made yet>"


_PENDING: Final = _PendingText()


class RunRecord(dict[str, Any]):
    """A run dict whose costly values are made on first access.

    ``config_json`` and ``final_metrics_json`` hold the key-sorted JSON text of the documents
    (`jsoncodec.dumps`), which most callers never read (they use ``config`` and
    ``final_metrics``). The text is made on first read, from the JSON text the database
    returned, so changes made meanwhile to the parsed documents do not show in it. Both keys
    are present from the start: ``keys()``, ``items()``, ``==``, ``dict(record)``,
    ``json.dumps``, ``repr``, copies and pickles all see the text (a record with a history
    loader holds a function, so it does not pickle).

    With a ``history_loader``, ``history_json`` is read from the database on first access
    (``run['history_json']`` or ``.get``): the JSON text of the run's history columns, or
    None when the run has no history. Until then it is not among ``keys()``.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        history_loader: Callable[[], str | None] | None = None,
        *,
        json_sources: Mapping[str, str] | None = None,
    ) -> None:
        """``json_sources``: for keys of ``data`` whose text is made on first read, the
        stored document's JSON text as the database returned it."""
        self._json_sources: dict[str, str] = {}
        if isinstance(data, RunRecord):
            # The stored values as they are (dict(data) would make the pending text now).
            super().__init__(dict.items(data))
            self._json_sources.update(data._json_sources)
        else:
            super().__init__(data)
        for key, source in (json_sources or {}).items():
            super().__setitem__(key, _PENDING)
            self._json_sources[key] = source
        self._history_loader = history_loader

    def _make_text(self, key: str) -> str:
        text = jsoncodec.dumps(jsoncodec.loads_document(self._json_sources[key]))
        super().__setitem__(key, text)
        self._json_sources.pop(key, None)
        return text

    def _make_all_text(self) -> None:
        for key in list(self._json_sources):
            if super().get(key) is _PENDING:
                self._make_text(key)
            else:  # the key was deleted or given another value
                self._json_sources.pop(key, None)

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return self._make_text(key) if value is _PENDING else value

    def __missing__(self, key: str) -> Any:
        if key != HISTORY_JSON_KEY or self._history_loader is None:
            raise KeyError(key)
        value = self._history_loader()
        self[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:
        # Not dict.get: it reads the storage, without __getitem__ or __missing__.
        return self[key] if key in self else default  # noqa: SIM401

    def __contains__(self, key: object) -> bool:
        if key == HISTORY_JSON_KEY and self._history_loader is not None:
            return True
        return super().__contains__(key)

    # CPython copies a dict subclass's storage directly (dict(record), {**record}, update)
    # unless the subclass defines __iter__; with it, the copy reads through __getitem__.
    def __iter__(self) -> Iterator[str]:
        return super().__iter__()

    def items(self) -> dict_items[str, Any]:
        self._make_all_text()
        return super().items()

    def values(self) -> dict_values[str, Any]:
        self._make_all_text()
        return super().values()

    __hash__ = None  # unhashable, like every dict

    def __eq__(self, other: object) -> bool:
        self._make_all_text()
        if isinstance(other, RunRecord):
            other._make_all_text()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        self._make_all_text()
        if isinstance(other, RunRecord):
            other._make_all_text()
        return super().__ne__(other)

    def __repr__(self) -> str:
        self._make_all_text()
        return super().__repr__()

    def pop(self, key: str, *default: Any) -> Any:
        if super().get(key) is _PENDING:
            self._make_text(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._make_all_text()
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if super().get(key) is _PENDING:
            return self._make_text(key)
        return super().setdefault(key, default)


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
    return _check_text("run_id", run_id)


def validate_status(status: Any) -> str:
    if status not in RUN_STATUSES:
        raise InvalidArgumentError(f"unknown status {status!r}; valid: {', '.join(RUN_STATUSES)}")
    return str(status)


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} must not contain NUL characters")
    try:
        jsoncodec.check_unicode(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"{name}: {exc}") from None
    return value


def _optional_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _check_text(name, value)


def optional_number(name: str, value: Any) -> float | None:
    """A number for a float column; NaN becomes NULL (SQLite cannot store NaN in a column)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = jsoncodec.to_jsonable(value) if type(value).__module__ == "numpy" else value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float64's range (10**400)
        raise InvalidArgumentError(
            f"{name} is out of range for a float column: an int of {len(str(abs(value)))} digits"
        ) from None
    return None if math.isnan(number) else number


def optional_int(name: str, value: Any) -> int | None:
    """A whole number for a 64-bit integer column (NaN is None, like a float column's).

    An int stays exact (through a float, 2**53 + 1 would lose its last digit); one beyond
    64 bits is an `InvalidArgumentError`, which a summary value is skipped on.
    """
    if type(value).__module__ == "numpy":
        value = jsoncodec.to_jsonable(value)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        as_float = optional_number(name, value)
        if as_float is None:
            return None
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}")
        number = int(as_float)
    if not fits_int64(number):
        raise InvalidArgumentError(
            f"{name} must fit in 64 bits ({INT64_MIN}..{INT64_MAX}), got {value!r}"
        )
    return number


def optional_timestamp(name: str, value: Any) -> dt.datetime | None:
    """A datetime or ISO 8601 string as aware UTC (naive means UTC)."""
    if value is None:
        return None
    try:
        if isinstance(value, dt.datetime):
            return as_utc(value)
        if isinstance(value, str):
            return as_utc(filters.parse_iso(value))
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidArgumentError(
            f"{name} is out of range: {value!r} is not between years 1 and 9999 in UTC"
        ) from None
    except ValueError:
        pass
    raise InvalidArgumentError(f"{name} must be a datetime or an ISO 8601 string, got {value!r}")


def _document(name: str, value: Any) -> dict[str, Any] | None:
    """A JSON-able dict, checked now so that a bad value fails before anything is written."""
    if value is None:
        return None
    if not jsoncodec.is_mapping_like(value):
        raise InvalidArgumentError(
            f"{name} must be a dict, got {type(value).__name__} "
            "(a dict-like object such as wandb.run.summary works too)"
        )
    converted = jsoncodec.to_jsonable(value, path=name)
    jsoncodec.encode_document(converted)  # raises on keys the database cannot hold
    assert isinstance(converted, dict)
    return converted


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


# A run dict's select list: every ``training_runs`` column, in order, the JSON documents as
# their JSON text (parsed here instead of by the column type: the text is kept for ``*_json``).
RECORD_KEYS: Final = tuple(column.key for column in TrainingRun.__table__.columns)
RECORD_COLUMNS: Final = tuple(
    sa.cast(column, sa.Text).label(column.key) if column.key in JSON_TEXT_KEYS else column
    for column in TrainingRun.__table__.columns
)
_RUN_ID_POSITION: Final = RECORD_KEYS.index("run_id")


def run_to_dict(row: Sequence[Any], tags: Mapping[str, Any]) -> RunRecord:
    """A run dict from a row of `RECORD_COLUMNS`: every column, the JSON documents parsed
    under short names (``config``, ``final_metrics``) and as JSON text under ``*_json``."""
    result = dict(zip(RECORD_KEYS, row, strict=True))
    sources: dict[str, str] = {}
    for text_key, document_key in JSON_TEXT_KEYS.items():
        source = result[text_key]
        if source is None:
            result[document_key] = None
        else:
            result[document_key] = jsoncodec.loads_document(source)
            sources[text_key] = source
    result["tags"] = dict(tags)
    return RunRecord(result, json_sources=sources)


def run_id_of(row: Sequence[Any]) -> str:
    """The run id in a row that starts with `RECORD_COLUMNS`."""
    return str(row[_RUN_ID_POSITION])


def tags_by_run(session: Session, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = list(run_ids)
    found: dict[str, dict[str, Any]] = {run_id: {} for run_id in ids}
    if not ids:
        return found
    rows = session.execute(
        sa.select(RunTag.run_id, RunTag.key, RunTag.value)
        .where(RunTag.run_id.in_(ids))
        .order_by(RunTag.run_id, RunTag.key)
    )
    for run_id, key, value in rows:
        found[run_id][key] = value
    return found


def get_run(session: Session, run_id: str) -> RunDict | None:
    validate_run_id(run_id)
    row = session.execute(
        sa.select(*RECORD_COLUMNS).where(TrainingRun.run_id == run_id)
    ).one_or_none()
    if row is None:
        return None
    return run_to_dict(row, tags_by_run(session, [run_id])[run_id])


def query_runs(
    session: Session,
    filters_: Mapping[str, Any] | None = None,
    order_by: str = "created_at DESC",
    limit: int = 100,
) -> list[RunDict]:
    dialect = session.get_bind().dialect.name
    statement = (
        sa.select(*RECORD_COLUMNS)
        .where(*filters.run_filter_clauses(filters_, dialect))
        .order_by(*filters.order_by_clauses(order_by))
        .limit(filters.validate_limit(limit))
    )
    rows = session.execute(statement).all()
    tags = tags_by_run(session, [run_id_of(row) for row in rows])
    return [run_to_dict(row, tags[run_id_of(row)]) for row in rows]


def get_stats(session: Session) -> dict[str, int]:
    """Run counts: total, per status (0 when none), with a blog post, with crash analysis."""
    present = filters._presence  # same notion of "has" as the query filters
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
    """Create a run in status ``launched`` with its whole config and the extracted columns."""
    validate_run_id(run_id)
    config = _document("config_dict", config_dict)
    values: dict[str, Any] = {
        "run_id": run_id,
        "wandb_run_id": _optional_text("wandb_run_id", wandb_run_id),
        "chain_of_custody_id": _optional_text("chain_of_custody_id", chain_of_custody_id),
        "run_name": _optional_text("run_name", run_name),
        "config_file_path": _optional_text("config_file_path", config_file_path),
        "host": _optional_text("host", host),
        "instance_id": _optional_text("instance_id", instance_id),
        "created_at": optional_timestamp("created_at", created_at) or utc_now(),
        "status": "launched",
        "config_json": config,
        **extract_columns(config),
    }
    if session.get(TrainingRun, run_id) is not None:
        raise RunAlreadyExistsError(f"a run with run_id={run_id!r} already exists")
    _check_wandb_run_id_free(session, values["wandb_run_id"], run_id)
    session.add(TrainingRun(**values))
    session.flush()


def _check_wandb_run_id_free(session: Session, wandb_run_id: str | None, run_id: str) -> None:
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
) -> None:
    """Set the status and the given fields; lifecycle timestamps follow the status."""
    validate_run_id(run_id)
    validate_status(status)
    summary = _document("final_metrics_json", final_metrics_json)
    given: dict[str, Any] = {
        "duration_seconds": optional_number("duration_seconds", duration_seconds),
        "ended_at": optional_timestamp("ended_at", ended_at),
        "started_at": optional_timestamp("started_at", started_at),
        "wandb_run_id": _optional_text("wandb_run_id", wandb_run_id),
        "wandb_url": _optional_text("wandb_url", wandb_url),
        "final_loss": optional_number("final_loss", final_loss),
        "total_training_steps": optional_int("total_training_steps", total_training_steps),
    }
    values = summary_columns(summary)
    values.update({key: value for key, value in given.items() if value is not None})
    if summary is not None:
        values["final_metrics_json"] = summary
    run = load_run(session, run_id, for_update=True)
    _check_wandb_run_id_free(session, values.get("wandb_run_id"), run_id)
    apply_status(run, status, values)
    session.flush()


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
    _set_fields(session, run_id, blog_post_url=_check_text("blog_url", blog_url))
    session.flush()


def attach_conversation(session: Session, run_id: str, conversation_s3_key: str) -> None:
    _set_fields(
        session, run_id, conversation_s3_key=_check_text("conversation_s3_key", conversation_s3_key)
    )
    session.flush()


def attach_crash_data(
    session: Session,
    run_id: str,
    error_log_s3_key: str | None,
    crash_report_s3_key: str | None,
    crash_analysis_s3_key: str | None,
) -> None:
    """Attach the crash keys; the run becomes ``crashed``, ``ended_at`` set if unset."""
    keys = {
        "error_log_s3_key": _optional_text("error_log_s3_key", error_log_s3_key),
        "crash_report_s3_key": _optional_text("crash_report_s3_key", crash_report_s3_key),
        "crash_analysis_s3_key": _optional_text("crash_analysis_s3_key", crash_analysis_s3_key),
    }
    validate_run_id(run_id)
    run = load_run(session, run_id, for_update=True)
    given = {name: value for name, value in keys.items() if value is not None}
    apply_status(run, "crashed", given)
    session.flush()


# --- tags -------------------------------------------------------------------------------------


def _validate_tag_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"tag keys must be non-empty strings, got {key!r}")
    if len(key) > TAG_KEY_MAX_LENGTH:
        raise InvalidArgumentError(
            f"tag key must be at most {TAG_KEY_MAX_LENGTH} characters: {key[:40]!r}…"
        )
    return _check_text("tag key", key)


def set_tags(session: Session, run_id: str, tags: Mapping[str, Any]) -> None:
    """Merge ``tags`` into the run's tags (a key given again is replaced)."""
    validate_run_id(run_id)
    if not isinstance(tags, Mapping):
        raise InvalidArgumentError(f"tags must be a dict, got {type(tags).__name__}")
    checked = {
        _validate_tag_key(key): jsoncodec.to_jsonable(value, path=f"tags.{key}")
        for key, value in tags.items()
    }
    for value in checked.values():
        jsoncodec.encode_document(value)
    require_run(session, run_id)
    table = RunTag.__table__
    for key, value in checked.items():
        portable.upsert(
            session,
            table,
            {"run_id": run_id, "key": key, "value": value},
            conflict_columns=("run_id", "key"),
            update_columns=("value",),
        )
    _touch(session, run_id)


def get_tags(session: Session, run_id: str) -> dict[str, Any]:
    validate_run_id(run_id)
    require_run(session, run_id)
    return tags_by_run(session, [run_id])[run_id]


def delete_tag(session: Session, run_id: str, key: str) -> bool:
    """Remove one tag; True if it existed."""
    validate_run_id(run_id)
    _validate_tag_key(key)
    require_run(session, run_id)
    result = session.execute(sa.delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
    _touch(session, run_id)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _touch(session: Session, run_id: str) -> None:
    """Bump ``updated_at_db`` for a change made in a child table."""
    session.execute(
        sa.update(TrainingRun).where(TrainingRun.run_id == run_id).values(updated_at_db=utc_now())
    )


# --- reliability: heartbeats, stale runs, replayable crash data (issue 6) ------------------

DEFAULT_STALE_AFTER: Final = dt.timedelta(minutes=30)


def heartbeat(session: Session, run_id: str, at: dt.datetime | str | None = None) -> None:
    """Record that the run is alive at ``at`` (now when None): one UPDATE by primary key.

    The stored time only moves forward, so a late or replayed heartbeat never hides a newer
    one. A heartbeat does not change the status (it does not revive a ``crashed`` run).
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


def mark_stale_runs(session: Session, older_than: Any = DEFAULT_STALE_AFTER) -> list[str]:
    """Turn ``running`` runs silent for longer than ``older_than`` into ``crashed``.

    A run's last sign of life is its last heartbeat, else ``started_at`` (else, for a row
    that never got one, ``created_at``); it becomes ``ended_at``, and the duration runs from
    ``started_at``. Returns the run ids changed, sorted.
    """
    age = stale_age(older_than)
    try:
        cutoff = utc_now() - age
    except OverflowError:
        return []  # older than any datetime: nothing can be that stale
    last_sign = sa.func.coalesce(
        TrainingRun.last_heartbeat_at, TrainingRun.started_at, TrainingRun.created_at
    )
    stale = session.scalars(
        sa.select(TrainingRun)
        .where(TrainingRun.status == "running", last_sign < cutoff)
        .order_by(TrainingRun.run_id)
        .with_for_update()
    ).all()
    for run in stale:
        ended = run.last_heartbeat_at or run.started_at or run.created_at
        apply_status(run, "crashed", {"ended_at": ended})
    session.flush()
    return [run.run_id for run in stale]


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
        "error_log_s3_key": _optional_text("error_log_s3_key", error_log_s3_key),
        "crash_report_s3_key": _optional_text("crash_report_s3_key", crash_report_s3_key),
        "crash_analysis_s3_key": _optional_text("crash_analysis_s3_key", crash_analysis_s3_key),
    }
    validate_run_id(run_id)
    crashed_at = optional_timestamp("ended_at", ended_at)
    run = load_run(session, run_id, for_update=True)
    given: dict[str, Any] = {name: value for name, value in keys.items() if value is not None}
    if run.ended_at is None and crashed_at is not None:
        given["ended_at"] = crashed_at
    apply_status(run, "crashed", given)
    session.flush()
