"""The .bq.json pointer and a table row as the line the validator checks (tablesource;
docs/contracts.md, Tables as input). The table reads themselves run against the local BigQuery in
tests/e2e/test_table_input.py."""

from __future__ import annotations

import orjson
import pytest
from dropbatch import tablesource


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("bq://proj-1.ds.tbl", "proj-1.ds.tbl"),
        ("bq://example.com:proj.ds_2.t-1", "example.com:proj.ds_2.t-1"),  # a domain-scoped project
        ("proj.ds.tbl", None),
        ("bq://ds.tbl", None),
        ("bq://p..t", None),
        ("bq://p.d-s.t", None),
        ("bq://p.d.t`; DROP", None),
        (None, None),
        (7, None),
    ],
)
def test_table_ids(uri, expected):
    assert tablesource.table_id(uri) == expected


def test_a_good_pointer():
    pointer, problems = tablesource.parse_pointer(
        b'{"table": "bq://p.d.t", "model": "gemini-2.5-pro", "key_column": "id"}'
    )
    assert problems == [] and pointer == {
        "table": "bq://p.d.t",
        "model": "gemini-2.5-pro",
        "key_column": "id",
    }


@pytest.mark.parametrize(
    "data, field",
    [
        (b"not json", None),
        (b"[1]", None),
        (b'{"table": "p.d.t"}', "table"),
        (b"{}", "table"),
        (b'{"table": "bq://p.d.t", "model": ""}', "model"),
        (b'{"table": "bq://p.d.t", "key_column": 3}', "key_column"),
        (b'{"table": "bq://p.d.t", "secret": "hunter2"}', None),
        (b" " * (70 << 10), None),
    ],
)
def test_bad_pointers_say_what_to_write_without_quoting_them(data, field):
    pointer, problems = tablesource.parse_pointer(data)
    assert pointer is None and problems and problems[0][0] == field
    assert all("hunter2" not in message and "secret" not in message for _, message in problems)
    if field == "table" or b"{" not in data[:1]:  # what a pointer looks like, when it is not one
        assert any("bq://" in message for _, message in problems)


def test_rows_as_lines():
    request = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert orjson.loads(tablesource.line_of({"request": request}, "a")) == {
        "key": "a",
        "request": request,
    }
    assert orjson.loads(tablesource.line_of({"request": orjson.dumps(request).decode()}, None)) == {
        "request": request
    }
    assert orjson.loads(tablesource.line_of({"request": request}, 42)) == {
        "key": "42",
        "request": request,
    }
    assert orjson.loads(tablesource.line_of({"request": "not json {"}, None)) == {
        "request": "not json {"
    }
    assert orjson.loads(tablesource.line_of({"request": request}, True)) == {
        "key": True,
        "request": request,
    }, "a boolean key is left for the validator to refuse"


def test_a_row_is_read_by_column_name_whatever_order_the_server_answers_in():
    """A fresh-clone run rejected a Claude table with two errors a row: bqemulator answered the
    selected fields (request, custom_id) in the table's order (custom_id, request), and the row was
    read by position. The rows google-cloud-bigquery builds carry the answer's own schema; read by
    name, either order gives the same line."""
    from dropbatch import families
    from google.cloud.bigquery.table import Row

    request = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "x"}],
    }
    (required, _, key_field), names = families.ANTHROPIC.table, ["request"]
    as_selected = Row((request, "c-0"), {"request": 0, "custom_id": 1})
    as_stored = Row(("c-0", request), {"custom_id": 0, "request": 1})
    for row in (as_selected, as_stored):
        line = orjson.loads(tablesource.row_line(row, names, required, "custom_id", key_field))
        assert line == {"custom_id": "c-0", "request": request}
    # text-embedding: an optional column left null
    texts = Row((None, "hello"), {"task_type": 0, "content": 1})
    assert orjson.loads(
        tablesource.row_line(texts, ["content", "task_type"], ("content",), None, "key")
    ) == {"content": "hello"}
