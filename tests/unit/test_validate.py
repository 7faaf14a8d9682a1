"""Every error code with a real file; the real-world corpus passes; the report is exactly
DESIGN.md's."""

from __future__ import annotations

import gzip
import re

import orjson
import pytest
from corpus import CORPUS, SEED_LINE, write_jsonl
from dropbatch.config import Config
from dropbatch.validate import iter_requests, validate_path


def run(tmp_path, lines, name="f.jsonl", config=None, raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        write_jsonl(path, lines)
    return validate_path(path, config or Config()).to_dict()


def codes(report):
    return [(e["line"], e["code"]) for e in report["errors"]]


def req(text="hi", **extra):
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}}


def test_corpus_is_valid(tmp_path):
    report = run(tmp_path, CORPUS)
    assert report["errors"] == []
    assert report["valid"] is True
    assert report["requests"] == len(CORPUS)


def test_report_shape(tmp_path):
    report = run(tmp_path, [SEED_LINE, b"{oops"])
    assert set(report) >= {"valid", "source", "requests", "errors", "truncated"}
    assert report["valid"] is False and report["truncated"] is False and report["requests"] == 2
    assert report["source"].endswith("f.jsonl")
    (err,) = report["errors"]
    assert err["line"] == 2 and err["code"] == "invalid_json" and err["field"] is None
    assert "JSON" in err["message"]


@pytest.mark.parametrize(
    "line, code, field, words",
    [
        (b"[1, 2]", "not_object", None, "must be an object"),
        ({"key": "a"}, "missing_request", "request", 'no "request"'),
        ({"contents": [{"parts": [{"text": "x"}]}]}, "schema", "contents", "wrap it"),
        ({"messages": [], "request": SEED_LINE["request"]}, "schema", "messages", "OpenAI"),
        (req(temperature=0.3), "schema", "request.temperature", "generationConfig"),
        (
            req(thinking_config={"thinking_budget": 0}),
            "schema",
            "request.thinking_config",
            "generationConfig",
        ),
        (req(config={"temperature": 0}), "schema", "request.config", "google-genai"),
        (
            req(generationConfig={"responseSchema": {"type_": "OBJECT"}}),
            "schema",
            "request.generationConfig.responseSchema.type_",
            "write 'type'",
        ),
        (
            req(generationConfig={"temperature": "hot"}),
            "schema",
            "request.generationConfig.temperature",
            "number",
        ),
        (
            req(generationConfig={"maxOutputTokens": 1.5}),
            "schema",
            "request.generationConfig.maxOutputTokens",
            "whole",
        ),
        (
            req(safetySettings=[{"category": "HARM_X", "threshold": "BLOCK_NONE"}]),
            "schema",
            "request.safetySettings[0].category",
            "use one of",
        ),
        (
            {"request": {"contents": [{"role": "user", "parts": "hello"}]}},
            "schema",
            "request.contents[0].parts",
            '[{"text"',
        ),
        (
            {
                "request": {
                    "contents": [
                        {
                            "role": "user",
                            "parts": [
                                {
                                    "text": "a",
                                    "fileData": {"fileUri": "gs://b/o", "mimeType": "image/png"},
                                }
                            ],
                        }
                    ]
                }
            },
            "schema",
            "request.contents[0].parts[0]",
            "only one",
        ),
        ({"request": {"contents": []}}, "empty_contents", "request.contents", "at least one"),
        (
            {"request": {"generationConfig": {}}},
            "empty_contents",
            "request.contents",
            "at least one",
        ),
        (
            {"request": {"contents": [{"role": "user", "parts": []}]}},
            "empty_parts",
            "request.contents[0].parts",
            "part",
        ),
        (
            {"request": {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}},
            "invalid_role",
            "request.contents[0].role",
            "use 'user' or 'model'",
        ),
        (
            {"request": {"contents": [{"role": "user", "parts": [{"thought": True}]}]}},
            "part_payload",
            "request.contents[0].parts[0]",
            "exactly one",
        ),
        (
            {
                "request": {
                    "contents": [
                        {
                            "role": "user",
                            "parts": [
                                {
                                    "fileData": {
                                        "fileUri": "https://example.com/a.png",
                                        "mimeType": "image/png",
                                    }
                                }
                            ],
                        }
                    ]
                }
            },
            "file_uri",
            "request.contents[0].parts[0].fileData.fileUri",
            "gs://",
        ),
        (
            {
                "request": {
                    "contents": [
                        {
                            "role": "user",
                            "parts": [
                                {
                                    "fileData": {
                                        "fileUri": "gs://b/a.exe",
                                        "mimeType": "application/x-msdownload",
                                    }
                                }
                            ],
                        }
                    ]
                }
            },
            "mime_type",
            "request.contents[0].parts[0].fileData.mimeType",
            "does not accept",
        ),
        (
            {
                "request": {
                    "contents": [{"role": "user", "parts": [{"inlineData": {"data": "AAAA"}}]}]
                }
            },
            "mime_type",
            "request.contents[0].parts[0].inlineData.mimeType",
            "missing",
        ),
        (
            {
                "request": {
                    "contents": [
                        {
                            "role": "user",
                            "parts": [{"inlineData": {"mimeType": "image/png", "data": "AA*A"}}],
                        }
                    ]
                }
            },
            "invalid_base64",
            "request.contents[0].parts[0].inlineData.data",
            "base64",
        ),
        ({"key": "../etc", **req()}, "invalid_key", "key", "1-128"),
        ({"key": "..", **req()}, "invalid_key", "key", "not allowed"),
        ({"key": 5, **req()}, "invalid_key", "key", "string"),
    ],
)
def test_each_error_code(tmp_path, line, code, field, words):
    report = run(tmp_path, [SEED_LINE, line])
    found = [e for e in report["errors"] if e["code"] == code]
    assert found, report["errors"]
    assert found[0]["line"] == 2 and found[0]["field"] == field
    assert words in found[0]["message"]
    assert report["valid"] is False


