"""History: lossless round trips of sparse histories in every input shape, on both backends."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import URL

from tests.conftest import table_snapshot
from training_db import RunNotFoundError, TrainingDB, UnknownNameError
from training_db.store.history import (
    decode_series,
    decode_steps,
    encode_series,
    encode_steps,
    normalize_history,
    to_columns,
)
from training_db.store.history.codec import value_kind

NAN = float("nan")


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN; an int stored in a float series equals its float."""
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and (isinstance(a, float) or isinstance(b, float))
    ):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def sparse_columns(seed: int, keys: int = 12, steps: int = 50) -> dict[str, list[Any]]:
    """A W&B-like columns dict: sparse keys (NaN where not logged), a loss that logs NaN."""
    rng = random.Random(seed)
    columns: dict[str, list[Any]] = {"_step": list(range(0, steps * 10, 10))}
    for index in range(keys):
        every = rng.choice([1, 1, 2, 5])
        columns[f"layer_{index}/grad_norm"] = [
            rng.uniform(0, 3) if step % every == 0 and rng.random() > 0.1 else NAN
            for step in range(steps)
        ]
    columns["train/loss"] = [1.0 / (1 + step) for step in range(steps)]
    columns["epoch"] = [step // 10 for step in range(steps)]
    return columns


@pytest.fixture
def run(db: TrainingDB) -> str:
    db.insert_run("hist-run", None, {"training": {"batch_size": 8}})
    return "hist-run"


# --- the codec, without a database ------------------------------------------------------------


@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), unique=True))
def test_steps_round_trip(steps: list[int]) -> None:
    ordered = sorted(steps)
    assert decode_steps(encode_steps(ordered)) == ordered


