"""JSON paths in query_runs filters: one grammar, the same answers on SQLite and PostgreSQL.

``config.<path>``: segments separated by dots; a bare ASCII integer is an array index
(negative from the end), any other bare segment or a double-quoted one is an object key.
The explicit cases run on both backends through the ``db`` fixture; the property test
inserts random documents into one database of each backend and checks both against a small
reference evaluator written here.
"""

from __future__ import annotations

import operator
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import URL

from tests.conftest import PostgresServer, _require_postgres
from training_db import TrainingDB
from training_db.core import jsoncodec, portable
from training_db.core.errors import InvalidArgumentError, UnknownNameError
from training_db.core.settings import sqlite_url
from training_db.store.filters import parse_json_path

# Keys that mean something in SQL, in LIKE patterns or in a JSON path; each is a plain key.
HOSTILE_KEYS = (
    "'",
    ";",
    "--",
    "%",
    "_",
    "\\",
    "$",
    "[",
    "]",
    "*",
    "#-1",
    "[0]",
    "$.arr",
    "\\u0041",
    "a' OR '1'='1",
    "x); DROP TABLE training_runs; --",
)


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return sorted(run["run_id"] for run in runs)


@pytest.fixture
def documents(db: TrainingDB) -> TrainingDB:
    """Runs whose configs hold the shapes the grammar must tell apart."""
    db.insert_run("mixed", None, {"arr": [1, 2, 3], "layers": {"0": 5, "²": 7}})
    db.insert_run(
        "dotted",
        None,
        {
            "a.b": {"c": 1},
            "a": {"b": {"c": 2}},
            "0": {"1": "zero-one"},
            "list": [{"x": 1}, {"x": 2}],
            "matrix": [[1, 2], [3, 4]],
            "-1": "minus one",
        },
    )
    db.insert_run("unicode", None, {"é": "accent", "日本": {"語": 3}, "²": 8, "A": "plain A"})
    db.insert_run(
        "hostile", None, {key: index for index, key in enumerate(HOSTILE_KEYS)} | {"arr": [9]}
    )
    db.update_run_status(
        "dotted", "completed", final_metrics_json={"0": 1.5, "a.b": 2.5, "²": 3.5, "x y": 4.5}
    )
    return db


# An empty answer whose path exists in no stored document is `UnknownNameError` instead
# (a misspelt key, usually; see "Names that match nothing" in the querying guide).
UNKNOWN = "UnknownNameError"
PATH_CASES: list[tuple[dict[str, Any], list[str] | str]] = [
    # the three answers that differed between the backends
    ({"config.layers.0": 5}, UNKNOWN),  # an index never matches an object key
    ({"config.layers.0": None}, ["dotted", "hostile", "mixed", "unicode"]),
    ({"config.arr.-1": 3}, ["mixed"]),
    ({"config.layers.²": 7}, ["mixed"]),
    # numeric object keys through quotes; a quoted key never indexes an array
    ({'config.layers."0"': 5}, ["mixed"]),
    ({'config."0"."1"': "zero-one"}, ["dotted"]),
    ({'config."-1"': "minus one"}, ["dotted"]),
    ({"config.-1": {"ne": None}}, UNKNOWN),  # an index into an object: nothing there
    ({'config.arr."0"': 1}, UNKNOWN),
    ({"config.arr.0": 1}, ["mixed"]),
    # dots inside a quoted key
    ({'config."a.b".c': 1}, ["dotted"]),
    ({"config.a.b.c": 2}, ["dotted"]),
    ({'config."a.b".c': 2}, []),
    # indices, negative ones, out of range
    ({"config.arr.2": 3}, ["mixed"]),
    ({"config.arr.-3": 1}, ["mixed"]),
    ({"config.arr.3": {"ne": None}}, UNKNOWN),
    ({"config.arr.-4": {"ne": None}}, UNKNOWN),
    ({"config.arr.-4": None}, ["dotted", "hostile", "mixed", "unicode"]),
    ({"config.arr.0.0": 1}, UNKNOWN),  # an index into a number: nothing there
    ({"config.arr.-1.-1": {"ne": None}}, UNKNOWN),
    ({"config.arr.007": 9}, UNKNOWN),  # leading zeros: still index 7
    ({"config.arr.-0": {"in": [1, 9]}}, ["hostile", "mixed"]),
    ({"config.list.-1.x": 2}, ["dotted"]),
    ({"config.list.0.x": {"lt": 2}}, ["dotted"]),
    ({"config.matrix.1.-2": 3}, ["dotted"]),
    ({"config.matrix.-1.-1": {"gte": 4}}, ["dotted"]),
    # non-ASCII keys, bare and quoted
    ({"config.é": "accent"}, ["unicode"]),
    ({'config."é"': "accent"}, ["unicode"]),
    ({"config.日本.語": 3}, ["unicode"]),
    ({"config.²": {"gt": 7}}, ["unicode"]),
    ({"config.A": "plain A"}, ["unicode"]),
    # summary.<key>: one top-level key, verbatim (digits, dots and all)
    ({"summary.0": 1.5}, ["dotted"]),
    ({"summary.a.b": 2.5}, ["dotted"]),
    ({"summary.²": {"gt": 3}}, ["dotted"]),
    ({"summary.x y": 4.5}, ["dotted"]),
]


