"""Copying between SQLite and PostgreSQL, merging after an interruption, SQLite backups."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import re
import resource
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import URL

from tests import spawned
from tests.conftest import PostgresServer
from training_db import DatabaseNotFoundError, SchemaVersionError, TrainingDB
from training_db.cli import main
from training_db.core.settings import sqlite_url
from training_db.ops.transfer import (
    CopyProgress,
    CopyVerificationError,
    TransferError,
    backup_sqlite,
    copy_database,
    restore_sqlite,
    table_checksums,
)
from training_db.schema import Base, migrations

SPAWN = multiprocessing.get_context("spawn")
TABLES = [table.name for table in Base.metadata.sorted_tables]
# Mixed case, an umlaut and an underscore: ordered differently by code point and by en-US rules.
PREFIXES = ("mgda", "PCGRAD", "Ärger", "_probe", "zeta", "Imtl")
RUNS = 24


def as_text(value: Any) -> str:
    """Comparable text for values holding NaN (NaN != NaN), -0.0 and datetimes."""
    return json.dumps(value, sort_keys=True, default=repr)


def run_ids(first: int, count: int) -> list[str]:
    return [
        f"{PREFIXES[index % len(PREFIXES)]}-{index:03d}" for index in range(first, first + count)
    ]


def record_runs(database: TrainingDB, first: int, count: int) -> list[str]:
    """Runs as training writes them: config, start, history, tags, objectives, the end."""
    ids = run_ids(first, count)
    for index, run_id in enumerate(ids, start=first):
        config = {
            "training": {"batch_size": 8 * (index + 1), "learning_rate": 1e-4 / (index + 1)},
            "reward": {"baseline": float("nan"), "clip": float("inf"), "offset": -0.0},
            "model": {"base_model": "mango-7b", "note": "ünïcode ✓"},
            "objectives": [{"name": "QED", "alias": "QED_maximize"}],
            "huge": 1e300,
        }
        database.insert_run(
            run_id, f"wb-{index}", config, "ABC123", host="ec2", instance_id=f"i-{index}"
        )
        database.update_run_status(
            run_id,
            "running",
            started_at=dt.datetime(2025, 11, 1, 8, index % 60, 0, 123456, tzinfo=dt.timezone.utc),
            wandb_url=f"https://wandb.ai/mango/runs/wb-{index}",
        )
        if index % 5 != 4:  # some runs never logged history
            database.log_history(
                run_id,
                [
                    {
                        "_step": step * 10,
                        "_timestamp": 1_762_000_000.25 + step,
                        "train/loss": float("nan") if step == 3 else 1 / (step + 1),
                        "objectives/QED_maximize/raw_mean": step / 10,
                        "samples": step,
                        "phase": "warmup" if step < 2 else {"stage": step},
                    }
                    for step in range(12)
                ],
            )
        database.set_tags(run_id, {"owner": "alice", "index": index, "grid": [1, float("-inf")]})
        if index % 6 == 5:
            database.attach_crash_data(run_id, f"logs/{run_id}", None, f"analysis/{run_id}")
            continue
        database.insert_objective(run_id, "COMT_activity", uniprot="P21964", direction="maximize")
        database.finish_run(
            run_id,
            summary={
                "train/loss": float("nan"),
                "objectives/QED_maximize/raw_mean": 0.5 + index / 100,
                "objectives/COMT_activity_maximize/raw_mean": float("inf"),
                "_step": 110,
                "_runtime": 3600.25,
            },
        )
    return ids


def everything(database: TrainingDB, ids: list[str]) -> dict[str, str]:
    """Each run as the public API returns it: the run, its objectives, its history."""
    result = {}
    for run_id in ids:
        run = database.get_run(run_id)
        assert run is not None, run_id
        result[run_id] = as_text(
            {
                "run": {**run, "history_json": run["history_json"]},
                "objectives": database.get_run_objectives(run_id),
                "history": database.get_history(run_id),
            }
        )
    return result


@pytest.fixture(scope="module")
def filled_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "runs.db"
    database = TrainingDB(sqlite_url(path))
    record_runs(database, 0, RUNS)
    database.dispose()
    return path


@pytest.fixture
def source_url(filled_sqlite: Path, tmp_path: Path) -> URL:
    """A copy of the filled SQLite database, for this test only."""
    path = tmp_path / "source.db"
    shutil.copyfile(filled_sqlite, path)
    return sqlite_url(path)


@pytest.fixture
def pg_target(pg_server: PostgresServer | None, pg_empty_url: URL) -> Iterator[URL]:
    """An empty PostgreSQL database whose default collation is ICU en-US, not code point."""
    assert pg_server is not None
    name = f"{pg_empty_url.database}_icu"
    admin = sa.create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'CREATE DATABASE "{name}" TEMPLATE template0 '
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    admin.dispose()
    url = pg_empty_url.set(database=name)
    pg_server.created.append(name)
    yield url
    pg_server.drop_database(url)


def test_copy_sqlite_to_postgresql_and_back(
    source_url: URL, pg_target: URL, tmp_path: Path
) -> None:
    ids = run_ids(0, RUNS)
    source = TrainingDB(source_url)
    expected = everything(source, ids)
    source.dispose()
    events: list[CopyProgress] = []

    report = copy_database(source_url, pg_target, batch_size=40, progress=events.append)

    assert report.ok and report.revision == migrations.head_revision()
    assert [table.table for table in report.tables] == TABLES
    for table in report.tables:
        assert table.source_rows == table.target_rows == table.copied > 0, table
        assert table.source_checksum == table.target_checksum
    # computed independently on each database, the checksums agree across backends
    assert table_checksums(source_url) == table_checksums(pg_target)
    for phase in ("copy", "verify"):
        last = {event.table: event for event in events if event.phase == phase}
        assert set(last) == set(TABLES)
        assert all(event.done == event.total for event in last.values())
    assert "MISMATCH" not in report.format() and "run_history" in report.format()

    target = TrainingDB(pg_target)
    assert everything(target, ids) == expected
    # the id sequences were moved past the copied ids: new rows go in
    more = record_runs(target, RUNS, 4)
    objective_ids = [o["id"] for run_id in ids for o in target.get_run_objectives(run_id)]
    new_ids = [o["id"] for run_id in more for o in target.get_run_objectives(run_id)]
    assert min(new_ids) > max(objective_ids)
    expected_pg = everything(target, ids + more)
    target.dispose()

    back = sqlite_url(tmp_path / "back.db")
    assert copy_database(pg_target, back).ok
    assert table_checksums(back) == table_checksums(pg_target)
    returned = TrainingDB(back)
    assert everything(returned, ids + more) == expected_pg
    record_runs(returned, RUNS + 4, 1)
    returned.dispose()


class Interrupted(Exception):
    pass


def test_merge_resumes_an_interrupted_copy_and_reports_differences(
    source_url: URL, empty_url: URL
) -> None:
    def interrupt(event: CopyProgress) -> None:
        if event.phase == "copy" and event.table == "run_history" and event.done > 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        copy_database(source_url, empty_url, batch_size=10, progress=interrupt)
    partial = table_checksums(empty_url)
    assert partial["run_history"].rows == 10
    assert partial["run_tags"].rows == 0

    with pytest.raises(TransferError, match=r"not empty \(.*rows in training_runs.*merge"):
        copy_database(source_url, empty_url)

    resumed = copy_database(source_url, empty_url, merge=True, batch_size=10)
    history = next(table for table in resumed.tables if table.table == "run_history")
    assert (history.skipped, history.copied) == (10, history.source_rows - 10)
    runs = next(table for table in resumed.tables if table.table == "training_runs")
    assert (runs.skipped, runs.copied) == (RUNS, 0)
    assert table_checksums(empty_url) == table_checksums(source_url)

    # runs written since: a merge brings exactly those; rows only the target has are kept
    source = TrainingDB(source_url)
    new_ids = record_runs(source, RUNS, 2)
    source.dispose()
    target = TrainingDB(empty_url)
    target.insert_run("only-in-target", None, {})
    target.dispose()
    again = copy_database(source_url, empty_url, merge=True)
    runs = next(table for table in again.tables if table.table == "training_runs")
    assert (runs.copied, runs.skipped, runs.extra) == (2, RUNS, 1)
    assert again.ok
    target = TrainingDB(empty_url)
    assert all(target.get_run(run_id) is not None for run_id in new_ids)

    # a row that differs is not overwritten by a merge, and the verification says where
    changed = run_ids(0, 1)[0]
    target.attach_blog_post(changed, "https://blog.example/changed")
    target.dispose()
    with pytest.raises(
        CopyVerificationError, match=rf"training_runs: 1 different \(e.g. '{changed}'\)"
    ) as failed:
        copy_database(source_url, empty_url, merge=True)
    assert not failed.value.report.ok
    assert "MISMATCH" in failed.value.report.format()


def test_both_databases_must_be_at_head(source_url: URL, empty_url: URL) -> None:
    engine = sa.create_engine(source_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_newer'")
    with pytest.raises(SchemaVersionError, match=r"source database .* ffff_newer.*package"):
        copy_database(source_url, empty_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE alembic_version SET version_num = :head"),
            {"head": migrations.head_revision()},
        )
    engine.dispose()
    migrations.upgrade(empty_url, "0002")
    with pytest.raises(
        SchemaVersionError,
        match=r"target database .* at revision 0002.*training-db --url .* upgrade",
    ):
        copy_database(source_url, empty_url)


def test_nonsense_copies_are_refused(source_url: URL, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="same database"):
        copy_database(source_url, source_url)
    # A missing source file is not created by the copy (reads never create databases).
    with pytest.raises(DatabaseNotFoundError, match=r"no database at .*nothing\.db"):
        copy_database(sqlite_url(tmp_path / "nothing.db"), sqlite_url(tmp_path / "target.db"))
    assert not (tmp_path / "nothing.db").exists()
    (tmp_path / "empty.db").touch()
    with pytest.raises(TransferError, match="no mangodb tables"):
        copy_database(sqlite_url(tmp_path / "empty.db"), sqlite_url(tmp_path / "target.db"))
    with pytest.raises(ValueError, match="batch_size"):
        copy_database(source_url, sqlite_url(tmp_path / "target.db"), batch_size=0)


def integrity(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    finally:
        connection.close()


def test_backup_while_another_process_writes(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    migrations.upgrade(sqlite_url(live))
    started, stop, results = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    writer = SPAWN.Process(
        target=spawned.write_until_stopped, args=(str(sqlite_url(live)), started, stop, results)
    )
    writer.start()
    try:
        assert started.wait(timeout=120)
        backups = [backup_sqlite(live, tmp_path / f"backup-{index}.db") for index in range(3)]
    finally:
        stop.set()
        written, error = results.get(timeout=120)
        writer.join(timeout=120)
    assert error is None
    counts = []
    for backup in backups:
        assert integrity(backup) == ["ok"]
        assert not Path(f"{backup}-wal").exists()  # a self-contained file
        copy = TrainingDB(sqlite_url(backup))
        counts.append(copy.get_stats()["total_runs"])
        # every run in the snapshot is whole: its history arrived with it
        for run in copy.query_runs(limit=10_000):
            if run["status"] == "completed":
                assert len(copy.get_history(run["run_id"])["_step"]) == 50
        copy.dispose()
    assert 5 <= counts[0] <= counts[-1] <= written


def test_backup_refuses_to_overwrite_and_is_for_sqlite(db_url: URL, tmp_path: Path) -> None:
    if db_url.get_backend_name() != "sqlite":
        with pytest.raises(ValueError, match="pg_dump"):
            backup_sqlite(db_url, tmp_path / "x.db")
        return
    assert db_url.database is not None
    target = tmp_path / "copy.db"
    backup_sqlite(db_url, target)
    with pytest.raises(FileExistsError):
        backup_sqlite(db_url, target)
    backup_sqlite(db_url, target, overwrite=True)
    with pytest.raises(TransferError, match="its own source"):
        backup_sqlite(db_url, db_url.database, overwrite=True)
    with pytest.raises(FileNotFoundError):
        backup_sqlite(tmp_path / "missing.db", tmp_path / "y.db")


def test_restore_puts_a_backup_back_unless_the_database_is_in_use(
    source_url: URL, tmp_path: Path
) -> None:
    backup = backup_sqlite(source_url, tmp_path / "backup.db")
    saved = table_checksums(sqlite_url(backup))
    live = TrainingDB(source_url)
    live.insert_run("after-the-backup", None, {})  # the engine keeps its connection open

    with pytest.raises(TransferError, match="in use"):
        restore_sqlite(backup, source_url)
    assert live.get_run("after-the-backup") is not None

    live.dispose()
    restore_sqlite(backup, source_url)
    assert table_checksums(source_url) == saved
    restored = TrainingDB(source_url)
    assert restored.get_run("after-the-backup") is None
    restored.insert_run("after-the-restore", None, {})
    restored.dispose()
    assert integrity(Path(str(source_url.database))) == ["ok"]

    fresh = restore_sqlite(backup, tmp_path / "elsewhere" / "fresh.db")
    assert table_checksums(sqlite_url(fresh.target)) == saved


# --- the safety copy a restore keeps ----------------------------------------------------------

SAFETY_COPY_NAME = re.compile(r"^live\.db\.before-restore-(\d{8}T\d{6}Z)(-\d+)?$")


def run_ids_in(path: Path) -> set[str]:
    """The run ids in a SQLite file, read with plain sqlite3 (no mangodb connection hooks)."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT run_id FROM training_runs")}
    finally:
        connection.close()