def test_duplicate_key_names_first_line(tmp_path):
    report = run(tmp_path, [{"key": "a", **req()}, req(), {"key": "a", **req()}])
    assert codes(report) == [(3, "duplicate_key")]
    assert "line 1" in report["errors"][0]["message"]


def test_key_collision_with_line_number_key(tmp_path):
    # 3 lines: width 1; line 2 has no key, so its key is "2"; line 3 claims "2" explicitly.
    report = run(tmp_path, [req(), req(), {"key": "2", **req()}])
    assert codes(report) == [(3, "key_collision")]
    # "02" is not a line-number key at width 1, and a keyed line 1 frees "1".
    assert run(tmp_path, [{"key": "x", **req()}, {"key": "02", **req()}, {"key": "1", **req()}])[
        "valid"
    ]


def test_blank_lines_bom_crlf_keep_editor_line_numbers(tmp_path):
    raw = b"\xef\xbb\xbf" + orjson.dumps(SEED_LINE) + b"\r\n\r\n   \r\n" + b"{bad\r\n"
    report = run(tmp_path, None, raw=raw)
    assert report["requests"] == 2 and report["blank_lines"] == 2
    assert codes(report) == [(4, "invalid_json")]


def test_invalid_utf8_mid_file(tmp_path):
    raw = (
        orjson.dumps(SEED_LINE)
        + b"\n"
        + b'{"request": {"contents": "\xff\xfe"}}\n'
        + orjson.dumps(SEED_LINE)
    )
    report = run(tmp_path, None, raw=raw)
    assert codes(report) == [(2, "invalid_json")] and "UTF-8" in report["errors"][0]["message"]


def test_nan_is_not_json(tmp_path):
    report = run(
        tmp_path,
        None,
        raw=b'{"request": {"contents": [], "generationConfig": {"temperature": NaN}}}\n',
    )
    assert codes(report) == [(1, "invalid_json")]