def answer(database: TrainingDB, filters: dict[str, Any]) -> list[str] | str:
    """The run ids found, or ``UNKNOWN`` for the error of a path that no run has."""
    try:
        return ids(database.query_runs(filters))
    except UnknownNameError:
        return UNKNOWN


def test_paths_answer_the_same_on_both_backends(documents: TrainingDB) -> None:
    """Each case on one database (creating one per case would dominate the run time)."""
    wrong = {
        repr(filters): (found, expected)
        for filters, expected in PATH_CASES
        if (found := answer(documents, filters)) != expected
    }
    assert wrong == {}


def quoted_if_needed(key: str) -> str:
    """A key as a path segment: bare when the grammar allows it, else double-quoted."""
    if key == "" or "." in key or re.fullmatch(r"-?[0-9]+", key) or key.startswith('"'):
        return f'"{key}"'
    return key


def test_hostile_keys_are_plain_keys(documents: TrainingDB) -> None:
    answers = {}
    for value, key in enumerate(HOSTILE_KEYS):
        answers[key] = (
            ids(documents.query_runs({f"config.{quoted_if_needed(key)}": value})),
            ids(documents.query_runs({f'config."{key}"': value})),
            ids(documents.query_runs({f"config.{quoted_if_needed(key)}": value + 100})),
        )
    assert answers == {key: (["hostile"], ["hostile"], []) for key in HOSTILE_KEYS}
    assert len(documents.query_runs()) == 4  # and the table is still there


BAD_PATHS: list[tuple[str, str]] = [
    ("config.a..b", "empty path segment"),
    ("config.a.", "empty path segment"),
    ("config..a", "empty path segment"),
    ('config."a.b', "unbalanced double quote"),
    ('config."', "unbalanced double quote"),
    ('config.a"b', "JSON keys must not contain a double quote"),
    ('config."a"b', "JSON keys must not contain a double quote"),
    ('config."a"."', "unbalanced double quote"),
    ('config."a".', "empty path segment"),
    ('summary.a"b', "JSON keys must not contain a double quote"),
    ("config.arr.2147483648", "array index 2147483648 is out of range"),
    ("config.arr.-99999999999999999999999", "out of range"),
    ("config.a\x00b", "NUL"),
    ("summary.a\x00b", "NUL"),
    ("tag.a\x00b", "NUL"),
    ("config.\ud800", "lone surrogate"),
]


def test_bad_paths_are_rejected_naming_the_filter(documents: TrainingDB) -> None:
    messages = {}
    for key, _ in BAD_PATHS:
        with pytest.raises(InvalidArgumentError) as raised:
            documents.query_runs({key: 1})
        messages[key] = str(raised.value)
    for key, problem in BAD_PATHS:
        assert problem in messages[key]
        assert repr(key) in messages[key]


def test_grammar_errors_describe_the_grammar() -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape("segments separated by '.'")):
        parse_json_path("config.a..b", "a..b")


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("training.batch_size", ["training", "batch_size"]),
        ("objectives.0.name", ["objectives", 0, "name"]),
        ("arr.-1", ["arr", -1]),
        ('"a.b".c', ["a.b", "c"]),
        ('layers."0"', ["layers", "0"]),
        ('""', [""]),
        ("layers.²", ["layers", "²"]),
        ("+1. 1.1e3.0x1", ["+1", " 1", "1e3", "0x1"]),  # not ASCII integers: keys
    ],
)
def test_parse_json_path(path: str, steps: list[str | int]) -> None:
    assert parse_json_path(f"config.{path}", path) == steps


