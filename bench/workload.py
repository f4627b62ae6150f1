"""A seeded workload shaped like the real training runs (see the seed plans in shared/seeds).

* a nested config of ~90 leaf keys: ``training.*`` hyperparameters, ``model``,
  ``generation``, ``hardware``, ``reward``, ``data``, ``wandb`` sections and 3-5
  ``objectives`` entries with name/alias/direction/weight/params.uniprot;
* a W&B summary of 149 keys: ``objectives/<alias>/<metric>`` for the four metric types,
  ``train/loss``, ``_step``, ``_runtime``, ``_timestamp``, ``_wandb``, git metadata, final
  aggregates, and a few NaN;
* a W&B history of 149 columns x N steps as ``{c: df[c].tolist()}`` gives it: ``_step``,
  ``_runtime`` and ``_timestamp`` in every row, the other columns missing (NaN) at ~10% of
  the steps.

Everything is a pure function of ``(seed, index)``, so run ``i`` is the same run in every
system and every repetition, whatever order the scenarios ask for runs in.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

GRADIENT_METHODS: Final = ("mgda", "pcgrad", "imtlg", "aligned_mtl")
METRIC_TYPES: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
HISTORY_KEYS_PER_RUN: Final = 149
SUMMARY_KEYS_PER_RUN: Final = 149
MISSING_FRACTION: Final = 0.10
STEP_KEY: Final = "_step"
# The metric every history read scenario asks for.
LOSS_KEY: Final = "train/loss"
EPOCH: Final = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    direction: str
    uniprot: str | None


# COMT and DRD5 (the seed's example queries) are in most runs; the rest fill up to 3-5.
OBJECTIVE_POOL: Final = (
    ObjectiveSpec("COMT_activity", "maximize", "P21964"),
    ObjectiveSpec("DRD5_activity", "maximize", "P21918"),
    ObjectiveSpec("QED", "maximize", None),
    ObjectiveSpec("SA_score", "minimize", None),
    ObjectiveSpec("DRD2_activity", "maximize", "P14416"),
    ObjectiveSpec("HTR2A_activity", "maximize", "P28223"),
    ObjectiveSpec("logP_deviation", "minimize", None),
)
FREQUENT_OBJECTIVES: Final = ("COMT_activity", "DRD5_activity")
FREQUENT_PROBABILITY: Final = 0.7

_TRAIN_KEYS: Final = (
    "loss",
    "grad_norm",
    "learning_rate",
    "kl",
    "reward_mean",
    "reward_std",
    "entropy",
    "clip_fraction",
    "tokens_per_second",
    "epoch",
)
_PROPERTIES: Final = ("logp", "qed", "sa", "mw", "tpsa", "hbd", "hba", "rotb")
_GENERATION_KEYS: Final = (
    "validity",
    "uniqueness",
    "novelty",
    "diversity",
    "length_mean",
    "length_std",
)
_NAN_SUMMARY_KEYS: Final = ("eval/kl_divergence_max", "eval/reward_skew")


@dataclass(frozen=True)
class RunSpec:
    """Everything a training script knows about one run, at launch and at the end."""

    index: int
    run_id: str
    wandb_run_id: str
    run_name: str
    host: str
    created_at: dt.datetime
    status: str
    config: dict[str, Any]
    summary: dict[str, Any] | None

    @property
    def objectives(self) -> list[dict[str, Any]]:
        return list(self.config["objectives"])

    @property
    def gradient_method(self) -> str:
        return str(self.config["training"]["gradient_method"])


def _rng(seed: int, index: int, salt: int = 0) -> random.Random:
    return random.Random(seed * 1_000_003 + index * 7_919 + salt)


def alias_of(objective_name: str, direction: str) -> str:
    return f"{objective_name}_{direction}"


def choose_objectives(rng: random.Random) -> list[ObjectiveSpec]:
    count = rng.randint(3, 5)
    chosen = [
        spec
        for spec in OBJECTIVE_POOL
        if spec.name in FREQUENT_OBJECTIVES and rng.random() < FREQUENT_PROBABILITY
    ]
    others = [spec for spec in OBJECTIVE_POOL if spec not in chosen]
    rng.shuffle(others)
    chosen.extend(others[: count - len(chosen)])
    return chosen


def make_config(rng: random.Random, index: int) -> dict[str, Any]:
    """A nested training config of ~90 leaf keys."""
    objectives = choose_objectives(rng)
    gradient_method = rng.choice(GRADIENT_METHODS)
    num_gpus = rng.choice((1, 2, 4, 8))
    return {
        "experiment_name": f"mo-rl-{gradient_method}-{index % 97}",
        "training": {
            "batch_size": rng.choice((16, 32, 64, 128)),
            "learning_rate": rng.choice((1e-5, 3e-5, 1e-4, 3e-4)),
            "gradient_method": gradient_method,
            "gradient_accumulation_steps": rng.choice((1, 2, 4, 8, 16)),
            "beta": rng.choice((0.01, 0.04, 0.1)),
            "num_epochs": rng.randint(1, 5),
            "max_steps": rng.choice((100, 500, 1000, 10_000)),
            "warmup_steps": rng.choice((0, 10, 50)),
            "weight_decay": rng.choice((0.0, 0.01, 0.1)),
            "max_grad_norm": rng.choice((0.5, 1.0)),
            "optimizer": rng.choice(("adamw", "adamw_8bit", "lion")),
            "lr_scheduler": rng.choice(("cosine", "linear", "constant")),
            "seed": rng.randint(0, 10_000),
            "num_gpus": num_gpus,
            "adam_beta1": 0.9,
            "adam_beta2": rng.choice((0.95, 0.999)),
            "adam_epsilon": 1e-8,
            "bf16": True,
            "fp16": False,
            "logging_steps": 1,
            "save_steps": rng.choice((100, 250)),
            "eval_steps": rng.choice((50, 100)),
            "mgda_normalization": rng.choice(("l2", "loss", "none")),
            "pcgrad_reduction": "mean",
            "aligned_mtl_scale": rng.choice(("min", "median")),
            "reward_clip": 10.0,
            "kl_target": rng.choice((0.02, 0.05)),
            "ppo_epochs": rng.choice((1, 2, 4)),
            "mini_batch_size": rng.choice((4, 8)),
            "use_vllm": rng.random() < 0.5,
        },
        "model": {
            "base_model": rng.choice(("mango-7b", "mango-1b", "chem-llama-3b")),
            "lora_rank": rng.choice((8, 16, 32, 64)),
            "lora_alpha": rng.choice((16, 32)),
            "lora_dropout": 0.05,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
            "max_length": rng.choice((256, 512)),
            "tokenizer": "smiles-bpe-v2",
            "revision": f"r{rng.randint(1, 40)}",
            "gradient_checkpointing": True,
            "trust_remote_code": False,
        },
        "generation": {
            "temperature": rng.choice((0.7, 1.0, 1.2)),
            "top_p": rng.choice((0.9, 0.95, 1.0)),
            "top_k": rng.choice((0, 50)),
            "max_new_tokens": rng.choice((128, 256)),
            "num_generations": rng.choice((4, 8, 16)),
            "do_sample": True,
            "repetition_penalty": 1.0,
            "num_return_sequences": 1,
        },
        "hardware": {
            "instance_type": rng.choice(("p4d.24xlarge", "g5.12xlarge", "p5.48xlarge")),
            "num_gpus": num_gpus,
            "gpu_type": rng.choice(("A100", "A10G", "H100")),
            "region": rng.choice(("us-east-1", "us-west-2")),
            "spot": rng.random() < 0.3,
            "ami": f"ami-{rng.getrandbits(48):012x}",
        },
        "reward": {
            "type": "weighted_sum",
            "normalize": True,
            "clip_min": -5.0,
            "clip_max": 5.0,
            "baseline": rng.choice(("mean", "ema")),
            "scale": rng.choice((1.0, 2.0)),
        },
        "data": {
            "dataset": rng.choice(("chembl-33", "zinc-250k")),
            "num_scaffolds": rng.choice((10, 50, 100)),
            "scaffold_file": f"s3://mango-data/scaffolds/set_{rng.randint(1, 20)}.smi",
            "train_split": 0.9,
            "val_split": 0.1,
            "max_samples": rng.choice((10_000, 50_000)),
        },
        "wandb": {
            "project": "mango-morl",
            "entity": "mango",
            "group": gradient_method,
            "tags": [gradient_method, f"n_obj_{len(objectives)}"],
        },
        "objectives": [
            {
                "name": spec.name,
                "alias": alias_of(spec.name, spec.direction),
                "direction": spec.direction,
                "weight": round(rng.uniform(0.2, 1.0), 3),
                "params": {"uniprot": spec.uniprot} if spec.uniprot else {},
            }
            for spec in objectives
        ],
    }


def objective_value(rng: random.Random, direction: str, metric: str) -> float:
    if metric.endswith("_std"):
        return rng.uniform(0.02, 0.25)
    if direction == "minimize":
        return rng.uniform(1.5, 6.0) if metric == "raw_mean" else rng.betavariate(2, 4)
    return rng.betavariate(4, 2)


def history_keys(objectives: list[dict[str, Any]]) -> list[str]:
    """The 149 history columns of a run with these objectives (``_step`` first)."""
    keys = [STEP_KEY, "_runtime", "_timestamp"]
    keys += [f"train/{name}" for name in _TRAIN_KEYS]
    keys += [
        f"objectives/{objective['alias']}/{metric}"
        for objective in objectives
        for metric in METRIC_TYPES
    ]
    keys += [f"general_prop/{name}_{stat}" for name in _PROPERTIES for stat in ("mean", "std")]
    keys += [f"generation/{name}" for name in _GENERATION_KEYS]
    layer = 0
    while len(keys) < HISTORY_KEYS_PER_RUN:
        keys.append(f"gradients/layer_{layer:03d}/norm")
        layer += 1
    return keys


def make_summary(rng: random.Random, spec_config: dict[str, Any], steps: int) -> dict[str, Any]:
    """A W&B summary of 149 keys, a few of them NaN."""
    runtime = steps * rng.uniform(20.0, 40.0)
    summary: dict[str, Any] = {
        "_step": steps - 1,
        "_runtime": runtime,
        "_timestamp": EPOCH.timestamp() + runtime,
        "_wandb": {"runtime": int(runtime)},
        "git_branch": rng.choice(("main", "feat/mgda-normalization", "exp/aligned-mtl")),
        "git_commit": f"{rng.getrandbits(32):08x}",
        "git_commit_message": "Update database imports to use mangodb module",
        "git_dirty": rng.random() < 0.2,
    }
    for name in _TRAIN_KEYS:
        summary[f"train/{name}"] = rng.uniform(0.05, 1.0)
    summary["train/loss"] = rng.uniform(0.2, 1.2)
    for objective in spec_config["objectives"]:
        for metric in METRIC_TYPES:
            value = objective_value(rng, objective["direction"], metric)
            summary[f"objectives/{objective['alias']}/{metric}"] = value
    for name in _PROPERTIES:
        for stat in ("mean", "std"):
            summary[f"general_prop/{name}_{stat}"] = rng.uniform(0.0, 5.0)
    for name in _GENERATION_KEYS:
        summary[f"generation/{name}"] = rng.uniform(0.0, 1.0)
    for key in _NAN_SUMMARY_KEYS:
        summary[key] = math.nan
    # Final aggregates pad the summary to its real size (32 bases x 5 statistics > 149).
    base_keys = [f"train/{name}" for name in _TRAIN_KEYS]
    base_keys += [f"general_prop/{name}_{stat}" for name in _PROPERTIES for stat in ("mean", "std")]
    base_keys += [f"generation/{name}" for name in _GENERATION_KEYS]
    aggregates = (
        f"{base}_{stat}" for stat in ("max", "min", "mean", "last", "p90") for base in base_keys
    )
    while len(summary) < SUMMARY_KEYS_PER_RUN:
        summary[next(aggregates)] = rng.uniform(0.0, 2.0)
    return summary


STATUS_WEIGHTS: Final = (("completed", 85), ("crashed", 7), ("failed", 5), ("running", 3))


def make_run(seed: int, index: int, *, prefix: str = "run", steps: int = 100) -> RunSpec:
    """Run ``index`` of the workload; its summary is None while it is still running."""
    rng = _rng(seed, index)
    config = make_config(rng, index)
    statuses, weights = zip(*STATUS_WEIGHTS, strict=True)
    status = rng.choices(statuses, weights)[0]
    summary = None if status == "running" else make_summary(rng, config, steps)
    return RunSpec(
        index=index,
        run_id=f"{prefix}-{index:07d}",
        wandb_run_id=f"wb{prefix}{index:07d}",
        run_name=f"{config['experiment_name']}-{index}",
        host=f"ip-10-0-{index % 16}-{index % 251}",
        # One minute apart: every ordering by time is unambiguous in every system.
        created_at=EPOCH + dt.timedelta(minutes=index),
        status=status,
        config=config,
        summary=summary,
    )


def completed_run(seed: int, index: int, *, prefix: str = "run", steps: int = 100) -> RunSpec:
    """Run ``index`` with a summary whatever its drawn status (for completion scenarios)."""
    spec = make_run(seed, index, prefix=prefix, steps=steps)
    if spec.summary is not None and spec.status == "completed":
        return spec
    rng = _rng(seed, index, salt=1)
    return RunSpec(
        **{
            **spec.__dict__,
            "status": "completed",
            "summary": make_summary(rng, spec.config, steps),
        }
    )


def make_history(
    seed: int, index: int, objectives: list[dict[str, Any]], steps: int = 100
) -> dict[str, list[Any]]:
    """A W&B history as ``{column: df[column].tolist()}``: NaN where a key was not logged."""
    rng = _rng(seed, index, salt=2)
    keys = history_keys(objectives)
    nan = math.nan
    start = EPOCH.timestamp()
    step_seconds = rng.uniform(20.0, 40.0)
    columns: dict[str, list[Any]] = {
        STEP_KEY: list(range(steps)),
        "_runtime": [step * step_seconds for step in range(steps)],
        "_timestamp": [start + step * step_seconds for step in range(steps)],
    }
    random_ = rng.random
    for position, key in enumerate(keys[3:]):
        level = 0.2 + position % 7 * 0.3
        decay = 1.0 / max(steps / 4.0, 1.0)
        scale = 0.05 * level
        values = [
            nan
            if random_() < MISSING_FRACTION
            else level * (1.0 + math.exp(-step * decay)) + scale * (random_() - 0.5)
            for step in range(steps)
        ]
        columns[key] = values
    return columns


def logged_points(history: Mapping[str, list[Any]]) -> dict[str, dict[int, float]]:
    """``{metric: {step: value}}`` of the values that were logged (NaN = not logged)."""
    steps = history[STEP_KEY]
    return {
        key: {step: value for step, value in zip(steps, values, strict=True) if value == value}
        for key, values in history.items()
        if key != STEP_KEY
    }


def count_values(history: Mapping[str, list[Any]]) -> int:
    """How many values a history logs (``_step`` is the index, not a value)."""
    return sum(
        sum(1 for value in values if value == value)
        for key, values in history.items()
        if key != STEP_KEY
    )


def flatten(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{'training': {'batch_size': 64}}`` → ``('training.batch_size', 64)`` (lists by index)."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{path}.")
        elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
            for position, item in enumerate(value):
                yield from flatten(item, f"{path}.{position}.")
        else:
            yield path, value
