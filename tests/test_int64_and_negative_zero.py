"""64-bit integers and -0.0 survive, on both backends.

Integer columns hold any value that fits in 64 bits. A whole number beyond 64 bits leaves its
column NULL and stays exact in the run's JSON document. A float column keeps the sign of
-0.0 on PostgreSQL. SQLite's REAL storage cannot (it stores an integral real as an integer),
which is the one documented exception: there, the JSON documents keep -0.0.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import URL

from training_db import InvalidArgumentError, TrainingDB
from training_db.schema.extraction import EXTRACTED_COLUMNS

INT_COLUMNS = [name for name, spec in EXTRACTED_COLUMNS.items() if spec.kind is int]
BEYOND_64_BITS = [2**63, -(2**63) - 1, 2**70, -(10**30)]
WITHIN_64_BITS = [2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63)]


def is_negative_zero(value: Any) -> bool:
    return value == 0.0 and math.copysign(1.0, value) < 0


def on_postgresql(db: TrainingDB) -> bool:
    return db.engine.dialect.name == "postgresql"


def stored_config(db: TrainingDB, run_id: str) -> Any:
    run = db.get_run(run_id)
    assert run is not None
    return run["config"]


# --- integers from the config -----------------------------------------------------------------


@pytest.mark.parametrize("seed", WITHIN_64_BITS)
def test_a_seed_that_fits_in_64_bits_is_stored_exactly(db: TrainingDB, seed: int) -> None:
    db.insert_run("r", None, {"seed": seed})
    run = db.get_run("r")
    assert run is not None
    assert run["seed"] == seed
    assert run["config"] == {"seed": seed}


@pytest.mark.parametrize("seed", BEYOND_64_BITS)
def test_a_seed_beyond_64_bits_leaves_the_column_empty(db: TrainingDB, seed: int) -> None:
    db.insert_run("r", None, {"seed": seed, "training": {"batch_size": 8}})
    run = db.get_run("r")
    assert run is not None
    assert run["seed"] is None
    assert run["batch_size"] == 8  # the rest of the run is recorded
    assert run["config"] == {"seed": seed, "training": {"batch_size": 8}}
    assert json.loads(run["config_json"])["seed"] == seed  # exact, not a float


def test_every_integer_extracted_column_holds_64_bits(db: TrainingDB) -> None:
    config = {
        EXTRACTED_COLUMNS[name].keys[0]: 2**62 + index for index, name in enumerate(INT_COLUMNS)
    }
    db.insert_run("r", None, config)
    run = db.get_run("r")
    assert run is not None
    assert {name: run[name] for name in INT_COLUMNS} == {
        name: 2**62 + index for index, name in enumerate(INT_COLUMNS)
    }


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("9007199254740993", 9007199254740993),  # 2**53 + 1: a float would drop the last digit
        ("-9223372036854775808", -(2**63)),
        ("9223372036854775808", None),  # 2**63 as text: beyond 64 bits
        ("1e3", 1000),
        (1e19, None),  # a whole float beyond 64 bits
    ],
)
def test_integers_given_as_text_or_floats(db: TrainingDB, value: Any, column: int | None) -> None:
    db.insert_run("r", None, {"seed": value})
    run = db.get_run("r")
    assert run is not None
    assert run["seed"] == column
    assert run["config"] == {"seed": value}


def test_an_int_beyond_float_range_for_a_float_column_leaves_it_empty(db: TrainingDB) -> None:
    huge = 10**400
    db.insert_run("r", None, {"learning_rate": huge, "seed": 3})
    run = db.get_run("r")
    assert run is not None
    assert (run["learning_rate"], run["seed"]) == (None, 3)
    assert stored_config(db, "r") == {"learning_rate": huge, "seed": 3}


# --- total_training_steps ---------------------------------------------------------------------


@pytest.mark.parametrize("step", [2**31, 2**53 + 1, 2**63 - 1])
def test_a_summary_step_within_64_bits_fills_total_training_steps(
    db: TrainingDB, step: int
) -> None:
    db.insert_run("finished", None, None)
    db.finish_run("finished", "completed", {"_step": step})
    db.insert_run("updated", None, None)
    db.update_run_status("updated", "completed", final_metrics_json={"_step": step})
    for run_id in ("finished", "updated"):
        run = db.get_run(run_id)
        assert run is not None
        assert run["total_training_steps"] == step
        assert run["final_metrics"] == {"_step": step}


@pytest.mark.parametrize("step", BEYOND_64_BITS)
def test_a_summary_step_beyond_64_bits_leaves_total_training_steps_empty(
    db: TrainingDB, step: int
) -> None:
    summary = {"_step": step, "train/loss": 0.5}
    db.insert_run("finished", None, None)
    db.finish_run("finished", "completed", summary)
    db.insert_run("updated", None, None)
    db.update_run_status("updated", "completed", final_metrics_json=summary)
    for run_id in ("finished", "updated"):
        run = db.get_run(run_id)
        assert run is not None
        assert (run["status"], run["total_training_steps"], run["final_loss"]) == (
            "completed",
            None,
            0.5,
        )
        assert run["final_metrics"] == summary
        assert json.loads(run["final_metrics_json"])["_step"] == step


@pytest.mark.parametrize("steps", [2**31, 2**53 + 1, np.int64(2**62 + 1)])
def test_an_explicit_total_training_steps_is_stored_exactly(db: TrainingDB, steps: Any) -> None:
    db.insert_run("r", None, None)
    db.update_run_status("r", "completed", total_training_steps=steps)
    run = db.get_run("r")
    assert run is not None and run["total_training_steps"] == int(steps)


@pytest.mark.parametrize("steps", [2**63, -(2**63) - 1, 2**70, 1e19])
def test_an_explicit_total_training_steps_beyond_64_bits_is_a_bad_argument(
    db: TrainingDB, steps: Any
) -> None:
    db.insert_run("r", None, None)
    with pytest.raises(InvalidArgumentError, match=r"total_training_steps must fit in 64 bits"):
        db.update_run_status("r", "completed", total_training_steps=steps)
    run = db.get_run("r")
    assert run is not None
    assert (run["status"], run["total_training_steps"]) == ("launched", None)


# --- -0.0 in float columns --------------------------------------------------------------------


def check_float_column(db: TrainingDB, value: Any) -> None:
    """-0.0 on PostgreSQL; on SQLite (the documented exception) at least zero."""
    if on_postgresql(db):
        assert is_negative_zero(value), value
    else:
        assert value == 0.0


def test_objective_metric_negative_zero(db: TrainingDB) -> None:
    db.insert_run("r", None, None)
    db.update_objective_metric("r", "COMT", "raw_mean", -0.0)
    db.update_objective_metric("r", "COMT", "raw_std", 0.0)
    [objective] = db.get_run_objectives("r")
    check_float_column(db, objective["raw_mean"])
    assert objective["raw_std"] == 0.0 and math.copysign(1.0, objective["raw_std"]) > 0


def test_final_loss_negative_zero(db: TrainingDB) -> None:
    db.insert_run("r", None, None)
    db.update_run_status("r", "completed", final_loss=-0.0)
    run = db.get_run("r")
    assert run is not None
    check_float_column(db, run["final_loss"])


def test_summary_negative_zero_in_columns_and_kept_in_the_document(db: TrainingDB) -> None:
    db.insert_run("r", None, {"learning_rate": -0.0})
    db.finish_run("r", "completed", {"train/loss": -0.0, "objectives/COMT_maximize/raw_mean": -0.0})
    run = db.get_run("r")
    assert run is not None
    check_float_column(db, run["final_loss"])
    check_float_column(db, run["learning_rate"])
    check_float_column(db, db.get_run_objectives("r")[0]["raw_mean"])
    # The documents keep the sign on both backends.
    assert is_negative_zero(run["final_metrics"]["train/loss"])
    assert is_negative_zero(run["config"]["learning_rate"])
    assert json.loads(run["final_metrics_json"])["train/loss"] == 0.0
    assert run["final_metrics_json"].count("-0.0") == 2
    assert run["config_json"] == '{"learning_rate": -0.0}'


def key_metric_losses(url: URL, run_id: str) -> list[float | None]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    sa.text(
                        "SELECT loss FROM run_history_key_metrics WHERE run_id = :run_id "
                        "ORDER BY step"
                    ),
                    {"run_id": run_id},
                ).scalars()
            )
    finally:
        engine.dispose()


def test_history_negative_zero_in_the_key_metrics(db: TrainingDB, db_url: URL) -> None:
    """The key-metric rows are written in bulk (executemany): every value keeps its bits."""
    losses = [-0.0, 0.0, -1.5, float("inf"), float("-inf"), 2.5e-310, -0.0]
    db.insert_run("r", None, None)
    db.log_history("r", {"_step": list(range(len(losses))), "train/loss": losses})
    stored = key_metric_losses(db_url, "r")
    assert len(stored) == len(losses)
    for value, expected in zip(stored, losses, strict=True):
        assert value is not None
        if is_negative_zero(expected):
            check_float_column(db, value)
        elif expected == 0.0:
            assert value == 0.0 and math.copysign(1.0, value) > 0
        else:
            assert value == expected
    # the history itself stores float64 bits, so it keeps -0.0 on both backends
    history = db.get_history("r", keys=["train/loss"])
    assert [math.copysign(1.0, value) for value in history["train/loss"]] == [
        math.copysign(1.0, value) for value in losses
    ]


def test_history_logged_again_keeps_negative_zero(db: TrainingDB, db_url: URL) -> None:
    """A step logged again takes the upsert path."""
    db.insert_run("r", None, None)
    db.log_history("r", {"_step": [0, 1], "train/loss": [1.0, 2.0]})
    db.log_history("r", {"_step": [0, 1], "train/loss": [-0.0, 3.0]})
    first, second = key_metric_losses(db_url, "r")
    assert first is not None
    check_float_column(db, first)
    assert second == 3.0


def test_nan_and_infinities_still_work_in_float_columns(db: TrainingDB) -> None:
    db.insert_run("r", None, None)
    db.update_objective_metric("r", "COMT", "raw_mean", float("inf"))
    db.update_objective_metric("r", "COMT", "raw_std", float("-inf"))
    db.update_objective_metric("r", "COMT", "normalized_mean", float("nan"))
    db.update_objective_metric("r", "COMT", "normalized_std", -2.0)
    [objective] = db.get_run_objectives("r")
    assert (objective["raw_mean"], objective["raw_std"]) == (float("inf"), float("-inf"))
    assert (objective["normalized_mean"], objective["normalized_std"]) == (None, -2.0)


def test_a_negative_zero_threshold_compares_as_zero(db: TrainingDB) -> None:
    """The marked -0.0 is a float8 in any SQL position, not only in a VALUES list."""
    db.insert_run("zero", None, None)
    db.update_objective_metric("zero", "COMT", "raw_mean", 0.0)
    db.insert_run("below", None, None)
    db.update_objective_metric("below", "COMT", "raw_mean", -1.0)
    found = db.query_runs_by_objectives({"COMT": {"min": -0.0}})
    assert [run["run_id"] for run in found] == ["zero"]
