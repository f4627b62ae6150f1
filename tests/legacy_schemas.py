"""Databases as the old hand-written module left them (before Alembic), for adoption tests.

Reconstructed from the module's notes (``/work/shared/seeds/001_*`` and ``002_*``): v1 is the
``training_runs`` table of ``schema.sql``; v2 is what ``migrate_to_v2.py`` made of it (the new
columns appended with ``ALTER TABLE ... ADD COLUMN``, plus ``run_objectives``). Columns are
TEXT / REAL / INTEGER, timestamps are text (``CURRENT_TIMESTAMP`` defaults, ``isoformat()``
strings with and without ``Z``), JSON is ``json.dumps`` text with ``NaN`` / ``Infinity``
tokens, and there is no ``alembic_version``. The PostgreSQL flavour is the same schema typed the
way a hand port would have typed it (``SERIAL`` ids, some ``TIMESTAMP`` columns, ``REAL``).

The rows are plain SQL, as the old module's ``INSERT`` statements wrote them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL

UTC = dt.timezone.utc

STATUS_CHECK = "CHECK (status IN ('launched', 'running', 'completed', 'failed', 'crashed'))"

V1_COLUMNS_SQLITE = f"""
    run_id TEXT PRIMARY KEY,
    wandb_run_id TEXT UNIQUE,
    wandb_url TEXT,
    run_name TEXT,
    chain_of_custody_id TEXT,
    config_file_path TEXT,
    host TEXT,
    instance_id TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
    duration_seconds INTEGER,
    status TEXT NOT NULL DEFAULT 'launched' {STATUS_CHECK},
    batch_size INTEGER,
    learning_rate REAL,
    beta REAL,
    gradient_method TEXT,
    num_gpus INTEGER,
    num_objectives INTEGER,
    num_scaffolds INTEGER,
    config_json TEXT,
    final_metrics_json TEXT,
    blog_post_url TEXT,
    conversation_s3_key TEXT,
    crash_report_s3_key TEXT,
    error_log_s3_key TEXT,
    crash_analysis_s3_key TEXT,
    created_at_db TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at_db TIMESTAMP DEFAULT CURRENT_TIMESTAMP
"""

SQLITE_V1: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS training_runs ({V1_COLUMNS_SQLITE})",
    "CREATE INDEX IF NOT EXISTS idx_status ON training_runs(status)",
    "CREATE INDEX IF NOT EXISTS idx_gradient_method ON training_runs(gradient_method)",
    "CREATE INDEX IF NOT EXISTS idx_created_at ON training_runs(created_at)",
    "CREATE INDEX IF NOT EXISTS idx_chain_of_custody ON training_runs(chain_of_custody_id)",
    """CREATE TRIGGER IF NOT EXISTS update_training_runs_timestamp
       AFTER UPDATE ON training_runs
       BEGIN
           UPDATE training_runs SET updated_at_db = CURRENT_TIMESTAMP WHERE run_id = NEW.run_id;
       END""",
)

# A hand port to PostgreSQL: the lifecycle timestamps stay TEXT, the audit ones TIMESTAMP.
V1_COLUMNS_POSTGRES = (
    V1_COLUMNS_SQLITE.replace("created_at TIMESTAMP DEFAULT", "created_at TEXT DEFAULT")
    .replace("started_at TIMESTAMP", "started_at TEXT")
    .replace("ended_at TIMESTAMP", "ended_at TEXT")
)

POSTGRES_V1: tuple[str, ...] = (
    f"CREATE TABLE IF NOT EXISTS training_runs ({V1_COLUMNS_POSTGRES})",
    "CREATE INDEX IF NOT EXISTS idx_status ON training_runs(status)",
    "CREATE INDEX IF NOT EXISTS idx_gradient_method ON training_runs(gradient_method)",
    "CREATE INDEX IF NOT EXISTS idx_created_at ON training_runs(created_at)",
)

# migrate_to_v2.py: the new extracted columns and the summary columns, appended.
V2_NEW_COLUMNS = (
    ("gradient_accumulation_steps", "INTEGER"),
    ("model_name", "TEXT"),
    ("optimizer", "TEXT"),
    ("lr_scheduler", "TEXT"),
    ("warmup_steps", "INTEGER"),
    ("weight_decay", "REAL"),
    ("max_grad_norm", "REAL"),
    ("num_epochs", "INTEGER"),
    ("max_steps", "INTEGER"),
    ("seed", "INTEGER"),
    ("lora_rank", "INTEGER"),
    ("num_generations", "INTEGER"),
    ("temperature", "REAL"),
    ("final_loss", "REAL"),
    ("total_training_steps", "INTEGER"),
)

OBJECTIVE_COLUMNS = """
    run_id TEXT NOT NULL,
    objective_name TEXT NOT NULL,
    objective_alias TEXT,
    uniprot TEXT,
    weight REAL,
    direction TEXT CHECK (direction IN ('maximize', 'minimize')),
    raw_mean {float},
    normalized_mean {float},
    raw_std {float},
    normalized_std {float},
    FOREIGN KEY (run_id) REFERENCES training_runs(run_id) ON DELETE CASCADE,
    UNIQUE (run_id, objective_name)
