"""Operating a database: ``copy``, ``backup``, ``restore``, ``replay``, ``reap`` and
``import-wandb``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from rich.progress import Progress, TaskID

from training_db import safe
from training_db.cli import render
from training_db.cli.app import Context, fail, format_option, main, pass_context
from training_db.cli.confirm import confirm, resume_hint, yes_option
from training_db.cli.output import print_records, print_table
from training_db.cli.parse import parse_duration
from training_db.core.settings import resolve_url, safe_url, sqlite_file
from training_db.ops.transfer import (
    DEFAULT_BATCH_SIZE,
    CopyProgress,
    backup_sqlite,
    copy_database,
    restore_sqlite,
)
from training_db.ops.wandb_import import count_actions, import_directories
from training_db.store.wandb import ImportResult


@main.command()
@click.option("--from", "source", required=True, metavar="URL", help="Database to copy.")
@click.option("--to", "target", required=True, metavar="URL", help="Database to copy into.")
@click.option(
    "--merge",
    is_flag=True,
    help="Copy into a non-empty target, skipping rows already there (resumes a copy).",
)
@click.option(
    "--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_SIZE, show_default=True
)
@pass_context
def copy(context: Context, source: str, target: str, merge: bool, batch_size: int) -> None:
    """Copy every table from one database to another (SQLite ⇄ PostgreSQL), then verify.

    Prints per-table row counts and checksums; exits 1 if the target does not hold every
    source row unchanged. Interrupted (Ctrl-C), it says so and exits 130: the same command
    with --merge resumes it.

    \b
    Example:
      training-db copy --from sqlite:///$HOME/.local/share/mangodb/training_runs.db \\
                       --to 'postgresql://trainingadmin@rds-host/trainingruns?sslmode=require'
    """
    source_url = resolve_url(source, source="--from")
    target_url = resolve_url(target, source="--to")
    resume = "the target holds part of the copy; re-run the same command with --merge to resume"
    with resume_hint(resume), Progress(console=context.out, transient=True) as bar:
        tasks: dict[tuple[str, str], TaskID] = {}

        def advance(step: CopyProgress) -> None:
            key = (step.phase, step.table)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{step.phase} {step.table}", total=step.total)
            bar.update(tasks[key], completed=step.done, total=step.total)

        report = copy_database(
            source_url, target_url, merge=merge, batch_size=batch_size, progress=advance
        )
    context.out.print(report.format(), markup=False)
    if not report.ok:
        fail("the copy does not match its source (see the table above)")
    context.out.print("verified: every source row is in the target, unchanged")


@main.command()
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace an existing backup file.")
@pass_context
def backup(context: Context, destination: str, overwrite: bool) -> None:
    """Back up the SQLite database to DESTINATION, safely while training writes to it.

    Uses SQLite's online backup API (never `cp`) and checks the copy's integrity. For
    PostgreSQL use `pg_dump -Fc` (see the migrations guide).

    \b
    Example:
      training-db backup ~/backups/training_runs_$(date +%Y%m%d).db
    """
    if context.db.url.get_backend_name() != "sqlite":
        raise ValueError("backup copies a SQLite file; for PostgreSQL use pg_dump -Fc")
    written = backup_sqlite(context.db.url, destination, overwrite=overwrite)
    context.out.print(f"backed up {safe_url(context.db.url)} to {written}", markup=False)


@main.command()
@click.argument("backup_file", type=click.Path(dir_okay=False, exists=True))
@yes_option
@pass_context
def restore(context: Context, backup_file: str, yes: bool) -> None:
    """Put a backup made by `training-db backup` back as the SQLite database.

    Asks first at a terminal, elsewhere needs --yes (unless there is no database there yet).
    The database it replaces is first kept beside it as
    <database>.before-restore-<UTC timestamp>; the output says where. Refused while another
    process has the database open: stop the training processes first.

    \b
    Example:
      training-db restore ~/backups/training_runs_20261130.db
    """
    if context.db.url.get_backend_name() != "sqlite":
        raise ValueError("restore writes a SQLite file; for PostgreSQL use pg_restore")
    live = sqlite_file(context.db.url)
    if live is None or live.exists():
        confirm(f"replace the database {safe_url(context.db.url)} with {backup_file}", yes)
    context.db.dispose()
    result = restore_sqlite(backup_file, context.db.url)
    context.out.print(f"restored {backup_file} to {result.target}", markup=False)
    if result.safety_copy is None:
        context.out.print("there was no database there before: no copy kept", markup=False)
    else:
        context.out.print(f"the database it replaced is kept at {result.safety_copy}", markup=False)


@main.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    help="Spool folder; default TRAINING_DB_SPOOL_DIR or ~/.local/state/mangodb/spool.",
)
@pass_context
def replay(context: Context, spool_dir: str | None) -> None:
    """Apply the calls that `training_db.safe` spooled while the database was unreachable.

    In order and idempotently: replaying twice changes nothing. Prints how many records were
    applied, already present, failed (the database could not be reached: the replay stopped
    there) and pending (after it, not tried); then each record set aside because retrying
    cannot cure it (its line, function, record id and reason) and each malformed line, all
    kept in spool.rejected. Exits 1 while records remain or when some were set aside.

    \b
    Example:
      training-db replay --spool-dir /home/ubuntu/.local/state/mangodb/spool
    """
    with resume_hint("run `training-db replay` again: records already applied are skipped"):
        report = safe.replay(spool_dir, context.db)
    out = context.out
    out.print(report.summary(), markup=False)
    for item in report.rejected:
        out.print(
            f"  rejected line {item.line}: {item.function} record {item.record_id}: {item.reason}",
            markup=False,
        )
    for line in report.malformed:
        out.print(f"  malformed line {line.line}: {line.reason}", markup=False)
    if report.rejected or report.malformed:
        rejected_path = report.spool_path.with_name(safe.REJECTED_FILE)
        out.print(f"set aside, with the reasons, in {rejected_path}", markup=False)
    if report.remaining:
        out.print(
            f"{report.remaining} records remain in the spool, in order; run `training-db"
            " replay` again once the database is reachable",
            markup=False,
        )
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option(
    "--older-than",
    default="30m",
    show_default=True,
    help="Silence that counts as dead: 45s, 30m, 2h, 1d.",
)
@click.option("--dry-run", is_flag=True, help="Print the runs it would mark; change nothing.")
@pass_context
def reap(context: Context, older_than: str, dry_run: bool) -> None:
    """Mark running runs without a heartbeat for --older-than as crashed.

    Their ended_at becomes the last heartbeat (or started_at). Prints the runs it changed.
    Never asks (it is meant for cron); --dry-run shows what it would do.

    \b
    Examples:
      training-db reap --older-than 2h --dry-run
      */10 * * * *  training-db reap --older-than 30m     (a crontab line)
    """
    age = parse_duration(older_than)
    if dry_run:
        changed = context.db.find_stale_runs(age)
        verb = "would mark"
    else:
        changed = context.db.mark_stale_runs(age)
        verb = "marked"
    if not changed:
        context.out.print("no stale runs")
        return
    suffix = " (dry run: nothing changed)" if dry_run else ""
    context.out.print(f"{verb} {len(changed)} stale runs as crashed{suffix}:", markup=False)
    for run_id in changed:
        context.out.print(f"  {run_id}", markup=False)


@main.command("import-wandb")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Say what would be recorded; write nothing.")
@click.option(
    "--verbose", "list_all", is_flag=True, help="List unchanged directories in the table too."
)
@format_option("table", "json", "csv", default="table")
@pass_context
def import_wandb(
    context: Context, paths: Sequence[str], dry_run: bool, list_all: bool, output_format: str
) -> None:
    """Record every W&B run directory under PATHS from W&B's own local files.

    Reads each run's run-*.wandb log (full, unsampled history; no network, no API key). Goes on
    past bad directories and prints a summary; exits 1 if any failed. The table lists the
    directories imported or failed, and counts the unchanged ones in one line (--verbose
    lists them too); JSON and CSV have one record per directory. Needs the wandb extra:
    pip install 'mangodb[wandb]'.

    \b
    Example:
      training-db import-wandb /home/ubuntu/finetune_safe/wandb --dry-run
    """
    resume = "re-run the same command to resume: runs already recorded are left unchanged"
    with resume_hint(resume), Progress(console=context.out, transient=True) as bar:
        task = bar.add_task("importing", total=None)

        def advance(done: int, total: int, _result: ImportResult) -> None:
            bar.update(task, completed=done, total=total)

        results = import_directories(paths, db=context.db, dry_run=dry_run, progress=advance)
    counts = count_actions(results)
    if output_format != "table":
        print_records(context.out, output_format, render.import_records(results))
    else:
        listed = [r for r in results if list_all or r.action != "unchanged"]
        if listed:
            print_table(context.out, render.import_table(listed))
        unchanged = counts.get("unchanged", 0)
        if unchanged and not list_all:
            context.out.print(
                f"{unchanged} unchanged directories not listed (--verbose lists them)",
                style="dim",
                markup=False,
            )
        context.out.print(render.import_summary(counts, dry_run))
    if counts.get("failed"):
        sys.exit(1)
