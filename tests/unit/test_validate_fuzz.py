"""Mutated files never crash or hang the validator, and every error names a line (or the file)."""

from __future__ import annotations

import gzip
import io

import orjson
from corpus import CORPUS
from dropbatch.config import Config
from dropbatch.validate import validate_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VALID = b"".join(orjson.dumps(line) + b"\n" for line in CORPUS)
CFG = Config(max_line_bytes=200_000, max_file_bytes=5_000_000)

mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(VALID))),
    st.tuples(
        st.just("flip"),
        st.lists(
            st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=20
        ),
    ),
    st.tuples(st.just("nest"), st.integers(1, 3000)),
    st.tuples(st.just("huge"), st.integers(100_000, 400_000)),
    st.tuples(st.just("unicode"), st.text(min_size=1, max_size=50)),
    st.tuples(st.just("insert"), st.binary(min_size=1, max_size=200)),
)


def mutate(kind, arg) -> bytes:
    if kind == "truncate":
        return VALID[:arg]
    if kind == "flip":
        data = bytearray(VALID)
        for pos, byte in arg:
            data[pos] = byte
        return bytes(data)
    if kind == "nest":
        return VALID + b'{"request": {"contents": ' + b"[" * arg + b"]" * arg + b"}}\n"
    if kind == "huge":
        return (
            VALID
            + orjson.dumps({"request": {"contents": [{"parts": [{"text": "x" * arg}]}]}})
            + b"\n"
        )
    if kind == "unicode":
        return (
            VALID
            + orjson.dumps({"key": arg, "request": {"contents": [{"parts": [{"text": arg}]}]}})
            + b"\n"
        )
    return VALID[: len(VALID) // 2] + arg + VALID[len(VALID) // 2 :]


def check(report, lines_total):
    d = report.to_dict()
    assert isinstance(d["valid"], bool)
    assert d["valid"] == (d["errors"] == [])
    for e in d["errors"]:
        assert e["line"] is None or 1 <= e["line"] <= max(lines_total, 1)
        assert e["code"] and e["message"]


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(mutation, st.booleans())
def test_mutated_files_give_a_report(m, compress):
    data = mutate(*m)
    name = "f.jsonl.gz" if compress else "f.jsonl"
    if compress and m[0] == "truncate":
        payload = gzip.compress(VALID)[: m[1] % (len(VALID) // 3 + 1)]
    else:
        payload = gzip.compress(data) if compress else data
    report = validate_stream(io.BytesIO(payload), name, CFG)
    check(report, data.count(b"\n") + 1)
