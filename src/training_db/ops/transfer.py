"""Moving a database: copy between backends, and online backups of the SQLite file.

:func:`copy_database` copies every table of the models (``Base.metadata.sorted_tables``, so a
table added later is copied without touching this module) from one database to another,
SQLite to PostgreSQL or back. Rows travel through the column types: read and decoded by them,
re-encoded by them on the other side, so JSON documents (NaN, ±Infinity, -0.0, large floats),
aware timestamps and the binary history arrays arrive exactly as they left. Primary keys are
kept, and PostgreSQL's id sequences are moved past them. At the end every table is verified:
row counts, and a checksum computed the same way on both sides (:func:`row_text`).

:func:`backup_sqlite` and :func:`restore_sqlite` use SQLite's online backup API, which is
safe while training processes are writing; a restore first keeps a timestamped copy of the
database it replaces. For PostgreSQL use ``pg_dump -Fc`` and ``pg_restore`` (see the
migrations guide).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, Row, Table

from training_db.core.errors import InvalidArgumentError, SchemaVersionError, TrainingDBError
from training_db.core.files import fsync_path
from training_db.core.sequences import reset_sequences
from training_db.core.settings import (
    is_memory_sqlite,
    is_sqlite,
    make_engine,
    require_existing_database,
    resolve_url,
    safe_url,
)
from training_db.core.types import Float64, UTCDateTime
from training_db.schema import Base, migrations

DEFAULT_BATCH_SIZE: Final = 500
MAX_EXAMPLES: Final = 5
SQLITE_BUSY_TIMEOUT_S: Final = 15.0
SAFETY_COPY_INFIX: Final = ".before-restore-"

logger = logging.getLogger(__name__)


class TransferError(TrainingDBError):
    """A copy, backup or restore was refused or failed its verification; the message says why."""


class CopyVerificationError(TransferError):
    """The copy finished, but the target does not hold the source's rows; see ``report``."""

    def __init__(self, report: CopyReport) -> None:
        failed = [table for table in report.tables if not report.table_ok(table)]
        super().__init__(
            "the copy does not match the source in "
            + ", ".join(table.describe_problem(report.merge) for table in failed)
            + "\n"
            + report.format()
        )
        self.report = report


# --- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyProgress:
    """Where a copy stands: ``phase`` is ``copy`` or ``verify``; ``done`` of ``total`` rows."""

    phase: str
    table: str
    done: int
    total: int


ProgressCallback = Callable[[CopyProgress], None]


