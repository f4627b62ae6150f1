"""The settings of `training_db.safe`, read from the environment at each use (so a training
script may change them while it runs), and its one logger."""

from __future__ import annotations

import logging
import math
import os
from typing import Final

logger = logging.getLogger("training_db.safe")

TIMEOUT_ENV: Final = "TRAINING_DB_SAFE_TIMEOUT"
AUTO_REPLAY_ENV: Final = "TRAINING_DB_SPOOL_AUTO_REPLAY"
REPLAY_INTERVAL_ENV: Final = "TRAINING_DB_SPOOL_REPLAY_INTERVAL"
DEFAULT_TIMEOUT_S: Final = 20.0
DEFAULT_REPLAY_INTERVAL_S: Final = 30.0
FIRST_RETRY_S: Final = 1.0  # the worker's first replay after a failure; doubling up to the interval


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    """A positive number of seconds from the environment; a bad value warns and falls back."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        logger.warning("%s=%r is not a valid number of seconds; using %g", name, raw, default)
        return default
    return value


def timeout() -> float:
    """``TRAINING_DB_SAFE_TIMEOUT``: how long a caller waits for its call."""
    return _env_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, allow_zero=False)


def replay_interval() -> float:
    """``TRAINING_DB_SPOOL_REPLAY_INTERVAL``: the longest wait between automatic replays."""
    return _env_seconds(REPLAY_INTERVAL_ENV, DEFAULT_REPLAY_INTERVAL_S, allow_zero=True)


def auto_replay() -> bool:
    """``TRAINING_DB_SPOOL_AUTO_REPLAY``: may calls, the worker and the exit hook replay?"""
    return os.environ.get(AUTO_REPLAY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
