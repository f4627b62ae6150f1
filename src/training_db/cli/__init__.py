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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NoReturn, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from training_db import safe
from training_db.api import TrainingDB
from training_db.core.errors import TrainingDBError
from training_db.core.settings import resolve_url, safe_url
from training_db.core.validation import MAX_LIMIT, parse_timestamp
from training_db.ops import curves
from training_db.ops.demo import record_demo_runs
from training_db.ops.plots import sparkline
from training_db.ops.transfer import (
    DEFAULT_BATCH_SIZE,
    CopyProgress,
    backup_sqlite,
    copy_database,
    restore_sqlite,
)
from training_db.ops.wandb_import import count_actions, import_directories
from training_db.schema import TrainingRun, migrations
from training_db.store.records import RunDict
from training_db.store.wandb import ImportResult

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

F = TypeVar("F", bound=Callable[..., Any])
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
@click.option(
    "--allow-data-loss",
    is_flag=True,
    help="Go ahead even when a step would delete rows or values (back up first).",
)
@pass_context
def downgrade(context: Context, revision: str, allow_data_loss: bool) -> None:
    """Downgrade the schema to REVISION ('base' removes every table).

    A step that would delete data refuses, changing nothing, unless --allow-data-loss.
    """
    migrations.downgrade(context.db.url, revision, allow_data_loss=allow_data_loss)
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
@format_option("table", "json", "csv", default="table")
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


OBJECTIVE_METRICS: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
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
@format_option("table", "json", default="table")
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
    loss = _loss_curve(context.db, run_id)
    if loss is not None:
        key, values = loss
        finite = [value for value in values if value is not None and math.isfinite(value)]
        summary = f"  {finite[0]:.4g} → {finite[-1]:.4g}" if finite else ""
        table.add_row(key, f"{sparkline(values)}{summary}  ({len(values)} points)")
    context.out.print(table)
    objectives = context.db.get_run_objectives(run_id)
    if objectives:
        context.out.print(objectives_table(objectives))


def _loss_curve(db: TrainingDB, run_id: str) -> tuple[str, list[float | None]] | None:
    """The first loss key the run logged, as plain values for a sparkline."""
    for key in db.key_metrics.loss:
        values = db.get_history(run_id, keys=[key]).get(key)
        if values:
            numbers = [
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                for v in values
            ]
            return key, numbers
    return None


def objectives_table(objectives: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for title in ("objective", "direction", "weight", *OBJECTIVE_METRICS):
        table.add_column(title, justify="left" if title in ("objective", "direction") else "right")
    for row in objectives:
        table.add_row(
            row["objective_name"],
            row["direction"] or "-",
            _cell("weight", row["weight"]),
            *(_cell(metric, row[metric]) for metric in OBJECTIVE_METRICS),
        )
    return table


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
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default="training-db-demo.png",
    show_default=True,
    help="Where to write the demo's loss plot.",
)
@pass_context
def demo(context: Context, plot_path: str) -> None:
    """Record a few realistic runs through the public API, then query and plot them.

    Walks runs through launch → running (logging history) → completed / crashed on the
    selected database (the embedded SQLite file unless --url or TRAINING_DB_* say
    otherwise), prints a runs table and a gradient-method comparison, and writes a plot of
    the loss curves by method. Re-running it leaves the runs it recorded before as they are.
    """
    recorded = record_demo_runs(context.db, log=context.out.print)
    context.out.print(f"\n[bold]database:[/] {safe_url(context.db.url)}")
    context.out.print(f"[bold]recorded:[/] {len(recorded)} new runs\n")
    context.out.print("[bold]$ training-db runs --tag demo=true[/]")
    context.out.print(runs_table(context.db.query_runs({"tag.demo": True}, limit=20)))
    context.out.print("\n[bold]$ training-db objectives compare COMT_activity[/]")
    context.out.print(comparison_table(context.db.compare_gradient_methods("COMT_activity")))
    try:
        written = curves.plot_groups(
            context.db, "train/loss", plot_path, filters={"tag.demo": True}
        )
    except ImportError as exc:
        context.out.print(f"\n(no plot: {exc})")
    else:
        context.out.print(
            f"\n[bold]$ training-db plot --group-by gradient_method "
            f"--metric train/loss -o {plot_path}[/]\nwrote {written}"
        )


# --- objectives -----------------------------------------------------------------------------

_OBJECTIVE_CONDITION = re.compile(
    r"^\s*(?P<name>[^<>=\s]+)\s*(?P<op>>=|<=|==|=)\s*(?P<value>\S+)\s*$"
)


