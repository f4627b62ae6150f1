"""Recording real W&B runs into the database, on SQLite and PostgreSQL.

The runs are the session's real offline runs from ``test_wandb_files.py``; each recorded
run must compare equal, value by value, with what its training script logged, and
recording it again must change no row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

import training_db
from tests.conftest import table_snapshot
from tests.test_wandb_files import (
    RICH_CONFIG,
    GeneratedRun,
    finish_training,
    flatten,
    generated_runs,
    same,
    start_training,
)
from training_db import TrainingDB
from training_db.core.wandb_files import WandbFileError, read_run
from training_db.ops.wandb_import import count_actions, import_directories, settle
from training_db.store.wandb import (
    ConfigObjective,
    ImportResult,
    WandbRunConflictError,
    config_run_id,
    objectives_from_config,
)

W_AND_B_KEYS = {"_step", "_runtime", "_timestamp"}
STATUS_OF = {
    "rich": "completed",
    "long": "completed",
    "killed": "crashed",
    "failed": "failed",
    "raised": "failed",
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GeneratedRun]:
    return generated_runs(tmp_path_factory)


def assert_history_recorded(
    db: TrainingDB, run_id: str, logged: Sequence[Mapping[str, Any]]
) -> None:
    """The stored history is exactly the logged rows: each value at its step, None elsewhere."""
    columns = db.get_history(run_id)
    expected = [flatten(row) for row in logged]
    assert columns["_step"] == list(range(len(expected)))
    keys = set().union(*expected)
    assert set(columns) - W_AND_B_KEYS == keys
    for key in keys:
        for step, row in enumerate(expected):
            if key in row:
                assert same(columns[key][step], row[key]), (key, step, columns[key][step])
            else:
                assert columns[key][step] is None, (key, step)
    assert all(value is not None for value in columns["_timestamp"])


@pytest.mark.parametrize("name", list(STATUS_OF))
def test_each_run_is_recorded_value_by_value_and_twice_changes_nothing(
    db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun], name: str
) -> None:
    run = runs[name]
    log = read_run(run.run_dir)
    result = db.record_wandb_run(run.run_dir)
    assert result.action == "created"
    assert result.run_id == result.wandb_run_id == run.side["wandb_run_id"]
    assert result.status == STATUS_OF[name]
    assert result.history_steps == len(log.history)
    assert result.truncated is log.truncated
    stored = db.get_run(run.side["wandb_run_id"])
    assert stored is not None
    assert stored["status"] == STATUS_OF[name]
    assert stored["wandb_run_id"] == run.side["wandb_run_id"]
    assert stored["config"] == run.side["config"]
    assert stored["started_at"] == log.start_time and stored["ended_at"] == log.end_time
    assert log.start_time is not None and log.end_time is not None
    assert stored["created_at"] == log.start_time
    assert stored["duration_seconds"] == pytest.approx(
        (log.end_time - log.start_time).total_seconds()
    )
    if name != "killed":
        assert len(log.history) == len(run.logged)
    assert_history_recorded(db, stored["run_id"], run.logged[: len(log.history)])

    before = table_snapshot(db_url)
    again = db.record_wandb_run(run.run_dir)
    assert again.action == "unchanged" and again.run_id == result.run_id
    assert table_snapshot(db_url) == before


def test_rich_run_fills_columns_objectives_and_summary(
    db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun]
) -> None:
    run = runs["rich"]
    result = db.record_wandb_run(run.run_dir)
    run_id = run.side["wandb_run_id"]
    assert result.objectives_added == 3
    assert result.history_values == sum(len(flatten(row)) for row in run.logged) + 2 * 300
    stored = db.get_run(run_id)
    assert stored is not None
    assert stored["batch_size"] == 64 and stored["gradient_method"] == "mgda"
    assert stored["num_gpus"] == 4 and stored["seed"] == 7
    assert stored["model_name"] == "mango-7b" and stored["lora_rank"] == 16
    assert stored["num_objectives"] == 3
    assert stored["total_training_steps"] == 299  # the summary's _step
    assert stored["final_loss"] == pytest.approx(1 / 300)
    summary = stored["final_metrics"]
    assert summary["best/score"] == 0.875
    assert summary["layer"] == run.logged[-1]["layer"]
    assert summary["objectives/DRD5_activity_maximize/raw_mean"] is None  # W&B wrote null
    objectives = {row["objective_name"]: row for row in db.get_run_objectives(run_id)}
    assert set(objectives) == {"COMT_activity", "DRD5_activity", "toxicity"}
    comt, drd5, toxicity = (
        objectives["COMT_activity"],
        objectives["DRD5_activity"],
        objectives["toxicity"],
    )
    assert comt["objective_alias"] == "COMT_activity_maximize"
    assert comt["uniprot"] == "P21964" and comt["weight"] == 1.0
    assert comt["direction"] == "maximize"  # from the alias
    assert comt["raw_mean"] == 0.91 and comt["normalized_mean"] == 0.7
    assert drd5["uniprot"] == "P21918" and drd5["weight"] == 0.5
    assert drd5["direction"] == "maximize" and drd5["raw_mean"] is None
    assert toxicity["direction"] == "minimize" and toxicity["raw_mean"] == 0.125
    assert toxicity["uniprot"] is None
    snapshot = table_snapshot(db_url)
    assert len(snapshot["run_history_key_metrics"]) == 300  # train/loss at every step


def test_completes_a_run_inserted_at_launch(
    db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun]
) -> None:
    run = runs["launched"]
    launch_config = {"RUN_ID": "launch-0001", "training": {"batch_size": 32, "seed": 11}}
    db.insert_run("launch-0001", None, launch_config, host="gpu-1")
    db.insert_objective("launch-0001", "COMT_activity", weight=2.0)
    db.log_history("launch-0001", [{"_step": 0, "custom/only_in_db": 1.5}])

    result = db.record_wandb_run(run.run_dir)
    assert result.action == "completed" and result.run_id == "launch-0001"
    assert result.objectives_added == 1
    stored = db.get_run("launch-0001")
    assert stored is not None
    assert stored["wandb_run_id"] == run.side["wandb_run_id"]
    assert stored["status"] == "completed"
    assert stored["config"] == launch_config  # what launch recorded is kept
    assert stored["seed"] == 11 and stored["host"] == "gpu-1"
    assert stored["started_at"] == read_run(run.run_dir).start_time
    objectives = {row["objective_name"]: row for row in db.get_run_objectives("launch-0001")}
    assert objectives["COMT_activity"]["weight"] == 2.0
    assert objectives["QED"]["weight"] == 0.2
    history = db.get_history("launch-0001")
    assert history["custom/only_in_db"][0] == 1.5
    assert db.get_history("launch-0001", ["train/loss"])["train/loss"] == [
        row["train/loss"] for row in run.logged
    ]
    assert db.query_runs() and len(db.query_runs()) == 1  # no second run

    before = table_snapshot(db_url)
    assert db.record_wandb_run(run.run_dir).action == "unchanged"
    assert table_snapshot(db_url) == before


def test_explicit_run_id_and_conflicting_ids_write_nothing(
    db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun]
) -> None:
    failed, raised = runs["failed"], runs["raised"]
    assert db.record_wandb_run(failed.run_dir, "my-run").run_id == "my-run"
    found = db.record_wandb_run(failed.run_dir)  # found again by its W&B run id
    assert found.action == "unchanged" and found.run_id == "my-run"
    db.insert_run("taken", "another-wandb-run", None)
    before = table_snapshot(db_url)
    with pytest.raises(WandbRunConflictError, match="is recorded as run 'my-run'"):
        db.record_wandb_run(failed.run_dir, "other")
    with pytest.raises(WandbRunConflictError, match="is W&B run 'another-wandb-run'"):
        db.record_wandb_run(raised.run_dir, "taken")
    with pytest.raises(ValueError, match="cannot record a W&B run as 'launched'"):
        db.record_wandb_run(raised.run_dir, status="launched")
    with pytest.raises(ValueError, match="run_id must not be empty"):
        db.record_wandb_run(raised.run_dir, " ")
    assert table_snapshot(db_url) == before


def test_dry_run_writes_nothing(db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun]) -> None:
    run = runs["raised"]
    before = table_snapshot(db_url)
    preview = db.record_wandb_run(run.run_dir, dry_run=True)
    assert preview.dry_run and preview.action == "created" and preview.status == "failed"
    assert preview.history_steps == 20 and preview.history_values > 20
    assert table_snapshot(db_url) == before
    db.insert_run("launched-by-hand", None, None)
    assert db.record_wandb_run(run.run_dir, "launched-by-hand", dry_run=True).action == (
        "completed"
    )
    db.record_wandb_run(run.run_dir)
    assert db.record_wandb_run(run.run_dir, dry_run=True).action == "unchanged"


def test_a_log_that_grew_is_completed(
    db: TrainingDB, runs: dict[str, GeneratedRun], tmp_path: Path
) -> None:
    """A run recorded while live (or crashed, then resumed) is completed by the whole log."""
    run = runs["rich"]
    data = run.run_file.read_bytes()
    partial_dir = tmp_path / "wandb" / run.run_dir.name
    partial_dir.mkdir(parents=True)
    (partial_dir / run.run_file.name).write_bytes(data[: len(data) // 2])
    first = db.record_wandb_run(partial_dir)
    assert first.action == "created" and first.status == "crashed" and first.truncated
    assert 0 < first.history_steps < 300
    second = db.record_wandb_run(run.run_dir)
    assert second.action == "completed" and second.status == "completed"
    stored = db.get_run(run.side["wandb_run_id"])
    assert stored is not None and stored["status"] == "completed"
    assert stored["ended_at"] == read_run(run.run_dir).end_time
    assert_history_recorded(db, stored["run_id"], run.logged)


def test_status_running_records_without_finishing(
    db: TrainingDB, runs: dict[str, GeneratedRun]
) -> None:
    run = runs["killed"]
    live = db.record_wandb_run(run.run_dir, status="running")
    assert live.action == "created" and live.status == "running"
    stored = db.get_run(run.side["wandb_run_id"])
    assert stored is not None
    assert stored["status"] == "running" and stored["ended_at"] is None
    assert stored["final_metrics"]["_step"] >= 1
    assert db.record_wandb_run(run.run_dir, status="running").action == "unchanged"
    ended = db.record_wandb_run(run.run_dir)
    assert ended.action == "completed" and ended.status == "crashed"
    stored = db.get_run(run.side["wandb_run_id"])
    assert stored is not None and stored["status"] == "crashed"
    assert stored["ended_at"] == read_run(run.run_dir).end_time


def test_module_level_functions_take_a_path(
    default_db: TrainingDB, runs: dict[str, GeneratedRun]
) -> None:
    run = runs["failed"]
    arguments = ["from-path", str(run.run_dir)]
    assert json.loads(json.dumps(arguments)) == arguments  # spoolable as JSON
    result = training_db.finish_from_wandb(*arguments)
    assert isinstance(result, ImportResult)
    assert result.action == "created" and result.run_id == "from-path"
    assert training_db.record_wandb_run(run.run_dir).action == "unchanged"
    stored = training_db.get_run("from-path")
    assert stored is not None and stored["status"] == "failed"


def test_finish_from_wandb_at_the_end_of_a_real_training_script(
    db: TrainingDB, db_url: URL, tmp_path: Path
) -> None:
    """The one-liner in a training script: once while the run is live, once after finish."""
    db.insert_run("e2e-1", None, {"training": {"batch_size": 8}})
    spec = {
        "steps": 40,
        "mode": "finish",
        "config": {"training": {"batch_size": 8}, "objectives": [{"name": "QED"}]},
        "finish_from_wandb": {
            "db_url": db_url.render_as_string(hide_password=False),
            "run_id": "e2e-1",
        },
    }
    workdir = tmp_path / "e2e"
    run = finish_training("e2e", start_training(spec, workdir), workdir)
    assert run.side["live_result"] == {
        "action": "completed",
        "status": "running",
        "run_id": "e2e-1",
    }
    assert run.side["finished_result"] == {
        "action": "completed",
        "status": "completed",
        "run_id": "e2e-1",
    }
    stored = db.get_run("e2e-1")
    assert stored is not None
    assert stored["status"] == "completed"
    assert stored["wandb_run_id"] == run.side["wandb_run_id"]
    assert [row["objective_name"] for row in db.get_run_objectives("e2e-1")] == ["QED"]
    assert_history_recorded(db, "e2e-1", run.logged)


def test_import_directories_goes_on_past_bad_directories(
    db: TrainingDB, db_url: URL, runs: dict[str, GeneratedRun], tmp_path: Path
) -> None:
    tree = tmp_path / "backfill"
    for index, name in enumerate(("rich", "failed", "killed", "launched")):
        target = tree / f"project-{index}" / "wandb" / runs[name].run_dir.name
        shutil.copytree(runs[name].run_dir, target)
    broken = tree / "project-9" / "wandb" / "run-20250101_000000-broken"
    broken.mkdir(parents=True)
    (broken / "run-broken.wandb").write_bytes(b"not a transaction log")
    missing = tmp_path / "no-such-folder"

    before = table_snapshot(db_url)
    preview = import_directories([tree], db=db, dry_run=True)
    assert count_actions(preview) == {"created": 4, "completed": 0, "unchanged": 0, "failed": 1}
    assert all(result.dry_run for result in preview)
    assert table_snapshot(db_url) == before

    seen: list[tuple[int, int, str]] = []
    results = import_directories(
        [tree, missing],
        db=db,
        progress=lambda done, total, result: seen.append((done, total, result.action)),
    )
    assert count_actions(results) == {"created": 4, "completed": 0, "unchanged": 0, "failed": 2}
    assert [(done, total) for done, total, _ in seen] == [(index, 6) for index in range(1, 7)]
    failures = {Path(result.path).name: result.error for result in results if result.error}
    assert "no such directory" in (failures[missing.name] or "")
    assert (failures[broken.name] or "").startswith("WandbFileError: ")
    recorded = {result.run_id for result in results if result.action == "created"}
    assert recorded == {
        runs["rich"].side["wandb_run_id"],
        runs["failed"].side["wandb_run_id"],
        runs["killed"].side["wandb_run_id"],
        "launch-0001",  # the RUN_ID in its config
    }
    assert_history_recorded(db, "launch-0001", runs["launched"].logged)

    after = table_snapshot(db_url)
    again = import_directories(tree, db=db)
    assert count_actions(again) == {"created": 0, "completed": 0, "unchanged": 4, "failed": 1}
    assert table_snapshot(db_url) == after


# --- reading the config -------------------------------------------------------------------------


def test_objectives_from_config() -> None:
    assert objectives_from_config(RICH_CONFIG) == [
        ConfigObjective("COMT_activity", "COMT_activity_maximize", 1.0, "maximize", "P21964"),
        ConfigObjective("DRD5_activity", "DRD5_activity_maximize", 0.5, "maximize", "P21918"),
        ConfigObjective("toxicity", "toxicity_minimize", 0.25, "minimize", None),
    ]
    as_mapping = {
        "objectives": {
            "logp": {"direction": "sideways", "weight": "high", "uniprot": "Q1", "params": 3},
            "qed": {"alias": "qed_maximize", "weight": 2},
            "": {"weight": 1.0},
            "bad": "not a dict",
        }
    }
    assert objectives_from_config(as_mapping) == [
        ConfigObjective("logp", None, None, None, "Q1"),
        ConfigObjective("qed", "qed_maximize", 2.0, "maximize", None),
    ]
    duplicated = {"objectives": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}, "x"]}
    assert objectives_from_config(duplicated) == [ConfigObjective("a", weight=1.0)]
    assert objectives_from_config({"objectives": "all of them"}) == []
    assert objectives_from_config({}) == []


def test_config_run_id() -> None:
    assert config_run_id({"RUN_ID": "a", "run_id": "b"}) == "a"
    assert config_run_id({"RUN_ID": "", "run_id": "b"}) == "b"
    assert config_run_id({"RUN_ID": 7}) is None
    assert config_run_id({}) is None


def test_a_log_without_any_run_id_needs_one(db: TrainingDB, tmp_path: Path) -> None:
    path = tmp_path / "wandb" / "offline-run-x" / "run-.wandb"
    path.parent.mkdir(parents=True)
    path.write_bytes(b":W&B\xe1\xbe\x00")  # a header and nothing else: no run record yet
    with pytest.raises(WandbFileError, match="pass run_id"):
        db.record_wandb_run(path)
    result = db.record_wandb_run(path, "named")
    assert result.action == "created" and result.status == "crashed"
    stored = db.get_run("named")
    assert stored is not None and stored["config"] is None and stored["wandb_run_id"] is None
    assert isinstance(stored["ended_at"], dt.datetime)


def test_settle_live_and_finished_run_objects(
    runs: dict[str, GeneratedRun], caplog: pytest.LogCaptureFixture
) -> None:
    """How finish_from_wandb treats a Run object (the real one is used end to end above)."""
    killed = runs["killed"].run_file
    live = types.SimpleNamespace(settings=types.SimpleNamespace(sync_file=str(killed)))
    live._is_finished = False
    with caplog.at_level(logging.WARNING, logger="training_db.store.wandb"):
        assert settle(live, None, timeout=5) == (killed, "running")
        assert settle(live, "crashed", timeout=5) == (killed, "crashed")
    assert "still live" in caplog.text
    caplog.clear()
    finished = types.SimpleNamespace(dir=str(killed.parent / "files"), _is_finished=True)
    with caplog.at_level(logging.WARNING, logger="training_db.store.wandb"):
        assert settle(finished, None, timeout=0.2) == (killed, None)  # no exit record: waited
    assert "no exit record after" in caplog.text
    caplog.clear()
    done = runs["raised"].run_file
    as_path = str(done.parent)
    with caplog.at_level(logging.WARNING, logger="training_db.store.wandb"):
        assert settle(types.SimpleNamespace(dir=str(done.parent / "files")), None, 5) == (
            done,
            None,
        )
        assert settle(as_path, None, timeout=5) == (done, None)
    assert caplog.text == ""


def test_any_difference_from_the_log_is_recorded_again(
    db: TrainingDB, runs: dict[str, GeneratedRun]
) -> None:
    """``unchanged`` only when everything the log records is there: each change below is
    undone by recording the log again."""
    run = runs["rich"]
    run_id = run.side["wandb_run_id"]
    log = read_run(run.run_dir)
    db.record_wandb_run(run.run_dir)
    changes = {
        "status": lambda: db.update_run_status(run_id, "failed"),
        "end time": lambda: db.update_run_status(
            run_id, "completed", ended_at="2030-01-01T00:00:00Z"
        ),
        "summary": lambda: db.finish_run(run_id, "completed", {"best/score": 0.5}),
        "objectives": lambda: db.delete_run_objectives(run_id),
        "one history value": lambda: db.log_history(run_id, [{"_step": 5, "train/loss": 9.0}]),
    }
    for change, make in changes.items():
        make()
        assert db.record_wandb_run(run.run_dir).action == "completed", change
        assert db.record_wandb_run(run.run_dir).action == "unchanged", change
    stored = db.get_run(run_id)
    assert stored is not None
    assert stored["status"] == "completed" and stored["ended_at"] == log.end_time
    assert stored["final_metrics"]["best/score"] == 0.875
    assert len(db.get_run_objectives(run_id)) == 3
    assert_history_recorded(db, run_id, run.logged)


def test_a_run_launched_without_config_gets_the_logged_one(
    db: TrainingDB, runs: dict[str, GeneratedRun]
) -> None:
    run = runs["rich"]
    db.insert_run("bare", None, None)
    result = db.record_wandb_run(run.run_dir, "bare")
    assert result.action == "completed"
    stored = db.get_run("bare")
    assert stored is not None
    assert stored["config"] == run.side["config"]
    assert stored["batch_size"] == 64 and stored["num_objectives"] == 3
    host = read_run(run.run_dir).host
    assert host is not None and stored["host"] == host
