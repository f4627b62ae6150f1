"""Best-effort calls: never raising, never blocking for long, spooling what could not be written
and replaying it exactly; and no password anywhere."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import math
import multiprocessing
import random
import shutil
import sqlite3
import string
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import URL

import training_db
from tests.conftest import DATA_TABLES
from training_db import DatabaseUnavailableError, TrainingDB, safe
from training_db.safe import SpooledCall

UTC = dt.timezone.utc
CLOSED_PORT_URL = "postgresql://trainer@127.0.0.1:1/trainingruns"
PASSWORD = "s3cret-Pa55word"  # must never show up anywhere
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A spool directory of the test's own; the default database unbound afterwards."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(directory))
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "0")
    monkeypatch.delenv("TRAINING_DB_SPOOL_AUTO_REPLAY", raising=False)
    monkeypatch.delenv("TRAINING_DB_PASSWORD", raising=False)
    yield directory
    assert safe.drain(60), "a best-effort call was still running at the end of the test"
    default = training_db.api._default
    training_db.api._default = None
    if default is not None:
        default.dispose()


def spooled(directory: Path) -> list[SpooledCall]:
    path = directory / "spool.jsonl"
    if not path.exists():
        return []
    return [SpooledCall.from_line(line) for line in path.read_bytes().splitlines()]


def database_state(url: URL) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table except the audit column ``updated_at_db`` (which records when
    a row was last written, so a replayed write moves it by design)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            state = {}
            for table in DATA_TABLES:
                result = connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
                keep = [i for i, name in enumerate(result.keys()) if name != "updated_at_db"]
                state[table] = [tuple(row[i] for i in keep) for row in result]
            return state
    finally:
        engine.dispose()


def run_fields(database: TrainingDB, run_id: str) -> dict[str, Any]:
    run = database.get_run(run_id)
    assert run is not None
    fields = dict(run)
    for audit in ("created_at_db", "updated_at_db"):
        fields.pop(audit)
    fields["history_json"] = run["history_json"]
    fields["objectives"] = [
        {key: value for key, value in objective.items() if key != "id"}
        for objective in database.get_run_objectives(run_id)
    ]
    fields["history"] = database.get_history(run_id)
    return fields


def same(left: Any, right: Any) -> bool:
    """Equality that counts NaN as equal to NaN."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right) and type(left) is type(right)


# --- the whole lifecycle through an outage -----------------------------------------------------

CONFIG: dict[str, Any] = {
    "training": {"batch_size": 64, "learning_rate": 1e-4, "gradient_method": "mgda"},
    "objectives": [{"name": "COMT_activity", "alias": "COMT_activity_maximize"}],
    "model": {"base_model": "mango-7b"},
    "odd": {"nan": math.nan, "inf": math.inf, "emoji": "🥭", "nul": "a\x00b", "neg0": -0.0},
    "$datetime": "a key that looks like a tag",
}
SUMMARY = {
    "train/loss": 0.125,
    "_step": 19,
    "objectives/COMT_activity_maximize/raw_mean": 0.875,
    "objectives/COMT_activity_maximize/raw_std": math.nan,
}


def lifecycle(api: Any, run_id: str, times: dict[str, dt.datetime] | None = None) -> None:
    """Launch → running → history during training → completion, as the training code does.

    ``times`` gives explicit timestamps (for the direct recording); safe.* captures them.
    """
    times = times or {}
    api.insert_run(
        run_id,
        None,
        CONFIG,
        "COC-1",
        run_name="lifecycle",
        host="ec2",
        instance_id="i-123",
        created_at=times.get("created_at"),
    )
    api.attach_conversation(run_id, "conversations/1.json")
    api.insert_objective(run_id, "COMT_activity", "COMT_activity_maximize", "P21964", 1.0)
    api.update_run_status(
        run_id,
        "running",
        wandb_run_id="wandb-1",
        wandb_url="https://wandb.ai/x/wandb-1",
        started_at=times.get("started_at"),
    )
    api.log_history(run_id, [{"_step": s, "train/loss": 1 / (s + 1)} for s in range(10)])
    api.set_tags(run_id, {"owner": "alice", "nan": math.nan})
    api.log_history(
        run_id, {"_step": list(range(10, 20)), "train/loss": [math.nan] + [0.1] * 9}
    )  # columns: NaN = not logged
    api.finish_run(
        run_id,
        "completed",
        SUMMARY,
        ended_at=times.get("ended_at"),
        history=[{"_step": 19, "eval/score": math.inf}],
    )
    api.attach_blog_post(run_id, "https://blog/🥭")


