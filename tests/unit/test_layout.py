"""The engine's shape: the driver behind one package, layers that import downwards only, errors
in one module per layer, and modules small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "worker"
MODULES = sorted(WORKER.rglob("*.py"))
ERROR_MODULES = {"errors.py", "database/errors.py", "run/errors.py"}
# What each layer may import from the others (the shared edges are open to all).
FORBIDDEN = {
    "database": (
        "worker.run",
        "worker.service",
        "worker.store",
        "worker.registry",
        "worker.cli",
        "worker.web",
    ),
    "store": ("worker.run", "worker.service", "worker.cli", "worker.web"),
    "run": ("worker.service", "worker.cli", "worker.web"),
    "service": ("worker.cli", "worker.web"),
    # The status page reads the store and queues requests; it never runs a job itself.
    "web": ("worker.run", "worker.cli"),
    # Where a job's data comes from: HTTP, readers, pagination; no runs, state or database.
    "source": (
        "worker.run",
        "worker.service",
        "worker.store",
        "worker.database",
        "worker.registry",
        "worker.cli",
        "worker.web",
    ),
}


def name(path: Path) -> str:
    return path.relative_to(WORKER).as_posix()


def runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported when the module runs (an `if TYPE_CHECKING:` block is for types only)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


def test_the_tree_is_where_the_layout_test_looks() -> None:
    assert set(FORBIDDEN) <= {p.name for p in WORKER.iterdir()}
    assert len(MODULES) > 30


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_only_the_database_package_imports_the_driver(path: Path) -> None:
    imports = runtime_imports(ast.parse(path.read_text()))
    driver = [m for m in imports if m.split(".")[0] == "psycopg2"]
    if name(path).startswith("database/"):
        return
    assert driver == [], f"{name(path)} imports {driver}"


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_layers_import_downwards_only(path: Path) -> None:
    layer = name(path).split("/")[0]
    imports = runtime_imports(ast.parse(path.read_text()))
    upward = [m for m in imports if m.startswith(FORBIDDEN.get(layer, ()))]
    assert upward == [], f"{name(path)} imports {upward}"


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_no_module_exceeds_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_exceptions_are_defined_in_their_layers_errors_module(path: Path) -> None:
    tree = ast.parse(path.read_text())
    defined = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(
            getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception"))
            or getattr(base, "id", "") in {"Skipped", "RunError", "NightshiftError"}
            for base in node.bases
        )
    ]
    if name(path) in ERROR_MODULES:
        assert defined, f"{name(path)} defines no error"
    else:
        assert defined == [], f"{name(path)} defines {defined}"
