"""Results as text: rich tables for the terminal, strict JSON and CSV for programs.

Pure functions from what the library returns (run dicts, rows of objectives, counts) to rich
renderables or strings. They print nothing and import neither click nor the database, so a
web layer can serve the same JSON and CSV as ``training-db --format json|csv`` (a test keeps
it that way). Which columns a run record carries is the caller's to say (``columns``): the
command line takes them from the schema.

Tables fit the width they are rendered at (`FittedTable`): columns are kept in priority
order while they fit, a number is never cut (numeric columns do not wrap; a column that
does not fit is left out and named under the table), and text folds. Machine output is
row-shaped: a JSON array of objects, or CSV with one row per object, with the same fields as
the table (``field_value`` reads ``config.<path>``, ``summary.<key>``, ``tag.<key>`` and
``objective.<name>`` fields as well as columns).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

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
# Which run columns survive longest when the terminal is narrow: first kept first.
RUN_TABLE_PRIORITY: Final = (
    "run_id",
    "status",
    "final_loss",
    "batch_size",
    "learning_rate",
    "gradient_method",
    "duration_seconds",
    "created_at",
)
RUN_TITLES: Final = dict(RUN_TABLE_COLUMNS)
OBJECTIVE_METRICS: Final = ("raw_mean", "normalized_mean", "raw_std", "normalized_std")
NUMERIC_CELLS: Final = ("batch_size", "learning_rate", "duration_seconds", "final_loss")
# Fields read from a run's documents, tags or objectives rather than from a column.
FIELD_PREFIXES: Final = ("config.", "summary.", "tag.", "objective.")
STATUS_STYLES: Final = {
    "completed": "green",
    "running": "cyan",
    "crashed": "red",
    "failed": "red",
    "launched": "yellow",
}
# A document longer than this (as JSON text) is cut in the one-run table.
DOCUMENT_CELL_CHARS: Final = 400
# Between two columns of a list table: padding, the box's blank separator, padding.
COLUMN_GAP: Final = 3
# The narrowest a text column is folded to before it is left out instead.
TEXT_MIN_WIDTH: Final = 20
# A run id is folded only below this width (it is what people copy).
ID_MIN_WIDTH: Final = 40
# A long header over a narrow numeric column folds to this width.
HEADER_MIN_WIDTH: Final = 10


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


IMPORT_FIELDS: Final = ("path", "action", "run_id", "status", "history_steps", "error")


# --- fields ---------------------------------------------------------------------------------


def is_document_field(name: str) -> bool:
    """Whether ``name`` reads a document, a tag or an objective (``config.…`` and the like)."""
    return name.startswith(FIELD_PREFIXES) and name not in FIELD_PREFIXES


def check_fields(names: Sequence[str], columns: Sequence[str]) -> list[str]:
    """``names`` if each is one of ``columns`` or a ``config.`` / ``summary.`` / ``tag.`` /
    ``objective.`` field; otherwise ValueError naming the first that is not."""
    for name in names:
        if name not in columns and not is_document_field(name):
            raise ValueError(
                f"--columns: unknown column {name!r}; use one of {', '.join(columns)}, or "
                "config.<path>, summary.<key>, tag.<key>, objective.<name>"
            )
    return list(names)


def _walk(document: Any, path: Sequence[str]) -> Any:
    """The value at the dotted ``path`` in nested dicts (digits index lists), or None."""
    for part in path:
        if isinstance(document, Mapping):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document


def field_value(row: Mapping[str, Any], name: str, metric: str = "raw_mean") -> Any:
    """Field ``name`` of a run dict, None where absent.

    A column by its name; ``config.<dotted.path>`` in the config; ``summary.<key>`` in the
    final metrics (the whole key first, so ``summary.train/loss`` works, then a dotted path);
    ``tag.<key>``; ``objective.<name>`` is the ``metric`` value of an objective of
    ``row['objectives']`` (``objective.<name>.<metric>`` for another metric).
    """
    prefix, _, rest = name.partition(".")
    if not rest or not is_document_field(name):
        return row.get(name)
    if prefix == "config":
        return _walk(row.get("config"), rest.split("."))
    if prefix == "summary":
        metrics = row.get("final_metrics") or {}
        return metrics[rest] if rest in metrics else _walk(metrics, rest.split("."))
    if prefix == "tag":
        return (row.get("tags") or {}).get(rest)
    objectives = row.get("objectives") or {}
    objective, chosen = rest, metric
    if rest not in objectives:
        head, _, tail = rest.rpartition(".")
        if tail in OBJECTIVE_METRICS:
            objective, chosen = head, tail
    return (objectives.get(objective) or {}).get(chosen)


def field_records(
    rows: Iterable[Mapping[str, Any]], names: Sequence[str], metric: str = "raw_mean"
) -> list[dict[str, Any]]:
    """Each row as an object of exactly the fields ``names`` (see `field_value`)."""
    return [{name: field_value(row, name, metric) for name in names} for row in rows]


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


def run_record(
    run: Mapping[str, Any], columns: Sequence[str], extra: Sequence[str] = ()
) -> dict[str, Any]:
    """A run for machine output: ``columns``, the documents as objects, the tags, the
    ``objectives`` when the run has them (``objectives query``), then ``extra`` fields."""
    record = {name: run[name] for name in columns}
    record["config"] = run["config"]
    record["final_metrics"] = run["final_metrics"]
    record["tags"] = run["tags"]
    if "objectives" in run:
        record["objectives"] = run["objectives"]
    for name in extra:
        record[name] = field_value(run, name)
    return record


def runs_json(found: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Runs as a JSON array of `run_record`."""
    return json_text([run_record(run, columns) for run in found])


