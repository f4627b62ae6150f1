"""Revisions 0002 and 0006 run their own frozen copies of the logic they need (issue 17):
what they do when they replay cannot change with the package's live code.

* 0002 backfills the v2 extracted columns by the rules as they were, not by
  ``training_db.schema.extraction`` (changing the live rules changes nothing here).
* 0006's downgrade decodes step bitmaps and byte planes with its own copies, and must read
  every row that later code can write: steps at both ends of 64 bits, deltas that wrap.
* No revision imports anything from the package but the building blocks that cannot change
  meaning under it (parsed with `ast`, at the top of a file or inside a function).
"""

from __future__ import annotations

import ast
import itertools
import math
import struct
import zlib
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import URL

from training_db import TrainingDB
from training_db.core.types import JSONDocument
from training_db.schema import migrations
from training_db.schema.extraction import EXTRACTED_COLUMNS, ExtractedColumn

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PACKAGE = "training_db"
VERSIONS = Path(__file__).resolve().parent.parent / "alembic" / "versions"

# What a revision may import from the package: building blocks that do not change meaning
# (the column types stored data is written in; the guards a downgrade starts with).
REVISION_IMPORTS: Mapping[str, frozenset[str]] = {
    "training_db.core.types": frozenset({"JSONDocument", "UTCDateTime", "Int64", "Float64"}),
    "training_db.schema.migrations": frozenset({"refuse_data_loss", "refuse_narrowing"}),
}

# --- 0002 ------------------------------------------------------------------------------------

TRICKY_CONFIG: dict[str, Any] = {
    "training": {
        "gradient_accumulation_steps": "8",  # integer text
        "optim": "adamw",  # a second key of optimizer
        "warmup_steps": 10.0,  # a whole float
        "weight_decay": math.nan,  # not finite: left out
        "max_grad_norm": True,  # a bool is no number
        "seed": 2**40,  # beyond 32 bits
        "lora_r": "9007199254740993",  # 2**53 + 1, exact only if parsed as an int
        "num_epochs": 3.5,  # not whole: the next key wins
        "epochs": 2,
        "lr_scheduler": True,  # a bool as text, lower case
        "max_steps": 10**30,  # beyond 64 bits: left out
        "num_generations": "1e3",
    },
    "model": {"base_model": "mango-7b", "temperature": "0.7"},  # another section
}
# What the rules frozen in 0002 make of it (the package's rules when 0007 was the head).
BACKFILLED = {
    "gradient_accumulation_steps": 8,
    "model_name": "mango-7b",
    "optimizer": "adamw",
    "lr_scheduler": "true",
    "warmup_steps": 10,
    "weight_decay": None,
    "max_grad_norm": None,
    "num_epochs": 2,
    "max_steps": None,
    "seed": 2**40,
    "lora_rank": 2**53 + 1,
    "num_generations": 1000,
    "temperature": 0.7,
}
BEYOND_32_BITS = ("seed", "lora_rank")


def write_v1_run(url: URL, run_id: str, config: dict[str, Any]) -> None:
    """A run as the v1 code wrote it (revision 0001), its config through the JSON codec."""
    runs_v1 = sa.table(
        "training_runs",
        sa.column("run_id"),
        sa.column("status"),
        sa.column("created_at", sa.DateTime()),
        sa.column("config_json", JSONDocument()),
    )
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(runs_v1).values(
                    run_id=run_id,
                    status="completed",
                    created_at=sa.func.current_timestamp(),
                    config_json=config,
                )
            )
    finally:
        engine.dispose()


def backfilled(url: URL, run_id: str) -> dict[str, Any]:
    database = TrainingDB(url)
    try:
        run = database.get_run(run_id)
    finally:
        database.dispose()
    assert run is not None
    return {name: run[name] for name in BACKFILLED}


def test_0002_backfills_by_its_frozen_rules(empty_url: URL) -> None:
    """The tricky values come out as the rules frozen in 0002 say, on both backends; on
    PostgreSQL an integer beyond the 32 bits of 0002's INTEGER column stays out of it (it
    used to fail the whole upgrade), and is still exact in config_json."""
    migrations.upgrade(empty_url, "0001")
    write_v1_run(empty_url, "old-run", TRICKY_CONFIG)
    migrations.upgrade(empty_url)
    expected = dict(BACKFILLED)
    if empty_url.get_backend_name() == "postgresql":
        expected.update(dict.fromkeys(BEYOND_32_BITS))
    values = backfilled(empty_url, "old-run")
    assert values == expected
    assert math.isclose(values["temperature"], 0.7)