@pytest.mark.parametrize(
    ("steps", "sqlite_path", "postgresql_path"),
    [
        (
            ["training", "batch_size"],
            '$."training"."batch_size"',
            'strict $."training"."batch_size"',
        ),
        (["arr", 0, -1, -3], '$."arr"[0][#-1][#-3]', 'strict $."arr"[0][last][last - 2]'),
        (["0", "a.b", ""], '$."0"."a.b".""', 'strict $."0"."a.b".""'),
        # SQLite < 3.45 matches a key by its stored (json.dumps, ASCII) spelling
        (["²", "a\\b", "x\ny"], '$."\\u00b2"."a\\\\b"."x\\ny"', 'strict $."²"."a\\\\b"."x\\ny"'),
    ],
)
def test_compiled_paths(steps: list[str | int], sqlite_path: str, postgresql_path: str) -> None:
    assert portable.sqlite_json_path(steps) == sqlite_path
    assert portable.postgresql_json_path(steps) == postgresql_path


@pytest.mark.parametrize("compile_path", [portable.sqlite_json_path, portable.postgresql_json_path])
def test_compiled_paths_refuse_a_double_quote(compile_path: Callable[[Any], str]) -> None:
    with pytest.raises(InvalidArgumentError, match="must not contain a double quote"):
        compile_path(["a", 'b") OR 1=1 --'])


# --- property: random documents and paths, both backends, a reference evaluator ------------

MISSING: Any = object()
INDEX_TEXT = re.compile(r"-?[0-9]+")
SEGMENT = re.compile(r'"([^"]*)"|([^."]+)')
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def reference_steps(path: str) -> list[str | int]:
    """The grammar, read independently of the package: quoted keys, bare indices, bare keys."""
    steps: list[str | int] = []
    position = 0
    while True:
        match = SEGMENT.match(path, position)
        assert match is not None, path
        quoted, bare = match.groups()
        if quoted is not None:
            steps.append(quoted)
        else:
            steps.append(int(bare) if INDEX_TEXT.fullmatch(bare) else bare)
        position = match.end()
        if position == len(path):
            return steps
        assert path[position] == ".", path
        position += 1


def reference_lookup(document: Any, steps: list[str | int]) -> Any:
    """The value at ``steps``: a key only in an object, an index only in an array."""
    value = document
    for step in steps:
        if isinstance(step, int):
            in_array = isinstance(value, list) and -len(value) <= step < len(value)
        else:
            in_array = False
        in_object = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_array or in_object):
            return MISSING
        value = value[step]
    return value


def reference_number(operand: Any) -> float | None:
    if isinstance(operand, bool):
        return None
    if isinstance(operand, (int, float)):
        return float(operand)
    if isinstance(operand, str):
        try:
            return float(operand.strip())
        except ValueError:
            return None
    return None


def reference_compare(value: Any, op: str, operand: Any) -> bool:
    """The documented comparison: the operand's type decides which stored values can match."""
    if operand is None:
        absent = value is MISSING or value is None
        return absent if op == "eq" else not absent
    if isinstance(operand, bool):
        return isinstance(value, bool) and COMPARISONS[op](value, operand)
    number = reference_number(operand)
    if number is not None:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return is_number and COMPARISONS[op](float(value), number)
    return isinstance(value, str) and COMPARISONS[op](value, operand)


def reference_matches(stored: Any, steps: list[str | int], condition: Any) -> bool:
    value = reference_lookup(stored, steps)
    if not isinstance(condition, dict):
        return reference_compare(value, "eq", condition)
    return all(
        any(reference_compare(value, "eq", item) for item in operand)
        if op == "in"
        else reference_compare(value, op, operand)
        for op, operand in condition.items()
    )


KEY_ALPHABET = "ab01-.²é日 '\\$[*"
# Numeric keys ("0", "-1") are the ones the grammar must keep apart from indices.
keys = st.text(alphabet=KEY_ALPHABET, max_size=3) | st.sampled_from(
    ["0", "1", "-1", "00", "a.b", "", "²", "日本"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="ab1.é ", max_size=3),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=10,
)
configs = st.none() | st.dictionaries(keys, values, max_size=4)


@st.composite
def real_steps(draw: st.DrawFn, documents: list[Any]) -> list[str | int]:
    """A path that exists in one of the documents (a few steps deep), or a random one."""
    document = draw(st.sampled_from(documents))
    steps: list[str | int] = []
    value = document
    while len(steps) < 4:
        options: list[str | int] = []
        if isinstance(value, dict):
            options = sorted(value)
        elif isinstance(value, list):
            options = [*range(len(value)), *range(-len(value), 0)]
        if not options or (steps and draw(st.integers(0, 3)) == 0):
            break
        step = draw(st.sampled_from(options))
        steps.append(step)
        value = value[step]
    if not steps or draw(st.integers(0, 4)) == 0:
        steps.append(draw(st.one_of(keys, st.integers(-4, 4))))
    return steps