def test_gzip_accepted_and_not_gzip_reported(tmp_path):
    data = b"".join(orjson.dumps(line) + b"\n" for line in CORPUS)
    assert run(tmp_path, None, name="a.jsonl.gz", raw=gzip.compress(data))["valid"]
    report = run(tmp_path, None, name="b.jsonl.gz", raw=data)
    assert codes(report) == [(None, "not_gzip")]
    truncated = gzip.compress(data * 50)[:-30]
    report = run(tmp_path, None, name="c.jsonl.gz", raw=truncated)
    assert "read_error" in [c for _, c in codes(report)]


def test_empty_file(tmp_path):
    assert codes(run(tmp_path, None, raw=b"")) == [(None, "empty_file")]
    assert codes(run(tmp_path, None, raw=b"\n\n  \n")) == [(None, "empty_file")]


def test_file_too_large_and_gzip_bomb(tmp_path):
    cfg = Config(max_file_bytes=10_000)
    lines = [SEED_LINE] * 100
    report = run(tmp_path, lines, config=cfg)
    assert (None, "file_too_large") in codes(report)
    bomb = gzip.compress(b"\n" * 5_000_000)
    report = run(tmp_path, None, name="bomb.jsonl.gz", raw=bomb, config=cfg)
    assert (None, "file_too_large") in codes(report)
    assert "decompressed" in report["errors"][-1]["message"]


def test_line_too_long_is_skipped_in_bounded_memory(tmp_path):
    cfg = Config(max_line_bytes=1000)
    report = run(tmp_path, [SEED_LINE, req("x" * 5000), SEED_LINE], config=cfg)
    assert codes(report) == [(2, "line_too_long")]
    assert report["requests"] == 3


def test_too_many_requests_and_job_plan(tmp_path):
    cfg = Config(max_job_requests=4, max_file_requests=10)
    report = run(tmp_path, [req(str(i)) for i in range(10)], config=cfg)
    assert report["valid"]
    assert [(j["first_line"], j["last_line"], j["requests"]) for j in report["jobs"]] == [
        (1, 4, 4),
        (5, 8, 4),
        (9, 10, 2),
    ]
    assert codes(run(tmp_path, [req()] * 11, config=cfg)) == [(None, "too_many_requests")]


def test_job_plan_respects_byte_limit(tmp_path):
    line_size = len(orjson.dumps(req("y" * 100))) + 1
    cfg = Config(max_job_bytes=line_size * 3)
    report = run(tmp_path, [req("y" * 100)] * 7, config=cfg)
    assert [j["requests"] for j in report["jobs"]] == [3, 3, 1]


def test_errors_truncated_at_limit(tmp_path):
    cfg = Config(max_errors=5)
    report = run(tmp_path, [b"{"] * 12, config=cfg)
    assert (
        len(report["errors"]) == 5 and report["truncated"] is True and report["error_count"] == 12
    )


def test_every_problem_of_a_line_is_reported(tmp_path):
    line = {
        "key": "bad key",
        "request": {"contents": [{"role": "bot", "parts": []}], "temperature": 1},
    }
    got = {e["code"] for e in run(tmp_path, [line])["errors"]}
    assert got == {"invalid_key", "invalid_role", "empty_parts", "schema"}


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    schema = b'{"type": "ARRAY", "items": ' * 200 + b'{"type": "OBJECT"}' + b"}" * 200
    raw = (
        b'{"request": {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": '
        b'{"responseSchema": ' + schema
    )
    report = run(tmp_path, None, raw=raw + b"}}}\n")
    assert report["errors"] and report["errors"][0]["code"] == "schema"
    assert "nested" in report["errors"][0]["message"]
    raw = b'{"request": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"
    assert codes(run(tmp_path, None, raw=raw)) == [(1, "invalid_json")]


