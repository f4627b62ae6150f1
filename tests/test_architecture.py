"""The package's architecture, checked from its source: imports point down the layers and
never in a circle; revisions import only stable building blocks; the wheel carries every
package and nothing clashes with the revisions' package (issue 17).

Everything here parses files with `ast`; nothing is imported, so a test names the file
and line at fault even when the import it objects to would fail.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = REPO_ROOT / "src"
PACKAGE = "training_db"
VERSIONS = REPO_ROOT / "alembic" / "versions"

# The layers, lowest first: a module may import its own layer and the ones below it.
LAYERS: Mapping[str, int] = {
    "core": 0,
    "schema": 1,
    "store": 2,
    "db": 3,
    "ops": 4,
    "api": 5,
    "safe": 6,
    "cli": 7,
}
TOP = len(LAYERS)  # the package's __init__: the public surface, above everything

# What a revision may import from the package: building blocks that do not change meaning
# (the column types stored data is written in; the guards a downgrade starts with).
REVISION_IMPORTS: Mapping[str, frozenset[str]] = {
    "training_db.core.types": frozenset({"JSONDocument", "UTCDateTime", "Int64", "Float64"}),
    "training_db.schema.migrations": frozenset({"refuse_data_loss", "refuse_narrowing"}),
}


# --- the import graph ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One arrow of the graph: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int


def modules(root: Path = SOURCE_ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def package_imports(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """The package's modules that ``name`` imports, anywhere in it: at the top, inside
    functions and under ``if TYPE_CHECKING:`` alike (a type-only arrow is still an arrow).

    ``from a.b import c`` is an arrow to ``a.b.c`` when that is a module, else to ``a.b``;
    relative imports are resolved against the module's package.
    """
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE:
                continue
            targets = {f"{module}.{alias.name}" for alias in node.names}
            for target in sorted({target if target in known else module for target in targets}):
                yield Import(name, target, node.lineno)


def import_graph(root: Path = SOURCE_ROOT) -> dict[str, list[Import]]:
    known = modules(root)
    return {name: list(package_imports(name, path, known)) for name, path in known.items()}


def layer(module: str) -> int:
    """A module's layer: the first name under the package, the package itself on top."""
    parts = module.split(".")
    if len(parts) == 1:
        return TOP
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[parts[1]]


def upward_imports(graph: Mapping[str, list[Import]]) -> list[str]:
    """Every arrow that points to a higher layer, as ``a (layer) -> b (layer), line n``."""
    return [
        f"{arrow.source} ({layer(arrow.source)}) -> {arrow.target} ({layer(arrow.target)}), "
        f"line {arrow.line}"
        for arrows in graph.values()
        for arrow in arrows
        if layer(arrow.target) > layer(arrow.source)
    ]


def cycles(graph: Mapping[str, list[Import]]) -> list[list[str]]:
    """One import cycle through each strongly connected set of modules, as a path that ends
    where it starts (Tarjan's algorithm, iterative)."""
    successors = {
        name: sorted({arrow.target for arrow in arrows if arrow.target in graph})
        for name, arrows in graph.items()
    }
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(successors):
        if start in index:
            continue
        work = [(start, iter(successors[start]))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in successors[node]:
                        components.append(component)
            elif child not in index:
                index[child] = lowlink[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(successors[child])))
            elif child in on_stack:
                lowlink[node] = min(lowlink[node], index[child])
    return [_cycle_path(sorted(component), successors) for component in components]


