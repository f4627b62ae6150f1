"""The W&B run-file reader, on real runs made by the wandb client in offline mode.

Each training script runs in its own subprocess (so wandb's service process is its own) and
writes what it logged to a side JSON file; the reader must give back exactly that. The
runs are made once per test session (:func:`generated_runs`); ``test_wandb_import.py`` uses
the same ones. Damaged logs are real logs cut or with bytes changed.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import types
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training_db.core import wandb_files
from training_db.core.wandb_files import (
    BLOCK_SIZE,
    WandbFileError,
    find_run_dirs,
    find_run_file,
    locate_run_file,
    read_run,
    scan_log,
    unwrap_config,
    wait_for_exit_record,
)

NAN = float("nan")
INF = float("inf")
W_AND_B_KEYS = ("_runtime", "_timestamp")  # added to every history row by W&B itself

# --- the training script -----------------------------------------------------------------------

TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, math, os, signal, sys

    import wandb

    from training_db.core import wandb_files

    with open(sys.argv[1]) as spec_file:
        spec = json.load(spec_file)
    side_path = sys.argv[2]
    steps = spec["steps"]


    def row(i):
        logged = {"train/loss": 1.0 / (i + 1), "train/learning_rate": 1e-4 * (1 - i / steps)}
        if spec.get("rich"):
            if i % 7 == 0:
                logged["eval/score"] = i / 7  # sparse: every 7th step
            if i == 3:
                logged["phase"] = "warmup done"  # a string, once
            if i == 2:
                logged["flag"] = True
            if i == 4:
                logged["train/loss"] = float("nan")
            if i == 5:
                logged["train/grad_norm"] = float("inf")
            if i == 6:
                logged["train/grad_norm"] = float("-inf")
            if i % 10 == 0:
                logged["objectives/COMT_activity_maximize/raw_mean"] = 0.5 + i / (2 * steps)
            logged["count"] = i
            logged["layer"] = {"w": i * 0.5, "b": {"deep": -i}}  # nested: layer.w, layer.b.deep
        for k in range(spec.get("wide", 0)):
            logged[f"metric_{k:03d}"] = math.sin(i * 0.01 + k)
        return logged


    def record(result):
        return None if result is None else {
            "action": result.action, "status": result.status, "run_id": result.run_id
        }


    side = {"config": spec["config"], "logged": [], "summary": spec.get("summary", {})}

    def write_side():
        with open(side_path, "w") as out:
            json.dump(side, out)

    run = wandb.init(project="mangodb-tests", config=spec["config"])
    side["wandb_run_id"] = run.id
    side["live"] = {
        "is_live": wandb_files.is_live_run(run),
        "file": str(wandb_files.locate_run_file(run)),
        "sync_file": run.settings.sync_file,
        "dir": run.dir,
    }
    for i in range(steps):
        logged = row(i)
        run.log(logged)
        side["logged"].append(logged)
        if spec.get("kill_at") == i + 1:
            write_side()
            os.kill(os.getpid(), signal.SIGKILL)
    if spec.get("config_update"):
        run.config.update(spec["config_update"])
        side["config"] = {**spec["config"], **spec["config_update"]}
    for key, value in side["summary"].items():
        run.summary[key] = value

    finish = spec.get("finish_from_wandb")
    if finish:
        import training_db

        training_db.configure(finish["db_url"])
        side["live_result"] = record(training_db.finish_from_wandb(finish["run_id"], run))
    if spec["mode"] == "raise":
        write_side()
        raise RuntimeError("training diverged")
    run.finish(exit_code=1 if spec["mode"] == "fail" else None)
    side["finished"] = {
        "is_live": wandb_files.is_live_run(run),
        "file": str(wandb_files.locate_run_file(run)),
    }
    if finish:
        side["finished_result"] = record(training_db.finish_from_wandb(finish["run_id"], run))
    write_side()
    """
)

