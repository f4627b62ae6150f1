"""The runs repository on both backends: lifecycle, reads, errors that write nothing."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import URL
from sqlalchemy.orm import Session

from tests.conftest import table_snapshot
from training_db import (
    DuplicateWandbRunIdError,
    RunAlreadyExistsError,
    RunNotFoundError,
    TrainingDB,
)
from training_db.core import jsoncodec
from training_db.schema import RUN_STATUSES, TrainingRun
from training_db.store import runs

UTC = dt.timezone.utc
Config = Callable[..., dict[str, Any]]


def test_insert_run_stores_config_and_extracted_columns(
    db: TrainingDB, make_config: Config
) -> None:
    config = make_config(gradient_accumulation_steps=4, seed=7)
    db.insert_run(
        "run-1",
        None,
        config,
        "XYZ789",
        run_name="mgda test",
        config_file_path="/cfg/mgda.yaml",
        host="ec2",
        instance_id="i-abc",
    )
    run = db.get_run("run-1")
    assert run is not None
    assert run["status"] == "launched"
    assert run["chain_of_custody_id"] == "XYZ789"
    assert run["host"] == "ec2" and run["instance_id"] == "i-abc"
    assert run["run_name"] == "mgda test"
    assert run["batch_size"] == 64
    assert run["learning_rate"] == pytest.approx(1e-4)
    assert run["gradient_method"] == "mgda"
    assert run["num_gpus"] == 4
    assert run["num_objectives"] == 2  # len(config['objectives'])
    assert run["num_scaffolds"] is None
    assert run["gradient_accumulation_steps"] == 4
    assert run["seed"] == 7
    assert run["model_name"] == "mango-7b"  # found in another top-level section
    assert run["lora_rank"] == 16
    assert json.loads(run["config_json"]) == config
    assert run["config"] == config
    assert run["final_metrics_json"] is None
    assert run["tags"] == {}
    assert run["created_at"].tzinfo is not None
    assert run["created_at_db"].tzinfo is not None


def test_get_run_returns_every_column(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    run = db.get_run("run-1")
    assert run is not None
    assert set(TrainingRun.__table__.columns.keys()) <= set(run)


def test_get_run_unknown_is_none(db: TrainingDB) -> None:
    assert db.get_run("nope") is None


def test_lifecycle_launch_running_completed(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    start = dt.datetime(2026, 1, 1, 12, 0, 0)  # naive: taken as UTC
    db.update_run_status(
        "run-1", "running", wandb_run_id="w-1", wandb_url="https://w/1", started_at=start
    )
    running = db.get_run("run-1")
    assert running is not None
    assert running["status"] == "running"
    assert running["started_at"] == start.replace(tzinfo=UTC)
    assert running["wandb_run_id"] == "w-1"
    assert running["ended_at"] is None

    db.update_run_status("run-1", "completed", ended_at="2026-01-01T14:30:00Z")
    done = db.get_run("run-1")
    assert done is not None
    assert done["status"] == "completed"
    assert done["ended_at"] == dt.datetime(2026, 1, 1, 14, 30, tzinfo=UTC)
    assert done["duration_seconds"] == pytest.approx(2.5 * 3600)


def test_running_without_started_at_uses_now(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    before = dt.datetime.now(UTC)
    db.update_run_status("run-1", "running")
    run = db.get_run("run-1")
    assert run is not None
    assert before - dt.timedelta(seconds=5) <= run["started_at"] <= dt.datetime.now(UTC)


def test_aware_timestamps_are_converted_to_utc(db: TrainingDB, make_config: Config) -> None:
    tokyo = dt.timezone(dt.timedelta(hours=9))
    db.insert_run(
        "run-1", None, make_config(), created_at=dt.datetime(2026, 3, 1, 9, 0, tzinfo=tokyo)
    )
    run = db.get_run("run-1")
    assert run is not None
    assert run["created_at"] == dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert run["created_at"].utcoffset() == dt.timedelta(0)


def test_explicit_duration_wins(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_run_status("run-1", "running")
    db.update_run_status("run-1", "failed", duration_seconds=3600)
    run = db.get_run("run-1")
    assert run is not None
    assert run["duration_seconds"] == 3600
    assert run["ended_at"] is not None


def test_summary_round_trips_nan_and_fills_columns(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    summary = {
        "train/loss": float("nan"),
        "_step": 1200,
        "_runtime": 3605.5,
        "objectives/COMT_activity_maximize/raw_mean": 0.85,
        "best": float("inf"),
        "worst": float("-inf"),
        "git_commit": "a135c627",
        "nested": {"deep": [1, 2.5, None, "ünïcødé 🥭"]},
    }
    db.update_run_status("run-1", "completed", final_metrics_json=summary)
    run = db.get_run("run-1")
    assert run is not None
    stored = json.loads(run["final_metrics_json"])
    assert math.isnan(stored["train/loss"])
    assert stored["best"] == math.inf and stored["worst"] == -math.inf
    assert stored["nested"] == summary["nested"]
    assert run["final_loss"] is None  # a NaN loss is no number for the column
    assert run["total_training_steps"] == 1200
    assert run["duration_seconds"] == pytest.approx(3605.5)


def test_explicit_final_loss_overrides_summary(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_run_status(
        "run-1",
        "completed",
        final_metrics_json={"train/loss": 0.5},
        final_loss=0.25,
        total_training_steps=10,
    )
    run = db.get_run("run-1")
    assert run is not None
    assert run["final_loss"] == 0.25
    assert run["total_training_steps"] == 10


def test_attachments(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.attach_blog_post("run-1", "https://blog/post")
    db.attach_conversation("run-1", "conversations/run-1.json")
    run = db.get_run("run-1")
    assert run is not None
    assert run["blog_post_url"] == "https://blog/post"
    assert run["conversation_s3_key"] == "conversations/run-1.json"
    assert run["status"] == "launched"


def test_attach_crash_data_marks_crashed(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_run_status("run-1", "running", started_at="2026-01-01T00:00:00+00:00")
    db.attach_crash_data("run-1", "e.log", "report.md", "analysis.md")
    run = db.get_run("run-1")
    assert run is not None
    assert run["status"] == "crashed"
    assert run["error_log_s3_key"] == "e.log"
    assert run["crash_report_s3_key"] == "report.md"
    assert run["crash_analysis_s3_key"] == "analysis.md"
    assert run["ended_at"] is not None
    assert run["duration_seconds"] is not None and run["duration_seconds"] > 0


def test_attach_crash_data_keeps_existing_ended_at(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    db.update_run_status("run-1", "failed", ended_at="2026-01-02T00:00:00Z")
    db.attach_crash_data("run-1", "e", "r", "a")
    run = db.get_run("run-1")
    assert run is not None
    assert run["ended_at"] == dt.datetime(2026, 1, 2, tzinfo=UTC)


def test_updated_at_db_moves_on_change(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    first = db.get_run("run-1")
    db.attach_blog_post("run-1", "https://b")
    second = db.get_run("run-1")
    assert first is not None and second is not None
    assert second["updated_at_db"] > first["updated_at_db"]
    assert second["created_at_db"] == first["created_at_db"]


def test_get_stats_counts_every_status(db: TrainingDB, make_config: Config) -> None:
    empty = db.get_stats()
    assert empty == {
        "total_runs": 0,
        **dict.fromkeys(RUN_STATUSES, 0),
        "with_blog_posts": 0,
        "with_crash_analysis": 0,
    }
    for index in range(3):
        db.insert_run(f"run-{index}", None, make_config())
    db.update_run_status("run-0", "running")
    db.attach_crash_data("run-1", None, None, "analysis.md")
    db.attach_blog_post("run-2", "https://b")
    stats = db.get_stats()
    assert stats["total_runs"] == 3
    assert stats["running"] == 1 and stats["crashed"] == 1 and stats["launched"] == 1
    assert stats["completed"] == 0
    assert stats["with_blog_posts"] == 1 and stats["with_crash_analysis"] == 1


# --- errors: a clear exception and nothing written -----------------------------------------


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "at most 255"),
        (42, "must be a string"),
        (None, "must be a string"),
        ("a\x00b", "NUL"),
    ],
)
def test_bad_run_id_rejected_before_any_write(
    db: TrainingDB, db_url: URL, make_config: Config, run_id: Any, message: str
) -> None:
    db.init_db()
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match=message):
        db.insert_run(run_id, None, make_config())
    assert table_snapshot(db_url) == before


def test_run_id_of_255_characters_is_fine(db: TrainingDB, make_config: Config) -> None:
    run_id = "r" * 255
    db.insert_run(run_id, None, make_config())
    assert db.get_run(run_id) is not None


def test_duplicate_run_id(db: TrainingDB, db_url: URL, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config(), run_name="first")
    before = table_snapshot(db_url)
    with pytest.raises(RunAlreadyExistsError, match="run-1"):
        db.insert_run("run-1", None, make_config(batch_size=8), run_name="second")
    assert table_snapshot(db_url) == before


def test_duplicate_wandb_run_id(db: TrainingDB, db_url: URL, make_config: Config) -> None:
    db.insert_run("run-1", "w-1", make_config())
    db.insert_run("run-2", None, make_config())
    before = table_snapshot(db_url)
    with pytest.raises(DuplicateWandbRunIdError, match="w-1"):
        db.insert_run("run-3", "w-1", make_config())
    with pytest.raises(DuplicateWandbRunIdError, match="run-1"):
        db.update_run_status("run-2", "running", wandb_run_id="w-1")
    assert table_snapshot(db_url) == before


def test_unknown_status(db: TrainingDB, db_url: URL, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match="launched, running, completed, failed, crashed"):
        db.update_run_status("run-1", "finished")
    assert table_snapshot(db_url) == before


def test_unknown_kwarg_raises(db: TrainingDB, make_config: Config) -> None:
    db.insert_run("run-1", None, make_config())
    with pytest.raises(TypeError, match="bogus"):
        db.update_run_status("run-1", "running", bogus=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_seconds": "long"}, "duration_seconds must be a number"),
        ({"total_training_steps": 1.5}, "whole number"),
        ({"started_at": "yesterday"}, "ISO 8601"),
        ({"final_metrics_json": [1, 2]}, "must be a dict"),
        ({"final_metrics_json": {"x": object()}}, r"final_metrics_json\.x"),
        ({"wandb_url": 5}, "wandb_url must be a string"),
    ],
)
def test_bad_update_values_write_nothing(
    db: TrainingDB, db_url: URL, make_config: Config, kwargs: dict[str, Any], message: str
) -> None:
    db.insert_run("run-1", None, make_config())
    before = table_snapshot(db_url)
    with pytest.raises(ValueError, match=message):
        db.update_run_status("run-1", "completed", **kwargs)
    assert table_snapshot(db_url) == before


def test_unserialisable_config_names_the_key_path(
    db: TrainingDB, db_url: URL, make_config: Config
) -> None:
    db.init_db()
    before = table_snapshot(db_url)
    config = make_config(optimizer=object())
    with pytest.raises(ValueError, match=r"config_dict\.training\.optimizer"):
        db.insert_run("run-1", None, config)
    assert table_snapshot(db_url) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.update_run_status("ghost", "running"),
        lambda db: db.attach_blog_post("ghost", "u"),
        lambda db: db.attach_conversation("ghost", "k"),
        lambda db: db.attach_crash_data("ghost", "a", "b", "c"),
        lambda db: db.set_tags("ghost", {"a": 1}),
        lambda db: db.get_tags("ghost"),
        lambda db: db.delete_tag("ghost", "a"),
    ],
)
def test_unknown_run_raises_not_found(
    db: TrainingDB, db_url: URL, call: Callable[[TrainingDB], object]
) -> None:
    db.init_db()
    before = table_snapshot(db_url)
    with pytest.raises(RunNotFoundError, match="ghost"):
        call(db)
    assert table_snapshot(db_url) == before


def test_not_found_error_is_a_lookup_error(db: TrainingDB) -> None:
    with pytest.raises(LookupError):
        db.update_run_status("ghost", "running")


# --- what goes in comes out ------------------------------------------------------------------


def test_unicode_and_big_config(db: TrainingDB) -> None:
    config = {
        "name": "测试 🥭 ñandú",
        "training": {"batch_size": 32},
        "blob": ["x" * 1000 for _ in range(1000)],  # ~1 MB
        "deep": {"a": {"b": {"c": {"d": [1, {"e": None}]}}}},
    }
    db.insert_run("🥭-run", None, config, run_name="emoji 🥭 run")
    run = db.get_run("🥭-run")
    assert run is not None
    assert run["config"] == config
    assert json.loads(run["config_json"]) == config
    assert run["run_name"] == "emoji 🥭 run"


def test_config_special_values(db: TrainingDB) -> None:
    import enum
    from pathlib import Path

    class Mode(enum.Enum):
        FAST = "fast"

    config = {
        "path": Path("/data/train.jsonl"),
        "mode": Mode.FAST,
        "when": dt.datetime(2026, 1, 1, tzinfo=UTC),
        "tuple": (1, 2),
        "nan": float("nan"),
        "big": 1e300,
        "small": 5e-324,
        "nul": "a\x00b",
        "tagged": {"$float": "NaN"},  # a user dict that looks like our encoding
    }
    db.insert_run("run-1", None, config)
    run = db.get_run("run-1")
    assert run is not None
    stored = run["config"]
    assert stored["path"] == "/data/train.jsonl"
    assert stored["mode"] == "fast"
    assert stored["when"] == "2026-01-01T00:00:00+00:00"
    assert stored["tuple"] == [1, 2]
    assert math.isnan(stored["nan"])
    assert stored["big"] == 1e300 and isinstance(stored["big"], float)
    assert stored["small"] == 5e-324
    assert stored["nul"] == "a\x00b"
    assert stored["tagged"] == {"$float": "NaN"}


def test_numpy_values_are_stored_naturally(db: TrainingDB) -> None:
    np = pytest.importorskip("numpy")
    config = {
        "training": {"batch_size": np.int64(16), "learning_rate": np.float32(0.5)},
        "array": np.arange(3),
    }
    db.insert_run("run-1", None, config)
    run = db.get_run("run-1")
    assert run is not None
    assert run["batch_size"] == 16
    assert run["learning_rate"] == 0.5
    assert run["config"]["array"] == [0, 1, 2]


def test_same_answers_on_both_backends_shape(db: TrainingDB, make_config: Config) -> None:
    """JSON text is key-sorted, so it is byte-identical on SQLite and PostgreSQL."""
    config = {"b": 1, "a": {"z": 1, "y": 2}, "training": {"batch_size": 8}}
    db.insert_run("run-1", None, config)
    run = db.get_run("run-1")
    assert run is not None
    assert run["config_json"] == json.dumps(config, sort_keys=True, ensure_ascii=False)


# --- run dicts: config_json / final_metrics_json are made on first read ------------------------

DOCUMENT = {"b": [1, math.nan, {"$float": "user"}], "a": {"inf": math.inf, "nul": "x\x00y"}}
SUMMARY = {"train/loss": 0.25, "nan": math.nan, "name": "é"}
TEXT_KEYS = ("config_json", "final_metrics_json")
READS: dict[str, Callable[[TrainingDB], dict[str, Any]]] = {
    "get_run": lambda db: db.get_run("run-1") or {},
    "query_runs": lambda db: db.query_runs()[0],
    "query_runs_by_objectives": lambda db: db.query_runs_by_objectives({"QED": {"min": 0.5}})[0],
}


@pytest.fixture
def stored(db: TrainingDB) -> TrainingDB:
    db.insert_run("run-1", "wb-1", DOCUMENT, run_name="special")
    db.update_run_status("run-1", "completed", final_metrics_json=SUMMARY)
    db.update_objective_metric("run-1", "QED", "raw_mean", 0.9)
    db.set_tags("run-1", {"team": "a"})
    return db


@pytest.mark.parametrize("read", READS)
def test_json_text_keys_hold_sorted_text_of_the_documents(stored: TrainingDB, read: str) -> None:
    run = READS[read](stored)
    keys = list(run)
    assert keys[: len(TrainingRun.__table__.columns)] == list(TrainingRun.__table__.columns.keys())
    assert keys.index("final_metrics_json") < keys.index("config") < keys.index("tags")
    assert all(key in run for key in TEXT_KEYS)
    assert run["config_json"] == jsoncodec.dumps(run["config"])
    assert run.get("final_metrics_json") == jsoncodec.dumps(run["final_metrics"])
    assert '"nan": NaN' in run["final_metrics_json"] and '"name": "é"' in run["final_metrics_json"]
    assert json.loads(run["config_json"])["b"][2] == {"$float": "user"}


def _plain(run: dict[str, Any]) -> dict[str, Any]:
    """The run as a plain dict, read key by key (the same value objects)."""
    keys = run.keys()
    return {key: run[key] for key in keys}


def _updated(run: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = {}
    target.update(run)
    return target


# Every way of reading a run dict as a whole, each given a run whose text is not made yet.
WHOLE_VIEWS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict()": dict,
    "{**run}": lambda run: {**run},
    "copy()": lambda run: run.copy(),
    "run | {}": lambda run: run | {},
    "{} | run": lambda run: {} | run,
    "update()": _updated,
    "items()": lambda run: dict(list(run.items())),
    "values()": lambda run: dict(zip(list(run), list(run.values()), strict=True)),
    "copy.copy": lambda run: dict(dict.items(copy.copy(run))),
    "copy.deepcopy": lambda run: dict(dict.items(copy.deepcopy(run))),
}


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("view", WHOLE_VIEWS)
def test_whole_dict_reads_see_the_json_text(stored: TrainingDB, read: str, view: str) -> None:
    run = READS[read](stored)
    found = WHOLE_VIEWS[view](run)
    assert list(found) == list(run)
    for key in TEXT_KEYS:
        assert isinstance(found[key], str) and found[key] == run[key]
    if view != "copy.deepcopy":  # the others share the value objects (NaN equals itself)
        assert found == _plain(run)


@pytest.mark.parametrize("read", READS)
def test_json_repr_and_comparisons_see_the_json_text(stored: TrainingDB, read: str) -> None:
    first = READS[read](stored)
    expected = _plain(first)
    assert json.dumps(READS[read](stored), default=str) == json.dumps(expected, default=str)
    assert repr(READS[read](stored)) == repr(expected)
    for compare in (
        lambda run, plain: run == plain,
        lambda run, plain: plain == run,
        lambda run, plain: (run != plain) is False,
        lambda run, plain: (plain != run) is False,
        lambda run, plain: [run] == [plain],
    ):
        run = READS[read](stored)
        plain = {**expected, "config": run["config"], "final_metrics": run["final_metrics"]}
        assert compare(run, plain)
    left, right = READS[read](stored), READS[read](stored)
    left["config"], left["final_metrics"] = right["config"], right["final_metrics"]
    assert left == right and (left != right) is False
    run = READS[read](stored)
    changed = {**expected, "config": run["config"], "final_metrics": run["final_metrics"]}
    changed["config_json"] = "{}"
    assert run != changed and (run == changed) is False


def test_json_text_is_of_the_stored_document(stored: TrainingDB) -> None:
    run = READS["get_run"](stored)
    text = jsoncodec.dumps(run["config"])
    run["config"]["b"] = "changed before the text was read"
    assert run["config_json"] == text


def test_json_text_keys_behave_as_dict_keys(stored: TrainingDB) -> None:
    run = READS["query_runs"](stored)
    expected = _plain(READS["query_runs"](stored))
    assert run.setdefault("config_json", "unused") == expected["config_json"]
    assert run.pop("final_metrics_json") == expected["final_metrics_json"]
    assert "final_metrics_json" not in run and "final_metrics_json" not in dict(run)
    assert run.get("final_metrics_json", "gone") == "gone"
    run["config_json"] = "mine"
    assert run["config_json"] == "mine" and dict(run)["config_json"] == "mine"

    other = READS["get_run"](stored)
    popped = []
    while other:
        popped.append(other.popitem())
    assert dict(popped)["final_metrics_json"] == expected["final_metrics_json"]

    deleted = READS["get_run"](stored)
    del deleted["config_json"]
    assert "config_json" not in dict(deleted) and deleted.get("config_json") is None
    with pytest.raises(KeyError):
        deleted["config_json"]


def test_run_without_documents_has_none_text(db: TrainingDB) -> None:
    db.insert_run("bare", None, None)
    run = db.get_run("bare")
    assert run is not None
    assert run["config_json"] is None and run["config"] is None
    assert dict(run)["final_metrics_json"] is None and run["final_metrics"] is None


def test_repository_run_dicts_pickle(stored: TrainingDB) -> None:
    with Session(stored.engine) as session:
        run = runs.get_run(session, "run-1")
        listed = runs.query_runs(session)[0]
    assert run is not None
    for record in (run, listed):
        restored = pickle.loads(pickle.dumps(record))
        assert list(restored) == list(record)
        assert json.dumps(restored, default=str) == json.dumps(record, default=str)
        assert "history_json" not in record and record.get("history_json") is None
