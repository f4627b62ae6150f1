"""The ``training-db`` group: its global options, the `Context` every command gets, and the
one path by which a user's mistake becomes a line on stderr.

Command modules import `main`, `pass_context` and `format_option` from here and register
their commands on `main`; this module imports none of them, so there is no import cycle.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import click
from alembic.util import CommandError
from sqlalchemy import exc as sa_exc

from training_db.api import TrainingDB
from training_db.cli.output import make_console
from training_db.core.errors import TrainingDBError, describe_operational_error
from training_db.core.settings import MASK, resolve_url, url_password
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
    """Turns user mistakes into one line on stderr and exit status 1 (`error_message`).

    Every command (and sub-group) added to it also takes ``--url`` and ``-v`` itself, so
    the global options work after the command name too (`add_global_options`).
    """

    group_class = type  # `main.group()` makes a FriendlyGroup too (the objectives group)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MISTAKES as exc:
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose
            if verbose:
                raise
            fail(error_message(exc, ctx.obj if isinstance(ctx.obj, Context) else None))


# What a user can cause (a bad argument, URL, path or revision; a missing extra; a server
# that is down): one line each. Anything else is a bug and keeps its traceback.
MISTAKES: Final = (
    *USER_ERRORS,
    ImportError,
    sa_exc.SQLAlchemyError,
    CommandError,
    sqlite3.Error,
)
# The extra that installs a module mangodb imports only when a command needs it.
EXTRAS: Final = {"wandb": "wandb", "matplotlib": "plot"}


def error_message(exc: BaseException, context: Context | None = None) -> str:
    """The one line (after ``error: ``) that says what went wrong and what to do."""
    if isinstance(exc, ImportError) and "pip install" not in str(exc):
        module = (exc.name or "").partition(".")[0]
        extra = EXTRAS.get(module)
        fix = f"pip install 'mangodb[{extra}]'" if extra else "reinstall mangodb"
        message = f"{exc}; {fix}"
    elif isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        message = (
            f"{describe_operational_error(exc)} (check the URL, --url or TRAINING_DB_*, and "
            "that the server is running)"
        )
    elif isinstance(exc, sa_exc.DBAPIError):
        message = f"the database refused the statement: {first_line(str(exc.orig))}"
    else:
        message = first_line(str(exc)) or type(exc).__name__
    return redact(message, context)


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def redact(message: str, context: Context | None) -> str:
    """``message`` with every password the configuration holds replaced by ``***``."""
    urls = [os.environ.get("TRAINING_DB_URL", "")]
    if context is not None and context.url:
        urls.append(context.url)
    secrets = [url_password(url) for url in urls]
    secrets.append(os.environ.get("TRAINING_DB_PASSWORD"))
    for secret in secrets:
        if secret:
            message = message.replace(secret, MASK)
    return message


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 1: how every command reports a failure."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _set_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    context = ctx.find_object(Context)
    if value is not None and context is not None:
        context.url = value


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    context = ctx.find_object(Context)
    if value and context is not None:
        context.verbose = True


def add_global_options(command: click.Command) -> None:
    """Give ``command`` the group's ``--url`` and ``-v``: given after the command's name,
    they override the ones before it (hidden from the command's help; see ``--help``)."""
    names = {name for param in command.params for name in param.opts}
    if "--url" not in names:
        command.params.append(
            click.Option(
                ["--url"], metavar="URL", expose_value=False, hidden=True, callback=_set_url
            )
        )
    # A command whose own --verbose means something else (import-wandb lists every
    # directory) still takes -v for tracebacks.
    verbose_flags = [flag for flag in ("--verbose", "-v") if flag not in names]
    if verbose_flags:
        command.params.append(
            click.Option(
                verbose_flags,
                is_flag=True,
                expose_value=False,
                hidden=True,
                callback=_set_verbose,
            )
        )


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
    --url and -v may also follow the command: training-db runs --url URL -v.

    \b
    Examples:
      training-db demo
      training-db runs --status completed --method mgda --limit 20
      training-db runs --where 'config.training.batch_size>=64' --format csv
      training-db show my_run_id
    """
    ctx.obj = Context(url, verbose)
