"""What the processes spawned by the multi-process tests run.

Kept apart from the test modules and free of pytest so that each spawned process imports
only this and ``training_db`` and starts quickly. Every entry point reports back on a queue
(an exception as text), because a spawned process's traceback does not reach pytest.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import training_db
from training_db import SchemaVersionError, TrainingDB


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def start_training(url: str, index: int, first_call: str, barrier: Any, results: Any) -> None:
    """A training script's start: bind the API, wait for the others, then use the database.

    Reports ``(index, log messages of Alembic and training_db.schema.migrations, error or None)``.
    """
    messages = _Messages()
    for name in ("alembic.runtime.migration", "training_db.schema.migrations"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(messages)
    try:
        training_db.configure(url)
        barrier.wait(timeout=60)
        if first_call == "init_db" or index % 2 == 0:
            training_db.init_db()
        # the odd ones' first call: the schema check creates the empty database itself
        training_db.insert_run(f"started-{index}", None, {"training": {"seed": index}})
        training_db.set_tags(f"started-{index}", {"process": index})
        results.put((index, messages.messages, None))
    except Exception as exc:
        where = "".join(traceback.format_exc().splitlines(keepends=True)[-12:])
        results.put((index, messages.messages, f"{type(exc).__name__}: {exc}\n{where}"))
    finally:
        training_db.get_db().dispose()


def first_use(url: str, results: Any) -> None:
    """Write once through a fresh TrainingDB; reports None, or the SchemaVersionError text."""
    database = TrainingDB(url)
    try:
        database.insert_run("from-another-process", None, {})
        results.put(None)
    except SchemaVersionError as exc:
        results.put(str(exc))
    except Exception as exc:
        results.put(f"unexpected {type(exc).__name__}: {exc}")
    finally:
        database.dispose()


def write_until_stopped(url: str, started: Any, stop: Any, results: Any) -> None:
    """A training process writing runs and history in a loop until ``stop`` is set.

    Sets ``started`` after its first few runs; reports ``(runs written, error or None)``.
    """
    database = TrainingDB(url)
    written = 0
    try:
        while not stop.is_set():
            run_id = f"busy-{written}"
            database.insert_run(run_id, None, {"training": {"batch_size": written}})
            database.log_history(
                run_id, [{"_step": step, "train/loss": 1 / (step + 1)} for step in range(50)]
            )
            database.finish_run(run_id, summary={"train/loss": 0.5, "_step": 49})
            written += 1
            if written == 5:
                started.set()
        results.put((written, None))
    except Exception as exc:
        started.set()
        results.put((written, f"{type(exc).__name__}: {exc}"))
    finally:
        database.dispose()
