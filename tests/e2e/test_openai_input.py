"""An OpenAI Batch file dropped as it is: each line converted to its Gemini request, custom_id the
key, and `dropbatch run --format openai` writing the results as an OpenAI Batch output file
(docs/contracts.md)."""

from __future__ import annotations

import orjson
import pytest
from conftest import dropbatch

pytestmark = pytest.mark.stack


def test_an_openai_batch_file_runs_and_answers_in_openai_format(stack, bucket, vertex, tmp_path):
    vertex.faults(fail_rate=0.0)
    lines = [
        {
            "custom_id": f"task-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "max_tokens": 64,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": "You answer briefly."},
                    {"role": "user", "content": f"question number {i}"},
                ],
            },
        }
        for i in range(12)
    ]
    lines.append(
        {
            "custom_id": "blocked",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "BLOCKME please"}]},
        }
    )
    path = tmp_path / "openai-batch.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out = dropbatch(stack, "run", path, "--out", tmp_path / "res", "--format", "openai", "--json")
    manifest = orjson.loads(out.stdout)
    assert manifest["counts"]["total"] == 13 and manifest["counts"]["succeeded"] == 12, out.stderr[
        -2000:
    ]
    results = [
        orjson.loads(l) for l in (tmp_path / "res" / "results.jsonl").read_bytes().splitlines()
    ]
    assert [r["key"] for r in results] == [line["custom_id"] for line in lines], (
        "custom_id is the key, in order"
    )
    # the converted request reached Vertex: system and user text
    for i, result in enumerate(results[:12]):
        request = result["request"]
        assert request["generationConfig"]["maxOutputTokens"] == 64
        assert f"question number {i}" in result["text"]
    answers = [
        orjson.loads(l)
        for l in (tmp_path / "res" / "results.openai.jsonl").read_bytes().splitlines()
    ]
    assert [a["custom_id"] for a in answers] == [line["custom_id"] for line in lines]
    ok = answers[0]
    assert ok["error"] is None and ok["response"]["status_code"] == 200
    body = ok["response"]["body"]
    assert (
        body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    )
    assert body["choices"][0]["message"]["content"] == results[0]["text"]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == results[0]["usage"]["totalTokenCount"]
    blocked = answers[-1]
    assert (
        blocked["response"]["status_code"] >= 400
        and blocked["response"]["body"]["error"]["message"]
    )
    assert len({a["id"] for a in answers}) == 13
