"""The wheel carries every package, and nothing clashes with the revisions' package (issue 17).

pyproject.toml lists the packages explicitly and maps ``training_db.revisions`` to the
top-level alembic/ folder (``package-dir``): a package missing from the list would be absent
from the wheel, and a module of the mapped name under src/training_db would clash with it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.test_layers import PACKAGE, REPO_ROOT, SOURCE_ROOT, copy_of_package, modules

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


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
