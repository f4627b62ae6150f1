"""What the writer processes of the kill -9 tests run, and how their effects are checked.

Kept free of pytest so that a spawned process imports only this and ``training_db``. A writer
appends one line to its acknowledgement file (flushed and fsynced) only after a call has
returned, so every line is a promise the database must keep even if the process is killed
the instant after.

Each run goes through the same calls, and each call's effect can be recognised whole:

==================  ===========================================================================
call                effect (all of it, or none of it)
==================  ===========================================================================
insert_run          the run, with its config
update_run_status   status ``running``
insert_objective    objective ``obj_a`` (maximize), then ``obj_b``
log_history         50 steps of ``train/loss`` and ``train/grad_norm``: chunk 0 is steps 0-49,
                    chunk 1 steps 50-99
finish_run          status ``completed`` + a summary of `SUMMARY_KEYS` keys + values of
                    ``obj_a`` and ``obj_b`` + a new objective ``obj_c`` + history steps 100-149
==================  ===========================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from training_db import TrainingDB
from training_db.schema import TrainingRun
from training_db.store import history as history_store
from training_db.store import objectives, runs

CHUNK = 50
SUMMARY_KEYS = 150
HISTORY_KEYS = ("train/loss", "train/grad_norm")


def run_ids_for(worker: int, generation: int, number: int) -> str:
    return f"w{worker}-g{generation}-r{number}"


def _rows(first_step: int) -> list[dict[str, Any]]:
    return [
        {"_step": step, "train/loss": 1.0 / (step + 1), "train/grad_norm": float(step)}
        for step in range(first_step, first_step + CHUNK)
    ]


def summary_for(run_id: str) -> dict[str, Any]:
    summary: dict[str, Any] = {f"eval/metric_{index:03d}": index / 7 for index in range(147)}
    summary["objectives/obj_a_maximize/raw_mean"] = 0.75
    summary["objectives/obj_b/raw_mean"] = 0.25
    summary["objectives/obj_c_minimize/raw_mean"] = 0.5
    assert len(summary) == SUMMARY_KEYS
    return summary


def _acknowledge(fd: int, *fields: str) -> None:
    os.write(fd, (" ".join(fields) + "\n").encode())
    os.fsync(fd)


def write_until_killed(url: str, worker: int, generation: int, ack_path: str, ready: Any) -> None:
    """Loop over the write mix until SIGKILL; ``ready`` is set after the first acknowledged call."""
    database = TrainingDB(url)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    number = 0
    while True:
        run_id = run_ids_for(worker, generation, number)
        database.insert_run(run_id, None, {"training": {"seed": number}, "worker": worker})
        _acknowledge(fd, "insert_run", run_id)
        ready.set()
        database.update_run_status(run_id, "running")
        _acknowledge(fd, "running", run_id)
        database.insert_objective(run_id, "obj_a", "obj_a_maximize", direction="maximize")
        _acknowledge(fd, "objective", run_id, "obj_a")
        database.insert_objective(run_id, "obj_b", "obj_b")
        _acknowledge(fd, "objective", run_id, "obj_b")
        for chunk in (0, 1):
            database.log_history(run_id, _rows(chunk * CHUNK))
            _acknowledge(fd, "history", run_id, str(chunk))
        database.finish_run(
            run_id, "completed", summary=summary_for(run_id), history=_rows(2 * CHUNK)
        )
        _acknowledge(fd, "finish", run_id)
        number += 1


def read_acknowledged(ack_path: Path) -> list[list[str]]:
    """The complete lines of an acknowledgement file (a kill may cut the last one short)."""
    if not ack_path.exists():
        return []
    text = ack_path.read_text()
    lines = text.split("\n")[:-1]  # whatever follows the last newline was cut off
    return [line.split(" ") for line in lines]


def check_consistent(
    session: Session, known: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Every run's state, asserting that each call left all of its effect or none of it.

    Returns ``{run_id: {"status", "objectives", "chunks"}}`` for checking acknowledgements.
    Runs ``completed`` in ``known`` (an earlier result) are not read again: nothing writes to
    a run after its finish_run, so what was checked then still holds.
    """
    states: dict[str, dict[str, Any]] = {}
    run_ids = session.scalars(select(TrainingRun.run_id).where(TrainingRun.run_id.like("w%")))
    for run_id in run_ids:
        if known and known.get(run_id, {}).get("status") == "completed":
            states[run_id] = known[run_id]
            continue
        run = runs.get_run(session, run_id)
        assert run is not None
        assert run["config"] == {
            "training": {"seed": int(run_id.rsplit("-r", 1)[1])},
            "worker": int(run_id[1 : run_id.index("-")]),
        }, run_id
        found = {
            row["objective_name"]: row for row in objectives.get_run_objectives(session, run_id)
        }
        history = history_store.get_history(session, run_id, None, None, None)
        logged_steps = history.get("_step", [])
        chunks = set()
        for chunk in (0, 1, 2):
            steps = range(chunk * CHUNK, (chunk + 1) * CHUNK)
            values = {
                key: [
                    value
                    for step, value in zip(logged_steps, history.get(key, []), strict=True)
                    if step in steps and value is not None
                ]
                for key in HISTORY_KEYS
            }
            counts = {len(column) for column in values.values()}
            assert counts in ({0}, {CHUNK}), f"{run_id}: history chunk {chunk} in part: {counts}"
            if counts == {CHUNK}:
                chunks.add(chunk)
        finished = run["status"] == "completed"
        assert run["status"] in ("launched", "running", "completed"), run
        # finish_run: all of it or none of it
        assert (run["final_metrics"] is not None) == finished, run_id
        assert ("obj_c" in found) == finished, run_id
        assert (2 in chunks) == finished, run_id
        if finished:
            assert len(run["final_metrics"]) == SUMMARY_KEYS, run_id
            assert run["final_metrics"] == summary_for(run_id), run_id
            assert found["obj_a"]["raw_mean"] == 0.75 and found["obj_b"]["raw_mean"] == 0.25
            assert found["obj_c"]["raw_mean"] == 0.5, run_id
        else:
            assert all(row["raw_mean"] is None for row in found.values()), run_id
        states[run_id] = {"status": run["status"], "objectives": set(found), "chunks": chunks}
    return states


def check_acknowledged(acknowledged: list[list[str]], states: dict[str, dict[str, Any]]) -> None:
    """Every acknowledged call's effect is in the database."""
    order = {"launched": 0, "running": 1, "completed": 2}
    for kind, run_id, *rest in acknowledged:
        assert run_id in states, f"acknowledged {kind} of {run_id} lost: no such run"
        state = states[run_id]
        if kind == "running":
            assert order[state["status"]] >= 1, f"acknowledged running of {run_id} lost"
        elif kind == "objective":
            assert rest[0] in state["objectives"], f"acknowledged objective {rest} lost"
        elif kind == "history":
            assert int(rest[0]) in state["chunks"], f"acknowledged history {rest} lost"
        elif kind == "finish":
            assert state["status"] == "completed", f"acknowledged finish of {run_id} lost"
        else:
            assert kind == "insert_run", kind
