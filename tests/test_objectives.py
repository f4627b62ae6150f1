"""Objectives on both backends: launch rows, final values, objective queries, statistics,
the comparison of gradient methods, and the atomic completion ``finish_run``."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL
from sqlalchemy.orm import Session

import training_db
from tests.conftest import table_snapshot
from training_db import (
    DuplicateError,
    ObjectiveAlreadyExistsError,
    RunNotFoundError,
    TrainingDB,
    UnknownNameError,
)
from training_db.schema import RunObjective, TrainingRun
from training_db.store import completion, objectives

UTC = dt.timezone.utc
Config = Callable[..., dict[str, Any]]
OBJECTIVE_COLUMNS = {column.key for column in RunObjective.__table__.columns}
ALL_METRICS = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")


def add_run(
    db: TrainingDB,
    run_id: str,
    *,
    method: str | None = "mgda",
    status: str = "completed",
    day: int = 1,
    directions: dict[str, str] | None = None,
    **raw_means: float | None,
) -> None:
    """A run of ``method`` created on 2026-01-``day``, with one objective per keyword."""
    training = {} if method is None else {"gradient_method": method}
    db.insert_run(
        run_id, None, {"training": training}, created_at=dt.datetime(2026, 1, day, tzinfo=UTC)
    )
    for name, value in raw_means.items():
        db.insert_objective(run_id, name, direction=(directions or {}).get(name))
        db.update_objective_metric(run_id, name, "raw_mean", value)
    if status != "launched":
        db.update_run_status(run_id, status)


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [run["run_id"] for run in found]


def objective_of(db: TrainingDB, run_id: str, name: str) -> dict[str, Any]:
    matches = [row for row in db.get_run_objectives(run_id) if row["objective_name"] == name]
    assert len(matches) == 1, f"{run_id} has {len(matches)} objectives named {name}"
    return matches[0]


# --- insert_objective / get_run_objectives -------------------------------------------------


def test_insert_objective_stores_every_field(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective(
        "run-1",
        "COMT_activity",
        objective_alias="COMT_activity_maximize",
        uniprot="P21964",
        weight=1.5,
        direction="maximize",
    )
    [row] = db.get_run_objectives("run-1")
    assert set(row) == OBJECTIVE_COLUMNS
    assert isinstance(row["id"], int)
    assert row["run_id"] == "run-1"
    assert row["objective_name"] == "COMT_activity"
    assert row["objective_alias"] == "COMT_activity_maximize"
    assert row["uniprot"] == "P21964"
    assert row["weight"] == 1.5
    assert row["direction"] == "maximize"
    assert all(row[metric] is None for metric in ALL_METRICS)


def test_insert_objective_with_only_a_name(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective("run-1", "QED")
    [row] = db.get_run_objectives("run-1")
    assert row["objective_name"] == "QED"
    for column in ("objective_alias", "uniprot", "weight", "direction", *ALL_METRICS):
        assert row[column] is None


def test_get_run_objectives_ordered_by_name_and_per_run(
    db: TrainingDB, make_config: Config
) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_run("run-2", None, make_config())
    for name in ("QED", "COMT_activity", "DRD5_activity"):
        db.insert_objective("run-1", name)
    db.insert_objective("run-2", "SA_score", direction="minimize")
    assert [row["objective_name"] for row in db.get_run_objectives("run-1")] == [
        "COMT_activity",
        "DRD5_activity",
        "QED",
    ]
    assert [row["objective_name"] for row in db.get_run_objectives("run-2")] == ["SA_score"]


def test_get_run_objectives_of_a_run_without_any(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    assert db.get_run_objectives("run-1") == []


def test_insert_objective_bumps_the_runs_updated_at(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    before = db.get_run("run-1")
    db.insert_objective("run-1", "QED")
    after = db.get_run("run-1")
    assert before is not None and after is not None
    assert after["updated_at_db"] > before["updated_at_db"]


def test_duplicate_objective_writes_nothing(
    db: TrainingDB, db_url: URL, make_config: Config
) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective("run-1", "COMT_activity", weight=1.0)
    before = table_snapshot(db_url)
    with pytest.raises(ObjectiveAlreadyExistsError, match="COMT_activity") as raised:
        db.insert_objective("run-1", "COMT_activity", weight=2.0)
    assert isinstance(raised.value, DuplicateError)
    assert table_snapshot(db_url) == before
    # The same name on another run is fine.
    db.insert_run("run-2", None, make_config())
    db.insert_objective("run-2", "COMT_activity")


def test_objective_name_of_255_characters_is_fine(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective("run-1", "o" * 255)
    assert db.get_run_objectives("run-1")[0]["objective_name"] == "o" * 255


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective_name": ""}, "objective_name must not be empty"),
        ({"objective_name": "   "}, "objective_name must not be empty"),
        ({"objective_name": "o" * 256}, "at most 255"),
        ({"objective_name": 7}, "objective_name must be a string"),
        ({"objective_name": None}, "objective_name must be a string"),
        ({"objective_name": "a\x00b"}, "NUL"),
        ({"direction": "up"}, "unknown direction 'up'; valid: maximize, minimize"),
        ({"direction": "MAXIMIZE"}, "valid: maximize, minimize"),
        ({"weight": "heavy"}, "weight must be a number"),
        ({"objective_alias": 3}, "objective_alias must be a string"),
        ({"uniprot": ["P1"]}, "uniprot must be a string"),
    ],
)
def test_bad_insert_objective_arguments_write_nothing(
    db: TrainingDB, db_url: URL, make_config: Config, kwargs: dict[str, Any], message: str
) -> None:
    db.insert_run("run-1", None, make_config())
    before = table_snapshot(db_url)
    arguments: dict[str, Any] = {"run_id": "run-1", "objective_name": "QED", **kwargs}
    with pytest.raises(ValueError, match=message):
        db.insert_objective(**arguments)
    assert table_snapshot(db_url) == before


# --- update_objective_metric -----------------------------------------------------------------


def test_update_objective_metric_fills_each_metric_type(
    db: TrainingDB, make_config: Config
) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective(
        "run-1", "COMT_activity", "COMT_activity_maximize", "P21964", 1.0, "maximize"
    )
    for index, metric in enumerate(ALL_METRICS):
        db.update_objective_metric("run-1", "COMT_activity", metric, 0.1 * (index + 1))
    row = objective_of(db, "run-1", "COMT_activity")
    assert row["raw_mean"] == pytest.approx(0.1)
    assert row["normalized_mean"] == pytest.approx(0.2)
    assert row["raw_std"] == pytest.approx(0.3)
    assert row["normalized_std"] == pytest.approx(0.4)
    # The launch configuration is untouched.
    assert row["objective_alias"] == "COMT_activity_maximize"
    assert row["uniprot"] == "P21964" and row["weight"] == 1.0 and row["direction"] == "maximize"


def test_update_objective_metric_creates_a_missing_objective(
    db: TrainingDB, make_config: Config
) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_objective_metric("run-1", "DRD5_activity", "normalized_mean", 0.7)
    db.update_objective_metric("run-1", "DRD5_activity", "raw_mean", 0.6)
    [row] = db.get_run_objectives("run-1")
    assert row["objective_name"] == "DRD5_activity"
    assert row["normalized_mean"] == 0.7 and row["raw_mean"] == 0.6
    assert row["direction"] is None and row["weight"] is None
    # A later launch-style insert is now a duplicate.
    with pytest.raises(ObjectiveAlreadyExistsError):
        db.insert_objective("run-1", "DRD5_activity")


def test_update_objective_metric_overwrites(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_objective_metric("run-1", "QED", "raw_mean", 0.5)
    db.update_objective_metric("run-1", "QED", "raw_mean", 0.25)
    assert objective_of(db, "run-1", "QED")["raw_mean"] == 0.25


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (float("nan"), None),
        (None, None),
        (float("inf"), math.inf),
        (float("-inf"), -math.inf),
        (3, 3.0),
        (-0.0, 0.0),
        (1e308, 1e308),
        (5e-324, 5e-324),
    ],
)
def test_update_objective_metric_values(
    db: TrainingDB, make_config: Config, value: Any, stored: float | None
) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_objective_metric("run-1", "QED", "raw_mean", 0.5)
    db.update_objective_metric("run-1", "QED", "raw_mean", value)
    assert objective_of(db, "run-1", "QED")["raw_mean"] == stored


def test_update_objective_metric_takes_numpy_numbers(db: TrainingDB, make_config: Config) -> None:
    np = pytest.importorskip("numpy")
    db.insert_run("run-1", None, make_config())
    db.update_objective_metric("run-1", "QED", "raw_mean", np.float32(0.5))
    db.update_objective_metric("run-1", "QED", "raw_std", np.float64("nan"))
    row = objective_of(db, "run-1", "QED")
    assert row["raw_mean"] == 0.5 and row["raw_std"] is None


@pytest.mark.parametrize(
    ("metric", "value", "message"),
    [
        ("best", 0.5, "unknown metric type 'best'; valid: raw_mean, normalized_mean"),
        ("RAW_MEAN", 0.5, "unknown metric type"),
        ("raw_mean", "0.5", "value must be a number"),
        ("raw_mean", True, "value must be a number"),
        ("raw_mean", [0.5], "value must be a number"),
    ],
)
def test_bad_metric_updates_write_nothing(
    db: TrainingDB, db_url: URL, make_config: Config, metric: str, value: Any, message: str
) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_objective_metric("run-1", "QED", "raw_mean", 0.1)
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match=message):
        db.update_objective_metric("run-1", "QED", metric, value)
    assert table_snapshot(db_url) == before


# --- unknown runs and bad run ids: an error and nothing written --------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.insert_objective("ghost", "QED"),
        lambda db: db.update_objective_metric("ghost", "QED", "raw_mean", 0.5),
        lambda db: db.get_run_objectives("ghost"),
        lambda db: db.delete_run_objectives("ghost"),
        lambda db: db.finish_run("ghost", "completed", {"objectives/QED/raw_mean": 0.5}),
    ],
)
def test_unknown_run_raises_not_found(
    db: TrainingDB, db_url: URL, make_config: Config, call: Callable[[TrainingDB], object]
) -> None:
    db.insert_run("run-1", None, make_config())
    db.insert_objective("run-1", "QED")
    before = table_snapshot(db_url)
    with pytest.raises(RunNotFoundError, match="ghost"):
        call(db)
    assert table_snapshot(db_url) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda db, run_id: db.insert_objective(run_id, "QED"),
        lambda db, run_id: db.update_objective_metric(run_id, "QED", "raw_mean", 0.5),
        lambda db, run_id: db.get_run_objectives(run_id),
        lambda db, run_id: db.delete_run_objectives(run_id),
        lambda db, run_id: db.finish_run(run_id),
    ],
)
@pytest.mark.parametrize("run_id", ["", "x" * 256, 5, None])
def test_bad_run_id_rejected_before_any_write(
    db: TrainingDB, db_url: URL, call: Callable[[TrainingDB, Any], object], run_id: Any
) -> None:
    db.init_db()
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match="run_id"):
        call(db, run_id)
    assert table_snapshot(db_url) == before


# --- delete_run_objectives -------------------------------------------------------------------


def test_delete_run_objectives_counts_and_spares_other_runs(
    db: TrainingDB, make_config: Config
) -> None:
    add_run(db, "run-1", COMT_activity=0.8, DRD5_activity=0.7, QED=0.6)
    add_run(db, "run-2", COMT_activity=0.5)
    assert db.delete_run_objectives("run-1") == 3
    assert db.get_run_objectives("run-1") == []
    assert [row["objective_name"] for row in db.get_run_objectives("run-2")] == ["COMT_activity"]
    assert db.delete_run_objectives("run-1") == 0
    assert db.get_run("run-1") is not None  # the run itself stays


# --- query_runs_by_objectives ------------------------------------------------------------------


@pytest.fixture
def scored(db: TrainingDB) -> TrainingDB:
    """Runs and their raw_mean values (created on day 1..7, newest last)::

    run  method  status     COMT   DRD5   QED
    a    mgda    completed  0.80   0.70   0.90   (exactly at the COMT and DRD5 thresholds)
    b    mgda    completed  0.95   0.69   -      (DRD5 just below)
    c    pcgrad  completed  0.79   0.99   0.50   (COMT just below)
    d    pcgrad  completed  0.90   0.95   -      (DRD5 exactly at max 0.95)
    e    mgda    running    0.85   0.80   -
    f    mgda    completed  NaN    0.80   -      (NaN stored as NULL)
    g    imtlg   completed  -      0.90   -      (no COMT objective at all)
    """
    rows: list[tuple[str, str, str, dict[str, float]]] = [
        ("a", "mgda", "completed", {"COMT_activity": 0.8, "DRD5_activity": 0.7, "QED": 0.9}),
        ("b", "mgda", "completed", {"COMT_activity": 0.95, "DRD5_activity": 0.69}),
        ("c", "pcgrad", "completed", {"COMT_activity": 0.79, "DRD5_activity": 0.99, "QED": 0.5}),
        ("d", "pcgrad", "completed", {"COMT_activity": 0.9, "DRD5_activity": 0.95}),
        ("e", "mgda", "running", {"COMT_activity": 0.85, "DRD5_activity": 0.8}),
        ("f", "mgda", "completed", {"COMT_activity": math.nan, "DRD5_activity": 0.8}),
        ("g", "imtlg", "completed", {"DRD5_activity": 0.9}),
    ]
    for day, (run_id, method, status, values) in enumerate(rows, start=1):
        add_run(db, run_id, method=method, status=status, day=day, **values)
    return db


def test_min_is_inclusive(scored: TrainingDB) -> None:
    found = scored.query_runs_by_objectives({"COMT_activity": {"min": 0.8}})
    assert ids(found) == ["e", "d", "b", "a"]  # not c (0.79), f (NaN) or g (no COMT)


def test_max_is_inclusive(scored: TrainingDB) -> None:
    found = scored.query_runs_by_objectives({"DRD5_activity": {"min": 0.9, "max": 0.95}})
    assert ids(found) == ["g", "d"]


def test_every_objective_must_match(scored: TrainingDB) -> None:
    found = scored.query_runs_by_objectives(
        {"COMT_activity": {"min": 0.8}, "DRD5_activity": {"min": 0.7}}
    )
    assert ids(found) == ["e", "d", "a"]  # b fails DRD5, c fails COMT, f and g have no COMT
    three = scored.query_runs_by_objectives(
        {"COMT_activity": {"min": 0.8}, "DRD5_activity": {"min": 0.7}, "QED": {"min": 0.0}}
    )
    assert ids(three) == ["a"]


def test_null_and_nan_never_match(scored: TrainingDB) -> None:
    anything = scored.query_runs_by_objectives({"COMT_activity": {}})
    assert "f" not in ids(anything) and "g" not in ids(anything)
    assert ids(anything) == ["e", "d", "c", "b", "a"]
    unbounded = scored.query_runs_by_objectives(
        {"COMT_activity": {"min": -math.inf, "max": math.inf}}
    )
    assert ids(unbounded) == ids(anything)
    below = scored.query_runs_by_objectives({"COMT_activity": {"max": 0.0}})
    assert below == []


def test_infinite_values_compare_as_numbers(db: TrainingDB) -> None:
    add_run(db, "up", day=1, score=math.inf)
    add_run(db, "down", day=2, score=-math.inf)
    assert ids(db.query_runs_by_objectives({"score": {"min": 1e308}})) == ["up"]
    assert ids(db.query_runs_by_objectives({"score": {"max": -1e308}})) == ["down"]
    found = db.query_runs_by_objectives({"score": {"min": math.inf}})
    assert found[0]["objectives"] == {
        "score": {
            "raw_mean": math.inf,
            "normalized_mean": None,
            "raw_std": None,
            "normalized_std": None,
        }
    }


def test_filters_on_gradient_method_and_status(scored: TrainingDB) -> None:
    comt = {"COMT_activity": {"min": 0.8}}
    assert ids(scored.query_runs_by_objectives(comt, gradient_method="mgda")) == ["e", "b", "a"]
    assert ids(scored.query_runs_by_objectives(comt, status="completed")) == ["d", "b", "a"]
    assert ids(
        scored.query_runs_by_objectives(comt, gradient_method="mgda", status="completed")
    ) == ["b", "a"]
    assert scored.query_runs_by_objectives(comt, gradient_method="adam") == []
    assert scored.query_runs_by_objectives(comt, status="crashed") == []


def test_metric_other_than_raw_mean(scored: TrainingDB) -> None:
    scored.update_objective_metric("a", "DRD5_activity", "normalized_mean", 0.96)
    scored.update_objective_metric("d", "DRD5_activity", "normalized_mean", 0.5)
    found = scored.query_runs_by_objectives(
        {"DRD5_activity": {"min": 0.9, "metric": "normalized_mean"}}
    )
    assert ids(found) == ["a"]  # d's raw_mean is 0.95, but its normalized_mean is 0.5


def test_results_are_get_run_dicts_with_the_matched_objectives(scored: TrainingDB) -> None:
    scored.set_tags("a", {"sweep": "s1"})
    scored.update_objective_metric("a", "COMT_activity", "raw_std", 0.05)
    [found] = scored.query_runs_by_objectives(
        {"COMT_activity": {"min": 0.8, "max": 0.8}, "DRD5_activity": {"max": 0.7}}
    )
    objectives_found = found.pop("objectives")
    assert found == scored.get_run("a")
    assert found["tags"] == {"sweep": "s1"}
    assert objectives_found == {
        "COMT_activity": {
            "raw_mean": 0.8,
            "normalized_mean": None,
            "raw_std": 0.05,
            "normalized_std": None,
        },
        "DRD5_activity": {
            "raw_mean": 0.7,
            "normalized_mean": None,
            "raw_std": None,
            "normalized_std": None,
        },
    }  # QED is not filtered on, so not attached


def test_order_is_newest_first_then_run_id(db: TrainingDB) -> None:
    for run_id in ("m", "k", "z"):
        add_run(db, run_id, day=3, QED=0.5)
    add_run(db, "old", day=1, QED=0.5)
    add_run(db, "new", day=5, QED=0.5)
    assert ids(db.query_runs_by_objectives({"QED": {}})) == ["new", "k", "m", "z", "old"]


def test_limit(scored: TrainingDB) -> None:
    comt = {"COMT_activity": {"min": 0.8}}
    assert ids(scored.query_runs_by_objectives(comt, limit=2)) == ["e", "d"]
    assert ids(scored.query_runs_by_objectives(comt, limit=1)) == ["e"]


def test_no_runs_at_all(db: TrainingDB) -> None:
    assert db.query_runs_by_objectives({"COMT_activity": {"min": 0.0}}) == []


def test_no_matching_objective_name(scored: TrainingDB) -> None:
    # A name no run has is a mistake, no longer an empty answer (test_did_you_mean.py).
    with pytest.raises(UnknownNameError, match="'HERG_inhibition'"):
        scored.query_runs_by_objectives({"HERG_inhibition": {}})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective_filters": {"QED": {"minimum": 0.5}}}, "unknown key 'minimum'; valid: min"),
        ({"objective_filters": {"QED": {"gt": 0.5}}}, "unknown key 'gt'"),
        ({"objective_filters": {"QED": {"metric": "mean"}}}, "unknown metric type 'mean'"),
        ({"objective_filters": {"QED": {"min": "high"}}}, "'min' must be a number"),
        ({"objective_filters": {"QED": {"max": True}}}, "'max' must be a number"),
        ({"objective_filters": {"QED": {"min": math.nan}}}, "NaN"),
        ({"objective_filters": {"QED": 0.5}}, "must be a dict"),
        ({"objective_filters": {"": {"min": 0.5}}}, "objective_name must not be empty"),
        ({"objective_filters": {3: {"min": 0.5}}}, "objective_name must be a string"),
        ({"objective_filters": {}}, "at least one objective"),
        ({"objective_filters": [("QED", {})]}, "objective_filters must be a dict"),
        ({"objective_filters": {"QED": {}}, "status": "done"}, "unknown status 'done'"),
        ({"objective_filters": {"QED": {}}, "gradient_method": 5}, "gradient_method must be"),
        ({"objective_filters": {"QED": {}}, "limit": 0}, "limit must be between"),
        ({"objective_filters": {"QED": {}}, "limit": 10_001}, "limit must be between"),
        ({"objective_filters": {"QED": {}}, "limit": "10"}, "limit must be a positive integer"),
    ],
)
def test_bad_objective_queries(scored: TrainingDB, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scored.query_runs_by_objectives(**kwargs)


def test_the_query_uses_the_objective_index(db: TrainingDB, backend: str) -> None:
    """One statement; the raw_mean bound is a range search on the (name, raw_mean) index."""
    add_run(db, "a", COMT_activity=0.8, DRD5_activity=0.7)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "JOIN run_objectives" in statement:
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        db.query_runs_by_objectives({"COMT_activity": {"min": 0.8}, "DRD5_activity": {}})
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = captured
    assert statement.count("JOIN run_objectives") == 2  # one statement, one join per objective
    explain = "EXPLAIN" if backend == "postgresql" else "EXPLAIN QUERY PLAN"
    with db.engine.connect() as connection:
        if backend == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")  # a tiny table is read whole
        rows = connection.exec_driver_sql(f"{explain} {statement}", parameters)
        plan = "\n".join(str(row) for row in rows)
    assert "ix_run_objectives_objective_name_raw_mean" in plan


# --- get_objective_statistics ------------------------------------------------------------------


def test_statistics_of_known_values(db: TrainingDB) -> None:
    values = [0.2, 0.4, 0.9, 0.5]
    for index, value in enumerate(values):
        add_run(db, f"run-{index}", COMT_activity=value)
    add_run(db, "nan", COMT_activity=math.nan)
    add_run(db, "other", QED=100.0)
    stats = db.get_objective_statistics("COMT_activity")
    assert stats["objective_name"] == "COMT_activity"
    assert stats["count"] == 4  # the NaN (NULL) value does not count
    assert stats["avg"] == pytest.approx(statistics.fmean(values))
    assert stats["min"] == 0.2 and stats["max"] == 0.9
    assert stats["std"] == pytest.approx(statistics.pstdev(values))  # population, not sample
    assert stats["std"] != pytest.approx(statistics.stdev(values))


def test_statistics_filters(scored: TrainingDB) -> None:
    mgda_completed = scored.get_objective_statistics(
        "COMT_activity", status="completed", gradient_method="mgda"
    )
    assert mgda_completed["count"] == 2  # a and b; f's NaN is NULL, e is running
    assert mgda_completed["avg"] == pytest.approx((0.8 + 0.95) / 2)
    assert mgda_completed["std"] == pytest.approx(statistics.pstdev([0.8, 0.95]))
    running = scored.get_objective_statistics("COMT_activity", status="running")
    assert running["count"] == 1 and running["std"] == 0.0 and running["avg"] == 0.85
    everything = scored.get_objective_statistics("COMT_activity")
    assert everything["count"] == 5
    assert everything["min"] == 0.79 and everything["max"] == 0.95


def test_statistics_of_another_metric(scored: TrainingDB) -> None:
    scored.update_objective_metric("a", "QED", "normalized_std", 0.1)
    scored.update_objective_metric("c", "QED", "normalized_std", 0.3)
    stats = scored.get_objective_statistics("QED", "normalized_std")
    assert stats["count"] == 2
    assert stats["avg"] == pytest.approx(0.2) and stats["std"] == pytest.approx(0.1)


def test_statistics_keep_precision_far_from_zero(db: TrainingDB) -> None:
    """avg(x*x) - avg(x)^2 would cancel to noise here; the two-pass variance does not."""
    values = [1e9 + 1, 1e9 + 2, 1e9 + 3]
    for index, value in enumerate(values):
        add_run(db, f"run-{index}", loss=value)
    stats = db.get_objective_statistics("loss")
    assert stats["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9)


def test_statistics_with_an_infinite_value(db: TrainingDB) -> None:
    add_run(db, "a", score=1.0)
    add_run(db, "b", score=math.inf)
    stats = db.get_objective_statistics("score")
    assert stats["count"] == 2
    assert stats["avg"] == math.inf and stats["max"] == math.inf and stats["min"] == 1.0
    assert math.isnan(stats["std"])


@pytest.mark.parametrize("objective_name", ["COMT_activity", "HERG_inhibition"])
def test_statistics_without_values(db: TrainingDB, objective_name: str) -> None:
    add_run(db, "a", status="running", COMT_activity=0.5)
    if objective_name == "HERG_inhibition":
        # A name no run has is a mistake, no longer an empty answer (test_did_you_mean.py).
        with pytest.raises(UnknownNameError, match="'HERG_inhibition'"):
            db.get_objective_statistics(objective_name, status="completed")
        return
    stats = db.get_objective_statistics(objective_name, status="completed")
    assert stats == {
        "objective_name": objective_name,
        "count": 0,
        "avg": None,
        "min": None,
        "max": None,
        "std": None,
    }


def test_statistics_with_no_runs_at_all(db: TrainingDB) -> None:
    assert db.get_objective_statistics("QED")["count"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric_type": "mean"}, "unknown metric type 'mean'"),
        ({"status": "finished"}, "unknown status 'finished'"),
        ({"objective_name": ""}, "must not be empty"),
    ],
)
def test_bad_statistics_arguments(db: TrainingDB, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"objective_name": "QED", **kwargs}
    with pytest.raises(ValueError, match=message):
        db.get_objective_statistics(**arguments)


# --- compare_gradient_methods ----------------------------------------------------------------


def test_compare_maximized_objective(scored: TrainingDB) -> None:
    scored.update_objective_metric("a", "COMT_activity", "normalized_mean", 0.1)  # ignored
    assert scored.compare_gradient_methods("COMT_activity") == [
        # completed only: mgda a, b (f is NaN); pcgrad c, d
        {"gradient_method": "mgda", "num_runs": 2, "avg": pytest.approx(0.875), "best": 0.95},
        {"gradient_method": "pcgrad", "num_runs": 2, "avg": pytest.approx(0.845), "best": 0.9},
    ]


def test_compare_every_status(scored: TrainingDB) -> None:
    result = scored.compare_gradient_methods("DRD5_activity", status=None)
    assert [row["gradient_method"] for row in result] == ["pcgrad", "imtlg", "mgda"]
    assert result[2]["num_runs"] == 4  # a, b, e (running), f
    assert result[2]["best"] == 0.8
    running = scored.compare_gradient_methods("DRD5_activity", status="running")
    assert running == [{"gradient_method": "mgda", "num_runs": 1, "avg": 0.8, "best": 0.8}]


def test_compare_minimized_objective(db: TrainingDB) -> None:
    minimize = {"loss": "minimize"}
    add_run(db, "a", method="mgda", directions=minimize, loss=0.3)
    add_run(db, "b", method="mgda", directions=minimize, loss=0.1)
    add_run(db, "c", method="pcgrad", directions=minimize, loss=0.2)
    add_run(db, "d", method="pcgrad", loss=0.25)  # a row without direction does not flip it
    result = db.compare_gradient_methods("loss")
    assert result == [
        {"gradient_method": "mgda", "num_runs": 2, "avg": pytest.approx(0.2), "best": 0.1},
        {"gradient_method": "pcgrad", "num_runs": 2, "avg": pytest.approx(0.225), "best": 0.2},
    ]


def test_compare_direction_rules(db: TrainingDB) -> None:
    add_run(db, "a", method="mgda", loss=0.1)
    add_run(db, "b", method="pcgrad", loss=0.9)
    # Unknown direction: higher is better.
    assert [row["gradient_method"] for row in db.compare_gradient_methods("loss")] == [
        "pcgrad",
        "mgda",
    ]
    add_run(db, "c", method="imtlg", directions={"loss": "minimize"}, loss=0.5)
    assert [row["gradient_method"] for row in db.compare_gradient_methods("loss")] == [
        "mgda",
        "imtlg",
        "pcgrad",
    ]
    # Rows that disagree: maximize wins.
    add_run(db, "d", method="cagrad", directions={"loss": "maximize"}, loss=0.6)
    assert [row["gradient_method"] for row in db.compare_gradient_methods("loss")] == [
        "pcgrad",
        "cagrad",
        "imtlg",
        "mgda",
    ]


def test_compare_direction_is_voted_by_the_rows_compared(db: TrainingDB) -> None:
    """A running run's minimize row does not flip the completed runs' comparison."""
    add_run(db, "a", method="mgda", loss=0.1)
    add_run(db, "b", method="pcgrad", loss=0.9)
    add_run(db, "c", method="imtlg", status="running", directions={"loss": "minimize"}, loss=0.5)
    completed = db.compare_gradient_methods("loss")
    assert [(row["gradient_method"], row["best"]) for row in completed] == [
        ("pcgrad", 0.9),
        ("mgda", 0.1),
    ]
    every_status = db.compare_gradient_methods("loss", status=None)
    assert [(row["gradient_method"], row["best"]) for row in every_status] == [
        ("mgda", 0.1),
        ("imtlg", 0.5),
        ("pcgrad", 0.9),
    ]


def test_compare_ties_are_ordered_by_gradient_method(db: TrainingDB) -> None:
    add_run(db, "a", method="pcgrad", QED=0.5)
    add_run(db, "b", method="mgda", QED=0.5)
    add_run(db, "c", method=None, QED=0.5)
    add_run(db, "d", method="cagrad", QED=0.5)
    add_run(db, "e", method="imtlg", QED=0.4)
    add_run(db, "f", method="imtlg", QED=0.6)  # same avg as the others, better best
    assert [row["gradient_method"] for row in db.compare_gradient_methods("QED")] == [
        "imtlg",
        "cagrad",
        "mgda",
        "pcgrad",
        None,
    ]


def test_compare_without_data(db: TrainingDB) -> None:
    assert db.compare_gradient_methods("QED") == []
    add_run(db, "a", status="running", QED=0.5)
    add_run(db, "b", QED=math.nan)
    assert db.compare_gradient_methods("QED") == []
    # A name no run has is a mistake, no longer an empty answer (test_did_you_mean.py).
    with pytest.raises(UnknownNameError, match="'HERG_inhibition'"):
        db.compare_gradient_methods("HERG_inhibition", status=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric_type": "best"}, "unknown metric type 'best'"),
        ({"status": "done"}, "unknown status 'done'"),
        ({"objective_name": None}, "objective_name must be a string"),
    ],
)
def test_bad_compare_arguments(db: TrainingDB, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"objective_name": "QED", **kwargs}
    with pytest.raises(ValueError, match=message):
        db.compare_gradient_methods(**arguments)


# --- finish_run ------------------------------------------------------------------------------

SUMMARY: dict[str, Any] = {
    "train/loss": 0.42,
    "_step": 1200,
    "_runtime": 3605.5,
    "objectives/COMT_activity_maximize/raw_mean": 0.856,
    "objectives/COMT_activity_maximize/normalized_mean": 0.892,
    "objectives/COMT_activity_maximize/raw_std": math.nan,
    "objectives/DRD5_activity_maximize/raw_mean": 0.743,
    "objectives/SA_score_minimize/raw_mean": 2.5,
    "objectives/QED/normalized_std": math.inf,
    "objectives/QED/best": 0.99,  # not a metric type
    "objectives/QED/raw_mean": "n/a",  # not a number
    "objectives/hERG_maximize/raw_mean": True,  # a boolean is not a number either
    "objectives/too/many/parts": 1.0,
    "objectives/too_few": 1.0,
    "objectives//raw_mean": 1.0,  # no name
    "objectives/_minimize/raw_mean": 1.0,  # no name once the suffix is gone
    "eval/objectives/COMT_activity/raw_mean": 0.1,  # not an objectives/ key
    "git_commit": "a135c627",
}


@pytest.fixture
def launched(db: TrainingDB, make_config: Config) -> TrainingDB:
    """run-1, running since 2026-01-01, with its objectives as launch inserts them."""
    db.insert_run("run-1", None, make_config(), created_at="2026-01-01T00:00:00Z")
    db.insert_objective("run-1", "COMT_activity", "COMT_activity_maximize", "P21964", 1.0)
    db.insert_objective("run-1", "DRD5_activity", "DRD5_alias", None, 0.5, "minimize")
    db.update_run_status("run-1", "running", started_at="2026-01-01T00:00:00Z")
    return db


def test_finish_run_records_everything(launched: TrainingDB) -> None:
    launched.finish_run("run-1", "completed", SUMMARY, ended_at="2026-01-01T02:00:00Z")
    run = launched.get_run("run-1")
    assert run is not None
    assert run["status"] == "completed"
    assert run["ended_at"] == dt.datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert run["final_loss"] == 0.42
    assert run["total_training_steps"] == 1200
    assert run["duration_seconds"] == 3605.5  # the summary's _runtime beats ended - started
    stored = json.loads(run["final_metrics_json"])
    assert set(stored) == set(SUMMARY)
    assert math.isnan(stored["objectives/COMT_activity_maximize/raw_std"])
    assert run["final_metrics"]["git_commit"] == "a135c627"

    rows = {row["objective_name"]: row for row in launched.get_run_objectives("run-1")}
    assert sorted(rows) == ["COMT_activity", "DRD5_activity", "QED", "SA_score"]
    comt = rows["COMT_activity"]
    assert (comt["raw_mean"], comt["normalized_mean"]) == (0.856, 0.892)
    assert comt["raw_std"] is None  # NaN
    assert comt["direction"] == "maximize"  # it had none; the alias suffix gives it
    assert comt["objective_alias"] == "COMT_activity_maximize"
    assert comt["uniprot"] == "P21964" and comt["weight"] == 1.0
    drd5 = rows["DRD5_activity"]
    assert drd5["raw_mean"] == 0.743
    assert drd5["direction"] == "minimize"  # the row's own direction wins over the suffix
    assert drd5["objective_alias"] == "DRD5_alias"
    sa_score = rows["SA_score"]  # not inserted at launch: created from the summary
    assert sa_score["raw_mean"] == 2.5
    assert (
        sa_score["direction"] == "minimize" and sa_score["objective_alias"] == "SA_score_minimize"
    )
    assert sa_score["weight"] is None
    qed = rows["QED"]
    assert qed["normalized_std"] == math.inf
    assert qed["raw_mean"] is None and qed["direction"] is None
    assert qed["objective_alias"] == "QED"


def test_finish_run_explicit_duration_wins(launched: TrainingDB) -> None:
    launched.finish_run("run-1", "failed", {"_runtime": 10.0}, duration_seconds=99.5)
    run = launched.get_run("run-1")
    assert run is not None
    assert run["status"] == "failed" and run["duration_seconds"] == 99.5
    assert run["ended_at"] is not None


def test_finish_run_without_summary_derives_the_duration(launched: TrainingDB) -> None:
    launched.finish_run("run-1", "crashed", ended_at=dt.datetime(2026, 1, 1, 1, 30, tzinfo=UTC))
    run = launched.get_run("run-1")
    assert run is not None
    assert run["status"] == "crashed"
    assert run["duration_seconds"] == 5400.0
    assert run["final_metrics_json"] is None and run["final_loss"] is None
    assert [row["raw_mean"] for row in launched.get_run_objectives("run-1")] == [None, None]


def test_finish_run_defaults_to_completed_now(launched: TrainingDB) -> None:
    before = dt.datetime.now(UTC)
    launched.finish_run("run-1")
    run = launched.get_run("run-1")
    assert run is not None
    assert run["status"] == "completed"
    assert before - dt.timedelta(seconds=5) <= run["ended_at"] <= dt.datetime.now(UTC)


def test_finish_run_results_are_queryable(launched: TrainingDB) -> None:
    launched.finish_run("run-1", "completed", SUMMARY)
    found = launched.query_runs_by_objectives(
        {"COMT_activity": {"min": 0.85, "metric": "normalized_mean"}, "SA_score": {"max": 3}},
        status="completed",
    )
    assert ids(found) == ["run-1"]
    assert found[0]["objectives"]["SA_score"]["raw_mean"] == 2.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "running"}, "terminal status.*valid: completed, failed, crashed"),
        ({"status": "launched"}, "terminal status"),
        ({"status": "done"}, "terminal status"),
        ({"history": {"a": [1, 2], "b": [1]}}, "same length"),
        ({"history": 42}, "history must be"),
        ({"summary": [("train/loss", 0.5)]}, "summary must be a dict"),
        ({"summary": {"x": object()}}, r"summary\.x"),
        ({"ended_at": "yesterday"}, "ISO 8601"),
        ({"duration_seconds": "long"}, "duration_seconds must be a number"),
    ],
)
def test_bad_finish_run_arguments_write_nothing(
    launched: TrainingDB, db_url: URL, kwargs: dict[str, Any], message: str
) -> None:
    before = table_snapshot(db_url)
    arguments: dict[str, Any] = {"run_id": "run-1", "summary": SUMMARY, **kwargs}
    with pytest.raises(ValueError, match=message):
        launched.finish_run(**arguments)
    assert table_snapshot(db_url) == before


def test_finish_run_is_atomic(
    launched: TrainingDB, db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the run row and the first objective were written leaves no trace."""
    before = table_snapshot(db_url)
    store = objectives.store_summary_objective
    seen: list[tuple[str, float | None]] = []

    def store_then_fail(
        session: Session, run_id: str, objective: objectives.SummaryObjective
    ) -> None:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        comt = session.scalar(
            sa.select(RunObjective.raw_mean).where(
                RunObjective.run_id == run_id, RunObjective.objective_name == "COMT_activity"
            )
        )
        seen.append((run.status, comt))
        if len(seen) == 2:
            raise RuntimeError("disk on fire")
        store(session, run_id, objective)

    monkeypatch.setattr(completion, "store_summary_objective", store_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        launched.finish_run("run-1", "completed", SUMMARY)
    # Inside the transaction the run was completed and COMT written before the failure ...
    assert seen == [("completed", None), ("completed", 0.856)]
    # ... and afterwards nothing of it is left.
    assert table_snapshot(db_url) == before
    monkeypatch.undo()
    launched.finish_run("run-1", "completed", SUMMARY)
    assert objective_of(launched, "run-1", "COMT_activity")["raw_mean"] == 0.856


def test_a_database_error_in_finish_run_writes_nothing(
    launched: TrainingDB, db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database itself refusing the last write also rolls back the run row."""
    before = table_snapshot(db_url)
    store = objectives.store_summary_objective

    def store_then_violate(
        session: Session, run_id: str, objective: objectives.SummaryObjective
    ) -> None:
        store(session, run_id, objective)
        session.execute(
            sa.update(RunObjective)
            .where(RunObjective.run_id == run_id)
            .values(direction="sideways")  # breaks the CHECK constraint
        )

    monkeypatch.setattr(completion, "store_summary_objective", store_then_violate)
    with pytest.raises(training_db.DatabaseWriteError, match="rejected"):
        launched.finish_run("run-1", "completed", SUMMARY)
    assert table_snapshot(db_url) == before


# --- the module-level functions ---------------------------------------------------------------


def test_module_level_functions(default_db: TrainingDB, make_config: Config) -> None:
    training_db.insert_run("run-1", None, make_config(), created_at="2026-01-01T00:00:00Z")
    for objective in make_config()["objectives"]:
        training_db.insert_objective(
            run_id="run-1",
            objective_name=objective["name"],
            objective_alias=objective["alias"],
            uniprot=objective.get("params", {}).get("uniprot"),
            weight=objective["weight"],
            direction=None,
        )
    training_db.update_objective_metric("run-1", "DRD5_activity", "raw_mean", 0.7)
    training_db.finish_run(
        "run-1", "completed", {"objectives/COMT_activity_maximize/raw_mean": 0.9}
    )
    rows = training_db.get_run_objectives("run-1")
    assert [(row["objective_name"], row["raw_mean"]) for row in rows] == [
        ("COMT_activity", 0.9),
        ("DRD5_activity", 0.7),
    ]
    found = training_db.query_runs_by_objectives({"COMT_activity": {"min": 0.9}})
    assert ids(found) == ["run-1"]
    assert training_db.get_objective_statistics("COMT_activity")["count"] == 1
    assert training_db.compare_gradient_methods("COMT_activity") == [
        {"gradient_method": "mgda", "num_runs": 1, "avg": 0.9, "best": 0.9}
    ]
    assert training_db.delete_run_objectives("run-1") == 2
    assert training_db.get_run_objectives("run-1") == []
    assert default_db.get_run("run-1") is not None


# --- the training team's example SQL, against data written through the API ---------------


@pytest.fixture
def seeded(db: TrainingDB) -> TrainingDB:
    """Twelve runs over three gradient methods, with three objectives and some crashes."""
    plan: list[tuple[str, str | None, str, float, float, float]] = [
        ("r01", "mgda", "completed", 0.86, 0.74, 0.70),
        ("r02", "mgda", "completed", 0.78, 0.69, 0.68),
        ("r03", "mgda", "completed", 0.91, 0.69, 0.80),
        ("r04", "mgda", "crashed", 0.99, 0.99, 0.99),
        ("r05", "pcgrad", "completed", 0.80, 0.81, 0.66),
        ("r06", "pcgrad", "completed", 0.70, 0.90, 0.90),
        ("r07", "pcgrad", "crashed", 0.10, 0.10, 0.10),
        ("r08", "pcgrad", "crashed", 0.20, 0.20, 0.20),
        ("r09", "imtlg", "completed", 0.95, 0.85, 0.75),
        ("r10", "imtlg", "running", 0.96, 0.96, 0.96),
        ("r11", None, "completed", 0.77, 0.71, 0.67),
        ("r12", "imtlg", "failed", 0.50, 0.50, 0.50),
    ]
    for day, (run_id, method, status, comt, drd5, qed) in enumerate(plan, start=1):
        training = {} if method is None else {"gradient_method": method}
        db.insert_run(
            run_id, None, {"training": training}, created_at=dt.datetime(2026, 1, day, tzinfo=UTC)
        )
        values = {"COMT_activity": comt, "DRD5_activity": drd5, "QED": qed}
        for name in values:
            db.insert_objective(run_id, name, direction="maximize")
        if status == "running":  # values reported before the end
            db.update_run_status(run_id, "running")
            for name, value in values.items():
                db.update_objective_metric(run_id, name, "raw_mean", value)
        else:
            summary = {
                f"objectives/{name}_maximize/raw_mean": value for name, value in values.items()
            }
            db.finish_run(run_id, status, summary)
    return db


def run_sql(db: TrainingDB, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql), parameters)]


COMPARE_SQL = """
SELECT
  r.gradient_method,
  COUNT(*) as num_runs,
  AVG(o.raw_mean) as avg_comt,
  MAX(o.raw_mean) as best_comt
FROM training_runs r
JOIN run_objectives o ON r.run_id = o.run_id
WHERE o.objective_name = 'COMT_activity'
  AND r.status = 'completed'
GROUP BY r.gradient_method
ORDER BY avg_comt DESC
"""

BALANCED_SQL = """
SELECT r.run_id, r.gradient_method,
       o1.raw_mean as comt,
       o2.raw_mean as drd5,
       o3.raw_mean as qed
FROM training_runs r
JOIN run_objectives o1 ON r.run_id = o1.run_id AND o1.objective_name = 'COMT_activity'
JOIN run_objectives o2 ON r.run_id = o2.run_id AND o2.objective_name = 'DRD5_activity'
JOIN run_objectives o3 ON r.run_id = o3.run_id AND o3.objective_name = 'QED'
WHERE r.status = 'completed'
  AND o1.raw_mean > 0.75
  AND o2.raw_mean > 0.70
  AND o3.raw_mean > 0.65
ORDER BY (o1.raw_mean + o2.raw_mean + o3.raw_mean) DESC
LIMIT 20
"""

CRASH_SQL = """
SELECT
  gradient_method,
  COUNT(*) as total,
  SUM(CASE WHEN status = 'crashed' THEN 1 ELSE 0 END) as crashes,
  ROUND(100.0 * SUM(CASE WHEN status = 'crashed' THEN 1 ELSE 0 END) / COUNT(*), 1) as crash_rate
FROM training_runs
GROUP BY gradient_method
"""


def test_seed_query_compare_gradient_methods(seeded: TrainingDB) -> None:
    rows = run_sql(seeded, COMPARE_SQL)
    from_sql = [
        {"gradient_method": method, "num_runs": count, "avg": pytest.approx(avg), "best": best}
        for method, count, avg, best in rows
    ]
    assert seeded.compare_gradient_methods("COMT_activity") == from_sql
    assert [row[0] for row in rows] == ["imtlg", "mgda", None, "pcgrad"]
    assert rows[1][1:] == (3, pytest.approx((0.86 + 0.78 + 0.91) / 3), 0.91)


def test_seed_query_balanced_runs(seeded: TrainingDB) -> None:
    rows = run_sql(seeded, BALANCED_SQL)
    assert [row[0] for row in rows] == ["r09", "r01", "r05", "r11"]
    # The API's bounds are inclusive; no stored value sits exactly on these thresholds.
    found = seeded.query_runs_by_objectives(
        {"COMT_activity": {"min": 0.75}, "DRD5_activity": {"min": 0.70}, "QED": {"min": 0.65}},
        status="completed",
        limit=20,
    )
    by_id = {run["run_id"]: run for run in found}
    # Left out by both: r02 and r03 (DRD5 < 0.70), r06 (COMT 0.70), r04/r07/r08/r12 (not
    # completed) and r10 (running).
    assert set(by_id) == {row[0] for row in rows}
    for run_id, method, comt, drd5, qed in rows:
        run = by_id[run_id]
        assert run["gradient_method"] == method
        assert run["objectives"]["COMT_activity"]["raw_mean"] == comt
        assert run["objectives"]["DRD5_activity"]["raw_mean"] == drd5
        assert run["objectives"]["QED"]["raw_mean"] == qed


def test_seed_query_crash_rate(seeded: TrainingDB) -> None:
    from_sql = {
        method: (total, crashes, float(rate))
        for method, total, crashes, rate in run_sql(seeded, CRASH_SQL)
    }
    assert from_sql["pcgrad"] == (4, 2, 50.0)
    assert from_sql["mgda"] == (4, 1, 25.0)
    assert from_sql["imtlg"] == (3, 0, 0.0)
    assert from_sql[None] == (1, 0, 0.0)
    # The same numbers from the Python API.
    every_run = seeded.query_runs(limit=1000)
    for method, (total, crashes, rate) in from_sql.items():
        mine = [run for run in every_run if run["gradient_method"] == method]
        crashed = [run for run in mine if run["status"] == "crashed"]
        assert (len(mine), len(crashed)) == (total, crashes)
        assert round(100.0 * len(crashed) / len(mine), 1) == rate
    assert sum(total for total, _, _ in from_sql.values()) == seeded.get_stats()["total_runs"]
    assert sum(crashes for _, crashes, _ in from_sql.values()) == seeded.get_stats()["crashed"]
