"""`training_db.cli.render` stays shareable: no click, no database layer, plain dicts in."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import importlib.util
import io
import json
import sys
from pathlib import Path

from training_db.cli import render

# What render may import directly besides the standard library: rich for the tables, and the
# pure sparkline (ops.plots imports no database layer and no matplotlib at import time).
ALLOWED_DIRECT: frozenset[str] = frozenset({"rich", "training_db.ops.plots"})
# Modules that must not be reached from render by following training_db imports.
FORBIDDEN: tuple[str, ...] = (
    "click",
    "training_db.api",
    "training_db.db",
    "training_db.schema",
    "training_db.store",
    "training_db.safe",
    "training_db.cli.app",
)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` statement of the file names, wherever the statement is
    (``if TYPE_CHECKING:`` blocks and function bodies included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import of {node.module!r}")
    return names


def module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin)


def is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_render_imports_neither_click_nor_the_database() -> None:
    direct = imported_modules(Path(render.__file__))
    not_allowed = {
        name
        for name in direct
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(is_under(name, allowed) for allowed in ALLOWED_DIRECT)
    }
    assert not not_allowed, f"render.py imports {sorted(not_allowed)}"
    # Follow the training_db modules it imports, and theirs: none is a database layer.
    seen: set[str] = set()
    pending = [name for name in direct if is_under(name, "training_db")]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        imports = imported_modules(module_path(name))
        reached = [bad for bad in FORBIDDEN for each in imports if is_under(each, bad)]
        assert not reached, f"render.py reaches {reached} through {name}"
        pending.extend(each for each in imports if is_under(each, "training_db"))


def test_render_serialises_plain_dicts() -> None:
    """JSON and CSV come from plain run dicts: what a web layer would hold."""
    created = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    run = {
        "run_id": "r1",
        "status": "completed",
        "final_loss": float("nan"),
        "created_at": created,
        "host": None,
        "config": {"lr": float("inf")},
        "final_metrics": None,
        "tags": {"owner": "ålice"},
    }
    columns = ("run_id", "status", "final_loss", "created_at", "host")
    records = json.loads(render.runs_json([run], columns))
    assert records == [
        {
            "run_id": "r1",
            "status": "completed",
            "final_loss": "NaN",
            "created_at": "2024-05-01T12:30:00+00:00",
            "host": None,
            "config": {"lr": "Infinity"},
            "final_metrics": None,
            "tags": {"owner": "ålice"},
        }
    ]
    rows = list(csv.reader(io.StringIO(render.csv_text([run], columns))))
    assert rows == [list(columns), ["r1", "completed", "NaN", "2024-05-01T12:30:00+00:00", ""]]
    assert render.csv_text([], columns) == ",".join(columns) + "\n"


def test_fitted_tables_drop_columns_rather_than_cut_a_number() -> None:
    """At any width, a shown number is whole; columns go by priority; the rest are named."""
    from rich.console import Console

    runs = [
        {
            "run_id": f"run_{index:03d}_with_a_long_identifier",
            "status": "completed",
            "gradient_method": "a_rather_long_method_name",
            "batch_size": 1024 * (index + 1),
            "learning_rate": 0.000123456,
            "created_at": dt.datetime(2026, 1, index + 1, tzinfo=dt.timezone.utc),
            "duration_seconds": 123456.0 * (index + 1),
            "final_loss": -12345.678,
        }
        for index in range(3)
    ]
    numbers = {
        "batch": [str(run["batch_size"]) for run in runs],
        "loss": ["-1.235e+04"] * 3,
        "hours": [f"{float(str(run['duration_seconds'])) / 3600:.2f}" for run in runs],
    }
    wide = Console(width=1000, record=True)
    wide.print(render.runs_table(runs))
    natural = max(len(line) for line in wide.export_text().splitlines())
    for width in range(40, 161, 7):
        console = Console(width=width, force_terminal=True, color_system=None, record=True)
        console.print(render.runs_table(runs))
        text = console.export_text()
        assert "…" not in text, (width, text)
        header = text.splitlines()[0].split()
        for title, values in numbers.items():
            if title in header:
                assert all(value in text for value in values), (width, title, text)
        assert max(len(line) for line in text.splitlines()[:-1]) <= width
        if width >= natural:
            assert "not shown" not in text
        else:
            assert "not shown at" in text
    assert render.shown_footer(50, 73) == "50 of 73 runs shown — use --limit or --all"
    assert render.shown_footer(6, 6) is None
    assert render.shown_footer(1, None) == "1 run shown; more match — use --limit or --all"
    assert render.shown_footer(2, None) == "2 runs shown; more match — use --limit or --all"
