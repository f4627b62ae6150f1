"""The raw-driver limits for history: the naive one-row-per-value table, and our own layout.

Both take the same ``{column: list}`` history the public API takes, in one transaction per
run, with ``sqlite3`` ``executemany`` or psycopg2 (``COPY`` for the naive rows,
``execute_values`` for our layout's rows).

"Our layout" is everything ``log_history`` stores: one compact ``run_history`` row per
metric (``encode_series``) and one ``run_history_key_metrics`` row per step (loss, grad_norm,
learning rate, each objective's ``raw_mean`` score as JSON, the timestamp; the default
``KeyMetricMapping``). The ingest check compares both tables with what the package wrote.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg2.extras import execute_values

from bench.databases import NAIVE_TABLE, copy_into, is_sqlite_connection, raw_transaction
from bench.workload import STEP_KEY, logged_points
from training_db.store.history import DEFAULT_KEY_METRICS, decode_series, encode_series

NAIVE_DDL: Final = f"""
CREATE TABLE {NAIVE_TABLE} (
    run_id VARCHAR(255) NOT NULL,
    metric TEXT NOT NULL,
    step BIGINT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (run_id, metric, step)
)
"""
HISTORY_COLUMNS: Final = (
    "run_id",
    "metric_id",
    "kind",
    "num_points",
    "first_step",
    "last_step",
    "step_data",
    "value_data",
    "value_json",
)


def create_naive_table(connection: Any) -> None:
    with raw_transaction(connection) as cursor:
        cursor.execute(NAIVE_DDL)


def _marks(connection: Any, count: int) -> str:
    mark = "?" if is_sqlite_connection(connection) else "%s"
    return ", ".join([mark] * count)


def write_naive(connection: Any, run_id: str, history: Mapping[str, list[Any]]) -> int:
    """One row per logged value; returns the number of values."""
    steps = history[STEP_KEY]
    rows = [
        (run_id, key, step, value)
        for key, values in history.items()
        if key != STEP_KEY
        for step, value in zip(steps, values, strict=True)
        if value == value
    ]
    with raw_transaction(connection) as cursor:
        if is_sqlite_connection(connection):
            cursor.executemany(f"INSERT INTO {NAIVE_TABLE} VALUES (?, ?, ?, ?)", rows)
        else:
            copy_into(cursor, NAIVE_TABLE, ("run_id", "metric", "step", "value"), rows)
    return len(rows)


def metric_ids(cursor: Any, connection: Any, names: Sequence[str]) -> dict[str, int]:
    """The history_metrics ids of ``names``, adding the missing names."""
    marks = _marks(connection, len(names))
    select = f"SELECT name, id FROM history_metrics WHERE name IN ({marks})"
    cursor.execute(select, tuple(names))
    ids = dict(cursor.fetchall())
    missing = [name for name in names if name not in ids]
    if missing:
        insert = "INSERT INTO history_metrics (name) VALUES ({}) ON CONFLICT (name) DO NOTHING"
        cursor.executemany(insert.format(_marks(connection, 1)), [(name,) for name in missing])
        cursor.execute(select, tuple(names))
        ids = dict(cursor.fetchall())
    return ids


def encoded_rows(
    run_id: str, ids: Mapping[str, int], history: Mapping[str, list[Any]]
) -> list[tuple[Any, ...]]:
    rows = []
    for name, points in logged_points(history).items():
        if not points:
            continue
        encoded = encode_series(points)
        if encoded.kind == "json":  # pragma: no cover - the workload logs numbers only
            raise ValueError(f"{name}: the raw writer handles numeric series only")
        rows.append(
            (
                run_id,
                ids[name],
                encoded.kind,
                encoded.num_points,
                encoded.first_step,
                encoded.last_step,
                encoded.step_data,
                encoded.value_data,
                None,
            )
        )
    return rows


KEY_METRIC_COLUMNS: Final = (
    "run_id",
    "step",
    "loss",
    "grad_norm",
    "learning_rate",
    "objective_scores_json",
    "timestamp",
)


def key_metric_rows(
    run_id: str, history: Mapping[str, list[Any]], *, sqlite: bool
) -> list[tuple[Any, ...]]:
    """The rows ``log_history`` writes to ``run_history_key_metrics`` for this history."""
    mapping = DEFAULT_KEY_METRICS
    columns = {key: values for key, values in history.items() if key != STEP_KEY}
    scores = mapping.score_keys(columns).items()

    def first(keys: Sequence[str], position: int) -> float | None:
        for key in keys:
            if key in columns and (value := columns[key][position]) == value:
                return float(value)
        return None

    rows = []
    for position, step in enumerate(history[STEP_KEY]):
        loss = first(mapping.loss, position)
        grad_norm = first(mapping.grad_norm, position)
        learning_rate = first(mapping.learning_rate, position)
        logged = {
            objective: value
            for key, objective in scores
            if (value := columns[key][position]) == value
        }
        if loss is None and grad_norm is None and learning_rate is None and not logged:
            continue
        stamp = columns.get(mapping.timestamp, [None] * (position + 1))[position]
        when = None
        if stamp is not None and stamp == stamp:
            when = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
            when = when.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else when
        document = json.dumps(logged, sort_keys=True) if logged else None
        rows.append((run_id, step, loss, grad_norm, learning_rate, document, when))
    return rows


def write_layout(connection: Any, run_id: str, history: Mapping[str, list[Any]]) -> int:
    """Our whole layout (``run_history`` and the key metrics); returns the value count."""
    names = [key for key in history if key != STEP_KEY]
    sqlite = is_sqlite_connection(connection)
    with raw_transaction(connection) as cursor:
        ids = metric_ids(cursor, connection, names)
        rows = encoded_rows(run_id, ids, history)
        key_rows = key_metric_rows(run_id, history, sqlite=sqlite)
        columns = ", ".join(HISTORY_COLUMNS)
        key_columns = ", ".join(KEY_METRIC_COLUMNS)
        if sqlite:
            cursor.executemany(
                f"INSERT INTO run_history ({columns}) VALUES ({_marks(connection, 9)})", rows
            )
            cursor.executemany(
                f"INSERT INTO run_history_key_metrics ({key_columns}) "
                f"VALUES ({_marks(connection, 7)})",
                key_rows,
            )
        else:
            execute_values(cursor, f"INSERT INTO run_history ({columns}) VALUES %s", rows)
            execute_values(
                cursor,
                f"INSERT INTO run_history_key_metrics ({key_columns}) VALUES %s",
                key_rows,
                template="(%s, %s, %s, %s, %s, %s::jsonb, %s)",
            )
    return sum(row[3] for row in rows)


def read_key_metrics(connection: Any, run_id: str) -> list[tuple[Any, ...]]:
    """A run's key-metric rows as ``(step, loss, grad_norm, lr, scores, timestamp text)``."""
    sql = (
        "SELECT step, loss, grad_norm, learning_rate, objective_scores_json, timestamp "
        f"FROM run_history_key_metrics WHERE run_id = {_marks(connection, 1)} ORDER BY step"
    )
    if is_sqlite_connection(connection):
        rows = connection.execute(sql, (run_id,)).fetchall()
    else:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, (run_id,))
            rows = cursor.fetchall()
    return [
        (*row[:4], json.loads(row[4]) if isinstance(row[4], str) else row[4], str(row[5]))
        for row in rows
    ]


def read_layout(connection: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    """One metric of one run from our layout, decoded, as ``(step, value)`` pairs."""
    sql = (
        "SELECT h.kind, h.step_data, h.value_data, h.value_json FROM run_history h "
        "JOIN history_metrics m ON m.id = h.metric_id "
        f"WHERE h.run_id = {_marks(connection, 1)} AND m.name = {_marks(connection, 1)}"
    )
    if is_sqlite_connection(connection):
        row = connection.execute(sql, (run_id, key)).fetchone()
    else:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, (run_id, key))
            row = cursor.fetchone()
    kind, step_data, value_data, value_json = row
    return list(decode_series(kind, bytes(step_data), bytes(value_data), value_json).items())


def read_naive(connection: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    sql = (
        f"SELECT step, value FROM {NAIVE_TABLE} WHERE run_id = {_marks(connection, 1)} "
        f"AND metric = {_marks(connection, 1)} ORDER BY step"
    )
    if is_sqlite_connection(connection):
        return connection.execute(sql, (run_id, key)).fetchall()
    with connection, connection.cursor() as cursor:
        cursor.execute(sql, (run_id, key))
        return cursor.fetchall()
