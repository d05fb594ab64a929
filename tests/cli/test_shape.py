"""The CLI's shape: no import cycle between ``crossrank.cli`` and the edges, and small functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import crossrank

PACKAGE = Path(crossrank.__file__).resolve().parent
EDGES = ("batch", "eval", "server", "ray")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_edges_never_import_the_cli_app() -> None:
    for edge in EDGES:
        for path in (PACKAGE / edge).rglob("*.py"):
            assert "crossrank.cli.app" not in imported_modules(path), path


def test_only_the_app_imports_the_edges() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name == "app.py":
            continue
        edges = {m for m in imported_modules(path) if m.split(".")[:2] in [["crossrank", e] for e in EDGES]}
        assert not edges, f"{path.name} imports {edges}"


def test_the_package_init_imports_nothing() -> None:
    tree = ast.parse((PACKAGE / "cli" / "__init__.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_the_shared_helpers_load_no_command() -> None:
    code = ("import sys, crossrank.cli.console, crossrank.cli.options; "
            "loaded = [m for m in sys.modules if m.startswith(('crossrank.batch', 'crossrank.eval', "
            "'crossrank.server', 'crossrank.cli.app'))]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(PACKAGE.parent)})


def test_no_function_in_the_cli_is_over_60_lines() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                assert lines <= 60, f"{path.name}:{node.lineno} {node.name} has {lines} lines"
