"""Every mistake the terminal issue lists ends as one line on stderr and a non-zero exit,
never a traceback (``-v`` shows it); the global options work after the command; the
"did you mean" of the library reaches the terminal; and the list commands."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import URL

from training_db.cli import main
from training_db.ops.demo import DEMO_RUNS

PASSWORD = "s3cret-pw"
UNREACHABLE = f"postgresql://someone:{PASSWORD}@127.0.0.1:1/x?connect_timeout=2"
# Run the CLI in a fresh interpreter where the modules named in argv[1] cannot be imported,
# as on a machine without the extra that installs them.
WITHOUT_MODULES = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Missing())
for name in list(sys.modules):
    if name.partition(".")[0] in blocked:
        del sys.modules[name]
from training_db.cli import main
sys.argv = ["training-db", *sys.argv[2:]]
main()
"""


def text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    return CliRunner(env=dict(env or {})).invoke(main, list(args))


def run_cli(
    *args: str, blocked: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in its own process: what a user at a terminal sees on stderr."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULES, blocked or "-", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def assert_one_line_error(exit_code: int, stderr: str) -> str:
    assert exit_code != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, stderr
    assert lines[0].startswith("error: "), stderr
    assert PASSWORD not in stderr
    return lines[0]


@pytest.fixture
def demo_url(db_url: URL, tmp_path: Path) -> URL:
    result = invoke("--url", text(db_url), "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert result.exit_code == 0, result.output
    return db_url


# --- environment mistakes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"postgres://u:{PASSWORD}@db.example/runs", "use postgresql://"),
        (f"postgresq://u:{PASSWORD}@db.example/runs", "use postgresql://"),
        (f"mysql://u:{PASSWORD}@db.example/runs", "'mysql'"),
        ("not a url", "not a valid database URL"),
    ],
)
def test_bad_url_in_the_environment(url: str, says: str) -> None:
    result = invoke("runs", env={"TRAINING_DB_URL": url})
    line = assert_one_line_error(result.exit_code, result.stderr)
    assert "TRAINING_DB_URL" in line and says in line


def test_bad_url_option_after_the_command() -> None:
    result = invoke("runs", "--url", f"mysql://u:{PASSWORD}@h/db")
    assert "--url" in assert_one_line_error(result.exit_code, result.stderr)


def test_upgrade_on_an_unreachable_server() -> None:
    result = invoke("upgrade", env={"TRAINING_DB_URL": UNREACHABLE})
    line = assert_one_line_error(result.exit_code, result.stderr)
    assert "database unavailable" in line and "127.0.0.1" in line


def test_downgrade_to_an_unknown_revision(db_url: URL) -> None:
    result = invoke("--url", text(db_url), "downgrade", "9999")
    line = assert_one_line_error(result.exit_code, result.stderr)
    assert "'9999'" in line and "revisions: base, 0001" in line


def test_restore_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "notdb.db"
    bogus.write_text("not a database\n" * 100)
    result = invoke("--url", f"sqlite:///{tmp_path / 'target.db'}", "restore", str(bogus))
    assert "is not a SQLite database" in assert_one_line_error(result.exit_code, result.stderr)


def test_import_wandb_without_the_wandb_extra(db_url: URL, tmp_path: Path) -> None:
    run_dir = tmp_path / "wandb" / "run-20260101_000000-abc123"
    (run_dir / "files").mkdir(parents=True)
    (run_dir / "run-abc123.wandb").write_bytes(b"\x00" * 64)
    done = run_cli("--url", text(db_url), "import-wandb", str(tmp_path / "wandb"), blocked="wandb")
    assert "pip install 'mangodb[wandb]'" in assert_one_line_error(done.returncode, done.stderr)


def test_plot_without_matplotlib(demo_url: URL, tmp_path: Path) -> None:
    run_id = DEMO_RUNS[0].run_id
    out = str(tmp_path / "curve.png")
    done = run_cli(
        "--url", text(demo_url), "plot", run_id, "--metric", "train/loss", "-o", out,
        blocked="matplotlib",
    )  # fmt: skip
    assert "pip install 'mangodb[plot]'" in assert_one_line_error(done.returncode, done.stderr)


