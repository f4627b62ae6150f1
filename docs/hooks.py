"""MkDocs hooks: pages made from the code itself, so they cannot drift from it.

``<!-- operations -->`` in a page becomes the table and reference of every public operation,
made from the declarations in ``training_db.store`` and ``training_db.ops`` (see
``training_db.core.operations``): the same registry the ``TrainingDB`` methods, the
module-level functions and the ``safe`` twins are made from. Static documentation tools
cannot see those faces (they are made when the package is imported), so this hook imports
the package and writes them out.
"""

from __future__ import annotations

import inspect
from typing import Any

import training_db  # noqa: F401 - importing the package declares every operation
from training_db.core.operations import operations

OPERATIONS_MARKER = "<!-- operations -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the markers this hook knows; leave every other page as it is."""
    if OPERATIONS_MARKER in markdown:
        markdown = markdown.replace(OPERATIONS_MARKER, operations_markdown())
    return markdown


def operations_markdown() -> str:
    """The operations table, then one section per operation: signature and docstring."""
    declared = list(operations())
    lines = [
        '| operation | kind | retried after a lost COMMIT | call-time "now" (safe twin) '
        "| `safe` twin | declared in |",
        "|---|---|---|---|---|---|",
    ]
    for operation in declared:
        spans = operation.scope == "database"  # its own transactions decide their retries
        lines.append(
            f"| [`{operation.name}`](#{operation.name}) | {operation.kind}"
            f"{' (spans transactions)' if spans else ''} "
            f"| {'—' if spans else 'yes' if operation.idempotent else 'no'} "
            f"| {', '.join(f'`{name}`' for name in operation.now) or '—'} "
            f"| {'yes' if operation.safe else '—'} "
            f"| `{operation.function.__module__}.{operation.family}` |"
        )
    for operation in declared:
        lines += [
            "",
            f"### `{operation.name}` {{#{operation.name}}}",
            "",
            "```python",
            f"{operation.name}{operation.signature}",
            "```",
            "",
            inspect.cleandoc(operation.function.__doc__ or ""),
        ]
    return "\n".join(lines) + "\n"
