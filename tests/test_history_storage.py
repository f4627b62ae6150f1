"""How history is stored: packed byte planes, step bitmaps, the key-metrics objective scores,
and revision 0006, which allows the first two and can take them back out."""

from __future__ import annotations

import itertools
import json
import math
import random
import struct
import zlib
from array import array
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import URL

from training_db import TrainingDB
from training_db.schema import migrations
from training_db.store.history import (
    KeyMetricMapping,
    decode_series,
    decode_steps,
    encode_series,
    encode_steps,
    pack_planes,
    unpack_planes,
)

NAN_PAYLOADS = (
    struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0],  # quiet NaN, payload 1
    struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0],  # negative NaN
)


def bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", value) for value in values]


def maybe_bits(values: list[float | None]) -> list[bytes | None]:
    """Bits of each value; None (a step not logged) stays None."""
    return [None if value is None else struct.pack("<d", value) for value in values]


def noisy_series(seed: int, steps: int, missing: float = 0.1) -> dict[int, float]:
    """A decaying loss with noise in every mantissa bit, some steps not logged."""
    rng = random.Random(seed)
    return {
        step: 0.6 * (1 + math.exp(-step / 25)) + 0.03 * (rng.random() - 0.5)
        for step in range(steps)
        if rng.random() >= missing
    }


# --- the codecs, without a database ----------------------------------------------------------


@given(
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=0, max_size=300),
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
)
def test_packed_planes_give_back_every_byte(noise: list[int], highs: list[int]) -> None:
    """Numbers whose top bytes repeat (so that packing happens) and arbitrary ones alike."""
    numbers = [
        (highs[index % len(highs)] << 56) | (value >> 8) for index, value in enumerate(noise)
    ]
    for data in (struct.pack(f"<{len(noise)}Q", *numbers), struct.pack(f"<{len(noise)}Q", *noise)):
        packed = pack_planes(data)
        if packed is not None:
            assert len(packed) < len(data)
            assert unpack_planes(packed) == data


def test_a_noisy_float_series_is_packed_and_keeps_every_bit() -> None:
    points = noisy_series(1, 400)
    special = [math.nan, *NAN_PAYLOADS, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    for offset, value in enumerate(special):
        points[1_000 + offset] = value
    encoded = encode_series(points)
    assert encoded.kind == "float_bp"
    assert encoded.value_data is not None and len(encoded.value_data) < 8 * len(points) * 0.9
    decoded = decode_series(encoded.kind, encoded.step_data, encoded.value_data, None)
    assert list(decoded) == sorted(points)
    assert bits(list(decoded.values())) == bits([points[step] for step in sorted(points)])


def test_float32_exact_values_take_about_half() -> None:
    """What a float32 tensor's .item() gives: the low mantissa bytes are all zero."""
    rng = random.Random(2)
    values = array("f", [rng.uniform(0.1, 2.0) for _ in range(1_000)]).tolist()
    encoded = encode_series(dict(enumerate(values)))
    assert encoded.kind == "float_bp"
    assert encoded.value_data is not None and len(encoded.value_data) < 8 * 1_000 * 0.6
    decoded = decode_series(encoded.kind, encoded.step_data, encoded.value_data, None)
    assert list(decoded.values()) == values


def test_int_series_are_packed_and_stay_ints() -> None:
    points = {step: step * 3 + (step % 7) for step in range(500)}
    points[999] = 2**63 - 1
    encoded = encode_series(points)
    assert encoded.kind == "int_bp"
    decoded = decode_series(encoded.kind, encoded.step_data, encoded.value_data, None)
    assert decoded == points
    assert all(type(value) is int for value in decoded.values())


def test_short_or_incompressible_series_stay_plain() -> None:
    assert encode_series({0: 0.5, 1: 0.25, 2: 0.125}).kind == "float"  # under 16 points
    rng = random.Random(3)
    noise = {step: struct.unpack("<d", rng.randbytes(8))[0] for step in range(200)}
    noise = {step: value for step, value in noise.items() if not math.isnan(value)}
    assert encode_series(noise).kind == "float"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x09abc", b"\x02" + zlib.compress(b"x" * 10)[2:5], b"\x01\x03\x00"],
)
def test_corrupt_packed_values_raise(data: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt history values"):
        unpack_planes(data)


def test_a_packed_kind_without_values_is_corrupt() -> None:
    with pytest.raises(ValueError, match="corrupt history row"):
        decode_series("float_bp", encode_steps([1, 2]), None, None)
    with pytest.raises(ValueError, match="corrupt history row"):
        decode_series("complex", encode_steps([1, 2]), b"", None)


@given(st.lists(st.booleans(), min_size=2, max_size=2_000), st.integers(-(2**40), 2**40))
def test_step_bitmaps_round_trip(logged: list[bool], first: int) -> None:
    steps = [first + offset for offset, flag in enumerate(logged) if flag]
    assert decode_steps(encode_steps(steps)) == steps


def test_steps_with_gaps_are_a_bitmap_and_sparse_steps_are_deltas() -> None:
    with_gaps = sorted(noisy_series(4, 100))
    encoded = encode_steps(with_gaps)
    assert encoded[:1] == b"B" and len(encoded) <= 1 + 8 + 13
    assert decode_steps(encoded) == with_gaps
    sparse = [0, 7, 1_000_000, 5_000_000_000]
    assert encode_steps(sparse)[:1] == b"Z"
    assert decode_steps(encode_steps(sparse)) == sparse


def test_a_truncated_step_bitmap_raises() -> None:
    with pytest.raises(ValueError, match="corrupt history steps"):
        decode_steps(b"B\x01\x02")


# --- through the database, on both backends ----------------------------------------------------


def stored_encodings(url: URL, run_id: str) -> dict[str, tuple[str, bytes]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT m.name, h.kind, h.step_data FROM run_history h "
                    "JOIN history_metrics m ON m.id = h.metric_id WHERE h.run_id = :run"
                ),
                {"run": run_id},
            )
            return {name: (kind, bytes(step_data)[:1]) for name, kind, step_data in rows}
    finally:
        engine.dispose()


