"""Results as text: rich tables for the terminal, strict JSON and CSV for programs.

Pure functions from what the library returns (run dicts, rows of objectives, counts) to rich
renderables or strings. They print nothing and import neither click nor the database, so a
web layer can serve the same JSON and CSV as ``training-db --format json|csv`` (a test keeps
it that way). Which columns a run record carries is the caller's to say (``columns``): the
command line takes them from the schema.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from rich import box
from rich.table import Table

from training_db.ops.plots import sparkline

RUN_TABLE_COLUMNS: Final = (
    ("run_id", "run"),
    ("status", "status"),
    ("gradient_method", "method"),
    ("batch_size", "batch"),
    ("learning_rate", "lr"),
    ("created_at", "created UTC"),
    ("duration_seconds", "hours"),
    ("final_loss", "loss"),
)
OBJECTIVE_METRICS: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
NUMERIC_CELLS: Final = ("batch_size", "learning_rate", "duration_seconds", "final_loss")
STATUS_STYLES: Final = {
    "completed": "green",
    "running": "cyan",
    "crashed": "red",
    "failed": "red",
    "launched": "yellow",
}
# A document longer than this (as JSON text) is cut in the one-run table.
DOCUMENT_CELL_CHARS: Final = 400


class ImportRow(Protocol):
    """What the import table shows of one W&B directory's import result."""

    @property
    def path(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def history_steps(self) -> int: ...
    @property
    def error(self) -> str | None: ...


# --- JSON and CSV ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Strict-JSON form: timestamps ISO 8601, NaN and ±Infinity as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def json_text(value: Any) -> str:
    """``value`` as strict JSON text (no NaN literals), non-ASCII characters kept."""
    return json.dumps(_plain(value), allow_nan=False, ensure_ascii=False)


def run_record(run: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """A run for machine output: ``columns``, the documents as objects, and the tags."""
    record = {name: run[name] for name in columns}
    record["config"] = run["config"]
    record["final_metrics"] = run["final_metrics"]
    record["tags"] = run["tags"]
    return record


def runs_json(found: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Runs as a JSON array of `run_record`."""
    return json_text([run_record(run, columns) for run in found])


def csv_text(found: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Runs as CSV: a header of ``columns``, one row per run, empty cells for None."""
    return _csv(columns, ([run[name] for name in columns] for run in found))


def history_csv_text(history: Mapping[str, Sequence[Any]]) -> str:
    """A run's history columns as CSV, one row per step (empty where a key was not logged)."""
    names = list(history)
    steps = range(len(history["_step"]))
    return _csv(names, ([history[name][index] for name in names] for index in steps))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text with ``header`` first; None is an empty cell, other values `_plain`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else _plain(value) for value in row])
    return buffer.getvalue()


# --- tables ---------------------------------------------------------------------------------


def _cell(name: str, value: Any) -> str:
    """A value for a table cell; ``name`` is its column (durations in hours; no name: a
    timestamp in full)."""
    if value is None:
        return "-"
    if name == "duration_seconds":
        return f"{value / 3600:.2f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M") if name else value.isoformat()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration_cell(seconds: float | None) -> str:
    """Seconds, with hours beside them."""
    return "-" if seconds is None else f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _document_cell(document: Any) -> str:
    """A document as JSON text, cut after `DOCUMENT_CELL_CHARS` characters."""
    if document is None:
        return "-"
    text = json_text(document)
    if len(text) <= DOCUMENT_CELL_CHARS:
        return text
    return f"{text[:DOCUMENT_CELL_CHARS]}… ({len(document)} keys)"


def _list_table() -> Table:
    """The frame of a table with one row per item: a bold header over a rule."""
    return Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)


def _field_table(*, pad_edge: bool = True) -> Table:
    """A headerless two-column table: bold right-aligned names, then values."""
    table = Table(show_header=False, box=None, pad_edge=pad_edge)
    table.add_column(style="bold", justify="right")
    return table


