"""Write scenarios: (a) launch, (b) completion, (c) history ingest, (f) one metric's history,
(g) storage per run.

Each system's answer is checked on one run (written, then read back and compared with the
workload and with ours) before any of its writes are timed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench import databases, rawdriver
from bench.context import Context, StorageFigure
from bench.measure import (
    MLFLOW,
    OURS,
    RAW,
    Result,
    checked,
    expect,
    expect_same_series,
    interleaved,
    same_float,
    time_calls,
)
from bench.mlflow_side import MlflowStore, summary_metric_items
from bench.workload import (
    LOSS_KEY,
    RunSpec,
    completed_run,
    count_values,
    flatten,
    logged_points,
    make_history,
    make_run,
)
from training_db import TrainingDB
from training_db.store.history import STEP_KEY

History = dict[str, list[Any]]
# A metric that is in the history but not in the summary (W&B per-layer gradients).
HISTORY_ONLY_KEY = "gradients/layer_000/norm"
LONG_RUN_OFFSET = 900_000


def launch(db: TrainingDB, spec: RunSpec) -> None:
    """What launch_ec2.py does: the run with its whole config, then each objective."""
    db.insert_run(
        spec.run_id,
        spec.wandb_run_id,
        spec.config,
        None,
        run_name=spec.run_name,
        host=spec.host,
        created_at=spec.created_at,
    )
    for objective in spec.objectives:
        db.insert_objective(
            spec.run_id,
            objective["name"],
            objective["alias"],
            objective["params"].get("uniprot"),
            objective["weight"],
            objective["direction"],
        )


def our_series(db: TrainingDB, run_id: str, key: str) -> list[tuple[int, Any]]:
    columns = db.get_history(run_id, keys=[key])
    return [
        (step, value)
        for step, value in zip(columns[STEP_KEY], columns.get(key, []), strict=False)
        if value is not None
    ]


def expected_series(history: Mapping[str, list[Any]], key: str) -> list[tuple[int, Any]]:
    return sorted(logged_points(history)[key].items())


def same_summary(stored: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
    expect(set(stored) == set(summary), "summary keys differ")
    for key, value in summary.items():
        if isinstance(value, float):
            expect(same_float(stored[key], value, rel=0.0), f"summary[{key!r}] differs")
        else:
            expect(stored[key] == value, f"summary[{key!r}] differs")


def batches_of(
    specs: list[RunSpec], size: int, write: Callable[[RunSpec], float]
) -> list[Callable[[], float]]:
    """Repetitions of ``size`` runs each; a repetition returns the work it did."""

    def batch(chunk: list[RunSpec]) -> Callable[[], float]:
        return lambda: sum(write(spec) for spec in chunk)

    return [batch(specs[start : start + size]) for start in range(0, len(specs), size)]


def _result(ctx: Context, scenario: str, system: str, label: str, unit: str, kind: str) -> Result:
    return ctx.add(Result(scenario, ctx.name, system, label, unit, kind))


# --- (a), (b), (g): a run's life, then what it occupies ---------------------------------------


def lifecycle(ctx: Context) -> None:
    settings = ctx.settings
    url = ctx.backend.new_database("lifecycle")
    db = TrainingDB(url)
    db.init_db()
    baseline = databases.storage_bytes(url, databases.OUR_TABLES)
    baseline_file = databases.sqlite_file_bytes(url) if ctx.name == "sqlite" else None
    total = settings.runs * settings.repeat
    specs = [completed_run(settings.seed, index, prefix="life") for index in range(total + 1)]
    histories = {
        spec.run_id: make_history(settings.seed, spec.index, spec.objectives) for spec in specs
    }
    check_spec, timed_specs = specs[0], specs[1:]

    launched = _result(ctx, "a", "ours", "insert_run + insert_objective x3-5", "runs/s", OURS)
    finished = _result(ctx, "b", "ours", "finish_run(summary=, history=)", "runs/s", OURS)
    ok_launch = checked(launched, lambda: _check_launch(db, check_spec))
    ok_finish = ok_launch and checked(
        finished, lambda: _check_finish(db, check_spec, histories[check_spec.run_id])
    )

    def finish(spec: RunSpec) -> float:
        db.finish_run(
            spec.run_id, "completed", summary=spec.summary, history=histories[spec.run_id]
        )
        return 1.0

    ctx.log(f"(a) launch and (b) completion of {total} runs")
    systems: dict[str, list[Callable[[], float]]] = {}
    if ok_launch:
        systems["a"] = batches_of(timed_specs, settings.runs, lambda spec: launch(db, spec) or 1.0)
    if ok_finish:
        systems["b"] = batches_of(timed_specs, settings.runs, finish)
    for name, (seconds, work) in interleaved(systems).items():
        target = launched if name == "a" else finished
        target.seconds, target.work = seconds, work

    sizes = databases.storage_bytes(url, databases.OUR_TABLES)
    delta = {table: sizes[table] - baseline[table] for table in sizes}
    file_bytes = None
    if baseline_file is not None:
        file_bytes = databases.sqlite_file_bytes(url) - baseline_file
    ctx.storage.append(
        StorageFigure(
            ctx.name,
            "ours",
            total + 1,
            sum(delta.values()),
            delta,
            file_bytes,
            databases.OUR_HISTORY_TABLES,
        )
    )
    ctx.extra["values_per_run"] = count_values(histories[check_spec.run_id])
    db.dispose()

    if ctx.mlflow is not None:
        _mlflow_lifecycle(ctx, specs, histories)


def _check_launch(db: TrainingDB, spec: RunSpec) -> None:
    launch(db, spec)
    stored = db.get_run(spec.run_id)
    expect(stored is not None and stored["config"] == spec.config, "config differs")
    objectives = {row["objective_name"]: row for row in db.get_run_objectives(spec.run_id)}
    for objective in spec.objectives:
        row = objectives.get(objective["name"])
        expect(row is not None and row["weight"] == objective["weight"], "objective differs")


def _check_finish(db: TrainingDB, spec: RunSpec, history: History) -> None:
    assert spec.summary is not None
    db.finish_run(spec.run_id, "completed", summary=spec.summary, history=history)
    stored = db.get_run(spec.run_id)
    assert stored is not None
    same_summary(stored["final_metrics"], spec.summary)
    for row in db.get_run_objectives(spec.run_id):
        value = spec.summary[f"objectives/{row['objective_alias']}/raw_mean"]
        expect(same_float(row["raw_mean"], value, rel=0.0), "objective value differs")
    for key in (LOSS_KEY, HISTORY_ONLY_KEY):
        expect_same_series(key, our_series(db, spec.run_id, key), expected_series(history, key))


def _mlflow_lifecycle(ctx: Context, specs: list[RunSpec], histories: dict[str, History]) -> None:
    settings = ctx.settings
    assert ctx.mlflow is not None
    store = MlflowStore(
        ctx.mlflow, ctx.backend.new_database("mlflow_lifecycle"), ctx.backend.workdir
    )
    baseline = databases.storage_bytes(store.url, databases.MLFLOW_TABLES)
    baseline_file = databases.sqlite_file_bytes(store.url) if ctx.name == "sqlite" else None
    per_rep = min(settings.mlflow_runs, settings.runs)
    chosen = specs[: per_rep * settings.mlflow_repeat + 1]
    check_spec, timed_specs = chosen[0], chosen[1:]
    ids: dict[str, str] = {}

    launched = _result(ctx, "a", "mlflow", "create_run + log_batch(params)", "runs/s", MLFLOW)
    finished = _result(
        ctx, "b", "mlflow", "log_batch(summary + history) + update_run_info", "runs/s", MLFLOW
    )

    def check_launch() -> None:
        ids[check_spec.run_id] = store.launch(check_spec)
        params = store.store.get_run(ids[check_spec.run_id]).data.params
        expect(params == {k: str(v) for k, v in flatten(check_spec.config)}, "params differ")

    def check_finish() -> None:
        run_id = ids[check_spec.run_id]
        history = histories[check_spec.run_id]
        store.finish(run_id, check_spec, history)
        metrics = store.store.get_run(run_id).data.metrics
        assert check_spec.summary is not None
        for key, value in summary_metric_items(check_spec.summary):
            expect(same_float(metrics[key], value, rel=0.0), f"metric {key!r} differs")
        expect_same_series(
            HISTORY_ONLY_KEY,
            store.metric_history(run_id, HISTORY_ONLY_KEY),
            expected_series(history, HISTORY_ONLY_KEY),
        )

    def launch_one(spec: RunSpec) -> float:
        ids[spec.run_id] = store.launch(spec)
        return 1.0

    def finish_one(spec: RunSpec) -> float:
        store.finish(ids[spec.run_id], spec, histories[spec.run_id])
        return 1.0

    ok_launch = checked(launched, check_launch)
    ok_finish = ok_launch and checked(finished, check_finish)
    ctx.log(f"(a)/(b) MLflow: {len(timed_specs)} runs")
    if ok_launch:
        launched.seconds, launched.work = interleaved(
            {"a": batches_of(timed_specs, per_rep, launch_one)}
        )["a"]
    if ok_finish:
        finished.seconds, finished.work = interleaved(
            {"b": batches_of(timed_specs, per_rep, finish_one)}
        )["b"]
        sizes = databases.storage_bytes(store.url, databases.MLFLOW_TABLES)
        delta = {table: sizes[table] - baseline[table] for table in sizes}
        file_bytes = None
        if baseline_file is not None:
            file_bytes = databases.sqlite_file_bytes(store.url) - baseline_file
        ctx.storage.append(
            StorageFigure(
                ctx.name,
                "mlflow",
                len(chosen),
                sum(delta.values()),
                delta,
                file_bytes,
                databases.MLFLOW_HISTORY_TABLES,
            )
        )
    store.dispose()


# --- (c) history ingest and (f) one metric's history ----------------------------------------


def ingest(ctx: Context) -> None:
    settings = ctx.settings
    url = ctx.backend.new_database("ingest")
    db = TrainingDB(url)
    db.init_db()
    raw = databases.raw_connect(url)
    rawdriver.create_naive_table(raw)
    total = settings.runs * settings.repeat
    indices = list(range(total + 1))
    specs = {index: make_run(settings.seed, index, prefix="ing") for index in indices}
    histories = {
        index: make_history(settings.seed, index, specs[index].objectives) for index in indices
    }
    for index in indices:  # runs the histories belong to (setup, not timed)
        for prefix in ("ing", "ingraw"):
            spec = specs[index]
            db.insert_run(f"{prefix}-{index:07d}", None, spec.config, created_at=spec.created_at)

    ours = _result(ctx, "c", "ours", "log_history (100 steps x 149 keys)", "values/s", OURS)
    layout = _result(
        ctx, "c", "raw-layout", "raw driver, our layout (history + key metrics)", "values/s", RAW
    )
    naive = _result(ctx, "c", "raw-naive", "raw driver, one row per value", "values/s", RAW)

    def write_ours(index: int) -> float:
        return float(db.log_history(f"ing-{index:07d}", histories[index]))

    def write_layout(index: int) -> float:
        return float(rawdriver.write_layout(raw, f"ingraw-{index:07d}", histories[index]))

    def write_naive(index: int) -> float:
        return float(rawdriver.write_naive(raw, f"ingnaive-{index:07d}", histories[index]))

    history0 = histories[0]

    def check_ours() -> None:
        expect(write_ours(0) == count_values(history0), "log_history's count differs")
        for key in logged_points(history0):
            expect_same_series(
                key, our_series(db, "ing-0000000", key), expected_series(history0, key)
            )

    def check_layout() -> None:
        write_layout(0)
        for key in (LOSS_KEY, HISTORY_ONLY_KEY):
            theirs = rawdriver.read_layout(raw, "ingraw-0000000", key)
            expect_same_series(key, our_series(db, "ing-0000000", key), theirs)
        ours_rows = rawdriver.read_key_metrics(raw, "ing-0000000")
        expect(
            len(ours_rows) > 0 and rawdriver.read_key_metrics(raw, "ingraw-0000000") == ours_rows,
            "the raw key-metric rows differ from log_history's",
        )

    def check_naive() -> None:
        expect(write_naive(0) == count_values(history0), "naive row count differs")
        for key in (LOSS_KEY, HISTORY_ONLY_KEY):
            theirs = rawdriver.read_naive(raw, "ingnaive-0000000", key)
            expect_same_series(key, our_series(db, "ing-0000000", key), theirs)

    systems: dict[str, list[Callable[[], float]]] = {}
    timed_indices = indices[1:]
    for result, check, write in (
        (ours, check_ours, write_ours),
        (layout, check_layout, write_layout),
        (naive, check_naive, write_naive),
    ):
        if (result is ours or ours.check == "ok") and checked(result, check):
            systems[result.system] = _index_batches(timed_indices, settings.runs, write)
    ctx.log(f"(c) history ingest: {total} runs per system")
    for name, (seconds, work) in interleaved(systems).items():
        target = {"ours": ours, "raw-layout": layout, "raw-naive": naive}[name]
        target.seconds, target.work = seconds, work

    mlflow_store = None
    if ctx.mlflow is not None:
        mlflow_store = MlflowStore(
            ctx.mlflow, ctx.backend.new_database("mlflow_ingest"), ctx.backend.workdir
        )
        _mlflow_ingest(ctx, mlflow_store, specs, histories)

    _long_runs(ctx, db, raw, mlflow_store)
    raw.close()
    db.dispose()
    if mlflow_store is not None:
        mlflow_store.dispose()


def _index_batches(
    indices: list[int], size: int, write: Callable[[int], float]
) -> list[Callable[[], float]]:
    def batch(chunk: list[int]) -> Callable[[], float]:
        return lambda: sum(write(index) for index in chunk)

    return [batch(indices[start : start + size]) for start in range(0, len(indices), size)]


def _mlflow_ingest(
    ctx: Context, store: MlflowStore, specs: dict[int, RunSpec], histories: dict[int, History]
) -> None:
    settings = ctx.settings
    per_rep = min(settings.mlflow_runs, settings.runs)
    indices = list(range(per_rep * settings.mlflow_repeat + 1))
    ids = {index: store.launch(specs[index]) for index in indices}  # setup
    result = _result(ctx, "c", "mlflow", "log_batch(metrics), 1,000 per call", "values/s", MLFLOW)

    def check() -> None:
        expect(
            store.log_history(ids[0], histories[0]) == count_values(histories[0]), "count differs"
        )
        for key in (LOSS_KEY, HISTORY_ONLY_KEY):
            expected = expected_series(histories[0], key)
            expect_same_series(key, store.metric_history(ids[0], key), expected)

    if checked(result, check):
        ctx.log(f"(c) MLflow: {len(indices) - 1} runs")
        write = lambda index: float(store.log_history(ids[index], histories[index]))  # noqa: E731
        result.seconds, result.work = interleaved(
            {"mlflow": _index_batches(indices[1:], per_rep, write)}
        )["mlflow"]


def _long_runs(ctx: Context, db: TrainingDB, raw: Any, mlflow_store: MlflowStore | None) -> None:
    """(c) at 10,000 steps, then (f): one metric's whole history of such a run."""
    settings = ctx.settings
    steps = settings.long_steps
    label = f"log_history ({steps:,} steps x 149 keys)"
    ours = _result(ctx, "c-long", "ours", label, "values/s", OURS)
    layout = _result(
        ctx,
        "c-long",
        "raw-layout",
        "raw driver, our layout (history + key metrics)",
        "values/s",
        RAW,
    )
    naive = _result(ctx, "c-long", "raw-naive", "raw driver, one row per value", "values/s", RAW)
    first: History | None = None
    ctx.log(f"(c) {settings.long_runs} runs of {steps:,} steps")
    for number in range(settings.long_runs):
        index = LONG_RUN_OFFSET + number
        spec = make_run(settings.seed, index, prefix="long", steps=steps)
        history = make_history(settings.seed, index, spec.objectives, steps)
        for prefix in ("long", "longraw"):
            db.insert_run(f"{prefix}-{number}", None, spec.config, created_at=spec.created_at)
        writers: dict[str, Callable[[], float]] = {
            "ours": lambda h=history, n=number: float(db.log_history(f"long-{n}", h)),
            "raw-layout": lambda h=history, n=number: float(
                rawdriver.write_layout(raw, f"longraw-{n}", h)
            ),
            "raw-naive": lambda h=history, n=number: float(
                rawdriver.write_naive(raw, f"longnaive-{n}", h)
            ),
        }
        for name, (seconds, work) in interleaved({k: [w] for k, w in writers.items()}).items():
            target = {"ours": ours, "raw-layout": layout, "raw-naive": naive}[name]
            target.seconds += seconds
            target.work += work
        if first is None:
            first = history
            if mlflow_store is not None:
                mlflow_id = mlflow_store.launch(spec)
                mlflow_store.bulk_load_history(mlflow_id, history)  # setup, not timed
                ctx.extra["mlflow_long_run"] = mlflow_id
    assert first is not None
    _one_metric(ctx, db, raw, mlflow_store, first, (ours, layout, naive))


