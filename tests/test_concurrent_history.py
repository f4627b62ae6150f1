"""Several processes writing the history of ONE run at once (the ranks of a distributed
trainer): every acknowledged point is stored, and no writer sees a duplicate error.

Real processes (spawn) on real databases; on PostgreSQL they really overlap, on SQLite the
file lock serialises them.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from sqlalchemy import URL

from training_db import TrainingDB

SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 3
APPENDS = 40
RUN_ID = "ranked-run"


def _append_disjoint_steps(url: str, process: int, start: Any, results: Any) -> None:
    """Append steps ``process, process + PROCESSES, ...`` of one metric, one call each."""
    database = TrainingDB(url)
    acknowledged: list[int] = []
    try:
        start.wait(timeout=60)
        for index in range(APPENDS):
            step = index * PROCESSES + process
            database.log_history(RUN_ID, {"_step": step, "train/loss": step / 7})
            acknowledged.append(step)
        results.put((process, acknowledged, None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((process, acknowledged, f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()


def _log_own_key_metric(url: str, process: int, start: Any, results: Any) -> None:
    """Each process logs a different key metric (and its own metric) at the same steps."""
    key = ("train/loss", "train/grad_norm", "train/learning_rate")[process]
    database = TrainingDB(url)
    acknowledged: list[int] = []
    try:
        start.wait(timeout=60)
        for step in range(APPENDS):
            database.log_history(RUN_ID, {"_step": step, key: step + process / 10})
            acknowledged.append(step)
        results.put((process, acknowledged, None))
    except Exception as exc:
        results.put((process, acknowledged, f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()


def _run_at_once(url: URL, target: Any) -> dict[int, tuple[list[int], str | None]]:
    text = url.render_as_string(hide_password=False)
    start = SPAWN.Event()
    results = SPAWN.Queue()
    workers = [
        SPAWN.Process(target=target, args=(text, process, start, results))
        for process in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = {}
    for _ in workers:
        process, acknowledged, error = results.get(timeout=300)
        outcomes[process] = (acknowledged, error)
    for worker in workers:
        worker.join(timeout=60)
    return outcomes


@pytest.mark.slow
def test_disjoint_appends_to_one_metric_keep_every_point(db_url: URL) -> None:
    database = TrainingDB(db_url)
    database.insert_run(RUN_ID, None, {})
    outcomes = _run_at_once(db_url, _append_disjoint_steps)

    assert {process: error for process, (_, error) in outcomes.items()} == dict.fromkeys(
        range(PROCESSES)
    )
    acknowledged = sorted(step for steps, _ in outcomes.values() for step in steps)
    assert len(acknowledged) == PROCESSES * APPENDS
    stored = database.get_history(RUN_ID, ["train/loss"])
    assert stored["_step"] == acknowledged
    assert stored["train/loss"] == [step / 7 for step in acknowledged]
    key_metrics = database.get_history(RUN_ID)  # the same points, read back whole
    assert key_metrics["_step"] == acknowledged
    database.dispose()


@pytest.mark.slow
def test_different_key_metrics_at_the_same_steps_all_land(db_url: URL) -> None:
    database = TrainingDB(db_url)
    database.insert_run(RUN_ID, None, {})
    outcomes = _run_at_once(db_url, _log_own_key_metric)

    assert {process: error for process, (_, error) in outcomes.items()} == dict.fromkeys(
        range(PROCESSES)
    )
    steps = list(range(APPENDS))
    history = database.get_history(RUN_ID)
    assert history["_step"] == steps
    assert history["train/loss"] == [step + 0.0 for step in steps]
    assert history["train/grad_norm"] == [step + 0.1 for step in steps]
    assert history["train/learning_rate"] == [step + 0.2 for step in steps]
    # The per-step key-metrics table has one row per step holding all three.
    with database.engine.connect() as connection:
        import sqlalchemy as sa

        from training_db.schema import RunHistoryKeyMetrics as K

        rows = connection.execute(
            sa.select(K.step, K.loss, K.grad_norm, K.learning_rate)
            .where(K.run_id == RUN_ID)
            .order_by(K.step)
        ).all()
    assert [tuple(row) for row in rows] == [
        (step, step + 0.0, step + 0.1, step + 0.2) for step in steps
    ]
    database.dispose()
