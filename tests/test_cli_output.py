"""What the command line prints: tables that fit, footers, and the same fields in every
format (the output findings of the terminal issue), on both backends."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from sqlalchemy import URL

from tests.test_wandb_files import GeneratedRun, generated_runs
from training_db import TrainingDB
from training_db.cli import main, render
from training_db.ops.demo import DEMO_RUNS

NUMERIC_TITLES = {"batch": "batch_size", "lr": "learning_rate", "hours": "duration_seconds"}


def invoke(url: URL, *args: str, columns: int | None = None) -> Result:
    env = {"COLUMNS": None if columns is None else str(columns)}
    return CliRunner().invoke(
        main, ["--url", url.render_as_string(hide_password=False), *args], env=env
    )


@pytest.fixture
def demo_url(db_url: URL, tmp_path: Path) -> URL:
    result = invoke(db_url, "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert result.exit_code == 0, result.output
    return db_url


@pytest.fixture(scope="session")
def wandb_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GeneratedRun]:
    return generated_runs(tmp_path_factory)


def terminal(renderable: object, width: int) -> str:
    console = Console(width=width, force_terminal=True, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def cells_whole(text: str, runs: list[dict[str, object]]) -> None:
    """No cell is cut, and every numeric value of a shown column appears whole on its run's
    line."""
    assert "…" not in text, text
    lines = text.splitlines()
    header = lines[0].split()
    for run in runs:
        line = next(line for line in lines if str(run["run_id"]) in line)
        for title, name in NUMERIC_TITLES.items():
            if title in header:
                assert f" {render._cell(name, run[name])}" in line, (title, line)
        if "loss" in header:
            assert f" {render._cell('final_loss', run['final_loss'])}" in line


@pytest.mark.parametrize("width", [80, 120])
def test_runs_table_never_cuts_a_number(demo_url: URL, width: int) -> None:
    runs = TrainingDB(demo_url).query_runs(limit=50)
    text = terminal(render.runs_table(runs), width)
    assert max(len(line) for line in text.splitlines()) <= width
    cells_whole(text, runs)
    assert " 128 " in next(line for line in text.splitlines() if "bs128" in line)
    if width == 120:  # everything fits: nothing left out
        assert "not shown" not in text and "created UTC" in text
    # The command itself, told the width by COLUMNS
    result = invoke(demo_url, "runs", columns=width)
    assert result.exit_code == 0, result.output
    cells_whole(result.stdout, runs)


@pytest.mark.parametrize("width", [80, 120])
def test_objectives_query_table_never_cuts_a_score(demo_url: URL, width: int) -> None:
    conditions = {"COMT_activity": {"min": 0.5}, "DRD5_activity": {"min": 0.5}, "QED": {}}
    found = TrainingDB(demo_url).query_runs_by_objectives(conditions)
    assert found
    text = terminal(render.objective_runs_table(found, list(conditions), "raw_mean"), width)
    assert "…" not in text
    for run in found:
        line = next(line for line in text.splitlines() if run["run_id"] in line)
        for name in conditions:
            assert f" {render._cell('raw_mean', run['objectives'][name]['raw_mean'])}" in line
    result = invoke(
        demo_url, "objectives", "query", "COMT_activity>=0.5", "DRD5_activity>=0.5", columns=width
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout


def test_wide_shows_every_column_and_narrow_terminals_say_what_is_left_out(
    demo_url: URL,
) -> None:
    narrow = invoke(demo_url, "runs", columns=60)
    assert narrow.exit_code == 0, narrow.output
    assert "not shown at 60 columns:" in narrow.stdout and "--wide" in narrow.stdout
    wide = invoke(demo_url, "runs", "--wide", columns=60)
    assert "created UTC" in wide.stdout and "not shown" not in wide.stdout


def test_piped_output_has_no_trailing_spaces_or_padding(demo_url: URL) -> None:
    for args in (("runs",), ("stats",), ("show", "demo_mgda_bs64_i-0a1"), ("current",)):
        result = invoke(demo_url, *args)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines and not [line for line in lines if line != line.rstrip()], args
    runs = invoke(demo_url, "runs").stdout.splitlines()
    longest = max(len(line) for line in runs)
    assert longest < 120  # the table's own width, not a fixed 160
    assert "created UTC" in runs[0]  # piped: nothing is left out


def test_runs_footer_says_when_the_limit_left_runs_out(demo_url: URL) -> None:
    limited = invoke(demo_url, "runs", "--limit", "2")
    assert limited.exit_code == 0, limited.output
    assert f"2 of {len(DEMO_RUNS)} runs shown — use --limit or --all" in limited.stdout
    everything = invoke(demo_url, "runs", "--all", "--limit", "2")
    assert everything.exit_code == 0, everything.output
    assert "shown" not in everything.stdout
    assert all(spec.run_id in everything.stdout for spec in DEMO_RUNS)
    filtered = invoke(demo_url, "runs", "--status", "completed", "--limit", "1")
    completed = sum(spec.outcome == "completed" for spec in DEMO_RUNS)
    assert f"1 of {completed} runs shown" in filtered.stdout
    assert "shown" not in invoke(demo_url, "runs").stdout
    # JSON and CSV stay clean on stdout; the footer goes to stderr
    as_json = invoke(demo_url, "runs", "--limit", "2", "--format", "json")
    assert len(json.loads(as_json.stdout)) == 2
    assert "2 of" in as_json.stderr


def test_count_runs(db: TrainingDB, demo_url: URL) -> None:
    database = TrainingDB(demo_url)
    assert database.count_runs() == len(DEMO_RUNS)
    assert database.count_runs({"status": "completed", "tag.demo": True}) == sum(
        spec.outcome == "completed" for spec in DEMO_RUNS
    )
    assert database.count_runs({"config.training.batch_size": {"gte": 64}}) == len(
        database.query_runs({"config.training.batch_size": {"gte": 64}})
    )


def test_objectives_query_footer(demo_url: URL) -> None:
    result = invoke(demo_url, "objectives", "query", "COMT_activity>=0", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "more match — use --limit or --all" in result.stdout
    everything = invoke(demo_url, "objectives", "query", "COMT_activity>=0", "--all")
    assert "more match" not in everything.stdout


def test_objectives_query_json_and_csv_carry_the_objective_values(demo_url: URL) -> None:
    args = ("objectives", "query", "COMT_activity>=0.8", "DRD5_activity>=0.7")
    api = {
        run["run_id"]: run
        for run in TrainingDB(demo_url).query_runs_by_objectives(
            {"COMT_activity": {"min": 0.8}, "DRD5_activity": {"min": 0.7}}
        )
    }
    assert api
    records = json.loads(invoke(demo_url, *args, "--format", "json").stdout)
    assert {r["run_id"]: r["objectives"] for r in records} == {
        run_id: run["objectives"] for run_id, run in api.items()
    }
    rows = list(csv.DictReader(io.StringIO(invoke(demo_url, *args, "--format", "csv").stdout)))
    for row in rows:
        expected = api[row["run_id"]]["objectives"]
        assert float(row["objective.COMT_activity"]) == expected["COMT_activity"]["raw_mean"]
        assert float(row["objective.DRD5_activity"]) == expected["DRD5_activity"]["raw_mean"]
    normalized = invoke(
        demo_url, *args[:2], "COMT_activity>=0.5", "--metric", "normalized_mean", "--format", "csv"
    )
    row = next(csv.DictReader(io.StringIO(normalized.stdout)))
    objectives = TrainingDB(demo_url).get_run_objectives(row["run_id"])
    comt = next(o for o in objectives if o["objective_name"] == "COMT_activity")
    assert float(row["objective.COMT_activity"]) == comt["normalized_mean"]


def test_stats_current_show_and_compare_have_formats(demo_url: URL) -> None:
    stats = invoke(demo_url, "stats", "--format", "json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout) == TrainingDB(demo_url).get_stats()
    stats_csv = list(
        csv.DictReader(io.StringIO(invoke(demo_url, "stats", "--format", "csv").stdout))
    )
    assert stats_csv == [{k: str(v) for k, v in TrainingDB(demo_url).get_stats().items()}]
    current = invoke(demo_url, "current", "--format", "json")
    assert current.exit_code == 0, current.output
    state = json.loads(current.stdout)
    assert state["upgrade_pending"] is False and state["current_revision"] == state["head_revision"]
    assert state["backend"] == demo_url.get_backend_name()
    assert "current_revision" in invoke(demo_url, "current", "--format", "csv").stdout
    shown = json.loads(invoke(demo_url, "show", "demo_mgda_bs64_i-0a1", "--format", "json").stdout)
    assert shown["objectives"]["QED"]["direction"] == "maximize"  # as the table shows
    shown_csv = invoke(demo_url, "show", "demo_mgda_bs64_i-0a1", "--format", "csv").stdout
    (row,) = csv.DictReader(io.StringIO(shown_csv))
    assert row["run_id"] == "demo_mgda_bs64_i-0a1" and json.loads(row["config"])["training"]
    compared = invoke(demo_url, "objectives", "compare", "COMT_activity", "--format", "csv")
    assert compared.exit_code == 0, compared.output
    assert compared.stdout.startswith("gradient_method,num_runs,avg,best")
    ostats = invoke(demo_url, "objectives", "stats", "QED", "--format", "csv")
    assert ostats.exit_code == 0 and "count" in ostats.stdout.splitlines()[0]


def test_runs_columns_picks_fields_in_every_format(demo_url: URL) -> None:
    picked = "run_id,status,config.training.batch_size,summary.train/loss"
    as_csv = invoke(
        demo_url, "runs", "--columns", picked, "--format", "csv", "--status", "completed"
    )
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == picked.split(",")
    by_id = {run["run_id"]: run for run in TrainingDB(demo_url).query_runs(limit=50)}
    for row in rows:
        run = by_id[row["run_id"]]
        assert int(row["config.training.batch_size"]) == run["batch_size"]
        assert float(row["summary.train/loss"]) == run["final_metrics"]["train/loss"]
    as_json = json.loads(invoke(demo_url, "runs", "--columns", picked, "--format", "json").stdout)
    assert all(list(record) == picked.split(",") for record in as_json)
    table = invoke(demo_url, "runs", "--columns", picked, "--columns", "objective.QED")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0]
    assert "config.training.batch_size" in header and "QED" in header
    unknown = invoke(demo_url, "runs", "--columns", "run_id,bogus")
    assert unknown.exit_code == 1
    assert "unknown column 'bogus'" in unknown.output


def test_history_json_is_row_shaped_unless_asked_for_columns(demo_url: URL) -> None:
    rows = json.loads(
        invoke(
            demo_url, "history", "demo_mgda_bs64_i-0a1", "--format", "json", "--max-step", "20"
        ).stdout
    )
    assert isinstance(rows, list) and [row["_step"] for row in rows] == [0, 10, 20]
    assert all("train/loss" in row for row in rows)
    columns = json.loads(
        invoke(
            demo_url, "history", "demo_mgda_bs64_i-0a1", "--format", "json", "--shape", "columns"
        ).stdout
    )
    assert isinstance(columns, dict) and len(columns["_step"]) == 100
    table = invoke(
        demo_url, "history", "demo_mgda_bs64_i-0a1", "--format", "table", "--keys", "train/loss"
    )
    assert table.exit_code == 0, table.output
    assert "train/loss" in table.stdout and "…" not in table.stdout


def test_import_wandb_lists_only_what_changed(
    db_url: URL, wandb_runs: dict[str, GeneratedRun], tmp_path: Path
) -> None:
    tree = tmp_path / "wandb"
    for name in ("rich", "killed"):
        shutil.copytree(wandb_runs[name].run_dir, tree / wandb_runs[name].run_dir.name)
    first = invoke(db_url, "import-wandb", str(tree))
    assert first.exit_code == 0, first.output
    assert "2 created" in first.stdout and "not listed" not in first.stdout
    assert wandb_runs["rich"].run_dir.name[:20] in first.stdout
    again = invoke(db_url, "import-wandb", str(tree))
    assert again.exit_code == 0, again.output
    assert "2 unchanged directories not listed (--verbose lists them)" in again.stdout
    assert wandb_runs["rich"].run_dir.name[:20] not in again.stdout
    assert len(again.stdout.strip().splitlines()) == 2
    verbose = invoke(db_url, "import-wandb", str(tree), "--verbose")
    assert wandb_runs["rich"].run_dir.name[:20] in verbose.stdout
    records = json.loads(invoke(db_url, "import-wandb", str(tree), "--format", "json").stdout)
    assert [r["action"] for r in records] == ["unchanged", "unchanged"]
    assert set(records[0]) == set(render.IMPORT_FIELDS)


def test_tables_print_brackets_in_values_as_they_are(db_url: URL) -> None:
    """A run id or method with brackets is data, not rich markup: tables keep it whole."""
    db = TrainingDB(db_url)
    db.insert_run("exp[lr]", None, {"gradient_method": "[bold]mgda"})
    db.dispose()
    listed = invoke(db_url, "runs", columns=120)
    assert listed.exit_code == 0, listed.output
    assert "exp[lr]" in listed.output and "[bold]mgda" in listed.output
    shown = invoke(db_url, "show", "exp[lr]", columns=120)
    assert shown.exit_code == 0, shown.output
    assert "exp[lr]" in shown.output
