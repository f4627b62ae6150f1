"""``demo``: record a few realistic runs, then show what the other commands print for them."""

from __future__ import annotations

import click

from training_db.cli import render
from training_db.cli.app import Context, main, pass_context
from training_db.core.settings import safe_url
from training_db.ops import curves
from training_db.ops.demo import record_demo_runs


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
    context.out.print(render.runs_table(context.db.query_runs({"tag.demo": True}, limit=20)))
    context.out.print("\n[bold]$ training-db objectives compare COMT_activity[/]")
    comparison = context.db.compare_gradient_methods("COMT_activity")
    context.out.print(render.comparison_table(comparison))
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
