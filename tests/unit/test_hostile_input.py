"""Hostile and broken files: a clear report in bounded memory and time, and names that cannot
escape."""

from __future__ import annotations

import gzip
import subprocess
import sys

import orjson
import pytest
from corpus import SEED_LINE
from dropbatch.config import Config
from dropbatch.keys import BATCH_ID_RE, batch_id, key_problem
from dropbatch.validate import validate_path

MEASURE = """
import resource, sys, json
from dropbatch.config import Config
from dropbatch.validate import validate_path
r = validate_path(sys.argv[1], Config(max_file_bytes=int(sys.argv[2]))).to_dict()
# VmHWM: this process's own peak (ru_maxrss can carry the peak of the process it was forked from)
hwm = [int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"errors": [(e["line"], e["code"]) for e in r["errors"]], "requests": r["requests"],
                  "blank": r["blank_lines"],
                  "rss_mb": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def measure(path, max_file_bytes=20 * 10**9) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(max_file_bytes)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return orjson.loads(out.stdout)


def test_100_mb_line_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(orjson.dumps(SEED_LINE) + b"\n")
        f.write(b'{"request": {"contents": [{"parts": [{"text": "')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b'"}]}]}}\n')
        f.write(orjson.dumps(SEED_LINE) + b"\n")
    got = measure(path)
    assert got["errors"] == [[2, "line_too_long"]] and got["requests"] == 3
    assert got["rss_mb"] < 200


def test_millions_of_blank_lines(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n" * 2_000_000 + orjson.dumps(SEED_LINE) + b"\n" + b"\r\n" * 1_000_000)
    got = measure(path)
    assert got["errors"] == [] and got["requests"] == 1 and got["blank"] == 3_000_000
    assert got["rss_mb"] < 200


def test_gzip_bomb_stops_at_the_decompressed_limit(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    member = gzip.compress(b"A" * (1 << 20), compresslevel=9)  # 1 MiB in about 1 KB
    path.write_bytes(member * 4096)  # 4 GiB decompressed, 4 MB on disk
    got = measure(path, max_file_bytes=100_000_000)
    assert [None, "file_too_large"] in got["errors"]
    assert got["rss_mb"] < 200


@pytest.mark.parametrize(
    "name",
    [
        "incoming/../../etc/passwd.jsonl",
        "incoming/a b/ü n i c ø d e.jsonl.gz",
        "incoming/..jsonl",
        "incoming/" + "x" * 900 + ".jsonl",
        "incoming/.jsonl",
        "incoming/%2e%2e/%2F.jsonl",
        "incoming/\u202egnp.jsonl",
    ],
)
def test_batch_ids_are_safe_path_segments(name):
    bid = batch_id("bucket", name, 123)
    assert BATCH_ID_RE.match(bid) and "/" not in bid and ".." not in bid and len(bid) <= 51
    assert bid != batch_id("bucket", name, 124), "a re-upload is a new batch"
    assert bid == batch_id("bucket", name, 123), "the same upload is the same batch"


@pytest.mark.parametrize(
    "key", ["../x", "a/b", "..", ".", "", "x" * 129, "a\\b", "ü", "a b", "/etc/passwd"]
)
def test_keys_that_would_escape_are_refused(key):
    assert key_problem(key)


def test_nan_infinity_and_deep_nesting_are_reports(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(
        b'{"request": {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": '
        b'{"temperature": Infinity}}}\n' + b"[" * 100_000 + b"\n" + orjson.dumps(SEED_LINE) + b"\n"
    )
    report = validate_path(path, Config()).to_dict()
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (1, "invalid_json"),
        (2, "invalid_json"),
    ]


def test_a_line_at_the_size_limit_costs_a_few_times_its_size(tmp_path):
    """Validating (and so staging: the same pass) a file whose line is just under max_line_bytes (20
    MB) holds that line a few times over (the bytes, the parsed string, its checks), never more."""
    path, small = tmp_path / "limit.jsonl", tmp_path / "small.jsonl"
    text = "y" * (Config().max_line_bytes - 200)
    path.write_bytes(
        orjson.dumps(SEED_LINE)
        + b"\n"
        + orjson.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": text}]}]}})
        + b"\n"
    )
    small.write_bytes(orjson.dumps(SEED_LINE) + b"\n")
    big, base = measure(path), measure(small)
    assert big["errors"] == [] and big["requests"] == 2
    line_mb = Config().max_line_bytes / 2**20
    assert big["rss_mb"] - base["rss_mb"] < 4 * line_mb, (big["rss_mb"], base["rss_mb"])