@given(
    st.dictionaries(
        st.integers(min_value=0, max_value=10**9),
        st.one_of(st.floats(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        min_size=1,
    )
)
def test_numeric_series_round_trip_bit_for_bit(points: dict[int, Any]) -> None:
    encoded = encode_series(points)
    decoded = decode_series(encoded.kind, encoded.step_data, encoded.value_data, encoded.value_json)
    assert decoded.keys() == points.keys()
    assert all(same(float(decoded[k]), float(points[k])) for k in points)
    if encoded.kind == "int":
        assert all(type(decoded[k]) is int for k in points)


def test_value_kinds() -> None:
    assert value_kind([1, 2, 3]) == "int"
    assert value_kind([1, 2.5]) == "float"
    assert value_kind([True, 1]) == "json"
    assert value_kind(["a", 1.0]) == "json"
    assert value_kind([2**70]) == "json"
    assert value_kind([2**60, 0.5]) == "json"  # not exact as a float64


def test_regular_steps_are_tiny() -> None:
    assert len(encode_steps(list(range(0, 10_000)))) < 100


def test_shapes_agree() -> None:
    columns = {"_step": [0, 1, 2], "loss": [0.5, NAN, 0.3], "note": ["a", None, "c"]}
    rows = [
        {"_step": 0, "loss": 0.5, "note": "a"},
        {"_step": 1},
        {"_step": 2, "loss": 0.3, "note": "c"},
    ]
    assert normalize_history(columns) == normalize_history(rows)
    assert normalize_history(columns) == {"loss": {0: 0.5, 2: 0.3}, "note": {0: "a", 2: "c"}}


def test_columns_without_step_use_positions() -> None:
    assert normalize_history({"loss": [0.5, 0.4]}) == {"loss": {0: 0.5, 1: 0.4}}


def test_rows_keep_a_logged_nan() -> None:
    series = normalize_history([{"_step": 3, "train/loss": NAN, "lr": None}])
    assert math.isnan(series["train/loss"][3])
    assert "lr" not in series


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"a": [1, 2], "b": [1]}, "same length"),
        ({"a": [1], "_step": [0.5]}, "whole number"),
        ([{"_step": "x", "a": 1}], "whole number"),
        ([1, 2], "must be a dict"),
        (42, "history must be"),
        ({"a": [object()]}, r"history\['a'\]\[0\]"),
        ([{"": 1}], "non-empty strings"),
    ],
)
def test_bad_history_shapes(history: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_history(history)


def test_dataframe_input_matches_columns() -> None:
    pd = pytest.importorskip("pandas")
    columns = sparse_columns(1, keys=3, steps=20)
    frame = pd.DataFrame(columns)
    assert normalize_history(frame) == normalize_history(columns)


# --- through the database ---------------------------------------------------------------------


def test_round_trip_columns(db: TrainingDB, run: str) -> None:
    columns = sparse_columns(7)
    db.log_history(run, columns)
    stored = db.get_history(run)
    expected = to_columns(normalize_history(columns))
    assert same(stored, expected)
    # sparse: steps where a key was not logged come back as None, not as a number
    assert None in stored["layer_0/grad_norm"] or all(
        not math.isnan(v) for v in columns["layer_0/grad_norm"]
    )
    assert stored["epoch"][:3] == [0, 0, 0]
    assert type(stored["epoch"][0]) is int


def test_logged_nan_and_infinity_survive(db: TrainingDB, run: str) -> None:
    db.log_history(
        run,
        [
            {"_step": 0, "train/loss": 1.0},
            {"_step": 1, "train/loss": NAN, "best": math.inf},
            {"_step": 2, "worst": -math.inf},
        ],
    )
    history = db.get_history(run)
    assert history["_step"] == [0, 1, 2]
    assert history["train/loss"][0] == 1.0
    assert math.isnan(history["train/loss"][1])
    assert history["train/loss"][2] is None  # not logged ≠ logged NaN
    assert history["best"] == [None, math.inf, None]
    assert history["worst"] == [None, None, -math.inf]


def test_non_numeric_values(db: TrainingDB, run: str) -> None:
    rows = [
        {"_step": 0, "media/table": {"_type": "table", "rows": [[1, "ü"]]}, "flag": True},
        {"_step": 5, "media/table": "see artifact", "flag": False, "big": 2**70},
    ]
    db.log_history(run, rows)
    history = db.get_history(run)
    assert history["media/table"] == [{"_type": "table", "rows": [[1, "ü"]]}, "see artifact"]
    assert history["flag"] == [True, False]
    assert history["big"] == [None, 2**70]


def test_incremental_logging_equals_one_shot(db: TrainingDB, run: str) -> None:
    columns = sparse_columns(3, keys=5, steps=40)
    db.insert_run("one-shot", None, {})
    db.log_history("one-shot", columns)
    for start in range(0, 40, 7):
        chunk = {key: values[start : start + 7] for key, values in columns.items()}
        db.log_history(run, chunk)
    assert same(db.get_history(run), db.get_history("one-shot"))


def test_relogging_a_step_replaces_it(db: TrainingDB, run: str) -> None:
    db.log_history(run, {"_step": [0, 1], "loss": [0.5, 0.4]})
    db.log_history(run, {"_step": 1, "loss": 0.35})
    assert db.get_history(run)["loss"] == [0.5, 0.35]


def test_get_history_selects_keys_and_steps(db: TrainingDB, run: str) -> None:
    db.log_history(run, sparse_columns(5, keys=4, steps=30))
    one = db.get_history(run, keys=["train/loss"], min_step=100, max_step=150)
    assert list(one) == ["_step", "train/loss"]
    assert one["_step"] == [100, 110, 120, 130, 140, 150]
    assert one["train/loss"] == pytest.approx([1 / 11, 1 / 12, 1 / 13, 1 / 14, 1 / 15, 1 / 16])
    # A key no run has logged is a mistake, no longer an empty answer (test_did_you_mean.py).
    with pytest.raises(UnknownNameError, match="'nope'"):
        db.get_history(run, keys=["nope"])


def test_history_json_is_seed_compatible(db: TrainingDB, run: str) -> None:
    assert db.get_run(run)["history_json"] is None  # type: ignore[index]
    columns = sparse_columns(11, keys=3, steps=10)
    db.update_run_status(run, "completed", history_json=columns)
    loaded = json.loads(db.get_run(run)["history_json"])  # type: ignore[index]
    assert loaded["_step"] == columns["_step"]
    assert loaded["train/loss"] == pytest.approx(columns["train/loss"])
    (listed,) = db.query_runs({"run_id": run})
    assert json.loads(listed["history_json"]) == loaded


def test_query_runs_does_not_load_history(db: TrainingDB, run: str) -> None:
    db.log_history(run, sparse_columns(2, keys=3, steps=10))
    (listed,) = db.query_runs({"run_id": run})
    assert "history_json" not in dict.keys(listed)  # loaded on access only
    assert listed["history_json"] is not None
    assert "history_json" in listed


def test_key_metrics_are_filled(db: TrainingDB, db_url: URL, run: str) -> None:
    db.log_history(
        run,
        [
            {
                "_step": 10,
                "train/loss": 0.9,
                "train/grad_norm": 2.0,
                "lr": 1e-4,
                "_timestamp": 1.7e9,
                "objectives/COMT_activity_maximize/raw_mean": 0.5,
            },
            {"_step": 50, "loss": 1.2, "objectives/COMT_activity_maximize/raw_mean": 0.6},
            {"_step": 60, "unrelated": 1.0},
        ],
    )
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT step, loss, grad_norm, learning_rate FROM run_history_key_metrics "
                "WHERE run_id = :run ORDER BY step"
            ),
            {"run": run},
        ).all()
        # the seed's question as SQL, on both backends
        rising = connection.execute(
            sa.text(
                "SELECT a.run_id FROM run_history_key_metrics a JOIN run_history_key_metrics b "
                "ON a.run_id = b.run_id WHERE a.step = 50 AND b.step = 10 AND a.loss > b.loss"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [(10, 0.9, 2.0, 1e-4), (50, 1.2, None, None)]
    assert [row[0] for row in rising] == [run]


def test_history_errors_write_nothing(db: TrainingDB, db_url: URL, run: str) -> None:
    db.log_history(run, {"loss": [1.0]})
    before = table_snapshot(db_url)
    with pytest.raises(RunNotFoundError):
        db.log_history("ghost", {"loss": [1.0]})
    with pytest.raises(ValueError, match="same length"):
        db.log_history(run, {"loss": [1.0, 2.0], "acc": [1.0]})
    with pytest.raises(ValueError, match="not valid Unicode"):
        db.log_history(run, [{"_step": 9, "loss": 0.1, "note": "\ud800"}])
    assert table_snapshot(db_url) == before
    assert db.get_history(run)["loss"] == [1.0]


def test_deleting_a_run_deletes_its_history(db: TrainingDB, db_url: URL, run: str) -> None:
    db.log_history(run, {"loss": [1.0, 0.5], "train/loss": [1.0, 0.5]})
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.execute(sa.text("DELETE FROM training_runs WHERE run_id = :r"), {"r": run})
        left = connection.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM run_history) + "
                "(SELECT count(*) FROM run_history_key_metrics)"
            )
        ).scalar()
    engine.dispose()
    assert left == 0


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["train/loss", "acc", "text", "lr"]),
            st.one_of(st.floats(), st.integers(-1000, 1000), st.text(max_size=5)),
        ),
        max_size=15,
    )
)
def test_random_sparse_histories_round_trip(db: TrainingDB, rows: list[dict[str, Any]]) -> None:
    db.insert_run("prop", None, {})
    try:
        db.log_history("prop", rows)
        expected = to_columns(normalize_history(rows))
        assert same(db.get_history("prop"), expected)
    finally:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM run_history_key_metrics")
            connection.exec_driver_sql("DELETE FROM run_history")
            connection.exec_driver_sql("DELETE FROM training_runs")
