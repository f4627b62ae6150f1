"""The training-db command through click's test runner, on both backends."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import URL

from training_db import TrainingDB
from training_db.cli import main
from training_db.cli.parse import parse_since, parse_where
from training_db.ops.demo import DEMO_RUNS
from training_db.schema import migrations


def invoke(url: URL, *args: str) -> Result:
    return CliRunner().invoke(main, ["--url", url.render_as_string(hide_password=False), *args])


@pytest.fixture
def demo_url(db_url: URL, tmp_path: Path) -> URL:
    result = invoke(db_url, "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert result.exit_code == 0, result.output
    return db_url


def test_demo_records_runs_and_is_rerunnable(db_url: URL, tmp_path: Path) -> None:
    plot = str(tmp_path / "demo.png")
    first = invoke(db_url, "demo", "--yes", "--plot", plot)
    assert first.exit_code == 0, first.output
    assert f"recorded: {len(DEMO_RUNS)} new runs" in first.output
    assert "mgda" in first.output and "best" in first.output  # the method comparison
    second = invoke(db_url, "demo", "--yes", "--plot", plot)
    assert second.exit_code == 0, second.output
    assert "recorded: 0 new runs" in second.output
    stats = TrainingDB(db_url).get_stats()
    assert stats["total_runs"] == len(DEMO_RUNS)
    assert stats["crashed"] == 1 and stats["running"] == 1


def test_runs_table(demo_url: URL) -> None:
    result = invoke(demo_url, "runs", "--method", "pcgrad")
    assert result.exit_code == 0, result.output
    assert "demo_pcgrad_bs64_i-0b1" in result.output
    assert "demo_pcgrad_bs32_i-0b2" in result.output
    assert "demo_mgda" not in result.output


def test_runs_json_is_machine_readable(demo_url: URL) -> None:
    result = invoke(
        demo_url, "runs", "--status", "completed", "--format", "json", "--order-by", "run_id"
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["run_id"] for r in records] == sorted(
        spec.run_id for spec in DEMO_RUNS if spec.outcome == "completed"
    )
    first = records[0]
    assert first["config"]["training"]["batch_size"] == first["batch_size"]
    assert first["tags"] == {"demo": True, "owner": "demo"}
    assert "config_json" not in first
    # NaN in the summary becomes a string so that the output is strict JSON
    nan_run = next(r for r in records if r["batch_size"] == 128)
    assert nan_run["final_metrics"]["eval/kl"] == "NaN"


def test_runs_csv(demo_url: URL) -> None:
    result = invoke(
        demo_url, "runs", "--where", "config.training.batch_size>=64", "--format", "csv"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {row["run_id"] for row in rows} == {
        spec.run_id for spec in DEMO_RUNS if spec.batch_size >= 64
    }
    assert all(int(row["batch_size"]) >= 64 for row in rows)


def test_runs_where_summary_and_tag(demo_url: URL) -> None:
    result = invoke(
        demo_url,
        "runs",
        "--where",
        "summary.train/loss<0.1",
        "--tag",
        "owner=demo",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert records
    assert all(r["final_metrics"]["train/loss"] < 0.1 for r in records)


def test_show(demo_url: URL) -> None:
    result = invoke(demo_url, "show", "demo_pcgrad_bs32_i-0b2")
    assert result.exit_code == 0, result.output
    assert "crashed" in result.output
    assert "crash-reports/demo_pcgrad_bs32_i-0b2/analysis.md" in result.output
    as_json = invoke(demo_url, "show", "demo_pcgrad_bs32_i-0b2", "--format", "json")
    assert json.loads(as_json.output)["status"] == "crashed"


def test_stats(demo_url: URL) -> None:
    result = invoke(demo_url, "stats")
    assert result.exit_code == 0, result.output
    assert "total runs" in result.output
    assert f"{len(DEMO_RUNS)}" in result.output


def test_current_and_upgrade(empty_url: URL) -> None:
    migrations.upgrade(empty_url, "0002")
    behind = invoke(empty_url, "current")
    assert behind.exit_code == 0, behind.output
    assert "0002" in behind.output and "upgrade pending: yes" in behind.output
    upgraded = invoke(empty_url, "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    now = invoke(empty_url, "current")
    assert "upgrade pending: no" in now.output
    assert migrations.head_revision() in now.output
    down = invoke(empty_url, "downgrade", "0001", "--yes")
    assert down.exit_code == 0, down.output  # nothing to lose in an empty database
    assert "0001" in invoke(empty_url, "current").output
    assert invoke(empty_url, "init").exit_code == 0
    assert "upgrade pending: no" in invoke(empty_url, "current").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "ghost"), "no training run with run_id='ghost'"),
        (("runs", "--where", "batch_size>abc"), "expected an integer"),
        (("runs", "--where", "nonsense"), "expected KEY OP VALUE"),
        (("runs", "--where", "bogus=1"), "unknown filter 'bogus'"),
        (("runs", "--order-by", "1; DROP TABLE training_runs"), "order_by must be"),
        (("runs", "--since", "last week"), "--since"),
        (("runs", "--tag", "novalue"), "KEY=VALUE"),
    ],
)
def test_user_errors_are_one_line(db_url: URL, args: tuple[str, ...], message: str) -> None:
    result = invoke(db_url, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_verbose_shows_the_exception(db_url: URL) -> None:
    result = CliRunner().invoke(
        main, ["--url", db_url.render_as_string(hide_password=False), "--verbose", "show", "x"]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, LookupError)


def test_unreachable_database_is_one_line(tmp_path: object) -> None:
    url = "postgresql+psycopg2://nobody:hunter2@127.0.0.1:1/none"
    result = CliRunner().invoke(main, ["--url", url, "runs"])
    assert result.exit_code == 1
    assert "database unavailable" in result.output
    assert "hunter2" not in result.output


def test_help_has_examples() -> None:
    result = CliRunner().invoke(main, ["runs", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--where" in result.output


def test_parse_where_merges_operators() -> None:
    assert parse_where(["batch_size>=64", "batch_size<256", "summary.a/b = x y"]) == {
        "batch_size": {"gte": "64", "lt": "256"},
        "summary.a/b": {"eq": "x y"},
    }


def test_parse_since() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 8, tzinfo=dt.timezone.utc)
    assert parse_since("7d", now) == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_since("1.5h", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2026-01-01T00:00:00Z") == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_demo_writes_a_plot(db_url: URL, tmp_path: object) -> None:
    import pathlib

    target = pathlib.Path(str(tmp_path)) / "demo.png"
    result = invoke(db_url, "demo", "--yes", "--plot", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "objectives compare COMT_activity" in result.output


def test_show_has_objectives_and_a_sparkline(demo_url: URL) -> None:
    result = invoke(demo_url, "show", "demo_mgda_bs64_i-0a1")
    assert result.exit_code == 0, result.output
    assert "COMT_activity" in result.output and "normalized_mean" in result.output
    assert "train/loss" in result.output
    assert any(block in result.output for block in "▁▂▃▄▅▆▇█")
    assert "(100 points)" in result.output


def test_objectives_compare_and_stats(demo_url: URL) -> None:
    compared = invoke(demo_url, "objectives", "compare", "COMT_activity", "--format", "json")
    assert compared.exit_code == 0, compared.output
    rows = json.loads(compared.output)
    expected = TrainingDB(demo_url).compare_gradient_methods("COMT_activity")
    assert [r["gradient_method"] for r in rows] == [r["gradient_method"] for r in expected]
    stats = invoke(demo_url, "objectives", "stats", "QED", "--method", "mgda", "--format", "json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["count"] == 2  # two completed mgda runs


def test_objectives_query(demo_url: URL) -> None:
    result = invoke(
        demo_url,
        "objectives",
        "query",
        "COMT_activity>=0.8",
        "DRD5_activity>=0.7",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    found = {r["run_id"] for r in json.loads(result.output)}
    api = TrainingDB(demo_url).query_runs_by_objectives(
        {"COMT_activity": {"min": 0.8}, "DRD5_activity": {"min": 0.7}}
    )
    assert found == {r["run_id"] for r in api}
    assert found  # the demo has such runs
    table = invoke(demo_url, "objectives", "query", "COMT_activity>=0.8")
    assert "COMT_activity" in table.output


def test_history_export(demo_url: URL) -> None:
    as_csv = invoke(
        demo_url, "history", "demo_mgda_bs64_i-0a1", "--keys", "train/loss", "--max-step", "30"
    )
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0] == ["_step", "train/loss"]
    assert [row[0] for row in rows[1:]] == ["0", "10", "20", "30"]
    as_json = invoke(
        demo_url, "history", "demo_pcgrad_bs32_i-0b2", "--format", "json", "--shape", "columns"
    )
    columns = json.loads(as_json.output)
    assert columns["train/loss"][-1] == "NaN"  # the logged divergence, as strict JSON
    assert len(columns["_step"]) == 47


def test_plot_runs_and_groups(demo_url: URL, tmp_path: object) -> None:
    import pathlib

    one = pathlib.Path(str(tmp_path)) / "runs.png"
    result = invoke(
        demo_url,
        "plot",
        "demo_mgda_bs64_i-0a1",
        "demo_pcgrad_bs64_i-0b1",
        "--metric",
        "train/loss",
        "-o",
        str(one),
    )
    assert result.exit_code == 0, result.output
    assert one.read_bytes()[:4] == b"\x89PNG"
    grouped = pathlib.Path(str(tmp_path)) / "groups.png"
    result = invoke(
        demo_url,
        "plot",
        "--group-by",
        "gradient_method",
        "--metric",
        "train/loss",
        "--status",
        "completed",
        "-o",
        str(grouped),
    )
    assert result.exit_code == 0, result.output
    assert grouped.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("objectives", "query", "COMT_activity>0.8"), "expected OBJECTIVE>=VALUE"),
        (("objectives", "query", "COMT_activity>=high"), "is not a number"),
        (("plot", "--metric", "train/loss"), "at least one RUN_ID"),
        (("plot", "ghost", "--metric", "train/loss"), "no training run"),
        (("plot", "--group-by", "config_json", "--metric", "x"), "group_by must be"),
        (("history", "ghost"), "ghost"),
    ],
)
def test_more_user_errors(db_url: URL, args: tuple[str, ...], message: str) -> None:
    result = invoke(db_url, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_copy_to_postgres_and_refuse_non_empty(demo_url: URL, pg_empty_url: URL) -> None:
    source = demo_url.render_as_string(hide_password=False)
    target = pg_empty_url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["copy", "--from", source, "--to", target])
    assert result.exit_code == 0, result.output
    assert "verified: every source row is in the target, unchanged" in result.output
    assert "training_runs" in result.output and "MISMATCH" not in result.output
    copied = TrainingDB(pg_empty_url)
    assert copied.get_stats() == TrainingDB(demo_url).get_stats()
    again = CliRunner().invoke(main, ["copy", "--from", source, "--to", target])
    assert again.exit_code == 1
    assert "Traceback" not in again.output
    merged = CliRunner().invoke(main, ["copy", "--from", source, "--to", target, "--merge"])
    assert merged.exit_code == 0, merged.output


def test_backup(demo_url: URL, tmp_path: Path) -> None:
    target = tmp_path / "backup.db"
    result = invoke(demo_url, "backup", str(target))
    if demo_url.get_backend_name() != "sqlite":
        assert result.exit_code == 1
        assert "pg_dump" in result.output
        return
    assert result.exit_code == 0, result.output
    from training_db.core.settings import sqlite_url

    assert TrainingDB(sqlite_url(target)).get_stats() == TrainingDB(demo_url).get_stats()
    refused = invoke(demo_url, "backup", str(target))
    assert refused.exit_code == 1
    assert "exists" in refused.output
    fresh = tmp_path / "restored.db"
    restored = invoke(sqlite_url(fresh), "restore", str(target), "--yes")
    assert restored.exit_code == 0, restored.output
    assert TrainingDB(sqlite_url(fresh)).get_stats() == TrainingDB(demo_url).get_stats()


def test_reap(db_url: URL) -> None:
    import datetime as dt

    database = TrainingDB(db_url)
    database.insert_run("stale", None, {})
    database.update_run_status("stale", "running", started_at="2026-01-01T00:00:00Z")
    database.insert_run("fresh", None, {})
    database.update_run_status("fresh", "running")
    result = invoke(db_url, "reap", "--older-than", "2h")
    assert result.exit_code == 0, result.output
    assert "marked 1 stale runs as crashed" in result.output and "stale" in result.output
    run = database.get_run("stale")
    assert run is not None
    assert run["status"] == "crashed"
    assert run["ended_at"] == dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert database.get_run("fresh")["status"] == "running"  # type: ignore[index]
    assert "no stale runs" in invoke(db_url, "reap").output
    assert invoke(db_url, "reap", "--older-than", "soon").exit_code == 1


def test_replay_reports_malformed_lines(db_url: URL, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "spool.jsonl").write_text("this is not json\n")
    result = invoke(db_url, "replay", "--spool-dir", str(spool))
    assert result.exit_code == 1
    assert "1 malformed" in result.output
    assert "malformed line 1" in result.output
    assert (spool / "spool.rejected").exists()


def test_import_wandb_goes_on_past_bad_paths(db_url: URL, tmp_path: Path) -> None:
    bad = tmp_path / "wandb" / "run-20260101_000000-broken"
    bad.mkdir(parents=True)
    (bad / "run-broken.wandb").write_bytes(b"not a wandb log")
    result = invoke(db_url, "import-wandb", str(tmp_path / "missing"), str(tmp_path / "wandb"))
    assert result.exit_code == 1
    assert "failed" in result.output
    assert "0 created" in result.output
    assert TrainingDB(db_url).get_stats()["total_runs"] == 0


def test_downgrade_refuses_data_loss_unless_allowed(db_url: URL) -> None:
    TrainingDB(db_url).insert_run("keep", None, {})
    TrainingDB(db_url).set_tags("keep", {"owner": "alice"})
    refused = invoke(db_url, "downgrade", "0002", "--yes")
    assert refused.exit_code == 1
    assert "run_tags" in refused.output
    assert "Traceback" not in refused.output
    allowed = invoke(db_url, "downgrade", "0002", "--allow-data-loss", "--yes")
    assert allowed.exit_code == 0, allowed.output
    assert "0002" in invoke(db_url, "current").output
