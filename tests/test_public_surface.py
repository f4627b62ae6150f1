"""The public surface does not move by accident.

A snapshot of every name in ``training_db.__all__`` (functions: their signatures; classes:
their public methods' signatures) and of every best-effort twin in ``training_db.safe``
is kept in ``tests/public_surface.json``. A change to a signature fails here; when the
change is intended, regenerate the snapshot with ``python -m tests.test_public_surface``
and say why in the commit.

A signature is compared by what callers depend on: each parameter's name, kind and
default, and its annotation with module prefixes (``dt.``, ``typing.``) dropped, so that
moving a module or importing a type another way is not a change.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import training_db
from training_db import safe

SNAPSHOT = Path(__file__).with_name("public_surface.json")
_PREFIX = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _PREFIX.sub("", text.replace("'", ""))


def describe(function: Any) -> list[str]:
    """One line per parameter (``kind name: annotation = default``), then the return type."""
    signature = inspect.signature(function)
    lines = []
    for parameter in signature.parameters.values():
        line = f"{parameter.kind.name} {parameter.name}"
        if parameter.annotation is not inspect.Parameter.empty:
            line += f": {_annotation(parameter.annotation)}"
        if parameter.default is not inspect.Parameter.empty:
            line += f" = {parameter.default!r}"
        lines.append(line)
    lines.append(f"-> {_annotation(signature.return_annotation)}")
    return lines


def public_methods(cls: type) -> dict[str, list[str]]:
    """The signatures of the class's public methods (properties and attributes left out)."""
    return {
        name: describe(getattr(cls, name))
        for name in sorted(dir(cls))
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


def surface() -> dict[str, Any]:
    """What callers of the package can see, by name."""
    found: dict[str, Any] = {"training_db": {}, "training_db.safe": {}}
    for name in sorted(training_db.__all__):
        value = getattr(training_db, name)
        if inspect.isclass(value):
            if issubclass(value, BaseException):
                found["training_db"][name] = {
                    "bases": [base.__name__ for base in value.__mro__[1:]]
                }
            else:
                found["training_db"][name] = {
                    "__init__": describe(value.__init__),
                    "methods": public_methods(value),
                }
        else:
            found["training_db"][name] = describe(value)
    for name in sorted(safe.__all__):
        value = getattr(safe, name)
        if inspect.isfunction(value):
            found["training_db.safe"][name] = describe(value)
        elif not inspect.isclass(value):
            found["training_db.safe"][name] = repr(value)
    return found


def test_the_public_surface_matches_the_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    current = surface()
    for module in expected:
        for name, was in expected[module].items():
            assert name in current[module], f"{module}.{name} disappeared"
            now = current[module][name]
            if isinstance(was, dict) and "methods" in was:  # a class: method by method
                for method, signature in was["methods"].items():
                    assert now["methods"].get(method) == signature, f"{name}.{method} changed"
            assert now == was, f"{module}.{name} changed"
    assert current == expected  # nothing added without a snapshot update either


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(surface(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {SNAPSHOT}")