def crashed_with_commits_in_the_wal(tmp_path: Path, live: Path) -> None:
    """``live`` as a process that died left it: ``old`` in the file, ``in-wal`` only in -wal."""
    work = tmp_path / "work.db"
    writer = TrainingDB(sqlite_url(work))
    writer.insert_run("old", None, {})
    writer.dispose()  # the last connection checkpoints: "old" is in the database file
    writer = TrainingDB(sqlite_url(work))
    writer.insert_run("in-wal", None, {})  # committed, not checkpointed while writer is open
    shutil.copyfile(work, live)
    shutil.copyfile(f"{work}-wal", f"{live}-wal")
    writer.dispose()
    probe = tmp_path / "probe.db"
    shutil.copyfile(live, probe)
    assert run_ids_in(probe) == {"old"}  # without its -wal the file lacks the last commit


def test_restore_keeps_a_timestamped_copy_of_the_database_it_replaces(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup_source = TrainingDB(sqlite_url(tmp_path / "other.db"))
    backup_source.insert_run("from-the-backup", None, {})
    backup_source.dispose()
    backup = backup_sqlite(tmp_path / "other.db", tmp_path / "backup.db")
    live = tmp_path / "live.db"
    crashed_with_commits_in_the_wal(tmp_path, live)
    caplog.set_level(logging.INFO, logger="training_db.ops.transfer")

    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    result = restore_sqlite(backup, sqlite_url(live))
    after = dt.datetime.now(dt.timezone.utc)

    assert result.target == live
    assert result.safety_copy is not None and result.safety_copy.parent == tmp_path
    match = SAFETY_COPY_NAME.match(result.safety_copy.name)
    assert match is not None, result.safety_copy.name
    stamp = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert before <= stamp <= after
    # the copy holds the old database, its -wal commits included, as one self-contained file
    assert run_ids_in(result.safety_copy) == {"old", "in-wal"}
    assert integrity(result.safety_copy) == ["ok"]
    assert not Path(f"{result.safety_copy}-wal").exists()
    # the live file holds the backup
    assert run_ids_in(live) == {"from-the-backup"}
    assert table_checksums(sqlite_url(live)) == table_checksums(sqlite_url(backup))
    assert str(result.safety_copy) in result.describe()
    assert str(result.safety_copy) in caplog.text
    assert not list(tmp_path.glob("*.partial"))

    again = restore_sqlite(backup, live)  # within the same second, perhaps: another name
    assert again.safety_copy is not None and again.safety_copy != result.safety_copy
    assert run_ids_in(again.safety_copy) == {"from-the-backup"}
    assert run_ids_in(result.safety_copy) == {"old", "in-wal"}


def test_restore_onto_a_new_file_keeps_no_copy(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    migrations.upgrade(sqlite_url(backup))
    result = restore_sqlite(backup, tmp_path / "new" / "live.db")
    assert result.safety_copy is None
    assert "no database there before" in result.describe()
    assert not list((tmp_path / "new").glob("*before-restore*"))


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A full disk without a mount: no file of this process may grow past ``limit`` bytes.

    ``RLIMIT_FSIZE`` makes such a write fail with EFBIG (SQLite: "disk I/O error"), as a
    full disk fails it with ENOSPC; SIGXFSZ is ignored so that the write fails instead of
    the process being killed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_restore_replaces_nothing_when_the_copy_cannot_be_made(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    migrations.upgrade(sqlite_url(backup))
    live = tmp_path / "live.db"
    database = TrainingDB(sqlite_url(live))
    database.insert_run("old", None, {})
    database.dispose()

    with (
        file_size_limit(live.stat().st_size // 2),
        pytest.raises(
            TransferError, match=r"could not keep a copy .*nothing was replaced"
        ) as raised,
    ):
        restore_sqlite(backup, live)

    assert "in use" not in str(raised.value) and "\n" not in str(raised.value)
    assert run_ids_in(live) == {"old"}
    assert integrity(live) == ["ok"]
    assert not list(tmp_path.glob("*before-restore*")) and not list(tmp_path.glob("*.partial"))


def test_a_restore_that_fails_midway_is_rolled_back_and_the_copy_kept(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    filler = TrainingDB(sqlite_url(backup))
    filler.insert_run("large", None, {"padding": "x" * 1_000_000})
    filler.dispose()
    live = tmp_path / "live.db"
    database = TrainingDB(sqlite_url(live))
    database.insert_run("old", None, {})
    database.dispose()
    # room for the copy of the small live database, not for the large backup
    limit = (live.stat().st_size + backup.stat().st_size) // 2
    assert live.stat().st_size < limit < backup.stat().st_size

    with (
        file_size_limit(limit),
        pytest.raises(TransferError, match="rolled the restore back") as raised,
    ):
        restore_sqlite(backup, live)

    assert "in use" not in str(raised.value)
    assert run_ids_in(live) == {"old"}
    assert integrity(live) == ["ok"]
    copies = list(tmp_path.glob("live.db.before-restore-*"))
    assert len(copies) == 1 and str(copies[0]) in str(raised.value)
    assert run_ids_in(copies[0]) == {"old"}


def test_restore_refused_in_use_keeps_no_copy(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    migrations.upgrade(sqlite_url(backup))
    live = TrainingDB(sqlite_url(tmp_path / "live.db"))
    live.insert_run("still-open", None, {})
    with pytest.raises(TransferError, match="in use"):
        restore_sqlite(backup, tmp_path / "live.db")
    live.dispose()
    assert not list(tmp_path.glob("live.db.before-restore*"))
    assert run_ids_in(tmp_path / "live.db") == {"still-open"}


def test_cli_restore_says_where_the_old_database_is(db_url: URL, tmp_path: Path) -> None:
    url = db_url.render_as_string(hide_password=False)
    database = TrainingDB(db_url)
    database.insert_run("in-the-backup", None, {})
    database.dispose()
    backup = tmp_path / "backup.db"
    if db_url.get_backend_name() != "sqlite":
        backup.write_bytes(b"")
        result = CliRunner().invoke(main, ["--url", url, "restore", str(backup), "--yes"])
        assert result.exit_code == 1
        assert result.stderr.strip() == (
            "error: restore writes a SQLite file; for PostgreSQL use pg_restore"
        )
        assert not list(tmp_path.glob("*before-restore*"))
        return
    assert CliRunner().invoke(main, ["--url", url, "backup", str(backup)]).exit_code == 0
    database = TrainingDB(db_url)
    database.insert_run("after-the-backup", None, {})
    database.dispose()

    result = CliRunner().invoke(main, ["--url", url, "restore", str(backup), "--yes"])

    assert result.exit_code == 0, result.output
    kept = re.search(r"the database it replaced is kept at (\S+)", result.stdout)
    assert kept is not None, result.stdout
    copy = Path(kept.group(1))
    assert copy.name.startswith(f"{Path(str(db_url.database)).name}.before-restore-")
    assert {"in-the-backup", "after-the-backup"} <= run_ids_in(copy)
    assert "after-the-backup" not in run_ids_in(Path(str(db_url.database)))
