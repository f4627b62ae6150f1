"""kill -9 mid-write: nothing acknowledged is lost, nothing is left in part, writes go on.

Writer processes (spawn) loop over the real write mix (see ``tests/durability_workers.py``) and
record each call in a side file only after it returned. A supervisor SIGKILLs one of them at a
random moment (seeded), checks the database, and starts a replacement. The number of kills is
``TRAINING_DB_SOAK_KILLS`` (default 15); set it higher for a soak, e.g.
``TRAINING_DB_SOAK_KILLS=500 pytest tests/test_durability_kill.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL
from sqlalchemy.orm import Session

from tests import durability_workers as workers
from training_db import TrainingDB

SPAWN = multiprocessing.get_context("spawn")
WRITERS = 3
KILLS = int(os.environ.get("TRAINING_DB_SOAK_KILLS") or 15)
SEED = 11


def _snapshot_check(
    database: TrainingDB, backend: str, known: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Check every run in ONE consistent snapshot while the other writers keep writing."""
    engine = database.engine
    if backend == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as connection, connection.begin():
        # SQLite: the package's BEGIN + WAL give the whole read transaction one snapshot.
        return workers.check_consistent(Session(bind=connection), known)


def _integrity_check(url: URL) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.exec_driver_sql("PRAGMA integrity_check").scalars().all()
        assert result == ["ok"], result
    finally:
        engine.dispose()


def _acknowledged(acks: Path) -> list[list[str]]:
    return [line for path in sorted(acks.glob("*.ack")) for line in workers.read_acknowledged(path)]


def _start(url: str, worker: int, generation: int, acks: Path) -> tuple[Any, Any]:
    ready = SPAWN.Event()
    path = acks / f"w{worker}-g{generation}.ack"
    process = SPAWN.Process(
        target=workers.write_until_killed, args=(url, worker, generation, str(path), ready)
    )
    process.start()
    return process, ready


def test_kill_9_mid_write_loses_nothing_acknowledged(
    db_url: URL, backend: str, tmp_path: Path
) -> None:
    url = db_url.render_as_string(hide_password=False)
    acks = tmp_path / "acks"
    acks.mkdir()
    rng = random.Random(SEED)
    generations = dict.fromkeys(range(WRITERS), 0)
    running = {worker: _start(url, worker, 0, acks) for worker in range(WRITERS)}
    database = TrainingDB(db_url)
    started = time.monotonic()
    kills = 0
    states: dict[str, dict[str, Any]] = {}
    try:
        for kills in range(1, KILLS + 1):
            victim = rng.randrange(WRITERS)
            process, ready = running[victim]
            assert ready.wait(timeout=60), f"writer {victim} never acknowledged a call"
            time.sleep(rng.uniform(0.05, 0.5))
            assert process.is_alive(), f"writer {victim} died on its own: {process.exitcode}"
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=30)
            assert process.exitcode == -signal.SIGKILL
            generations[victim] += 1
            running[victim] = _start(url, victim, generations[victim], acks)

            if backend == "sqlite":
                _integrity_check(db_url)
            # acknowledgements first: each was written after its commit, so the snapshot
            # taken next must contain every one of them
            acknowledged = _acknowledged(acks)
            states = _snapshot_check(database, backend, states)
            workers.check_acknowledged(acknowledged, states)
            database.insert_run(f"probe-{kills}", None, {})  # the database still takes writes
            assert database.get_run(f"probe-{kills}") is not None
    finally:
        for process, _ in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=30)
        database.dispose()

    final = TrainingDB(db_url)
    try:
        acknowledged = _acknowledged(acks)
        states = _snapshot_check(final, backend)
        workers.check_acknowledged(acknowledged, states)
        finished = sum(1 for line in acknowledged if line[0] == "finish")
    finally:
        final.dispose()
    if backend == "sqlite":
        _integrity_check(db_url)
    elapsed = time.monotonic() - started
    print(
        f"\n[{backend}] kills survived: {kills}, calls acknowledged: {len(acknowledged)}"
        f" ({finished} finish_run), calls lost: 0, runs: {len(states)}, {elapsed:.1f} s"
    )
    assert kills == KILLS
    assert finished > 0, "no finish_run was ever acknowledged: the mix was not exercised"