@pytest.mark.parametrize("name", ["__name__", "__hook__", "__class__"])
def test_a_field_named_like_the_schema_tables_own_keys_is_an_unknown_field(tmp_path, name):
    """The compiled schema kept a message's name under "__name__" beside its fields: a request with
    a field of that name was looked up as a field and crashed the validator (and so the submit
    function, on every redelivery) instead of being an error of its line."""
    content = {"role": "user", "parts": [{"text": "x", name: 1}], name: 1}
    raw = orjson.dumps({"request": {"contents": [content], name: {"a": 1}}}) + b"\n"
    report = run(tmp_path, None, raw=raw)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(1, "schema")] * 3


def test_iter_requests_gives_line_number_keys(tmp_path):
    path = tmp_path / "k.jsonl"
    lines = [req("a")] * 9 + [b""] + [{"key": "mine", **req("b")}]
    write_jsonl(path, lines)
    with open(path, "rb") as f:
        got = [
            (line, key) for line, key, _ in iter_requests(f, str(path), Config(), total_lines=11)
        ]
    assert got[:2] == [(1, "01"), (2, "02")] and got[-1] == (11, "mine") and len(got) == 10


@pytest.mark.parametrize(
    "labels, ok",
    [
        ({"team": "research-1", "cost_center": "a_b", "équipe": "données"}, True),
        # the issue's own example: Vertex would refuse it after hours queued
        ({"Team Name": "Research"}, False),
        ({"team": "x" * 70}, False),
        ({"1team": "x"}, False),
        ({"team": "Research"}, False),
        ({"dropbatch_l0": "1"}, False),  # dropbatch's own
        ({f"k{i}": "v" for i in range(60)}, False),
        ({f"k{i}": "v" for i in range(59)}, True),
    ],
)
def test_request_labels_follow_vertex_rules(labels, ok):
    """cloud.google.com/vertex-ai/generative-ai/docs/multimodal/add-labels-to-api-calls: keys start
    with a lowercase letter; lowercase letters, digits, _ and -; at most 63 characters; at most 64
    labels a request (dropbatch keeps 5 for its line labels)."""
    from dropbatch.checks import check_request

    problems = check_request(
        {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "labels": labels}
    )
    assert (problems == []) is ok, problems
    assert all(code == "invalid_label" for code, _, _ in problems)


def test_line_labels_round_trip_with_at_most_36_values_a_key():
    from dropbatch.keys import label_digits, line_from_labels, line_labels, without_line_labels

    assert label_digits(35) == 1 and label_digits(36) == 2 and label_digits(1_000_000) == 4
    values: dict[str, set] = {}
    for line in list(range(1, 5000)) + [999_999, 1_679_615]:
        labels = line_labels(line, label_digits(1_679_615))
        assert line_from_labels({**labels, "team": "x"}) == line
        assert without_line_labels({**labels, "team": "x"}) == {"team": "x"}
        for k, v in labels.items():
            values.setdefault(k, set()).add(v)
    assert all(len(v) <= 36 for v in values.values()) and all("-" not in k for k in values)
    assert line_from_labels({"dropbatch-line": "42"}) == 42  # staged by an earlier version