def records_json(records: Sequence[Mapping[str, Any]]) -> str:
    """Row-shaped JSON: an array of objects."""
    return json_text(list(records))


def records_csv(names: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str:
    """Objects as CSV: a header of ``names``, one row per object."""
    return _csv(names, ([record.get(name) for name in names] for record in records))


def csv_text(
    found: Sequence[Mapping[str, Any]], columns: Sequence[str], metric: str = "raw_mean"
) -> str:
    """Runs as CSV: a header of ``columns`` (any `field_value` field), one row per run,
    empty cells for None."""
    return records_csv(columns, field_records(found, columns, metric))


def history_rows(history: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """A run's history columns as one object per step (None where a key was not logged)."""
    names = list(history)
    steps = range(len(history.get("_step", ())))
    return [{name: history[name][index] for name in names} for index in steps]


def history_csv_text(history: Mapping[str, Sequence[Any]]) -> str:
    """A run's history columns as CSV, one row per step (empty where a key was not logged)."""
    return records_csv(list(history), history_rows(history))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text with ``header`` first; None is an empty cell, a dict or list its JSON text,
    other values `_plain`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json_text(value)
    return _plain(value)


# --- tables that fit ------------------------------------------------------------------------


@dataclass(frozen=True)
class TableColumn:
    """A column of a `FittedTable`.

    ``priority``: lower is kept longer when the width is short (ties: left first).
    ``numeric``: right-aligned and never wrapped or cut (a timestamp or a status is
    ``no_wrap`` the same way without being right-aligned); other text folds, down to
    ``min_width`` before the column is left out.
    """

    title: str
    priority: int = 0
    numeric: bool = False
    no_wrap: bool = False
    min_width: int = TEXT_MIN_WIDTH
    style: str = ""


Cell = str | Text


def _cell_width(cell: Cell) -> int:
    text = cell.plain if isinstance(cell, Text) else cell
    return max((cell_len(line) for line in text.splitlines()), default=0)


class FittedTable:
    """A list table that chooses its columns for the width it is rendered at.

    Columns are taken in priority order; one that does not fit beside those taken is left
    out (a narrower one after it may still fit), never cut: a numeric or ``no_wrap``
    column needs its widest cell, a text column ``min_width`` (it folds). With ``fit=False``
    every column is kept. The columns left out are named on a line under the table, with
    ``hint`` (how to see them). A rich renderable: print it on any console.
    """

    def __init__(
        self,
        columns: Sequence[TableColumn],
        rows: Sequence[Sequence[Cell]],
        *,
        fit: bool = True,
        hint: str = "",
    ) -> None:
        self.columns = list(columns)
        self.rows = [list(row) for row in rows]
        self.fit = fit
        self.hint = hint

    def _needed(self, index: int) -> tuple[int, int]:
        """(the width column ``index`` needs, the width it would like).

        A numeric or ``no_wrap`` column needs its widest cell (its header may fold down to
        `HEADER_MIN_WIDTH`); a text column needs up to its ``min_width`` (it folds).
        """
        column = self.columns[index]
        widest = max((_cell_width(row[index]) for row in self.rows), default=0)
        title = cell_len(column.title)
        natural = max(widest, title)
        if column.numeric or column.no_wrap:
            return max(widest, min(title, max(HEADER_MIN_WIDTH, widest))), natural
        return min(natural, column.min_width), natural

    def _order(self) -> list[int]:
        return sorted(range(len(self.columns)), key=lambda i: (self.columns[i].priority, i))

    def chosen(self, width: int | None) -> list[int]:
        """Indexes of the columns shown at ``width`` (None: unlimited), in table order."""
        if width is None or not self.fit:
            return list(range(len(self.columns)))
        taken: list[int] = []
        used = 0
        for index in self._order():
            needed = self._needed(index)[0] + (COLUMN_GAP if taken else 0)
            if not taken or used + needed <= width:
                taken.append(index)
                used += needed
        return sorted(taken)

    def _widths(self, shown: Sequence[int], width: int | None) -> dict[int, int]:
        """The width of each shown column: what it needs, then what is left over shared in
        priority order toward what it would like."""
        widths = {index: self._needed(index)[0] for index in shown}
        if width is None or not self.fit:
            return {index: self._needed(index)[1] for index in shown}
        slack = width - sum(widths.values()) - COLUMN_GAP * (len(shown) - 1)
        for index in (i for i in self._order() if i in widths):
            grant = max(0, min(slack, self._needed(index)[1] - widths[index]))
            widths[index] += grant
            slack -= grant
        return widths

    def table(self, width: int | None = None) -> Table:
        """The rich table of the columns shown at ``width``."""
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
        shown = self.chosen(width)
        widths = self._widths(shown, width)
        for index in shown:
            column = self.columns[index]
            if column.numeric or column.no_wrap:
                table.add_column(
                    Text(column.title, no_wrap=False, overflow="fold"),
                    justify="right" if column.numeric else "left",
                    no_wrap=True,
                    min_width=widths[index],
                    max_width=widths[index],
                    style=column.style,
                )
            else:
                table.add_column(column.title, overflow="fold", style=column.style)
        for row in self.rows:
            table.add_row(*(row[index] for index in shown))
        return table

    def hidden(self, width: int | None) -> list[str]:
        """Titles of the columns left out at ``width``."""
        shown = set(self.chosen(width))
        return [column.title for i, column in enumerate(self.columns) if i not in shown]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        yield self.table(width)
        hidden = self.hidden(width)
        if hidden:
            note = f"not shown at {width} columns: {', '.join(hidden)}"
            yield Text(f"{note} ({self.hint})" if self.hint else note, style="dim")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table(None))


# --- cells ----------------------------------------------------------------------------------


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
    if isinstance(value, (dict, list)):
        return json_text(value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _all_timestamps(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(value, dt.datetime) for value in values)


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


def _status_cell(status: Any) -> Cell:
    text = _cell("status", status)
    style = STATUS_STYLES.get(str(status), "")
    return Text(text, style=style) if style else text


def _field_table(*, pad_edge: bool = True) -> Table:
    """A headerless two-column table: bold right-aligned names, then values."""
    table = Table(show_header=False, box=None, pad_edge=pad_edge)
    table.add_column(style="bold", justify="right", no_wrap=True)
    return table


def _title(name: str) -> str:
    """The header of field ``name`` in a table: a short title for the usual run columns,
    an objective by its name, anything else as written."""
    if name.startswith("objective."):
        return name.removeprefix("objective.")
    return str(RUN_TITLES.get(name, name))


def fields_table(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    *,
    metric: str = "raw_mean",
    priority: Sequence[str] | None = None,
    fit: bool = True,
    hint: str = "",
) -> FittedTable:
    """Run dicts (or any rows) under the fields ``names`` (see `field_value`).

    ``priority``: the fields in the order they are kept when the width is short (default:
    ``names`` left to right). A column whose values are all numbers (or timestamps) is
    numeric: right-aligned, never cut.
    """
    ranks = {name: rank for rank, name in enumerate(priority or names)}
    values = [[field_value(row, name, metric) for name in names] for row in rows]
    columns = []
    for index, name in enumerate(names):
        present = [row[index] for row in values if row[index] is not None]
        numeric = name in NUMERIC_CELLS or (bool(present) and all(map(_is_number, present)))
        columns.append(
            TableColumn(
                _title(name),
                priority=ranks.get(name, len(ranks)),
                numeric=numeric,
                no_wrap=name in ("status", "created_at") or _all_timestamps(present),
                min_width=ID_MIN_WIDTH if name == "run_id" else TEXT_MIN_WIDTH,
            )
        )
    cells = [
        [
            _status_cell(value) if name == "status" else _cell(name, value)
            for name, value in zip(names, row, strict=True)
        ]
        for row in values
    ]
    return FittedTable(columns, cells, fit=fit, hint=hint)


def runs_table(
    found: Sequence[Mapping[str, Any]],
    names: Sequence[str] | None = None,
    *,
    metric: str = "raw_mean",
    fit: bool = True,
    hint: str = "--wide or --columns to choose",
) -> FittedTable | str:
    """Runs, one line each, the status in its colour; a sentence when there are none.

    ``names``: the fields to show (default: the usual run columns, kept by
    `RUN_TABLE_PRIORITY` when the width is short).
    """
    if not found:
        return "no runs match"
    if names is None:
        names = [name for name, _ in RUN_TABLE_COLUMNS]
        return fields_table(found, names, priority=RUN_TABLE_PRIORITY, fit=fit, hint=hint)
    return fields_table(found, names, metric=metric, fit=fit, hint=hint)


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
    table.add_column(justify="right", no_wrap=True)
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), str(value))
    return table


