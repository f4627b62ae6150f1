"""Names that match nothing: the library raises `UnknownNameError` with the closest known
names, on both backends; a known name that no row matches keeps its empty answer."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

import training_db
from training_db import TrainingDB
from training_db.core.errors import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    UnknownNameError,
)
from training_db.core.settings import sqlite_url
from training_db.core.suggest import did_you_mean, suggestions
from training_db.ops.transfer import TransferError, restore_sqlite
from training_db.schema import migrations
from training_db.store import filters

UTC = dt.UTC

# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "known", "expected"),
    [
        ("complete", ["launched", "running", "completed", "failed", "crashed"], ["completed"]),
        ("loss", ["final_loss", "run_id", "status"], ["final_loss"]),
        ("batchsize", ["batch_size", "beta", "seed"], ["batch_size"]),
        ("COMT_activty", ["COMT_activity", "DRD5_activity", "QED"], ["COMT_activity"]),
        ("Completed", ["completed", "crashed"], ["completed"]),
        ("nothing_like_it", ["final_loss", "run_id"], []),
        ("x", [], []),
    ],
)
def test_suggestions(name: str, known: list[str], expected: list[str]) -> None:
    assert suggestions(name, known) == expected


def test_did_you_mean_text() -> None:
    assert did_you_mean("loss", ["final_loss"]) == "; did you mean 'final_loss'?"
    assert did_you_mean("a/los", ["a/loss", "a/lost"]) == "; did you mean 'a/loss' or 'a/lost'?"
    assert did_you_mean("zzz", ["final_loss"]) == ""


def test_unknown_name_error_is_a_value_error_and_pickles() -> None:
    error = UnknownNameError("unknown x", name="x", suggestions=["y"])
    assert isinstance(error, InvalidArgumentError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.name, copy.suggestions) == ("unknown x", "x", ("y",))


# --- closed vocabularies: status, filter keys, order_by, metric types -------------------------


def test_unknown_status_filter(db: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'completed'") as caught:
        db.query_runs({"status": "complete"})
    assert caught.value.suggestions == ("completed",)


def test_unknown_status_argument(db: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'completed'"):
        db.get_objective_statistics("QED", status="complete")


def test_unknown_filter_key(db: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'batch_size'"):
        db.query_runs({"batchsize": 64})


def test_order_by_suggests_a_column_containing_the_name(db: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'final_loss'") as caught:
        db.query_runs(order_by="loss DESC")
    assert "columns:" not in str(caught.value)  # the list only when nothing is close
    with pytest.raises(UnknownNameError, match="columns: batch_size"):
        db.query_runs(order_by="zzzz")


def test_unknown_metric_type(db: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'raw_mean'"):
        db.get_objective_statistics("QED", "raw_men")


# --- JSON paths -------------------------------------------------------------------------------


@pytest.fixture
def runs(db: TrainingDB) -> TrainingDB:
    for index, batch_size in enumerate((32, 64)):
        db.insert_run(
            f"r{index}",
            None,
            {"training": {"batch_size": batch_size, "lr": 1e-4}, "model": {"name": "m"}},
            created_at=dt.datetime(2026, 1, index + 1, tzinfo=UTC),
        )
        db.update_run_status(
            f"r{index}", "running", final_metrics_json={"train/loss": 0.5, "eval/kl": 0.1}
        )
        db.set_tags(f"r{index}", {"owner": "alice"})
    return db


def test_config_path_no_run_has(runs: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'training\.batch_size'") as caught:
        runs.query_runs({"config.training.batchsize": {"gte": 64}})
    assert caught.value.suggestions == ("config.training.batch_size",)


def test_summary_key_no_run_has(runs: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'train/loss'"):
        runs.query_runs({"summary.train/los": {"lt": 1}})


def test_tag_no_run_has(runs: TrainingDB) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'owner'"):
        runs.query_runs({"tag.ownr": "alice"})


def test_known_paths_with_no_match_are_empty(runs: TrainingDB) -> None:
    assert runs.query_runs({"config.training.batch_size": {"gt": 1000}}) == []
    assert runs.query_runs({"summary.train/loss": {"gt": 1}}) == []
    assert runs.query_runs({"tag.owner": "bob"}) == []
    # Asking for a path's absence is never a mistake.
    assert runs.query_runs({"config.training.batchsize": None}) != []


def test_a_query_with_matches_is_answered(runs: TrainingDB) -> None:
    found = runs.query_runs({"status": "running", "config.training.batch_size": 64})
    assert [run["run_id"] for run in found] == ["r1"]


def test_paths_in_an_empty_database_are_empty(db: TrainingDB) -> None:
    assert db.query_runs({"config.training.batchsize": 64}) == []
    assert db.query_runs({"tag.ownr": "alice"}) == []


def test_a_path_only_older_runs_have_is_known(
    runs: TrainingDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.insert_run("old", None, {"legacy": {"flag": 1}}, created_at=dt.datetime(2025, 1, 1))
    monkeypatch.setattr(filters, "PATH_SAMPLE", 1)  # the sample holds only the newest run
    assert runs.query_runs({"config.legacy.flag": 2}) == []
    with pytest.raises(UnknownNameError):
        runs.query_runs({"config.legacy.flags": 2})


# --- history metrics --------------------------------------------------------------------------


def test_unknown_history_key(runs: TrainingDB) -> None:
    runs.log_history("r0", {"_step": [0, 10], "train/loss": [1.0, 0.5]})
    with pytest.raises(UnknownNameError, match="did you mean 'train/loss'"):
        runs.get_history("r0", keys=["train/los"])
    with pytest.raises(UnknownNameError, match="no run has logged the metric 'nonexistent/key'"):
        runs.get_history("r0", keys=["train/loss", "nonexistent/key"])


def test_known_history_keys_without_points_are_fine(runs: TrainingDB) -> None:
    runs.log_history("r0", {"_step": [0, 10], "train/loss": [1.0, 0.5]})
    # Another run logged it; this one did not: absent, not an error.
    assert runs.get_history("r1", keys=["train/loss"]) == {"_step": []}
    # Logged, but not within the steps asked for.
    assert runs.get_history("r0", keys=["train/loss"], min_step=100) == {"_step": []}


def test_history_keys_in_a_database_without_history(runs: TrainingDB) -> None:
    assert runs.get_history("r0", keys=["train/loss"]) == {"_step": []}


@pytest.fixture
def curves(runs: TrainingDB) -> TrainingDB:
    """r0 logged train/loss; r1 (batch size 64) logged nothing."""
    runs.log_history(
        "r0", {"_step": list(range(30)), "train/loss": [1.0 / (1 + s) for s in range(30)]}
    )
    return runs


def test_finders_and_plots_suggest_a_metric_no_run_logged(
    curves: TrainingDB, tmp_path: Path
) -> None:
    calls = {
        "find_plateaued_runs": lambda: curves.find_plateaued_runs("train/los"),
        "find_runs_with_spikes": lambda: curves.find_runs_with_spikes("train/los"),
        "plot_runs": lambda: curves.plot_runs(["r0"], "train/los", tmp_path / "a.png"),
        "plot_groups": lambda: curves.plot_groups("train/los", tmp_path / "b.png"),
    }
    for name, call in calls.items():
        with pytest.raises(UnknownNameError, match="did you mean 'train/loss'") as caught:
            call()
        assert caught.value.suggestions == ("train/loss",), name
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_finders_and_plots_keep_their_answer_for_a_metric_other_runs_logged(
    curves: TrainingDB, tmp_path: Path
) -> None:
    only_r1 = {"config.training.batch_size": 64}
    assert curves.find_plateaued_runs("train/loss", only_r1) == []
    assert curves.find_runs_with_spikes("train/loss", only_r1) == []
    with pytest.raises(InvalidArgumentError, match="none of the runs logged") as caught:
        curves.plot_runs(["r1"], "train/loss", tmp_path / "a.png")
    assert not isinstance(caught.value, UnknownNameError)
    with pytest.raises(InvalidArgumentError, match="no selected run logged") as caught:
        curves.plot_groups("train/loss", tmp_path / "b.png", filters=only_r1)
    assert not isinstance(caught.value, UnknownNameError)


def test_finders_in_a_database_without_history(runs: TrainingDB) -> None:
    assert runs.find_plateaued_runs("train/los") == []
    assert runs.find_runs_with_spikes("train/los") == []


def test_plot_groups_suggests_a_column(curves: TrainingDB, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'gradient_method'"):
        curves.plot_groups("train/loss", tmp_path / "b.png", group_by="gradient_methd")


def test_plot_runs_of_a_missing_run(curves: TrainingDB, tmp_path: Path) -> None:
    with pytest.raises(training_db.RunNotFoundError, match="ghost"):
        curves.plot_runs(["r0", "ghost"], "train/loss", tmp_path / "a.png")


def test_list_metrics(runs: TrainingDB) -> None:
    assert runs.list_metrics() == []
    runs.log_history("r0", {"_step": [0, 10, 20], "train/loss": [1.0, 0.5, 0.4]})
    runs.log_history("r1", {"_step": [5], "train/loss": [2.0], "eval/kl": [0.1]})
    assert runs.list_metrics() == [
        {"metric": "eval/kl", "num_runs": 1, "num_points": 1, "first_step": 5, "last_step": 5},
        {"metric": "train/loss", "num_runs": 2, "num_points": 4, "first_step": 0, "last_step": 20},
    ]
    assert runs.list_metrics("r0") == [
        {"metric": "train/loss", "num_runs": 1, "num_points": 3, "first_step": 0, "last_step": 20}
    ]
    with pytest.raises(LookupError):
        runs.list_metrics("nope")


# --- objectives -------------------------------------------------------------------------------


@pytest.fixture
def scored(runs: TrainingDB) -> TrainingDB:
    for run_id, value in (("r0", 0.8), ("r1", 0.9)):
        runs.insert_objective(run_id, "COMT_activity", direction="maximize")
        runs.update_objective_metric(run_id, "COMT_activity", "raw_mean", value)
    runs.insert_objective("r0", "QED")
    runs.update_run_status("r0", "completed")
    return runs


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.get_objective_statistics("COMT_activty"),
        lambda d: d.compare_gradient_methods("COMT_activty", status=None),
        lambda d: d.query_runs_by_objectives({"COMT_activty": {"min": 0.0}}),
    ],
    ids=["statistics", "compare", "query"],
)
def test_unknown_objective_name(scored: TrainingDB, call: Any) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'COMT_activity'") as caught:
        call(scored)
    assert caught.value.name == "COMT_activty"


def test_known_objective_with_no_matching_rows_is_empty(scored: TrainingDB) -> None:
    assert scored.get_objective_statistics("COMT_activity", status="crashed")["count"] == 0
    assert scored.get_objective_statistics("QED")["count"] == 0  # no value recorded
    assert scored.compare_gradient_methods("COMT_activity", status="crashed") == []
    assert scored.query_runs_by_objectives({"COMT_activity": {"min": 2.0}}) == []


def test_objective_names_in_a_database_without_objectives(db: TrainingDB) -> None:
    assert db.get_objective_statistics("COMT_activty")["count"] == 0
    assert db.compare_gradient_methods("COMT_activty") == []


def test_list_objectives(scored: TrainingDB, default_db: TrainingDB) -> None:
    expected = [
        {"objective_name": "COMT_activity", "num_runs": 2, "num_values": 2},
        {"objective_name": "QED", "num_runs": 1, "num_values": 0},
    ]
    expected[0]["direction"], expected[1]["direction"] = "maximize", None
    assert scored.list_objectives() == expected
    assert training_db.list_objectives() == expected  # the module-level face
    assert [m["metric"] for m in training_db.list_metrics()] == []


# --- errors the library translates ------------------------------------------------------------


def test_downgrade_to_an_unknown_revision(db_url: URL) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'9999'.*revisions: base, 0001"):
        migrations.downgrade(db_url, "9999")
    with pytest.raises(InvalidArgumentError, match="revisions: "):
        migrations.upgrade(db_url, "nope")


def test_upgrade_an_unreachable_server() -> None:
    url = "postgresql://someone:s3cret@127.0.0.1:1/x?connect_timeout=2"
    with pytest.raises(DatabaseUnavailableError) as caught:
        migrations.upgrade(url)
    assert "s3cret" not in str(caught.value)


def test_restore_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "notdb.db"
    bogus.write_text("hello, not a database\n" * 100)
    with pytest.raises(TransferError, match="is not a SQLite database"):
        restore_sqlite(bogus, sqlite_url(tmp_path / "target.db"))
