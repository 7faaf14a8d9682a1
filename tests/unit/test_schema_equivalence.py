"""The compiled schema is the real one: the snapshot equals aiplatform_v1's descriptors, and the
validator accepts and rejects what json_format.ParseDict does, except the documented lenient and
stricter forms."""

from __future__ import annotations

import copy

import orjson
import pytest
from corpus import CORPUS
from dropbatch.checks import check_request
from dropbatch.schema import SNAPSHOT, build_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pb = pytest.importorskip("google.cloud.aiplatform_v1.types.prediction_service")
from google.protobuf import json_format  # noqa: E402

MESSAGE = pb.GenerateContentRequest.pb()


def test_snapshot_matches_installed_descriptors():
    assert orjson.loads(SNAPSHOT.read_bytes()) == build_schema(), "run: python -m dropbatch.schema"


def parse_dict_ok(request) -> bool:
    try:
        json_format.ParseDict(request, MESSAGE())
        return True
    except json_format.ParseError:
        return False


def schema_ok(request) -> bool:
    return not [p for p in check_request(request) if p[0] == "schema"]


def deviates(request) -> bool:
    """Forms where dropbatch knowingly differs from ParseDict (see validate.py's docstring)."""

    def walk(node, parent_key):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.endswith("_"):
                    return True  # proto-plus names (type_): ParseDict takes them, the API does not
                if k in ("parts", "contents") and isinstance(v, dict):
                    return True  # lenient single object
                if walk(v, k):
                    return True
        elif isinstance(node, list):
            return any(walk(v, parent_key) for v in node)
        return False

    return walk(request, None)


@pytest.mark.parametrize("line", CORPUS)
def test_corpus_agrees_with_parse_dict(line):
    request = line["request"]
    assert schema_ok(request)
    assert parse_dict_ok(request) or deviates(request)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["NaN", "1.5s", "USER", "HARM_CATEGORY_HATE_SPEECH", "AAAA", "12"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "text",
                    "role",
                    "parts",
                    "type",
                    "foo",
                    "mimeType",
                    "fileUri",
                    "data",
                    "temperature",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def replace(node, path, value):
    node = copy.deepcopy(node)
    target = node
    for seg in path[:-1]:
        target = target[seg]
    target[path[-1]] = value
    return node


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(st.sampled_from(CORPUS), st.data(), json_values)
def test_mutations_agree_with_parse_dict(line, data, value):
    request = line["request"]
    all_paths = [p for p in paths(request) if p]
    path = data.draw(st.sampled_from(all_paths))
    mutated = replace(request, path, value)
    if deviates(mutated):
        return
    ours, theirs = schema_ok(mutated), parse_dict_ok(mutated)
    if isinstance(value, bool) and theirs and not ours:
        # Python's json_format takes true/false for a float field (float(True)); the proto3 JSON
        # mapping and the API do not, and neither does dropbatch.
        assert any("is a boolean" in p[2] for p in check_request(mutated))
        return
    # ParseDict takes [] and "" for a message field, at any depth (it iterates them: {"text": []} as
    # a map value too); the proto3 JSON mapping and the API want an object, and so does dropbatch.
    if theirs and not ours:
        problems = [p for p in check_request(mutated) if p[0] == "schema"]
        assert problems and all("must be an object" in p[2] for p in problems), problems
        return
    assert ours == theirs, (mutated, check_request(mutated))
