"""The splitter on real-format output: shuffled, re-serialized with nulls, several files,
duplicates, failures with JSON in `status`, blocked prompts, missing and unmatched lines; label and
fingerprint matching."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from corpus import write_jsonl
from dropbatch.config import Config
from dropbatch.keys import line_labels
from dropbatch.matching import canonical, fingerprint
from dropbatch.outcome import build_result, parse_status
from dropbatch.split import split_local

DATA = Path(__file__).resolve().parents[1] / "data"


def req(text, **extra):
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}}


def echo(request, label=None):
    """What Vertex writes back: snake_case parts with null oneof siblings, keys reordered, labels
    maybe."""
    parts = [{"file_data": None, "text": p["text"]} for p in request["contents"][0]["parts"]]
    out = {"contents": [{"parts": parts, "role": "user"}]}
    for k, v in request.items():
        if k != "contents":
            out[k] = v
    if label is not None:
        out["labels"] = {**request.get("labels", {}), **line_labels(label, 2)}
    return dict(reversed(list(out.items())))


def ok(request, text, label=None, tokens=(3, 4)):
    return {
        "status": "",
        "processed_time": "2026-11-20T14:04:28.376+00:00",
        "request": echo(request, label),
        "response": {
            "candidates": [
                {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}
            ],
            "usageMetadata": {
                "promptTokenCount": tokens[0],
                "candidatesTokenCount": tokens[1],
                **({"thoughtsTokenCount": tokens[2]} if len(tokens) > 2 else {}),
                "totalTokenCount": sum(tokens),
            },
        },
    }


@pytest.fixture
def scenario(tmp_path):
    inputs = [
        req("alpha"),
        {"key": "custom", **req("beta")},
        req("same"),
        req("same"),
        req("blocked"),
        req("bad"),
        req("lost"),
        req("gamma", generationConfig={"temperature": 0.5}),
    ]
    write_jsonl(tmp_path / "in.jsonl", inputs)
    r = [line["request"] for line in inputs]
    outputs = [
        ok(r[0], "A"),
        ok(r[1], "B"),
        ok(r[2], "S1"),
        ok(r[3], "S2"),
        {
            "status": "",
            "processed_time": "t",
            "request": echo(r[4]),
            "response": {
                "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 2},
            },
        },
        {
            "status": 'Bad Request: {"error": {"code": 400, "message": "Please use a valid role: '
            'user, model.", '
            '"status": "INVALID_ARGUMENT"}}',
            "processed_time": "t",
            "request": echo(r[5]),
        },
        ok(r[7], "G", tokens=(5, 6, 7)),  # a thinking model's usage
        ok(r[0], "A-duplicate"),  # Vertex has been seen writing a request twice
        ok(req("never sent")["request"], "X"),  # matches no input
    ]
    random.Random(3).shuffle(outputs)
    preds = tmp_path / "prediction-model-2026" / "x"
    preds.mkdir(parents=True)
    write_jsonl(preds / "predictions.jsonl", outputs[:5])
    write_jsonl(preds / "predictions_00001.jsonl", outputs[5:])
    return tmp_path, outputs


def load(out: Path, key: str) -> dict:
    return orjson.loads((out / f"{key}.json").read_bytes())


def test_split_exact_results(scenario):
    tmp, outputs = scenario
    out = tmp / "out"
    manifest = split_local(
        str(tmp / "in.jsonl"), [str(tmp / "prediction-model-2026")], str(out), Config()
    )
    assert manifest["counts"] == {
        "total": 8,
        "succeeded": 5,
        "failed": 2,
        "missing": 1,
        "duplicate_outputs": 1,
        "unmatched_outputs": 1,
    }
    assert manifest["state"] == "partially_succeeded"
    assert manifest["usage"] == {
        "prompt_tokens": 3 * 4 + 5 + 2,
        "candidates_tokens": 4 * 4 + 6,
        "thoughts_tokens": 7,
        "total_tokens": 7 * 4 + 18 + 2,
    }
    assert sorted(p.name for p in out.glob("*.json")) == sorted(
        ["1.json", "custom.json", "3.json", "4.json", "5.json", "6.json", "8.json", "manifest.json"]
    )
    first = load(out, "1")
    assert (
        first["status"] == "succeeded"
        and first["text"] in ("A", "A-duplicate")
        and first["key"] == "1"
    )
    assert load(out, "custom")["text"] == "B"
    # identical requests: one output each
    assert {load(out, "3")["text"], load(out, "4")["text"]} == {"S1", "S2"}
    blocked = load(out, "5")
    assert (
        blocked["status"] == "failed"
        and blocked["error"]["code"] == "PROHIBITED_CONTENT"
        and blocked["text"] is None
    )
    bad = load(out, "6")
    assert bad["error"] == {
        "code": 400,
        "message": "Please use a valid role: user, model.",
        "status": "INVALID_ARGUMENT",
    }
    gamma = load(out, "8")
    assert (
        gamma["text"] == "G"
        and gamma["usage"]["totalTokenCount"] == 18
        and gamma["finish_reason"] == "STOP"
    )
    assert set(gamma) == {
        "key",
        "status",
        "request",
        "response",
        "text",
        "finish_reason",
        "usage",
        "error",
        "processed_time",
        "batch_id",
        "job",
    }
    errors = [orjson.loads(l) for l in (out / "errors.jsonl").read_bytes().splitlines()]
    assert [(e["key"], e["line"], e["status"]) for e in errors] == [
        ("5", 5, "failed"),
        ("6", 6, "failed"),
        ("7", 7, "missing"),
    ]


def test_split_writes_results_jsonl_in_input_order(scenario):
    tmp, _ = scenario
    out = tmp / "out"
    split_local(str(tmp / "in.jsonl"), [str(tmp / "prediction-model-2026")], str(out), Config())
    rows = [orjson.loads(line) for line in (out / "results.jsonl").read_bytes().splitlines()]
    assert [r["key"] for r in rows] == ["1", "custom", "3", "4", "5", "6", "7", "8"]
    assert [r["status"] for r in rows] == ["succeeded"] * 4 + ["failed"] * 2 + [
        "missing",
        "succeeded",
    ]
    for row in rows:
        if row["status"] != "missing":
            assert row == load(out, row["key"])
    assert rows[6]["error"]["code"] == "MISSING" and rows[6]["request"] is None


def test_split_is_deterministic(scenario):
    tmp, _ = scenario
    a, b = tmp / "a", tmp / "b"
    for out in (a, b):
        split_local(str(tmp / "in.jsonl"), [str(tmp / "prediction-model-2026")], str(out), Config())
    for path in a.glob("*.json"):
        if path.name != "manifest.json":
            assert path.read_bytes() == (b / path.name).read_bytes()


def test_labels_win_over_fingerprints(tmp_path):
    inputs = [req("same"), req("same")]
    write_jsonl(tmp_path / "in.jsonl", inputs)
    r = inputs[0]["request"]
    write_jsonl(tmp_path / "p.jsonl", [ok(r, "for line 2", label=2), ok(r, "for line 1", label=1)])
    split_local(
        str(tmp_path / "in.jsonl"), [str(tmp_path / "p.jsonl")], str(tmp_path / "o"), Config()
    )
    assert (
        load(tmp_path / "o", "1")["text"] == "for line 1"
        and load(tmp_path / "o", "2")["text"] == "for line 2"
    )


def test_the_shared_sample_lines_parse(tmp_path):
    lines = (DATA / "vertex-output-illustrative.jsonl").read_bytes().splitlines()
    results = [build_result(str(i), orjson.loads(l), "b", "j") for i, l in enumerate(lines)]
    assert [r["status"] for r in results] == ["succeeded", "failed", "failed"]
    assert (
        results[0]["text"] == "A laptop, a mug, a notebook."
        and "labels" not in results[0]["request"]
    )
    assert (
        results[1]["error"]["code"] == 400 and results[2]["error"]["code"] == "PROHIBITED_CONTENT"
    )


def test_fingerprint_folds_the_echo():
    mine = {
        "contents": {"role": "user", "parts": {"text": "x"}},
        "generationConfig": {"temperature": 1},
    }
    theirs = {
        "generation_config": {"temperature": 1.0},
        "labels": {"dropbatch-line": "9"},
        "contents": [{"parts": [{"file_data": None, "text": "x"}], "role": "user"}],
        "tools": [],
    }
    assert canonical(mine) == canonical(theirs) and fingerprint(mine) == fingerprint(theirs)
    assert fingerprint(mine) != fingerprint({**mine, "generationConfig": {"temperature": 0.5}})


@pytest.mark.parametrize(
    "status, code, message",
    [
        (
            'Bad Request: {"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}',
            400,
            "m",
        ),
        ("Internal error 500 occurred", 500, "Internal error 500 occurred"),
        ("something odd", None, "something odd"),
    ],
)
def test_parse_status(status, code, message):
    err = parse_status(status)
    assert err["code"] == code and err["message"] == message


def test_cli_split(scenario):
    tmp, _ = scenario
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropbatch",
            "split",
            "--input",
            str(tmp / "in.jsonl"),
            "--predictions",
            str(tmp / "prediction-model-2026"),
            "--out",
            str(tmp / "c"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["counts"]["succeeded"] == 5
    human = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropbatch",
            "split",
            "--input",
            str(tmp / "in.jsonl"),
            "--predictions",
            str(tmp / "nope"),
            "--out",
            str(tmp / "c"),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        human.returncode == 2 and "no such file" in human.stderr and "Traceback" not in human.stderr
    )


FIXTURES = [
    orjson.loads(line)
    for line in (Path(__file__).parents[1] / "data" / "vertex-output-lines.jsonl")
    .read_bytes()
    .splitlines()
]


@pytest.mark.parametrize("case", FIXTURES, ids=[c["source"][:50] for c in FIXTURES])
def test_output_lines_of_every_shape(case):
    """Each fixture says where its shape was seen (tests/data/vertex-output-lines.jsonl)."""
    from dropbatch.outcome import is_retryable

    result = build_result("k", case["line"], "b", "j")
    expect = case["expect"]
    assert result["status"] == expect["status"]
    if expect["error"] is None:
        assert result["error"] is None
    else:
        assert {k: result["error"].get(k) for k in expect["error"]} == expect["error"]
    assert is_retryable(result["error"]) is expect["retryable"]
    if "text" in expect:
        assert result["text"] == expect["text"]


def test_a_float32_echo_still_matches():
    """Vertex echoes `float` fields at float32 precision (0.1 -> 0.10000000149011612); matching
    holds."""
    sent = {
        "contents": [{"role": "user", "parts": [{"text": "t"}]}],
        "generationConfig": {"temperature": 0.1, "topP": 0.95},
    }
    echoed = {
        "generation_config": {"top_p": 0.949999988079071, "temperature": 0.10000000149011612},
        "contents": [{"parts": [{"file_data": None, "text": "t"}], "role": "user"}],
    }
    assert fingerprint(sent) == fingerprint(echoed)
    assert fingerprint(sent) != fingerprint(
        {**sent, "generationConfig": {"temperature": 0.2, "topP": 0.95}}
    )


def test_many_identical_requests_match_one_each_in_linear_time():
    import time

    from dropbatch.matching import Index, Matcher

    def run(n):
        request = {"contents": [{"role": "user", "parts": [{"text": "same prompt"}]}]}
        index = Index.from_keys(
            ((i, f"k{i}") for i in range(1, n + 1)),
            6,
            lambda: ((i, request) for i in range(1, n + 1)),
        )
        matcher = Matcher(index, None, None)
        line = orjson.dumps(ok(request, "x"))
        # this process's CPU time, not the wall clock: a loaded machine (a full test run beside it)
        # made the small run look slow and the ratio fail
        start = time.process_time()
        keys = [matcher.match(line)[1] for _ in range(n)]
        assert matcher.match(line) is None and matcher.counts["duplicate_outputs"] == 1
        assert keys == [f"k{i}" for i in range(1, n + 1)]
        return time.process_time() - start

    small, large = min(run(2_000), run(2_000)), run(20_000)
    assert large < small * 30, (small, large)  # linear: ~10x; quadratic would be ~100x