RICH_CONFIG: dict[str, Any] = {
    "training": {
        "batch_size": 64,
        "learning_rate": 1e-4,
        "gradient_method": "mgda",
        "num_gpus": 4,
        "seed": 7,
    },
    "model": {"base_model": "mango-7b", "lora_rank": 16},
    "objectives": [
        {
            "name": "COMT_activity",
            "alias": "COMT_activity_maximize",
            "weight": 1.0,
            "params": {"uniprot": "P21964"},
        },
        {
            "name": "DRD5_activity",
            "alias": "DRD5_activity_maximize",
            "weight": 0.5,
            "direction": "maximize",
            "params": {"uniprot": "P21918"},
        },
        {"name": "toxicity", "alias": "toxicity_minimize", "weight": 0.25},
    ],
    "notes": {"empty": {}, "mixed": [1, 2.5, "x", None, True]},
}
RICH_SUMMARY: dict[str, Any] = {
    "best/score": 0.875,
    "objectives/COMT_activity_maximize/raw_mean": 0.91,
    "objectives/COMT_activity_maximize/normalized_mean": 0.7,
    "objectives/DRD5_activity_maximize/raw_mean": NAN,
    "objectives/toxicity_minimize/raw_mean": 0.125,
}

# W&B itself writes a NaN set on ``run.summary`` as null (a NaN *logged* stays NaN).
RICH_SUMMARY_AS_WRITTEN = {**RICH_SUMMARY, "objectives/DRD5_activity_maximize/raw_mean": None}

RUN_SPECS: dict[str, dict[str, Any]] = {
    "rich": {
        "steps": 300,
        "rich": True,
        "mode": "finish",
        "config": RICH_CONFIG,
        "config_update": {"late_key": "added after init"},
        "summary": RICH_SUMMARY,
    },
    "long": {"steps": 10_000, "mode": "finish", "config": {"training": {"max_steps": 10_000}}},
    "killed": {"steps": 5_000, "kill_at": 3_000, "mode": "finish", "config": {"seed": 1}},
    "failed": {
        # a record of > 2 blocks: FIRST, MIDDLE..., LAST chunks
        "steps": 20,
        "mode": "fail",
        "config": {"seed": 2, "vocabulary": list(range(40_000))},
    },
    "raised": {"steps": 20, "mode": "raise", "config": {"seed": 3}},
    "launched": {
        "steps": 50,
        "mode": "finish",
        "config": {
            "RUN_ID": "launch-0001",
            "training": {"batch_size": 32},
            "objectives": [
                {"name": "COMT_activity", "weight": 1.0},
                {"name": "QED", "weight": 0.2},
            ],
        },
    },
}
EXPECTED_RETURN_CODES = {"raised": 1, "killed": -signal.SIGKILL}


def wandb_env(root: Path) -> dict[str, str]:
    """An environment in which wandb runs offline, quietly, and writes only under ``root``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WANDB_", "COV_CORE_"))
    }
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(root),
        WANDB_CONFIG_DIR=str(root / ".config"),
        WANDB_CACHE_DIR=str(root / ".cache"),
        WANDB_DATA_DIR=str(root / ".data"),
        WANDB_ARTIFACT_DIR=str(root / ".artifacts"),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_CONSOLE="off",
        WANDB_ERROR_REPORTING="false",
        WANDB__DISABLE_STATS="true",
        WANDB__DISABLE_META="true",
    )
    return env


@dataclass(frozen=True)
class GeneratedRun:
    """A real W&B run directory and what its training script says it logged."""

    name: str
    run_dir: Path
    side: dict[str, Any]

    @property
    def run_file(self) -> Path:
        return find_run_file(self.run_dir)

    @property
    def logged(self) -> list[dict[str, Any]]:
        return list(self.side["logged"])


def start_training(
    spec: Mapping[str, Any], workdir: Path, script: str = TRAIN_SCRIPT
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "train.py").write_text(script)
    (workdir / "spec.json").write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, "train.py", "spec.json", str(workdir / "side.json")],
        cwd=workdir,
        env=wandb_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish_training(name: str, process: subprocess.Popen[bytes], workdir: Path) -> GeneratedRun:
    _, stderr = process.communicate(timeout=180)
    expected = EXPECTED_RETURN_CODES.get(name, 0)
    assert process.returncode == expected, f"{name}: {stderr.decode(errors='replace')[-3000:]}"
    (run_dir,) = find_run_dirs([workdir / "wandb"])
    settle(find_run_file(run_dir))
    side = json.loads((workdir / "side.json").read_text())
    return GeneratedRun(name, run_dir, side)


def settle(run_file: Path, quiet_seconds: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until W&B's service has stopped writing the file (it outlives a killed script)."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = run_file.stat().st_size
        if current != size:
            size, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return
        time.sleep(0.1)


@functools.cache
def _generate(root: Path) -> dict[str, GeneratedRun]:
    processes = {name: start_training(spec, root / name) for name, spec in RUN_SPECS.items()}
    return {
        name: finish_training(name, process, root / name) for name, process in processes.items()
    }


def generated_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GeneratedRun]:
    """The session's real W&B runs, made once (both test modules share them)."""
    return _generate(tmp_path_factory.getbasetemp() / "wandb-runs")


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GeneratedRun]:
    return generated_runs(tmp_path_factory)


