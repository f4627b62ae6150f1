"""How commands print: the console, the output options they share, and the machine formats.

At a terminal, tables fit its width (see `render.FittedTable`). Piped or captured, output is
not squeezed into a width (``COLUMNS`` still sets one) and no line ends in spaces. Data goes
to stdout; a note about it (``50 of 73 runs shown``) follows a table on stdout, and goes to
stderr after JSON or CSV so that programs read clean data.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Final, TypeVar, cast

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement

from training_db.cli import render

F = TypeVar("F", bound=Callable[..., Any])
# Piped output without COLUMNS: wide enough that no table is narrowed.
PIPED_WIDTH: Final = 10_000


class _TrimmedStdout(io.TextIOBase):
    """sys.stdout (looked up at each write, as click's test runner swaps it) with the
    trailing spaces of every line removed."""

    def __init__(self) -> None:
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *complete, self._pending = (self._pending + text).split("\n")
        if complete:
            sys.stdout.write("".join(line.rstrip() + "\n" for line in complete))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            sys.stdout.write(self._pending.rstrip())
            self._pending = ""
        sys.stdout.flush()


def make_console() -> Console:
    """The console of a command: the terminal's width at a terminal; piped, `PIPED_WIDTH`
    (or ``COLUMNS``) with trailing spaces trimmed."""
    # markup=False: what the database holds (a run id like ``exp[lr]``, a path, a message)
    # prints as it is, in tables too; a command's own styling asks for markup=True.
    if Console().is_terminal:
        return Console(highlight=False, soft_wrap=False, markup=False)
    width = None if "COLUMNS" in os.environ else PIPED_WIDTH
    trimmed = cast(IO[str], _TrimmedStdout())
    return Console(file=trimmed, highlight=False, soft_wrap=False, width=width, markup=False)


def columns_option(function: F) -> F:
    """``--columns``: the fields to print, in order, in every format."""
    return click.option(
        "--columns",
        "columns",
        multiple=True,
        metavar="A,B,…",
        help="Fields to show, comma-separated, in every format: run columns, "
        "config.<path>, summary.<key>, tag.<key>, objective.<name>.",
    )(function)


def wide_option(function: F) -> F:
    """``--wide``: every column, however wide the table."""
    return click.option(
        "--wide", is_flag=True, help="Show every column even if wider than the terminal."
    )(function)


def split_columns(values: Sequence[str]) -> list[str]:
    """``('run_id,status', 'summary.loss')`` → ``['run_id', 'status', 'summary.loss']``."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def print_table(out: Console, renderable: RenderableType, *, wide: bool = False) -> None:
    """Print a table; with ``wide``, at its full width even beyond the terminal's."""
    if wide and out.is_terminal:
        natural = Measurement.get(out, out.options.update(width=PIPED_WIDTH), renderable).maximum
        if natural > out.width:
            out = Console(
                file=out.file,
                width=natural,
                force_terminal=True,
                color_system=cast(Any, out.color_system),
                highlight=False,
                soft_wrap=False,
            )
    out.print(renderable)


def print_records(
    out: Console,
    output_format: str,
    records: Sequence[Mapping[str, Any]],
    names: Sequence[str] = (),
) -> None:
    """Objects as a JSON array or as CSV (header: ``names``, or the keys of the first)."""
    if output_format == "json":
        out.print_json(render.records_json(records))
    else:
        names = list(names or (records[0] if records else ()))
        click.echo(render.records_csv(names, records), nl=False)


def print_listing(
    out: Console,
    output_format: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    empty: str,
) -> None:
    """Plain records (the ``list`` commands) as a table, JSON or CSV with ``columns``;
    ``empty`` is the table's text when there is no row."""
    if output_format != "table":
        print_records(out, output_format, rows, columns)
    elif not rows:
        out.print(empty, markup=False)
    else:
        print_table(out, render.listing_table(rows, columns))


def print_record(out: Console, output_format: str, record: Mapping[str, Any]) -> None:
    """One object as JSON, or as CSV with one row."""
    if output_format == "json":
        out.print_json(render.json_text(record))
    else:
        click.echo(render.records_csv(list(record), [record]), nl=False)


def note(out: Console, output_format: str, text: str | None) -> None:
    """A line about the output: under a table, or on stderr after JSON or CSV."""
    if text is None:
        return
    if output_format == "table":
        out.print(text, style="dim", markup=False)
    else:
        click.echo(text, err=True)