def _one_metric(
    ctx: Context,
    db: TrainingDB,
    raw: Any,
    mlflow_store: MlflowStore | None,
    history: History,
    ingest_results: tuple[Result, ...],
) -> None:
    settings = ctx.settings
    expected = expected_series(history, LOSS_KEY)
    label = f"get_history(run, keys=[{LOSS_KEY!r}]), {len(expected):,} points"
    readers: list[tuple[Result, Callable[[], Any], Callable[[], list[tuple[int, Any]]]]] = []
    ours = _result(ctx, "f", "ours", label, "ms", OURS)
    readers.append(
        (
            ours,
            lambda: db.get_history("long-0", keys=[LOSS_KEY]),
            lambda: our_series(db, "long-0", LOSS_KEY),
        )
    )
    layout_read = lambda: rawdriver.read_layout(raw, "longraw-0", LOSS_KEY)  # noqa: E731
    naive_read = lambda: rawdriver.read_naive(raw, "longnaive-0", LOSS_KEY)  # noqa: E731
    readers.append(
        (
            _result(ctx, "f", "raw-layout", "raw driver, our layout", "ms", RAW),
            layout_read,
            layout_read,
        )
    )
    readers.append(
        (
            _result(ctx, "f", "raw-naive", "raw driver, one row per value", "ms", RAW),
            naive_read,
            naive_read,
        )
    )
    if mlflow_store is not None:
        run_id = ctx.extra["mlflow_long_run"]
        mlflow_read = lambda: mlflow_store.metric_history(run_id, LOSS_KEY)  # noqa: E731
        readers.append(
            (
                _result(ctx, "f", "mlflow", "get_metric_history", "ms", MLFLOW),
                mlflow_read,
                mlflow_read,
            )
        )
    for result, call, series in readers:
        if checked(result, lambda s=series: expect_same_series(LOSS_KEY, s(), expected)):
            result.seconds, result.work = time_calls(
                call, settings.repeat * 4, min_total=settings.min_total
            )
    # The long-run ingest figures count only if the stored long histories read back right.
    for result in ingest_results:
        reference = {"ours": readers[0], "raw-layout": readers[1], "raw-naive": readers[2]}[
            result.system
        ]
        if reference[0].check != "ok":
            result.check, result.seconds, result.work = reference[0].check, [], []
