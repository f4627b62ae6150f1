"""Query scenarios over a database of ``scale`` runs: (d) query_runs filters, (e) objective
queries, and query_runs(limit=1000) over runs with histories versus runs without.

The runs are inserted in bulk for setup (not timed). Each question is also asked in
hand-written SQL through the raw driver, returning the same rows (every run column, JSON
documents parsed), and of MLflow's ``search_runs``; answers are compared before timing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import sqlalchemy as sa

from bench import databases, rawdriver
from bench.context import Context
from bench.measure import (
    MLFLOW,
    OURS,
    RAW,
    Result,
    checked,
    expect,
    expect_same_ids,
    same_float,
    time_alternating,
    time_calls,
)
from bench.mlflow_side import MlflowStore
from bench.workload import METRIC_TYPES, RunSpec, make_history, make_run
from training_db import TrainingDB
from training_db.schema import HistoryMetric, RunObjective, TrainingRun
from training_db.schema.extraction import extract_columns
from training_db.store.runs import summary_columns

WITH_HISTORY_HOST: Final = "bench-with-history"
WITHOUT_HISTORY_HOST: Final = "bench-without-history"
OBJECTIVE_QUERY: Final = {"COMT_activity": {"min": 0.8}, "DRD5_activity": {"min": 0.7}}
OBJECTIVE_METHOD: Final = "mgda"
# Rare values: what the objective index is for (shown in the query plans).
SELECTIVE_QUERY: Final = {"COMT_activity": {"min": 0.97}, "DRD5_activity": {"min": 0.95}}
COMPARED_OBJECTIVE: Final = "DRD5_activity"
EXTRACTED_FILTERS: Final = {"gradient_method": "mgda", "batch_size": 64, "status": "completed"}
JSON_FILTERS: Final = {
    "config.training.gradient_accumulation_steps": {"gte": 8},
    "summary.train/loss": {"lt": 0.5},
}
MLFLOW_OBJECTIVE_FILTER: Final = (
    "metrics.`objectives/COMT_activity_maximize/raw_mean` >= 0.8 "
    "and metrics.`objectives/DRD5_activity_maximize/raw_mean` >= 0.7 "
    "and params.`training.gradient_method` = 'mgda'"
)
MLFLOW_COMPARE_FILTER: Final = (
    "metrics.`objectives/DRD5_activity_maximize/raw_mean` >= 0 and attributes.status = 'FINISHED'"
)
HISTORY_POOL: Final = 8

# Hand-written SQL, as a person would write each question (seed queries 1 and 2).
RAW_SQL: Final = {
    "d1": (
        "SELECT * FROM training_runs WHERE gradient_method = {p} AND batch_size = {p} "
        "AND status = {p} ORDER BY created_at DESC, run_id LIMIT 100"
    ),
    "d2-sqlite": (
        "SELECT * FROM training_runs "
        "WHERE json_extract(config_json, '$.training.gradient_accumulation_steps') >= ? "
        "AND json_extract(final_metrics_json, '$.\"train/loss\"') < ? "
        "ORDER BY created_at DESC, run_id LIMIT 100"
    ),
    "d2-postgresql": (
        "SELECT * FROM training_runs "
        "WHERE (config_json #>> '{training,gradient_accumulation_steps}')::float8 >= %s "
        "AND (final_metrics_json ->> 'train/loss')::float8 < %s "
        "ORDER BY created_at DESC, run_id LIMIT 100"
    ),
    "e1": (
        "SELECT r.*, "
        "o1.raw_mean AS o1_raw_mean, o1.normalized_mean AS o1_normalized_mean, "
        "o1.raw_std AS o1_raw_std, o1.normalized_std AS o1_normalized_std, "
        "o2.raw_mean AS o2_raw_mean, o2.normalized_mean AS o2_normalized_mean, "
        "o2.raw_std AS o2_raw_std, o2.normalized_std AS o2_normalized_std "
        "FROM training_runs r "
        "JOIN run_objectives o1 ON o1.run_id = r.run_id AND o1.objective_name = {p} "
        "JOIN run_objectives o2 ON o2.run_id = r.run_id AND o2.objective_name = {p} "
        "WHERE o1.raw_mean >= {p} AND o2.raw_mean >= {p} AND r.gradient_method = {p} "
        "ORDER BY r.created_at DESC, r.run_id LIMIT 100"
    ),
    "e2": (
        "SELECT r.gradient_method, COUNT(o.raw_mean), AVG(o.raw_mean), MAX(o.raw_mean) "
        "FROM run_objectives o JOIN training_runs r ON r.run_id = o.run_id "
        "WHERE o.objective_name = {p} AND o.raw_mean IS NOT NULL AND r.status = 'completed' "
        "GROUP BY r.gradient_method ORDER BY 3 DESC, 4 DESC"
    ),
}


def raw_sql(name: str, backend: str) -> str:
    if f"{name}-{backend}" in RAW_SQL:
        return RAW_SQL[f"{name}-{backend}"]
    return RAW_SQL[name].format(p="?" if backend == "sqlite" else "%s")


# --- setup ----------------------------------------------------------------------------------


def our_run_row(spec: RunSpec, host: str) -> dict[str, Any]:
    summary = spec.summary
    ended = None
    if summary is not None:
        ended = spec.created_at + dt.timedelta(seconds=summary["_runtime"])
    columns = {"final_loss": None, "total_training_steps": None, "duration_seconds": None}
    columns.update(summary_columns(summary))
    return {
        "run_id": spec.run_id,
        "wandb_run_id": spec.wandb_run_id,
        "run_name": spec.run_name,
        "host": host,
        "created_at": spec.created_at,
        "started_at": spec.created_at,
        "ended_at": ended,
        "status": spec.status,
        "config_json": spec.config,
        "final_metrics_json": summary,
        **extract_columns(spec.config),
        **columns,
    }


def our_objective_rows(spec: RunSpec) -> Iterator[dict[str, Any]]:
    for objective in spec.objectives:
        values = {
            metric: None
            if spec.summary is None
            else spec.summary[f"objectives/{objective['alias']}/{metric}"]
            for metric in METRIC_TYPES
        }
        yield {
            "run_id": spec.run_id,
            "objective_name": objective["name"],
            "objective_alias": objective["alias"],
            "uniprot": objective["params"].get("uniprot"),
            "weight": objective["weight"],
            "direction": objective["direction"],
            **values,
        }


def host_of(index: int, history_runs: int, spec: RunSpec) -> str:
    if index < history_runs:
        return WITH_HISTORY_HOST
    if index < 2 * history_runs:
        return WITHOUT_HISTORY_HOST
    return spec.host


def load_ours(db: TrainingDB, specs: Sequence[RunSpec], history_runs: int, seed: int) -> None:
    """Bulk-insert the runs and objectives (package types), and histories for some runs."""
    runs = [our_run_row(spec, host_of(i, history_runs, spec)) for i, spec in enumerate(specs)]
    objectives = [row for spec in specs for row in our_objective_rows(spec)]
    with db.engine.begin() as connection:
        for start in range(0, len(runs), 1000):
            connection.execute(sa.insert(TrainingRun), runs[start : start + 1000])
        for start in range(0, len(objectives), 5000):
            connection.execute(sa.insert(RunObjective), objectives[start : start + 5000])
    # Histories: a pool of encoded histories, cycled over the runs that get one.
    pool = []
    for index in range(HISTORY_POOL):
        spec = specs[index % len(specs)]
        history = make_history(seed, index, spec.objectives)
        pool.append(history)
    names = sorted({key for history in pool for key in history if key != "_step"})
    with db.engine.begin() as connection:
        connection.execute(sa.insert(HistoryMetric), [{"name": name} for name in names])
        ids = dict(connection.execute(sa.select(HistoryMetric.name, HistoryMetric.id)).all())
    encoded = [rawdriver.encoded_rows("", ids, history) for history in pool]
    rows = (
        (specs[index].run_id, *row[1:])
        for index in range(history_runs)
        for row in encoded[index % HISTORY_POOL]
    )
    connection = databases.raw_connect(db.url)
    try:
        databases.bulk_insert(connection, "run_history", rawdriver.HISTORY_COLUMNS, rows)
    finally:
        connection.close()


# --- raw answers ------------------------------------------------------------------------------


def raw_runs(connection: Any, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows as dicts with the JSON documents parsed, as a hand-written query would return them."""
    if databases.is_sqlite_connection(connection):
        cursor = connection.execute(sql, params)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            for key in ("config_json", "final_metrics_json"):
                if row.get(key) is not None:
                    row[key] = json.loads(row[key])
        return rows
    with connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def raw_rows(connection: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return databases.raw_read(connection, sql, tuple(params))


# --- scenarios --------------------------------------------------------------------------------


def queries(ctx: Context) -> None:
    settings = ctx.settings
    url = ctx.backend.new_database("query")
    db = TrainingDB(url)
    db.init_db()
    ctx.log(f"query database: generating and bulk-loading {settings.scale:,} runs (setup)")
    specs = [make_run(settings.seed, index, prefix="q") for index in range(settings.scale)]
    history_runs = min(settings.history_runs, settings.scale // 2)
    load_ours(db, specs, history_runs, settings.seed)
    databases.analyze(url)
    store = None
    if ctx.mlflow is not None:
        store = MlflowStore(
            ctx.mlflow, ctx.backend.new_database("mlflow_query"), ctx.backend.workdir
        )
        store.bulk_load_runs(specs)
        databases.analyze(store.url)
    ctx.extra["objective_rows"] = sum(len(spec.objectives) for spec in specs)
    raw = databases.raw_connect(url)
    try:
        _run_filters(ctx, db, raw)
        _objective_queries(ctx, db, raw, store)
        _with_and_without_history(ctx, db, history_runs)
        _plans(ctx, db, raw)
    finally:
        raw.close()
        db.dispose()
        if store is not None:
            store.dispose()


def _timed(ctx: Context, result: Result, call: Callable[[], Any]) -> None:
    """Time a fast read many times."""
    settings = ctx.settings
    result.seconds, result.work = time_calls(
        call, settings.repeat * 4, min_total=settings.min_total
    )


def _timed_slow(
    ctx: Context, result: Result, call: Callable[[], Any], compare: Callable[[Any], None]
) -> None:
    """Time one of MLflow's slow searches: the call whose answer is checked is the first
    sample; more follow while the time budget lasts (a search over every run can take
    minutes)."""
    settings = ctx.settings
    started = time.perf_counter()
    answer = call()
    first = time.perf_counter() - started
    if not checked(result, lambda: compare(answer)):
        return
    seconds = [first]
    while len(seconds) < settings.mlflow_repeat and sum(seconds) < settings.search_budget:
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    result.seconds, result.work = seconds, [1.0] * len(seconds)


def _same_runs(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    expect_same_ids([run["run_id"] for run in ours], [run["run_id"] for run in theirs])
    for mine, other in zip(ours, theirs, strict=True):
        expect(same_float(mine["final_loss"], other["final_loss"]), "final_loss differs")
        expect(
            mine["config"]["training"] == other["config_json"]["training"],
            f"config of {mine['run_id']} differs",
        )


def _run_filters(ctx: Context, db: TrainingDB, raw: Any) -> None:
    cases = (
        (
            "d1",
            "query_runs, extracted columns " + json.dumps(EXTRACTED_FILTERS),
            EXTRACTED_FILTERS,
            ("mgda", 64, "completed"),
        ),
        ("d2", "query_runs, config./summary. JSON filters", JSON_FILTERS, (8, 0.5)),
    )
    for scenario, label, filters, params in cases:
        sql = raw_sql(scenario, ctx.name)
        ours = ctx.add(Result(scenario, ctx.name, "ours", label, "ms", OURS))
        hand = ctx.add(
            Result(scenario, ctx.name, "raw-sql", "hand-written SQL, raw driver", "ms", RAW)
        )
        call_ours = lambda f=filters: db.query_runs(f)  # noqa: E731
        call_raw = lambda s=sql, p=params: raw_runs(raw, s, p)  # noqa: E731
        found = call_ours()
        ctx.extra[f"{scenario}_matches"] = len(found)
        if checked(hand, lambda c=call_raw, f=found: _same_runs(f, c())):
            _timed(ctx, ours, call_ours)
            _timed(ctx, hand, call_raw)
        else:
            _timed(ctx, ours, call_ours)


def _objective_queries(ctx: Context, db: TrainingDB, raw: Any, store: MlflowStore | None) -> None:
    # (e1) seed query 1: two thresholds and a gradient method.
    ours = ctx.add(
        Result(
            "e1",
            ctx.name,
            "ours",
            "query_runs_by_objectives(2 thresholds + gradient_method)",
            "ms",
            OURS,
        )
    )
    hand = ctx.add(Result("e1", ctx.name, "raw-sql", "hand-written SQL, raw driver", "ms", RAW))
    names = list(OBJECTIVE_QUERY)
    thresholds = [OBJECTIVE_QUERY[name]["min"] for name in names]
    params = (*names, *thresholds, OBJECTIVE_METHOD)

    def call_ours() -> list[dict[str, Any]]:
        return db.query_runs_by_objectives(OBJECTIVE_QUERY, gradient_method=OBJECTIVE_METHOD)

    call_raw = lambda: raw_runs(raw, raw_sql("e1", ctx.name), params)  # noqa: E731
    found = call_ours()
    ctx.extra["e1_matches"] = len(found)

    def check_raw() -> None:
        theirs = call_raw()
        _same_runs(found, theirs)
        for mine, other in zip(found, theirs, strict=True):
            for position, name in enumerate(names, start=1):
                for metric in METRIC_TYPES:
                    expect(
                        same_float(
                            mine["objectives"][name][metric], other[f"o{position}_{metric}"]
                        ),
                        f"{name} {metric} differs",
                    )

    _timed(ctx, ours, call_ours)
    if checked(hand, check_raw):
        _timed(ctx, hand, call_raw)
    if store is not None:
        search = ctx.add(
            Result("e1", ctx.name, "mlflow", "search_runs(metrics + params filter)", "ms", MLFLOW)
        )
        call_mlflow = lambda: store.search(MLFLOW_OBJECTIVE_FILTER, 100)  # noqa: E731

        def check_mlflow(theirs: list[Any]) -> None:
            expect_same_ids([run["run_id"] for run in found], [run.info.run_id for run in theirs])
            for mine, other in zip(found, theirs, strict=True):
                for name in names:
                    alias = f"objectives/{name}_maximize/raw_mean"
                    expect(
                        same_float(mine["objectives"][name]["raw_mean"], other.data.metrics[alias]),
                        f"{name} differs",
                    )

        _timed_slow(ctx, search, call_mlflow, check_mlflow)

    # (e2) seed query 2: compare gradient methods on one objective.
    ours2 = ctx.add(
        Result(
            "e2", ctx.name, "ours", f"compare_gradient_methods({COMPARED_OBJECTIVE!r})", "ms", OURS
        )
    )
    hand2 = ctx.add(Result("e2", ctx.name, "raw-sql", "hand-written SQL, raw driver", "ms", RAW))
    call_ours2 = lambda: db.compare_gradient_methods(COMPARED_OBJECTIVE)  # noqa: E731
    call_raw2 = lambda: raw_rows(raw, raw_sql("e2", ctx.name), (COMPARED_OBJECTIVE,))  # noqa: E731
    compared = call_ours2()

    def same_groups(theirs: Sequence[tuple[Any, int, float, float]]) -> None:
        expect(len(compared) == len(theirs), f"{len(compared)} methods vs {len(theirs)}")
        for mine, (method, count, average, best) in zip(compared, theirs, strict=True):
            expect(mine["gradient_method"] == method, f"method order differs at {method!r}")
            expect(mine["num_runs"] == count, f"{method}: count differs")
            expect(same_float(mine["avg"], average), f"{method}: avg differs")
            expect(same_float(mine["best"], best), f"{method}: best differs")

    _timed(ctx, ours2, call_ours2)
    if checked(hand2, lambda: same_groups(call_raw2())):
        _timed(ctx, hand2, call_raw2)
    if store is not None:
        search2 = ctx.add(
            Result(
                "e2",
                ctx.name,
                "mlflow",
                "search_runs(all with the metric) + Python aggregate",
                "ms",
                MLFLOW,
            )
        )

        def call_mlflow2() -> list[tuple[Any, int, float, float]]:
            groups: dict[Any, list[float]] = defaultdict(list)
            for run in store.search(MLFLOW_COMPARE_FILTER, 50_000):
                value = run.data.metrics["objectives/DRD5_activity_maximize/raw_mean"]
                groups[run.data.params.get("training.gradient_method")].append(value)
            rows = [(m, len(v), statistics.fmean(v), max(v)) for m, v in groups.items()]
            return sorted(rows, key=lambda row: (-row[2], -row[3]))

        _timed_slow(ctx, search2, call_mlflow2, same_groups)


def _with_and_without_history(ctx: Context, db: TrainingDB, history_runs: int) -> None:
    settings = ctx.settings
    label = f"query_runs(limit=1000) over {history_runs:,} runs"
    without = ctx.add(
        Result("g-query", ctx.name, "without", f"{label} without history", "ms", OURS)
    )
    with_ = ctx.add(Result("g-query", ctx.name, "with", f"{label} with history", "ms", OURS))
    calls = {
        "with": lambda: db.query_runs({"host": WITH_HISTORY_HOST}, limit=1000),
        "without": lambda: db.query_runs({"host": WITHOUT_HISTORY_HOST}, limit=1000),
    }

    def check() -> None:
        for name, call in calls.items():
            expect(len(call()) == history_runs, f"{name}: expected {history_runs} runs")

    if not checked(with_, check):
        return
    timed = time_alternating(calls, settings.repeat * 4)
    for result in (without, with_):
        result.seconds = timed[result.system]
        result.work = [1.0] * len(result.seconds)


# --- plans ------------------------------------------------------------------------------------


def _captured_statement(db: TrainingDB, call: Callable[[], Any], marker: str) -> tuple[str, Any]:
    captured: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement:
            captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    return captured[0]


def explain(connection: Any, statement: str, parameters: Any) -> str:
    if databases.is_sqlite_connection(connection):
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
        return "\n".join(f"{'  ' * _depth(rows, row)}{row[3]}" for row in rows)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}", parameters
        )
        return "\n".join(row[0] for row in cursor.fetchall())


def _depth(rows: Sequence[Any], row: Any) -> int:
    parents = {entry[0]: entry[1] for entry in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


def _plans(ctx: Context, db: TrainingDB, raw: Any) -> None:
    statement, parameters = _captured_statement(
        db,
        lambda: db.query_runs_by_objectives(OBJECTIVE_QUERY, gradient_method=OBJECTIVE_METHOD),
        "run_objectives",
    )
    ctx.plans["e1 ours"] = f"{statement}\n\n{explain(raw, statement, parameters)}"
    names = list(OBJECTIVE_QUERY)
    params = (*names, *(OBJECTIVE_QUERY[n]["min"] for n in names), OBJECTIVE_METHOD)
    ctx.plans["e1 raw-sql"] = explain(raw, raw_sql("e1", ctx.name), params)
    statement, parameters = _captured_statement(
        db,
        lambda: db.query_runs_by_objectives(SELECTIVE_QUERY, gradient_method=OBJECTIVE_METHOD),
        "run_objectives",
    )
    ctx.plans["e1 ours, selective thresholds " + json.dumps(SELECTIVE_QUERY)] = explain(
        raw, statement, parameters
    )
    statement, parameters = _captured_statement(
        db, lambda: db.compare_gradient_methods(COMPARED_OBJECTIVE), "GROUP BY"
    )
    ctx.plans["e2 ours"] = explain(raw, statement, parameters)
    for scenario, filters, values in (
        ("d1", EXTRACTED_FILTERS, ("mgda", 64, "completed")),
        ("d2", JSON_FILTERS, (8, 0.5)),
    ):
        statement, parameters = _captured_statement(
            db, lambda f=filters: db.query_runs(f), "FROM training_runs"
        )
        ctx.plans[f"{scenario} ours"] = explain(raw, statement, parameters)
        ctx.plans[f"{scenario} raw-sql"] = explain(raw, raw_sql(scenario, ctx.name), values)


_INDEX_IN_PLAN: Final = re.compile(
    r"(?:USING (?:COVERING )?INDEX|Index (?:Only )?Scan (?:Backward )?using|Bitmap Index Scan on)"
    r" (\w+)"
)


def indexes_used(plan: str) -> list[str]:
    """The indexes a SQLite or PostgreSQL plan reads, in order of first use."""
    return list(dict.fromkeys(_INDEX_IN_PLAN.findall(plan)))
