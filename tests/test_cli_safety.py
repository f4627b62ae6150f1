"""The command line's safety: what it asks before replacing or deleting data, what it says
when interrupted, and that its messages reach the user whole (no bracket eaten as markup).

On both backends, through click's test runner. CliRunner's stdin is never a terminal, so
the non-interactive refusals are what a plain call sees; the prompts are exercised by
declaring stdin a terminal (`terminal`) and answering through ``input=``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import URL

import training_db.cli
from training_db import TrainingDB
from training_db.cli import main
from training_db.cli import maintenance as cli_maintenance
from training_db.core.settings import sqlite_url
from training_db.ops.demo import DEMO_RUNS
from training_db.ops.transfer import CopyProgress
from training_db.schema import migrations

CLI_SOURCES = Path(training_db.cli.__file__).parent
ENV_SELECTING_A_DATABASE = ("TRAINING_DB_URL", "TRAINING_DB_HOST", "TRAINING_DB_PATH")


def invoke(url: URL, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        main, ["--url", url.render_as_string(hide_password=False), *args], input=input
    )


def run_ids(url: URL) -> set[str]:
    database = TrainingDB(url)
    try:
        return {run["run_id"] for run in database.query_runs(limit=1000)}
    finally:
        database.dispose()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone is at the terminal: the commands ask, and ``input=`` answers."""
    monkeypatch.setattr("training_db.cli.confirm.stdin_is_terminal", lambda: True)


