"""Run dicts: what ``get_run`` and ``query_runs`` return, built from rows of the runs table.

`RECORD_COLUMNS` is the select list; `run_to_dict` turns a row (and the run's tags) into a
`RunRecord`, whose costly values (the JSON text of the documents, the history) are made
on first read.

The reads that the control plane and the dashboard make many times a second run Core
statements built once (`RUN_BY_ID`, `TAGS_BY_RUN`) through `execute`: the statement's
compiled form is then found in the cache without building a 45-column select again, and
the ORM's per-statement work (a compile state, entity loading) is skipped. See
CONTRIBUTING.md, "Keep the per-call cost small".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import CursorResult, Executable
from sqlalchemy.orm import Session

from training_db.core import jsoncodec
from training_db.schema import RunTag, TrainingRun

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_values

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


# A run dict's select list: every ``training_runs`` column, in order, the JSON documents as
# their JSON text (parsed here instead of by the column type: the text is kept for ``*_json``).
RECORD_KEYS: Final = tuple(column.key for column in TrainingRun.__table__.columns)
RECORD_COLUMNS: Final = tuple(
    sa.cast(column, sa.Text).label(column.key) if column.key in JSON_TEXT_KEYS else column
    for column in TrainingRun.__table__.columns
)
_RUN_ID_POSITION: Final = RECORD_KEYS.index("run_id")
_RUNS: Final = TrainingRun.__table__.c
_TAGS: Final = RunTag.__table__.c

#: Every run column (`RECORD_COLUMNS`); callers add their WHERE, ORDER BY and LIMIT.
RUNS_SELECT: Final = sa.select(*RECORD_COLUMNS)
#: One run by id: ``{"run_id": ...}``.
RUN_BY_ID: Final = RUNS_SELECT.where(_RUNS.run_id == sa.bindparam("run_id"))
#: The tags of some runs: ``{"run_ids": [...]}``.
TAGS_BY_RUN: Final = (
    sa.select(_TAGS.run_id, _TAGS.key, _TAGS.value)
    .where(_TAGS.run_id.in_(sa.bindparam("run_ids", expanding=True)))
    .order_by(_TAGS.run_id, _TAGS.key)
)


KNOWN_NAMES_INFO: Final = "training_db.known_names"
KNOWN_NAMES_CACHED: Final = 4096


def is_known_name(session: Session, kind: str, name: str) -> bool:
    """Whether this database already found ``name`` (of ``kind``: an objective, a JSON path,
    a tag key, a metric) in its data, so that an empty answer need not look again.

    The did-you-mean checks run when a read's answer is empty; a poller asking the same
    question until something matches would pay for the check every time. The names are
    kept per `Database` (``session.info``, set by its session makers; a session made
    elsewhere keeps none). Names are only added, never taken back: if the last run with a
    name went away, an empty answer is what the caller gets, as before these checks.
    """
    return (kind, name) in session.info.get(KNOWN_NAMES_INFO, ())


def remember_known_name(session: Session, kind: str, name: str) -> None:
    """Note that ``name`` exists (see `is_known_name`); the set is bounded and starts over
    when full."""
    known = session.info.get(KNOWN_NAMES_INFO)
    if known is None:
        return
    if len(known) >= KNOWN_NAMES_CACHED:
        known.clear()
    known.add((kind, name))


def name_found(session: Session, kind: str, name: str, probe: Executable) -> bool:
    """Whether ``name`` (of ``kind``) is in the data: already known (`is_known_name`), or
    ``probe`` (a one-row select that finds it) returns a row, and then it is remembered."""
    if is_known_name(session, kind, name):
        return True
    if session.scalar(probe) is None:
        return False
    remember_known_name(session, kind, name)
    return True


def execute(
    session: Session, statement: Executable, parameters: Mapping[str, Any] | None = None
) -> CursorResult[Any]:
    """Run a Core statement on the session's connection, in its transaction.

    What ``session.execute`` does for a statement without ORM entities, minus the ORM's
    per-statement work: pending ORM changes are flushed first, as autoflush would.
    """
    if session.autoflush:
        session.flush()  # returns at once when nothing is pending
    return session.connection().execute(statement, parameters)


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
    """The tags of each of ``run_ids`` (``{}`` for a run without tags), in one query."""
    ids = list(run_ids)
    found: dict[str, dict[str, Any]] = {run_id: {} for run_id in ids}
    if not ids:
        return found
    for row in execute(session, TAGS_BY_RUN, {"run_ids": ids}):
        found[row.run_id][row.key] = row.value
    return found