def test_staging_from_the_line_bytes_equals_staging_the_parsed_request():
    """The Stager stages runs of consecutive lines that are exactly {"request": {...}} (no labels,
    nothing to make a list) from their own bytes, and re-serialises the rest; whatever path a line
    takes, and wherever the runs break (a line of another shape, a blank line, a new part, a chunk
    handed off), the staged line parses to the request as_lists() makes of it with the line labels,
    as Vertex must receive it, in the file's order, and the keys sidecar names each staged line with
    its size. The uploads are the one step left out: they are recorded, not sent."""
    import types

    from corpus import CORPUS
    from dropbatch import keys, staging
    from dropbatch.batch import new_claim
    from dropbatch.checks import as_lists
    from dropbatch.validate import Validator

    class Recorded(staging.Stager):
        def _upload(self, name: str, data: bytes, sidecar: bytes, reused: bytes) -> None:
            assert not reused  # reuse is off
            sent.append((name, data, sidecar))

    sent: list = []
    stager = Recorded(
        types.SimpleNamespace(
            path=lambda batch_id, name: f"batches/{batch_id}/{name}", config=Config()
        ),
        new_claim("b", "gs://b/o", "o", 1, "me", 60),
    )
    # a part ends every 50 requests, in a run or not
    validator = Validator(Config(max_job_requests=50), "f.jsonl")
    # what feed says of each line, for `want`
    mirror = Validator(Config(max_job_requests=50), "f.jsonl")
    want, line = {}, 0
    variants = (
        lambda line: orjson.dumps(line) + b"\n",
        lambda line: orjson.dumps(line),
        lambda line: orjson.dumps(line, option=orjson.OPT_INDENT_2).replace(b"\n", b" ") + b" \r\n",
    )
    for _n in range(3):
        lines = []
        for shape in (0, 0, 1, 0, 2, 0):  # runs of plain lines broken by the other shapes
            for request_line in CORPUS:
                line += 1
                # a key once in the file: a file with an error stages nothing more
                if "key" in request_line:
                    request_line = {**request_line, "key": f"{request_line['key']}-{line}"}
                lines.append((line, variants[shape](request_line)))
                fed = mirror.feed(*lines[-1])
                if fed is None:
                    continue
                request = fed[1]
                labels = keys.line_labels(line, keys.label_digits(line))
                want[line] = (
                    mirror.job_index,
                    fed[0],
                    {
                        "request": {
                            **as_lists(request),
                            "labels": {**(request.get("labels") or {}), **labels},
                        }
                    },
                )
            line += 3  # lines that are not requests break a run
        assert stager.stage(iter(lines), validator, float("inf")) is None
        stager._flush()  # a chunk handed off mid-part
    stager.checkpoint()
    stager.close()
    got = {}
    for name, data, sidecar in sorted(sent):  # uploaded by a pool: in any order
        staged = data.splitlines(keepends=True)
        rows = [orjson.loads(row) for row in sidecar.splitlines()]
        assert len(staged) == len(rows), name
        for (at, key, size), staged_line in zip(rows, staged):
            assert size == len(staged_line) and staged_line.endswith(b"\n")
            got[at] = (int(re.search(r"part-(\d+)", name)[1]), key, orjson.loads(staged_line))
    assert list(got) == sorted(got) and got == want
    assert len(want) > 6 * len(CORPUS)
    for line in (0, 1, 35, 36, 1295, 1296, 46655, 46656, 1_679_615, 1_679_616):
        assert keys.line_labels_block(line // 36)[line % 36] == orjson.dumps(
            keys.line_labels(line, keys.label_digits(line))
        ), line
    assert (
        keys.line_labels_block(2, b"<", b">")[5]
        == b"<" + orjson.dumps(keys.line_labels(77, 2)) + b">"
    )
    parts = [{"text": "x"}]
    for request in (
        {"contents": {"parts": parts}},
        {"contents": [{"parts": {"text": "x"}}]},
        {"contents": [{"parts": parts}], "systemInstruction": {"parts": {"text": "s"}}},
        # staged other than as written
        {"contents": [{"parts": parts}], "labels": {"team": "a"}},
    ):
        fed = Validator(Config(), "f.jsonl").feed(1, orjson.dumps({"request": request}) + b"\n")
        assert fed[2] is False and fed[1] == as_lists(request), request
    for raw in (
        b'{"key": "k", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n',
        b'{"request": {"contents": [{"parts": [{"text": "x"}]}]} }\n',
    ):
        assert Validator(Config(), "f.jsonl").feed(1, raw)[2] is False, raw
    assert Validator(Config(), "f.jsonl").feed(
        1, b'{"request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    )[2]
