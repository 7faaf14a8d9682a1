"""OpenAI Batch lines converted for a Gemini model (openai_batch; docs/contracts.md, OpenAI Batch
files), judged by the validator's own Gemini checks after conversion."""

from __future__ import annotations

import orjson
import pytest
from dropbatch.config import Config
from dropbatch.validate import Validator


def feed(*lines):
    validator = Validator(
        Config.from_env({"DROPBATCH_BUCKET": "b", "DROPBATCH_PROJECT": "p"}), "x.jsonl"
    )
    got = [validator.feed(i, orjson.dumps(line)) for i, line in enumerate(lines, 1)]
    return got, validator.finish()


def chat(custom_id="r1", **body):
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello"}],
            **body,
        },
    }


def test_a_full_chat_request_becomes_its_gemini_request():
    line = chat(
        messages=[
            {"role": "developer", "content": "Answer in French."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "gs://media/cat.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
                ],
            },
            {"role": "assistant", "content": "Un chat."},
            {"role": "user", "content": "Sure?"},
        ],
        max_completion_tokens=50,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n"],
        n=2,
        seed=7,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}},
        },
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "find",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
    )
    (got,), report = feed(line)
    assert report.valid, report.errors
    key, request, plain = got
    assert key == "r1" and plain is False, "a converted line is staged re-serialised"
    assert request == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is this?"},
                    {"fileData": {"fileUri": "gs://media/cat.png", "mimeType": "image/png"}},
                    {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
                ],
            },
            {"role": "model", "parts": [{"text": "Un chat."}]},
            {"role": "user", "parts": [{"text": "Sure?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Answer in French."}]},
        "generationConfig": {
            "maxOutputTokens": 50,
            "temperature": 0.3,
            "topP": 0.9,
            "candidateCount": 2,
            "seed": 7,
            "stopSequences": ["\n\n"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "lookup",
                        "description": "find",
                        "parametersJsonSchema": {"type": "object", "properties": {}},
                    }
                ]
            }
        ],
    }


@pytest.mark.parametrize(
    "line, field",
    [
        ({**chat(), "url": "/v1/embeddings"}, "url"),
        ({**chat(), "method": "GET"}, "method"),
        (chat(logit_bias={"1": 2}), "body.logit_bias"),
        (
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                        ],
                    }
                ]
            ),
            "body.messages[0].content[0].image_url.url",
        ),
        (
            chat(messages=[{"role": "tool", "content": "42", "tool_call_id": "c"}]),
            "body.messages[0].role",
        ),
        (chat(tools=[{"type": "web_search"}]), "body.tools[0]"),
        (chat(messages=[]), "body.messages"),
    ],
)
def test_what_does_not_convert_is_reported_by_line_and_field(line, field):
    (got,), report = feed(line)
    assert got is None and not report.valid
    assert (report.errors[0]["code"], report.errors[0]["field"], report.errors[0]["key"]) == (
        "openai_unsupported",
        field,
        "r1",
    )
    assert report.errors[0]["line"] == 1


def test_custom_ids_are_keys_checked_as_keys():
    _, report = feed(chat("same"), chat("same"), chat("bad id/"))
    assert [(e["line"], e["code"]) for e in report.errors] == [
        (2, "duplicate_key"),
        (3, "invalid_key"),
    ]


def test_openai_and_gemini_lines_may_share_a_file():
    got, report = feed(
        chat("a"),
        {"key": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}},
    )
    assert report.valid and [g[0] for g in got] == ["a", "b"]


def test_the_report_says_which_formats_it_found():
    assert feed(chat("a"))[1].to_dict()["format"] == "openai"
    assert (
        feed({"request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}})[1].to_dict()[
            "format"
        ]
        == "gemini"
    )
    assert (
        feed({"request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}}, chat("a"))[
            1
        ].to_dict()["format"]
        == "gemini+openai"
    )
