"""Finders and plots across runs, on both backends."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training_db import TrainingDB
from training_db.ops import analysis, curves


@pytest.fixture
def runs_with_curves(db: TrainingDB) -> TrainingDB:
    shapes = {
        "flat-late": [math.exp(-step / 10) if step < 60 else math.exp(-6) for step in range(120)],
        "still-falling": [1.0 - step / 150 for step in range(120)],
        "spiky": [
            0.5 + (5.0 if step in (40, 90) else 0.0) + 0.001 * (step % 3) for step in range(120)
        ],
    }
    for name, values in shapes.items():
        method = "mgda" if name != "spiky" else "pcgrad"
        db.insert_run(name, None, {"training": {"gradient_method": method}}, run_name=f"{name}!")
        db.log_history(name, {"_step": list(range(120)), "train/loss": values})
    db.insert_run("no-history", None, {"training": {"gradient_method": "mgda"}})
    return db


def test_find_plateaued_runs(runs_with_curves: TrainingDB) -> None:
    found = curves.find_plateaued_runs(runs_with_curves, "train/loss", window=10)
    by_id = {row["run_id"]: row for row in found}
    assert "flat-late" in by_id
    flat = [math.exp(-step / 10) if step < 60 else math.exp(-6) for step in range(120)]
    expected = analysis.detect_plateau(list(range(120)), flat, window=10)
    assert expected is not None
    assert by_id["flat-late"]["plateau_step"] == expected
    assert by_id["flat-late"]["run_name"] == "flat-late!"
    assert "still-falling" not in by_id
    assert "no-history" not in by_id


def test_find_runs_with_spikes(runs_with_curves: TrainingDB) -> None:
    found = curves.find_runs_with_spikes(runs_with_curves, "train/loss")
    assert [(row["run_id"], row["spike_steps"]) for row in found] == [("spiky", [40, 90])]
    filtered = curves.find_runs_with_spikes(
        runs_with_curves, "train/loss", {"gradient_method": "mgda"}
    )
    assert filtered == []


def test_metric_curves_reads_one_metric(runs_with_curves: TrainingDB) -> None:
    got = curves.metric_curves(runs_with_curves, "train/loss", ["flat-late", "no-history"])
    assert list(got) == ["flat-late"]
    steps, values = got["flat-late"]
    assert steps == list(range(120))
    assert values[0] == 1.0


def test_plots(runs_with_curves: TrainingDB, tmp_path: Path) -> None:
    one = curves.plot_runs(
        runs_with_curves, ["flat-late", "spiky"], "train/loss", tmp_path / "a.png"
    )
    assert one.read_bytes()[:4] == b"\x89PNG"
    grouped = curves.plot_groups(runs_with_curves, "train/loss", tmp_path / "b.png")
    assert grouped.stat().st_size > 1000
    with pytest.raises(ValueError, match="none of the runs"):
        curves.plot_runs(runs_with_curves, ["no-history"], "train/loss", tmp_path / "c.png")
    with pytest.raises(LookupError):
        curves.plot_runs(runs_with_curves, ["ghost"], "train/loss", tmp_path / "d.png")
