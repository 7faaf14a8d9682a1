"""layout: every object name under a batch's folder is built in layout.py; an execution's id."""

from __future__ import annotations


def test_execution_id_is_the_platforms_when_there_is_one():
    """Log lines join the platform's request logs: the id is the Function-Execution-Id header Cloud
    Run functions send (and functions-framework sets when absent); outside a request, a fresh one.
    """
    import flask
    from dropbatch.store import execution_id

    with flask.Flask("t").test_request_context(headers={"Function-Execution-Id": "exec-7f3a"}):
        assert execution_id() == "exec-7f3a"
    assert len(execution_id()) == 12 and execution_id() != execution_id()


def test_bucket_paths_are_built_only_by_the_layout_module():
    """docs/contracts.md's layout, in one module: no other module of the package spells a batch
    object's name (its string constants and f-string parts are searched; docstrings, messages and
    local temp files aside)."""
    import ast
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "functions" / "dropbatch"
    names = re.compile(
        r"^(?:input|output|split|ordered|results|submit)/|(?:ledger|report|manifest)\.json"
        r"|(?:errors|results)\.jsonl|\.done\.json|\.checkpoint\.json|seg/b|/ordered/"
    )
    offenders = []
    for path in package.glob("*.py"):
        if path.name == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        offenders += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and names.search(node.value)
            and " " not in node.value
            and not node.value.endswith(".tmp")
        ]
    assert offenders == []
