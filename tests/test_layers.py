"""The layers of the package, checked from its source: imports point down the layers and
never in a circle (issue 17).

core (0) < schema (1) < store (2) < db (3) < ops (4) < api (5) < safe (6) < cli (7), and the
package's ``__init__`` on top. A module may import its own layer and those below; within a
layer any arrow is fine but a cycle is not. Imports under ``if TYPE_CHECKING:`` and inside
functions count like the others. Everything is parsed with `ast`, nothing imported, so a
failure names the modules and the line at fault.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = REPO_ROOT / "src"
PACKAGE = "training_db"

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
    assert any(
        {"training_db.store.runs", "training_db.cli", "training_db.db"} <= set(cycle)
        for cycle in found
    ), found


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
