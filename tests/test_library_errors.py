"""Bad input is the library's error, never a third-party exception, on both backends.

Each case here once escaped as ``OverflowError``, ``RecursionError``, ``struct.error`` or
``sqlalchemy.exc.StatementError`` (issue 16). Every bad argument is an
``InvalidArgumentError`` (a ``TrainingDBError`` and a ``ValueError``) naming the argument,
and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL
from sqlalchemy.orm import Session

from tests.conftest import table_snapshot
from training_db import InvalidArgumentError, TrainingDB, TrainingDBError
from training_db.core.errors import translated_errors
from training_db.core.jsoncodec import MAX_DEPTH
from training_db.schema import TrainingRun

PLUS_FIVE = dt.timezone(dt.timedelta(hours=5))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))


def nested(levels: int) -> dict[str, Any]:
    """``levels`` dicts, each the only value of the one around it."""
    return functools.reduce(lambda inner, _: {"a": inner}, range(levels - 1), {"leaf": 1})


def assert_invalid(
    database: TrainingDB, url: URL, call: Callable[[], object], *names: str
) -> InvalidArgumentError:
    """The call raises InvalidArgumentError naming ``names`` and changes no row."""
    before = table_snapshot(url)
    with pytest.raises(InvalidArgumentError) as raised:
        call()
    message = str(raised.value)
    for name in names:
        assert name in message, message
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TrainingDBError)
    assert table_snapshot(url) == before
    return raised.value


@pytest.fixture
def seeded(db: TrainingDB) -> TrainingDB:
    db.insert_run("r", None, {"seed": 1})
    db.update_run_status("r", "running")
    return db


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("created_at", "0001-01-01T00:00:00+05:00"),
        ("created_at", dt.datetime(1, 1, 1, tzinfo=PLUS_FIVE)),
        ("started_at", "9999-12-31T23:00:00-05:00"),
        ("ended_at", dt.datetime(9999, 12, 31, 23, tzinfo=MINUS_FIVE)),
        ("at", "0001-01-01T01:00:00+05:00"),
    ],
)
def test_timestamps_outside_years_1_to_9999_in_utc(
    seeded: TrainingDB, db_url: URL, argument: str, value: object
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "created_at": lambda: seeded.insert_run("new", None, {}, created_at=value),  # type: ignore[arg-type]
        "started_at": lambda: seeded.update_run_status("r", "running", started_at=value),  # type: ignore[arg-type]
        "ended_at": lambda: seeded.finish_run("r", ended_at=value),  # type: ignore[arg-type]
        "at": lambda: seeded.heartbeat("r", at=value),  # type: ignore[arg-type]
    }
    error = assert_invalid(seeded, db_url, calls[argument], argument, "out of range")
    assert not isinstance(error.__cause__, OverflowError) or error.__suppress_context__


def test_documents_deeper_than_the_limit_are_refused_before_recursing(
    seeded: TrainingDB, db_url: URL
) -> None:
    too_deep = nested(MAX_DEPTH + 1)
    looped: dict[str, Any] = {}
    looped["self"] = looped  # would recurse for ever
    for call, name in [
        (lambda: seeded.insert_run("deep", None, too_deep), "config_dict"),
        (lambda: seeded.insert_run("loop", None, looped), "config_dict"),
        (lambda: seeded.set_tags("r", {"deep": too_deep}), "tags.deep"),
        (lambda: seeded.finish_run("r", summary={"deep": too_deep}), "summary"),
        (lambda: seeded.log_history("r", [{"_step": 1, "deep": too_deep}]), "history"),
        (lambda: seeded.update_run_status("r", "running", final_metrics_json=looped), "final"),
    ]:
        assert_invalid(seeded, db_url, call, name, f"deeper than {MAX_DEPTH} levels")


def test_documents_at_the_depth_limit_are_stored_whole(seeded: TrainingDB) -> None:
    deepest = nested(MAX_DEPTH)
    seeded.insert_run("deepest", None, deepest)
    stored = seeded.get_run("deepest")
    assert stored is not None and stored["config"] == deepest
    assert [run["run_id"] for run in seeded.query_runs({"run_id": "deepest"})] == ["deepest"]


def test_history_steps_at_both_ends_of_64_bits_come_back_exactly(seeded: TrainingDB) -> None:
    """Far-apart steps once overflowed the step encoding (struct.error)."""
    # From -1 to 2**63 - 1 is 2**63: more than a signed 64-bit difference can hold.
    steps = [-(2**63), -1, 2**63 - 1]
    seeded.log_history(
        "r", [{"_step": step, "x": float(index)} for index, step in enumerate(steps)]
    )
    seeded.log_history("r", [{"_step": -5, "x": -5.0}])  # merged into the stored series
    history = seeded.get_history("r", ["x"])
    assert history["_step"] == sorted([*steps, -5])
    assert dict(zip(history["_step"], history["x"], strict=True))[2**63 - 1] == 2.0
    assert seeded.get_history("r", ["x"], min_step=2**62)["_step"] == [2**63 - 1]


@pytest.mark.parametrize("step", [2**63, -(2**63) - 1, 10**30])
def test_history_steps_beyond_64_bits_are_invalid(
    seeded: TrainingDB, db_url: URL, step: int
) -> None:
    assert_invalid(
        seeded, db_url, lambda: seeded.log_history("r", {"_step": [step], "x": [1.0]}), "64 bits"
    )


def test_a_value_no_column_type_can_bind_is_an_invalid_argument(db: TrainingDB) -> None:
    """The last line of defence in `translated_errors`: a value a column type refuses when
    the statement is built (a string for a timestamp) is a bad argument, not an outage."""
    with (
        Session(db.engine) as session,
        pytest.raises(InvalidArgumentError) as raised,
        translated_errors(),
    ):
        session.execute(sa.select(TrainingRun).where(TrainingRun.created_at > "yesterday"))
    assert "expected a datetime" in str(raised.value)
    assert isinstance(raised.value.__cause__, sa.exc.StatementError)


def test_a_wandb_summary_object_is_a_summary(seeded: TrainingDB, tmp_path: Path) -> None:
    """``wandb.run.summary`` itself (not a dict, nested values not dicts either) is accepted
    by ``finish_run`` and ``final_metrics_json=``. The seeds' ``summary._json_dict`` raises
    KeyError on current wandb releases, before this package is even called."""
    wandb = pytest.importorskip("wandb")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="mangodb-tests")
    try:
        run.summary["train/loss"] = 0.25
        run.summary["_step"] = 99
        run.summary["objectives/COMT_activity_maximize/raw_mean"] = 0.8
        run.summary["eval"] = {"accuracy": {"top1": 0.5}}
        summary = run.summary
        assert type(summary).__name__ == "Summary"
        with pytest.raises(KeyError):
            _ = summary._json_dict
        expected = {
            "train/loss": 0.25,
            "_step": 99,
            "objectives/COMT_activity_maximize/raw_mean": 0.8,
            "eval": {"accuracy": {"top1": 0.5}},
        }
        seeded.update_run_status("r", "running", final_metrics_json=summary)
        stored = seeded.get_run("r")
        assert stored is not None and stored["final_metrics"] == expected
        seeded.finish_run("r", "completed", summary)
        stored = seeded.get_run("r")
        assert stored is not None
        assert stored["final_metrics"] == expected
        assert (stored["final_loss"], stored["total_training_steps"]) == (0.25, 99)
        (objective,) = seeded.get_run_objectives("r")
        assert (objective["objective_name"], objective["raw_mean"]) == ("COMT_activity", 0.8)
    finally:
        run.finish()


def test_things_that_are_not_dict_like_are_still_refused(seeded: TrainingDB, db_url: URL) -> None:
    for value in ([("train/loss", 0.5)], "train/loss=0.5", 3, {1, 2}):
        assert_invalid(
            seeded,
            db_url,
            lambda value=value: seeded.finish_run("r", summary=value),  # type: ignore[misc]
            "summary must be a dict",
        )


def test_ints_no_float_can_hold_leave_float_columns_empty(seeded: TrainingDB) -> None:
    """A summary's ``train/loss`` of 10**400 cannot be a float column: the column stays
    NULL (as for any unconvertible summary value) and the document keeps the int exactly."""
    huge = 10**400
    seeded.finish_run("r", summary={"train/loss": huge, "_runtime": huge, "_step": 5})
    stored = seeded.get_run("r")
    assert stored is not None
    assert (stored["final_loss"], stored["total_training_steps"]) == (None, 5)
    assert stored["final_metrics"]["train/loss"] == huge
    seeded.log_history("r", [{"_step": 1, "train/loss": huge, "train/grad_norm": 0.5}])
    assert seeded.get_history("r", ["train/loss"])["train/loss"] == [huge]
    with seeded.engine.connect() as connection:
        loss, grad_norm = connection.execute(
            sa.text("SELECT loss, grad_norm FROM run_history_key_metrics WHERE step = 1")
        ).one()
    assert (loss, grad_norm) == (None, 0.5)
    assert_invalid(
        seeded,
        seeded.url,
        lambda: seeded.update_run_status("r", "running", final_loss=huge),
        "final_loss",
        "out of range",
    )


# --- values and filters beyond a database limit ------------------------------------------------

# Random letters and digits: no compression brings them under PostgreSQL's index row limit.
INCOMPRESSIBLE = "".join(
    random.Random(20261202).choices(string.ascii_letters + string.digits, k=5000)
)


def test_an_indexed_value_too_large_for_postgresql_is_a_bad_argument(
    seeded: TrainingDB, db_url: URL
) -> None:
    """PostgreSQL cannot index a 5,000-character host (its limit is ~2.7 kB): the same call
    fails however often it is retried, so it is InvalidArgumentError, never "unavailable".
    SQLite has no such limit and stores the value whole."""
    if db_url.get_backend_name() == "postgresql":
        error = assert_invalid(
            seeded, db_url, lambda: seeded.insert_run("big", None, {}, host=INCOMPRESSIBLE), "index"
        )
        assert "too large for the database" in str(error)
        assert_invalid(
            seeded, db_url, lambda: seeded.log_history("r", {INCOMPRESSIBLE: [1.0]}), "too large"
        )
    else:
        seeded.insert_run("big", None, {}, host=INCOMPRESSIBLE)
        assert seeded.get_run("big")["host"] == INCOMPRESSIBLE  # type: ignore[index]