def make_unreachable(outage: str, good_url: URL, tmp_path: Path, monkeypatch: Any) -> str:
    if outage == "closed-port":
        return CLOSED_PORT_URL
    # read-only: the same SQLite file opened read-only (as root, chmod would not stop writes)
    monkeypatch.chdir(tmp_path)  # the URI form makes settings create a "file:" folder in cwd
    return f"sqlite:///file:{good_url.database}?mode=ro&uri=true"


OUTAGES = [
    pytest.param("sqlite", "closed-port", id="sqlite-closed-port"),
    pytest.param("sqlite", "read-only", id="sqlite-read-only-file"),
    pytest.param("postgresql", "closed-port", id="postgresql-closed-port"),
]


@pytest.mark.parametrize(("backend", "outage"), OUTAGES, indirect=["backend"])
def test_lifecycle_through_an_outage_replays_to_the_same_records(
    outage: str,
    db_url: URL,
    empty_url: URL,
    spool: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    training_db.configure(make_unreachable(outage, db_url, tmp_path, monkeypatch))
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    before = dt.datetime.now(UTC)
    started = time.monotonic()
    lifecycle(safe, "run-1")
    assert time.monotonic() - started < 20  # nothing waited for a timeout
    after = dt.datetime.now(UTC)

    records = spooled(spool)
    assert [r.function for r in records] == [
        "insert_run",
        "attach_conversation",
        "insert_objective",
        "update_run_status",
        "log_history",
        "set_tags",
        "log_history",
        "finish_run",
        "attach_blog_post",
    ]
    assert len(caplog.records) == len(records)  # one warning per call
    assert len({r.id for r in records}) == len(records)
    times = {
        "created_at": records[0].kwargs["created_at"],
        "started_at": records[3].kwargs["started_at"],
        "ended_at": records[7].kwargs["ended_at"],
    }
    for captured in times.values():
        assert before <= captured <= after  # "now" was captured when the call was made

    database = training_db.configure(db_url)  # the database is back
    replay_started = dt.datetime.now(UTC)
    report = safe.replay()
    assert (report.applied, report.already_present, report.remaining) == (9, 0, 0)
    assert report.ok and not report.malformed

    direct = TrainingDB(empty_url)
    lifecycle(direct, "run-1", times)
    replayed_fields = run_fields(database, "run-1")
    direct_fields = run_fields(direct, "run-1")
    assert replayed_fields.keys() == direct_fields.keys()
    for name in direct_fields:
        assert same(replayed_fields[name], direct_fields[name]), name
    assert replayed_fields["ended_at"] < replay_started
    assert replayed_fields["duration_seconds"] == pytest.approx(
        (times["ended_at"] - times["started_at"]).total_seconds()
    )
    direct.dispose()

    # Replaying again finds nothing to do and changes nothing.
    state = database_state(db_url)
    again = safe.replay()
    assert (again.applied, again.already_present, again.remaining) == (0, 0, 0)
    assert database_state(db_url) == state


def test_replaying_calls_that_had_reached_the_database_changes_nothing(
    db_url: URL, spool: Path, tmp_path: Path
) -> None:
    """Every record applied twice (the original call had in fact been written, or a replay
    was interrupted before it could empty the spool): the same rows as applied once."""
    training_db.configure(CLOSED_PORT_URL)
    lifecycle(safe, "run-1")
    safe.heartbeat("run-1")
    safe.update_objective_metric("run-1", "DRD5_activity", "raw_mean", 0.5)
    safe.delete_tag("run-1", "owner")
    safe.attach_crash_data("run-1", "logs/error.log", None, "analysis.md")
    safe.update_run_status("run-1", "crashed")
    copy = tmp_path / "spool-copy.jsonl"
    shutil.copyfile(spool / "spool.jsonl", copy)

    training_db.configure(db_url)
    first = safe.replay()
    assert (first.applied, first.remaining) == (14, 0)
    state = database_state(db_url)

    shutil.copyfile(copy, spool / "spool.jsonl")
    second = safe.replay()
    assert second.already_present == 2  # insert_run and insert_objective
    assert second.applied == 12
    assert second.rejected == [] and second.remaining == 0
    assert database_state(db_url) == state


def test_bad_arguments_are_dropped_not_spooled(
    default_db: TrainingDB, db_url: URL, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    safe.insert_run("run-1", "wandb-1", {})
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    cases: list[tuple[Callable[[], safe.SafeResult[Any]], str]] = [
        (lambda: safe.update_run_status("run-1", "paused"), "unknown status 'paused'"),
        (lambda: safe.insert_run("run-1", None, {}), "RunAlreadyExistsError"),
        (lambda: safe.insert_run("run-2", "wandb-1", {}), "DuplicateWandbRunIdError"),
        (lambda: safe.insert_run("", None, {}), "run_id must not be empty"),
        (lambda: safe.insert_run("run-3", None, {"f": print}), "cannot be stored as JSON"),
        (lambda: safe.log_history("run-1", 42), "history must be"),
        (lambda: safe.update_objective_metric("run-1", "o", "raw_mean", "x"), "must be a number"),
    ]
    for call, message in cases:
        caplog.clear()
        result = call()
        assert result.status == "dropped"
        assert not result
        assert result.error is not None and message in result.error
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "dropped" in caplog.records[0].getMessage()
    assert not (spool / "spool.jsonl").exists()


def test_a_value_too_large_for_the_database_is_dropped_and_blocks_nothing(
    default_db: TrainingDB, db_url: URL, spool: Path
) -> None:
    """A host PostgreSQL cannot index used to read as "database unavailable": the call was
    spooled and every later call waited behind it. It is a bad argument: dropped."""
    host = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=5000))
    result = safe.insert_run("big", None, {}, host=host)
    if db_url.get_backend_name() == "postgresql":
        assert result.status == "dropped"
        assert result.error is not None and "too large for the database" in result.error
        assert default_db.get_run("big") is None
    else:  # SQLite has no index row limit: the value is stored whole
        assert result.status == "ok"
        assert default_db.get_run("big")["host"] == host  # type: ignore[index]
    assert safe.insert_run("after", None, {}).status == "ok"
    assert default_db.get_run("after") is not None
    assert not (spool / "spool.jsonl").exists()


