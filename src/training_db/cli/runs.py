"""Run commands: ``runs`` (a filtered list), ``show`` (one run) and ``stats`` (counts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from training_db.api import TrainingDB
from training_db.cli import render
from training_db.cli.app import RUN_COLUMNS, Context, format_option, main, pass_context, print_runs
from training_db.cli.parse import parse_since, parse_tags, parse_where
from training_db.core.errors import UnknownNameError
from training_db.core.validation import MAX_LIMIT


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
    print_runs(context.out, found, output_format)


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
        context.out.print_json(render.json_text(render.run_record(run, RUN_COLUMNS)))
        return
    context.out.print(render.run_table(run, RUN_COLUMNS, loss_curve(context.db, run_id)))
    objectives = context.db.get_run_objectives(run_id)
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
@pass_context
def stats(context: Context) -> None:
    """Counts of runs by status, with blog posts and with crash analyses."""
    context.out.print(render.counts_table(context.db.get_stats()))
