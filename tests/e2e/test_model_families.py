"""Every model family on the stack, through `dropbatch run`: an embeddings file
(gemini-embedding-001, and text-embedding-005 instances matched by fingerprint), a Claude file and
an open-model file, each giving exact results in the file's order (families.py, docs/contracts.md
"Model families")."""

from __future__ import annotations

import orjson
import pytest
from conftest import dropbatch
from dropbatch.local.vertex_families import vector

pytestmark = pytest.mark.stack


def _run(stack, tmp_path, name: str, lines, model: str, *extra):
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out = dropbatch(
        stack, "run", path, "--model", model, "--out", tmp_path / "res", "--json", *extra
    )
    manifest = orjson.loads(out.stdout)
    results = [
        orjson.loads(l) for l in (tmp_path / "res" / "results.jsonl").read_bytes().splitlines()
    ]
    return manifest, results


def test_a_gemini_embedding_file_gives_each_key_its_own_vector(stack, vertex, tmp_path):
    vertex.faults(fail_rate=0.0, lines_per_file=7)
    # repeats: the same text under several keys
    texts = [f"document number {i % 9}" for i in range(24)]
    lines = [
        {
            "key": f"doc-{i}",
            "request": {
                "content": {"parts": [{"text": t}]},
                "embed_content_config": {
                    "task_type": "RETRIEVAL_DOCUMENT",
                    **({"output_dimensionality": 768} if i % 2 else {}),
                },
            },
        }
        for i, t in enumerate(texts)
    ]
    lines.append(
        {
            "custom_id": "from-openai",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {
                "model": "text-embedding-3-small",
                "input": "an OpenAI embeddings line",
                "dimensions": 256,
            },
        }
    )
    manifest, results = _run(stack, tmp_path, "embeddings.jsonl", lines, "gemini-embedding-001")
    assert manifest["state"] == "succeeded" and manifest["counts"]["succeeded"] == 25, manifest
    assert [r["key"] for r in results] == [f"doc-{i}" for i in range(24)] + ["from-openai"]
    for i, (result, text) in enumerate(zip(results, texts)):
        assert result["status"] == "succeeded" and result["text"] is None
        assert result["embedding"] == vector(text, 768 if i % 2 else 3072), (
            f"line {i + 1} has its own text's vector"
        )
        assert result["statistics"]["token_count"] == result["usage"]["promptTokenCount"] > 0
        assert result["statistics"]["truncated"] is False
    assert len(results[-1]["embedding"]) == 256
    assert manifest["usage"]["prompt_tokens"] == sum(
        r["usage"]["promptTokenCount"] for r in results
    )


def test_text_embedding_instances_without_keys_are_matched_by_their_text(stack, vertex, tmp_path):
    vertex.faults(fail_rate=0.0, lines_per_file=5)
    texts = [f"banana bread recipe {i % 4}" for i in range(15)]
    lines = [
        {"content": t, **({"task_type": "RETRIEVAL_QUERY"} if i % 3 == 0 else {})}
        for i, t in enumerate(texts)
    ]
    manifest, results = _run(stack, tmp_path, "instances.jsonl", lines, "text-embedding-005")
    assert manifest["counts"]["succeeded"] == 15 and manifest["counts"]["duplicate_outputs"] == 0, (
        manifest
    )
    assert [r["key"] for r in results] == [f"{i:02d}" for i in range(1, 16)], (
        "line-number keys, in order"
    )
    assert [r["embedding"] for r in results] == [vector(t, 768) for t in texts]
    assert results[0]["request"] == lines[0], "the instance as Vertex echoed it"


def test_a_claude_file_runs_with_custom_ids_and_retries(stack, vertex, tmp_path):
    vertex.faults(fail_rate=0.3, fail_code=503, lines_per_file=4)
    lines = [
        {
            "custom_id": f"claude-{i}",
            "request": {
                "anthropic_version": "vertex-2023-10-16",
                "max_tokens": 128,
                "system": "Answer in one line.",
                "messages": [{"role": "user", "content": f"Hello number {i}"}],
            },
        }
        for i in range(16)
    ]
    manifest, results = _run(stack, tmp_path, "claude.jsonl", lines, "claude-3-5-haiku@20241022")
    counts = manifest["counts"]
    assert (
        counts["total"] == 16
        and counts["succeeded"] + counts["failed"] == 16
        and counts["missing"] == 0
    )
    assert len(manifest["rounds"]) == 2, "transient failures went to a retry round"
    assert [r["key"] for r in results] == [line["custom_id"] for line in lines]
    for i, result in enumerate(results):
        if result["status"] == "succeeded":
            assert f"Hello number {i}" in result["text"] and result["finish_reason"] == "end_turn"
            usage = result["usage"]
            assert (
                usage["totalTokenCount"]
                == usage["promptTokenCount"] + usage["candidatesTokenCount"]
            )
            assert result["request"]["messages"][0]["content"] == f"Hello number {i}"
        else:
            assert result["error"]["code"] == 503
    assert counts["succeeded"] > 8


def test_an_open_model_file_runs_and_answers_in_openai_format(stack, vertex, tmp_path):
    vertex.faults(fail_rate=0.0, lines_per_file=3)
    lines = [
        {
            "custom_id": f"llama-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "meta/llama-3.1-8b-instruct-maas",
                "max_tokens": 100,
                "messages": [
                    {"role": "system", "content": "You are a chef."},
                    {"role": "user", "content": f"recipe {i}"},
                ],
            },
        }
        for i in range(10)
    ]
    manifest, results = _run(
        stack,
        tmp_path,
        "llama.jsonl",
        lines,
        "meta/llama-3.1-8b-instruct-maas",
        "--format",
        "openai",
    )
    assert manifest["counts"]["succeeded"] == 10, manifest
    assert [r["key"] for r in results] == [f"llama-{i}" for i in range(10)]
    assert all(
        f"recipe {i}" in r["text"] and r["finish_reason"] == "stop" for i, r in enumerate(results)
    )
    answers = [
        orjson.loads(l)
        for l in (tmp_path / "res" / "results.openai.jsonl").read_bytes().splitlines()
    ]
    assert [a["custom_id"] for a in answers] == [f"llama-{i}" for i in range(10)]
    assert answers[3]["response"]["body"]["choices"][0]["message"]["content"] == results[3]["text"]
    assert answers[3]["response"]["status_code"] == 200


def test_a_file_in_the_wrong_family_is_rejected_line_by_line(stack, bucket, inbox):
    from conftest import drop, settled

    lines = [
        {"key": "g1", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}},
        {
            "custom_id": "c1",
            "request": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        },
    ]
    _, batch_id = drop(
        bucket, "wrong-family.jsonl", lines, metadata={"model": "claude-3-5-haiku@20241022"}
    )
    messages = settled(bucket, inbox, batch_id)
    assert messages[-1]["state"] == "rejected"
    report = orjson.loads(bucket.blob(f"batches/{batch_id}/report.json").download_as_bytes())
    assert report["family"] == "anthropic"
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (1, "schema"),
        (1, "missing_key"),
        (1, "wrong_family"),
        (2, "anthropic_version"),
    ]
    assert "custom_id" in report["errors"][0]["message"]
    assert messages[-1]["error"].startswith(
        "4 error(s) in 2 requests; first: line 1: schema at key;"
    )