def _cycle_path(component: list[str], successors: Mapping[str, list[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in successors[node]:
                if child == start:
                    return [*paths[node], start]
                if child in members and child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def test_every_module_is_in_a_layer() -> None:
    assert {layer(name) for name in modules()} <= {*LAYERS.values(), TOP}


def test_imports_point_down_the_layers() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(path) for path in found)


def copy_of_package(tmp_path: Path) -> Path:
    """A copy of src/training_db to break on purpose; returns its ``src``."""
    root = tmp_path / "src"
    for path in modules().values():
        target = root / path.relative_to(SOURCE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_an_upward_import_and_a_cycle_are_found(tmp_path: Path) -> None:
    """The checks above can fail: the store importing the CLI (a relative import, under
    TYPE_CHECKING) points up, and two schema modules importing each other are a cycle;
    the messages name the path."""
    root = copy_of_package(tmp_path)
    append(
        root / PACKAGE / "store" / "runs.py", "\nif TYPE_CHECKING:\n    from ..cli import main\n"
    )
    append(
        root / PACKAGE / "schema" / "objectives.py",
        "\nfrom training_db.schema.runs import RunTag\n",
    )
    graph = import_graph(root)
    assert [
        line
        for line in upward_imports(graph)
        if line.startswith("training_db.store.runs (2) -> training_db.cli (7), line ")
    ]
    found = cycles(graph)
    assert [
        "training_db.schema.objectives",
        "training_db.schema.runs",
        "training_db.schema.objectives",
    ] in found
    # the CLI reaches the store through api and db: the upward arrow closes a cycle as well
    assert [
        "training_db.api",
        "training_db.db",
        "training_db.store.runs",
        "training_db.cli",
        "training_db.api",
    ] in found


def test_relative_imports_resolve_where_python_looks(tmp_path: Path) -> None:
    probe = tmp_path / "rows.py"
    probe.write_text(
        "from . import codec\nfrom ..history import shapes\nfrom ...core.errors import X\n",
        encoding="utf-8",
    )
    known = modules()
    arrows = package_imports("training_db.store.history.rows", probe, known)
    assert [arrow.target for arrow in arrows] == [
        "training_db.store.history.codec",
        "training_db.store.history.shapes",
        "training_db.core.errors",
    ]


# --- the revisions import only what cannot change under them ---------------------------------


def revision_imports(path: Path) -> Iterator[tuple[str, str, int]]:
    """(module, name, line) of every import of the package in a revision file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, "*", node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:
                yield node.module or "", alias.name, node.lineno


def forbidden_revision_imports(path: Path) -> list[str]:
    return [
        f"{path.name}:{line}: {module} import {name}"
        for module, name, line in revision_imports(path)
        if name not in REVISION_IMPORTS.get(module, frozenset())
    ]


REVISION_FILES = sorted(VERSIONS.glob("*.py"))


def test_there_are_revisions_to_check() -> None:
    assert len(REVISION_FILES) >= 7


@pytest.mark.parametrize("path", REVISION_FILES, ids=lambda path: path.name)
def test_a_revision_imports_only_stable_building_blocks(path: Path) -> None:
    """A revision copies the logic it runs: importing the package's live code would let a
    later change to that code change how an old revision replays."""
    assert forbidden_revision_imports(path) == []


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("from training_db.store.history import decode_steps", "decode_steps"),
        ("import training_db.schema.extraction", "*"),
        ("from training_db.schema.migrations import upgrade", "upgrade"),
        ("from training_db.core.jsoncodec import decode_document", "decode_document"),
    ],
)
def test_a_live_import_in_a_revision_is_refused(
    tmp_path: Path, statement: str, refused: str
) -> None:
    """Top-level or inside a function, the allow-list catches it."""
    revision = tmp_path / "0099_live.py"
    revision.write_text(
        "from training_db.core.types import JSONDocument\n"
        f"def upgrade() -> None:\n    {statement}\n",
        encoding="utf-8",
    )
    (found,) = forbidden_revision_imports(revision)
    assert found.startswith("0099_live.py:3: training_db.")
    assert found.endswith(f" import {refused}")


# --- the wheel: every package listed, none clashing with the revisions -----------------------


def setuptools_config() -> Any:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["setuptools"]


def missing_from_wheel(root: Path = SOURCE_ROOT) -> set[str]:
    """Packages under src/training_db (directories with ``__init__.py``) that pyproject's
    ``packages`` does not list: the wheel would not carry them."""
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / PACKAGE).rglob("__init__.py")
    }
    return found - set(setuptools_config()["packages"])


def clashing_modules(root: Path = SOURCE_ROOT) -> set[str]:
    """Modules or packages under src/training_db named like a package that pyproject's
    ``package-dir`` maps to another directory (``training_db.revisions`` = alembic/)."""
    mapped = {name for name in setuptools_config()["package-dir"] if name}
    return {
        name
        for name in modules(root)
        if any(name == package or name.startswith(f"{package}.") for package in mapped)
    }


def test_the_revisions_package_is_mapped_elsewhere() -> None:
    assert setuptools_config()["package-dir"]["training_db.revisions"] == "alembic"


def test_every_package_under_src_is_in_the_wheel() -> None:
    """setuptools finds nothing by itself when ``packages`` is an explicit list."""
    assert missing_from_wheel() == set()


def test_no_module_is_named_like_a_package_mapped_elsewhere() -> None:
    assert clashing_modules() == set()


def test_a_clash_and_a_missing_package_are_found(tmp_path: Path) -> None:
    root = copy_of_package(tmp_path)
    (root / PACKAGE / "revisions.py").write_text("", encoding="utf-8")
    (root / PACKAGE / "web").mkdir()
    (root / PACKAGE / "web" / "__init__.py").write_text("", encoding="utf-8")
    assert clashing_modules(root) == {"training_db.revisions"}
    assert missing_from_wheel(root) == {"training_db.web"}
