"""``training-db``: the command line for people at a terminal.

Thin commands over the library: each parses its options, calls one or two public functions
and renders the answer with rich. User mistakes print one line on stderr and exit 1;
``--verbose`` shows the traceback.

Where things are: `app` (the group ``main``, its global options, the `Context` and the one
error path), `parse` (option text to filters), `render` (results to tables, JSON and CSV;
no click, no database, so a web layer can share it), `output` (the console, the shared
output options, where notes go), and one module per command group:
`schema`, `runs`, `objectives`, `history`, `metrics`, `maintenance`, `demo`. Each of those registers
its commands on ``main`` when imported, which this module does.
"""

from __future__ import annotations

# Imported for their side effect: each registers its commands on `main`.
from training_db.cli import (  # noqa: F401
    demo,
    history,
    maintenance,
    metrics,
    objectives,
    runs,
    schema,
)
from training_db.cli.app import main

__all__ = ["main"]