# --- comparing ----------------------------------------------------------------------------------


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as W&B's history shows them: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def same(actual: Any, expected: Any) -> bool:
    """Equal values: NaN equals NaN; 1 equals 1.0 (W&B writes 1.0 as 1); True is not 1."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, float) and isinstance(expected, float):
        return (math.isnan(actual) and math.isnan(expected)) or actual == expected
    return bool(actual == expected)


def assert_rows_match(
    rows: Sequence[Mapping[str, Any]], logged: Sequence[Mapping[str, Any]]
) -> None:
    """Each history row holds exactly what was logged at its step (plus W&B's own keys)."""
    assert len(rows) == len(logged)
    for step, (row, logged_row) in enumerate(zip(rows, logged, strict=True)):
        expected = flatten(logged_row)
        assert row["_step"] == step
        assert set(row) - {"_step", *W_AND_B_KEYS} == set(expected), f"step {step}"
        for key, value in expected.items():
            assert same(row[key], value), f"step {step} {key}: {row[key]!r} != {value!r}"
        assert all(isinstance(row[key], (int, float)) for key in W_AND_B_KEYS)


# --- real runs ----------------------------------------------------------------------------------


def test_rich_run_reads_back_what_was_logged(runs: dict[str, GeneratedRun]) -> None:
    run = runs["rich"]
    log = read_run(run.run_dir)
    assert log.wandb_run_id == run.side["wandb_run_id"]
    assert log.project == "mangodb-tests"
    assert log.exit_code == 0 and log.status == "completed"
    assert not log.truncated and log.problem is None
    assert log.config == run.side["config"]  # the init config, the late update, no _wandb
    assert log.config["late_key"] == "added after init"
    assert_rows_match(log.history, run.logged)
    # logged NaN and ±Infinity come back as floats, not strings
    assert math.isnan(log.history[4]["train/loss"])
    assert log.history[5]["train/grad_norm"] == INF
    assert log.history[6]["train/grad_norm"] == -INF
    assert "eval/score" in log.history[7] and "eval/score" not in log.history[8]
    assert log.history[2]["flag"] is True and log.history[3]["phase"] == "warmup done"
    # the summary: what the script set, and the last value of everything else it logged
    for key, value in RICH_SUMMARY_AS_WRITTEN.items():
        assert same(log.summary[key], value), key
    last = run.logged[-1]
    assert log.summary["count"] == last["count"]
    assert log.summary["layer"] == last["layer"]  # nested keys as nested dicts
    assert log.summary["train/loss"] == pytest.approx(last["train/loss"])
    assert log.start_time is not None and log.end_time is not None
    assert log.start_time < log.end_time
    assert log.start_time.tzinfo is not None
    # the latest history timestamp, to the microsecond a datetime holds
    assert log.end_time.timestamp() >= max(row["_timestamp"] for row in log.history) - 1e-6
    assert log.run_dir == run.run_dir
    assert log.records > len(log.history)


def test_ten_thousand_steps(runs: dict[str, GeneratedRun]) -> None:
    run = runs["long"]
    started = time.perf_counter()
    log = read_run(run.run_file)
    elapsed = time.perf_counter() - started
    assert len(log.history) == 10_000
    assert_rows_match(log.history, run.logged)
    assert log.status == "completed" and not log.truncated
    assert elapsed < 10, f"reading 10,000 steps took {elapsed:.1f} s"


def test_killed_run_is_a_prefix_without_exit_record(runs: dict[str, GeneratedRun]) -> None:
    run = runs["killed"]
    log = read_run(run.run_dir)
    assert log.exit_code is None and log.status == "crashed"
    assert 0 < len(log.history) <= 3_000
    assert_rows_match(log.history, run.logged[: len(log.history)])
    assert log.config == {"seed": 1}
    assert log.wandb_run_id == run.side["wandb_run_id"]


@pytest.mark.parametrize("name", ["failed", "raised"])
def test_failed_runs_have_their_exit_code(runs: dict[str, GeneratedRun], name: str) -> None:
    run = runs[name]
    log = read_run(run.run_dir)
    assert log.exit_code == 1 and log.status == "failed"
    assert not log.truncated
    assert_rows_match(log.history, run.logged)


def test_records_split_over_several_blocks(runs: dict[str, GeneratedRun]) -> None:
    run = runs["failed"]
    scan = scan_log(run.run_file.read_bytes())
    assert max(len(payload) for payload in scan.payloads) > 2 * BLOCK_SIZE  # MIDDLE chunks
    log = read_run(run.run_file)
    assert log.config["vocabulary"] == list(range(40_000))


def test_locates_the_file_of_a_real_run_object(runs: dict[str, GeneratedRun]) -> None:
    run = runs["rich"]
    live, finished = run.side["live"], run.side["finished"]
    assert live["is_live"] is True and finished["is_live"] is False
    assert Path(live["file"]) == Path(finished["file"]) == run.run_file.resolve()
    assert Path(live["sync_file"]) == run.run_file.resolve()
    assert Path(live["dir"]).parent == run.run_dir
    # what locate_run_file does with a run that only has .dir (an older SDK)
    only_dir = types.SimpleNamespace(dir=live["dir"])
    assert locate_run_file(only_dir) == run.run_file.resolve()
    assert wandb_files.is_live_run(only_dir) is False


def test_finds_the_file_from_file_run_dir_or_files_dir(
    runs: dict[str, GeneratedRun], tmp_path: Path
) -> None:
    run = runs["raised"]
    assert find_run_file(run.run_file) == run.run_file
    assert find_run_file(run.run_dir) == run.run_file
    assert find_run_file(run.run_dir / "files") == run.run_file
    assert locate_run_file(str(run.run_dir)) == run.run_file
    with pytest.raises(WandbFileError, match="not a W&B run directory"):
        find_run_file(tmp_path)
    with pytest.raises(WandbFileError, match="no such"):
        find_run_file(tmp_path / "missing")
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in ("run-a.wandb", "run-b.wandb"):
        shutil.copy(run.run_file, twice / name)
    with pytest.raises(WandbFileError, match="several"):
        find_run_file(twice)
    with pytest.raises(ValueError, match=r"wandb\.run is None"):
        locate_run_file(None)
    with pytest.raises(ValueError, match="got int"):
        locate_run_file(42)


def test_finds_run_directories_under_folders(runs: dict[str, GeneratedRun], tmp_path: Path) -> None:
    tree = tmp_path / "projects"
    first = tree / "a" / "wandb" / runs["failed"].run_dir.name
    second = tree / "b" / "deeper" / "wandb" / runs["raised"].run_dir.name
    shutil.copytree(runs["failed"].run_dir, first)
    shutil.copytree(runs["raised"].run_dir, second)
    (tree / "a" / "wandb" / "latest-run").symlink_to(first, target_is_directory=True)
    (tree / "empty").mkdir()
    found = find_run_dirs([tree, second / runs["raised"].run_file.name])
    assert found == sorted([first.resolve(), second.resolve()])
    with pytest.raises(WandbFileError, match="no such directory"):
        find_run_dirs([tmp_path / "missing"])


def test_wait_for_exit_record(runs: dict[str, GeneratedRun], tmp_path: Path) -> None:
    assert wait_for_exit_record(runs["raised"].run_file, timeout=5) is True
    started = time.monotonic()
    assert wait_for_exit_record(runs["killed"].run_file, timeout=0.3, poll_seconds=0.05) is False
    assert time.monotonic() - started >= 0.3
    assert wait_for_exit_record(tmp_path / "run-none.wandb", timeout=0) is False


# --- damaged logs -------------------------------------------------------------------------------


def record_spans(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each record in an intact log: its first chunk's header to the end
    of its last chunk."""
    spans: list[tuple[int, int]] = []
    position, start = 7, 7
    while position < len(data):
        left = BLOCK_SIZE - position % BLOCK_SIZE
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, position)
        if kind in (1, 2):
            start = position
        position += 7 + length
        if kind in (1, 4):
            spans.append((start, position))
    assert position == len(data)
    return spans


def record_offsets(data: bytes) -> list[int]:
    return [start for start, _ in record_spans(data)]


@pytest.mark.parametrize(
    ("where", "delta"),
    [("record", 0), ("record", 3), ("record", 7 + 5), ("block", 0), ("block", 1000)],
    ids=["at-a-record-boundary", "in-a-chunk-header", "in-a-payload", "at-a-block", "past"],
)
def test_a_cut_off_log_yields_everything_before_the_cut(
    runs: dict[str, GeneratedRun],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
    delta: int,
) -> None:
    data = runs["rich"].run_file.read_bytes()
    full = scan_log(data).payloads
    spans = record_spans(data)
    if where == "record":
        cut = spans[len(spans) // 2][0] + delta
    else:
        # the first block boundary that a record is split across
        cut = next(
            boundary
            for boundary in range(BLOCK_SIZE, len(data), BLOCK_SIZE)
            if any(start < boundary < end for start, end in spans)
        )
        cut += delta
    complete = sum(1 for _, end in spans if end <= cut)
    cut_inside = cut not in {end for _, end in spans}
    damaged = tmp_path / "run-cut.wandb"
    damaged.write_bytes(data[:cut])
    with caplog.at_level(logging.WARNING, logger="training_db.core.wandb_files"):
        log = read_run(damaged)
    assert log.records == complete
    assert scan_log(data[:cut]).payloads == full[:complete]
    assert log.exit_code is None and log.status == "crashed"
    assert log.truncated is cut_inside
    assert (str(damaged) in caplog.text) is cut_inside
    if where == "record":
        assert cut_inside is (delta != 0)
    assert_rows_match(log.history, runs["rich"].logged[: len(log.history)])


def test_a_bad_checksum_stops_the_log_there(
    runs: dict[str, GeneratedRun], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(runs["rich"].run_file.read_bytes())
    offsets = record_offsets(bytes(data))
    index = len(offsets) // 3
    data[offsets[index] + 7 + 2] ^= 0x40  # one bit of one payload byte
    damaged = tmp_path / "run-flipped.wandb"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="training_db.core.wandb_files"):
        log = read_run(damaged)
    assert log.truncated and log.problem is not None and "checksum" in log.problem
    assert log.records == index
    assert "checksum" in caplog.text
    assert_rows_match(log.history, runs["rich"].logged[: len(log.history)])


def rewrite_chunk(
    data: bytes, position: int, *, kind: int | None = None, length: int | None = None
) -> bytes:
    """``data`` with the chunk header at ``position`` changed (checksum recomputed)."""
    checksum, old_length, old_kind = struct.unpack_from("<IHB", data, position)
    new_kind = old_kind if kind is None else kind
    new_length = old_length if length is None else length
    payload = data[position + 7 : position + 7 + old_length]
    checksum = zlib.crc32(bytes([new_kind]) + payload)
    header = struct.pack("<IHB", checksum, new_length, new_kind)
    return data[:position] + header + data[position + 7 :]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": 4}, "breaks the record sequence"),  # a LAST chunk with no FIRST before it
        ({"kind": 2}, "breaks the record sequence"),  # a FIRST chunk followed by a FULL one
        ({"kind": 9}, "unknown type 9"),
        ({"length": 40_000}, "overflows its 32 KiB block"),
    ],
)
def test_damaged_chunk_headers(
    runs: dict[str, GeneratedRun], change: dict[str, Any], problem: str
) -> None:
    data = runs["raised"].run_file.read_bytes()
    offsets = record_offsets(data)
    full = scan_log(data).payloads
    # the third and fourth records are FULL chunks in block 0
    assert [struct.unpack_from("<IHB", data, offsets[i])[2] for i in (2, 3)] == [1, 1]
    scan = scan_log(rewrite_chunk(data, offsets[2], **change))
    assert scan.problem is not None and problem in scan.problem
    assert scan.payloads == full[:2]


def test_a_record_left_unfinished_before_a_new_one_is_a_problem(
    runs: dict[str, GeneratedRun],
) -> None:
    data = runs["failed"].run_file.read_bytes()
    offsets = record_offsets(data)
    # the record of > 2 blocks: turn its second chunk (a MIDDLE) into a FULL one
    big = next(
        i for i, offset in enumerate(offsets) if struct.unpack_from("<IHB", data, offset)[2] == 2
    )
    length = struct.unpack_from("<IHB", data, offsets[big])[1]
    second = offsets[big] + 7 + length
    assert struct.unpack_from("<IHB", data, second)[2] == 3
    scan = scan_log(rewrite_chunk(data, second, kind=1))
    assert scan.problem is not None and "breaks the record sequence" in scan.problem
    assert len(scan.payloads) == big


def test_zeroed_block_tail_is_skipped(runs: dict[str, GeneratedRun]) -> None:
    data = runs["raised"].run_file.read_bytes()
    offsets = record_offsets(data)
    assert offsets[-1] < BLOCK_SIZE  # the whole small log is in block 0
    cut = offsets[4]
    preallocated = data[:cut] + bytes(BLOCK_SIZE - cut) + bytes(100)
    scan = scan_log(preallocated)
    assert scan.problem is None
    assert scan.payloads == scan_log(data).payloads[:4]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b":W&", "shorter than the 7-byte file header"),
        (b"LEVELDB", "not a W&B run log"),
        (struct.pack("<4sHB", b":W&B", 0xBEE2, 0), "not a W&B run log"),
        (struct.pack("<4sHB", b":W&B", 0xBEE1, 7), "format version 7"),
    ],
)
def test_bad_file_headers(tmp_path: Path, header: bytes, message: str) -> None:
    with pytest.raises(WandbFileError, match=message):
        scan_log(header)
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(header)
    with pytest.raises(WandbFileError, match=str(bad)):
        read_run(bad)


def test_format_version_1_is_read(runs: dict[str, GeneratedRun]) -> None:
    data = runs["raised"].run_file.read_bytes()
    version_1 = data[:6] + b"\x01" + data[7:]
    scan = scan_log(version_1)
    assert scan.version == 1
    assert scan.payloads == scan_log(data).payloads


# --- framing and records made here (edge cases no SDK run produces on demand) -------------------


def frame_log(payloads: Sequence[bytes], version: int = 0) -> bytes:
    """The LevelDB-log framing as W&B writes it (for records made by the tests)."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, version))
    for payload in payloads:
        rest, first = payload, True
        while True:
            left = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if left < 7:
                out += bytes(left)
                continue
            piece, rest = rest[: left - 7], rest[left - 7 :]
            last = not rest
            kind = (1 if last else 2) if first else (4 if last else 3)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + piece), len(piece), kind)
            out += piece
            first = False
            if last:
                break
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * BLOCK_SIZE), max_size=12))
def test_framing_round_trip(sizes: list[int]) -> None:
    payloads = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    scan = scan_log(frame_log(payloads))
    assert scan.problem is None
    assert scan.payloads == payloads