def parse_objective_conditions(conditions: Iterable[str], metric: str) -> dict[str, Any]:
    """``'COMT_activity>=0.8'`` → ``{'COMT_activity': {'min': '0.8', 'metric': metric}}``."""
    filters: dict[str, dict[str, Any]] = {}
    for condition in conditions:
        match = _OBJECTIVE_CONDITION.match(condition)
        if match is None:
            raise ValueError(
                f"{condition!r}: expected OBJECTIVE>=VALUE or OBJECTIVE<=VALUE (bounds are "
                "inclusive), e.g. 'COMT_activity>=0.8'"
            )
        bounds = filters.setdefault(match.group("name"), {"metric": metric})
        value = _number(match.group("value"), condition)
        if match.group("op") in (">=", "==", "="):
            bounds["min"] = value
        if match.group("op") in ("<=", "==", "="):
            bounds["max"] = value
    return filters


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where!r}: {text!r} is not a number") from None


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> Table | str:
    if not rows:
        return "no runs with this objective"
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for title in ("method", "runs", "avg", "best"):
        table.add_column(title, justify="left" if title == "method" else "right")
    for row in rows:
        table.add_row(
            str(row["gradient_method"]),
            str(row["num_runs"]),
            _cell("avg", row["avg"]),
            _cell("best", row["best"]),
        )
    return table


metric_option = click.option(
    "--metric",
    default="raw_mean",
    show_default=True,
    type=click.Choice(OBJECTIVE_METRICS),
    help="Which final value of the objective.",
)


@main.group()
def objectives() -> None:
    """Questions about per-run objectives (final values from the W&B summary)."""


@objectives.command("compare")
@click.argument("objective")
@metric_option
@click.option(
    "--status",
    default="completed",
    show_default=True,
    help="Runs of this status only; 'any' for all.",
)
@format_option("table", "json", default="table")
@pass_context
def objectives_compare(
    context: Context, objective: str, metric: str, status: str, output_format: str
) -> None:
    """Compare gradient methods on OBJECTIVE: runs, average and best, best first.

    \b
    Example:
      training-db objectives compare DRD5_activity --metric normalized_mean
    """
    rows = context.db.compare_gradient_methods(
        objective, metric, None if status == "any" else status
    )
    if output_format == "json":
        context.out.print_json(json_text(rows))
    else:
        context.out.print(comparison_table(rows))


@objectives.command("stats")
@click.argument("objective")
@metric_option
@click.option("--status", help="Runs of this status only.")
@click.option("--method", "gradient_method", help="Runs of this gradient method only.")
@format_option("table", "json", default="table")
@pass_context
def objectives_stats(
    context: Context,
    objective: str,
    metric: str,
    status: str | None,
    gradient_method: str | None,
    output_format: str,
) -> None:
    """Count, average, min, max and (population) std of one objective's final values.

    \b
    Example:
      training-db objectives stats COMT_activity --status completed --method mgda
    """
    found = context.db.get_objective_statistics(objective, metric, status, gradient_method)
    if output_format == "json":
        context.out.print_json(json_text(found))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", justify="right")
    table.add_column(justify="right")
    for key, value in found.items():
        table.add_row(key, _cell(key, value))
    context.out.print(table)


