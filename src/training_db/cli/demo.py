"""``demo``: record a few realistic runs, then show what the other commands print for them."""

from __future__ import annotations

import click
from rich.markup import escape
from sqlalchemy import URL

from training_db.cli import render
from training_db.cli.app import Context, main, pass_context
from training_db.cli.confirm import confirm, yes_option
from training_db.core.settings import default_sqlite_path, safe_url, sqlite_url
from training_db.ops import curves
from training_db.ops.demo import DEMO_RUNS, count_other_runs, record_demo_runs


def is_default_database(url: URL) -> bool:
    """Whether ``url`` is the embedded SQLite file used when nothing selects another."""
    default = sqlite_url(default_sqlite_path())
    return url.render_as_string(hide_password=False) == default.render_as_string(
        hide_password=False
    )


@main.command()
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default="training-db-demo.png",
    show_default=True,
    help="Where to write the demo's loss plot.",
)
@yes_option
@pass_context
def demo(context: Context, plot_path: str, yes: bool) -> None:
    """Record a few realistic runs through the public API, then query and plot them.

    Walks runs through launch → running (logging history) → completed / crashed on the
    selected database (the embedded SQLite file unless --url or TRAINING_DB_* say
    otherwise), prints a runs table and a gradient-method comparison, and writes a plot of
    the loss curves by method. Re-running it leaves the runs it recorded before as they are.
    It says which database it writes to, and asks first (or needs --yes) when that is not
    the default database or holds runs the demo did not write.

    \b
    Examples:
      training-db demo
      training-db --url sqlite:////tmp/demo.db demo --yes --plot /tmp/demo.png
    """
    url = context.db.url
    target = safe_url(url)
    context.out.print(f"demo database: {target}", markup=False)
    if not is_default_database(url):
        # Not the user's own scratch database: do not even look inside before they agree.
        confirm(f"write {len(DEMO_RUNS)} demo runs into {target}, not the default database", yes)
    elif others := count_other_runs(context.db):
        confirm(
            f"write {len(DEMO_RUNS)} demo runs into {target}, which holds {others} runs the "
            "demo did not write",
            yes,
        )
    recorded = record_demo_runs(context.db, log=lambda line: context.out.print(line, markup=False))
    context.out.print(f"\n[bold]database:[/] {escape(target)}", markup=True)
    context.out.print(f"[bold]recorded:[/] {len(recorded)} new runs\n", markup=True)
    context.out.print("[bold]$ training-db runs --tag demo=true[/]", markup=True)
    context.out.print(render.runs_table(context.db.query_runs({"tag.demo": True}, limit=20)))
    context.out.print("\n[bold]$ training-db objectives compare COMT_activity[/]", markup=True)
    comparison = context.db.compare_gradient_methods("COMT_activity")
    context.out.print(render.comparison_table(comparison))
    try:
        written = curves.plot_groups(
            context.db, "train/loss", plot_path, filters={"tag.demo": True}
        )
    except ImportError as exc:
        # The hint names the extra, mangodb[plot]: printed as text, not as rich markup.
        context.out.print(f"\n(no plot: {exc})", markup=False)
    else:
        context.out.print(
            f"\n[bold]$ training-db plot --group-by gradient_method "
            f"--metric train/loss -o {escape(plot_path)}[/]\nwrote {escape(str(written))}",
            markup=True,
        )
