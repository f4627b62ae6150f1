"""The command line's documentation stays whole: every command's help has an example, the
docs' reference is generated from that help, and the README lists every command and every
schema revision. Also: what the README's commands leave behind is git-ignored."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import click
import pytest

from training_db.cli import main
from training_db.schema import migrations

ROOT = Path(__file__).resolve().parent.parent


def _load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(
    command: click.Command, name: str = "training-db", parent: click.Context | None = None
) -> list[tuple[str, click.Command, click.Context]]:
    """Every command of the group, depth first, as the docs hook is expected to find them."""
    context = click.Context(command, info_name=name.rsplit(" ", 1)[-1], parent=parent)
    found = [(name, command, context)]
    if isinstance(command, click.Group):
        for child in command.list_commands(context):
            subcommand = command.get_command(context, child)
            assert subcommand is not None
            found += _walk(subcommand, f"{name} {child}", context)
    return found


COMMANDS = _walk(main)
LEAVES = [name for name, command, _ in COMMANDS if not isinstance(command, click.Group)]


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    return _load_hooks()


def _section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## ``."""
    start = markdown.index(f"## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def test_the_walk_finds_every_command() -> None:
    assert "training-db restore" in LEAVES and "training-db objectives compare" in LEAVES
    top_level = {name.split()[1] for name in LEAVES}
    assert top_level == set(main.list_commands(click.Context(main)))


@pytest.mark.parametrize(
    ("name", "command", "context"),
    [
        pytest.param(name, command, context, id=name)
        for name, command, context in COMMANDS
        if not isinstance(command, click.Group) or context.parent is None
    ],
)
def test_every_command_has_an_example(
    name: str, command: click.Command, context: click.Context
) -> None:
    """A subgroup (``objectives``) is exempt: its help lists its commands, which have one."""
    help_text = command.get_help(context)
    match = re.search(r"^  Examples?:\n((?:    .+\n)+)", help_text, re.MULTILINE)
    assert match is not None, f"{name} --help has no Example: block"
    example = match.group(1)
    assert "training-db" in example
    if context.parent is not None:  # a command's example runs that command
        words = name.split()[1:]
        assert all(word in example for word in words), example


def test_the_reference_holds_every_commands_help(hooks: ModuleType) -> None:
    assert [name for name, _, _ in hooks.cli_commands()] == [name for name, _, _ in COMMANDS]
    reference = hooks.cli_reference_markdown()
    for name, command, _ in COMMANDS:
        context = next(c for n, _, c in hooks.cli_commands() if n == name)
        section = reference.split(f"## `{name}` {{#{hooks.cli_anchor(name)}}}\n", 1)[1]
        assert section.startswith("\n```text\n" + command.get_help(context))
    assert (ROOT / "docs" / "reference" / "cli.md").read_text().count(
        hooks.CLI_REFERENCE_MARKER
    ) == 1


def test_the_commands_table_lists_every_command_once(hooks: ModuleType) -> None:
    table = hooks.cli_commands_markdown("cli.md", "reference/cli.md")
    for name in LEAVES:
        short = name.removeprefix("training-db ")
        assert table.count(f"[`{short}`](reference/cli.md#{hooks.cli_anchor(name)})") == 1
    assert hooks.CLI_COMMANDS_MARKER in (ROOT / "docs" / "cli.md").read_text()
    assert hooks.cli_commands_markdown("reference/x.md", "reference/cli.md").startswith(
        "| command"
    ) and "(../reference/cli.md#" in hooks.cli_commands_markdown(
        "reference/x.md", "reference/cli.md"
    )


def test_the_hook_replaces_only_its_markers(hooks: ModuleType) -> None:
    class Page:
        class file:
            src_uri = "cli.md"

    page = f"a\n{hooks.CLI_COMMANDS_MARKER}\nb\n{hooks.CLI_REFERENCE_MARKER}\nc"
    out = hooks.on_page_markdown(page, Page(), None, None)
    assert "<!--" not in out and out.startswith("a\n| command") and out.endswith("\nc")
    assert hooks.on_page_markdown("plain", Page(), None, None) == "plain"


def test_readme_lists_every_command() -> None:
    commands = _section((ROOT / "README.md").read_text(), "Command line")
    for name in main.list_commands(click.Context(main)):
        assert f"`{name}`" in commands or f"`{name} " in commands, f"README misses {name}"


def test_readme_lists_every_revision() -> None:
    schema = _section((ROOT / "README.md").read_text(), "Schema and migrations")
    revisions = sorted(path.name[:4] for path in (ROOT / "alembic" / "versions").glob("0*.py"))
    assert revisions[-1] == migrations.head_revision()
    for revision in revisions:
        assert f"`{revision}`" in schema, f"README's migrations section misses {revision}"


@pytest.mark.parametrize(
    "path",
    [
        "training-db-demo.png",  # training-db demo
        ".venv/bin/python",  # python3 -m venv .venv
        ".coverage",  # pytest --cov
        "site/index.html",  # mkdocs build
        "dist/mangodb-1.0.tar.gz",  # python -m build
        "src/mangodb.egg-info/PKG-INFO",  # pip install -e .
        "training_runs.db",  # TRAINING_DB_PATH=./training_runs.db
        "training_runs.db.before-restore-20261202T063249Z",  # training-db restore
        "bench/results/run.json",  # python -m bench.run
    ],
)
def test_gitignore_covers_what_the_readme_commands_create(path: str) -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, f"{path} is not git-ignored"