def fields_list(values: Mapping[str, Any]) -> Table:
    """Named values, one per line: a one-record table (``current``)."""
    table = _field_table()
    table.add_column(overflow="fold")
    for key, value in values.items():
        table.add_row(key.replace("_", " "), _cell("", value))
    return table


OBJECTIVE_FIELDS: Final = ("objective_name", "direction", "weight", *OBJECTIVE_METRICS)


def objectives_table(objectives: Sequence[Mapping[str, Any]]) -> FittedTable:
    """One run's objectives: direction, weight and final values."""
    titles = ("objective", "direction", "weight", *OBJECTIVE_METRICS)
    priority = (0, 6, 5, 1, 2, 3, 4)
    columns = [
        TableColumn(
            title,
            priority=rank,
            numeric=title not in ("objective", "direction"),
            no_wrap=title == "direction",
        )
        for title, rank in zip(titles, priority, strict=True)
    ]
    rows = [
        [
            row["objective_name"],
            row["direction"] or "-",
            _cell("weight", row["weight"]),
            *(_cell(metric, row[metric]) for metric in OBJECTIVE_METRICS),
        ]
        for row in objectives
    ]
    return FittedTable(columns, rows)


COMPARISON_FIELDS: Final = ("gradient_method", "num_runs", "avg", "best")


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> FittedTable | str:
    """Gradient methods on one objective: runs, average and best."""
    if not rows:
        return "no runs with this objective"
    columns = [
        TableColumn("method"),
        TableColumn("runs", priority=3, numeric=True),
        TableColumn("avg", priority=2, numeric=True),
        TableColumn("best", priority=1, numeric=True),
    ]
    cells = [
        [
            str(row["gradient_method"]),
            str(row["num_runs"]),
            _cell("avg", row["avg"]),
            _cell("best", row["best"]),
        ]
        for row in rows
    ]
    return FittedTable(columns, cells)