def test_packed_history_round_trips_bit_for_bit(db: TrainingDB, db_url: URL) -> None:
    db.insert_run("packed", None, {})
    loss = noisy_series(5, 300)
    loss[150] = NAN_PAYLOADS[0]  # a logged NaN, payload and all
    loss[151] = -math.inf
    db.log_history(
        "packed",
        [
            {"_step": step, "train/loss": value, "tokens": step * 512}
            for step, value in sorted(loss.items())
        ],
    )
    assert stored_encodings(db_url, "packed") == {
        "train/loss": ("float_bp", b"B"),
        "tokens": ("int_bp", b"B"),
    }
    columns = db.get_history("packed")
    assert columns["_step"] == sorted(loss)
    assert bits(columns["train/loss"]) == bits([loss[step] for step in sorted(loss)])
    assert columns["tokens"] == [step * 512 for step in sorted(loss)]


def key_metrics(url: URL, run_id: str) -> list[tuple[Any, ...]]:
    """``(step, loss, COMT score, objective_scores_json)`` of every step, the score read with
    each backend's own JSON SQL."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "postgresql":
        score = "CAST(objective_scores_json ->> 'COMT_activity' AS DOUBLE PRECISION)"
    else:
        score = "json_extract(objective_scores_json, '$.COMT_activity')"
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    f"SELECT step, loss, {score}, objective_scores_json "
                    "FROM run_history_key_metrics WHERE run_id = :run ORDER BY step"
                ),
                {"run": run_id},
            )
            return [
                (*row[:3], json.loads(row[3]) if isinstance(row[3], str) else row[3])
                for row in rows
            ]
    finally:
        engine.dispose()


def objective_rows(steps: tuple[int, ...] = (0, 10)) -> list[dict[str, Any]]:
    return [
        {
            "_step": step,
            "train/loss": 1.0 / (step + 1),
            "objectives/COMT_activity_maximize/raw_mean": 0.5 + step / 100,
            "objectives/COMT_activity_maximize/raw_std": 0.1,
            "objectives/SA_score_minimize/raw_mean": 3.0 - step / 10,
            "objectives/QED/raw_mean": 0.25,
        }
        for step in steps
    ]


def test_key_metrics_hold_each_objectives_score_by_name(db: TrainingDB, db_url: URL) -> None:
    db.insert_run("scored", None, {})
    db.log_history("scored", objective_rows())
    assert key_metrics(db_url, "scored") == [
        (0, 1.0, 0.5, {"COMT_activity": 0.5, "SA_score": 3.0, "QED": 0.25}),
        (10, 1 / 11, 0.6, {"COMT_activity": 0.6, "SA_score": 2.0, "QED": 0.25}),
    ]
    # every metric of every objective is still in the full history
    assert db.get_history("scored", keys=["objectives/COMT_activity_maximize/raw_std"]) == {
        "_step": [0, 10],
        "objectives/COMT_activity_maximize/raw_std": [0.1, 0.1],
    }


def test_a_step_logged_in_parts_keeps_every_score(db: TrainingDB, db_url: URL) -> None:
    """W&B may log the loss and each objective of a step in separate calls: the step's row
    ends up with all of them, whatever the order."""
    db.insert_run("parts", None, {})
    (row,) = objective_rows((5,))
    for key in sorted(row, reverse=True):
        if key != "_step":
            db.log_history("parts", [{"_step": 5, key: row[key]}])
    db.log_history("parts", [{"_step": 5, "objectives/QED/raw_mean": 0.75}])  # logged again
    assert key_metrics(db_url, "parts") == [
        (5, 1 / 6, 0.55, {"COMT_activity": 0.55, "SA_score": 2.5, "QED": 0.75}),
    ]


def test_the_score_metric_can_be_chosen_or_left_out(db_url: URL) -> None:
    normalized = TrainingDB(db_url, key_metrics=KeyMetricMapping(score_metric="raw_std"))
    normalized.insert_run("std", None, {})
    normalized.log_history("std", objective_rows((0,)))
    normalized.dispose()
    assert key_metrics(db_url, "std") == [(0, 1.0, 0.1, {"COMT_activity": 0.1})]

    unscored = TrainingDB(db_url, key_metrics=KeyMetricMapping(score_metric=None))
    unscored.insert_run("none", None, {})
    unscored.log_history("none", objective_rows((0,)))
    unscored.dispose()
    assert key_metrics(db_url, "none") == [(0, 1.0, None, None)]


def test_score_keys_name_the_objectives() -> None:
    mapping = KeyMetricMapping()
    keys = [
        "objectives/COMT_activity_maximize/raw_mean",
        "objectives/SA_score_minimize/raw_mean",
        "objectives/QED/raw_mean",
        "objectives/QED/raw_std",  # not the score metric
        "objectives/raw_mean",  # no alias
        "objectives/_maximize/raw_mean",  # no name left
        "objectivesX/a/raw_mean",
        "train/loss",
    ]
    assert mapping.score_keys(keys) == {
        "objectives/COMT_activity_maximize/raw_mean": "COMT_activity",
        "objectives/QED/raw_mean": "QED",
        "objectives/SA_score_minimize/raw_mean": "SA_score",
    }


# --- revision 0006 ---------------------------------------------------------------------------


def test_revision_0006_downgrade_rewrites_packed_rows_losslessly(empty_url: URL) -> None:
    migrations.upgrade(empty_url)
    database = TrainingDB(empty_url)
    database.insert_run("r", None, {})
    loss = noisy_series(6, 200)
    history = {"_step": list(range(200))}
    history["train/loss"] = [loss.get(step, math.nan) for step in range(200)]
    history["epoch"] = [step // 20 for step in range(200)]
    history["short"] = [0.5 if step < 3 else math.nan for step in range(200)]
    database.log_history("r", history)
    before = database.get_history("r")
    database.dispose()
    assert {kind for kind, _ in stored_encodings(empty_url, "r").values()} == {
        "float_bp",
        "int_bp",
        "float",
    }

    migrations.downgrade(empty_url, "0005")  # nothing is lost: no data-loss flag needed
    encodings = stored_encodings(empty_url, "r")
    assert encodings == {
        "train/loss": ("float", b"Z"),
        "epoch": ("int", b"R"),
        "short": ("float", b"R"),
    }
    engine = sa.create_engine(empty_url)
    try:
        with engine.connect() as connection:
            # what revision 0005's reader does: plain little-endian arrays, int64 deltas
            _, step_data, value_data = connection.execute(
                sa.text(
                    "SELECT h.kind, h.step_data, h.value_data FROM run_history h JOIN "
                    "history_metrics m ON m.id = h.metric_id WHERE m.name = 'train/loss'"
                )
            ).one()
            steps = list(itertools.accumulate(array("q", zlib.decompress(bytes(step_data)[1:]))))
            assert steps == sorted(loss)
            assert bits(array("d", bytes(value_data)).tolist()) == bits([loss[s] for s in steps])
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.text("UPDATE run_history SET kind = 'float_bp'"))
    finally:
        engine.dispose()

    migrations.upgrade(empty_url)
    database = TrainingDB(empty_url)
    after = database.get_history("r")
    database.dispose()
    assert after.keys() == before.keys()
    assert after["_step"] == before["_step"]
    assert after["epoch"] == before["epoch"] and after["short"] == before["short"]
    assert maybe_bits(after["train/loss"]) == maybe_bits(before["train/loss"])
