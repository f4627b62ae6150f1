"""Run the benchmarks and write the report.

    python -m bench.run [--quick] [--backend sqlite|postgresql|both] [--runs N] [--repeat K]
                        [--scale M] [--no-mlflow] [--output BENCHMARKS.md]

PostgreSQL databases are created through the admin URL in ``TRAINING_DB_BENCH_POSTGRES_URL``
(default ``postgresql+psycopg2://root@127.0.0.1:5432/test``) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from bench import queries, writes
from bench.context import Context, Settings
from bench.databases import Backend
from bench.mlflow_side import MlflowModules, load_mlflow
from bench.report import console, existing_analysis, markdown, print_table

FULL = {"runs": 50, "repeat": 5, "scale": 20_000, "long_runs": 3, "long_steps": 10_000}
QUICK = {"runs": 5, "repeat": 3, "long_runs": 1, "long_steps": 1_000}
MLFLOW_SKIPPED = "MLflow columns skipped"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small N: a smoke run of every scenario"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, help="runs written per timed repetition in (a)-(c)")
    parser.add_argument("--repeat", type=int, help="timed repetitions per figure")
    parser.add_argument("--scale", type=int, help="runs in the query database of (d), (e)")
    parser.add_argument("--long-steps", type=int, help="steps of the long runs in (c), (f)")
    parser.add_argument("--no-mlflow", action="store_true", help="leave the MLflow columns out")
    parser.add_argument("--seed", type=int, default=20_250_106)
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    for name in ("runs", "repeat", "scale", "long_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    defaults = QUICK if args.quick else FULL
    runs = args.runs or defaults["runs"]
    repeat = args.repeat or defaults["repeat"]
    scale = args.scale or defaults.get("scale") or max(200, 100 * runs)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    return Settings(
        quick=args.quick,
        backends=backends,
        runs=runs,
        repeat=repeat,
        scale=scale,
        history_runs=min(1000, scale // 4),
        long_runs=defaults["long_runs"],
        long_steps=args.long_steps or defaults["long_steps"],
        mlflow_runs=1 if args.quick else 5,
        mlflow_repeat=2 if args.quick else repeat,
        seed=args.seed,
        use_mlflow=not args.no_mlflow,
        min_total=0.1 if args.quick else 0.5,
        search_budget=5.0 if args.quick else 60.0,
    )


def run_backend(name: str, settings: Settings, mlflow: MlflowModules | None) -> Context:
    with Backend(name) as backend:
        context = Context(settings, backend, mlflow)
        context.extra["server_version"] = backend.version()
        for scenario in (writes.lifecycle, writes.ingest, queries.queries):
            started = time.perf_counter()
            scenario(context)
            context.log(f"{scenario.__name__} took {time.perf_counter() - started:.0f} s")
        return context


def scale_lines(settings: Settings, contexts: Sequence[Context]) -> list[str]:
    values = next((c.extra.get("values_per_run") for c in contexts), None)
    objective_rows = next((c.extra.get("objective_rows") for c in contexts), None)
    matches = {c.name: c.extra.get("e1_matches") for c in contexts}
    return [
        f"mode: {'quick' if settings.quick else 'full'}; backends: {', '.join(settings.backends)}; "
        f"seed {settings.seed}",
        f"(a)-(c): {settings.runs} runs per repetition x {settings.repeat} repetitions per system "
        f"(MLflow: {min(settings.mlflow_runs, settings.runs)} runs per repetition x "
        f"{settings.mlflow_repeat}, its writes being slow); each history has 149 keys x "
        f"{settings.steps} steps, ~10% missing ({values:,} logged values in the first run)"
        if values
        else f"(a)-(c): {settings.runs} runs per repetition x {settings.repeat} repetitions",
        f"long runs: {settings.long_runs} run(s) of {settings.long_steps:,} steps x 149 keys "
        "(MLflow's copy of the first one is inserted with bulk SQL: its log_batch would take "
        "minutes)",
        f"(d), (e): {settings.scale:,} runs with {objective_rows or 0:,} objective rows, "
        "inserted with bulk SQL (setup, not timed), then ANALYZE; MLflow holds the same runs "
        "(config as params, numeric summary as latest metrics, text summary as tags); e1 "
        f"matches per backend (limit 100): {matches}",
        f"(g) query_runs(limit=1000): {settings.history_runs:,} runs with a 100-step history vs "
        f"{settings.history_runs:,} runs without, in the same database",
        f"fast reads are repeated until ≥ {settings.min_total} s was spent on them (at least "
        f"4 x --repeat samples); MLflow's searches stop after {settings.mlflow_repeat} samples "
        f"or once {settings.search_budget:.0f} s were spent (the checked call is the first)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow: MlflowModules | None = None
    if not settings.use_mlflow:
        mlflow_status = f"{MLFLOW_SKIPPED}: --no-mlflow"
    else:
        loaded = load_mlflow()
        if isinstance(loaded, str):
            mlflow_status = f"{MLFLOW_SKIPPED}: {loaded}"
        else:
            mlflow, mlflow_status = loaded, f"{loaded.version} (SqlAlchemyStore, no server)"
    if mlflow is None:
        console.print(f"[yellow]{mlflow_status}[/yellow]")
    started = time.perf_counter()
    contexts = [run_backend(name, settings, mlflow) for name in settings.backends]
    results = [result for context in contexts for result in context.results]
    storage = [figure for context in contexts for figure in context.storage]
    print_table(results, storage)
    command = "python -m bench.run " + shlex.join(list(argv) if argv is not None else [])
    report = markdown(
        contexts,
        command.strip(),
        scale_lines(settings, contexts),
        mlflow_status,
        existing_analysis(args.output),
    )
    args.output.write_text(report + "\n")
    console.print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
