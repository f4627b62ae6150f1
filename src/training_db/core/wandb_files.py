"""Reading a W&B run straight from its local files: the ``run-<id>.wandb`` transaction log.

Every W&B run, online or offline, leaves a directory ``wandb/run-<date>-<id>/`` (offline:
``offline-run-<date>-<id>/``) holding ``run-<id>.wandb``: every record the SDK sent, in
order. It has the full, unsampled history, so it is the best source for a run's record.

The file format
    A 7-byte header (``":W&B"``, the magic ``0xBEE1`` little-endian, a format version
    byte), then LevelDB's log framing: 32 KiB blocks of chunks, each with a 7-byte header
    (checksum: 4 bytes, payload length: 2 bytes, chunk type: 1 byte; little-endian) and
    its payload. A record fits in one FULL chunk or is split into FIRST, MIDDLE..., LAST
    chunks; a block's last < 7 bytes are zero padding. Each record is a protobuf
    ``wandb.proto.wandb_internal_pb2.Record``.

    The checksum is **not** LevelDB's masked CRC-32C: W&B writes plain CRC-32 (IEEE, as
    ``zlib.crc32``) over the chunk type byte and the payload, unmasked (``CRCAlgoIEEE`` in
    W&B's ``core/pkg/leveldb``, ``zlib.crc32`` in the old Python ``datastore.py``).

Crashed and live runs
    W&B's writer emits whole 32 KiB blocks, so the log of a killed run, or of a live run
    read now, usually ends inside a record. Reading stops at the first chunk that is cut
    off, fails its checksum or breaks the chunk sequence; everything before it is returned,
    ``truncated`` is set and a warning is logged. A run without an exit record ended
    without ``wandb.finish()`` (or is still running).

Decoding needs the protobuf classes of the ``wandb`` package (the ``wandb`` extra); it is
imported on first use, never by ``import training_db``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard

from training_db.core.errors import TrainingDBError

logger = logging.getLogger(__name__)

WANDB_MISSING_MESSAGE: Final = "reading W&B run files needs wandb: pip install 'mangodb[wandb]'"

FILE_HEADER: Final = struct.Struct("<4sHB")  # ident, magic, version
FILE_IDENT: Final = b":W&B"
FILE_MAGIC: Final = 0xBEE1
SUPPORTED_VERSIONS: Final = (0, 1)
BLOCK_SIZE: Final = 32 * 1024
CHUNK_HEADER: Final = struct.Struct("<IHB")  # checksum, length, chunk type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC: Final = {kind: zlib.crc32(bytes([kind])) for kind in (FULL, FIRST, MIDDLE, LAST)}

RUN_FILE_GLOB: Final = "run-*.wandb"
STEP_KEY: Final = "_step"
RUNTIME_KEY: Final = "_runtime"
TIMESTAMP_KEY: Final = "_timestamp"
MEDIA_TYPE_KEY: Final = "_type"  # W&B's histograms, images, tables: a dict with "_type"
# W&B's own bookkeeping in the config (telemetry, versions): not part of the training config.
WANDB_CONFIG_KEY: Final = "_wandb"
_WRAPPED_CONFIG_KEYS: Final = frozenset({"value", "desc"})
# How many records from the end to look at for the exit record (only a few follow it).
_EXIT_SEARCH_DEPTH: Final = 16


class WandbFileError(TrainingDBError, ValueError):
    """A path holds no readable W&B run log (the message says which path and why)."""


@dataclass(frozen=True)
class ScanResult:
    """The record payloads of a transaction log, and why reading stopped early (if it did)."""

    payloads: list[bytes]
    version: int
    problem: str | None = None

    @property
    def truncated(self) -> bool:
        return self.problem is not None


@dataclass(frozen=True)
class WandbRunLog:
    """What one ``.wandb`` file says about a run.

    ``history`` holds one dict per logged step, with ``_step`` and every key logged at it
    (nested dicts flattened with dots, as W&B shows them, plus W&B's ``_runtime`` and
    ``_timestamp``); a logged NaN or ±Infinity is a float NaN or ±inf. ``config`` has W&B's
    ``{"value": ..., "desc": ...}`` wrapping removed and its ``_wandb`` bookkeeping left
    out; ``summary`` is the final summary, nested keys as nested dicts. ``end_time`` is the
    last moment the log accounts for (the latest history timestamp, system-metrics sample
    or ``start_time`` + runtime). ``exit_code`` is None when the log has no exit record.
    """

    path: Path
    wandb_run_id: str | None
    project: str | None
    entity: str | None
    display_name: str | None
    host: str | None
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    exit_code: int | None
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    truncated: bool
    problem: str | None = None
    records: int = 0
    format_version: int = 0

    @property
    def run_dir(self) -> Path:
        """The run's directory (the folder holding the ``.wandb`` file)."""
        return self.path.parent

    @property
    def status(self) -> str:
        """``completed`` (exit code 0), ``failed`` (any other code) or ``crashed`` (no exit)."""
        if self.exit_code is None:
            return "crashed"
        return "completed" if self.exit_code == 0 else "failed"


