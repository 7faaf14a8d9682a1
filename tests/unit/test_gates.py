"""`make test` runs `make lint` first (Makefile): ruff's format check, then its rules with the
complexity ceiling, both as pyproject.toml sets them. Each is shown failing on a broken copy of a
package module, in a folder of its own with the project's pyproject.toml, and passing on the clean
one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")
MODULE = "functions/dropbatch/outcome.py"

# a function of complexity 16: one over pyproject.toml's max-complexity
BRANCHY = (
    "\n\ndef branchy(x):\n"
    + "".join(f"    if x == {n}:\n        return {n}\n" for n in range(15))
    + "    return -1\n"
)


def lint_commands() -> list[list[str]]:
    """The lint target's recipe lines, as `make lint` runs them."""
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    return [
        [str(RUFF), *line.split()[1:]]
        for line in recipe.group(1).splitlines()
        if line.strip().startswith("$(VENV)/bin/ruff")
    ]


def gates(tree: Path) -> list[int]:
    return [subprocess.run(c, cwd=tree, capture_output=True).returncode for c in lint_commands()]


@pytest.fixture
def tree(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / MODULE).parent.mkdir(parents=True)
    shutil.copy(ROOT / MODULE, tmp_path / MODULE)
    return tmp_path


def test_the_lint_target_is_the_format_check_then_the_rules():
    assert [c[1:] for c in lint_commands()] == [
        ["format", "--check", "--quiet", "."],
        ["check", "--quiet", "."],
    ]


def test_a_clean_copy_passes_both(tree):
    assert gates(tree) == [0, 0]


@pytest.mark.parametrize(
    "broken, fails",
    [
        (lambda s: s.replace("\n\n\n", "\n\n\n\n", 1), [1, 0]),  # unformatted
        (lambda s: s + "\n\ndef unused():\n    x = 1\n", [0, 1]),  # F841, formatted as it is
        (lambda s: s + BRANCHY, [0, 1]),  # C901 over the ceiling of 15
    ],
    ids=["unformatted", "lint-error", "too-complex"],
)
def test_a_broken_copy_fails_its_gate(tree, broken, fails):
    path = tree / MODULE
    path.write_text(broken(path.read_text()))
    assert gates(tree) == fails