def test_block_trailer_is_skipped() -> None:
    # the first record ends 3 bytes before the block's end: the next header cannot fit
    first = b"a" * (BLOCK_SIZE - 7 - 7 - 3)
    data = frame_log([first, b"second"])
    assert data[BLOCK_SIZE - 3 : BLOCK_SIZE] == bytes(3)
    assert scan_log(data).payloads == [first, b"second"]


def pb() -> Any:
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2


def item(message: Any, key: str, value_json: str) -> None:
    entry = message.add()
    entry.nested_key.extend(key.split("/"))
    entry.value_json = value_json


def write_records(tmp_path: Path, records: Sequence[Any]) -> Path:
    path = tmp_path / "run-made.wandb"
    path.write_bytes(frame_log([record.SerializeToString() for record in records]))
    return path


def test_config_and_summary_updates_and_removals(tmp_path: Path) -> None:
    records = []
    run = pb().Record()
    run.run.run_id = "made1"
    run.run.start_time.FromSeconds(1_700_000_000)
    item(run.run.config.update, "_wandb", '{"cli_version": "x"}')
    item(run.run.config.update, "lr", '{"value": 0.001, "desc": null}')
    item(run.run.config.update, "plain", '{"value": 1, "other": 2}')
    item(run.run.config.update, "gone", "1")
    records.append(run)
    config = pb().Record()
    item(config.config.update, "model/depth", "12")  # a nested key
    item(config.config.remove, "gone", "")
    item(config.config.remove, "never/there", "")
    records.append(config)
    summary = pb().Record()
    item(summary.summary.update, "eval/best", "0.5")
    item(summary.summary.update, "old", "1")
    item(summary.summary.update, "_runtime", "90")
    records.append(summary)
    summary2 = pb().Record()
    item(summary2.summary.remove, "old", "")
    item(summary2.summary.update, "eval/best", "NaN")
    records.append(summary2)
    log = read_run(write_records(tmp_path, records))
    assert log.config == {"lr": 0.001, "plain": {"value": 1, "other": 2}, "model": {"depth": 12}}
    assert set(log.summary) == {"eval", "_runtime"} and math.isnan(log.summary["eval"]["best"])
    assert log.exit_code is None and not log.truncated
    assert log.start_time is not None and log.end_time is not None
    assert (log.end_time - log.start_time).total_seconds() == 90  # start + summary runtime