# --- locating the file ------------------------------------------------------------------------


def find_run_file(path: str | os.PathLike[str]) -> Path:
    """The ``run-<id>.wandb`` file for ``path``: that file itself, a run directory, or the
    run's ``files`` directory (``wandb.run.dir``), whose parent is the run directory."""
    given = Path(path)
    if given.is_file():
        return given
    if not given.is_dir():
        raise WandbFileError(f"no such W&B run file or directory: {given}")
    for folder in (given, given.parent):
        found = sorted(folder.glob(RUN_FILE_GLOB))
        if len(found) > 1:
            names = ", ".join(candidate.name for candidate in found)
            raise WandbFileError(f"{folder} holds several W&B run logs ({names}); name one")
        if found:
            return found[0]
    raise WandbFileError(f"{given} is not a W&B run directory: no {RUN_FILE_GLOB} file in it")


def locate_run_file(wandb_run: object) -> Path:
    """The ``.wandb`` file of a ``wandb.sdk.wandb_run.Run`` (live or finished) or of a path.

    A run object names its file in ``run.settings.sync_file``; failing that, ``run.dir`` is
    ``<run dir>/files`` and the file is one level up.
    """
    if isinstance(wandb_run, (str, os.PathLike)):
        return find_run_file(wandb_run)
    settings = getattr(wandb_run, "settings", None)
    sync_file = getattr(settings, "sync_file", None)
    if isinstance(sync_file, str) and sync_file:
        return find_run_file(sync_file)
    files_dir = getattr(wandb_run, "dir", None)
    if isinstance(files_dir, str) and files_dir:
        return find_run_file(files_dir)
    if wandb_run is None:
        raise ValueError(
            "wandb_run is None: pass the Run that wandb.init() returned (wandb.run is None "
            "after wandb.finish()) or the run's directory"
        )
    raise ValueError(
        "wandb_run must be a wandb Run, a run directory or a .wandb file; "
        f"got {type(wandb_run).__name__}"
    )