def test_0002_does_not_follow_the_live_rules(
    empty_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing the package's extraction rules changes new runs, not how 0002 replays."""
    migrations.upgrade(empty_url, "0001")
    write_v1_run(empty_url, "old-run", {"seed": 3, "training": {"optim": "sgd"}})
    monkeypatch.setitem(EXTRACTED_COLUMNS, "seed", ExtractedColumn(("random_seed",), int))
    monkeypatch.setitem(EXTRACTED_COLUMNS, "optimizer", ExtractedColumn(("optimizer",), str))
    migrations.upgrade(empty_url)
    values = backfilled(empty_url, "old-run")
    assert (values["seed"], values["optimizer"]) == (3, "sgd")


# --- 0006 ------------------------------------------------------------------------------------


def history_rows(url: URL, run_id: str) -> dict[str, tuple[str, bytes, bytes | None]]:
    """{metric: (kind, step_data, value_data)} as stored."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT m.name, h.kind, h.step_data, h.value_data FROM run_history h "
                    "JOIN history_metrics m ON m.id = h.metric_id WHERE h.run_id = :run"
                ),
                {"run": run_id},
            )
            return {
                name: (kind, bytes(steps), None if values is None else bytes(values))
                for name, kind, steps, values in rows
            }
    finally:
        engine.dispose()


def steps_as_0005_reads_them(step_data: bytes) -> list[int]:
    """Revision 0005's reader: a range, or int64 deltas summed (it knows no bitmap)."""
    tag, body = step_data[:1], step_data[1:]
    if tag == b"R":
        first, stride, count = struct.unpack("<qqq", body)
        return [first + stride * index for index in range(count)]
    assert tag == b"Z", tag
    return list(itertools.accumulate(array("q", zlib.decompress(body))))


def test_0006_downgrade_reads_what_later_code_writes(empty_url: URL) -> None:
    """Rows written at head: steps near both ends of 64 bits as bitmaps (packed values), and
    two steps 2**64 - 2 apart, whose deltas only the live decoder's wrap-around reads. The
    downgrade turns the bitmaps into deltas 0005 reads, leaves the wrapped deltas byte for
    byte (it never decodes them), and back at head every value reads as before."""
    migrations.upgrade(empty_url)
    high = [INT64_MAX - 100 + offset for offset in range(101) if offset % 7]
    low = [INT64_MIN + offset for offset in range(100) if offset % 5]
    series = {
        "high": {step: 0.25 + step % 13 / 1024 for step in high},
        "low": {step: step % 11 for step in low},
        "far": {-1: 1.5, INT64_MAX: 2.5},
    }
    database = TrainingDB(empty_url)
    database.insert_run("r", None, {})
    for metric, points in series.items():
        database.log_history("r", {"_step": list(points), metric: list(points.values())})
    before = database.get_history("r")
    database.dispose()
    at_head = history_rows(empty_url, "r")
    assert {metric: (kind, steps[:1]) for metric, (kind, steps, _) in at_head.items()} == {
        "high": ("float_bp", b"B"),
        "low": ("int_bp", b"B"),
        "far": ("float", b"Z"),
    }

    migrations.downgrade(empty_url, "0005")
    at_0005 = history_rows(empty_url, "r")
    assert at_0005["far"] == at_head["far"]
    for metric, plain_kind, typecode in (("high", "float", "d"), ("low", "int", "q")):
        kind, step_data, value_data = at_0005[metric]
        assert kind == plain_kind
        assert steps_as_0005_reads_them(step_data) == sorted(series[metric])
        assert value_data is not None
        assert array(typecode, value_data).tolist() == list(series[metric].values())

    migrations.upgrade(empty_url)
    database = TrainingDB(empty_url)
    try:
        assert database.get_history("r") == before
    finally:
        database.dispose()


# --- the revisions import only what cannot change under them ---------------------------------


def revision_imports(path: Path) -> Iterator[tuple[str, str, int]]:
    """(module, name, line) of every import of the package in a revision file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, "*", node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:
                yield node.module or "", alias.name, node.lineno


def forbidden_revision_imports(path: Path) -> list[str]:
    return [
        f"{path.name}:{line}: {module} import {name}"
        for module, name, line in revision_imports(path)
        if name not in REVISION_IMPORTS.get(module, frozenset())
    ]


REVISION_FILES = sorted(VERSIONS.glob("*.py"))


def test_there_are_revisions_to_check() -> None:
    assert len(REVISION_FILES) >= 7


@pytest.mark.parametrize("path", REVISION_FILES, ids=lambda path: path.name)
def test_a_revision_imports_only_stable_building_blocks(path: Path) -> None:
    """A revision copies the logic it runs: importing the package's live code would let a
    later change to that code change how an old revision replays."""
    assert forbidden_revision_imports(path) == []


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("from training_db.store.history import decode_steps", "decode_steps"),
        ("import training_db.schema.extraction", "*"),
        ("from training_db.schema.migrations import upgrade", "upgrade"),
        ("from training_db.core.jsoncodec import decode_document", "decode_document"),
    ],
)
def test_a_live_import_in_a_revision_is_refused(
    tmp_path: Path, statement: str, refused: str
) -> None:
    """Top-level or inside a function, the allow-list catches it."""
    revision = tmp_path / "0099_live.py"
    revision.write_text(
        "from training_db.core.types import JSONDocument\n"
        f"def upgrade() -> None:\n    {statement}\n",
        encoding="utf-8",
    )
    (found,) = forbidden_revision_imports(revision)
    assert found.startswith("0099_live.py:3: training_db.")
    assert found.endswith(f" import {refused}")