@objectives.command("query")
@click.argument("conditions", nargs=-1, required=True)
@metric_option
@click.option("--method", "gradient_method", help="Runs of this gradient method only.")
@click.option("--status", help="Runs of this status only.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@format_option("table", "json", "csv", default="table")
@pass_context
def objectives_query(
    context: Context,
    conditions: Sequence[str],
    metric: str,
    gradient_method: str | None,
    status: str | None,
    limit: int,
    output_format: str,
) -> None:
    """Runs whose objectives all meet CONDITIONS (inclusive bounds), newest first.

    \b
    Example:
      training-db objectives query 'COMT_activity>=0.8' 'DRD5_activity>=0.7' --method mgda
    """
    found = context.db.query_runs_by_objectives(
        parse_objective_conditions(conditions, metric), gradient_method, status, limit
    )
    if output_format == "table" and found:
        context.out.print(_objective_runs_table(found, sorted(found[0]["objectives"]), metric))
        return
    render_runs(context.out, found, output_format)


def _objective_runs_table(found: Sequence[RunDict], names: Sequence[str], metric: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for title in ("run", "status", "method", *names):
        table.add_column(title, justify="right" if title in names else "left", no_wrap=True)
    for run in found:
        table.add_row(
            run["run_id"],
            run["status"],
            run["gradient_method"] or "-",
            *(_cell(metric, run["objectives"][name][metric]) for name in names),
        )
    return table


# --- history and plots ----------------------------------------------------------------------


@main.command()
@click.argument("run_id")
@click.option("--keys", "keys", multiple=True, metavar="KEY", help="Only these metrics.")
@click.option("--min-step", type=int)
@click.option("--max-step", type=int)
@format_option("csv", "json", default="csv")
@pass_context
def history(
    context: Context,
    run_id: str,
    keys: Sequence[str],
    min_step: int | None,
    max_step: int | None,
    output_format: str,
) -> None:
    """Export a run's W&B history, one row per step (empty where a key was not logged).

    \b
    Examples:
      training-db history my_run --keys train/loss --keys train/grad_norm > curve.csv
      training-db history my_run --format json --min-step 1000
    """
    columns = context.db.get_history(run_id, list(keys) or None, min_step, max_step)
    if output_format == "json":
        click.echo(json_text(columns))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow(names)
    for index in range(len(columns["_step"])):
        writer.writerow(
            ["" if columns[name][index] is None else _plain(columns[name][index]) for name in names]
        )
    click.echo(buffer.getvalue(), nl=False)


@main.command()
@click.argument("run_ids", nargs=-1)
@click.option("--metric", required=True, help="History key to plot, e.g. train/loss.")
@click.option("--group-by", help="Plot each group's mean ± std instead, e.g. gradient_method.")
@click.option("--status", help="With --group-by: runs of this status only.")
@click.option("--where", "wheres", multiple=True, metavar="EXPR", help="With --group-by: filter.")
@click.option(
    "-o",
    "--output",
    default="curve.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PNG file to write.",
)
@pass_context
def plot(
    context: Context,
    run_ids: Sequence[str],
    metric: str,
    group_by: str | None,
    status: str | None,
    wheres: Sequence[str],
    output: str,
) -> None:
    """Plot METRIC of RUN_IDS against step, or of groups of runs (--group-by), to a PNG.

    \b
    Examples:
      training-db plot run_a run_b --metric train/loss -o loss.png
      training-db plot --group-by gradient_method --metric train/loss --status completed
    Needs matplotlib: pip install 'mangodb[plot]'.
    """
    if group_by is None:
        if not run_ids:
            raise ValueError("name at least one RUN_ID, or use --group-by")
        written = curves.plot_runs(context.db, run_ids, metric, output)
    else:
        if run_ids:
            raise ValueError("--group-by selects runs with --status/--where; drop the RUN_IDS")
        filters = parse_where(wheres)
        if status is not None:
            filters["status"] = status
        written = curves.plot_groups(context.db, metric, output, group_by=group_by, filters=filters)
    context.out.print(f"wrote {written}")


# --- operations -----------------------------------------------------------------------------


@main.command()
@click.option("--from", "source", required=True, metavar="URL", help="Database to copy.")
@click.option("--to", "target", required=True, metavar="URL", help="Database to copy into.")
@click.option(
    "--merge",
    is_flag=True,
    help="Copy into a non-empty target, skipping rows already there (resumes a copy).",
)
@click.option(
    "--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_SIZE, show_default=True
)
@pass_context
def copy(context: Context, source: str, target: str, merge: bool, batch_size: int) -> None:
    """Copy every table from one database to another (SQLite ⇄ PostgreSQL), then verify.

    Prints per-table row counts and checksums; exits 1 if the target does not hold every
    source row unchanged.

    \b
    Example:
      training-db copy --from sqlite:///$HOME/.local/share/mangodb/training_runs.db \
                       --to postgresql://trainingadmin@rds-host/trainingruns?sslmode=require
    """
    source_url = resolve_url(source, source="--from")
    target_url = resolve_url(target, source="--to")
    with Progress(console=context.out, transient=True) as bar:
        tasks: dict[tuple[str, str], TaskID] = {}

        def advance(step: CopyProgress) -> None:
            key = (step.phase, step.table)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{step.phase} {step.table}", total=step.total)
            bar.update(tasks[key], completed=step.done, total=step.total)

        report = copy_database(
            source_url, target_url, merge=merge, batch_size=batch_size, progress=advance
        )
    context.out.print(report.format(), markup=False)
    if not report.ok:
        _fail("the copy does not match its source (see the table above)")
    context.out.print("verified: every source row is in the target, unchanged")


@main.command()
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing backup file.")
@pass_context
def backup(context: Context, destination: str, overwrite: bool) -> None:
    """Back up the SQLite database to DESTINATION, safely while training writes to it.

    Uses SQLite's online backup API (never `cp`) and checks the copy's integrity. For
    PostgreSQL use `pg_dump -Fc` (see the migrations guide).

    \b
    Example:
      training-db backup ~/backups/training_runs_$(date +%Y%m%d).db
    """
    if context.db.url.get_backend_name() != "sqlite":
        raise ValueError("backup copies a SQLite file; for PostgreSQL use pg_dump -Fc")
    written = backup_sqlite(context.db.url, destination, overwrite=overwrite)
    context.out.print(f"backed up {safe_url(context.db.url)} to {written}")


@main.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    help="Spool folder; default TRAINING_DB_SPOOL_DIR or ~/.local/state/mangodb/spool.",
)
@pass_context
def replay(context: Context, spool_dir: str | None) -> None:
    """Apply the calls that `training_db.safe` spooled while the database was unreachable.

    In order and idempotently: replaying twice changes nothing. Prints how many records were
    applied, already present, failed (the database could not be reached: the replay stopped
    there) and pending (after it, not tried); then each record set aside because retrying
    cannot cure it (its line, function, record id and reason) and each malformed line, all
    kept in spool.rejected. Exits 1 while records remain or when some were set aside.
    """
    report = safe.replay(spool_dir, context.db)
    out = context.out
    out.print(report.summary(), markup=False)
    for item in report.rejected:
        out.print(
            f"  rejected line {item.line}: {item.function} record {item.record_id}: {item.reason}",
            markup=False,
        )
    for line in report.malformed:
        out.print(f"  malformed line {line.line}: {line.reason}", markup=False)
    if report.rejected or report.malformed:
        rejected_path = report.spool_path.with_name(safe.REJECTED_FILE)
        out.print(f"set aside, with the reasons, in {rejected_path}", markup=False)
    if report.remaining:
        out.print(
            f"{report.remaining} records remain in the spool, in order; run `training-db"
            " replay` again once the database is reachable",
            markup=False,
        )
    if not report.ok:
        sys.exit(1)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``2h``, ``1d``, ``45s`` → a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r}: use e.g. 30m, 2h, 1d")
    return dt.timedelta(**{_SINCE_UNITS[match.group(2)]: float(match.group(1))})


