"""The ``objectives`` group: ``compare``, ``stats`` and ``query`` over per-run objectives."""

from __future__ import annotations

from collections.abc import Sequence

import click

from training_db.cli import render
from training_db.cli.app import (
    Context,
    format_option,
    main,
    pass_context,
    print_records,
    print_runs,
)
from training_db.cli.parse import parse_objective_conditions
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
        context.out.print_json(render.json_text(rows))
    else:
        context.out.print(render.comparison_table(rows))


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
        context.out.print_json(render.json_text(found))
    else:
        context.out.print(render.statistics_table(found))


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
        names = sorted(found[0]["objectives"])
        context.out.print(render.objective_runs_table(found, names, metric))
    else:
        print_runs(context.out, found, output_format)


@objectives.command("list")
@format_option("table", "json", "csv", default="table")
@pass_context
def objectives_list(context: Context, output_format: str) -> None:
    """Every objective name the runs have: runs with it, runs with a value, direction.

    \b
    Example:
      training-db objectives list --format csv
    """
    print_records(
        context.out,
        context.db.list_objectives(),
        ("objective_name", "num_runs", "num_values", "direction"),
        output_format,
        empty="no objectives recorded",
    )
