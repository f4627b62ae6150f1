"""Schema commands: ``init``, ``upgrade``, ``downgrade`` and ``current``."""

from __future__ import annotations

import click

from training_db.cli.app import Context, format_option, main, pass_context
from training_db.cli.confirm import confirm, yes_option
from training_db.cli.output import print_record
from training_db.core.settings import safe_url
from training_db.schema import migrations


@main.command()
@pass_context
def init(context: Context) -> None:
    """Create the database, or bring it to the newest schema revision (idempotent).

    \b
    Example:
      training-db --url postgresql://trainingadmin@rds-host/trainingruns init
    """
    context.db.init_db()
    context.out.print(
        f"database ready at {safe_url(context.db.url)} (revision {migrations.head_revision()})",
        markup=False,
    )


@main.command()
@click.argument("revision", default="head")
@pass_context
def upgrade(context: Context, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head).

    \b
    Examples:
      training-db upgrade
      training-db upgrade 0005
    """
    migrations.upgrade(context.db.url, revision)
    context.out.print(f"upgraded {safe_url(context.db.url)} to {revision}", markup=False)


@main.command()
@click.argument("revision")
@click.option(
    "--allow-data-loss",
    is_flag=True,
    help="Go ahead even when a step would delete rows or values (back up first).",
)
@yes_option
@pass_context
def downgrade(context: Context, revision: str, allow_data_loss: bool, yes: bool) -> None:
    """Downgrade the schema to REVISION ('base' removes every table).

    Asks first at a terminal; elsewhere needs --yes. A step that would delete data refuses,
    changing nothing, unless --allow-data-loss.

    \b
    Examples:
      training-db downgrade 0005
      training-db downgrade 0002 --allow-data-loss --yes     (after a backup)
    """
    migrations.require_known_revision(revision)
    url = safe_url(context.db.url)
    confirm(f"downgrade the schema of {url} to revision {revision}", yes)
    try:
        migrations.downgrade(context.db.url, revision, allow_data_loss=allow_data_loss)
    except migrations.DataLossError as refused:
        # The library's message names Alembic's -x flag and the Python argument; here the
        # way to allow it is this command's own flag.
        raise migrations.DataLossError(
            f"{refused.loss_summary} Back the database up first; then, to delete them, add "
            f"--allow-data-loss: training-db downgrade {revision} --allow-data-loss",
            revision=refused.revision,
            losses=refused.losses,
        ) from None
    context.out.print(f"downgraded {url} to {revision}", markup=False)


@main.command()
@format_option("table", "json", "csv", default="table")
@pass_context
def current(context: Context, output_format: str) -> None:
    """Show the backend, the URL (password hidden) and the schema revision.

    \b
    Example:
      TRAINING_DB_HOST=rds-host TRAINING_DB_NAME=trainingruns training-db current
    """
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
        context.out.print(f"{label:>17}: {value}", markup=False)