@main.command()
@click.option(
    "--older-than",
    default="30m",
    show_default=True,
    help="Silence that counts as dead: 45s, 30m, 2h, 1d.",
)
@pass_context
def reap(context: Context, older_than: str) -> None:
    """Mark running runs without a heartbeat for --older-than as crashed.

    Their ended_at becomes the last heartbeat (or started_at). Prints the runs it changed.
    """
    changed = context.db.mark_stale_runs(parse_duration(older_than))
    if not changed:
        context.out.print("no stale runs")
        return
    context.out.print(f"marked {len(changed)} stale runs as crashed:")
    for run_id in changed:
        context.out.print(f"  {run_id}", markup=False)


@main.command("import-wandb")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Say what would be recorded; write nothing.")
@pass_context
def import_wandb(context: Context, paths: Sequence[str], dry_run: bool) -> None:
    """Record every W&B run directory under PATHS from W&B's own local files.

    Reads each run's run-*.wandb log (full, unsampled history; no network, no API key). Goes on
    past bad directories and prints a summary; exits 1 if any failed. Needs the wandb extra:
    pip install 'mangodb[wandb]'.

    \b
    Example:
      training-db import-wandb /home/ubuntu/finetune_safe/wandb --dry-run
    """
    with Progress(console=context.out, transient=True) as bar:
        task = bar.add_task("importing", total=None)

        def advance(done: int, total: int, _result: ImportResult) -> None:
            bar.update(task, completed=done, total=total)

        results = import_directories(paths, db=context.db, dry_run=dry_run, progress=advance)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for title in ("directory", "result", "run", "status", "steps", "detail"):
        table.add_column(title, overflow="fold")
    for result in results:
        table.add_row(
            result.path,
            result.action,
            result.run_id or "-",
            result.status or "-",
            str(result.history_steps),
            result.error or "",
        )
    context.out.print(table)
    counts = count_actions(results)
    context.out.print(
        ", ".join(f"{count} {action}" for action, count in counts.items())
        + (" (dry run: nothing written)" if dry_run else "")
    )
    if counts.get("failed"):
        sys.exit(1)


@main.command()
@click.argument("backup_file", type=click.Path(dir_okay=False, exists=True))
@pass_context
def restore(context: Context, backup_file: str) -> None:
    """Put a backup made by `training-db backup` back as the SQLite database.

    The database it replaces is first kept beside it as
    <database>.before-restore-<UTC timestamp>; the output says where. Refused while another
    process has the database open: stop the training processes first.
    """
    if context.db.url.get_backend_name() != "sqlite":
        raise ValueError("restore writes a SQLite file; for PostgreSQL use pg_restore")
    context.db.dispose()
    result = restore_sqlite(backup_file, context.db.url)
    context.out.print(f"restored {backup_file} to {result.target}", markup=False)
    if result.safety_copy is None:
        context.out.print("there was no database there before: no copy kept", markup=False)
    else:
        context.out.print(f"the database it replaced is kept at {result.safety_copy}", markup=False)
