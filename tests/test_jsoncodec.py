"""Lossless JSON documents: property-based round trips through the codec and the database."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training_db import TrainingDB
from training_db.core.jsoncodec import (
    NotJSONSerializableError,
    decode_document,
    dumps,
    encode_document,
    loads_document,
    to_jsonable,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(
                alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and a float stays a float."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(json_values)
def test_codec_round_trip(value: Any) -> None:
    stored = json.loads(json.dumps(encode_document(value), allow_nan=False))
    assert same(decode_document(stored), value)


@given(json_values)
def test_encoded_documents_hold_no_nan_and_no_nul(value: Any) -> None:
    text = json.dumps(encode_document(value), allow_nan=False)  # raises on NaN/Inf
    assert "\\u0000" not in text


def test_negative_zero_keeps_its_sign() -> None:
    encoded = encode_document({"z": -0.0, "p": 0.0})
    assert encoded == {"z": {"$float": "-0.0"}, "p": 0.0}
    assert math.copysign(1.0, decode_document(encoded)["z"]) < 0


def test_dumps_writes_nan_tokens_python_reads_back() -> None:
    text = dumps({"b": float("nan"), "a": float("-inf")})
    assert text == '{"a": -Infinity, "b": NaN}'


# --- loads_document: decode_document(json.loads(text)), with shortcuts -----------------------

# Objects that may use the reserved keys in any way, well-formed tags or not.
tag_like_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["$float", "$str0", "$literal", "$", "a"]),
                st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=3),
            ),
            children,
            max_size=2,
        ),
    ),
    max_leaves=10,
)


def outcome(read: Any) -> tuple[str, Any]:
    try:
        return "value", read()
    except (ValueError, TypeError) as exc:
        return "error", type(exc)


@given(tag_like_values, st.booleans())
def test_loads_document_is_decode_document_of_json_loads(value: Any, ensure_ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    kind, found = outcome(lambda: loads_document(text))
    expected_kind, expected = outcome(lambda: decode_document(json.loads(text)))
    assert kind == expected_kind
    assert same(found, expected) if kind == "value" else found is expected


@given(json_values, st.booleans())
def test_loads_document_reads_stored_documents(value: Any, ensure_ascii: bool) -> None:
    # ensure_ascii: SQLite's stored text; without: PostgreSQL's JSONB text.
    text = json.dumps(encode_document(value), ensure_ascii=ensure_ascii, allow_nan=False)
    assert same(loads_document(text), value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": {"$float": "NaN"}, "b": [{"$float": "-0.0"}]}', {"a": math.nan, "b": [-0.0]}),
        ('{"\\u0024float": "Infinity"}', math.inf),  # a tag's key spelled with an escape
        ('{"$\\u0066loat": "1e400"}', math.inf),
        ('{"$literal": {"$float": "NaN"}}', {"$float": "NaN"}),
        ('{"$str0": ["a", "b"], "x": 1}', {"$str0": ["a", "b"], "x": 1}),  # two keys: no tag
        ('{"s": {"$str0": ["a", ""]}}', {"s": "a\x00"}),
        ('{"$float": {"$float": "1"}}', {"$float": 1.0}),  # only a string is a float tag
        ('{"price": "$5", "n": 1}', {"price": "$5", "n": 1}),
        ("[1, 2.5, null]", [1, 2.5, None]),
    ],
)
def test_loads_document_examples(text: str, expected: Any) -> None:
    assert same(loads_document(text), expected)
    assert same(decode_document(json.loads(text)), expected)


def test_to_jsonable_names_the_path() -> None:
    with pytest.raises(NotJSONSerializableError, match=r"\$\.a\[1\]\.b"):
        to_jsonable({"a": [1, {"b": object()}]})


def test_lone_surrogates_are_rejected_clearly() -> None:
    with pytest.raises(NotJSONSerializableError, match="not valid Unicode"):
        encode_document({"key": "bad \ud800 text"})
    with pytest.raises(ValueError, match="not valid Unicode"):
        encode_document({"\udfff": 1})


def test_to_jsonable_rejects_odd_keys() -> None:
    with pytest.raises(NotJSONSerializableError, match="object key"):
        to_jsonable({(1, 2): "tuple key"})


def test_non_string_keys_become_json_keys() -> None:
    assert to_jsonable({1: "a", None: "b", 2.5: "c"}) == {"1": "a", "null": "b", "2.5": "c"}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    document=st.dictionaries(
        st.text(
            alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            max_size=10,
        ),
        json_values,
        max_size=6,
    )
)
def test_database_round_trip(db: TrainingDB, document: dict[str, Any]) -> None:
    db.insert_run("prop", None, document)
    try:
        run = db.get_run("prop")
        assert run is not None
        assert same(run["config"], document)
        assert same(json.loads(run["config_json"]), document)
    finally:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM training_runs")
