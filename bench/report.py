"""The report: a rich table on the console and BENCHMARKS.md with the machine, the command,
every figure (median, spread, ratios, answer check), the targets and the query plans.

Text between ``<!-- analysis:start -->`` and ``<!-- analysis:end -->`` in an existing report
is hand-written analysis; it is carried over when the report is written again.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

from rich.table import Table

from bench.context import Context, StorageFigure, console
from bench.measure import MLFLOW, RAW, Result, cost_ratio
from bench.queries import indexes_used

SEED_ESTIMATE_BYTES: Final = 300_000  # 100 steps x 149 keys x ~20 bytes (seed plan 004)
ANALYSIS_START: Final = "<!-- analysis:start -->"
ANALYSIS_END: Final = "<!-- analysis:end -->"
SCENARIOS: Final = {
    "a": "(a) launch",
    "b": "(b) completion",
    "c": "(c) history ingest, 100 steps",
    "c-long": "(c) history ingest, long runs",
    "d1": "(d) query_runs, extracted columns",
    "d2": "(d) query_runs, JSON filters",
    "e1": "(e) query_runs_by_objectives",
    "e2": "(e) compare_gradient_methods",
    "f": "(f) one metric's history",
    "g-query": "(g) query_runs(limit=1000)",
}


def fmt_number(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e4:
        return f"{value / 1e3:.0f} k"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def fmt_bytes(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} MB"
    if value >= 1e3:
        return f"{value / 1e3:.1f} kB"
    return f"{value:.0f} B"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def ours_of(results: Sequence[Result], result: Result) -> Result | None:
    reference = "without" if result.scenario == "g-query" else "ours"
    for candidate in results:
        if (candidate.scenario, candidate.backend, candidate.system) == (
            result.scenario,
            result.backend,
            reference,
        ):
            return candidate
    return None


@dataclass(frozen=True)
class Row:
    scenario: str
    backend: str
    system: str
    median: str
    spread: str
    iqr: str
    samples: str
    ours_over_raw: str
    mlflow_over_ours: str
    check: str


def rows(results: Sequence[Result]) -> list[Row]:
    table = []
    for result in results:
        ours = ours_of(results, result)
        ours_over_raw = mlflow_over_ours = None
        if result.kind == RAW:
            ours_over_raw = cost_ratio(ours, result)
        elif result.kind == MLFLOW:
            mlflow_over_ours = cost_ratio(result, ours)
        elif result.scenario == "g-query" and result.system == "with":
            ours_over_raw = cost_ratio(result, ours)  # with ÷ without
        if result.timed:
            low, high = result.spread
            q1, q3 = result.iqr
            median = f"{fmt_number(result.median)} {result.unit}"
            spread = f"{fmt_number(low)}-{fmt_number(high)}"
            iqr = f"{fmt_number(q1)}-{fmt_number(q3)}"
            samples = str(result.samples)
        else:
            median, spread, iqr, samples = "—", "", "", "0"
        check = result.check if not result.note else f"{result.check} ({result.note})"
        table.append(
            Row(
                SCENARIOS.get(result.scenario, result.scenario),
                result.backend,
                f"{result.system}: {result.label}",
                median,
                spread,
                iqr,
                samples,
                fmt_ratio(ours_over_raw),
                fmt_ratio(mlflow_over_ours),
                check,
            )
        )
    return table


HEADERS: Final = (
    "Scenario",
    "Backend",
    "System",
    "Median",
    "min-max",
    "IQR",
    "n",
    "ours ÷ raw",
    "MLflow ÷ ours",
    "Answer check",
)


STORAGE_HEADERS: Final = (
    "Backend",
    "System",
    "Runs",
    "History per run",
    "÷ seed's 300 kB",
    "Whole run (config, summary, objectives, history)",
)


def storage_cells(figure: StorageFigure) -> tuple[str, ...]:
    return (
        figure.backend,
        figure.system,
        str(figure.runs),
        fmt_bytes(figure.history_per_run),
        f"{figure.history_per_run / SEED_ESTIMATE_BYTES:.2f}",
        fmt_bytes(figure.per_run),
    )


def print_table(results: Sequence[Result], storage: Sequence[StorageFigure]) -> None:
    table = Table(title="mangodb benchmarks (ratios compare time per unit of work)")
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in rows(results):
        table.add_row(*row.__dict__.values())
    console.print(table)
    storage_table = Table(title="(g) storage per complete run")
    for header in STORAGE_HEADERS:
        storage_table.add_column(header)
    for figure in storage:
        storage_table.add_row(*storage_cells(figure))
    console.print(storage_table)


# --- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    backend: str
    name: str
    status: str  # "met", "NOT met", "not measured"
    detail: str


def _find(results: Sequence[Result], scenario: str, backend: str, system: str) -> Result | None:
    for result in results:
        if (result.scenario, result.backend, result.system) == (scenario, backend, system):
            return result
    return None


def _judge(backend: str, name: str, checks: Iterable[tuple[str, float | None, bool]]) -> Target:
    """``checks``: (description, measured value or None, passed)."""
    parts, missing, failed = [], [], []
    for description, value, passed in checks:
        if value is None:
            missing.append(description)
            continue
        parts.append(f"{description}: {value:.2f}{'' if passed else ' ✗'}")
        if not passed:
            failed.append(description)
    if failed:
        status = "NOT met"
    elif missing and not parts:
        status = "not measured"
    elif missing:
        status = "met (partly measured)"
    else:
        status = "met"
    detail = "; ".join(parts)
    if missing:
        detail += ("; " if detail else "") + "not measured: " + ", ".join(missing)
    return Target(backend, name, status, detail)


def targets(
    results: Sequence[Result], storage: Sequence[StorageFigure], backends: Sequence[str]
) -> list[Target]:
    found: list[Target] = []
    for backend in backends:

        def ratio(scenario: str, over: str, under: str, b: str = backend) -> float | None:
            return cost_ratio(_find(results, scenario, b, over), _find(results, scenario, b, under))

        found.append(
            _judge(
                backend,
                "history ingest (100 steps): ≥ 50% of the raw driver writing our layout, "
                "faster than raw one-row-per-value, ≥ 30x MLflow",
                (
                    (
                        "ours ÷ raw-layout time (≤ 2.00)",
                        r := ratio("c", "ours", "raw-layout"),
                        r is not None and r <= 2.0,
                    ),
                    (
                        "ours ÷ raw-naive time (< 1.00)",
                        r2 := ratio("c", "ours", "raw-naive"),
                        r2 is not None and r2 < 1.0,
                    ),
                    (
                        "MLflow ÷ ours time (≥ 30)",
                        r3 := ratio("c", "mlflow", "ours"),
                        r3 is not None and r3 >= 30.0,
                    ),
                ),
            )
        )
        objective_checks = []
        for scenario in ("e1", "e2"):
            raw_ratio = ratio(scenario, "ours", "raw-sql")
            mlflow_ratio = ratio(scenario, "mlflow", "ours")
            objective_checks += [
                (
                    f"{scenario} ours ÷ hand-written SQL (≤ 1.50)",
                    raw_ratio,
                    raw_ratio is not None and raw_ratio <= 1.5,
                ),
                (
                    f"{scenario} MLflow ÷ ours (≥ 50)",
                    mlflow_ratio,
                    mlflow_ratio is not None and mlflow_ratio >= 50.0,
                ),
            ]
        found.append(
            _judge(
                backend,
                "objective queries: within 1.5x of hand-written SQL, ≥ 50x faster than MLflow "
                "search_runs",
                objective_checks,
            )
        )
        history = _find(results, "f", backend, "ours")
        limit_ms = 5.0 if backend == "sqlite" else 10.0
        median = history.median if history is not None and history.timed else None
        mlflow_ratio = ratio("f", "mlflow", "ours")
        found.append(
            _judge(
                backend,
                f"one metric's history of a 10,000-step run: ≤ {limit_ms:.0f} ms median, "
                "≥ 10x faster than get_metric_history",
                (
                    (
                        f"median ms (≤ {limit_ms:.0f})",
                        median,
                        median is not None and median <= limit_ms,
                    ),
                    (
                        "MLflow ÷ ours (≥ 10)",
                        mlflow_ratio,
                        mlflow_ratio is not None and mlflow_ratio >= 10.0,
                    ),
                ),
            )
        )
        ours_storage = next(
            (s for s in storage if (s.backend, s.system) == (backend, "ours")), None
        )
        theirs = next((s for s in storage if (s.backend, s.system) == (backend, "mlflow")), None)
        per_run = None if ours_storage is None else ours_storage.history_per_run / 1000.0
        storage_ratio = None
        if ours_storage is not None and theirs is not None:
            storage_ratio = theirs.history_per_run / ours_storage.history_per_run
        found.append(
            _judge(
                backend,
                "history storage per run: ≤ ½ of the seed's 300 kB history-JSON estimate and "
                "≤ 1/10 of MLflow's",
                (
                    (
                        "history kB per run (≤ 150)",
                        per_run,
                        per_run is not None and per_run <= 150.0,
                    ),
                    (
                        "MLflow ÷ ours history bytes (≥ 10)",
                        storage_ratio,
                        storage_ratio is not None and storage_ratio >= 10.0,
                    ),
                ),
            )
        )
        with_ratio = ratio("g-query", "with", "without")
        found.append(
            _judge(
                backend,
                "query_runs(limit=1000): runs with histories within 1.2x of runs without",
                (
                    (
                        "with ÷ without (≤ 1.20)",
                        with_ratio,
                        with_ratio is not None and with_ratio <= 1.2,
                    ),
                ),
            )
        )
    return found


# --- the machine and the markdown -------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def _memory() -> str:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return f"{int(match.group(1)) / 1024 / 1024:.1f} GiB" if match else "unknown"


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' (src/ modified)' if dirty else ''}"


def machine(contexts: Sequence[Context], mlflow_status: str) -> list[tuple[str, str]]:
    versions = {context.name: context.extra.get("server_version", "") for context in contexts}
    return [
        ("Date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("OS", platform.platform()),
        ("CPU", f"{os.cpu_count()} logical CPUs, {_cpu_model()}"),
        ("Memory", _memory()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", versions.get("postgresql") or "not run"),
        ("SQLAlchemy / psycopg2", f"{_version('sqlalchemy')} / {_version('psycopg2-binary')}"),
        ("mangodb", f"{_version('mangodb')} at commit {_git_commit()}"),
        ("MLflow", mlflow_status),
    ]


def _markdown_table(headers: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in body]
    return lines


def existing_analysis(path: Path) -> str | None:
    if not path.exists():
        return None
    text = path.read_text()
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(ANALYSIS_END)]


def markdown(
    contexts: Sequence[Context],
    command: str,
    scale_lines: Sequence[str],
    mlflow_status: str,
    analysis: str | None,
) -> str:
    results = [result for context in contexts for result in context.results]
    storage = [figure for context in contexts for figure in context.storage]
    backends = [context.name for context in contexts]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; the section between the analysis markers is hand-written "
        "and kept when the report is regenerated. Every figure is the median over repetitions "
        "with its spread (min-max and interquartile range, `n` samples). Ratios compare time "
        "per unit of work: **ours ÷ raw** > 1 means the package is slower than the raw-driver "
        "limit; **MLflow ÷ ours** > 1 means MLflow is that many times slower than the package.",
        "",
        "## Machine",
        "",
        *_markdown_table(("", ""), machine(contexts, mlflow_status)),
        "",
        "## Command and scale",
        "",
        "```",
        command,
        "```",
        "",
        *(f"- {line}" for line in scale_lines),
        "",
        "## Targets",
        "",
        *_markdown_table(
            ("Backend", "Target", "Status", "Figures"),
            ((t.backend, t.name, t.status, t.detail) for t in targets(results, storage, backends)),
        ),
        "",
    ]
    if analysis:
        lines += [analysis, ""]
    lines += [
        "## Figures",
        "",
        *_markdown_table(HEADERS, (tuple(row.__dict__.values()) for row in rows(results))),
        "",
        "## (g) Storage per complete run",
        "",
        "Config, summary, 3-5 objectives and a 100-step x 149-key history per run, after "
        "`VACUUM` (SQLite: `dbstat` page accounting; PostgreSQL: `VACUUM FULL` then "
        "`pg_total_relation_size`, indexes and TOAST included), minus the empty schema. "
        '"History" counts the tables that hold the history (ours: `history_metrics`, '
        "`run_history`, `run_history_key_metrics`; MLflow: `metrics`), which is what the "
        "seed's ~300 kB history-JSON estimate covers (its whole run, with config and "
        "summary, was ~340 kB).",
        "",
        *_markdown_table(
            (*STORAGE_HEADERS, "File delta per run", "By table (per run)"),
            (
                (
                    *storage_cells(figure),
                    "" if figure.file_bytes is None else fmt_bytes(figure.file_bytes / figure.runs),
                    ", ".join(
                        f"{table} {fmt_bytes(size / figure.runs)}"
                        for table, size in figure.breakdown.items()
                        if size
                    ),
                )
                for figure in storage
            ),
        ),
        "",
        "## Query plans",
        "",
    ]
    for context in contexts:
        for name, plan in context.plans.items():
            note = ""
            if name.startswith(("e1 ours", "e2 ours")):
                used = indexes_used(plan)
                note = (
                    f" — indexes used: {', '.join(f'`{index}`' for index in used)}"
                    if used
                    else " — NO index used"
                )
            lines += [f"### {context.name}: {name}{note}", "", "```", plan, "```", ""]
    notes = [note for context in contexts for note in context.notes]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)
