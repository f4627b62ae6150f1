"""Asking before a command replaces or deletes data, and saying how to resume one cut short.

At a terminal a destructive command (``restore``, ``downgrade``, ``demo`` on a database that
is not its own) asks first; anywhere else (a script, cron, a pipe) nobody can answer, so it
refuses unless ``--yes`` says the caller meant it. ``reap`` is not among them: it runs from
cron and only marks runs that stopped heartbeating (``--dry-run`` shows which).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import click

from training_db.cli.app import fail

F = TypeVar("F", bound=Callable[..., Any])
# The exit status of a process stopped by SIGINT (128 + 2), as shells report Ctrl-C.
INTERRUPTED: Final = 130


def yes_option(function: F) -> F:
    """The ``--yes`` option of a command that asks before it replaces or deletes data."""
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        help="Do not ask for confirmation; needed when stdin is not a terminal.",
    )(function)


def stdin_is_terminal() -> bool:
    """Whether someone can answer a prompt (tests replace this to play that someone)."""
    return sys.stdin.isatty()


def confirm(action: str, yes: bool) -> None:
    """Go on only if ``yes`` or a person at the terminal agrees to ``action``; else exit 1.

    ``action`` completes "this will ...": say what is replaced or deleted, and where.
    """
    if yes:
        return
    if not stdin_is_terminal():
        fail(f"this would {action}; stdin is not a terminal, so pass --yes to go ahead")
    if not click.confirm(f"This will {action}. Go ahead?", default=False, err=True):
        fail("cancelled: nothing was changed")


@contextmanager
def resume_hint(how: str) -> Iterator[None]:
    """Turn Ctrl-C inside the block into one line saying how to resume, and exit 130."""
    try:
        yield
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"interrupted: {how}", err=True)
        sys.exit(INTERRUPTED)