"""


def _v2(v1: tuple[str, ...], id_column: str, float_type: str) -> tuple[str, ...]:
    return (
        *v1,
        *(f"ALTER TABLE training_runs ADD COLUMN {name} {kind}" for name, kind in V2_NEW_COLUMNS),
        f"""CREATE TABLE IF NOT EXISTS run_objectives (
            {id_column},
            {OBJECTIVE_COLUMNS.format(float=float_type)}
        )""",
        "CREATE INDEX IF NOT EXISTS idx_objectives_run ON run_objectives(run_id)",
        "CREATE INDEX IF NOT EXISTS idx_objectives ON run_objectives(objective_name, raw_mean)",
    )


SQLITE_V2 = _v2(SQLITE_V1, "id INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")
POSTGRES_V2 = _v2(POSTGRES_V1, "id SERIAL PRIMARY KEY", "DOUBLE PRECISION")

SCHEMAS: dict[tuple[str, int], tuple[str, ...]] = {
    ("sqlite", 1): SQLITE_V1,
    ("sqlite", 2): SQLITE_V2,
    ("postgresql", 1): POSTGRES_V1,
    ("postgresql", 2): POSTGRES_V2,
}

# --- the rows ------------------------------------------------------------------------------------

COMPLETED_CONFIG: dict[str, Any] = {
    "training": {"batch_size": 64, "learning_rate": 1e-4, "gradient_method": "mgda", "beta": 0.04},
    "objectives": [
        {"name": "COMT_activity", "alias": "COMT_activity_maximize", "weight": 1.0},
        {"name": "DRD5_activity", "alias": "DRD5_activity_maximize", "weight": 0.5},
    ],
    "reward": {"clip": float("inf"), "baseline": float("nan"), "floor": float("-inf")},
    "model": {"base_model": "mango-7b"},
}
COMPLETED_SUMMARY: dict[str, Any] = {
    "train/loss": float("nan"),
    "objectives/COMT_activity_maximize/raw_mean": 0.856,
    "objectives/DRD5_activity_maximize/raw_mean": 0.743,
    "best/reward": float("-inf"),
    "huge": 1e20,
    "signed_zero": -0.0,
    "_step": 1200,
    "_runtime": 7200.5,
}
CRASHED_CONFIG: dict[str, Any] = {
    "training": {"batch_size": 32, "gradient_accumulation_steps": 8, "max_steps": 500},
    "model": {"base_model": "mango-7b"},
    "seed": 3,
    "gradient_method": "pcgrad",
}

# What adoption must give back for each run (timestamps aware UTC).
EXPECTED_RUNS: dict[str, dict[str, Any]] = {
    "mgda_i-0a1": {
        "wandb_run_id": "wb-0a1",
        "status": "completed",
        "host": "ec2",
        "created_at": dt.datetime(2025, 11, 11, 9, 30, 0, tzinfo=UTC),
        "started_at": dt.datetime(2025, 11, 11, 9, 31, 2, 123456, tzinfo=UTC),
        "ended_at": dt.datetime(2025, 11, 11, 11, 31, 2, 500000, tzinfo=UTC),
        "duration_seconds": 7200.0,
        "batch_size": 64,
        "learning_rate": 1e-4,
        "gradient_method": "mgda",
        "num_gpus": 4,
        "config": COMPLETED_CONFIG,
        "final_metrics": COMPLETED_SUMMARY,
        "blog_post_url": "https://blog.example/posts/mgda",
    },
    "pcgrad_i-0b2": {
        "wandb_run_id": None,
        "status": "crashed",
        "created_at": dt.datetime(2025, 11, 12, 8, 0, 0, tzinfo=UTC),
        "started_at": dt.datetime(2025, 11, 12, 8, 1, 0, tzinfo=UTC),
        # written as a local time with its offset: 14:00+05:30 is 08:30 UTC
        "ended_at": dt.datetime(2025, 11, 12, 8, 30, 0, tzinfo=UTC),
        "batch_size": 32,
        "config": CRASHED_CONFIG,
        "final_metrics": None,
        "crash_analysis_s3_key": "crash-reports/pcgrad_i-0b2/analysis.md",
    },
    "launched_i-0c3": {
        "status": "launched",
        "config": None,
        "started_at": None,
    },
}
RUN_IDS = tuple(EXPECTED_RUNS)

V1_ROWS: tuple[str, ...] = (
    "INSERT INTO training_runs (run_id, wandb_run_id, wandb_url, run_name, chain_of_custody_id,"
    " config_file_path, host, instance_id, created_at, started_at, ended_at, duration_seconds,"
    " status, batch_size, learning_rate, beta, gradient_method, num_gpus, num_objectives,"
    " config_json, final_metrics_json, blog_post_url, created_at_db, updated_at_db) VALUES ("
    "'mgda_i-0a1', 'wb-0a1', 'https://wandb.ai/mango/runs/wb-0a1', 'mgda_4gpu', 'ABC123',"
    " '/configs/mgda.yaml', 'ec2', 'i-0a1', '2025-11-11 09:30:00', '2025-11-11T09:31:02.123456',"
    " '2025-11-11T11:31:02.5Z', 7200, 'completed', 64, 0.0001, 0.04, 'mgda', 4, 2,"
    f" '{json.dumps(COMPLETED_CONFIG)}', '{json.dumps(COMPLETED_SUMMARY)}',"
    " 'https://blog.example/posts/mgda', '2025-11-11 09:30:00', '2025-11-11 11:31:03')",
    "INSERT INTO training_runs (run_id, config_json, host, instance_id, created_at, started_at,"
    " ended_at, status, batch_size, crash_analysis_s3_key, created_at_db, updated_at_db)"
    f" VALUES ('pcgrad_i-0b2', '{json.dumps(CRASHED_CONFIG)}', 'expanse', '81234',"
    " '2025-11-12 08:00:00', '2025-11-12 08:01:00+00:00', '2025-11-12T14:00:00+05:30',"
    " 'crashed', 32, 'crash-reports/pcgrad_i-0b2/analysis.md', '2025-11-12 08:00:00',"
    " '2025-11-12 08:30:00')",
    "INSERT INTO training_runs (run_id, config_json, host) VALUES ('launched_i-0c3', NULL, 'ec2')",
)

V2_ROWS: tuple[str, ...] = (
    *V1_ROWS,
    "UPDATE training_runs SET gradient_accumulation_steps = 4, model_name = 'mango-7b',"
    " optimizer = 'adamw', final_loss = 0.123, total_training_steps = 1200"
    " WHERE run_id = 'mgda_i-0a1'",
    "INSERT INTO run_objectives (id, run_id, objective_name, objective_alias, uniprot, weight,"
    " direction, raw_mean, normalized_mean, raw_std, normalized_std) VALUES"
    " (3, 'mgda_i-0a1', 'COMT_activity', 'COMT_activity_maximize', 'P21964', 1.0, 'maximize',"
    " 0.856, 0.892, 0.05, 0.04)",
    # 'NaN' as the old module's float('nan') parameter ended up: text in SQLite's REAL column,
    # a real NaN in PostgreSQL's DOUBLE PRECISION.
    "INSERT INTO run_objectives (id, run_id, objective_name, objective_alias, weight, direction,"
    " raw_mean, raw_std) VALUES (7, 'mgda_i-0a1', 'DRD5_activity', 'DRD5_activity_maximize', 0.5,"
    " 'maximize', 0.743, 'NaN')",
)

EXPECTED_OBJECTIVES: dict[int, dict[str, Any]] = {
    3: {
        "objective_name": "COMT_activity",
        "uniprot": "P21964",
        "weight": 1.0,
        "direction": "maximize",
        "raw_mean": 0.856,
        "normalized_mean": 0.892,
        "raw_std": 0.05,
    },
    7: {"objective_name": "DRD5_activity", "raw_mean": 0.743, "raw_std": None},
}

ROWS = {1: V1_ROWS, 2: V2_ROWS}


def execute_all(url: URL, statements: tuple[str, ...]) -> None:
    """Run plain SQL statements in one transaction (as the old module did, driver-level)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(_escape_percent(url, statement))
    finally:
        engine.dispose()


def _escape_percent(url: URL, statement: str) -> str:
    # psycopg2 treats % as a parameter marker even without parameters
    return statement.replace("%", "%%") if url.get_backend_name() == "postgresql" else statement


def create_legacy_database(url: URL, backend: str, version: int) -> None:
    """The old module's schema ``version`` (1 or 2) with its rows, at ``url``."""
    execute_all(url, SCHEMAS[(backend, version)] + ROWS[version])