def is_live_run(wandb_run: object) -> bool:
    """True for a ``wandb`` Run object that has not been finished yet (False for a path)."""
    if isinstance(wandb_run, (str, os.PathLike)) or wandb_run is None:
        return False
    # The SDK's own flag (wandb.run is None after finish, but a kept Run object remains).
    return getattr(wandb_run, "_is_finished", True) is False


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every W&B run directory at or under ``paths`` (a folder holding ``run-*.wandb``),
    sorted, each once. Symbolic links to directories (``wandb/latest-run``) are not followed,
    so a run is not found twice."""
    found: dict[Path, None] = {}
    for path in paths:
        root = Path(path)
        if root.is_file() and root.match(RUN_FILE_GLOB):
            found.setdefault(root.parent.resolve())
            continue
        if not root.is_dir():
            raise WandbFileError(f"no such directory: {root}")
        for folder, _, files in os.walk(root):
            if any(Path(name).match(RUN_FILE_GLOB) for name in files):
                found.setdefault(Path(folder).resolve())
    return sorted(found)


# --- framing ----------------------------------------------------------------------------------


def scan_log(data: bytes) -> ScanResult:
    """Split a ``.wandb`` file's bytes into record payloads (pure: no protobuf needed).

    Stops at the first chunk that is cut off by the end of the file, fails its checksum,
    overflows its block or breaks the FULL / FIRST-MIDDLE-LAST sequence, and says why in
    ``problem``. A wrong file header raises :class:`WandbFileError`.
    """
    version = _file_version(data)
    payloads: list[bytes] = []
    pending: list[bytes] | None = None
    problems: list[str] = []
    for position, kind, payload in _chunks(data, problems):
        if pending is None and kind == FULL:
            payloads.append(payload)
        elif pending is None and kind == FIRST:
            pending = [payload]
        elif pending is not None and kind in (MIDDLE, LAST):
            pending.append(payload)
            if kind == LAST:
                payloads.append(b"".join(pending))
                pending = None
        else:
            problems.append(f"the chunk at byte {position} breaks the record sequence")
            break
    if not problems and pending is not None:
        problems.append("the file ends inside a record split across blocks")
    return ScanResult(payloads, version, problems[0] if problems else None)


def _file_version(data: bytes) -> int:
    """The format version in the 7-byte file header, or WandbFileError."""
    if len(data) < FILE_HEADER.size:
        raise WandbFileError(
            f"not a W&B run log: {len(data)} bytes, shorter than the 7-byte file header"
        )
    ident, magic, version = FILE_HEADER.unpack_from(data)
    if ident != FILE_IDENT or magic != FILE_MAGIC:
        raise WandbFileError(f"not a W&B run log: the file starts with {data[:7]!r}")
    if version not in SUPPORTED_VERSIONS:
        raise WandbFileError(
            f"unsupported W&B run log format version {version} "
            f"(this reader knows {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    return int(version)


def _chunks(data: bytes, problems: list[str]) -> Iterator[tuple[int, int, bytes]]:
    """``(byte position, chunk type, payload)`` of each intact chunk in file order; the
    first damaged or cut-off chunk ends the iteration, its description put in ``problems``."""
    position = FILE_HEADER.size
    size = len(data)
    while position < size:
        block_left = BLOCK_SIZE - position % BLOCK_SIZE
        if block_left < CHUNK_HEADER.size:
            position += block_left  # the block's zero trailer
            continue
        if position + CHUNK_HEADER.size > size:
            problems.append(f"the file ends inside a chunk header at byte {position}")
            return
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, position)
        if checksum == 0 and length == 0 and kind == 0:
            position += block_left  # a zeroed block tail (a preallocated file)
            continue
        start = position + CHUNK_HEADER.size
        end = start + length
        if length > block_left - CHUNK_HEADER.size:
            problems.append(f"the chunk at byte {position} overflows its 32 KiB block")
            return
        if end > size:
            problems.append(f"the file ends inside the chunk at byte {position}")
            return
        payload = data[start:end]
        if kind not in _TYPE_CRC:
            problems.append(f"the chunk at byte {position} has unknown type {kind}")
            return
        if zlib.crc32(payload, _TYPE_CRC[kind]) != checksum:
            problems.append(f"the chunk at byte {position} fails its checksum")
            return
        yield position, kind, payload
        position = end


# --- decoding ---------------------------------------------------------------------------------


def _has_typed_history(record_class: Any) -> bool:
    """Whether this wandb's ``HistoryItem`` has the typed ``value`` oneof (newer SDKs)."""
    history = record_class.DESCRIPTOR.fields_by_name["history"].message_type
    item = history.fields_by_name["item"].message_type
    return "value" in item.oneofs_by_name


def require_wandb() -> None:
    """ImportError with the install command when the ``wandb`` package is missing."""
    _record_class()


def _record_class() -> Any:
    """W&B's protobuf ``Record`` class, imported on first use."""
    try:
        module = importlib.import_module("wandb.proto.wandb_internal_pb2")
    except ImportError as exc:
        raise ImportError(WANDB_MISSING_MESSAGE) from exc
    return module.Record


