"""The benchmark suite runs (quick mode, tiny scale) on both backends, so it cannot rot.

No timing is asserted: only that every scenario produced its row, that every answer check
passed, and that the MLflow columns are skipped cleanly when MLflow is absent.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from bench import percall, run, workload
from bench.context import StorageFigure
from bench.databases import PG_ENV, pg_admin_url
from bench.measure import Mismatch, Result, checked, expect, time_calls
from bench.report import ANALYSIS_END, ANALYSIS_START, existing_analysis, targets

import training_db
from tests.conftest import PG_ENV as TEST_PG_ENV
from training_db import safe

SCENARIO_ROWS = (
    "(a) launch",
    "(b) completion",
    "(c) history ingest, 100 steps",
    "(c) history ingest, long runs",
    "(d) query_runs, extracted columns",
    "(d) query_runs, JSON filters",
    "(e) query_runs_by_objectives",
    "(e) compare_gradient_methods",
    "(f) one metric's history",
    "(g) query_runs(limit=1000)",
)


def _leftover_bench_databases() -> list[str]:
    engine = sa.create_engine(pg_admin_url())
    try:
        with engine.connect() as connection:
            names = connection.exec_driver_sql(
                "SELECT datname FROM pg_database WHERE datname LIKE %(prefix)s",
                {"prefix": f"mangodb_bench_{os.getpid()}_%"},
            )
            return [name for (name,) in names]
    finally:
        engine.dispose()


PERCALL_FACES = (
    "TrainingDB method",
    "training_db.get_run",
    "db.read(store.get_run)",
    "training_db.heartbeat",
    "db.write(store.heartbeat)",
    "safe.heartbeat",
)


def test_percall_runs_every_call_and_face(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench.percall` end to end at a tiny scale: a row per call with the answers checked
    equal first (a mismatch exits), the target line, and every face; no time is asserted."""
    if backend == "postgresql":
        monkeypatch.setenv(PG_ENV, os.environ[TEST_PG_ENV])
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "0")
    output = tmp_path / "percall.md"
    arguments = ["--backend", backend, "--scales", "40", "--rounds", "3", "--output", str(output)]
    try:
        status = percall.main(arguments)
    finally:
        assert safe.drain(60), "safe.heartbeat was still running"
        default, training_db.api._default = training_db.api._default, None
        if default is not None:
            default.dispose()

    assert status == 0
    report = output.read_text()
    for label in percall.LABELS.values():
        assert f"| {backend} | 40 | `{label}` |" in report, label
    assert f"- {backend}: added cost ≤ {percall.TARGET_MS[backend]} ms per call" in report
    for face in PERCALL_FACES:
        assert f"| {backend} | " in report and f"| {face} |" in report, face
    if backend == "postgresql":
        assert _leftover_bench_databases() == []


def _assert_complete_report(report: str, backend: str) -> None:
    for scenario in SCENARIO_ROWS:
        rows = [
            line for line in report.splitlines() if line.startswith(f"| {scenario} | {backend}")
        ]
        assert rows, f"no row for {scenario} on {backend}"
        for row in rows:
            assert row.rstrip().endswith("| ok |"), row
    assert "MISMATCH" not in report
    assert "## Targets" in report
    assert f"| {backend} | ours |" in report  # storage per run
    assert "ix_run_objectives_objective_name_raw_mean" in report  # the objective query plan
    assert "python -m bench.run --quick" in report