@pytest.fixture
def default_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TRAINING_DB_* variable: the embedded SQLite file, here under a scratch XDG_DATA_HOME."""
    for name in ENV_SELECTING_A_DATABASE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "mangodb" / "training_runs.db"


# --- demo ------------------------------------------------------------------------------------


def test_demo_refuses_a_database_that_is_not_the_default(db_url: URL, tmp_path: Path) -> None:
    before = run_ids(db_url)
    result = invoke(db_url, "demo", "--plot", str(tmp_path / "demo.png"))
    assert result.exit_code == 1
    assert "--yes" in result.output and "not the default database" in result.output
    assert "Traceback" not in result.output
    assert run_ids(db_url) == before  # nothing written
    allowed = invoke(db_url, "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert allowed.exit_code == 0, allowed.output
    assert run_ids(db_url) == before | {spec.run_id for spec in DEMO_RUNS}


def test_demo_names_the_database_with_its_password_masked() -> None:
    # Refused before it connects: the server in the URL does not exist.
    url = "postgresql://trainer:hunter2@127.0.0.1:1/production"
    result = CliRunner().invoke(main, ["--url", url, "demo"])
    assert result.exit_code == 1
    assert "postgresql+psycopg2://trainer:***@127.0.0.1:1/production" in result.output
    assert "hunter2" not in result.output
    assert "unavailable" not in result.output  # it never tried to connect


def test_demo_asks_at_a_terminal(db_url: URL, tmp_path: Path, terminal: None) -> None:
    before = run_ids(db_url)
    declined = invoke(db_url, "demo", "--plot", str(tmp_path / "demo.png"), input="n\n")
    assert declined.exit_code == 1
    assert "Go ahead?" in declined.output and "nothing was changed" in declined.output
    assert run_ids(db_url) == before
    agreed = invoke(db_url, "demo", "--plot", str(tmp_path / "demo.png"), input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert {spec.run_id for spec in DEMO_RUNS} <= run_ids(db_url)


def test_demo_on_the_default_database_needs_no_yes_until_it_holds_other_runs(
    default_database: Path, tmp_path: Path
) -> None:
    plot = str(tmp_path / "demo.png")
    first = CliRunner().invoke(main, ["demo", "--plot", plot])
    assert first.exit_code == 0, first.output
    assert f"demo database: {sqlite_url(default_database).render_as_string()}" in first.output
    again = CliRunner().invoke(main, ["demo", "--plot", plot])  # only its own runs: fine
    assert again.exit_code == 0, again.output
    assert "recorded: 0 new runs" in again.output
    database = TrainingDB(sqlite_url(default_database))
    database.insert_run("a-real-run", None, {})
    database.dispose()
    refused = CliRunner().invoke(main, ["demo", "--plot", plot])
    assert refused.exit_code == 1
    assert "holds 1 runs the demo did not write" in refused.output
    assert "--yes" in refused.output
    assert CliRunner().invoke(main, ["demo", "--yes", "--plot", plot]).exit_code == 0


def test_demo_without_matplotlib_names_the_extra(
    db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [*sys.modules, "matplotlib"]:  # importing matplotlib or its parts fails
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    result = invoke(db_url, "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert result.exit_code == 0, result.output
    assert "pip install 'mangodb[plot]'" in result.output
    assert not (tmp_path / "demo.png").exists()


# --- restore and downgrade -------------------------------------------------------------------


def _backup_with_one_run(db_url: URL, tmp_path: Path) -> tuple[Path, Path]:
    """A backup holding "in-the-backup", and a live SQLite database holding "live-run"."""
    backup = tmp_path / "backup.db"
    source = TrainingDB(sqlite_url(backup))
    source.insert_run("in-the-backup", None, {})
    source.dispose()
    live = tmp_path / "live.db"
    database = TrainingDB(sqlite_url(live))
    database.insert_run("live-run", None, {})
    database.dispose()
    return backup, live


def test_restore_needs_yes_when_stdin_is_not_a_terminal(db_url: URL, tmp_path: Path) -> None:
    backup, live = _backup_with_one_run(db_url, tmp_path)
    refused = invoke(sqlite_url(live), "restore", str(backup))
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1  # one line
    assert "--yes" in refused.output and "not a terminal" in refused.output
    assert run_ids(sqlite_url(live)) == {"live-run"}
    assert not list(tmp_path.glob("*before-restore*"))
    done = invoke(sqlite_url(live), "restore", str(backup), "--yes")
    assert done.exit_code == 0, done.output
    assert run_ids(sqlite_url(live)) == {"in-the-backup"}


def test_restore_onto_no_database_needs_no_yes(db_url: URL, tmp_path: Path) -> None:
    backup, _live = _backup_with_one_run(db_url, tmp_path)
    fresh = tmp_path / "fresh.db"
    result = invoke(sqlite_url(fresh), "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert "no copy kept" in result.output
    assert run_ids(sqlite_url(fresh)) == {"in-the-backup"}


def test_restore_asks_at_a_terminal(db_url: URL, tmp_path: Path, terminal: None) -> None:
    backup, live = _backup_with_one_run(db_url, tmp_path)
    declined = invoke(sqlite_url(live), "restore", str(backup), input="n\n")
    assert declined.exit_code == 1
    assert "replace the database" in declined.output and str(live) in declined.output
    assert run_ids(sqlite_url(live)) == {"live-run"}
    agreed = invoke(sqlite_url(live), "restore", str(backup), input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert run_ids(sqlite_url(live)) == {"in-the-backup"}


def test_downgrade_needs_yes_when_stdin_is_not_a_terminal(db_url: URL) -> None:
    refused = invoke(db_url, "downgrade", "0005")
    assert refused.exit_code == 1
    assert "--yes" in refused.output and "Traceback" not in refused.output
    assert TrainingDB(db_url).schema_state().current == migrations.head_revision()
    done = invoke(db_url, "downgrade", "0005", "--yes")
    assert done.exit_code == 0, done.output
    assert TrainingDB(db_url).schema_state().current == "0005"


def test_downgrade_asks_at_a_terminal(db_url: URL, terminal: None) -> None:
    declined = invoke(db_url, "downgrade", "0005", input="n\n")
    assert declined.exit_code == 1 and "revision 0005" in declined.output
    assert TrainingDB(db_url).schema_state().current == migrations.head_revision()
    agreed = invoke(db_url, "downgrade", "0005", input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert TrainingDB(db_url).schema_state().current == "0005"


def test_downgrade_refusal_names_the_cli_flag(db_url: URL) -> None:
    TrainingDB(db_url).insert_run("keep", None, {})
    TrainingDB(db_url).set_tags("keep", {"owner": "alice"})
    refused = invoke(db_url, "downgrade", "0002", "--yes")
    assert refused.exit_code == 1
    assert "1 rows of run_tags" in refused.output
    assert "--allow-data-loss" in refused.output
    assert "alembic -x" not in refused.output
    assert TrainingDB(db_url).schema_state().current == migrations.head_revision()


# --- reap --dry-run --------------------------------------------------------------------------


def test_reap_dry_run_prints_and_changes_nothing(db_url: URL) -> None:
    database = TrainingDB(db_url)
    database.insert_run("stale[1]", None, {})
    database.update_run_status("stale[1]", "running", started_at="2026-01-01T00:00:00Z")
    dry = invoke(db_url, "reap", "--older-than", "2h", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would mark 1 stale runs as crashed" in dry.output and "stale[1]" in dry.output
    assert database.get_run("stale[1]")["status"] == "running"  # type: ignore[index]
    done = invoke(db_url, "reap", "--older-than", "2h")
    assert "marked 1 stale runs as crashed" in done.output and "stale[1]" in done.output
    assert database.get_run("stale[1]")["status"] == "crashed"  # type: ignore[index]
    assert "no stale runs" in invoke(db_url, "reap", "--dry-run").output


def test_reap_never_asks(db_url: URL, terminal: None) -> None:
    result = invoke(db_url, "reap")  # no input: a prompt would fail with EOF
    assert result.exit_code == 0, result.output
    assert "no stale runs" in result.output


# --- interrupted commands --------------------------------------------------------------------


def test_interrupted_copy_says_how_to_resume(
    db_url: URL, pg_empty_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_copy(*args: object, progress: object, **kwargs: object) -> None:
        assert callable(progress)
        progress(CopyProgress("copy", "training_runs", 1, 10))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_maintenance, "copy_database", interrupted_copy)
    source = db_url.render_as_string(hide_password=False)
    target = pg_empty_url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["copy", "--from", source, "--to", target])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--merge" in result.output
    assert "Aborted!" not in result.output


def test_interrupted_import_and_replay_say_how_to_resume(
    db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_maintenance, "import_directories", interrupt)
    monkeypatch.setattr(cli_maintenance.safe, "replay", interrupt)
    imported = invoke(db_url, "import-wandb", str(tmp_path))
    assert imported.exit_code == 130
    assert "interrupted: re-run the same command" in imported.output
    replayed = invoke(db_url, "replay", "--spool-dir", str(tmp_path))
    assert replayed.exit_code == 130
    assert "interrupted: run `training-db replay` again" in replayed.output


def test_copy_help_example_keeps_its_lines() -> None:
    result = CliRunner().invoke(main, ["copy", "--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Example:")
    first, second = lines[start + 1], lines[start + 2]
    assert first.strip().startswith("training-db copy --from sqlite:///")
    assert first.rstrip().endswith("\\")
    assert second.strip().startswith("--to ")


# --- messages keep their brackets ------------------------------------------------------------


def test_paths_with_brackets_are_printed_whole(db_url: URL, tmp_path: Path) -> None:
    folder = tmp_path / "runs[plot]"
    folder.mkdir()
    database = sqlite_url(folder / "db[1].db")  # a URL shows its brackets as %5B, %5D
    assert invoke(database, "init").exit_code == 0
    backup = folder / "backup[bold].db"
    assert f"to {backup}" in invoke(database, "backup", str(backup)).output
    restored = invoke(database, "restore", str(backup), "--yes")
    assert f"restored {backup}" in restored.output
    assert f"kept at {folder}" in restored.output
    demo = invoke(db_url, "demo", "--yes", "--plot", str(folder / "demo[red].png"))
    assert demo.exit_code == 0, demo.output
    assert f"wrote {folder / 'demo[red].png'}" in demo.output


def _literals_with_brackets() -> list[str]:
    """Every user-facing string constant of the package that holds a ``[``.

    Module-level constants anywhere (hints such as ``MISSING_MATPLOTLIB``, URL shapes), and
    every literal in the command line's modules, less rich's own style tags.
    """
    package = CLI_SOURCES.parent
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        in_cli = path.parent == CLI_SOURCES
        nodes = ast.walk(tree) if in_cli else (n.value for n in tree.body if _is_assign(n))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in nodes:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                for tag in ("[bold]", "[/]", "[dim]", "[/bold]"):
                    text = text.replace(tag, "")
                regex = text.startswith("^")
                if "[" in text.strip("[") and not regex and id(node) not in docstrings:
                    found.add(node.value)
    return sorted(found)


def _is_assign(node: ast.stmt) -> bool:
    return isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None


MESSAGES_WITH_BRACKETS = _literals_with_brackets()


def test_the_bracketed_messages_are_found() -> None:
    assert "plotting needs matplotlib: pip install 'mangodb[plot]'" in MESSAGES_WITH_BRACKETS
    assert any("mangodb[wandb]" in message for message in MESSAGES_WITH_BRACKETS)


@pytest.mark.parametrize(
    "message", [pytest.param(message, id=message[:40]) for message in MESSAGES_WITH_BRACKETS]
)
def test_every_bracketed_message_is_printed_whole(
    message: str, db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message, raised where the command line prints a hint as it is (the demo's
    plot hint) and where it reports an error (one line on stderr), keeps its brackets."""
    from training_db.cli import demo as cli_demo

    def plot_refused(*args: object, **kwargs: object) -> None:
        raise ImportError(message)

    monkeypatch.setattr(cli_demo, "record_demo_runs", lambda db, log: [])
    monkeypatch.setattr(cli_demo.curves, "plot_groups", plot_refused)
    hinted = invoke(db_url, "demo", "--yes", "--plot", str(tmp_path / "demo.png"))
    assert hinted.exit_code == 0, hinted.output
    assert f"(no plot: {message})" in hinted.output

    def refused(*args: object, **kwargs: object) -> None:
        raise ValueError(message)

    monkeypatch.setattr(cli_maintenance, "parse_duration", refused)
    failed = invoke(db_url, "reap")
    assert failed.exit_code == 1
    assert f"error: {message}" in failed.output


def test_cli_prints_text_without_markup_or_escaped() -> None:
    """Every ``print`` of an f-string in the command line either turns markup off or
    escapes each value it interpolates, so a bracket in a path, URL or run id survives."""
    offenders = []
    for path in sorted(CLI_SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "print"
                and node.args
                and isinstance(node.args[0], ast.JoinedStr)
            ):
                continue
            if any(
                k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords
            ):
                continue
            for value in node.args[0].values:
                if isinstance(value, ast.FormattedValue) and not _escaped(value.value):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(value.value)}")
    assert offenders == []


def _escaped(node: ast.expr) -> bool:
    """``escape(...)``, or a number (``len(...)``), which holds no bracket."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("escape", "len")
    )