def test_typed_history_items_and_bad_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    history = pb().Record()
    row = history.history
    row.step.num = 5
    for key, kind, value in [
        ("none", "none", True),
        ("bool", "boolean", True),
        ("int", "integer", 7),
        ("float", "number", float("-inf")),
        ("text", "text", "hello"),
        ("json", "json", '{"a": [1, NaN]}'),
    ]:
        entry = row.item.add(key=key)
        if kind == "none":
            entry.none = 0
        else:
            setattr(entry, kind, value)
    row.item.add(key="legacy", value_json="2.5")
    # wandb < 0.18 logs a nested dict whole; newer SDKs write one item per leaf
    row.item.add(key="nest", value_json='{"x": 1, "y": {"z": [2]}, "h": {"_type": "hist"}}')
    row.item.add(key="broken", value_json="{not json")
    row.item.add(key="empty")  # no value at all: not logged
    exit_record = pb().Record()
    exit_record.exit.exit_code = 3
    with caplog.at_level(logging.WARNING, logger="training_db.core.wandb_files"):
        log = read_run(write_records(tmp_path, [history, exit_record]))
    (only,) = log.history
    assert only["_step"] == 5  # from the record's step: no _step item
    assert only["none"] is None and only["bool"] is True and only["int"] == 7
    assert only["float"] == -INF and only["text"] == "hello"
    assert only["json"]["a"][0] == 1 and math.isnan(only["json"]["a"][1])
    assert only["legacy"] == 2.5 and only["broken"] == "{not json"
    assert only["nest.x"] == 1 and only["nest.y.z"] == [2]
    assert only["nest.h"] == {"_type": "hist"} and "nest" not in only
    assert "empty" not in only
    assert "'broken' is not JSON" in caplog.text
    assert log.exit_code == 3 and log.status == "failed"
    assert log.wandb_run_id == "made"  # no run record: the id in the file name
    assert log.start_time is None and log.end_time is None


