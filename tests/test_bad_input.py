"""One table of bad and odd inputs, on both backends.

A bad input raises a precise exception whose message names the bad value, and the database is
left exactly as it was. A valid but odd input (Unicode, emoji, a 1 MB config, ±Infinity) is
stored and read back unchanged; NaN in a number column is stored as NULL, as documented.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

from tests.conftest import BACKENDS, PostgresServer, _require_postgres, table_snapshot
from training_db import (
    DuplicateWandbRunIdError,
    ObjectiveAlreadyExistsError,
    RunAlreadyExistsError,
    RunNotFoundError,
    TrainingDB,
)
from training_db.core.jsoncodec import NotJSONSerializableError
from training_db.core.settings import sqlite_url

NAN, INF = math.nan, math.inf
Call = Callable[[TrainingDB], object]


@dataclass(frozen=True)
class Rejected:
    """The call raises ``error`` with a message matching ``message`` and writes nothing."""

    call: Call
    error: type[Exception]
    message: str


@dataclass(frozen=True)
class Stored:
    """The call succeeds and ``check`` finds the value as given (or as documented)."""

    call: Call
    check: Call


def run(database: TrainingDB, run_id: str) -> dict[str, Any]:
    found = database.get_run(run_id)
    assert found is not None
    return found


def objective(database: TrainingDB, run_id: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in database.get_run_objectives(run_id) if o["objective_name"] == name]
    return found


def unknown_status(status: str) -> str:
    return re.escape(f"unknown status {status!r}; valid: launched, running, completed")


NOT_FOUND = r"no training run with run_id='ghost'"
NOT_JSON = NotJSONSerializableError
UNICODE_ID = "模型-🚀-run"
BIG_CONFIG = {"blob": "🥭" * (1 << 18), "layers": [{"width": i} for i in range(1000)]}


def _check_unicode(database: TrainingDB) -> None:
    stored = run(database, UNICODE_ID)
    assert stored["run_name"] == "Überlauf 🎉 ñ — ☃"
    assert stored["host"] == "хост-🖥"
    assert stored["config"] == {"模型": {"名前": "🍣", "emoji🔑": ["😀", "\u200b"]}}
    assert database.get_tags(UNICODE_ID) == {"标签🔖": "值🎯"}
    assert objective(database, UNICODE_ID, "活性_🧪")["objective_alias"] == "活性_🧪_maximize"
    assert database.get_history(UNICODE_ID) == {"_step": [0], "损失/🔥": [0.5]}
    assert [r["run_id"] for r in database.query_runs({"run_name": "Überlauf 🎉 ñ — ☃"})] == [
        UNICODE_ID
    ]


def _store_unicode(database: TrainingDB) -> None:
    database.insert_run(
        UNICODE_ID,
        None,
        {"模型": {"名前": "🍣", "emoji🔑": ["😀", "\u200b"]}},
        run_name="Überlauf 🎉 ñ — ☃",
        host="хост-🖥",
    )
    database.set_tags(UNICODE_ID, {"标签🔖": "值🎯"})
    database.insert_objective(UNICODE_ID, "活性_🧪", "活性_🧪_maximize")
    database.log_history(UNICODE_ID, [{"_step": 0, "损失/🔥": 0.5}])


def _check_big(database: TrainingDB) -> None:
    stored = run(database, "big")
    assert stored["config"] == BIG_CONFIG
    assert len(stored["config_json"].encode()) > 1_000_000


def _check_sql_text(database: TrainingDB) -> None:
    assert run(database, "x'); DROP TABLE training_runs; --")["config"] == {"'": '"'}
    assert len(database.query_runs(limit=100)) >= 3  # the table is still there


def _store_infinities(database: TrainingDB) -> None:
    database.insert_run("inf", None, {"inf": INF, "-inf": -INF, "nan": NAN})
    database.update_run_status("inf", "running", final_loss=INF, duration_seconds=INF)
    database.insert_objective("inf", "o", weight=-INF)
    database.update_objective_metric("inf", "o", "raw_mean", INF)
    database.update_objective_metric("inf", "o", "raw_std", -INF)
    database.set_tags("inf", {"best": -INF})
    database.log_history("inf", [{"_step": 1, "loss": INF, "grad": -INF, "diverged": NAN}])
    database.finish_run("inf", summary={"train/loss": -INF, "score": INF}, duration_seconds=INF)


def _check_infinities(database: TrainingDB) -> None:
    stored = run(database, "inf")
    config = stored["config"]
    assert config["inf"] == INF and config["-inf"] == -INF and math.isnan(config["nan"])
    assert stored["final_loss"] == -INF  # the summary's train/loss, set last
    assert stored["duration_seconds"] == INF
    assert stored["final_metrics"] == {"train/loss": -INF, "score": INF}
    values = objective(database, "inf", "o")
    assert (values["weight"], values["raw_mean"], values["raw_std"]) == (-INF, INF, -INF)
    assert database.get_tags("inf") == {"best": -INF}
    history = database.get_history("inf")
    assert history["loss"] == [INF] and history["grad"] == [-INF]
    assert math.isnan(history["diverged"][0])  # a logged NaN (row shape) is kept


def _store_nans(database: TrainingDB) -> None:
    database.insert_run("nan", None, {})
    database.update_run_status(
        "nan", "running", final_loss=NAN, duration_seconds=NAN, total_training_steps=NAN
    )
    database.insert_objective("nan", "o", weight=NAN)
    database.update_objective_metric("nan", "o", "normalized_mean", NAN)


def _check_nans(database: TrainingDB) -> None:
    stored = run(database, "nan")
    assert (stored["final_loss"], stored["duration_seconds"]) == (None, None)
    assert stored["total_training_steps"] is None
    values = objective(database, "nan", "o")
    assert (values["weight"], values["normalized_mean"]) == (None, None)


CASES: dict[str, Rejected | Stored] = {
    # --- unknown status ---
    "status-unknown": Rejected(
        lambda d: d.update_run_status("run-1", "paused"), ValueError, unknown_status("paused")
    ),
    "status-wrong-case": Rejected(
        lambda d: d.update_run_status("run-1", "Running"), ValueError, unknown_status("Running")
    ),
    "status-none": Rejected(
        lambda d: d.update_run_status("run-1", None), ValueError, r"unknown status None; valid: "
    ),
    "status-not-terminal-for-finish": Rejected(
        lambda d: d.finish_run("run-1", "running"),
        ValueError,
        r"finish_run needs a terminal status, got 'running'; valid: completed, failed, crashed",
    ),
    "status-filter-unknown": Rejected(
        lambda d: d.get_objective_statistics("COMT_activity", status="done"),
        ValueError,
        unknown_status("done"),
    ),
    # --- unknown run ---
    "unknown-run-update": Rejected(
        lambda d: d.update_run_status("ghost", "running"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-finish": Rejected(lambda d: d.finish_run("ghost"), RunNotFoundError, NOT_FOUND),
    "unknown-run-crash": Rejected(
        lambda d: d.attach_crash_data("ghost", "e", "r", "a"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-blog": Rejected(
        lambda d: d.attach_blog_post("ghost", "https://b"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-conversation": Rejected(
        lambda d: d.attach_conversation("ghost", "k"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-tags": Rejected(
        lambda d: d.set_tags("ghost", {"a": 1}), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-delete-tag": Rejected(
        lambda d: d.delete_tag("ghost", "a"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-objective": Rejected(
        lambda d: d.insert_objective("ghost", "o"), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-metric": Rejected(
        lambda d: d.update_objective_metric("ghost", "o", "raw_mean", 1.0),
        RunNotFoundError,
        NOT_FOUND,
    ),
    "unknown-run-history": Rejected(
        lambda d: d.log_history("ghost", {"loss": [1.0]}), RunNotFoundError, NOT_FOUND
    ),
    "unknown-run-heartbeat": Rejected(lambda d: d.heartbeat("ghost"), RunNotFoundError, NOT_FOUND),
    "unknown-run-delete-objectives": Rejected(
        lambda d: d.delete_run_objectives("ghost"), RunNotFoundError, NOT_FOUND
    ),
    # --- run ids ---
    "run-id-empty": Rejected(
        lambda d: d.insert_run("", None, {}), ValueError, "run_id must not be empty"
    ),
    "run-id-blank": Rejected(
        lambda d: d.insert_run("  \t", None, {}), ValueError, "run_id must not be empty"
    ),
    "run-id-too-long": Rejected(
        lambda d: d.insert_run("x" * 256, None, {}),
        ValueError,
        "run_id must be at most 255 characters, got 256",
    ),
    "run-id-too-long-update": Rejected(
        lambda d: d.update_run_status("x" * 10_000, "running"),
        ValueError,
        "run_id must be at most 255 characters, got 10000",
    ),
    "run-id-not-a-string": Rejected(
        lambda d: d.insert_run(42, None, {}), ValueError, "run_id must be a string, got int"
    ),
    "run-id-nul": Rejected(
        lambda d: d.insert_run("a\x00b", None, {}), ValueError, "run_id must not contain NUL"
    ),
    "run-id-lone-surrogate": Rejected(
        lambda d: d.insert_run("a\ud800", None, {}), ValueError, "not valid Unicode"
    ),
    # --- duplicates ---
    "duplicate-run": Rejected(
        lambda d: d.insert_run("run-1", None, {}),
        RunAlreadyExistsError,
        r"a run with run_id='run-1' already exists",
    ),
    "duplicate-wandb-id-insert": Rejected(
        lambda d: d.insert_run("run-3", "wandb-1", {}),
        DuplicateWandbRunIdError,
        r"wandb_run_id='wandb-1' already belongs to run 'run-1'",
    ),
    "duplicate-wandb-id-update": Rejected(
        lambda d: d.update_run_status("run-2", "running", wandb_run_id="wandb-1"),
        DuplicateWandbRunIdError,
        r"wandb_run_id='wandb-1' already belongs to run 'run-1'",
    ),
    "duplicate-objective": Rejected(
        lambda d: d.insert_objective("run-1", "COMT_activity"),
        ObjectiveAlreadyExistsError,
        r"run 'run-1' already has an objective named 'COMT_activity'",
    ),
    # --- wrong types ---
    "type-final-loss-string": Rejected(
        lambda d: d.update_run_status("run-1", "running", final_loss="0.5"),
        ValueError,
        r"final_loss must be a number, got '0.5'",
    ),
    "type-duration-string": Rejected(
        lambda d: d.update_run_status("run-1", "completed", duration_seconds="1h"),
        ValueError,
        r"duration_seconds must be a number, got '1h'",
    ),
    "type-steps-string": Rejected(
        lambda d: d.update_run_status("run-1", "running", total_training_steps="100"),
        ValueError,
        r"total_training_steps must be a number, got '100'",
    ),
    "type-steps-fraction": Rejected(
        lambda d: d.update_run_status("run-1", "running", total_training_steps=1.5),
        ValueError,
        r"total_training_steps must be a whole number, got 1.5",
    ),
    "type-bool-as-number": Rejected(
        lambda d: d.update_run_status("run-1", "running", final_loss=True),
        ValueError,
        r"final_loss must be a number, got True",
    ),
    "type-weight-string": Rejected(
        lambda d: d.insert_objective("run-1", "new", weight="heavy"),
        ValueError,
        r"weight must be a number, got 'heavy'",
    ),
    "type-metric-value-string": Rejected(
        lambda d: d.update_objective_metric("run-1", "COMT_activity", "raw_mean", "0.9"),
        ValueError,
        r"value must be a number, got '0.9'",
    ),
    "type-metric-type-unknown": Rejected(
        lambda d: d.update_objective_metric("run-1", "COMT_activity", "mean", 0.9),
        ValueError,
        r"unknown metric type 'mean'; valid: raw_mean, normalized_mean, raw_std, normalized_std",
    ),
    "type-direction-unknown": Rejected(
        lambda d: d.insert_objective("run-1", "new", direction="up"),
        ValueError,
        r"unknown direction 'up'; valid: maximize, minimize or None",
    ),
    "type-config-list": Rejected(
        lambda d: d.insert_run("run-3", None, [1, 2]),
        ValueError,
        r"config_dict must be a dict, got list",
    ),
    "type-timestamp-text": Rejected(
        lambda d: d.update_run_status("run-1", "running", started_at="yesterday"),
        ValueError,
        r"started_at must be a datetime or an ISO 8601 string, got 'yesterday'",
    ),
    "type-timestamp-number": Rejected(
        lambda d: d.insert_run("run-3", None, {}, created_at=1_700_000_000),
        ValueError,
        r"created_at must be a datetime or an ISO 8601 string, got 1700000000",
    ),
    "type-tags-list": Rejected(
        lambda d: d.set_tags("run-1", ["a"]), ValueError, r"tags must be a dict, got list"
    ),
    "type-tag-key-empty": Rejected(
        lambda d: d.set_tags("run-1", {"": 1}),
        ValueError,
        r"tag keys must be non-empty strings, got ''",
    ),
    "type-history-number": Rejected(
        lambda d: d.log_history("run-1", 42),
        ValueError,
        r"history must be a dict of column -> list, .* got int",
    ),
    "type-history-step-text": Rejected(
        lambda d: d.log_history("run-1", [{"_step": "ten", "loss": 1.0}]),
        ValueError,
        r"history row 0 _step: a step must be a whole number, got 'ten'",
    ),
    "type-history-ragged-columns": Rejected(
        lambda d: d.log_history("run-1", {"a": [1, 2], "b": [1]}),
        ValueError,
        r"history columns must have the same length, got lengths \[1, 2\]",
    ),
    "type-limit-string": Rejected(
        lambda d: d.query_runs(limit="10"),
        ValueError,
        r"limit must be a positive integer, got '10'",
    ),
    "type-filters-list": Rejected(
        lambda d: d.query_runs(["status"]), ValueError, r"filters must be a dict, got list"
    ),
    "type-filter-value": Rejected(
        lambda d: d.query_runs({"batch_size": "many"}),
        ValueError,
        r"filter 'batch_size': expected an integer, got 'many'",
    ),
    # --- unknown filter keys, SQL where names belong ---
    "filter-unknown-key": Rejected(
        lambda d: d.query_runs({"no_such_column": 1}),
        ValueError,
        r"unknown filter 'no_such_column'; filters are the training_runs columns",
    ),
    "filter-unknown-operator": Rejected(
        lambda d: d.query_runs({"batch_size": {"like": 64}}),
        ValueError,
        r"filter 'batch_size': unknown operator 'like'; valid: eq, ne, gt, gte, lt, lte, in",
    ),
    "filter-key-sql": Rejected(
        lambda d: d.query_runs({"status = 'x' OR 1=1 --": 1}),
        ValueError,
        r"unknown filter \"status = 'x' OR 1=1 --\"",
    ),
    "filter-key-sql-drop": Rejected(
        lambda d: d.query_runs({"run_id; DROP TABLE training_runs": "x"}),
        ValueError,
        r"unknown filter 'run_id; DROP TABLE training_runs'",
    ),
    "filter-json-key-quote": Rejected(
        lambda d: d.query_runs({'config.a") OR 1=1 --': 1}),
        ValueError,
        r"JSON keys must not contain a double quote",
    ),
    "objective-filter-unknown-key": Rejected(
        lambda d: d.query_runs_by_objectives({"COMT_activity": {"minimum": 0.5}}),
        ValueError,
        r"objective filter 'COMT_activity': unknown key 'minimum'; valid: min, max, metric",
    ),
    "order-by-sql": Rejected(
        lambda d: d.query_runs(order_by="created_at; DROP TABLE training_runs"),
        ValueError,
        r"order_by must be a column name with optional ASC or DESC, got "
        r"'created_at; DROP TABLE training_runs'",
    ),
    "order-by-subquery": Rejected(
        lambda d: d.query_runs(order_by="(SELECT 1)"),
        ValueError,
        r"order_by must be a column name with optional ASC or DESC, got '\(SELECT 1\)'",
    ),
    "order-by-two-columns": Rejected(
        lambda d: d.query_runs(order_by="created_at DESC, run_id"),
        ValueError,
        r"order_by must be a column name with optional ASC or DESC",
    ),
    "order-by-unknown-column": Rejected(
        lambda d: d.query_runs(order_by="password DESC"),
        ValueError,
        r"order_by must be a column name .*got 'password DESC'",
    ),
    # --- limits ---
    "limit-negative": Rejected(
        lambda d: d.query_runs(limit=-1), ValueError, r"limit must be between 1 and 10000, got -1"
    ),
    "limit-zero": Rejected(
        lambda d: d.query_runs(limit=0), ValueError, r"limit must be between 1 and 10000, got 0"
    ),
    "limit-huge": Rejected(
        lambda d: d.query_runs(limit=10**12),
        ValueError,
        r"limit must be between 1 and 10000, got 1000000000000",
    ),
    "limit-huge-objectives": Rejected(
        lambda d: d.query_runs_by_objectives({"COMT_activity": {"min": 0}}, limit=10**6),
        ValueError,
        r"limit must be between 1 and 10000, got 1000000",
    ),
    # --- values that have no JSON form ---
    "json-config-function": Rejected(
        lambda d: d.insert_run("run-3", None, {"callback": print}),
        NOT_JSON,
        r"value at config_dict\.callback of type builtin_function_or_method cannot be stored",
    ),
    "json-config-object-nested": Rejected(
        lambda d: d.insert_run("run-3", None, {"a": {"b": [1, object()]}}),
        NOT_JSON,
        r"value at config_dict\.a\.b\[1\] of type object cannot be stored as JSON",
    ),
    "json-config-key": Rejected(
        lambda d: d.insert_run("run-3", None, {(1, 2): "tuple key"}),
        NOT_JSON,
        r"key \(1, 2\) at config_dict of type tuple cannot be a JSON object key",
    ),
    "json-summary-object": Rejected(
        lambda d: d.finish_run("run-1", summary={"model": object()}),
        NOT_JSON,
        r"value at summary\.model of type object cannot be stored as JSON",
    ),
    "json-final-metrics-object": Rejected(
        lambda d: d.update_run_status("run-1", "completed", final_metrics_json={"x": object()}),
        NOT_JSON,
        r"value at final_metrics_json\.x of type object",
    ),
    "json-tag-object": Rejected(
        lambda d: d.set_tags("run-1", {"k": object()}),
        NOT_JSON,
        r"value at tags\.k of type object cannot be stored as JSON",
    ),
    "json-history-object": Rejected(
        lambda d: d.log_history("run-1", [{"_step": 1, "loss": object()}]),
        NOT_JSON,
        r"history row 0\['loss'\] of type object cannot be stored as JSON",
    ),
    # --- NaN and ±Infinity where they cannot be meant ---
    "nan-steps-inf": Rejected(
        lambda d: d.update_run_status("run-1", "running", total_training_steps=INF),
        ValueError,
        r"total_training_steps must be a whole number, got inf",
    ),
    "nan-steps-minus-inf": Rejected(
        lambda d: d.update_run_status("run-1", "running", total_training_steps=-INF),
        ValueError,
        r"total_training_steps must be a whole number, got -inf",
    ),
    "nan-history-step": Rejected(
        lambda d: d.log_history("run-1", [{"_step": NAN, "loss": 1.0}]),
        ValueError,
        r"a step must be a whole number, got nan",
    ),
    "inf-history-step": Rejected(
        lambda d: d.log_history("run-1", [{"_step": INF, "loss": 1.0}]),
        ValueError,
        r"a step must be a whole number, got inf",
    ),
    "nan-limit": Rejected(
        lambda d: d.query_runs(limit=NAN), ValueError, r"limit must be a positive integer, got nan"
    ),
    "inf-limit": Rejected(
        lambda d: d.query_runs(limit=INF), ValueError, r"limit must be a positive integer, got inf"
    ),
    "nan-history-bound": Rejected(
        lambda d: d.get_history("run-1", min_step=NAN),
        ValueError,
        r"min_step: a step must be a whole number, got nan",
    ),
    "inf-history-bound": Rejected(
        lambda d: d.get_history("run-1", max_step=INF),
        ValueError,
        r"max_step: a step must be a whole number, got inf",
    ),
    "nan-filter-number": Rejected(
        lambda d: d.query_runs({"final_loss": {"lt": NAN}}),
        ValueError,
        r"filter 'final_loss': NaN matches nothing; compare with a number",
    ),
    "nan-filter-integer": Rejected(
        lambda d: d.query_runs({"batch_size": NAN}),
        ValueError,
        r"filter 'batch_size': expected an integer, got nan",
    ),
    "nan-filter-json": Rejected(
        lambda d: d.query_runs({"config.training.lr": NAN}),
        ValueError,
        r"NaN matches nothing; compare with a number",
    ),
    "nan-objective-bound": Rejected(
        lambda d: d.query_runs_by_objectives({"COMT_activity": {"min": NAN}}),
        ValueError,
        r"objective filter 'COMT_activity': 'min' is NaN, which matches nothing",
    ),
    "nan-stale-age": Rejected(
        lambda d: d.mark_stale_runs(NAN), ValueError, r"older_than must be a finite number"
    ),
    "inf-stale-age": Rejected(
        lambda d: d.mark_stale_runs(INF), ValueError, r"older_than must be a finite number"
    ),
    # --- valid but odd: stored and read back ---
    "unicode-and-emoji": Stored(_store_unicode, _check_unicode),
    "config-of-1-mb": Stored(
        lambda d: d.insert_run("big", None, BIG_CONFIG),
        _check_big,
    ),
    "plus-minus-infinity": Stored(_store_infinities, _check_infinities),
    "nan-becomes-null": Stored(_store_nans, _check_nans),
    "run-id-of-255-characters": Stored(
        lambda d: d.insert_run("é" * 255, None, {}),
        lambda d: run(d, "é" * 255),
    ),
    "sql-looking-text-is-just-text": Stored(
        lambda d: d.insert_run("x'); DROP TABLE training_runs; --", None, {"'": '"'}),
        _check_sql_text,
    ),
}


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    migrated_templates: dict[str, URL],
    pg_server: PostgresServer | None,
) -> Iterator[tuple[TrainingDB, URL]]:
    """One database per backend with two runs in it, shared by every case: a rejected call
    must leave it unchanged (each case checks), and stored cases use run ids of their own."""
    if request.param == "postgresql":
        _require_postgres()
        assert pg_server is not None
        url = pg_server.create_database(template=migrated_templates["postgresql"])
    else:
        template = migrated_templates["sqlite"].database
        assert template is not None
        path: Path = tmp_path_factory.mktemp("bad-input") / "runs.db"
        shutil.copyfile(template, path)
        url = sqlite_url(path)
    database = TrainingDB(url)
    database.insert_run("run-1", "wandb-1", {"training": {"batch_size": 64}})
    database.update_run_status("run-1", "running", final_loss=1.5)
    database.insert_objective("run-1", "COMT_activity", "COMT_activity_maximize", weight=1.0)
    database.set_tags("run-1", {"owner": "alice"})
    database.log_history("run-1", {"loss": [3.0, 2.0, 1.0]})
    database.insert_run("run-2", None, {})
    yield database, url
    database.dispose()
    if pg_server is not None and request.param == "postgresql":
        pg_server.drop_database(url)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_input(case: Rejected | Stored, seeded: tuple[TrainingDB, URL]) -> None:
    database, url = seeded
    if isinstance(case, Rejected):
        before = table_snapshot(url)
        with pytest.raises(case.error, match=case.message):
            case.call(database)
        assert table_snapshot(url) == before
    else:
        case.call(database)
        case.check(database)