def statistics_table(statistics: Mapping[str, Any]) -> Table:
    """One objective's statistics (count, avg, min, max, std), one per line."""
    table = _field_table()
    table.add_column(justify="right", no_wrap=True)
    for key, value in statistics.items():
        table.add_row(key, _cell(key, value))
    return table


def objective_runs_table(
    found: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    metric: str,
    *,
    fit: bool = True,
    hint: str = "",
) -> FittedTable:
    """Runs with the ``metric`` value of each of the objectives ``names``."""
    fields = ["run_id", "status", "gradient_method", *(f"objective.{name}" for name in names)]
    priority = ["run_id", *fields[3:], "status", "gradient_method"]
    return fields_table(found, fields, metric=metric, priority=priority, fit=fit, hint=hint)


def import_records(results: Sequence[ImportRow]) -> list[dict[str, Any]]:
    """Import results as objects of `IMPORT_FIELDS` (for JSON and CSV)."""
    return [{name: getattr(result, name) for name in IMPORT_FIELDS} for result in results]


def import_table(results: Sequence[ImportRow]) -> FittedTable:
    """What importing each W&B directory did."""
    columns = [
        TableColumn("directory", priority=1),
        TableColumn("result", priority=0, no_wrap=True),
        TableColumn("run", priority=2, min_width=ID_MIN_WIDTH),
        TableColumn("status", priority=4, no_wrap=True),
        TableColumn("steps", priority=5, numeric=True),
        TableColumn("detail", priority=3),
    ]
    rows = [
        [
            result.path,
            Text(result.action, style="red") if result.action == "failed" else result.action,
            result.run_id or "-",
            _status_cell(result.status),
            str(result.history_steps),
            result.error or "",
        ]
        for result in results
    ]
    return FittedTable(columns, rows)