def test_a_checksummed_record_that_is_not_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "run-junk.wandb"
    path.write_bytes(frame_log([b"\xff\xff\xff\xff\xff"]))
    with pytest.raises(WandbFileError, match="not a W&B record"):
        read_run(path)


def test_unwrap_config() -> None:
    wrapped = {
        "_wandb": {"value": {"cli_version": "0.31"}},
        "lr": {"value": 0.1, "desc": "learning rate"},
        "bs": {"value": 8},
        "kept": {"value": 1, "unit": "s"},
        "plain": 3,
    }
    assert unwrap_config(wrapped) == {
        "lr": 0.1,
        "bs": 8,
        "kept": {"value": 1, "unit": "s"},
        "plain": 3,
    }


# --- wandb is optional --------------------------------------------------------------------------


def test_without_wandb_a_clear_import_error(
    runs: dict[str, GeneratedRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("wandb", "wandb.proto", "wandb.proto.wandb_internal_pb2"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'mangodb\[wandb\]'"):
        read_run(runs["raised"].run_dir)
    with pytest.raises(ImportError, match="reading W&B run files needs wandb"):
        wandb_files.require_wandb()


def test_importing_training_db_does_not_import_wandb() -> None:
    code = "import sys, training_db, training_db.store.wandb; print('wandb' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
