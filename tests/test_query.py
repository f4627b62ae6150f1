"""query_runs: filters, JSON paths, tags, ordering and limits, identical on both backends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from training_db import TrainingDB
from training_db.core.errors import InvalidArgumentError, UnknownNameError
from training_db.core.validation import MAX_LIMIT, parse_timestamp

UTC = dt.timezone.utc
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))
ALL = ["a", "b", "c", "d", "e"]


@pytest.fixture
def populated(db: TrainingDB) -> TrainingDB:
    """Five runs with known values (see the table in each test)."""
    specs: list[tuple[str, dict[str, Any], str, float | None]] = [
        ("a", {"batch_size": 64, "gradient_method": "mgda", "learning_rate": 1e-4}, "ec2", 3.0),
        ("b", {"batch_size": 32, "gradient_method": "pcgrad", "learning_rate": 1e-3}, "ec2", 0.5),
        (
            "c",
            {"batch_size": 64, "gradient_method": "pcgrad", "learning_rate": 3e-4},
            "expanse",
            2.0,
        ),
        (
            "d",
            {"batch_size": 128, "gradient_method": "mgda", "learning_rate": 1e-5},
            "expanse",
            None,
        ),
        ("e", {"batch_size": 16, "gradient_method": "imtlg"}, "ec2", 1.0),
    ]
    for index, (run_id, training, host, hours) in enumerate(specs):
        config = {"training": {**training, "scheduler": {"warmup": index * 10}}, "tag": run_id}
        db.insert_run(
            run_id, None, config, host=host, created_at=dt.datetime(2026, 1, 1 + index, tzinfo=UTC)
        )
        if hours is not None:
            db.update_run_status(run_id, "running", started_at="2026-01-01T00:00:00Z")
            db.update_run_status(
                run_id,
                "completed",
                duration_seconds=hours * 3600,
                final_metrics_json={
                    "train/loss": hours / 10,
                    "objectives/COMT/raw_mean": hours / 4,
                    "label": f"run {run_id}",
                },
            )
    db.attach_blog_post("a", "https://blog/a")
    db.attach_crash_data("e", None, None, "crash/e.md")
    return db


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [run["run_id"] for run in runs]


def test_default_order_is_newest_first(populated: TrainingDB) -> None:
    assert ids(populated.query_runs()) == ["e", "d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "completed"}, ["a", "b", "c"]),
        ({"host": "expanse"}, ["c", "d"]),
        ({"gradient_method": "mgda"}, ["a", "d"]),
        ({"batch_size": 64}, ["a", "c"]),
        ({"batch_size": "64"}, ["a", "c"]),  # strings from a form or CLI
        ({"batch_size": {"gte": 64}}, ["a", "c", "d"]),
        ({"batch_size": {"gt": "32", "lt": 128}}, ["a", "c"]),
        ({"batch_size": {"in": [16, "128"]}}, ["d", "e"]),
        ({"gradient_method": {"ne": "mgda"}}, ["b", "c", "e"]),
        ({"learning_rate": {"lte": "1e-4"}}, ["a", "d"]),
        ({"learning_rate": None}, ["e"]),
        ({"learning_rate": {"ne": None}}, ["a", "b", "c", "d"]),
        ({"min_duration_hours": 2}, ["a", "c"]),
        ({"min_duration_hours": "0.75"}, ["a", "c", "e"]),
        ({"created_after": "2026-01-03T00:00:00Z"}, ["d", "e"]),
        ({"created_after": dt.datetime(2026, 1, 3, 12)}, ["d", "e"]),
        ({"has_blog_post": True}, ["a"]),
        ({"has_blog_post": "false"}, ["b", "c", "d", "e"]),
        ({"has_crash_analysis": True}, ["e"]),
        ({"status": "crashed", "host": "ec2"}, ["e"]),
        ({"config.training.batch_size": 64}, ["a", "c"]),
        ({"config.training.batch_size": {"gte": "64"}}, ["a", "c", "d"]),
        ({"config.training.gradient_method": "pcgrad"}, ["b", "c"]),
        ({"config.training.scheduler.warmup": {"gt": 15}}, ["c", "d", "e"]),
        ({"config.training.learning_rate": None}, ["e"]),
        ({"config.tag": {"in": ["a", "e"]}}, ["a", "e"]),
        ({"summary.train/loss": {"lt": 0.25}}, ["b", "c", "e"]),
        ({"summary.objectives/COMT/raw_mean": {"gte": 0.5}}, ["a", "c"]),
        ({"summary.label": "run b"}, ["b"]),
        ({"config.training.gradient_method": {"gt": 0}}, []),  # text never compares as number
        # timestamp columns: ISO strings (naive = UTC, Z allowed) and datetimes, any zone
        ({"created_at": {"lt": "2026-01-03"}}, ["a", "b"]),
        ({"created_at": "2026-01-02T00:00:00Z"}, ["b"]),
        ({"created_at": {"gte": dt.datetime(2026, 1, 3, 1, tzinfo=PLUS_ONE)}}, ["c", "d", "e"]),
        (
            {"created_at": {"in": ["2026-01-01T00:00:00+00:00", dt.datetime(2026, 1, 5)]}},
            ["a", "e"],
        ),
        ({"created_at": {"ne": "2026-01-04T01:00:00+01:00"}}, ["a", "b", "c", "e"]),
        ({"started_at": "2026-01-01T00:00:00Z"}, ["a", "b", "c", "e"]),
        ({"started_at": {"lt": dt.datetime(2026, 1, 1, tzinfo=UTC)}}, []),
        ({"created_at_db": {"gt": "2000-01-01"}, "updated_at_db": {"lt": "9999-12-31"}}, ALL),
        ({"ended_at": {"gte": "0001-01-01T00:00:00Z"}}, ["a", "b", "c", "e"]),
        ({"last_heartbeat_at": {"gt": "2000-01-01T00:00:00"}}, []),
        ({"seed": 2**63 - 1}, []),  # the 64-bit edge binds on both backends
        ({"seed": {"ne": -(2**63)}}, []),  # as in SQL, ne never matches NULL
    ],
)
def test_filters(populated: TrainingDB, filters: dict[str, Any], expected: list[str]) -> None:
    assert sorted(ids(populated.query_runs(filters))) == expected


def test_a_summary_key_no_run_has(populated: TrainingDB) -> None:
    # Was a case of test_filters with an empty answer; now a mistake (test_did_you_mean.py).
    with pytest.raises(UnknownNameError, match=r"'summary\.missing'"):
        populated.query_runs({"summary.missing": {"gt": 0}})


def test_tag_filters(populated: TrainingDB) -> None:
    populated.set_tags("a", {"owner": "alice", "priority": 3, "reviewed": True})
    populated.set_tags("b", {"owner": "bob", "priority": 1, "reviewed": False})
    assert ids(populated.query_runs({"tag.owner": "alice"})) == ["a"]
    assert sorted(ids(populated.query_runs({"tag.priority": {"gte": 1}}))) == ["a", "b"]
    assert ids(populated.query_runs({"tag.priority": {"gt": "2"}})) == ["a"]
    assert ids(populated.query_runs({"tag.reviewed": False})) == ["b"]
    assert ids(populated.query_runs({"tag.owner": {"in": ["bob", "carol"]}})) == ["b"]
    # A tag no run has is a mistake, no longer an empty answer (test_did_you_mean.py).
    with pytest.raises(UnknownNameError, match=r"'tag\.nobody'"):
        populated.query_runs({"tag.nobody": "x"})
    # None matches a missing tag, as config.<path>: None matches a missing key
    assert sorted(ids(populated.query_runs({"tag.owner": None}))) == ["c", "d", "e"]
    assert sorted(ids(populated.query_runs({"tag.owner": {"ne": None}}))) == ["a", "b"]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("duration_seconds DESC", ["a", "c", "e", "b", "d"]),  # NULL last
        ("duration_seconds", ["b", "e", "c", "a", "d"]),  # NULL last too
        ("batch_size asc", ["e", "b", "a", "c", "d"]),  # tie a/c broken by run_id
        ("  run_id   DESC ", ["e", "d", "c", "b", "a"]),
    ],
)
def test_order_by(populated: TrainingDB, order_by: str, expected: list[str]) -> None:
    assert ids(populated.query_runs(order_by=order_by)) == expected


def test_limit(populated: TrainingDB) -> None:
    assert ids(populated.query_runs(limit=2)) == ["e", "d"]
    assert len(populated.query_runs(limit=MAX_LIMIT)) == 5


def test_results_carry_tags_and_parsed_documents(populated: TrainingDB) -> None:
    populated.set_tags("a", {"owner": "alice"})
    (run,) = populated.query_runs({"run_id": "a"})
    assert run["tags"] == {"owner": "alice"}
    assert run["final_metrics"]["label"] == "run a"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": {"batch_size": "abc"}}, "'batch_size': expected an integer"),
        ({"filters": {"learning_rate": "fast"}}, "'learning_rate': expected a number"),
        ({"filters": {"bogus": 1}}, "unknown filter 'bogus'"),
        ({"filters": {"status; DROP TABLE training_runs": "x"}}, "unknown filter"),
        ({"filters": {"config_json": "{}"}}, "unknown filter 'config_json'"),
        ({"filters": {"batch_size": {"like": 3}}}, "unknown operator 'like'"),
        ({"filters": {"batch_size": {}}}, "at least one"),
        ({"filters": {"batch_size": {"in": "64"}}}, "list of values"),
        ({"filters": {"batch_size": {"in": []}}}, "at least one value"),
        ({"filters": {"batch_size": {"gt": None}}}, "None can only"),
        ({"filters": {"created_after": "last tuesday"}}, "ISO 8601"),
        ({"filters": {"has_blog_post": "maybe"}}, "true or false"),
        ({"filters": {"min_duration_hours": "nan"}}, "NaN"),
        ({"filters": {"config.": 1}}, "unknown filter"),
        ({"filters": {"config.a..b": 1}}, "empty path segment"),
        ({"filters": {'config.a"b': 1}}, "double quote"),
        ({"filters": {"config.x": {"gt": True}}}, "booleans"),
        ({"filters": {"config.x": [1, 2]}}, "compare with a number"),
        ({"filters": ["status"]}, "filters must be a dict"),
        (
            {"filters": {"status": "complete"}},
            "filter 'status': unknown value 'complete'; "
            "valid: launched, running, completed, failed, crashed",
        ),
        ({"filters": {"status": {"ne": "Completed"}}}, "unknown value 'Completed'"),
        ({"filters": {"status": {"in": ["completed", "done"]}}}, "unknown value 'done'"),
        ({"filters": {"created_at": "yesterday"}}, "'created_at': expected an ISO 8601"),
        ({"filters": {"started_at": dt.date(2026, 1, 1)}}, "'started_at': expected an ISO"),
        (
            {"filters": {"created_at": {"gt": "0001-01-01T00:00:00+05:00"}}},
            r"'created_at': '0001-01-01T00:00:00\+05:00' is out of range in UTC",
        ),
        (
            {"filters": {"ended_at": dt.datetime(9999, 12, 31, 23, tzinfo=MINUS_FIVE)}},
            "'ended_at': .* is out of range in UTC",
        ),
        ({"filters": {"created_after": "0001-01-01T00:00+05:00"}}, "out of range in UTC"),
        ({"filters": {"seed": 2**70}}, "'seed': 1180591620717411303424 is out of range for a 64"),
        ({"filters": {"seed": {"in": [1, -(2**63) - 1]}}}, "out of range for a 64-bit integer"),
        ({"filters": {"batch_size": "1e30"}}, "out of range for a 64-bit integer"),
        ({"filters": {"learning_rate": 10**400}}, "out of range for a 64-bit float"),
        ({"filters": {"min_duration_hours": 10**400}}, "out of range for a 64-bit float"),
        ({"filters": {"config.training.lr": {"gt": 10**400}}}, "an integer of 1329 bits"),
        ({"filters": {"host": "ec2\x00"}}, "'host': text must not contain NUL"),
        ({"filters": {"config.tag": "\udc80"}}, "lone surrogate"),
        ({"filters": {"tag.owner": {"in": ["\x00"]}}}, "NUL"),
        ({"order_by": "created_at; DROP TABLE training_runs"}, "order_by must be"),
        ({"order_by": "nonexistent DESC"}, "order_by must be"),
        ({"order_by": "created_at DESC, run_id"}, "order_by must be"),
        ({"order_by": "config_json"}, "order_by must be"),
        ({"limit": 0}, "between 1 and"),
        ({"limit": -5}, "between 1 and"),
        ({"limit": MAX_LIMIT + 1}, "between 1 and"),
        ({"limit": "10"}, "positive integer"),
        ({"limit": True}, "positive integer"),
    ],
)
def test_bad_queries_raise_value_error(
    populated: TrainingDB, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        populated.query_runs(**kwargs)


def test_sql_in_filter_values_is_just_a_value(populated: TrainingDB) -> None:
    assert populated.query_runs({"host": "ec2' OR '1'='1"}) == []
    assert populated.query_runs({"config.tag": "a' OR '1'='1"}) == []
    assert len(populated.query_runs()) == 5  # and the table is still there


def test_parse_timestamp_beyond_utc_range_is_a_value_error(db: TrainingDB) -> None:
    """Year 1 at +05:00 is year 0 in UTC: a ValueError (which callers turn into theirs)."""
    with pytest.raises(ValueError, match="out of range in UTC"):
        parse_timestamp("0001-01-01T00:00:00+05:00")
    with pytest.raises(InvalidArgumentError, match="created_at"):
        db.insert_run("early", None, {}, created_at="0001-01-01T00:00:00+05:00")
    assert parse_timestamp("0001-01-01T00:00:00Z") == dt.datetime(1, 1, 1, tzinfo=UTC)