def test_a_missing_module_in_process(demo_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    result = invoke("--url", text(demo_url), "plot", DEMO_RUNS[0].run_id, "--metric", "train/loss")
    assert "mangodb[plot]" in assert_one_line_error(result.exit_code, result.stderr)


def test_where_created_at_is_a_query_not_a_crash(demo_url: URL) -> None:
    result = invoke("--url", text(demo_url), "runs", "--where", "created_at>2026-12-01")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.stderr == ""
    bad = invoke("--url", text(demo_url), "runs", "--where", "created_at>next tuesday")
    assert "ISO 8601" in assert_one_line_error(bad.exit_code, bad.stderr)


def test_verbose_shows_the_traceback(db_url: URL) -> None:
    for args in (["-v", "downgrade", "9999"], ["downgrade", "9999", "-v"]):
        done = run_cli("--url", text(db_url), *args)
        assert done.returncode != 0
        assert "Traceback" in done.stderr and "9999" in done.stderr


def test_without_verbose_the_real_process_prints_one_line() -> None:
    done = run_cli("upgrade", env={"TRAINING_DB_URL": UNREACHABLE})
    assert_one_line_error(done.returncode, done.stderr)


# --- did you mean, at the terminal ------------------------------------------------------------


NAMES_THAT_MATCH_NOTHING = [
    (["runs", "--status", "complete"], "did you mean 'completed'?"),
    (["runs", "--where", "config.training.batchsize>=64"], "'training.batch_size'"),
    (["runs", "--where", "summary.train/los<1"], "did you mean 'train/loss'?"),
    (["runs", "--order-by", "loss"], "did you mean 'final_loss'?"),
    (["history", DEMO_RUNS[0].run_id, "--keys", "nonexistent/key"], "'nonexistent/key'"),
    (["history", DEMO_RUNS[0].run_id, "--keys", "train/los"], "did you mean 'train/loss'?"),
    (["objectives", "stats", "COMT_activty"], "did you mean 'COMT_activity'?"),
    (["objectives", "compare", "COMT_activty"], "did you mean 'COMT_activity'?"),
    (["objectives", "query", "COMT_activty>=0.1"], "did you mean 'COMT_activity'?"),
]


def test_a_name_that_matches_nothing_is_an_error(demo_url: URL) -> None:
    # One demo database for every case: making it is most of this test's time.
    for args, says in NAMES_THAT_MATCH_NOTHING:
        result = invoke("--url", text(demo_url), *args)
        assert says in assert_one_line_error(result.exit_code, result.stderr), args


# --- global options anywhere ------------------------------------------------------------------


def test_url_after_the_command(demo_url: URL) -> None:
    result = invoke("runs", "--url", text(demo_url), "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == len(DEMO_RUNS)


def test_url_and_verbose_after_a_sub_command(demo_url: URL) -> None:
    result = invoke("objectives", "stats", "COMT_activity", "-v", "--url", text(demo_url))
    assert result.exit_code == 0, result.output
    assert "COMT_activity" in result.output
    typo = invoke("objectives", "stats", "COMT_activty", "-v", "--url", text(demo_url))
    assert typo.exit_code != 0
    assert type(typo.exception).__name__ == "UnknownNameError"  # -v: raised, not one line


def test_url_after_the_command_overrides_the_one_before(demo_url: URL, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = invoke("--url", missing, "objectives", "--url", text(demo_url), "list")
    assert result.exit_code == 0, result.output
    assert "COMT_activity" in result.output


# --- the list commands ------------------------------------------------------------------------


def test_list_commands(demo_url: URL) -> None:
    table = invoke("--url", text(demo_url), "objectives", "list")
    assert table.exit_code == 0, table.output
    assert "COMT_activity" in table.output and "num_runs" in table.output
    records = json.loads(
        invoke("objectives", "list", "--url", text(demo_url), "--format", "json").output
    )
    assert {record["objective_name"] for record in records} >= {"COMT_activity", "QED"}
    rows = list(
        csv.DictReader(
            io.StringIO(
                invoke("--url", text(demo_url), "objectives", "list", "--format", "csv").output
            )
        )
    )
    assert rows[0].keys() == {"objective_name", "num_runs", "num_values", "direction"}

    # metrics list, on the same database
    every = invoke("--url", text(demo_url), "metrics", "list", "--format", "json")
    assert every.exit_code == 0, every.output
    names = [record["metric"] for record in json.loads(every.output)]
    assert "train/loss" in names and names == sorted(names)
    one = invoke("metrics", "list", DEMO_RUNS[0].run_id, "--url", text(demo_url))
    assert one.exit_code == 0, one.output
    assert "train/loss" in one.output
    missing = invoke("--url", text(demo_url), "metrics", "list", "no_such_run")
    assert "no_such_run" in assert_one_line_error(missing.exit_code, missing.stderr)


def test_list_commands_on_an_empty_database(db_url: URL) -> None:
    assert "no objectives" in invoke("--url", text(db_url), "objectives", "list").output
    assert "no metrics" in invoke("--url", text(db_url), "metrics", "list").output
