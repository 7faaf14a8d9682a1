"""Model families (families.py): which family a model is, each family's checks and per-job limits,
and result extraction from every output shape the families' pages show or the SDKs type
(docs/contracts.md)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from dropbatch import families, family_base
from dropbatch.config import Config
from dropbatch.validate import validate_path

CLAUDE = {
    "custom_id": "c1",
    "request": {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello!"}],
    },
}
LLAMA = {
    "custom_id": "t0",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {
        "model": "meta/llama-3.1-8b-instruct-maas",
        "messages": [{"role": "user", "content": "hi"}],
    },
}
EMBED = {
    "key": "e1",
    "request": {
        "content": {"parts": [{"text": "Hello World"}]},
        "embed_content_config": {
            "task_type": "RETRIEVAL_DOCUMENT",
            "title": "t",
            "output_dimensionality": 768,
        },
    },
}


@pytest.mark.parametrize(
    "model, family, resource",
    [
        ("gemini-2.5-flash", "gemini", "publishers/google/models/gemini-2.5-flash"),
        ("gemini-embedding-001", "embeddings", "publishers/google/models/gemini-embedding-001"),
        ("text-embedding-005", "embeddings", "publishers/google/models/text-embedding-005"),
        (
            "text-multilingual-embedding-002",
            "embeddings",
            "publishers/google/models/text-multilingual-embedding-002",
        ),
        (
            "claude-3-5-haiku@20241022",
            "anthropic",
            "publishers/anthropic/models/claude-3-5-haiku@20241022",
        ),
        (
            "publishers/anthropic/models/claude-sonnet-4@20250514",
            "anthropic",
            "publishers/anthropic/models/claude-sonnet-4@20250514",
        ),
        (
            "meta/llama-3.1-405b-instruct-maas",
            "open_models",
            "publishers/meta/models/llama-3.1-405b-instruct-maas",
        ),
        (
            "llama-3.3-70b-instruct-maas",
            "open_models",
            "publishers/meta/models/llama-3.3-70b-instruct-maas",
        ),
        (
            "qwen/qwen3-235b-a22b-instruct-2507-maas",
            "open_models",
            "publishers/qwen/models/qwen3-235b-a22b-instruct-2507-maas",
        ),
    ],
)
def test_the_model_decides_the_family_and_its_resource_name(model, family, resource):
    assert families.family_of(model).name == family
    assert (
        families.resource_name(model, "p", "us-central1")
        == f"projects/p/locations/us-central1/{resource}"
    )
    full = f"projects/q/locations/europe-west4/{resource}"
    assert (
        families.resource_name(full, "p", "x") == full and families.family_of(full).name == family
    )


def test_job_limits_are_the_familys_unless_the_deployment_sets_lower():
    assert families.GEMINI.job_limits(Config()) == (200_000, 10**9)
    assert families.GEMINI_EMBEDDING.job_limits(Config()) == (1_000_000, 10**9)
    assert families.TEXT_EMBEDDING.job_limits(Config()) == (30_000, 10**9)
    assert families.ANTHROPIC.job_limits(Config(max_job_requests=40)) == (40, 256 * 10**6)
    assert families.OPEN_MODELS.job_limits(Config(max_job_bytes=1000)) == (50_000, 1000)


def _codes(family, line):
    return [(code, field) for code, field, _ in family.check(line)[0]]


def test_claude_lines_are_checked_as_the_messages_api_reads_them():
    assert _codes(families.ANTHROPIC, CLAUDE) == [] and families.ANTHROPIC.check(CLAUDE)[1] == "c1"
    request = CLAUDE["request"]
    bad = {
        "custom_id": "c2",
        "request": {
            **request,
            "anthropic_version": "2023-06-01",
            "max_tokens": 0,
            "model": "claude",
            "temperature": 1.5,
            "messages": [
                {"role": "assistant", "content": "x"},
                {"role": "assistant", "content": "y"},
                {"role": "system", "content": "z"},
            ],
        },
    }
    assert _codes(families.ANTHROPIC, bad) == [
        ("schema", "request.model"),
        ("anthropic_version", "request.anthropic_version"),
        ("schema", "request.max_tokens"),
        ("schema", "request.temperature"),
        ("role_order", "request.messages[0].role"),
        ("role_order", "request.messages[1].role"),
        ("invalid_role", "request.messages[2].role"),
    ]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/tiff", "data": "not base64!"},
    }
    assert _codes(
        families.ANTHROPIC,
        {
            "custom_id": "c3",
            "request": {
                **request,
                "messages": [{"role": "user", "content": [image, {"type": "video"}]}],
            },
        },
    ) == [
        ("mime_type", "request.messages[0].content[0].source.media_type"),
        ("invalid_base64", "request.messages[0].content[0].source.data"),
        ("schema", "request.messages[0].content[1].type"),
    ]
    assert _codes(families.ANTHROPIC, {"request": request}) == [("missing_key", "custom_id")]
    assert _codes(families.ANTHROPIC, {"custom_id": "c4", "request": {"contents": []}}) == [
        ("wrong_family", "request")
    ]
    assert _codes(families.ANTHROPIC, {**CLAUDE, "custom_id": "has space"}) == [
        ("invalid_key", "custom_id")
    ]


def test_open_model_lines_are_openai_batch_lines():
    assert (
        _codes(families.OPEN_MODELS, LLAMA) == []
        and families.OPEN_MODELS.check(LLAMA)[2] == LLAMA["body"]
    )
    bad = {
        "custom_id": "t1",
        "method": "GET",
        "url": "/v1/embeddings",
        "extra": 1,
        "body": {
            "messages": [{"role": "robot", "content": "x"}, {"role": "user", "content": 5}],
            "stream": True,
            "max_tokens": -1,
        },
    }
    assert _codes(families.OPEN_MODELS, bad) == [
        ("schema", "extra"),
        ("schema", "method"),
        ("schema", "url"),
        ("schema", "body.stream"),
        ("schema", "body.max_tokens"),
        ("invalid_role", "body.messages[0].role"),
        ("schema", "body.messages[1].content"),
    ]
    assert _codes(families.OPEN_MODELS, {"key": "k", "request": {}}) == [("wrong_family", None)]


def test_embedding_lines_in_each_documented_shape():
    assert _codes(families.GEMINI_EMBEDDING, EMBED) == []
    openai = {
        "custom_id": "o1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"input": "x", "dimensions": 8},
    }
    problems, key, request = families.GEMINI_EMBEDDING.check(openai)
    assert (problems, key) == ([], "o1")
    assert request == {
        "content": {"parts": [{"text": "x"}]},
        "embed_content_config": {"output_dimensionality": 8},
    }
    bad = {
        "key": "e2",
        "request": {
            "content": {"parts": [{"txt": "x"}]},
            "embed_content_config": {
                "task_type": "SEARCH",
                "output_dimensionality": 4096,
                "colour": 1,
            },
        },
    }
    assert _codes(families.GEMINI_EMBEDDING, bad) == [
        ("schema", "request.content.parts[0].txt"),
        ("part_payload", "request.content.parts[0]"),
        ("schema", "request.embed_content_config.colour"),
        ("schema", "request.embed_content_config.task_type"),
        ("schema", "request.embed_content_config.output_dimensionality"),
    ]
    assert _codes(families.GEMINI_EMBEDDING, {"content": "bare"}) == [
        ("missing_request", "request")
    ]
    assert _codes(families.TEXT_EMBEDDING, {"content": "Best recipe for banana bread:"}) == []
    assert families.TEXT_EMBEDDING.check({"key": "k", "content": "x"})[1:] == (
        "k",
        {"content": "x"},
    )
    assert _codes(families.TEXT_EMBEDDING, {"content": "", "task_type": "X", "vector": 1}) == [
        ("schema", "vector"),
        ("missing_content", "content"),
        ("schema", "task_type"),
    ]
    assert families.TEXT_EMBEDDING.stage({"content": "x"}, 9) == b'{"content":"x"}\n', (
        "a bare instance, as documented"
    )


def test_staged_lines_carry_their_line_where_the_output_echoes_it():
    for family, payload, out_key in (
        (families.ANTHROPIC, CLAUDE["request"], "custom_id"),
        (families.OPEN_MODELS, LLAMA["body"], "custom_id"),
        (families.GEMINI_EMBEDDING, EMBED["request"], "key"),
    ):
        staged = orjson.loads(family.stage(payload, 1234))
        assert staged[out_key] == "dropbatch-line-1234" and family.marked_line(staged) == 1234
        assert family.payload(staged) == payload
    assert family_base.line_of_id("dropbatch-line-x") is None
    assert family_base.line_of_id(None) is None


VECTOR = [0.1, -0.2, 0.3]


@pytest.mark.parametrize(
    "out",
    [
        {
            "instance": {"content": "x"},
            "status": "",
            "predictions": [
                {
                    "embeddings": {
                        "statistics": {"token_count": 8, "truncated": False},
                        "values": VECTOR,
                    }
                }
            ],
        },
        {
            "key": "dropbatch-line-1",
            "request": {},
            "status": "",
            "response": {
                "embedding": {"values": VECTOR, "statistics": {"tokenCount": 8, "truncated": False}}
            },
        },
        {
            "key": "dropbatch-line-1",
            "request": {},
            "response": {
                "embeddings": [
                    {"values": VECTOR, "statistics": {"token_count": 8.0, "truncated": False}}
                ]
            },
        },
        {
            "key": "dropbatch-line-1",
            "request": {},
            "status": "",
            "response": {
                "predictions": [
                    {
                        "embeddings": {
                            "statistics": {"token_count": 8, "truncated": False},
                            "values": VECTOR,
                        }
                    }
                ]
            },
        },
    ],
)
def test_an_embedding_result_takes_the_vector_from_every_shape(out):
    result = families.TEXT_EMBEDDING.result("k", out, "b", "j")
    assert result["status"] == "succeeded" and result["embedding"] == VECTOR
    assert result["statistics"] == {"token_count": 8, "truncated": False}
    assert result["usage"] == {"promptTokenCount": 8, "totalTokenCount": 8}
    assert list(result)[:7] == [
        "key",
        "status",
        "request",
        "response",
        "text",
        "embedding",
        "statistics",
    ]


def test_embedding_failures_keep_the_result_shape():
    failed = families.GEMINI_EMBEDDING.result(
        "k", {"status": '{"error": {"code": 429, "message": "slow down"}}'}, "b", "j"
    )
    assert (
        failed["status"] == "failed"
        and failed["error"]["code"] == 429
        and failed["embedding"] is None
    )
    empty = families.GEMINI_EMBEDDING.result(
        "k", {"response": {"embedding": {"values": []}}}, "b", "j"
    )
    assert empty["error"]["code"] == "NO_EMBEDDING"


def test_claude_results_map_text_stop_reason_and_usage():
    response = {
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "hm"},
            {"type": "text", "text": "Hi"},
            {"type": "text", "text": " there"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    ok = families.ANTHROPIC.result(
        "c1",
        {"custom_id": "dropbatch-line-1", "request": {}, "response": response, "status": ""},
        "b",
        "j",
    )
    assert (ok["status"], ok["text"], ok["finish_reason"]) == ("succeeded", "Hi there", "end_turn")
    assert ok["usage"] == {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert families.ANTHROPIC.result("c1", {"response": error}, None, None)["error"] == {
        "code": "overloaded_error",
        "message": "Overloaded",
    }
    status = families.ANTHROPIC.result(
        "c1",
        {
            "status": 'Bad Request: {"error": {"code": 400, "message": '
            '"max_tokens: Field required"}}'
        },
        None,
        None,
    )
    assert status["error"]["code"] == 400 and status["error"]["status"] == "INVALID_ARGUMENT"
    refused = families.ANTHROPIC.result(
        "c1", {"response": {**response, "stop_reason": "refusal"}}, None, None
    )
    assert refused["status"] == "failed" and refused["error"]["code"] == "refusal"


def test_open_model_results_from_a_bare_or_a_wrapped_chat_completion():
    completion = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Bread."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    for response in (completion, {"status_code": 200, "body": completion}):
        result = families.OPEN_MODELS.result(
            "t0", {"custom_id": "x", "body": LLAMA["body"], "response": response}, "b", "j"
        )
        assert (result["status"], result["text"], result["finish_reason"]) == (
            "succeeded",
            "Bread.",
            "stop",
        )
        assert result["usage"]["totalTokenCount"] == 9 and result["request"] == LLAMA["body"]
    wrapped = families.OPEN_MODELS.result(
        "t0",
        {"response": {"status_code": 429, "body": {"error": {"message": "rate limited"}}}},
        None,
        None,
    )
    assert wrapped["error"] == {"code": 429, "message": "rate limited"}
    errored = families.OPEN_MODELS.result(
        "t0", {"response": None, "error": {"code": 500, "message": "boom"}}, None, None
    )
    assert errored["status"] == "failed" and errored["error"]["code"] == 500


def test_a_file_past_the_jobs_a_file_may_make_is_refused(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"content": f"t{i}"}) + b"\n" for i in range(12)))
    report = validate_path(
        path, Config(max_job_requests=3, max_file_jobs=3), model="text-embedding-005"
    )
    assert [e["code"] for e in report.errors] == ["too_many_jobs"] and report.family == "embeddings"
    assert validate_path(
        path, Config(max_job_requests=4, max_file_jobs=3), model="text-embedding-005"
    ).valid


def test_validate_model_checks_a_file_for_that_family(tmp_path):
    path = tmp_path / "claude.jsonl"
    path.write_bytes(
        orjson.dumps(CLAUDE) + b"\n" + orjson.dumps({**CLAUDE, "custom_id": "c2"}) + b"\n"
    )
    run = [sys.executable, "-m", "dropbatch", "validate", str(path)]
    out = subprocess.run(
        run + ["--model", "claude-3-5-haiku@20241022"], capture_output=True, text=True, timeout=60
    )
    assert (
        out.returncode == 0
        and "2 requests, valid for claude-3-5-haiku@20241022 (anthropic)" in out.stdout
    )
    out = subprocess.run(run + ["--json"], capture_output=True, text=True, timeout=60)
    report = orjson.loads(out.stdout)
    assert out.returncode == 1 and report["family"] == "gemini" and report["errors"][0]["line"] == 1
    out = subprocess.run(
        run + ["--model", "gemini-embedding-001", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert orjson.loads(out.stdout)["family"] == "embeddings" and out.returncode == 1


def test_dropbatch_split_matches_a_hand_run_claude_job_by_its_requests(tmp_path):
    """`dropbatch split --model claude-...` on a job a user ran themselves: its output echoes the
    user's own custom_ids (not dropbatch's line ids), so each output is matched by its request;
    identical requests take outputs in line order, one each, and a request with no output is
    missing."""
    from dropbatch.split import split_local

    def line(cid, text):
        return {
            "custom_id": cid,
            "request": {**CLAUDE["request"], "messages": [{"role": "user", "content": text}]},
        }

    lines = [line("a", "same"), line("b", "other"), line("c", "same"), line("d", "never answered")]
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(l) + b"\n" for l in lines))
    reply = {
        "type": "message",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    outputs = [
        {
            **lines[1],
            "response": {**reply, "content": [{"type": "text", "text": "B"}]},
            "status": "",
        },
        {**lines[2], "response": reply, "status": ""},
        {**lines[0], "response": reply, "status": ""},
        {"custom_id": "zzz", "request": {"messages": []}, "response": reply, "status": ""},
    ]
    out_dir = tmp_path / "prediction-model-1"
    out_dir.mkdir()
    (out_dir / "predictions.jsonl").write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in outputs))
    manifest = split_local(
        str(tmp_path / "in.jsonl"),
        [str(out_dir)],
        str(tmp_path / "res"),
        Config(),
        model="claude-3-5-haiku@20241022",
    )
    assert manifest["counts"] == {
        "total": 4,
        "succeeded": 3,
        "failed": 0,
        "missing": 1,
        "duplicate_outputs": 0,
        "unmatched_outputs": 1,
    }
    rows = [orjson.loads(l) for l in (tmp_path / "res" / "results.jsonl").read_bytes().splitlines()]
    assert [(r["key"], r["status"], r["text"]) for r in rows] == [
        ("a", "succeeded", "ok"),
        ("b", "succeeded", "B"),
        ("c", "succeeded", "ok"),
        ("d", "missing", None),
    ]
    assert manifest["usage"]["prompt_tokens"] == 9


def test_results_jsonl_buckets_bound_an_embedding_parts_results_in_memory():
    """Found in review: buckets were cut by staged bytes alone, so 5,000 short embedding requests
    made one bucket whose results (a 3,072-value vector each, twice) the ordering step held at once:
    about 370 MB, three times over while it is joined, in a 1 GiB function. A bucket's results now
    stay near ordered.BUCKET_BYTES."""
    from dropbatch import ordered
    from dropbatch.matching import Index

    vector = [0.0123456] * 3072
    result = orjson.dumps(
        families.GEMINI_EMBEDDING.result(
            "doc-1",
            {
                "key": "dropbatch-line-1",
                "request": {"content": {"parts": [{"text": "a short text"}]}},
                "response": {"embedding": {"values": vector}},
            },
            "b",
            "j",
        )
    )
    assert len(result) <= families.GEMINI_EMBEDDING.result_bytes, (
        "the estimate covers a real result"
    )
    staged = len(
        families.GEMINI_EMBEDDING.stage({"content": {"parts": [{"text": "a short text"}]}}, 1)
    )
    entries = [[line, None, staged] for line in range(1, 20_001)]
    index = Index.from_keys(
        entries, 5, lambda: iter(()), 5_000, families.GEMINI_EMBEDDING.result_bytes
    )
    sizes = [b - a for a, b in zip(index.starts, index.starts[1:] + [20_001])]
    assert max(sizes) * len(result) <= 1.1 * ordered.BUCKET_BYTES, f"{max(sizes)} results a bucket"
