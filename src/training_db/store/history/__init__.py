"""The history store, in parts: `codec` (the binary arrays), `shapes` (the input shapes),
`rows` (a run's ``run_history`` rows), `keymetrics` (the per-step key metrics) and `store`
(the repository functions: ``log_history``, ``get_history``, ``delete_history``)."""

from training_db.store.history.codec import (
    decode_series,
    decode_steps,
    encode_series,
    encode_steps,
    pack_planes,
    unpack_planes,
)
from training_db.store.history.keymetrics import DEFAULT_KEY_METRICS, KeyMetricMapping
from training_db.store.history.shapes import (
    STEP_KEY,
    TIMESTAMP_KEY,
    HistoryColumns,
    MetricSeries,
    normalize_history,
    to_columns,
)
from training_db.store.history.store import (
    delete_history,
    get_history,
    has_history,
    history_json,
    list_metrics,
    log_history,
    metric_series,
    read_history,
    require_known_metrics,
)

__all__ = [
    "DEFAULT_KEY_METRICS",
    "STEP_KEY",
    "TIMESTAMP_KEY",
    "HistoryColumns",
    "KeyMetricMapping",
    "MetricSeries",
    "decode_series",
    "decode_steps",
    "delete_history",
    "encode_series",
    "encode_steps",
    "get_history",
    "has_history",
    "history_json",
    "list_metrics",
    "log_history",
    "metric_series",
    "normalize_history",
    "pack_planes",
    "read_history",
    "require_known_metrics",
    "to_columns",
    "unpack_planes",
]
