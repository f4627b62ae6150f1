"""The best-effort twins are made from the operation declarations: every write declared with a
twin has one (and nothing else does), and a write declared anywhere gets a working twin, spool
record and replay without a line written in ``training_db.safe``."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL
from sqlalchemy.orm import Session

import training_db
from tests.test_safe import spool, spooled  # noqa: F401 - spool: the fixture of test_safe
from training_db import TrainingDB, safe
from training_db.core import operations as declarations
from training_db.core.operations import ALWAYS, Operations, operation, write
from training_db.safe import twins
from training_db.store import history as history_store
from training_db.store import tags as tag_store

UTC = dt.timezone.utc
CLOSED_PORT_URL = "postgresql://trainer@127.0.0.1:1/trainingruns"
SAFE_PACKAGE = Path(safe.__file__).parent
# The modules of training_db.safe in the order their imports point: each may import only
# those before it (the package docstring lists the same order).
SAFE_MODULES = (
    "config",
    "failures",
    "redact",
    "spool",
    "records",
    "calls",
    "replaying",
    "worker",
    "twins",
)


# --- the registry and the twins agree ----------------------------------------------------------


def test_every_write_declared_with_a_twin_has_one_and_nothing_else_does() -> None:
    declared = [op for op in declarations.operations() if op.safe]
    assert declared, "no write declares a twin"
    assert all(op.kind == "write" and op.scope == "session" for op in declared)
    assert sorted(safe.WRITE_FUNCTIONS) == sorted(op.name for op in declared)
    made = {
        name
        for name in safe.__all__
        if inspect.isfunction(getattr(safe, name))
        and str(inspect.signature(getattr(safe, name)).return_annotation).startswith("SafeResult[")
    }
    assert made == set(safe.WRITE_FUNCTIONS)
    for op in declarations.operations():
        if not op.safe:
            assert not hasattr(safe, op.name), f"{op.name} has no twin, yet safe has the name"
            continue
        twin = getattr(safe, op.name)
        returns = f"SafeResult[{op.signature.return_annotation}]"
        assert inspect.signature(twin) == op.signature.replace(return_annotation=returns)
        assert (twin.__name__, twin.__module__) == (op.name, "training_db.safe")
        assert twin.__doc__.startswith(f"Best-effort `training_db.{op.name}`")
        for argument in op.now:
            assert f"``{argument}``" in twin.__doc__, f"{op.name}: {argument} not described"


def test_the_modules_of_safe_import_one_way() -> None:
    """Each module imports only the modules before it in SAFE_MODULES (so no cycle), and the
    package's own __init__ is the only one importing them all."""
    on_disk = {path.stem for path in SAFE_PACKAGE.glob("*.py")} - {"__init__"}
    assert on_disk == set(SAFE_MODULES)
    for position, name in enumerate(SAFE_MODULES):
        tree = ast.parse((SAFE_PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "training_db.safe":
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "training_db.safe."
            ):
                imported.add((node.module or "").rsplit(".", 1)[1])
        allowed = set(SAFE_MODULES[:position])
        assert imported <= allowed, f"safe/{name}.py imports {sorted(imported - allowed)}"


# --- a write declared outside safe gets a working twin -----------------------------------------


def note_run(
    session: Session, run_id: str, note: str, *, at: dt.datetime | None = None, history: Any = None
) -> int:
    """A write of the test's own: the tags ``note`` and ``noted_at``, and a history if given.

    Returns the number of history values stored.
    """
    noted_at = None if at is None else at.isoformat()
    tag_store.set_tags(session, run_id, {"note": note, "noted_at": noted_at})
    return 0 if history is None else history_store.log_history(session, run_id, history)


def stamp_run(session: Session, run_id: str) -> None:
    """A write of the test's own whose "now" only its replay function takes (as
    attach_crash_data): the tag ``stamped`` at the time of the call."""
    stamp_run_at(session, run_id, dt.datetime.now(UTC))


def stamp_run_at(session: Session, run_id: str, at: dt.datetime) -> None:
    """`stamp_run` with the time given: what a spooled call runs."""
    tag_store.set_tags(session, run_id, {"stamped": at.isoformat()})


@pytest.fixture
def family(monkeypatch: pytest.MonkeyPatch) -> type[Operations]:
    """Two writes declared in a family of the test's own, as a store module declares its
    own; the registry is restored afterwards, so no other test sees them."""
    monkeypatch.setattr(declarations, "_REGISTRY", dict(declarations._REGISTRY))

    class NoteOperations(Operations):
        note_run = write(note_run, idempotent=True, now={"at": ALWAYS}, history=("history",))
        stamp_run = write(stamp_run, idempotent=True, now={"at": ALWAYS}, replay=stamp_run_at)

    assert "note_run" not in safe.WRITE_FUNCTIONS  # declared after training_db.safe was made
    return NoteOperations


def family_twins(family: type[Operations]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The factory's twins of the family's two writes."""
    assert {operation("note_run"), operation("stamp_run")} <= set(vars(family).values())
    return twins.twin(operation("note_run")), twins.twin(operation("stamp_run"))


def test_a_twin_made_for_a_declared_write_has_its_signature_and_describes_its_now(
    family: type[Operations],
) -> None:
    note, stamp = family_twins(family)
    assert str(inspect.signature(note)) == (
        "(run_id: 'str', note: 'str', *, at: 'dt.datetime | None' = None,"
        " history: 'Any' = None) -> 'SafeResult[int]'"
    )
    assert note.__doc__ is not None and "``at`` defaults to the time of the call" in note.__doc__
    assert stamp.__doc__ is not None and "``at`` to ``stamp_run_at``" in stamp.__doc__
    with pytest.raises(TypeError, match="a twin needs a write"):
        twins.twin(operation("get_run"))


@pytest.mark.usefixtures("spool")
def test_a_declared_write_gets_a_twin_that_spools_and_replays(
    family: type[Operations], db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twins of the test's writes, made by the factory, on a real database: spooled while
    it is unreachable (the call time captured, the history as row dicts), replayed into it."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")  # the test's replay, not the worker's
    # TrainingDB with the family among its bases, as a new family is added to it.
    note_db: Any = type("NoteDB", (TrainingDB, family), {})
    database = note_db(db_url)
    database.insert_run("run-1", None, {})
    note, stamp = family_twins(family)

    unreachable = training_db.api._default = note_db(CLOSED_PORT_URL)
    before = dt.datetime.now(UTC)
    columns = {"loss": [1.0, math.nan, 0.5]}  # columns: NaN = not logged
    assert note("run-1", "down", history=columns).status == "spooled"
    assert stamp("run-1").status == "spooled"
    after = dt.datetime.now(UTC)
    assert note("run-1").status == "dropped"  # does not bind: dropped, not raised
    assert note("", "empty run id").status == "dropped"  # the run_id pre-check

    noted, stamped = spooled(safe.spool_dir())
    assert (noted.function, stamped.function) == ("note_run", "stamp_run")
    assert before <= noted.kwargs["at"] <= after
    assert before <= stamped.kwargs["at"] <= after
    assert noted.kwargs["history"] == [{"_step": 0, "loss": 1.0}, {"_step": 2, "loss": 0.5}]

    report = safe.replay(db=database)
    assert (report.applied, report.remaining, report.rejected) == (2, 0, [])
    assert database.get_tags("run-1") == {
        "note": "down",
        "noted_at": noted.kwargs["at"].isoformat(),
        "stamped": stamped.kwargs["at"].isoformat(),
    }
    assert database.get_history("run-1") == {"_step": [0, 2], "loss": [1.0, 0.5]}

    training_db.api._default = database  # the database answers: straight through
    unreachable.dispose()
    result = note("run-1", "up", history=[{"_step": 3, "loss": 0.25}])
    assert (result.status, result.value) == ("ok", 1)
    assert database.get_tags("run-1")["note"] == "up"


@pytest.mark.usefixtures("spool")
def test_the_checks_needing_no_database_apply_to_every_twin_by_argument_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad run id or status is dropped during an outage, in every twin that takes one
    (finish_run's status too, which used to wait in the spool for a replay to reject it)."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")  # the record stays in the spool
    training_db.configure(CLOSED_PORT_URL)
    assert safe.finish_run("run-1", "paused").status == "dropped"
    assert safe.update_run_status("run-1", "paused").status == "dropped"
    assert safe.delete_tag("", "key").status == "dropped"
    assert safe.finish_run("run-1", "failed").status == "spooled"
    assert [record.function for record in spooled(safe.spool_dir())] == ["finish_run"]
