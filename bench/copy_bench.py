"""Benchmark of `training-db copy`: 200 workload runs from SQLite to PostgreSQL.

    python -m bench.copy_bench [--runs 200] [--repeat 3]

Fills a SQLite file through the public API (insert_run, insert_objective, finish_run with
summary and a 149-key x 100-step history), then copies it into a fresh PostgreSQL database
`--repeat` times, and prints the median and spread of runs/s and history values/s. The
PostgreSQL admin URL comes from TRAINING_DB_BENCH_POSTGRES_URL (default: the local server).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.databases import pg_admin_url
from bench.workload import completed_run, count_values, make_history
from training_db import TrainingDB
from training_db.core.settings import sqlite_url
from training_db.ops.transfer import copy_database

SEED = 20261123


def fill(database: TrainingDB, runs: int) -> int:
    """Record ``runs`` completed runs; returns the number of history values stored."""
    values = 0
    for index in range(runs):
        spec = completed_run(SEED, index, prefix="copy")
        database.insert_run(
            spec.run_id,
            spec.wandb_run_id,
            spec.config,
            run_name=spec.run_name,
            host=spec.host,
            created_at=spec.created_at,
        )
        for objective in spec.objectives:
            database.insert_objective(
                spec.run_id,
                objective["name"],
                objective_alias=objective["alias"],
                weight=objective["weight"],
                direction=objective["direction"],
            )
        history = make_history(SEED, index, spec.objectives)
        values += count_values(history)
        database.finish_run(spec.run_id, "completed", spec.summary, history=history)
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    admin = pg_admin_url()
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with tempfile.TemporaryDirectory() as folder:
        source = sqlite_url(Path(folder) / "source.db")
        values = fill(TrainingDB(source), args.runs)
        seconds: list[float] = []
        for attempt in range(args.repeat):
            name = f"mangodb_bench_copy_{attempt}"
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            started = time.perf_counter()
            report = copy_database(source, admin.set(database=name))
            seconds.append(time.perf_counter() - started)
            if not report.ok:
                raise SystemExit(f"copy verification failed:\n{report.format()}")
            with admin_engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin_engine.dispose()
    median = statistics.median(seconds)
    print(
        f"copy SQLite -> PostgreSQL, {args.runs} runs, {values:,} history values, "
        f"{args.repeat} repetitions (copy + verification):"
    )
    print(f"  seconds: median {median:.2f} (min {min(seconds):.2f}, max {max(seconds):.2f})")
    print(f"  runs/s: {args.runs / median:,.1f}   history values/s: {values / median:,.0f}")


if __name__ == "__main__":
    main()
