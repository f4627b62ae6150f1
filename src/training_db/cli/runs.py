"""Run commands: ``runs`` (a filtered list), ``show`` (one run) and ``stats`` (counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console

from training_db.api import TrainingDB
from training_db.cli import render
from training_db.cli.app import RUN_COLUMNS, Context, format_option, main, pass_context
from training_db.cli.output import (
    F,
    columns_option,
    note,
    print_record,
    print_table,
    split_columns,
    wide_option,
)
from training_db.cli.parse import parse_since, parse_tags, parse_where
from training_db.core.errors import UnknownNameError
from training_db.core.validation import MAX_LIMIT
from training_db.store.records import RunDict

all_option = click.option(
    "--all",
    "all_rows",
    is_flag=True,
    help=f"Every matching run (at most {MAX_LIMIT:,}) instead of --limit.",
)


def run_list_options(function: F) -> F:
    """The options of a command that lists runs, in this order in its help: ``--limit``,
    ``--all``, ``--columns``, ``--wide`` and ``--format table|json|csv``."""
    options = (
        click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True),
        all_option,
        columns_option,
        wide_option,
        format_option("table", "json", "csv", default="table"),
    )
    for option in reversed(options):  # the last decorator is applied first
        function = option(function)
    return function


def with_objectives(db: TrainingDB, found: Sequence[RunDict], names: Sequence[str]) -> None:
    """Give each run the objectives (``{name: {metric: value}}``) that the ``objective.``
    fields of ``names`` read, keeping those it has."""
    wanted = [name.removeprefix("objective.") for name in names if name.startswith("objective.")]
    for run in found:
        have = run.setdefault("objectives", {}) if wanted else {}
        if any(name not in have for name in wanted):
            for row in db.get_run_objectives(run["run_id"]):
                have.setdefault(row["objective_name"], dict(row))


def print_runs(
    out: Console,
    found: Sequence[RunDict],
    output_format: str,
    *,
    names: Sequence[str] | None = None,
    default_fields: Sequence[str] = (),
    table: render.FittedTable | str | None = None,
    metric: str = "raw_mean",
    wide: bool = False,
) -> None:
    """Runs as a table (``table``, or the runs table of ``names``), JSON or CSV.

    With ``names`` every format has exactly those fields; without, JSON has `run_record`s
    (with the runs' ``objectives`` when they have them) and CSV the run columns followed by
    ``default_fields``.
    """
    if output_format == "table":
        table = table or render.runs_table(found, names, metric=metric, fit=not wide)
        print_table(out, table, wide=wide)
    elif output_format == "json":
        if names:
            out.print_json(render.records_json(render.field_records(found, names, metric)))
        else:
            out.print_json(render.runs_json(found, RUN_COLUMNS))
    else:
        fields = list(names or (*RUN_COLUMNS, *default_fields))
        click.echo(render.csv_text(found, fields, metric), nl=False)


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
@run_list_options
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
    all_rows: bool,
    columns: Sequence[str],
    wide: bool,
    output_format: str,
) -> None:
    """List runs, newest first, with the filters of query_runs.

    The table shows the columns that fit the terminal (--wide: all; --columns: these);
    a line under it says when --limit left runs out.

    \b
    Examples:
      training-db runs --status completed --method mgda
      training-db runs --where 'config.training.batch_size>=64' --where 'summary.train/loss<0.5'
      training-db runs --tag owner=alice --since 7d --format json
      training-db runs --columns run_id,status,config.training.batch_size,summary.train/loss
    """
    names = render.check_fields(split_columns(columns), RUN_COLUMNS) or None
    filters: dict[str, Any] = parse_where(wheres)
    for key, value in (("status", status), ("host", host), ("gradient_method", gradient_method)):
        if value is not None:
            filters[key] = value
    filters.update(parse_tags(tags))
    if since is not None:
        filters["created_after"] = parse_since(since)
    total = context.db.count_runs(filters)
    if all_rows:
        limit = max(1, min(total, MAX_LIMIT))
    found = context.db.query_runs(filters, order_by=order_by, limit=limit)
    with_objectives(context.db, found, names or ())
    print_runs(context.out, found, output_format, names=names, wide=wide)
    footer = render.shown_footer(len(found), total)
    if footer and all_rows:
        footer = f"{len(found)} of {total} runs shown — --all prints at most {MAX_LIMIT:,}"
    note(context.out, output_format, footer)


@main.command()
@click.argument("run_id")
@format_option("table", "json", "csv", default="table")
@pass_context
def show(context: Context, run_id: str, output_format: str) -> None:
    """Every field of one run, with its tags and objectives.

    \b
    Example:
      training-db show mgda_i-abc123
    """
    run = context.db.get_run(run_id)
    if run is None:
        raise LookupError(f"no training run with run_id={run_id!r}")
    objectives = context.db.get_run_objectives(run_id)
    if output_format != "table":
        record = render.run_record(run, RUN_COLUMNS)
        record["objectives"] = {
            row["objective_name"]: {key: row[key] for key in render.OBJECTIVE_FIELDS[1:]}
            for row in objectives
        }
        print_record(context.out, output_format, record)
        return
    context.out.print(render.run_table(run, RUN_COLUMNS, loss_curve(context.db, run_id)))
    if objectives:
        context.out.print(render.objectives_table(objectives))


def loss_curve(db: TrainingDB, run_id: str) -> tuple[str, list[float | None]] | None:
    """The first loss key the run logged, as plain values for a sparkline."""
    for key in db.key_metrics.loss:
        try:
            values = db.get_history(run_id, keys=[key]).get(key)
        except UnknownNameError:  # a loss key no run of this database logs
            continue
        if values:
            numbers = [
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                for v in values
            ]
            return key, numbers
    return None


@main.command()
@format_option("table", "json", "csv", default="table")
@pass_context
def stats(context: Context, output_format: str) -> None:
    """Counts of runs by status, with blog posts and with crash analyses.

    \b
    Example:
      training-db --url postgresql://trainingadmin@rds-host/trainingruns stats
    """
    counts = context.db.get_stats()
    if output_format == "table":
        context.out.print(render.counts_table(counts))
    else:
        print_record(context.out, output_format, counts)
