"""MLflow's SQL tracking store used directly (no server), storing the same runs as we do.

A run's config becomes params (flattened dotted keys, as ``mlflow.log_params`` of a nested
config would), the numeric summary values become metrics at the final step, the text
summary values become tags, and every logged history value is one metric row. MLflow is
optional: :func:`load_mlflow` says why it cannot be used, and the scenarios then leave the
MLflow columns out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL

from bench import databases
from bench.workload import STEP_KEY, RunSpec, flatten

MAX_METRICS_PER_BATCH: Final = 1000
MAX_PARAMS_TAGS_PER_BATCH: Final = 100
STATUS_OF: Final = {
    "completed": "FINISHED",
    "crashed": "FAILED",
    "failed": "FAILED",
    "running": "RUNNING",
    "launched": "SCHEDULED",
}
# MLflow keeps NaN as 0 with is_nan set, and clamps infinities to the largest double.
_DOUBLE_MAX: Final = 1.7976931348623157e308


@dataclass(frozen=True)
class MlflowModules:
    SqlAlchemyStore: Any
    Metric: Any
    Param: Any
    RunTag: Any
    RunStatus: Any
    ViewType: Any
    version: str


def load_mlflow() -> MlflowModules | str:
    """MLflow's store classes, or the reason they cannot be imported."""
    try:
        # MLflow is optional: imported only when the comparison runs.
        import mlflow  # noqa: PLC0415
        from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType  # noqa: PLC0415
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: PLC0415
    except ImportError as exc:
        return f"MLflow is not installed ({exc}); the MLflow columns are skipped"
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowModules(
        SqlAlchemyStore, Metric, Param, RunTag, RunStatus, ViewType, str(mlflow.__version__)
    )


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def mlflow_uri(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_metric_items(summary: Mapping[str, Any]) -> list[tuple[str, float]]:
    return [(key, float(value)) for key, value in summary.items() if is_number(value)]


def summary_tag_items(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(key, str(value)) for key, value in summary.items() if not is_number(value)]


def history_rows(history: Mapping[str, list[Any]]) -> Iterator[tuple[str, float, int, int]]:
    """``(key, value, timestamp_ms, step)`` of every logged history value."""
    steps = history[STEP_KEY]
    timestamps = [ms(stamp) for stamp in history["_timestamp"]]
    for key, values in history.items():
        if key == STEP_KEY:
            continue
        for step, stamp, value in zip(steps, timestamps, values, strict=True):
            if value == value:
                yield key, value, stamp, step


class MlflowStore:
    """One MLflow tracking database with one experiment."""

    def __init__(self, modules: MlflowModules, url: URL, artifact_dir: Path) -> None:
        self.m = modules
        self.url = url
        self.store = modules.SqlAlchemyStore(mlflow_uri(url), artifact_dir.as_uri())
        self.experiment_id = self.store.create_experiment("bench")

    def dispose(self) -> None:
        engine = getattr(self.store, "engine", None)
        if engine is not None:
            engine.dispose()

    # --- writes through MLflow's API ---------------------------------------------------------

    def launch(self, spec: RunSpec) -> str:
        """create_run + the flattened config as params; returns MLflow's run id."""
        m = self.m
        run = self.store.create_run(
            self.experiment_id,
            "bench",
            ms(spec.created_at.timestamp()),
            [m.RunTag("mlflow.runName", spec.run_name)],
            spec.run_name,
        )
        run_id = run.info.run_id
        params = [m.Param(key, str(value)) for key, value in flatten(spec.config)]
        for batch in chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
            self.store.log_batch(run_id, metrics=[], params=list(batch), tags=[])
        return str(run_id)

    def log_metrics(self, run_id: str, metrics: Sequence[Any]) -> None:
        for batch in chunks(metrics, MAX_METRICS_PER_BATCH):
            self.store.log_batch(run_id, metrics=list(batch), params=[], tags=[])

    def log_history(self, run_id: str, history: Mapping[str, list[Any]]) -> int:
        """Every logged value as a metric (log_batch, 1,000 per call); the number logged."""
        metric = self.m.Metric
        metrics = [
            metric(key, value, stamp, step) for key, value, stamp, step in history_rows(history)
        ]
        self.log_metrics(run_id, metrics)
        return len(metrics)

    def finish(self, run_id: str, spec: RunSpec, history: Mapping[str, list[Any]]) -> None:
        """The summary (metrics at the final step, text as tags), the history, the status."""
        m = self.m
        assert spec.summary is not None
        final_step = int(spec.summary["_step"])
        stamp = ms(spec.summary["_timestamp"]) + 1
        metrics = [
            m.Metric(key, value, stamp, final_step)
            for key, value in summary_metric_items(spec.summary)
        ]
        metrics += [
            m.Metric(key, value, ts, step) for key, value, ts, step in history_rows(history)
        ]
        self.log_metrics(run_id, metrics)
        tags = [m.RunTag(key, value) for key, value in summary_tag_items(spec.summary)]
        for batch in chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            self.store.log_batch(run_id, metrics=[], params=[], tags=list(batch))
        self.store.update_run_info(run_id, m.RunStatus.FINISHED, stamp, spec.run_name)

    # --- reads ----------------------------------------------------------------------------------

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [
            (metric.step, metric.value) for metric in self.store.get_metric_history(run_id, key)
        ]

    def search(self, filter_string: str, max_results: int) -> list[Any]:
        """Every matching run, newest first (pages of up to ``max_results``)."""
        runs: list[Any] = []
        token = None
        while True:
            page = self.store.search_runs(
                [self.experiment_id],
                filter_string,
                self.m.ViewType.ACTIVE_ONLY,
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token or len(runs) >= max_results:
                return runs

    # --- bulk setup with SQL (never timed) -----------------------------------------------------

    def bulk_load_runs(self, specs: Iterable[RunSpec]) -> None:
        """Runs with their params, final metrics and tags, inserted with the raw driver."""
        runs, latest, params, tags = [], [], [], []
        sqlite = self.url.get_backend_name() == "sqlite"
        for spec in specs:
            start = ms(spec.created_at.timestamp())
            end = None if spec.summary is None else start + ms(spec.summary["_runtime"])
            runs.append(
                (
                    spec.run_id,
                    spec.run_name,
                    "LOCAL",
                    "",
                    "",
                    "bench",
                    STATUS_OF[spec.status],
                    start,
                    end,
                    None,
                    "",
                    "active",
                    f"file:///tmp/bench/{spec.run_id}",
                    int(self.experiment_id),
                )
            )
            for key, value in flatten(spec.config):
                params.append((key, str(value), spec.run_id))
            tags.append(("mlflow.runName", spec.run_name, spec.run_id))
            if spec.summary is None:
                continue
            final_step = int(spec.summary["_step"])
            for key, value in summary_metric_items(spec.summary):
                is_nan = math.isnan(value)
                stored = 0.0 if is_nan else max(-_DOUBLE_MAX, min(_DOUBLE_MAX, value))
                flag: Any = int(is_nan) if sqlite else is_nan
                latest.append((key, stored, end, final_step, flag, spec.run_id))
            for key, value in summary_tag_items(spec.summary):
                tags.append((key, value, spec.run_id))
        connection = databases.raw_connect(self.url)
        try:
            databases.bulk_insert(
                connection,
                "runs",
                (
                    "run_uuid",
                    "name",
                    "source_type",
                    "source_name",
                    "entry_point_name",
                    "user_id",
                    "status",
                    "start_time",
                    "end_time",
                    "deleted_time",
                    "source_version",
                    "lifecycle_stage",
                    "artifact_uri",
                    "experiment_id",
                ),
                runs,
            )
            databases.bulk_insert(
                connection,
                "latest_metrics",
                ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
                latest,
            )
            databases.bulk_insert(connection, "params", ("key", "value", "run_uuid"), params)
            databases.bulk_insert(connection, "tags", ("key", "value", "run_uuid"), tags)
        finally:
            connection.close()

    def bulk_load_history(self, run_id: str, history: Mapping[str, list[Any]]) -> None:
        """One run's whole history as metric rows, inserted with the raw driver."""
        sqlite = self.url.get_backend_name() == "sqlite"
        flag: Any = 0 if sqlite else False
        rows = (
            (key, value, stamp, step, flag, run_id)
            for key, value, stamp, step in history_rows(history)
        )
        connection = databases.raw_connect(self.url)
        try:
            databases.bulk_insert(
                connection,
                "metrics",
                ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
                rows,
            )
        finally:
            connection.close()
