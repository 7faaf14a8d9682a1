"""The offline checks catch what a first `terraform validate` would: each breakage below was made in
a copy of infra/ and must be found (an enum value, a required argument, an attribute read through a
nested block, a module output), and the real infra/ has none of them."""

from __future__ import annotations

import pytest
import typed_schema
from test_terraform import INFRA, broken_copy, not_google


@pytest.fixture(scope="module")
def schema():
    lib = typed_schema.fetch_types()
    if lib is None:
        pytest.skip("npm is not available to fetch the provider schema package")
    return typed_schema.load_types(lib)


def test_infra_passes_the_typed_checks(schema):
    assert typed_schema.problems(INFRA, schema, not_google) == []


BREAKAGES = {
    "nested attribute": (
        "pubsub.tf",
        "service_config[0].uri",
        "service_config[0].url",
        "service_config[0].url",
    ),
    "enum value": ("functions.tf", '"ALLOW_INTERNAL_ONLY"', '"ALLOW_INTERNAL"', "ingress_settings"),
    "required argument": (
        "pubsub.tf",
        "  topic                      = each.value.id\n",
        "",
        "'topic' is missing",
    ),
    "module output": (
        "outputs.tf",
        "module.drop_bucket.name",
        "module.drop_bucket.bucket_name",
        "bucket_name",
    ),
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_each_breakage_is_caught(schema, tmp_path, what):
    file, old, new, expected = BREAKAGES[what]
    copy = broken_copy(tmp_path, file, old, new)
    found = typed_schema.problems(copy, schema, not_google)
    assert any(expected in p for p in found), (what, found)