def test_a_call_for_an_unknown_run_is_spooled_then_rejected_if_the_run_never_comes(
    default_db: TrainingDB, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown run may be one whose insert is waiting in the spool: never dropped."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")  # this replay, not the worker's
    result = safe.update_run_status("ghost", "running")
    assert result.status == "spooled"
    report = safe.replay()
    assert [item.function for item in report.rejected] == ["update_run_status"]
    assert "ghost" in report.rejected[0].reason
    assert (spool / "spool.rejected").exists()


def test_calls_behind_a_spooled_insert_follow_it(
    db_url: URL, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """insert_run refused (database down) then log_history on a reachable database, with no
    automatic replay in between: the history waits in the spool behind its run and both
    arrive at replay."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    training_db.configure(CLOSED_PORT_URL)
    assert safe.insert_run("late", None, {"training": {"batch_size": 8}}).status == "spooled"
    database = training_db.configure(db_url)
    assert safe.log_history("late", {"loss": [1.0, 0.5]}).status == "spooled"
    report = safe.replay()
    assert report.applied == 2 and report.rejected == []
    assert database.get_history("late")["loss"] == [1.0, 0.5]


def test_successful_calls_return_the_api_result(default_db: TrainingDB, spool: Path) -> None:
    assert safe.insert_run("run-1", None, {}).status == "ok"
    assert safe.set_tags("run-1", {"a": 1})
    assert safe.delete_tag("run-1", "a").value is True
    assert safe.delete_tag("run-1", "a").value is False
    assert safe.log_history("run-1", {"loss": [1.0, 2.0]}).value == 2
    assert safe.insert_objective("run-1", "COMT", weight=0.5)
    assert safe.delete_run_objectives("run-1").value == 1
    assert not (spool / "spool.jsonl").exists()


def test_a_bad_argument_never_reaching_the_database_is_rejected_at_replay(
    db: TrainingDB, spool: Path
) -> None:
    """With the database down, validation inside the repository never ran: the call was
    spooled, and the replay moves it to spool.rejected instead of retrying it forever."""
    training_db.configure(CLOSED_PORT_URL)
    assert safe.insert_run("run-1", None, {}).status == "spooled"
    bad_metric = safe.update_objective_metric("run-1", "COMT", "mean", 0.5)
    assert bad_metric.status == "spooled"
    assert safe.attach_blog_post("run-1", "https://blog").status == "spooled"
    report = safe.replay(spool, db=db)
    assert report.applied == 2
    assert [(r.line, r.function) for r in report.rejected] == [(2, "update_objective_metric")]
    assert "unknown metric type 'mean'" in report.rejected[0].reason
    rejected = [json.loads(line) for line in (spool / "spool.rejected").read_text().splitlines()]
    assert [(entry["line"], json.loads(entry["text"])["id"]) for entry in rejected] == [
        (2, bad_metric.record_id)
    ]
    assert (spool / "spool.jsonl").read_bytes() == b""


def test_a_bad_run_id_or_status_is_dropped_even_with_the_database_down(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    training_db.configure(CLOSED_PORT_URL)
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    assert safe.update_run_status("run-1", "paused").status == "dropped"
    assert safe.heartbeat("").status == "dropped"
    assert safe.set_tags("x" * 300, {}).status == "dropped"
    assert len(caplog.records) == 3
    assert not (spool / "spool.jsonl").exists()


def test_arguments_are_captured_when_the_call_is_made(spool: Path) -> None:
    training_db.configure(CLOSED_PORT_URL)
    config = {"lr": 0.1}
    history = [{"_step": 0, "loss": 1.0}]
    safe.insert_run("run-1", None, config)
    safe.log_history("run-1", history)
    config["lr"] = 99.0  # the training code goes on using its objects
    history[0]["loss"] = 99.0
    records = spooled(spool)
    assert records[0].kwargs["config_dict"] == {"lr": 0.1}
    assert records[1].kwargs["history"] == [{"_step": 0, "loss": 1.0}]


def test_dataframe_history_is_spooled_as_the_values_it_stores(db: TrainingDB, spool: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"_step": [0, 1, 2], "loss": [1.0, math.nan, 0.5]})
    db.insert_run("run-1", None, {})
    training_db.configure(CLOSED_PORT_URL)
    assert safe.log_history("run-1", frame).status == "spooled"
    assert spooled(spool)[0].kwargs["history"] == [
        {"_step": 0, "loss": 1.0},
        {"_step": 2, "loss": 0.5},
    ]  # NaN in a DataFrame is "not logged"
    safe.replay(spool, db=db)
    assert db.get_history("run-1") == {"_step": [0, 2], "loss": [1.0, 0.5]}


# --- spool file format -------------------------------------------------------------------------


def test_malformed_lines_are_reported_with_their_numbers_and_kept_aside(
    db: TrainingDB, spool: Path
) -> None:
    training_db.configure(CLOSED_PORT_URL)
    safe.insert_run("run-1", None, {})
    safe.attach_blog_post("run-1", "https://blog/1")
    good = (spool / "spool.jsonl").read_bytes().splitlines()
    bad_function = json.loads(good[1])
    bad_function["function"] = "drop_everything"
    lines = [
        good[0],
        b"this is not json",
        good[1],
        b'{"id": "x", "function": "insert_run"}',
        json.dumps(bad_function).encode(),
        b'{"id": "cut short by a crash", "recorded_at": "2026-',
    ]
    (spool / "spool.jsonl").write_bytes(b"\n".join(lines))  # the last line has no newline

    report = safe.replay(spool, db=db)

    assert report.applied == 2
    assert [m.line for m in report.malformed] == [2, 4, 5, 6]
    reasons = {m.line: m.reason for m in report.malformed}
    assert reasons[2].startswith("not JSON")
    assert "missing" in reasons[4]
    assert "unknown function 'drop_everything'" in reasons[5]
    rejected = [json.loads(line) for line in (spool / "spool.rejected").read_text().splitlines()]
    assert [entry["line"] for entry in rejected] == [2, 4, 5, 6]
    assert [entry["text"].encode() for entry in rejected] == [lines[i - 1] for i in (2, 4, 5, 6)]
    assert (spool / "spool.jsonl").read_bytes() == b""
    run = db.get_run("run-1")
    assert run is not None and run["blog_post_url"] == "https://blog/1"


def test_a_record_cut_short_does_not_spoil_the_next_one(
    db: TrainingDB, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")  # keep the cut line in place
    training_db.configure(CLOSED_PORT_URL)
    spool.mkdir(parents=True)
    (spool / "spool.jsonl").write_bytes(b'{"id": "killed mid-write", "func')
    assert safe.insert_run("run-1", None, {}).status == "spooled"
    lines = (spool / "spool.jsonl").read_bytes().splitlines()
    assert len(lines) == 2
    assert SpooledCall.from_line(lines[1]).function == "insert_run"
    report = safe.replay(spool, db=db)
    assert report.applied == 1
    assert [m.line for m in report.malformed] == [1]


def test_a_failed_replay_keeps_the_records_in_order(spool: Path) -> None:
    training_db.configure(CLOSED_PORT_URL)
    for index in range(3):
        safe.set_tags("run-1", {"i": index})
    before = (spool / "spool.jsonl").read_bytes()
    report = safe.replay(spool, db=TrainingDB(CLOSED_PORT_URL))
    assert (report.applied, report.failed, report.pending) == (0, 1, 2)
    assert report.error is not None and "DatabaseUnavailableError" in report.error
    assert not report.ok
    assert "stopped" in report.summary()
    assert (spool / "spool.jsonl").read_bytes() == before


def test_records_appended_during_a_replay_are_kept(db: TrainingDB, spool: Path) -> None:
    """The spool is rewritten from what is on disk when the replay ends, not when it began."""
    training_db.configure(CLOSED_PORT_URL)
    safe.insert_run("run-1", None, {})
    late = SpooledCall(
        "late", dt.datetime.now(UTC), "set_tags", [], {"run_id": "run-1", "tags": {"late": True}}
    )

    class AppendingDatabase(TrainingDB):
        """A real database that, like another process would, spools a call mid-replay."""

        def insert_run(self, *args: Any, **kwargs: Any) -> None:
            safe.Spool(spool).append(late.to_line())
            super().insert_run(*args, **kwargs)

    database = AppendingDatabase(db.url)
    report = safe.replay(spool, db=database)
    assert report.applied == 1
    assert [
        SpooledCall.from_line(line).id for line in (spool / "spool.jsonl").read_bytes().splitlines()
    ] == ["late"]
    assert safe.replay(spool, db=database).applied == 1
    assert db.get_tags("run-1") == {"late": True}
    database.dispose()


def _spool_from_another_process(spool_dir: str, process: int, calls: int) -> None:
    import os

    os.environ["TRAINING_DB_SPOOL_DIR"] = spool_dir
    os.environ["TRAINING_DB_SPOOL_REPLAY_INTERVAL"] = "0"
    training_db.configure(CLOSED_PORT_URL)
    for index in range(calls):
        result = safe.set_tags(f"run-{process}", {"index": index, "text": "x" * 2000})
        assert result.status == "spooled", result


def test_processes_share_the_spool_without_mangling_it(spool: Path) -> None:
    calls, processes = 40, 4
    workers = [
        SPAWN.Process(target=_spool_from_another_process, args=(str(spool), p, calls))
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * processes
    records = spooled(spool)  # every line parses
    assert len(records) == calls * processes
    for process in range(processes):
        mine = [
            r.kwargs["tags"]["index"] for r in records if r.kwargs["run_id"] == f"run-{process}"
        ]
        assert mine == list(range(calls))  # each process's calls in its order


DATETIMES = st.datetimes(
    timezones=st.sampled_from([None, UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))])
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(blacklist_categories=("Cs",)))
    | DATETIMES
)
KEYS = st.sampled_from(
    ["$datetime", "$spooled", "$float", "$str0", "$literal", "k", "🥭"]
) | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_spool_records_round_trip_any_value(value: Any) -> None:
    record = SpooledCall("id", dt.datetime.now(UTC), "set_tags", [value], {"tags": value})
    line = record.to_line()
    assert "\n" not in line
    back = SpooledCall.from_line(line.encode("utf-8"))
    assert same(back.args[0], value) and same(back.kwargs["tags"], value)
    assert same_sign(back.args[0], value)


def same_sign(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return math.copysign(1, left) == math.copysign(1, right) or math.isnan(left)
    if isinstance(left, dict):
        return all(same_sign(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return all(same_sign(a, b) for a, b in zip(left, right, strict=True))
    return True


# --- automatic replay and ordering -------------------------------------------------------------


def test_the_next_call_replays_the_spool_first_keeping_the_order(db_url: URL, spool: Path) -> None:
    training_db.configure(CLOSED_PORT_URL)
    safe.insert_run("run-1", None, {})
    safe.update_run_status("run-1", "running")
    assert len(spooled(spool)) == 2

    database = training_db.configure(db_url)
    result = safe.finish_run("run-1", "completed")
    assert result.status == "ok"
    run = database.get_run("run-1")
    assert run is not None
    assert run["status"] == "completed"  # the spooled "running" came first
    assert run["started_at"] < run["ended_at"]
    assert spooled(spool) == []


def test_auto_replay_waits_its_interval_and_keeps_the_order(
    db_url: URL, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINING_DB_SPOOL_REPLAY_INTERVAL", "3600")
    training_db.configure(CLOSED_PORT_URL)
    safe.insert_run("run-1", None, {})
    database = training_db.configure(db_url)
    # The database is back, but a call does not replay the spool before the interval is
    # over: it joins the spool instead of overtaking the records waiting there...
    result = safe.update_run_status("run-1", "running")
    assert result.status == "spooled"
    assert result.error is not None and "waiting in the spool" in result.error
    # ... and the worker replays both, in order, without another call or a manual replay.
    deadline = time.monotonic() + 60
    while spooled(spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spooled(spool) == []
    run = database.get_run("run-1")
    assert run is not None and run["status"] == "running"


def test_auto_replay_can_be_turned_off(db_url: URL, spool: Path, monkeypatch: Any) -> None:
    """Nothing is replayed automatically, and the calls made meanwhile still keep their order:
    they join the spool until a replay empties it, then go straight through again."""
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")
    training_db.configure(CLOSED_PORT_URL)
    safe.insert_run("run-1", None, {})
    safe.update_run_status("run-1", "running")
    database = training_db.configure(db_url)
    result = safe.finish_run("run-1", "completed")
    assert result.status == "spooled"
    assert result.error is not None and "waiting in the spool" in result.error
    assert database.get_run("run-1") is None
    assert [r.function for r in spooled(spool)] == ["insert_run", "update_run_status", "finish_run"]

    assert safe.replay().applied == 3
    run = database.get_run("run-1")
    assert run is not None and run["status"] == "completed"  # not overtaken by "running"
    assert safe.insert_run("run-2", None, {}).status == "ok"  # the spool is empty again
    assert spooled(spool) == []


# --- never blocking, never raising -------------------------------------------------------------


def test_a_hanging_call_returns_within_the_timeout_and_is_replayed(
    tmp_path: Path,
    migrated_templates: dict[str, URL],
    spool: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TRAINING_DB_SAFE_TIMEOUT", "1")
    monkeypatch.setenv("TRAINING_DB_BUSY_TIMEOUT", "60")  # the worker waits on the lock
    monkeypatch.setenv("TRAINING_DB_SPOOL_AUTO_REPLAY", "0")  # the replay below, not the worker's
    template = migrated_templates["sqlite"].database
    assert template is not None
    path = tmp_path / "locked.db"
    shutil.copyfile(template, path)
    database = training_db.configure(f"sqlite:///{path}")
    database.insert_run("run-1", None, {})
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    try:
        started = time.monotonic()
        first = safe.update_run_status("run-1", "running")
        first_returned = time.monotonic()
        second = safe.set_tags("run-1", {"queued": "behind the hung call"})
        second_returned = time.monotonic()
    finally:
        holder.rollback()
        holder.close()
    assert first_returned - started < 1 + 5  # the timeout, plus generous slack
    assert second_returned - first_returned < 5  # does not wait behind the hung call
    assert (first.status, second.status) == ("spooled", "spooled")
    assert first.error is not None and "no answer within 1 s" in first.error
    assert second.error is not None and "still hanging" in second.error
    assert len(caplog.records) == 2
    assert safe.drain(60)  # the hung call went through once the lock was released
    records = spooled(spool)
    assert [r.id for r in records] == [first.record_id, second.record_id]

    report = safe.replay()
    assert report.remaining == 0 and report.applied == 2
    run = database.get_run("run-1")
    assert run is not None and run["status"] == "running"
    assert run["started_at"] == records[0].kwargs["started_at"]
    assert database.get_tags("run-1") == {"queued": "behind the hung call"}


def test_keyboard_interrupt_is_not_swallowed(spool: Path) -> None:
    class Interrupting(dict[str, Any]):
        def items(self) -> Any:
            raise KeyboardInterrupt

    training_db.configure(CLOSED_PORT_URL)
    with pytest.raises(KeyboardInterrupt):
        safe.insert_run("run-1", None, Interrupting(a=1))


def test_an_unwritable_spool_loses_the_call_loudly(
    tmp_path: Path, spool: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRAINING_DB_SPOOL_DIR", str(blocker / "spool"))
    training_db.configure(CLOSED_PORT_URL)
    caplog.set_level(logging.WARNING, logger="training_db.safe")
    result = safe.insert_run("run-1", None, {})
    assert result.status == "lost"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "LOST" in caplog.records[0].getMessage()


def test_bad_settings_do_not_raise(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINING_DB_SAFE_TIMEOUT", "soon")
    monkeypatch.setenv("TRAINING_DB_HOST", "127.0.0.1")
    monkeypatch.setenv("TRAINING_DB_PORT", "not-a-port")
    monkeypatch.delenv("TRAINING_DB_URL", raising=False)
    training_db.api._default = None
    result = safe.insert_run("run-1", None, {})
    assert result.status == "spooled"
    assert result.error is not None and "TRAINING_DB_PORT" in result.error
    assert [r.function for r in spooled(spool)] == ["insert_run"]


def test_signatures_match_the_api() -> None:
    for name in safe.WRITE_FUNCTIONS:
        wrapper = inspect.signature(getattr(safe, name))
        method = inspect.signature(getattr(TrainingDB, name))
        expected = list(method.parameters.values())[1:]  # without self
        assert list(wrapper.parameters.values()) == expected, name
        assert getattr(training_db, name).__name__ == name


# --- no credentials anywhere -------------------------------------------------------------------


@pytest.fixture
def secret_urls(pg_server: Any) -> list[str]:
    """PostgreSQL URLs with a password that cannot connect: a closed port, and a database that
    does not exist on a real server."""
    urls = [f"postgresql://trainer:{PASSWORD}@127.0.0.1:1/trainingruns"]
    if pg_server is not None:
        real = pg_server.admin_url.set(password=PASSWORD, database="no_such_database_x")
        urls.append(real.render_as_string(hide_password=False))
    return urls


def test_the_password_never_leaks(
    secret_urls: list[str], spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for url in secret_urls:
        database = TrainingDB(url)
        texts += [repr(database), str(database.url), repr(database.url)]
        with pytest.raises(DatabaseUnavailableError) as raised:
            database.insert_run("run-1", None, {})
        texts.append("".join(traceback.format_exception(raised.value)))
        texts += [str(raised.value), repr(raised.value)]
        database.dispose()

        training_db.configure(url)
        result = safe.insert_run("run-1", None, {"learning_rate": 0.1})
        assert result.status == "spooled"
        texts += [repr(result), str(result.error)]
        report = safe.replay()
        texts += [report.summary(), repr(report)]
    texts.append(caplog.text)
    for path in spool.iterdir():
        texts.append(path.read_text(errors="replace"))
    assert (spool / "spool.jsonl").read_text().count("insert_run") == len(secret_urls)
    for text in texts:
        assert PASSWORD not in text
    spool_text = (spool / "spool.jsonl").read_text()
    assert "127.0.0.1" not in spool_text and "postgresql" not in spool_text


def test_the_password_from_the_environment_never_leaks(
    spool: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TRAINING_DB_URL", raising=False)
    monkeypatch.setenv("TRAINING_DB_HOST", "127.0.0.1")
    monkeypatch.setenv("TRAINING_DB_PORT", "1")
    monkeypatch.setenv("TRAINING_DB_USER", "trainer")
    monkeypatch.setenv("TRAINING_DB_PASSWORD", PASSWORD)
    training_db.api._default = None
    caplog.set_level(logging.DEBUG)
    result = safe.update_run_status("run-1", "running")
    assert result.status == "spooled"
    assert result.error is not None and PASSWORD not in result.error
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(training_db.get_db())
    assert PASSWORD not in (spool / "spool.jsonl").read_text()
