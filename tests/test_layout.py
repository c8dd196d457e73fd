"""The tree shows the architecture: no import circle among the harness's modules (counting imports
inside functions), and no module so long that it holds more than one job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harness

ROOT = Path(harness.__file__).parent
MAX_LINES, MAX_CLI_LINES = 450, 300


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(path: Path) -> set[str]:
    """The harness modules ``path`` imports, at any depth (a package's submodule where named)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the modules along it (depth-first search, colouring)."""
    state, stack, found = {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_finder_sees_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    source = "def late():\n    from harness.execution import runner\n"
    path = ROOT.parent / "scratch_for_layout_test.py"
    try:
        path.write_text(source)
        assert imported(path) == {"harness.execution.runner"}
    finally:
        path.unlink()


def test_no_import_circle_among_harness_modules():
    graph = {name: imported(path) - {name} for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_no_module_holds_more_than_one_job():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > (MAX_CLI_LINES if ".cli." in name else MAX_LINES)
    }
    assert long == {}


def test_the_build_lists_every_package():
    """pyproject.toml lists the packages (``harness_backends`` is mapped from the top-level folder
    backends/, which discovery cannot do): a package under harness/ missing from the list would be
    missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    checkout = Path(__file__).resolve().parents[1]  # tox imports the installed harness: read the source
    setuptools = tomllib.loads((checkout / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(checkout).parts) for p in (checkout / "harness").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found | {"harness_backends"}
    assert setuptools["package-dir"] == {"harness_backends": "backends"}
