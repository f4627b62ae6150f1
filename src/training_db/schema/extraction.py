"""Which config values are copied into their own columns, and how they are found.

``EXTRACTED_COLUMNS`` is the one mapping: column name → the config keys that may hold it.
A key is looked up in ``config['training']`` first, then at the top level, then in the
other top-level sections in their order; the first scalar found wins. Values that cannot
be converted to the column's type are left out of the column (the whole config is still in
``config_json``): among them whole numbers beyond 64 bits, which no integer column holds.

To add an extracted column: add it to ``TrainingRun`` (``schema/runs.py``), add one entry
here, and write one Alembic revision that adds the column and backfills existing runs with
its own copy of the rule (see ``alembic/versions/0002_v2_*.py``): a revision never imports
this module, whose rules may change after it was written.

The rules are the schema's (which column holds which config value), so they live in this
layer, below the store that applies them to new runs and beside the adoption of old
databases that applies them to old ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from training_db.core import jsoncodec
from training_db.core.types import fits_int64

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractedColumn:
    """A column filled from the config: the keys that may hold it and its Python type."""

    keys: tuple[str, ...]
    kind: type[int] | type[float] | type[str]


EXTRACTED_COLUMNS: Final[dict[str, ExtractedColumn]] = {
    # v1
    "batch_size": ExtractedColumn(("batch_size", "per_device_train_batch_size"), int),
    "learning_rate": ExtractedColumn(("learning_rate", "lr"), float),
    "beta": ExtractedColumn(("beta", "kl_coef", "kl_beta"), float),
    "gradient_method": ExtractedColumn(("gradient_method",), str),
    "num_gpus": ExtractedColumn(("num_gpus", "gpus", "n_gpus"), int),
    "num_objectives": ExtractedColumn(("num_objectives",), int),
    "num_scaffolds": ExtractedColumn(("num_scaffolds",), int),
    # v2
    "gradient_accumulation_steps": ExtractedColumn(("gradient_accumulation_steps",), int),
    "model_name": ExtractedColumn(("model_name", "base_model", "model_name_or_path"), str),
    "optimizer": ExtractedColumn(("optimizer", "optim"), str),
    "lr_scheduler": ExtractedColumn(("lr_scheduler", "lr_scheduler_type", "scheduler"), str),
    "warmup_steps": ExtractedColumn(("warmup_steps",), int),
    "weight_decay": ExtractedColumn(("weight_decay",), float),
    "max_grad_norm": ExtractedColumn(("max_grad_norm", "grad_clip"), float),
    "num_epochs": ExtractedColumn(("num_epochs", "num_train_epochs", "epochs"), int),
    "max_steps": ExtractedColumn(("max_steps",), int),
    "seed": ExtractedColumn(("seed",), int),
    "lora_rank": ExtractedColumn(("lora_rank", "lora_r"), int),
    "num_generations": ExtractedColumn(("num_generations",), int),
    "temperature": ExtractedColumn(("temperature",), float),
}

# Count fallbacks: the length of a list section when the count key itself is absent.
COUNT_FALLBACKS: Final[dict[str, str]] = {
    "num_objectives": "objectives",
    "num_scaffolds": "scaffolds",
}


def extract_columns(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The extracted column values for ``config`` (None where a value is absent or unusable)."""
    return {name: extract_column(config, name) for name in EXTRACTED_COLUMNS}


def extract_column(config: Mapping[str, Any] | None, name: str) -> Any:
    """One extracted column's value, or None."""
    if not isinstance(config, Mapping):
        return None
    spec = EXTRACTED_COLUMNS[name]
    for section in _sections_in_lookup_order(config):
        for key in spec.keys:
            if key in section:
                value = _convert(section[key], spec.kind)
                if value is not None:
                    return value
    fallback = COUNT_FALLBACKS.get(name)
    if fallback is not None and isinstance(config.get(fallback), (list, tuple)):
        return len(config[fallback])
    return None


def _sections_in_lookup_order(config: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    training = config.get("training")
    if isinstance(training, Mapping):
        yield training
    yield config
    for key, section in config.items():
        if key != "training" and isinstance(section, Mapping):
            yield section


def _convert(value: Any, kind: Callable[[Any], Any]) -> Any:
    """``value`` as the column's type, or None when it is not a usable scalar of that type."""
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return None
    value = jsoncodec.to_jsonable(value) if not isinstance(value, (str, int, float)) else value
    try:
        if kind is int:
            return _to_int(value)
        if kind is float:
            if isinstance(value, bool):
                return None
            number = float(value)
            return number if math.isfinite(number) else None
        return str(value) if not isinstance(value, bool) else str(value).lower()
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        logger.debug("config value %r is not a %s; column left empty", value, kind)
        return None


def _to_int(value: Any) -> int | None:
    """A whole number that fits the 64-bit column, or None; exact for ints and their text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        number = _int_from_text(value)
    else:
        number = int(value)
    return number if number is not None and fits_int64(number) else None


def _int_from_text(text: str) -> int | None:
    """``"12"`` exactly (through a float, 2**53 + 1 would lose its last digit); ``"1e3"`` too."""
    try:
        return int(text)
    except ValueError:
        number = float(text)
        return int(number) if number.is_integer() else None


def backfill_extracted_columns(connection: Connection, column_names: Iterable[str]) -> int:
    """Fill ``column_names`` of existing runs from their ``config_json`` by the current rules;
    used when adopting a database made by the old module (`training_db.schema.adoption`).

    Only NULL columns are filled, so re-running it or running it on rows inserted by newer
    code changes nothing. Returns the number of rows updated.
    """
    names = list(column_names)
    runs = sa.table(
        "training_runs",
        sa.column("run_id", sa.String()),
        sa.column("config_json", sa.JSON()),
        *(sa.column(name) for name in names),
    )
    updated = 0
    rows = connection.execute(sa.select(runs).where(runs.c.config_json.is_not(None))).all()
    for row in rows:
        config = jsoncodec.decode_document(row.config_json)
        values = {
            name: extract_column(config, name)
            for name in names
            if getattr(row, name) is None and extract_column(config, name) is not None
        }
        if values:
            connection.execute(sa.update(runs).where(runs.c.run_id == row.run_id).values(**values))
            updated += 1
    return updated
