"""Seconds to import real W&B run directories: 100 runs of 1,000 steps x 150 keys by default.

The runs are made with the wandb client in offline mode (no network), one subprocess per
run, and kept in ``--runs-dir`` so later invocations only time the import. Then they are
imported with ``training_db.store.wandb.import_directories`` into a brand-new database
(SQLite file by default, or ``--url``), and the time to read the logs alone is reported
next to it.

    python bench/wandb_import_bench.py                      # SQLite in a temporary folder
    python bench/wandb_import_bench.py --url postgresql://root@127.0.0.1:5432/bench_wandb

The PostgreSQL database named by ``--url`` is dropped and created again first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from training_db import TrainingDB
from training_db.core.wandb_files import find_run_dirs, read_run
from training_db.ops.wandb_import import count_actions, import_directories

SCRIPT = textwrap.dedent(
    """
    import math, sys
    import wandb

    steps, keys, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    objectives = [
        {"name": f"objective_{k}", "alias": f"objective_{k}_maximize", "weight": 1.0 / (k + 1)}
        for k in range(4)
    ]
    config = {
        "training": {"batch_size": 64, "learning_rate": 1e-4, "seed": seed, "max_steps": steps},
        "model": {"base_model": "mango-7b", "lora_rank": 16},
        "objectives": objectives,
    }
    run = wandb.init(project="mangodb-bench", config=config)
    names = ["train/loss", "train/grad_norm", "train/learning_rate"]
    names += [
        f"objectives/objective_{k}_maximize/{metric}"
        for k in range(4)
        for metric in ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
    ]
    names += [f"grads/layer_{k:03d}/norm" for k in range(keys - len(names))]
    for step in range(steps):
        row = {name: math.sin(seed + step * 0.001 + index) for index, name in enumerate(names)}
        if step % 97 == 13:
            row["train/loss"] = float("nan")
        run.log(row)
    run.finish()
    """
)


def wandb_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(root),
        WANDB_CONFIG_DIR=str(root / ".config"),
        WANDB_CACHE_DIR=str(root / ".cache"),
        WANDB_DATA_DIR=str(root / ".data"),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_CONSOLE="off",
        WANDB_ERROR_REPORTING="false",
        WANDB__DISABLE_STATS="true",
        WANDB__DISABLE_META="true",
    )
    return env


def make_runs(runs_dir: Path, count: int, steps: int, keys: int, workers: int) -> float:
    """Make the missing run directories; returns the seconds it took."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    script = runs_dir / "train.py"
    script.write_text(SCRIPT)
    missing = [index for index in range(count) if not (runs_dir / f"run{index:03d}").exists()]

    def make(index: int) -> None:
        workdir = runs_dir / f"run{index:03d}.partial"
        workdir.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, str(script), str(steps), str(keys), str(index)],
            cwd=workdir,
            env=wandb_env(workdir),
            check=True,
            capture_output=True,
            timeout=900,
        )
        workdir.rename(runs_dir / f"run{index:03d}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(make, missing))
    return time.perf_counter() - started


def fresh_database(url: str | None, folder: Path) -> str:
    if url is None:
        return f"sqlite:///{folder / 'bench.db'}"
    parsed = sa.make_url(url)
    admin_url = parsed.set(database="postgres", drivername="postgresql+psycopg2")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    admin.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--keys", type=int, default=150)
    parser.add_argument(
        "--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "mangodb-wandb-bench"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--url", help="a PostgreSQL URL (dropped and created); default SQLite")
    args = parser.parse_args()

    runs_dir = args.runs_dir / f"{args.steps}x{args.keys}-v2"
    made = make_runs(runs_dir, args.runs, args.steps, args.keys, args.workers)
    run_dirs = find_run_dirs([runs_dir / f"run{index:03d}" for index in range(args.runs)])
    megabytes = sum(path.stat().st_size for d in run_dirs for path in d.glob("run-*.wandb")) / 1e6
    print(f"{len(run_dirs)} run directories ({megabytes:.0f} MB of .wandb), made in {made:.0f} s")

    started = time.perf_counter()
    rows = sum(len(read_run(run_dir).history) for run_dir in run_dirs)
    read_seconds = time.perf_counter() - started
    print(f"reading alone: {read_seconds:.1f} s ({rows} history rows)")

    with tempfile.TemporaryDirectory() as folder:
        url = fresh_database(args.url, Path(folder))
        db = TrainingDB(url)
        db.init_db()
        started = time.perf_counter()
        results = import_directories(run_dirs, db=db)
        seconds = time.perf_counter() - started
        counts = count_actions(results)
        started = time.perf_counter()
        again = count_actions(import_directories(run_dirs, db=db))
        recheck = time.perf_counter() - started
        db.dispose()
    backend = "PostgreSQL" if args.url else "SQLite"
    print(
        f"import ({backend}): {seconds:.1f} s for {len(run_dirs)} runs of "
        f"{args.steps} steps x {args.keys} keys ({seconds / len(run_dirs):.2f} s per run) "
        f"{json.dumps(counts)}"
    )
    print(f"re-import (nothing to change): {recheck:.1f} s {json.dumps(again)}")


if __name__ == "__main__":
    main()