def test_quick_run_without_mlflow(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quick mode end to end; MLflow made unimportable, so its columns must be skipped."""
    if backend == "postgresql":
        monkeypatch.setenv(PG_ENV, os.environ[TEST_PG_ENV])
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    output = tmp_path / "B.md"

    quick = ["--quick", "--runs", "3", "--repeat", "2", "--long-steps", "300"]
    status = run.main([*quick, "--backend", backend, "--output", str(output)])

    assert status == 0
    report = output.read_text()
    _assert_complete_report(report, backend)
    assert f"{run.MLFLOW_SKIPPED}: MLflow is not installed" in report
    assert "| mlflow |" not in report
    if backend == "postgresql":
        assert _leftover_bench_databases() == []


def test_report_keeps_the_hand_written_analysis(tmp_path: Path) -> None:
    output = tmp_path / "B.md"
    analysis = f"{ANALYSIS_START}\n## Analysis\nwhy the numbers are what they are\n{ANALYSIS_END}"
    output.write_text(f"# Benchmarks\n\nold figures\n\n{analysis}\n\nmore old figures\n")
    assert existing_analysis(output) == analysis

    quick = ["--quick", "--runs", "2", "--repeat", "1", "--long-steps", "50", "--no-mlflow"]
    run.main([*quick, "--backend", "sqlite", "--output", str(output)])

    report = output.read_text()
    assert analysis in report
    assert "old figures" not in report
    assert f"{run.MLFLOW_SKIPPED}: --no-mlflow" in report


def test_a_mismatch_is_reported_and_not_timed() -> None:
    result = Result("e1", "sqlite", "raw-sql", "hand-written SQL", "ms", "raw")

    assert not checked(result, lambda: expect(False, "run ids differ"))

    assert result.check == "MISMATCH: run ids differ"
    assert not result.timed
    with pytest.raises(Mismatch):
        expect(1 == 2, "never")


def test_targets_say_met_not_met_and_not_measured() -> None:
    def timed(scenario: str, system: str, seconds: float, kind: str) -> Result:
        result = Result(scenario, "sqlite", system, system, "ms", kind)
        result.seconds, result.work = [seconds], [1.0]
        return result

    results = [
        timed("c", "ours", 1.0, "ours"),
        timed("c", "raw-layout", 0.8, "raw"),  # ours takes 1.25x the raw time: met
        timed("c", "raw-naive", 0.5, "raw"),  # ours slower than naive: not met
        timed("f", "ours", 0.002, "ours"),
    ]
    storage = [
        StorageFigure(
            "sqlite",
            "ours",
            10,
            2_500_000,
            {"run_history": 2_000_000, "training_runs": 500_000},
            history_tables=("run_history",),
        )
    ]

    found = {t.name.split(":")[0]: t for t in targets(results, storage, ["sqlite"])}

    ingest = found["history ingest (100 steps)"]
    assert ingest.status == "NOT met"
    assert "ours ÷ raw-naive time (< 1.00): 2.00 ✗" in ingest.detail
    assert "not measured: MLflow" in ingest.detail
    assert found["objective queries"].status == "not measured"
    assert found["one metric's history of a 10,000-step run"].status == "met (partly measured)"
    storage_target = found["history storage per run"]
    assert storage_target.status == "NOT met"  # 200 kB of history per run is over 150 kB
    assert "history kB per run (≤ 150): 200.00 ✗" in storage_target.detail
    assert storage[0].per_run == 250_000  # the whole run, reported beside it


def test_time_calls_takes_at_least_repeat_samples() -> None:
    seconds, work = time_calls(lambda: None, 5, min_total=0.0)
    assert len(seconds) == 5
    assert work == [1.0] * 5


def test_workload_is_shaped_like_real_runs() -> None:
    spec = workload.completed_run(7, 3)
    again = workload.completed_run(7, 3)
    history = workload.make_history(7, 3, spec.objectives)

    assert spec == again  # seeded: the same run in every system and repetition
    assert spec.summary is not None and len(spec.summary) == workload.SUMMARY_KEYS_PER_RUN
    assert 3 <= len(spec.objectives) <= 5
    assert spec.gradient_method in workload.GRADIENT_METHODS
    assert 80 <= len(list(workload.flatten(spec.config))) <= 100
    assert sum(isinstance(v, float) and math.isnan(v) for v in spec.summary.values()) >= 2
    for objective in spec.objectives:
        for metric in workload.METRIC_TYPES:
            assert f"objectives/{objective['alias']}/{metric}" in spec.summary
            assert f"objectives/{objective['alias']}/{metric}" in history
    assert len(history) == workload.HISTORY_KEYS_PER_RUN
    assert all(len(values) == 100 for values in history.values())
    logged = workload.count_values(history)
    possible = (len(history) - 1) * 100
    assert 0.85 * possible < logged < 0.95 * possible  # ~10% not logged (NaN)
