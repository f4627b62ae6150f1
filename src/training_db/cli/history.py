"""History commands: ``history`` (a run's curves as CSV or JSON) and ``plot`` (PNG files)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from training_db.cli import render
from training_db.cli.app import Context, format_option, main, pass_context
from training_db.cli.output import print_table, wide_option
from training_db.cli.parse import parse_where
from training_db.ops import curves


@main.command()
@click.argument("run_id")
@click.option("--keys", "keys", multiple=True, metavar="KEY", help="Only these metrics.")
@click.option("--min-step", type=int)
@click.option("--max-step", type=int)
@format_option("csv", "json", "table", default="csv")
@click.option(
    "--shape",
    type=click.Choice(["rows", "columns"]),
    default="rows",
    show_default=True,
    help="JSON: one object per step (rows), or one array per key (columns).",
)
@wide_option
@pass_context
def history(
    context: Context,
    run_id: str,
    keys: Sequence[str],
    min_step: int | None,
    max_step: int | None,
    output_format: str,
    shape: str,
    wide: bool,
) -> None:
    """Export a run's W&B history, one row per step (empty where a key was not logged).

    \b
    Examples:
      training-db history my_run --keys train/loss --keys train/grad_norm > curve.csv
      training-db history my_run --format json --min-step 1000
      training-db history my_run --format json --shape columns
      training-db history my_run --format table --keys train/loss
    """
    columns = context.db.get_history(run_id, list(keys) or None, min_step, max_step)
    if output_format == "json":
        shaped = columns if shape == "columns" else render.history_rows(columns)
        click.echo(render.json_text(shaped))
    elif output_format == "table":
        print_table(context.out, render.history_table(columns, fit=not wide), wide=wide)
    else:
        click.echo(render.history_csv_text(columns), nl=False)


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
    context.out.print(f"wrote {written}", markup=False)
