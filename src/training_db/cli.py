"""``training-db``: the command line for people at a terminal.

Thin commands over the library: each parses its options, calls one or two public functions
and renders the answer with rich. User mistakes print one line on stderr and exit 1;
``--verbose`` shows the traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table

from training_db import migrations
from training_db.db import TrainingDB
from training_db.demo import record_demo_runs
from training_db.errors import TrainingDBError
from training_db.filters import MAX_LIMIT, parse_timestamp
from training_db.models import TrainingRun
from training_db.runs import RunDict
from training_db.settings import safe_url

RUN_TABLE_COLUMNS: Final = (
    ("run_id", "run"),
    ("status", "status"),
    ("gradient_method", "method"),
    ("batch_size", "batch"),
    ("learning_rate", "lr"),
    ("created_at", "created UTC"),
    ("duration_seconds", "hours"),
    ("final_loss", "loss"),
)
SCALAR_COLUMNS: Final = tuple(
    column.key
    for column in TrainingRun.__table__.columns
    if column.key not in ("config_json", "final_metrics_json")
)
_WHERE = re.compile(r"^\s*(?P<key>[^<>=!\s][^<>=!]*?)\s*(?P<op>>=|<=|!=|==|=|>|<)\s*(?P<value>.*)$")
_WHERE_OPERATORS: Final = {
    "=": "eq",
    "==": "eq",
    "!=": "ne",
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SINCE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

PIPED_WIDTH: Final = 160
USER_ERRORS: Final = (TrainingDBError, ValueError, LookupError, OSError)


class Context:
    """What every command needs: the database (opened lazily) and how to report."""

    def __init__(self, url: str | None, verbose: bool) -> None:
        self.url = url
        self.verbose = verbose
        self.out = Console(highlight=False, soft_wrap=True)
        if not self.out.is_terminal and "COLUMNS" not in os.environ:
            # Piped or captured output: do not squeeze tables into 80 columns.
            self.out = Console(highlight=False, soft_wrap=True, width=PIPED_WIDTH)
        self._db: TrainingDB | None = None

    @property
    def db(self) -> TrainingDB:
        if self._db is None:
            self._db = TrainingDB(self.url)
        return self._db


pass_context = click.make_pass_decorator(Context)


class FriendlyGroup(click.Group):
    """Turns user mistakes into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            verbose = isinstance(ctx.obj, Context) and ctx.obj.verbose
            if verbose:
                raise
            _fail(str(exc) or type(exc).__name__)


def _fail(message: str) -> NoReturn:
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


# --- schema ---------------------------------------------------------------------------------


@main.command()
@pass_context
def init(context: Context) -> None:
    """Create the database, or bring it to the newest schema revision (idempotent)."""
    context.db.init_db()
    context.out.print(
        f"database ready at {safe_url(context.db.url)} (revision {migrations.head_revision()})"
    )


