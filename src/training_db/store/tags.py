"""Repository functions for run tags: free metadata, one row per key, any JSON value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Session

from training_db.core import jsoncodec, portable
from training_db.core.errors import InvalidArgumentError
from training_db.core.operations import Operations, read, write
from training_db.core.validation import check_text
from training_db.schema import RunTag
from training_db.store.records import tags_by_run
from training_db.store.runs import require_run, touch_run, validate_run_id

TAG_KEY_MAX_LENGTH: Final = 255


def _validate_tag_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"tag keys must be non-empty strings, got {key!r}")
    if len(key) > TAG_KEY_MAX_LENGTH:
        raise InvalidArgumentError(
            f"tag key must be at most {TAG_KEY_MAX_LENGTH} characters: {key[:40]!r}…"
        )
    return check_text("tag key", key)


def set_tags(session: Session, run_id: str, tags: Mapping[str, Any]) -> None:
    """Merge ``tags`` (string keys, JSON-able values) into the run's tags."""
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
    touch_run(session, run_id)


def get_tags(session: Session, run_id: str) -> dict[str, Any]:
    """The run's tags as a dict."""
    validate_run_id(run_id)
    require_run(session, run_id)
    return tags_by_run(session, [run_id])[run_id]


def delete_tag(session: Session, run_id: str, key: str) -> bool:
    """Remove one tag; True if the run had it."""
    validate_run_id(run_id)
    _validate_tag_key(key)
    require_run(session, run_id)
    result = session.execute(sa.delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
    touch_run(session, run_id)
    return bool(result.rowcount)  # type: ignore[attr-defined]


class TagOperations(Operations):
    """Tags: free metadata on a run, one value per key."""

    set_tags = write(set_tags, idempotent=True)
    get_tags = read(get_tags)
    delete_tag = write(delete_tag)
