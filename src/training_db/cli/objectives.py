"""The ``objectives`` group: ``compare``, ``stats`` and ``query`` over per-run objectives."""

from __future__ import annotations

from collections.abc import Sequence

import click

from training_db.cli import render
from training_db.cli.app import RUN_COLUMNS, Context, format_option, main, pass_context
from training_db.cli.output import (
    note,
    print_listing,
    print_record,
    print_records,
    split_columns,
)
from training_db.cli.parse import parse_objective_conditions
from training_db.cli.runs import print_runs, run_list_options, with_objectives
from training_db.core.validation import MAX_LIMIT

metric_option = click.option(
    "--metric",
    default="raw_mean",
    show_default=True,
    type=click.Choice(render.OBJECTIVE_METRICS),
    help="Which final value of the objective.",
)


@main.group()
def objectives() -> None:
    """Questions about per-run objectives (final values from the W&B summary).

    \b
    Examples:
      training-db objectives compare COMT_activity
      training-db objectives query 'COMT_activity>=0.8' 'DRD5_activity>=0.7'
    """


@objectives.command("compare")
@click.argument("objective")
@metric_option
@click.option(
    "--status",
    default="completed",
    show_default=True,
    help="Runs of this status only; 'any' for all.",
)
@format_option("table", "json", "csv", default="table")
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
    if output_format == "table":
        context.out.print(render.comparison_table(rows))
    else:
        print_records(context.out, output_format, rows, render.COMPARISON_FIELDS)


@objectives.command("stats")
@click.argument("objective")
@metric_option
@click.option("--status", help="Runs of this status only.")
@click.option("--method", "gradient_method", help="Runs of this gradient method only.")
@format_option("table", "json", "csv", default="table")
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
    if output_format == "table":
        context.out.print(render.statistics_table(found))
    else:
        print_record(context.out, output_format, found)


@objectives.command("query")
@click.argument("conditions", nargs=-1, required=True)
@metric_option
@click.option("--method", "gradient_method", help="Runs of this gradient method only.")
@click.option("--status", help="Runs of this status only.")
@run_list_options
@pass_context
def objectives_query(
    context: Context,
    conditions: Sequence[str],
    metric: str,
    gradient_method: str | None,
    status: str | None,
    limit: int,
    all_rows: bool,
    columns: Sequence[str],
    wide: bool,
    output_format: str,
) -> None:
    """Runs whose objectives all meet CONDITIONS (inclusive bounds), newest first.

    Each format has the --metric value of every objective in CONDITIONS: a column of the
    table and of the CSV (objective.<name>), and ``objectives`` (every metric) in JSON.

    \b
    Examples:
      training-db objectives query 'COMT_activity>=0.8' 'DRD5_activity>=0.7' --method mgda
      training-db objectives query 'QED>=0.5' --format csv --columns run_id,objective.QED
    """
    names = render.check_fields(split_columns(columns), RUN_COLUMNS) or None
    wanted = parse_objective_conditions(conditions, metric)
    # One more than asked for says whether more runs match.
    fetch = MAX_LIMIT if all_rows else min(limit + 1, MAX_LIMIT)
    found = context.db.query_runs_by_objectives(wanted, gradient_method, status, fetch)
    more = len(found) > limit and not all_rows
    found = found if all_rows else found[:limit]
    with_objectives(context.db, found, names or ())
    table: render.FittedTable | str | None = None
    if not found:
        table = "no runs match"
    elif names is None:
        table = render.objective_runs_table(found, list(wanted), metric, fit=not wide)
    print_runs(
        context.out,
        found,
        output_format,
        names=names,
        default_fields=[f"objective.{name}" for name in wanted],
        table=table,
        metric=metric,
        wide=wide,
    )
    if more or (all_rows and len(found) == MAX_LIMIT):
        note(context.out, output_format, render.shown_footer(len(found), None))


@objectives.command("list")
@format_option("table", "json", "csv", default="table")
@pass_context
def objectives_list(context: Context, output_format: str) -> None:
    """Every objective name the runs have: runs with it, runs with a value, direction.

    \b
    Example:
      training-db objectives list --format csv
    """
    print_listing(
        context.out,
        output_format,
        context.db.list_objectives(),
        ("objective_name", "num_runs", "num_values", "direction"),
        empty="no objectives recorded",
    )