def import_summary(counts: Mapping[str, int], dry_run: bool) -> str:
    """``3 created, 0 completed, …``, saying when nothing was written."""
    return ", ".join(f"{count} {action}" for action, count in counts.items()) + (
        " (dry run: nothing written)" if dry_run else ""
    )


def history_table(history: Mapping[str, Sequence[Any]], *, fit: bool = True) -> FittedTable:
    """A run's history, one line per step; ``_step`` first and kept, then keys in order."""
    rows = history_rows(history)
    return fields_table(rows, list(history), fit=fit, hint="--keys to choose")


def shown_footer(shown: int, total: int | None, noun: str = "runs") -> str | None:
    """``50 of 73 runs shown`` when some were left out (``total`` None: more exist, count
    unknown); None when all are shown."""
    if total is not None and shown >= total:
        return None
    if total is None:
        counted = noun.removesuffix("s") if shown == 1 else noun
        return f"{shown} {counted} shown; more match — use --limit or --all"
    return f"{shown} of {total} {noun} shown — use --limit or --all"


def listing_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    """A plain table of records (objective names, metric names): numbers right-aligned and
    never wrapped, text folded."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        numeric = any(isinstance(row[name], (int, float)) for row in rows)
        table.add_column(
            name, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold"
        )
    for row in rows:
        table.add_row(*(Text("-" if row[name] is None else str(row[name])) for name in columns))
    return table
