"""The ``training-db`` group: its global options, the `Context` every command gets, and the
one path by which a user's mistake becomes a line on stderr.

Command modules import `main`, `pass_context` and `format_option` from here and register
their commands on `main`; this module imports none of them, so there is no import cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import click

from training_db.api import TrainingDB
from training_db.cli.output import make_console
from training_db.core.errors import TrainingDBError
from training_db.core.settings import resolve_url
from training_db.schema import TrainingRun

F = TypeVar("F", bound=Callable[..., Any])
USER_ERRORS: Final = (TrainingDBError, ValueError, LookupError, OSError)
# The columns of a run record in machine output (JSON, CSV): every column of the runs table
# but the two documents, which a record carries parsed (``config``, ``final_metrics``).
RUN_COLUMNS: Final = tuple(
    column.key
    for column in TrainingRun.__table__.columns
    if column.key not in ("config_json", "final_metrics_json")
)


class Context:
    """What every command needs: the database (opened lazily) and how to report."""

    def __init__(self, url: str | None, verbose: bool) -> None:
        self.url = url
        self.verbose = verbose
        self.out = make_console()
        self._db: TrainingDB | None = None

    @property
    def db(self) -> TrainingDB:
        if self._db is None:
            # Resolved here so that a bad URL's error names --url rather than an argument.
            url = None if self.url is None else resolve_url(self.url, source="--url")
            self._db = TrainingDB(url)
        return self._db


pass_context = click.make_pass_decorator(Context)


def format_option(*choices: str, default: str) -> Callable[[F], F]:
    """The ``--format`` option of a command that can print ``choices``."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format.",
    )


class FriendlyGroup(click.Group):
    """Turns user mistakes into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose
            if verbose:
                raise
            fail(str(exc) or type(exc).__name__)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 1: how every command reports a failure."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(cls=FriendlyGroup)
@click.option(
    "--url",
    metavar="URL",
    help="Database URL; default: TRAINING_DB_URL / TRAINING_DB_HOST / TRAINING_DB_PATH / the "
    "embedded SQLite file.",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="mangodb")
@click.pass_context
def main(ctx: click.Context, url: str | None, verbose: bool) -> None:
    """The training-runs database: inspect, query and operate it.

    \b
    Examples:
      training-db demo
      training-db runs --status completed --method mgda --limit 20
      training-db runs --where 'config.training.batch_size>=64' --format csv
      training-db show my_run_id
    """
    ctx.obj = Context(url, verbose)
