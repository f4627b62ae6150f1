"""MkDocs hooks: pages made from the code itself, so they cannot drift from it.

``<!-- operations -->`` in a page becomes the table and reference of every public operation,
made from the declarations in ``training_db.store`` and ``training_db.ops`` (see
``training_db.core.operations``): the same registry the ``TrainingDB`` methods, the
module-level functions and the ``safe`` twins are made from. Static documentation tools
cannot see those faces (they are made when the package is imported), so this hook imports
the package and writes them out.

``<!-- cli-commands -->`` becomes a table of every ``training-db`` command with its one-line
summary, and ``<!-- cli-reference -->`` one section per command holding its ``--help``
exactly as the terminal prints it: both walk the click group, so a new command or option
appears without an edit.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, Final

import click

import training_db  # noqa: F401 - importing the package declares every operation
from training_db.cli import main
from training_db.core.operations import operations

OPERATIONS_MARKER: Final = "<!-- operations -->"
CLI_COMMANDS_MARKER: Final = "<!-- cli-commands -->"
CLI_REFERENCE_MARKER: Final = "<!-- cli-reference -->"
CLI_NAME: Final = "training-db"
CLI_REFERENCE_PAGE: Final = "reference/cli.md"
# The width the help is laid out for, whatever the terminal that builds the docs.
HELP_WIDTH: Final = 88


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the markers this hook knows; leave every other page as it is."""
    if OPERATIONS_MARKER in markdown:
        markdown = markdown.replace(OPERATIONS_MARKER, operations_markdown())
    if CLI_COMMANDS_MARKER in markdown:
        markdown = markdown.replace(
            CLI_COMMANDS_MARKER, cli_commands_markdown(page.file.src_uri, CLI_REFERENCE_PAGE)
        )
    if CLI_REFERENCE_MARKER in markdown:
        markdown = markdown.replace(CLI_REFERENCE_MARKER, cli_reference_markdown())
    return markdown


def cli_commands() -> Iterator[tuple[str, click.Command, click.Context]]:
    """Every command of the ``training-db`` group, depth first: (full name, command, context).

    The group itself comes first; a subgroup (``objectives``) comes before its commands.
    """

    def walk(
        command: click.Command, name: str, parent: click.Context | None
    ) -> Iterator[tuple[str, click.Command, click.Context]]:
        context = click.Context(
            command,
            info_name=name.rsplit(" ", 1)[-1],
            parent=parent,
            terminal_width=HELP_WIDTH,
            max_content_width=HELP_WIDTH,
        )
        yield name, command, context
        if isinstance(command, click.Group):
            for child in command.list_commands(context):
                subcommand = command.get_command(context, child)
                if subcommand is not None and not subcommand.hidden:
                    yield from walk(subcommand, f"{name} {child}", context)

    yield from walk(main, CLI_NAME, None)


def cli_anchor(name: str) -> str:
    """A command's heading id: ``training-db objectives compare`` → ``objectives-compare``."""
    return name.removeprefix(CLI_NAME).strip().replace(" ", "-") or CLI_NAME


def cli_commands_markdown(from_page: str, reference_page: str) -> str:
    """A table of every command (groups left out) and its summary, linking to its help."""
    link = _relative(from_page, reference_page)
    lines = ["| command | what it does |", "|---|---|"]
    for name, command, _context in cli_commands():
        if isinstance(command, click.Group):
            continue
        summary = command.get_short_help_str(limit=200).replace("|", "\\|")
        short = name.removeprefix(CLI_NAME).strip()
        lines.append(f"| [`{short}`]({link}#{cli_anchor(name)}) | {summary} |")
    return "\n".join(lines) + "\n"


def cli_reference_markdown() -> str:
    """One section per command: the group's help first, then each command's ``--help``."""
    lines: list[str] = []
    for name, command, context in cli_commands():
        lines += [
            f"## `{name}` {{#{cli_anchor(name)}}}",
            "",
            "```text",
            command.get_help(context),
            "```",
            "",
        ]
    return "\n".join(lines)


def _relative(from_page: str, to_page: str) -> str:
    """The link from one docs page to another (both relative to ``docs/``)."""
    depth = from_page.count("/")
    return "../" * depth + to_page


def operations_markdown() -> str:
    """The operations table, then one section per operation: signature and docstring."""
    declared = list(operations())
    lines = [
        '| operation | kind | retried after a lost COMMIT | call-time "now" (safe twin) '
        "| `safe` twin | declared in |",
        "|---|---|---|---|---|---|",
    ]
    for operation in declared:
        spans = operation.scope == "database"  # its own transactions decide their retries
        lines.append(
            f"| [`{operation.name}`](#{operation.name}) | {operation.kind}"
            f"{' (spans transactions)' if spans else ''} "
            f"| {'—' if spans else 'yes' if operation.idempotent else 'no'} "
            f"| {', '.join(f'`{name}`' for name in operation.now) or '—'} "
            f"| {'yes' if operation.safe else '—'} "
            f"| `{operation.function.__module__}.{operation.family}` |"
        )
    for operation in declared:
        lines += [
            "",
            f"### `{operation.name}` {{#{operation.name}}}",
            "",
            "```python",
            f"{operation.name}{operation.signature}",
            "```",
            "",
            inspect.cleandoc(operation.function.__doc__ or ""),
        ]
    return "\n".join(lines) + "\n"
