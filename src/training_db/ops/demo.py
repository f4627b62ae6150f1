"""Demo data: a few realistic runs walked through the public API, as training code would.

Used by ``training-db demo``; deterministic, and re-running it skips runs already there.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from training_db.core.errors import translated_errors
from training_db.core.settings import safe_url, sqlite_file
from training_db.db import Database

OBJECTIVES: Final = (
    ("COMT_activity", "maximize", "P21964"),
    ("DRD5_activity", "maximize", "P21918"),
    ("QED", "maximize", None),
)
EPOCH: Final = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class DemoRun:
    run_id: str
    gradient_method: str
    batch_size: int
    learning_rate: float
    outcome: str  # completed | crashed | running
    day: int


DEMO_RUNS: Final = (
    DemoRun("demo_mgda_bs64_i-0a1", "mgda", 64, 1e-4, "completed", 0),
    DemoRun("demo_mgda_bs128_i-0a2", "mgda", 128, 5e-5, "completed", 1),
    DemoRun("demo_pcgrad_bs64_i-0b1", "pcgrad", 64, 1e-4, "completed", 2),
    DemoRun("demo_pcgrad_bs32_i-0b2", "pcgrad", 32, 3e-4, "crashed", 3),
    DemoRun("demo_imtlg_bs64_i-0c1", "imtlg", 64, 1e-4, "completed", 4),
    DemoRun("demo_mgda_bs64_i-0a3", "mgda", 64, 2e-4, "running", 5),
)


def demo_config(spec: DemoRun) -> dict[str, Any]:
    """A nested YAML-like config as launch_ec2.py would load it."""
    return {
        "training": {
            "batch_size": spec.batch_size,
            "learning_rate": spec.learning_rate,
            "gradient_method": spec.gradient_method,
            "gradient_accumulation_steps": 4,
            "max_steps": 1000,
            "warmup_steps": 50,
            "weight_decay": 0.01,
            "max_grad_norm": 1.0,
            "seed": 42,
            "beta": 0.04,
        },
        "model": {"base_model": "mango-7b", "lora_rank": 16},
        "generation": {"num_generations": 8, "temperature": 0.9},
        "objectives": [
            {
                "name": name,
                "alias": f"{name}_{direction}",
                "direction": direction,
                "weight": 1.0,
                "params": {"uniprot": uniprot},
            }
            for name, direction, uniprot in OBJECTIVES
        ],
        "hardware": {"num_gpus": 4},
    }


def demo_summary(spec: DemoRun, rng: random.Random) -> dict[str, Any]:
    """A W&B-like final summary, with objective scores and a few odd values."""
    quality = {"mgda": 0.85, "pcgrad": 0.8, "imtlg": 0.75}[spec.gradient_method]
    summary: dict[str, Any] = {
        "train/loss": round(0.9 - quality + rng.uniform(0, 0.05), 4),
        "train/grad_norm": round(rng.uniform(0.5, 2.0), 3),
        "_step": 1000,
        "_runtime": 3600.0 * (2 + spec.day % 3) + rng.uniform(0, 300),
        "git_commit": "a135c627",
        "git_dirty": False,
        "eval/kl": float("nan") if spec.batch_size == 128 else rng.uniform(0, 0.1),
    }
    for name, direction, _ in OBJECTIVES:
        raw = min(1.0, quality + rng.uniform(-0.1, 0.1))
        summary[f"objectives/{name}_{direction}/raw_mean"] = round(raw, 4)
        summary[f"objectives/{name}_{direction}/normalized_mean"] = round(raw * 0.95, 4)
        summary[f"objectives/{name}_{direction}/raw_std"] = round(rng.uniform(0.01, 0.1), 4)
    return summary


HISTORY_STEPS: Final = 100


def demo_history(spec: DemoRun, rng: random.Random, steps: int) -> list[dict[str, Any]]:
    """W&B-like history rows: a decaying loss, grad norm, learning rate, objective scores."""
    quality = {"mgda": 0.85, "pcgrad": 0.8, "imtlg": 0.75}[spec.gradient_method]
    rows: list[dict[str, Any]] = []
    for step in range(steps):
        progress = step / HISTORY_STEPS
        row: dict[str, Any] = {
            "_step": step * 10,
            "_timestamp": EPOCH.timestamp() + spec.day * 86400 + step * 60,
            "train/loss": round(
                (0.9 - quality) + 0.8 * math.exp(-5 * progress) + rng.gauss(0, 0.01), 5
            ),
            "train/grad_norm": round(abs(rng.gauss(1.0, 0.2)), 4),
            "train/learning_rate": spec.learning_rate * min(1.0, (step + 1) / 10),
        }
        if step % 5 == 0:  # objectives are scored every 5 steps: a sparse key
            for name, direction, _ in OBJECTIVES:
                row[f"objectives/{name}_{direction}/raw_mean"] = round(
                    quality * (1 - math.exp(-4 * progress)) + rng.gauss(0, 0.01), 4
                )
        rows.append(row)
    if spec.outcome == "crashed":
        rows[-1]["train/loss"] = float("nan")  # the divergence that crashed it
    return rows


def record_demo_runs(db: Database, log: Callable[[str], object] = print) -> list[str]:
    """Record the demo runs that are not there yet; returns their ids.

    Creates the database at head first: the demo writes, and its first look (is this run
    recorded already?) is a read, which would refuse a database file that does not exist.
    """
    db.init_db()
    recorded: list[str] = []
    for spec in DEMO_RUNS:
        if db.get_run(spec.run_id) is not None:
            log(f"  {spec.run_id}: already recorded")
            continue
        _record(db, spec, random.Random(spec.run_id))  # noqa: S311 - demo data
        log(f"  {spec.run_id}: launched → running → {spec.outcome}")
        recorded.append(spec.run_id)
    return recorded


def count_other_runs(db: Database) -> int:
    """How many runs the database holds that are not demo runs (0 if it does not exist yet).

    Counted at any schema revision, before the demo migrates anything: ``training-db demo``
    asks before it writes into a database that holds someone's real runs.
    """
    path = sqlite_file(db.url)
    if path is not None and not path.exists():
        return 0
    runs = sa.table("training_runs", sa.column("run_id"))
    with translated_errors(safe_url(db.url)), db.engine.connect() as connection:
        if not sa.inspect(connection).has_table("training_runs"):
            return 0
        count = sa.select(sa.func.count()).select_from(runs)
        ids = [spec.run_id for spec in DEMO_RUNS]
        return int(connection.execute(count.where(runs.c.run_id.not_in(ids))).scalar_one())


def _record(db: Database, spec: DemoRun, rng: random.Random) -> None:
    launched = EPOCH + dt.timedelta(days=spec.day)
    started = launched + dt.timedelta(minutes=5)
    instance_id = spec.run_id.rsplit("_", 1)[-1]
    # 1. Launch (launch_ec2.py)
    db.insert_run(
        run_id=spec.run_id,
        wandb_run_id=None,
        config_dict=demo_config(spec),
        chain_of_custody_id=f"C{spec.day:05d}",
        run_name=spec.run_id,
        config_file_path=f"configs/{spec.gradient_method}.yaml",
        host="ec2",
        instance_id=instance_id,
        created_at=launched,
    )
    db.attach_conversation(spec.run_id, f"conversations/{spec.run_id}/conversation.json")
    for objective in demo_config(spec)["objectives"]:
        db.insert_objective(
            spec.run_id,
            objective["name"],
            objective_alias=objective["alias"],
            uniprot=objective["params"]["uniprot"],
            weight=objective["weight"],
            direction=objective["direction"],
        )
    db.set_tags(spec.run_id, {"demo": True, "owner": "demo"})
    # 2. Training start (train.py)
    db.update_run_status(
        spec.run_id,
        "running",
        wandb_run_id=f"wb-{instance_id}",
        wandb_url=f"https://wandb.ai/mango/finetune/runs/wb-{instance_id}",
        started_at=started,
    )
    # Training logs history every few steps (a crash keeps what was logged so far).
    steps = {"completed": HISTORY_STEPS, "crashed": 47, "running": 30}[spec.outcome]
    rows = demo_history(spec, rng, steps)
    for start in range(0, len(rows), 25):
        db.log_history(spec.run_id, rows[start : start + 25])
    # 3. The end: a crash (crash_notifications.py) or completion with the W&B summary.
    if spec.outcome == "crashed":
        db.update_run_status(spec.run_id, "crashed", ended_at=started + dt.timedelta(minutes=47))
        prefix = f"crash-reports/{spec.run_id}"
        db.attach_crash_data(
            spec.run_id, f"{prefix}/error.log", f"{prefix}/report.md", f"{prefix}/analysis.md"
        )
    elif spec.outcome == "completed":
        summary = demo_summary(spec, rng)
        db.finish_run(
            spec.run_id,
            "completed",
            summary,
            ended_at=started + dt.timedelta(seconds=float(summary["_runtime"])),
        )