@main.command()
@click.argument("revision", default="head")
@pass_context
def upgrade(context: Context, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    migrations.upgrade(context.db.url, revision)
    context.out.print(f"upgraded {safe_url(context.db.url)} to {revision}")


@main.command()
@click.argument("revision")
@pass_context
def downgrade(context: Context, revision: str) -> None:
    """Downgrade the schema to REVISION ('base' removes every table)."""
    migrations.downgrade(context.db.url, revision)
    context.out.print(f"downgraded {safe_url(context.db.url)} to {revision}")


@main.command()
@pass_context
def current(context: Context) -> None:
    """Show the backend, the URL (password hidden) and the schema revision."""
    state = context.db.schema_state()
    pending = "no" if state.is_current else "yes: run `training-db upgrade`"
    rows = [
        ("backend", context.db.url.get_backend_name()),
        ("url", safe_url(context.db.url)),
        ("current revision", state.current or "(none)"),
        ("head revision", state.head),
        ("upgrade pending", pending),
    ]
    for label, value in rows:
        context.out.print(f"{label:>17}: {value}")


# --- reading --------------------------------------------------------------------------------


def parse_where(expressions: Iterable[str]) -> dict[str, Any]:
    """``'config.training.batch_size>=64'`` → ``{'config.training.batch_size': {'gte': '64'}}``."""
    filters: dict[str, Any] = {}
    for expression in expressions:
        match = _WHERE.match(expression)
        if match is None:
            raise ValueError(
                f"--where {expression!r}: expected KEY OP VALUE with OP one of = != > >= < <="
            )
        key, value = match.group("key").strip(), match.group("value").strip()
        operators = filters.setdefault(key, {})
        operators[_WHERE_OPERATORS[match.group("op")]] = value
    return filters


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``7d``, ``12h``, ``30m`` ago, or an ISO 8601 timestamp."""
    match = _SINCE.match(text)
    if match is None:
        try:
            return parse_timestamp(text)
        except ValueError:
            raise ValueError(
                f"--since {text!r}: use e.g. 7d, 12h, 30m or an ISO timestamp"
            ) from None
    amount, unit = float(match.group(1)), match.group(2)
    now = now or dt.datetime.now(dt.timezone.utc)
    return now - dt.timedelta(**{_SINCE_UNITS[unit]: amount})


def parse_tags(pairs: Iterable[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[f"tag.{key}"] = value
    return tags


@main.command()
@click.option("--status", help="launched, running, completed, failed or crashed.")
@click.option("--host", help="Host, e.g. ec2 or expanse.")
@click.option("--method", "gradient_method", help="Gradient method, e.g. mgda.")
@click.option(
    "--where",
    "wheres",
    multiple=True,
    metavar="EXPR",
    help="KEY OP VALUE; KEY a column, config.<path>, summary.<key> or tag.<key>.",
)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag equality.")
@click.option("--since", help="Created within e.g. 7d, 12h, 30m, or after an ISO timestamp.")
@click.option("--order-by", default="created_at DESC", show_default=True)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@pass_context
def runs(
    context: Context,
    status: str | None,
    host: str | None,
    gradient_method: str | None,
    wheres: Sequence[str],
    tags: Sequence[str],
    since: str | None,
    order_by: str,
    limit: int,
    output_format: str,
) -> None:
    """List runs, newest first, with the filters of query_runs.

    \b
    Examples:
      training-db runs --status completed --method mgda
      training-db runs --where 'config.training.batch_size>=64' --where 'summary.train/loss<0.5'
      training-db runs --tag owner=alice --since 7d --format json
    """
    filters: dict[str, Any] = parse_where(wheres)
    for key, value in (("status", status), ("host", host), ("gradient_method", gradient_method)):
        if value is not None:
            filters[key] = value
    filters.update(parse_tags(tags))
    if since is not None:
        filters["created_after"] = parse_since(since)
    found = context.db.query_runs(filters, order_by=order_by, limit=limit)
    render_runs(context.out, found, output_format)


def render_runs(out: Console, found: Sequence[RunDict], output_format: str) -> None:
    if output_format == "json":
        out.print_json(json_text([run_record(run) for run in found]))
    elif output_format == "csv":
        click.echo(csv_text(found), nl=False)
    else:
        out.print(runs_table(found))


def run_record(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run for machine output: every column, the documents as objects, and the tags."""
    record = {name: run[name] for name in SCALAR_COLUMNS}
    record["config"] = run["config"]
    record["final_metrics"] = run["final_metrics"]
    record["tags"] = run["tags"]
    return record


def _plain(value: Any) -> Any:
    """Strict-JSON form: timestamps ISO 8601, NaN and ±Infinity as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def json_text(value: Any) -> str:
    return json.dumps(_plain(value), allow_nan=False, ensure_ascii=False)


def csv_text(found: Sequence[RunDict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCALAR_COLUMNS)
    for run in found:
        writer.writerow(["" if run[name] is None else _plain(run[name]) for name in SCALAR_COLUMNS])
    return buffer.getvalue()


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "duration_seconds":
        return f"{value / 3600:.2f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M") if name else value.isoformat()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


NUMERIC_CELLS: Final = ("batch_size", "learning_rate", "duration_seconds", "final_loss")
STATUS_STYLES: Final = {
    "completed": "green",
    "running": "cyan",
    "crashed": "red",
    "failed": "red",
    "launched": "yellow",
}


def runs_table(found: Sequence[RunDict]) -> Table | str:
    if not found:
        return "no runs match"
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for name, title in RUN_TABLE_COLUMNS:
        table.add_column(
            title,
            no_wrap=name in ("run_id", "status", "created_at"),
            justify="right" if name in NUMERIC_CELLS else "left",
        )
    for run in found:
        cells = [_cell(name, run[name]) for name, _ in RUN_TABLE_COLUMNS]
        style = STATUS_STYLES.get(run["status"], "")
        cells[1] = f"[{style}]{cells[1]}[/]" if style else cells[1]
        table.add_row(*cells)
    return table


@main.command()
@click.argument("run_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@pass_context
def show(context: Context, run_id: str, output_format: str) -> None:
    """Every field of one run, with its tags.

    \b
    Example:
      training-db show mgda_i-abc123
    """
    run = context.db.get_run(run_id)
    if run is None:
        raise LookupError(f"no training run with run_id={run_id!r}")
    if output_format == "json":
        context.out.print_json(json_text(run_record(run)))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", justify="right")
    table.add_column(overflow="fold")
    for name in SCALAR_COLUMNS:
        table.add_row(
            name, _cell("", run[name]) if name != "duration_seconds" else _duration_cell(run[name])
        )
    table.add_row("tags", json_text(run["tags"]) if run["tags"] else "-")
    table.add_row("config", _document_cell(run["config"]))
    table.add_row("final metrics", _document_cell(run["final_metrics"]))
    context.out.print(table)


def _duration_cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _document_cell(document: Any) -> str:
    if document is None:
        return "-"
    text = json_text(document)
    return text if len(text) <= 400 else f"{text[:400]}… ({len(document)} keys)"


@main.command()
@pass_context
def stats(context: Context) -> None:
    """Counts of runs by status, with blog posts and with crash analyses."""
    counts = context.db.get_stats()
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", justify="right")
    table.add_column(justify="right")
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), str(value))
    context.out.print(table)


# --- demo -----------------------------------------------------------------------------------


@main.command()
@pass_context
def demo(context: Context) -> None:
    """Record a few realistic runs through the public API, then query them.

    Walks runs through launch → running → completed / crashed on the selected database
    (the embedded SQLite file unless --url or TRAINING_DB_* say otherwise). Re-running it
    leaves the runs it recorded before as they are.
    """
    recorded = record_demo_runs(context.db, log=context.out.print)
    context.out.print(f"\n[bold]database:[/] {safe_url(context.db.url)}")
    context.out.print(f"[bold]recorded:[/] {len(recorded)} new runs\n")
    context.out.print("[bold]training-db runs --tag demo=true[/]")
    context.out.print(runs_table(context.db.query_runs({"tag.demo": True}, limit=20)))
    context.out.print("\n[bold]completed runs by gradient method[/]")
    for method in ("mgda", "pcgrad"):
        done = context.db.query_runs(
            {"tag.demo": True, "gradient_method": method, "status": "completed"}
        )
        losses = [run["final_loss"] for run in done if run["final_loss"] is not None]
        mean = sum(losses) / len(losses) if losses else math.nan
        context.out.print(f"  {method:>7}: {len(done)} completed, mean final loss {mean:.4f}")
