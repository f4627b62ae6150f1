"""What one benchmark run is asked to do, and what it collects."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from bench.databases import Backend
from bench.measure import Result
from bench.mlflow_side import MlflowModules

# Progress and tables go to stderr; the report goes to its file.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


@dataclass(frozen=True)
class Settings:
    """The scale of a run; ``--quick`` picks small numbers."""

    quick: bool
    backends: tuple[str, ...]
    runs: int  # runs written per timed repetition in (a), (b), (c)
    repeat: int  # timed repetitions per figure (fast reads take more samples)
    scale: int  # runs in the query database of (d), (e)
    history_runs: int  # runs with / without history in the query_runs(limit=1000) check
    long_runs: int  # runs of long_steps steps in (c) and (f)
    long_steps: int
    steps: int = 100
    mlflow_runs: int = 5  # MLflow writes are slow: runs per repetition on its side
    mlflow_repeat: int = 5  # and repetitions of its writes and searches
    seed: int = 20_250_106
    use_mlflow: bool = True
    min_total: float = 0.5  # fast reads repeat until this many seconds were spent on them
    search_budget: float = 60.0  # MLflow's slow searches stop after this many seconds


@dataclass
class StorageFigure:
    """Bytes a system needs per complete run (config, summary, objectives, history)."""

    backend: str
    system: str
    runs: int
    total_bytes: int
    breakdown: dict[str, int]
    file_bytes: int | None = None
    # The tables that hold the history (what the seed's 300 kB history-JSON estimate covers).
    history_tables: tuple[str, ...] = ()

    @property
    def per_run(self) -> float:
        return self.total_bytes / self.runs

    @property
    def history_per_run(self) -> float:
        return sum(self.breakdown.get(table, 0) for table in self.history_tables) / self.runs


@dataclass
class Context:
    settings: Settings
    backend: Backend
    mlflow: MlflowModules | None
    results: list[Result] = field(default_factory=list)
    storage: list[StorageFigure] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.backend.name

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def log(self, message: str) -> None:
        console.log(f"[{self.name}] {message}")
