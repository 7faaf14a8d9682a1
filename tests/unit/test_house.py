"""The house rules of functions/ that no linter here checks (docs/development.md): no module over
500 lines, no function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules():
    return sorted(FUNCTIONS.rglob("*.py"))


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(FUNCTIONS)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_over_60_lines():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(FUNCTIONS)}:{node.name}"] = lines
    assert long == {}


def test_test_files_have_one_basename_each():
    """pytest imports test files by basename (rootdir conftest, no packages): two test_x.py in
    different folders fail collection with "import file mismatch" in whichever worker meets both."""
    seen = {}
    for path in sorted((FUNCTIONS.parent / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(FUNCTIONS.parent)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