@st.composite
def path_text(draw: st.DrawFn, steps: list[str | int]) -> str:
    """``steps`` written in the grammar, quoting keys where needed and sometimes by choice."""
    segments = []
    for step in steps:
        if isinstance(step, int):
            segments.append(str(step))
        elif quoted_if_needed(step) != step or draw(st.booleans()):
            segments.append(f'"{step}"')
        else:
            segments.append(step)
    return ".".join(segments)


@st.composite
def conditions(draw: st.DrawFn, found: list[Any]) -> Any:
    """A filter value: a plain operand, one operator, or ``in``; operands often real values."""
    real = [
        value for value in found if value is not MISSING and not isinstance(value, (dict, list))
    ]
    operand_strategy = st.sampled_from(real) | scalars if real else scalars

    def operand() -> Any:
        value = draw(operand_strategy)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and draw(st.booleans()):
            return repr(value)  # numeric text, as from a form
        return value

    shape = draw(st.sampled_from(["plain", "operator", "in"]))
    if shape == "in":
        return {"in": [operand() for _ in range(draw(st.integers(1, 3)))]}
    value = operand()
    if shape == "plain":
        return value
    equality_only = value is None or isinstance(value, bool)
    op = draw(st.sampled_from(["eq", "ne"] if equality_only else list(COMPARISONS)))
    return {op: value}


@pytest.fixture
def twin_dbs(
    tmp_path: Path, migrated_templates: dict[str, URL], pg_server: PostgresServer | None
) -> Iterator[dict[str, TrainingDB]]:
    """One database per backend for the whole property test (examples delete their runs)."""
    _require_postgres()
    assert pg_server is not None
    template = migrated_templates["sqlite"]
    assert template.database is not None
    shutil.copyfile(template.database, tmp_path / "runs.db")
    pg_url = pg_server.create_database(template=migrated_templates["postgresql"])
    databases = {
        "sqlite": TrainingDB(sqlite_url(tmp_path / "runs.db")),
        "postgresql": TrainingDB(pg_url),
    }
    yield databases
    for database in databases.values():
        database.dispose()
    pg_server.drop_database(pg_url)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_random_paths_match_the_reference_on_both_backends(
    twin_dbs: dict[str, TrainingDB], data: st.DataObject
) -> None:
    documents = data.draw(st.lists(configs, min_size=2, max_size=4), label="configs")
    run_ids = [f"run{index}" for index in range(len(documents))]
    # The filters see the stored form: large floats and -0.0 are tagged objects there.
    stored = [jsoncodec.encode_document(jsoncodec.to_jsonable(doc)) for doc in documents]
    try:
        for database in twin_dbs.values():
            for run_id, document in zip(run_ids, documents, strict=True):
                database.insert_run(run_id, None, document)
        for _ in range(5):
            steps = data.draw(real_steps(documents), label="steps")
            path = data.draw(path_text(steps), label="path")
            assert reference_steps(path) == steps
            found = [reference_lookup(document, steps) for document in documents]
            condition = data.draw(conditions(found), label="condition")
            expected: list[str] | str = sorted(
                run_id
                for run_id, document in zip(run_ids, stored, strict=True)
                if reference_matches(document, steps, condition)
            )
            if not expected and all(
                reference_lookup(document, steps) is MISSING for document in stored
            ):
                expected = UNKNOWN  # nothing matched, and no run has the path at all
            answers = {
                backend: answer(database, {f"config.{path}": condition})
                for backend, database in twin_dbs.items()
            }
            assert answers == {"sqlite": expected, "postgresql": expected}, (path, condition)
    finally:
        for backend, database in list(twin_dbs.items()):
            with database.engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM training_runs"))
            # Deleted behind the library's back: a Database remembers the paths it found
            # (a name found is never taken back, see records.is_known_name), so the next
            # example asks through a fresh one, as another process would.
            database.dispose()
            twin_dbs[backend] = TrainingDB(database.url)


def test_reference_evaluator_reads_the_grammar() -> None:
    """The reference itself, on the examples of the guide."""
    document = {"arr": [1, 2, 3], "layers": {"0": 5}, "a.b": True, "s": "x"}
    assert reference_steps('layers."0"') == ["layers", "0"]
    assert reference_matches(document, ["layers", "0"], 5)
    assert not reference_matches(document, ["layers", 0], 5)
    assert reference_matches(document, ["arr", -1], {"gte": "3"})
    assert reference_matches(document, ["a.b"], True)
    assert reference_matches(document, ["missing"], None)
    assert reference_matches(document, ["s"], {"in": [1, "x"]})
    assert not reference_matches(document, ["s"], {"gt": 0})
