"""The function archive holds the entry points and the package, without the CLI and the local stack.

The archive is built by Terraform's archive_file from functions/ with the excludes in infra/main.tf;
these tests apply the same excludes (doublestar globs, as the hashicorp/archive provider >= 2.4
reads them), assert the file list, and import the handlers from an unpacked copy of exactly those
files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_terraform import INFRA, ROOT, load_all

DEPLOYED = {
    "main.py",
    "requirements.txt",
    "dropbatch/__init__.py",
    "dropbatch/gemini_schema.json",
    "dropbatch/prices.json",
    "dropbatch/results_table.json",
    *(
        f"dropbatch/{m}.py"
        for m in (
            "batch",
            "checks",
            "config",
            "constants",
            "content_checks",
            "cost",
            "documents",
            "errors",
            "events",
            "finish",
            "jobs",
            "keys",
            "layout",
            "store",
            "lineio",
            "logs",
            "matching",
            "notify",
            "ordered",
            "outcome",
            "retry",
            "reuse",
            "rounds",
            "families",
            "family_base",
            "family_claude",
            "family_embeddings",
            "family_open",
            "openai_batch",
            "schema",
            "schema_walk",
            "split",
            "split_outputs",
            "staging",
            "sweep",
            "submit",
            "table",
            "tablesource",
            "validate",
            "vertex",
            "deliver",
            "webhooks",
            "budget",
            "admit",
        )
    ),
}


def glob_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def archive_files(source: Path, excludes: list[str]) -> set[str]:
    patterns = [glob_regex(p) for p in excludes]
    files = (p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    return {f for f in files if not any(p.match(f) for p in patterns)}


def archive_spec() -> tuple[Path, list[str]]:
    spec = load_all(INFRA)["data"]["archive_file"]["source"]
    assert spec["source_dir"] == "${path.module}/../functions"
    return ROOT / "functions", spec["excludes"]


def test_the_archive_holds_the_entry_points_and_the_package_only():
    source, excludes = archive_spec()
    assert archive_files(source, excludes) == DEPLOYED


def test_the_excludes_would_catch_a_stray_cli_or_stack_file(tmp_path):
    _, excludes = archive_spec()
    for name in (
        "dropbatch/cli/__init__.py",
        "dropbatch/control.py",
        "dropbatch/local/stack.py",
        "dropbatch/local/x/y.py",
        "dropbatch/__pycache__/a.pyc",
        "dropbatch.egg-info/PKG-INFO",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "main.py").write_text("")
    assert archive_files(tmp_path, excludes) == {"main.py"}


def test_the_deployed_files_import_on_their_own(tmp_path):
    source, excludes = archive_spec()
    for name in archive_files(source, excludes):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, tmp_path / name)
    code = (
        "import sys, main, dropbatch, dropbatch.submit, dropbatch.sweep, dropbatch.rounds, "
        "dropbatch.split\n"
        f"assert dropbatch.__file__.startswith({str(tmp_path)!r}), dropbatch.__file__\n"
        "try:\n    import dropbatch.cli\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    sys.exit('the CLI was importable from the archive')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