def runs_table(found: Sequence[Mapping[str, Any]]) -> Table | str:
    """Runs, one line each, the status in its colour; a sentence when there are none."""
    if not found:
        return "no runs match"
    table = _list_table()
    for name, title in RUN_TABLE_COLUMNS:
        table.add_column(
            title,
            no_wrap=name in ("run_id", "status", "created_at"),
            justify="right" if name in NUMERIC_CELLS else "left",
        )
    for run in found:
        cells = [_cell(name, run[name]) for name, _ in RUN_TABLE_COLUMNS]
        style = STATUS_STYLES.get(run["status"], "")
        cells[1] = f"[{style}]{cells[1]}[/]" if style else cells[1]
        table.add_row(*cells)
    return table


def run_table(
    run: Mapping[str, Any],
    columns: Sequence[str],
    loss: tuple[str, Sequence[float | None]] | None = None,
) -> Table:
    """Every field of one run, its tags and documents, and its ``loss`` curve as a sparkline.

    ``loss`` is the history key and its values (None where not logged), or None for no curve.
    """
    table = _field_table(pad_edge=False)
    table.add_column(overflow="fold")
    for name in columns:
        table.add_row(
            name, _cell("", run[name]) if name != "duration_seconds" else _duration_cell(run[name])
        )
    table.add_row("tags", json_text(run["tags"]) if run["tags"] else "-")
    table.add_row("config", _document_cell(run["config"]))
    table.add_row("final metrics", _document_cell(run["final_metrics"]))
    if loss is not None:
        key, values = loss
        finite = [value for value in values if value is not None and math.isfinite(value)]
        summary = f"  {finite[0]:.4g} → {finite[-1]:.4g}" if finite else ""
        table.add_row(key, f"{sparkline(values)}{summary}  ({len(values)} points)")
    return table


def counts_table(counts: Mapping[str, Any]) -> Table:
    """Named counts, one per line (``total_runs`` shown as ``total runs``)."""
    table = _field_table()
    table.add_column(justify="right")
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), str(value))
    return table


def objectives_table(objectives: Sequence[Mapping[str, Any]]) -> Table:
    """One run's objectives: direction, weight and final values."""
    table = _list_table()
    for title in ("objective", "direction", "weight", *OBJECTIVE_METRICS):
        table.add_column(title, justify="left" if title in ("objective", "direction") else "right")
    for row in objectives:
        table.add_row(
            row["objective_name"],
            row["direction"] or "-",
            _cell("weight", row["weight"]),
            *(_cell(metric, row[metric]) for metric in OBJECTIVE_METRICS),
        )
    return table


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> Table | str:
    """Gradient methods on one objective: runs, average and best."""
    if not rows:
        return "no runs with this objective"
    table = _list_table()
    for title in ("method", "runs", "avg", "best"):
        table.add_column(title, justify="left" if title == "method" else "right")
    for row in rows:
        table.add_row(
            str(row["gradient_method"]),
            str(row["num_runs"]),
            _cell("avg", row["avg"]),
            _cell("best", row["best"]),
        )
    return table


def statistics_table(statistics: Mapping[str, Any]) -> Table:
    """One objective's statistics (count, avg, min, max, std), one per line."""
    table = _field_table()
    table.add_column(justify="right")
    for key, value in statistics.items():
        table.add_row(key, _cell(key, value))
    return table


def objective_runs_table(
    found: Sequence[Mapping[str, Any]], names: Sequence[str], metric: str
) -> Table:
    """Runs with the ``metric`` value of each of the objectives ``names``."""
    table = _list_table()
    for title in ("run", "status", "method", *names):
        table.add_column(title, justify="right" if title in names else "left", no_wrap=True)
    for run in found:
        table.add_row(
            run["run_id"],
            run["status"],
            run["gradient_method"] or "-",
            *(_cell(metric, run["objectives"][name][metric]) for name in names),
        )
    return table


def import_table(results: Sequence[ImportRow]) -> Table:
    """What importing each W&B directory did."""
    table = _list_table()
    for title in ("directory", "result", "run", "status", "steps", "detail"):
        table.add_column(title, overflow="fold")
    for result in results:
        table.add_row(
            result.path,
            result.action,
            result.run_id or "-",
            result.status or "-",
            str(result.history_steps),
            result.error or "",
        )
    return table


def import_summary(counts: Mapping[str, int], dry_run: bool) -> str:
    """``3 created, 0 completed, …``, saying when nothing was written."""
    return ", ".join(f"{count} {action}" for action, count in counts.items()) + (
        " (dry run: nothing written)" if dry_run else ""
    )
