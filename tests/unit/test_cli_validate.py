"""`dropbatch validate` as a user runs it: exit codes, the report on stdout, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import orjson
from corpus import CORPUS, write_jsonl


def dropbatch(*args):
    return subprocess.run(
        [sys.executable, "-m", "dropbatch", *map(str, args)], capture_output=True, text=True
    )


def test_valid_file_exits_0(tmp_path):
    path = tmp_path / "ok.jsonl"
    write_jsonl(path, CORPUS)
    out = dropbatch("validate", path)
    assert out.returncode == 0, out.stderr
    assert f"{len(CORPUS)} requests, valid" in out.stdout


def test_invalid_file_json_report(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(
        path,
        [
            CORPUS[0],
            b"{nope",
            {"request": {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}},
        ],
    )
    out = dropbatch("validate", path, "--json")
    assert out.returncode == 1
    report = orjson.loads(out.stdout)
    assert report["valid"] is False and report["requests"] == 3 and report["truncated"] is False
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (2, "invalid_json"),
        (3, "invalid_role"),
    ]
    human = dropbatch("validate", path)
    assert human.returncode == 1
    assert "line 3: request.contents[0].role is 'assistant'; use 'user' or 'model'" in human.stdout


def test_user_mistakes_exit_2_without_traceback(tmp_path):
    for args in (
        ["validate", tmp_path / "missing.jsonl"],
        ["validate", tmp_path],
        ["validate"],
        ["nope"],
    ):
        out = dropbatch(*args)
        assert out.returncode == 2, (args, out)
        assert "Traceback" not in out.stderr and out.stderr.strip()


def test_help_lists_commands():
    out = dropbatch("--help")
    assert out.returncode == 0 and "validate" in out.stdout
