"""results.jsonl: line N is request N of the dropped file, whatever order Vertex wrote, however many
parts, files, failures, missing lines and retry rounds (DESIGN.md: bucket layout, results.jsonl)."""

from __future__ import annotations

import orjson
import pytest
from conftest import drop, read_json, req

pytestmark = pytest.mark.stack


def test_line_n_of_results_is_request_n(stack, bucket, inbox, vertex):
    # 130 requests: 4 parts of at most 40 (conftest.STACK_ENV), buckets of 10 lines, outputs
    # shuffled across files of 17 lines; 429s and dropped lines get a retry round, a blocked prompt
    # does not.
    vertex.faults(fail_rate=0.3, fail_code=429, drop_rate=0.1, lines_per_file=17)
    lines, expected = [], []
    for i in range(1, 131):
        line = req("BLOCKME please" if i == 77 else f"question {i}")
        if i % 9 == 0:
            line["key"] = f"custom-{i}"
        lines.append(line)
        expected.append(line.get("key") or f"{i:03d}")
    _, batch_id = drop(bucket, "ordered.jsonl", lines)
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=120)
    prefix = f"batches/{batch_id}/"
    assert done["results_file"] == f"gs://{stack.bucket}/{prefix}results.jsonl"
    manifest = read_json(bucket, prefix + "manifest.json")
    assert manifest["results_file"] == done["results_file"]
    assert (
        len(manifest["rounds"]) == 2 and len([j for j in manifest["jobs"] if j["round"] == 0]) == 4
    )
    got = [
        orjson.loads(raw)
        for raw in bucket.blob(prefix + "results.jsonl").download_as_bytes().splitlines()
    ]
    assert [r["key"] for r in got] == expected, "line N is request N"
    for n, result in enumerate(got, start=1):
        if result["status"] == "missing":
            assert not bucket.blob(f"{prefix}results/{result['key']}.json").exists()
            continue
        assert result == read_json(bucket, f"{prefix}results/{result['key']}.json"), (
            f"line {n}: the final outcome"
        )
        prompt = result["request"]["contents"][0]["parts"][0]["text"]
        assert prompt == lines[n - 1]["request"]["contents"][0]["parts"][0]["text"], f"line {n}"
    c = done["counts"]
    statuses = [r["status"] for r in got]
    assert (statuses.count("succeeded"), statuses.count("failed"), statuses.count("missing")) == (
        c["succeeded"],
        c["failed"],
        c["missing"],
    )
    assert got[76]["status"] == "failed" and got[76]["error"]["code"] == "PROHIBITED_CONTENT"
    errors = [
        orjson.loads(raw)
        for raw in bucket.blob(prefix + "errors.jsonl").download_as_bytes().splitlines()
    ]
    assert [(e["key"], e["status"]) for e in errors] == [
        (r["key"], r["status"]) for r in got if r["status"] != "succeeded"
    ]


def test_compose_joins_more_than_32_objects_in_order(stack, bucket):
    from dropbatch.ordered import compose

    names = [f"compose-test/part-{i:03d}" for i in range(75)]
    for i, name in enumerate(names):
        bucket.blob(name).upload_from_string(b"%d\n" % i)
    compose(bucket, names, "compose-test/all.jsonl")
    assert bucket.blob("compose-test/all.jsonl").download_as_bytes() == b"".join(
        b"%d\n" % i for i in range(75)
    )
