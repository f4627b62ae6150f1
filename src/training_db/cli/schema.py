"""Schema commands: ``init``, ``upgrade``, ``downgrade`` and ``current``."""

from __future__ import annotations

import click

from training_db.cli.app import Context, format_option, main, pass_context
from training_db.cli.output import print_record
from training_db.core.settings import safe_url
from training_db.schema import migrations


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
@format_option("table", "json", "csv", default="table")
@pass_context
def current(context: Context, output_format: str) -> None:
    """Show the backend, the URL (password hidden) and the schema revision."""
    state = context.db.schema_state()
    if output_format != "table":
        record = {
            "backend": context.db.url.get_backend_name(),
            "url": safe_url(context.db.url),
            "current_revision": state.current,
            "head_revision": state.head,
            "upgrade_pending": not state.is_current,
        }
        print_record(context.out, output_format, record)
        return
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