@dataclass
class _Decoder:
    """Folds the records of one log into the run they describe, in log order."""

    typed_history: bool
    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    exit_runtime: float = 0.0
    latest: float | None = None  # the latest wall-clock time seen, as a UNIX timestamp
    runtime: float = 0.0

    def add(self, record: Any) -> None:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            self._history(record.history)
        elif kind == "summary":
            _apply_items(self.summary, record.summary.update, record.summary.remove)
        elif kind == "config":
            _apply_items(self.config, record.config.update, record.config.remove)
        elif kind == "run":
            if self.run is None:
                self.run = record.run
            _apply_items(self.config, record.run.config.update, ())
            _apply_items(self.summary, record.run.summary.update, ())
        elif kind == "exit":
            self.exit_code = int(record.exit.exit_code)
            self.exit_runtime = float(record.exit.runtime)
        elif kind == "stats" and record.stats.HasField("timestamp"):
            self._saw_time(_seconds(record.stats.timestamp))

    def _saw_time(self, timestamp: float) -> None:
        if self.latest is None or timestamp > self.latest:
            self.latest = timestamp

    def _history(self, history: Any) -> None:
        row: dict[str, Any] = {}
        keys: list[str] = []
        texts: list[str] = []
        for item in history.item:
            key = item.key or ".".join(item.nested_key)
            if self.typed_history:
                typed = item.WhichOneof("value")
                if typed is not None:
                    row[key] = _typed_value(item, typed)
                    continue
            if item.value_json:
                keys.append(key)
                texts.append(item.value_json)
        if texts:
            for key, value in zip(keys, _parse_json_values(keys, texts), strict=True):
                if type(value) is dict and MEDIA_TYPE_KEY not in value:
                    _flatten_into(row, key, value)  # older SDKs log a nested dict whole
                else:
                    row[key] = value
        step = row.pop(STEP_KEY, None)
        if not isinstance(step, int) or isinstance(step, bool):
            step = int(history.step.num)
        self.history.append({STEP_KEY: step, **row})
        timestamp = row.get(TIMESTAMP_KEY)
        if _is_number(timestamp):
            self._saw_time(float(timestamp))
        runtime = row.get(RUNTIME_KEY)
        if _is_number(runtime):
            self.runtime = max(self.runtime, float(runtime))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten_into(row: dict[str, Any], prefix: str, nested: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` logged under ``prefix`` as ``prefix.a.b``: the keys newer SDKs
    write for a nested dict (W&B's media values, dicts with ``_type``, stay whole)."""
    for key, value in nested.items():
        if type(value) is dict and MEDIA_TYPE_KEY not in value:
            _flatten_into(row, f"{prefix}.{key}", value)
        else:
            row[f"{prefix}.{key}"] = value


def _typed_value(item: Any, typed: str) -> Any:
    """A history value written in the typed form of newer SDKs (``value`` oneof)."""
    if typed == "none":
        return None
    if typed == "json":
        return json.loads(item.json)
    return getattr(item, typed)  # boolean, integer, number, text


def _parse_json_values(keys: list[str], texts: list[str]) -> list[Any]:
    """Parse many ``value_json`` texts in one ``json.loads`` call (they are JSON values, so
    joined with commas they form an array); Python's json accepts W&B's NaN/Infinity."""
    try:
        parsed = json.loads("[" + ",".join(texts) + "]")
        if isinstance(parsed, list) and len(parsed) == len(texts):
            return parsed
    except ValueError:
        pass
    return [_parse_json_value(key, text) for key, text in zip(keys, texts, strict=True)]


def _parse_json_value(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        logger.warning("W&B value of %r is not JSON; kept as its text: %.80r", key, text)
        return text


class _JSONText(str):
    """A config or summary value still as W&B's JSON text: a summary is updated at every
    step, so values are parsed once, at the end (:func:`_parsed`)."""

    __slots__ = ()


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _apply_items(target: dict[str, Any], updates: Iterable[Any], removes: Iterable[Any]) -> None:
    """Apply config or summary updates (a nested key sets a value inside nested dicts)."""
    for item in updates:
        nested = item.nested_key
        if len(nested) <= 1:  # the usual case, kept fast
            target[nested[0] if nested else item.key] = _JSONText(item.value_json)
            continue
        *parents, leaf = nested
        node = target
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = _JSONText(item.value_json)
    for item in removes:
        *parents, leaf = _item_path(item)
        node = target
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.pop(leaf, None)


def _parsed(tree: dict[str, Any], path: str = "") -> dict[str, Any]:
    """``tree`` with every :class:`_JSONText` leaf parsed."""
    return {
        key: _parse_json_value(f"{path}{key}", value)
        if isinstance(value, _JSONText)
        else _parsed(value, f"{path}{key}.")
        for key, value in tree.items()
    }


def unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The training config: W&B's ``{"value": v, "desc": d}`` wrapping (config.yaml, the
    public API's ``json_config``) undone at the top level, ``_wandb`` left out.

    Only a dict whose keys are exactly ``value`` or ``value`` and ``desc`` is unwrapped.
    """
    unwrapped: dict[str, Any] = {}
    for key, value in config.items():
        if key == WANDB_CONFIG_KEY:
            continue
        wrapped = (
            isinstance(value, dict) and "value" in value and set(value) <= _WRAPPED_CONFIG_KEYS
        )
        unwrapped[key] = value["value"] if wrapped else value
    return unwrapped


def _seconds(timestamp: Any) -> float:
    return float(timestamp.seconds) + float(timestamp.nanos) / 1e9


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def read_run(path: str | os.PathLike[str]) -> WandbRunLog:
    """Read a W&B run from its ``.wandb`` file, its run directory or its ``files`` directory.

    A truncated or corrupt tail (a crashed or live run) yields everything before it, with
    ``truncated`` set and a warning logged. Raises :class:`WandbFileError` when the path is
    no W&B run log, and ImportError when ``wandb`` is not installed.
    """
    run_file = find_run_file(path)
    record_class = _record_class()
    try:
        data = run_file.read_bytes()
        scan = scan_log(data)
    except OSError as exc:
        raise WandbFileError(f"cannot read {run_file}: {exc}") from exc
    except WandbFileError as exc:
        raise WandbFileError(f"{run_file}: {exc}") from None
    if scan.problem is not None:
        logger.warning(
            "%s: %s; read the %d records before it", run_file, scan.problem, len(scan.payloads)
        )
    decoder = _Decoder(typed_history=_has_typed_history(record_class))
    for index, payload in enumerate(scan.payloads):
        try:
            record = record_class.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError has no stable import path
            raise WandbFileError(
                f"{run_file}: record {index} has a valid checksum but is not a W&B record "
                f"({exc}); written by an incompatible wandb version?"
            ) from exc
        decoder.add(record)
    return _run_log(run_file, scan, decoder)


def wait_for_exit_record(
    path: str | os.PathLike[str], timeout: float, *, poll_seconds: float = 0.1
) -> bool:
    """Wait until the log at ``path`` holds W&B's exit record; False after ``timeout`` s.

    ``wandb.finish()`` returns before W&B's service has written the end of the log, so a
    reader that starts right after it can see a log without its last blocks.
    """
    record_class = _record_class()
    deadline = time.monotonic() + timeout
    while not _has_exit_record(Path(path), record_class):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_seconds)
    return True


def _has_exit_record(run_file: Path, record_class: Any) -> bool:
    try:
        scan = scan_log(run_file.read_bytes())
    except (OSError, WandbFileError):
        return False  # not there yet, or not even its header written
    for payload in reversed(scan.payloads[-_EXIT_SEARCH_DEPTH:]):
        if record_class.FromString(payload).WhichOneof("record_type") == "exit":
            return True
    return False


def _run_log(run_file: Path, scan: ScanResult, decoder: _Decoder) -> WandbRunLog:
    run = decoder.run
    start: float | None = None
    if run is not None and run.HasField("start_time"):
        start = _seconds(run.start_time)
    summary = _parsed(decoder.summary)
    summary_runtime = summary.get(RUNTIME_KEY)
    runtime = max(
        decoder.runtime,
        decoder.exit_runtime,
        float(summary_runtime) if _is_number(summary_runtime) else 0.0,
    )
    candidates = [time for time in (decoder.latest,) if time is not None]
    if start is not None:
        candidates.append(start + runtime)
    return WandbRunLog(
        path=run_file,
        wandb_run_id=(run.run_id or None) if run is not None else _id_from_name(run_file),
        project=(run.project or None) if run is not None else None,
        entity=(run.entity or None) if run is not None else None,
        display_name=(run.display_name or None) if run is not None else None,
        host=(run.host or None) if run is not None else None,
        start_time=None if start is None else _utc(start),
        end_time=_utc(max(candidates)) if candidates else None,
        exit_code=decoder.exit_code,
        config=unwrap_config(_parsed(decoder.config)),
        history=decoder.history,
        summary=summary,
        truncated=scan.truncated,
        problem=scan.problem,
        records=len(scan.payloads),
        format_version=scan.version,
    )


def _id_from_name(run_file: Path) -> str | None:
    """``run-<id>.wandb`` → ``<id>`` (for a log cut off before its run record)."""
    stem = run_file.stem
    if not stem.startswith("run-"):
        return None
    return stem[len("run-") :] or None


__all__ = [
    "WANDB_MISSING_MESSAGE",
    "ScanResult",
    "WandbFileError",
    "WandbRunLog",
    "find_run_dirs",
    "find_run_file",
    "is_live_run",
    "locate_run_file",
    "read_run",
    "require_wandb",
    "scan_log",
    "unwrap_config",
    "wait_for_exit_record",
]