@dataclass(frozen=True)
class TableReport:
    """One table of a copy, as verified after copying.

    ``source_checksum`` covers every source row; ``target_checksum`` the target rows whose
    primary key the source has, in the same order, so the two are equal exactly when the
    target holds every source row unchanged. ``extra`` target rows (merge) are only counted.
    """

    table: str
    source_rows: int
    target_rows: int
    copied: int
    skipped: int
    missing: int
    different: int
    source_checksum: str
    target_checksum: str
    examples: tuple[str, ...] = ()

    @property
    def extra(self) -> int:
        return self.target_rows - (self.source_rows - self.missing)

    @property
    def matches(self) -> bool:
        return (
            self.missing == 0
            and self.different == 0
            and self.source_checksum == self.target_checksum
        )

    def describe_problem(self, merge: bool) -> str:
        parts = []
        if self.missing:
            parts.append(f"{self.missing} missing")
        if self.different:
            parts.append(f"{self.different} different")
        if self.extra and not merge:
            parts.append(f"{self.extra} extra")
        examples = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.table}: {', '.join(parts) or 'checksums differ'}{examples}"


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_database` copied and what its verification found, per table."""

    source: str
    target: str
    revision: str
    merge: bool
    tables: tuple[TableReport, ...] = field(default_factory=tuple)

    def table_ok(self, table: TableReport) -> bool:
        return table.matches and (self.merge or table.extra == 0)

    @property
    def ok(self) -> bool:
        """Every source row is in the target, unchanged (and, without merge, nothing else)."""
        return all(self.table_ok(table) for table in self.tables)

    def format(self) -> str:
        """A plain-text table: rows on each side, copied/skipped, both checksums, verdict."""
        header = ("table", "source", "target", "copied", "skipped", "checksum", "target checksum")
        lines = [header]
        for table in self.tables:
            verdict = "ok" if self.table_ok(table) else "MISMATCH"
            lines.append(
                (
                    table.table,
                    str(table.source_rows),
                    str(table.target_rows),
                    str(table.copied),
                    str(table.skipped),
                    table.source_checksum[:16],
                    f"{table.target_checksum[:16]} {verdict}",
                )
            )
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        rendered = [
            "  ".join(
                cell.rjust(width) if 0 < column < 5 else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
            for line in lines
        ]
        title = f"{self.source} -> {self.target} (revision {self.revision})"
        return "\n".join([title, *rendered])


@dataclass(frozen=True)
class TableChecksum:
    """A table's row count and the checksum of its rows in primary-key order."""

    rows: int
    checksum: str


# --- the canonical row form --------------------------------------------------------------------


def _canonical(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, UTCDateTime) or isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(column.type, sa.LargeBinary):
        return bytes(value).hex()
    if isinstance(column.type, (sa.Float, Float64)):
        return float(value)
    if isinstance(column.type, sa.Integer):
        return int(value)
    return value


def row_text(table: Table, row: Row[Any]) -> str:
    """One row as canonical JSON text, the same on every backend.

    The decoded values in the table's column order: floats by ``repr`` (JSON's text of a
    float, with ``NaN`` and ``Infinity`` tokens), timestamps as UTC ISO 8601, bytes as hex,
    JSON documents with sorted keys; ASCII only.
    """
    values = [_canonical(column, row[index]) for index, column in enumerate(table.columns)]
    return json.dumps(values, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _key_order(connection: Connection, table: Table) -> list[Any]:
    """Primary-key order by code point on both backends (PostgreSQL: the "C" collation)."""
    order: list[Any] = []
    for column in table.primary_key.columns:
        if isinstance(column.type, sa.String) and connection.dialect.name == "postgresql":
            order.append(column.collate("C"))
        else:
            order.append(column)
    return order


def _key(table: Table, row: Row[Any]) -> tuple[Any, ...]:
    return tuple(getattr(row, column.name) for column in table.primary_key.columns)


def _key_filter(table: Table, keys: Sequence[tuple[Any, ...]]) -> Any:
    columns = list(table.primary_key.columns)
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    return sa.tuple_(*columns).in_(keys)


def _batches(connection: Connection, table: Table, batch_size: int) -> Iterator[Sequence[Row[Any]]]:
    statement = (
        sa.select(table)
        .order_by(*_key_order(connection, table))
        .execution_options(yield_per=batch_size)
    )
    yield from connection.execute(statement).partitions()


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- copy --------------------------------------------------------------------------------------


def copy_database(
    source_url: str | URL,
    target_url: str | URL,
    *,
    merge: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> CopyReport:
    """Copy every row of every table from ``source_url`` to ``target_url``, then verify it.

    Both databases must be at this code's head revision; an empty target is created at head
    first, one behind raises SchemaVersionError naming the command that upgrades it. The
    source is read in one transaction (a consistent snapshot, so training may keep writing to
    it; later rows are not copied). Each batch of ``batch_size`` rows is committed on its own,
    so an interrupted copy keeps what it wrote.

    A target with rows is refused unless ``merge``: then rows whose primary key the target
    already has are skipped (not compared, not updated) and the rest are copied, so a copy can
    be re-run after an interruption, or to bring over runs written since. Verification then
    checks that every source row is in the target unchanged; rows only the target has are
    counted, not refused.

    ``progress`` is called with a :class:`CopyProgress` before each table and after each batch.
    Returns the :class:`CopyReport`; raises :class:`CopyVerificationError` (carrying it) when
    the target does not match.
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be at least 1, got {batch_size}")
    source = resolve_url(source_url, source="source_url")
    target = resolve_url(target_url, source="target_url")
    if source == target:
        raise TransferError(f"the source and the target are the same database: {safe_url(source)}")
    for url in (source, target):
        if is_memory_sqlite(url):
            raise TransferError("an in-memory SQLite database cannot be copied from or to")
    require_existing_database(source)
    source_engine = make_engine(source)
    target_engine = make_engine(target, create_folder=True)
    try:
        with _snapshot(source_engine) as reader:
            _require_head(reader, source, "source")
            _prepare_target(target_engine, target, merge)
            tables = Base.metadata.sorted_tables
            totals = {table.name: _count(reader, table) for table in tables}
            counts = {
                table.name: _copy_table(
                    reader, target_engine, table, merge, batch_size, totals[table.name], progress
                )
                for table in tables
            }
            with target_engine.begin() as writer:
                reset_sequences(writer, tables)
            reports = tuple(
                _verify_table(
                    reader, target_engine, table, counts[table.name], batch_size, progress
                )
                for table in tables
            )
    finally:
        source_engine.dispose()
        target_engine.dispose()
    report = CopyReport(
        safe_url(source), safe_url(target), migrations.head_revision(), merge, reports
    )
    if not report.ok:
        raise CopyVerificationError(report)
    return report


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection in one transaction: the database as of its first read."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with connection.begin() as transaction:
            yield connection
            transaction.rollback()


def _require_head(connection: Connection, url: URL, role: str) -> None:
    """SchemaVersionError (or TransferError) unless the database is at this code's head."""
    state = migrations.schema_state(connection)
    where = safe_url(url)
    database = f"the {role} database at {where}" if role else f"the database at {where}"
    if state.is_empty:
        raise TransferError(f"{database} has no mangodb tables")
    if state.is_current:
        return
    if state.current is None:
        raise SchemaVersionError(
            f"{database} has no Alembic version (made by the old module?); adopt it first: "
            f"`training-db --url {where} upgrade`"
        )
    script = ScriptDirectory(migrations.script_location())
    if state.current not in {revision.revision for revision in script.walk_revisions()}:
        raise SchemaVersionError(
            f"{database} is at revision {state.current}, which this version of mangodb does "
            "not know; upgrade the mangodb package"
        )
    raise SchemaVersionError(
        f"{database} is at revision {state.current}, behind this code's {state.head}; run "
        f"`training-db --url {where} upgrade` first"
    )


def _prepare_target(engine: Engine, url: URL, merge: bool) -> None:
    with engine.connect() as connection:
        state = migrations.schema_state(connection)
    if state.is_empty:
        migrations.upgrade(url)
        return
    with engine.connect() as connection:
        _require_head(connection, url, "target")
        filled = {
            table.name: rows
            for table in Base.metadata.sorted_tables
            if (rows := _count(connection, table))
        }
    if filled and not merge:
        listed = ", ".join(f"{rows} rows in {table}" for table, rows in filled.items())
        raise TransferError(
            f"the target database at {safe_url(url)} is not empty ({listed}); copy into an "
            "empty database, or merge into this one (merge=True / --merge: rows it already "
            "has are skipped)"
        )


def _copy_table(
    reader: Connection,
    target: Engine,
    table: Table,
    merge: bool,
    batch_size: int,
    total: int,
    progress: ProgressCallback | None,
) -> tuple[int, int]:
    """Copy one table batch by batch; returns (copied, skipped)."""
    copied = skipped = 0
    if progress is not None:
        progress(CopyProgress("copy", table.name, 0, total))
    with target.connect().execution_options(sqlite_write=True) as writer:
        for batch in _batches(reader, table, batch_size):
            rows = [row._asdict() for row in batch]
            with writer.begin():
                if merge:
                    keys = [_key(table, row) for row in batch]
                    key_columns = list(table.primary_key.columns)
                    present = {
                        tuple(found)
                        for found in writer.execute(
                            sa.select(*key_columns).where(_key_filter(table, keys))
                        )
                    }
                    rows = [
                        values for values, key in zip(rows, keys, strict=True) if key not in present
                    ]
                    skipped += len(batch) - len(rows)
                if rows:
                    writer.execute(sa.insert(table), rows)
            copied += len(rows)
            if progress is not None:
                progress(CopyProgress("copy", table.name, copied + skipped, total))
    return copied, skipped


def _verify_table(
    reader: Connection,
    target: Engine,
    table: Table,
    counts: tuple[int, int],
    batch_size: int,
    progress: ProgressCallback | None,
) -> TableReport:
    source_hash = hashlib.sha256()
    target_hash = hashlib.sha256()
    source_rows = missing = different = 0
    examples: list[str] = []
    with target.connect() as connection:
        target_rows = _count(connection, table)
        total = _count(reader, table)
        if progress is not None:
            progress(CopyProgress("verify", table.name, 0, total))
        for batch in _batches(reader, table, batch_size):
            keys = [_key(table, row) for row in batch]
            found = {
                _key(table, row): row
                for row in connection.execute(sa.select(table).where(_key_filter(table, keys)))
            }
            for key, row in zip(keys, batch, strict=True):
                text = row_text(table, row)
                source_hash.update(text.encode() + b"\n")
                other = found.get(key)
                if other is None:
                    missing += 1
                else:
                    other_text = row_text(table, other)
                    target_hash.update(other_text.encode() + b"\n")
                    if other_text == text:
                        continue
                    different += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(repr(key[0] if len(key) == 1 else key))
            source_rows += len(batch)
            if progress is not None:
                progress(CopyProgress("verify", table.name, source_rows, total))
    copied, skipped = counts
    return TableReport(
        table.name,
        source_rows,
        target_rows,
        copied,
        skipped,
        missing,
        different,
        source_hash.hexdigest(),
        target_hash.hexdigest(),
        tuple(examples),
    )


def table_checksums(
    url: str | URL, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, TableChecksum]:
    """Every table's row count and checksum, computed on its own on one database.

    The checksum is the SHA-256 of each row's :func:`row_text` plus a newline, in primary-key
    order (by code point on both backends). Two databases hold the same rows exactly when
    their checksums agree, whichever backends they are on.
    """
    resolved = resolve_url(url)
    require_existing_database(resolved)
    engine = make_engine(resolved)
    try:
        with _snapshot(engine) as reader:
            _require_head(reader, resolved, role="")
            result = {}
            for table in Base.metadata.sorted_tables:
                digest = hashlib.sha256()
                rows = 0
                for batch in _batches(reader, table, batch_size):
                    for row in batch:
                        digest.update(row_text(table, row).encode() + b"\n")
                    rows += len(batch)
                result[table.name] = TableChecksum(rows, digest.hexdigest())
            return result
    finally:
        engine.dispose()


# --- SQLite backups ----------------------------------------------------------------------------


def _sqlite_path(url_or_path: str | os.PathLike[str] | URL, argument: str) -> Path:
    if isinstance(url_or_path, URL) or (isinstance(url_or_path, str) and "://" in url_or_path):
        url = resolve_url(url_or_path, source=argument)
        if not is_sqlite(url):
            raise InvalidArgumentError(
                f"{argument} {safe_url(url)} is not a SQLite database; back PostgreSQL up with "
                "`pg_dump -Fc` (see the migrations guide)"
            )
        if is_memory_sqlite(url):
            raise InvalidArgumentError(
                f"{argument}: an in-memory SQLite database has no file to back up or restore"
            )
        assert url.database is not None
        return Path(url.database).expanduser()
    return Path(url_or_path).expanduser()


def backup_sqlite(
    source: str | os.PathLike[str] | URL,
    destination: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Copy a live SQLite database to ``destination`` with SQLite's online backup API.

    Safe while training processes write to it: the copy is one consistent snapshot (in WAL
    mode writers carry on meanwhile). The backup is written next to ``destination`` first,
    checked with ``PRAGMA integrity_check``, made a self-contained file (journal mode DELETE)
    and then renamed into place, so ``destination`` is never a half-written file. An
    existing ``destination`` is refused unless ``overwrite``. Returns its path.
    """
    source_path = _sqlite_path(source, "source")
    destination_path = Path(destination).expanduser()
    if not source_path.is_file():
        raise FileNotFoundError(f"no SQLite database at {source_path}")
    if destination_path.exists():
        if destination_path.resolve() == source_path.resolve():
            raise TransferError(f"the backup would overwrite its own source {source_path}")
        if not overwrite:
            raise FileExistsError(f"{destination_path} exists; choose another name or overwrite")
    destination_path.parent.mkdir(parents=True, exist_ok=True)
    with _sqlite(source_path) as origin:
        _write_snapshot(origin, destination_path, check=True)
    return destination_path


def _write_snapshot(
    origin: sqlite3.Connection, destination: Path, *, check: bool, mode: int | None = None
) -> None:
    """The database of ``origin`` as a self-contained file at ``destination``, all or nothing.

    Written through the backup API (one consistent snapshot, the ``-wal`` included) into a
    temporary file beside ``destination``, synced to disk, then renamed into place and the
    folder synced, so that ``destination`` is either absent or complete, even after a crash.
    ``check`` runs ``PRAGMA integrity_check`` on the copy first; ``mode`` sets its
    permission bits (else those of a temporary file: the owner's only).
    """
    handle, partial_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
    )
    os.close(handle)
    partial = Path(partial_name)
    try:
        with _sqlite(partial) as copy:
            origin.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            if check:
                _require_intact(copy, partial)
        if mode is not None:
            os.chmod(partial, mode)
        fsync_path(partial)
        os.replace(partial, destination)
        fsync_path(destination.parent)
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore_sqlite` did: the file it wrote, and where the old one was kept.

    ``safety_copy`` is the copy of the database that was at ``target`` before, named
    ``<target>.before-restore-<UTC timestamp>`` beside it; ``None`` when there was none.
    """

    target: Path
    safety_copy: Path | None

    def describe(self) -> str:
        """One line for people: where the backup went and where the old database is."""
        if self.safety_copy is None:
            return f"restored to {self.target} (there was no database there before)"
        return f"restored to {self.target}; the database it replaced is kept at {self.safety_copy}"


def restore_sqlite(
    backup: str | os.PathLike[str], target: str | os.PathLike[str] | URL
) -> RestoreResult:
    """Put the database in the file ``backup`` back at ``target``, keeping the one replaced.

    The backup is checked first (``PRAGMA integrity_check``). An existing target is refused
    while any other connection has it open (stop the training processes first): SQLite can
    only leave WAL mode, which every connection mangodb makes turns on, when no other
    connection is open; that is the test. The database at ``target`` is then copied, whole
    and durably, to ``<target>.before-restore-<UTC timestamp>`` (see `RestoreResult`); if
    that copy cannot be made, nothing is replaced and `TransferError` says why. Only then is
    the target overwritten through the backup API, so its ``-wal`` and ``-shm`` files stay
    consistent. A target that does not exist yet is created, and no copy is made.
    """
    backup_path = Path(backup).expanduser()
    target_path = _sqlite_path(target, "target")
    if not backup_path.is_file():
        raise FileNotFoundError(f"no backup at {backup_path}")
    if target_path.exists() and target_path.resolve() == backup_path.resolve():
        raise TransferError(f"the backup and the target are the same file: {backup_path}")
    with _sqlite(backup_path, read_only=True) as origin:
        _require_intact(origin, backup_path)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        existed = target_path.exists()  # before connecting, which creates the file
        with _sqlite(target_path, timeout=0.0) as restored:
            try:
                # Leaving WAL mode needs every other connection closed: the in-use test. It
                # also moves the -wal file's commits into the database file.
                restored.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.DatabaseError as exc:
                raise _refused(target_path, exc, "nothing was replaced") from exc
            safety_copy = _keep_safety_copy(restored, target_path) if existed else None
            try:
                origin.backup(restored)
            except sqlite3.DatabaseError as exc:
                kept = "" if safety_copy is None else f"; a copy of it is kept at {safety_copy}"
                outcome = f"SQLite rolled the restore back, so the database is as it was{kept}"
                raise _refused(target_path, exc, outcome) from exc
            restored.execute("PRAGMA journal_mode = WAL")
            _require_intact(restored, target_path)
    result = RestoreResult(target_path, safety_copy)
    logger.info("restored %s: %s", backup_path, result.describe())
    return result


def _refused(target: Path, exc: sqlite3.Error, outcome: str) -> TransferError:
    """Why a restore could not go on, and what state it left (``outcome``)."""
    if _is_busy(exc):
        return TransferError(
            f"the database at {target} is in use ({exc}); stop the processes that have it "
            f"open, then restore again ({outcome})"
        )
    if "file is not a database" in str(exc).lower():
        return TransferError(
            f"{target} is not a SQLite database ({exc}); {outcome}: move it away, then "
            "restore again"
        )
    return TransferError(f"could not restore into {target} ({exc}); {outcome}")


def _is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the database (SQLITE_BUSY or SQLITE_LOCKED), not a failure."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in (5, 6)
    return any(word in str(exc).lower() for word in ("database is locked", "is busy"))


def _keep_safety_copy(live: sqlite3.Connection, target: Path) -> Path:
    """Copy the database about to be replaced to ``<target>.before-restore-<UTC time>``.

    The copy is faithful rather than checked: a damaged database is what a restore most often
    replaces, and it must be kept as it was.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy = target.with_name(f"{target.name}{SAFETY_COPY_INFIX}{stamp}")
    counter = 1
    while copy.exists():  # two restores within one second
        counter += 1
        copy = target.with_name(f"{target.name}{SAFETY_COPY_INFIX}{stamp}-{counter}")
    try:
        # The copy keeps the database's permissions, so that it can be put back by renaming.
        _write_snapshot(live, copy, check=False, mode=stat.S_IMODE(target.stat().st_mode))
    except (sqlite3.Error, OSError) as exc:
        raise TransferError(
            f"could not keep a copy of {target} before replacing it ({exc}); nothing was "
            "replaced: free some space or fix the folder's permissions, or move the database "
            "away yourself, then restore again"
        ) from exc
    logger.info("kept a copy of %s at %s before restoring over it", target, copy)
    return copy


@contextmanager
def _sqlite(
    path: Path, *, read_only: bool = False, timeout: float = SQLITE_BUSY_TIMEOUT_S
) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, closed at the end of the block."""
    target = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
    with closing(sqlite3.connect(target, uri=read_only, timeout=timeout)) as connection:
        connection.isolation_level = None
        yield connection


def _require_intact(connection: sqlite3.Connection, path: Path) -> None:
    try:
        verdict = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # "file is not a database": not SQLite at all
        raise TransferError(
            f"{path} is not a SQLite database ({exc}); restore a file made by `training-db "
            "backup` or backup_sqlite()"
        ) from exc
    if verdict != ["ok"]:
        raise TransferError(f"{path} failed PRAGMA integrity_check: {'; '.join(verdict[:5])}")
