"""The ``metrics`` group: ``list``, the history metric names logged (by a run or by any)."""

from __future__ import annotations

import click

from training_db.cli.app import Context, format_option, main, pass_context
from training_db.cli.output import print_listing

METRIC_COLUMNS = ("metric", "num_runs", "num_points", "first_step", "last_step")


@main.group()
def metrics() -> None:
    """The history metrics (W&B keys such as train/loss) in the database."""


@metrics.command("list")
@click.argument("run_id", required=False)
@format_option("table", "json", "csv", default="table")
@pass_context
def metrics_list(context: Context, run_id: str | None, output_format: str) -> None:
    """Every metric name logged by RUN_ID, or by any run: runs, points, first and last step.

    \b
    Examples:
      training-db metrics list
      training-db metrics list my_run --format csv
    """
    found = context.db.list_metrics(run_id)
    print_listing(context.out, output_format, found, METRIC_COLUMNS, empty="no metrics logged")
