"""The grants the local stack enforces, compiled from infra/ itself, and the checks each call is
given."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from dropbatch.local import iam, storage_front
from dropbatch.local.terraform import Terraform

ROOT = Path(__file__).resolve().parents[2]
PROJECT, BUCKET = "proj", "drop"
OBJECT = "storage.googleapis.com/Object"


def account(who: str) -> str:
    return f"serviceAccount:dropbatch-{who}@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def policy() -> iam.Policy:
    return iam.compile_policy(ROOT / "infra", PROJECT, BUCKET)


def obj(name: str) -> tuple[str, str]:
    return iam.storage_resource(BUCKET, name)


def test_vertex_rights_per_function(policy):
    location = f"projects/{PROJECT}/locations/us-central1"
    allowed = {
        who: {
            p
            for p in ("create", "get", "list", "cancel")
            if policy.allowed(account(who), f"aiplatform.batchPredictionJobs.{p}", location)
        }
        for who in ("submit", "status", "split")
    }
    assert allowed == {"submit": {"create", "list"}, "status": {"get"}, "split": set()}
    assert policy.allowed(iam.OWNER, "aiplatform.batchPredictionJobs.cancel", location)


def test_bucket_conditions_limit_writes_to_batches(policy):
    for who in ("submit", "status", "split"):
        assert policy.allowed(account(who), "storage.objects.create", *obj("batches/b/ledger.json"))
        assert not policy.allowed(account(who), "storage.objects.create", *obj("incoming/a.jsonl"))
        assert not policy.allowed(account(who), "storage.objects.delete", *obj("incoming/a.jsonl"))
    assert policy.allowed(account("submit"), "storage.objects.get", *obj("incoming/a.jsonl"))
    assert not policy.allowed(account("split"), "storage.objects.get", *obj("incoming/a.jsonl"))
    # listing is a call on the bucket: split's condition admits the bucket type for it
    assert policy.allowed(account("split"), "storage.objects.list", *iam.storage_resource(BUCKET))
    agent = iam.vertex_agent()
    assert policy.allowed(agent, "storage.objects.get", *obj("batches/b/input/part-00000.jsonl"))
    assert policy.allowed(
        agent, "storage.objects.create", *obj("batches/b/output/x/predictions.jsonl")
    )
    assert not policy.allowed(
        agent, "storage.objects.delete", *obj("batches/b/output/x/predictions.jsonl")
    )
    assert not policy.allowed(agent, "storage.objects.get", *obj("incoming/a.jsonl"))


def test_topics(policy):
    topic = f"projects/{PROJECT}/topics/dropbatch-uploads"
    assert {
        w
        for w in ("submit", "status", "split")
        if policy.allowed(account(w), "pubsub.topics.publish", topic)
    } == {"submit", "status", "split"}
    sweep = f"projects/{PROJECT}/topics/dropbatch-sweep"
    assert not any(
        policy.allowed(account(w), "pubsub.topics.publish", sweep)
        for w in ("submit", "status", "split")
    )


def test_a_separate_results_bucket_moves_the_grants(tmp_path):
    policy = iam.compile_policy(ROOT / "infra", PROJECT, BUCKET, results_bucket="results")
    ledger = iam.storage_resource("results", "batches/b/ledger.json")
    assert policy.allowed(account("split"), "storage.objects.create", *ledger)
    assert not policy.allowed(
        account("split"), "storage.objects.create", *obj("batches/b/ledger.json")
    )


def test_a_copy_of_infra_with_a_grant_removed_is_enforced(tmp_path):
    copy = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", copy)
    text = (copy / "iam.tf").read_text()
    start = text.index('resource "google_project_iam_member" "vertex_creator"')
    end = text.index("}", start) + 1
    (copy / "iam.tf").write_text(text[:start] + text[end:])
    policy = iam.compile_policy(copy, PROJECT, BUCKET)
    assert not policy.allowed(
        account("submit"), "aiplatform.batchPredictionJobs.create", f"projects/{PROJECT}"
    )
    (copy / "iam.tf").write_text(
        text.replace(
            'resource "google_project_iam_member" "vertex_creator" {',
            'resource "google_project_iam_member" "vertex_creator" {\n  count = 0',
        )
    )
    policy = iam.compile_policy(copy, PROJECT, BUCKET)  # count = 0: no instance, no grant
    assert not policy.allowed(
        account("submit"), "aiplatform.batchPredictionJobs.create", f"projects/{PROJECT}"
    )
    off = iam.compile_policy(copy, PROJECT, BUCKET, enforce=False)
    assert off.allowed(
        account("submit"), "aiplatform.batchPredictionJobs.create", f"projects/{PROJECT}"
    )


def test_the_evaluator_takes_only_the_chosen_branch():
    tf = Terraform(
        {"locals": {}, "module": {"m": {"count": "${var.n}", "name": "x"}}, "resource": {}},
        {"n": 0, "s": ""},
    )
    # m has no instance: not evaluated
    assert tf.value('${var.s == "" ? "empty" : module.m[0].name}') == "empty"
    assert tf.value('${{a = 1, "b" = var.s}}') == {"a": 1, "b": ""}
    assert tf.value("pre-${var.n}-post") == "pre-0-post"
    with pytest.raises(ValueError):
        tf.value("${lookup(var.s)}")


def test_tokens_name_their_principal_and_cannot_be_forged():
    secret = b"k" * 32
    token = iam.issue(secret, iam.OWNER)
    assert iam.principal_of(secret, token) == iam.OWNER
    assert iam.principal_of(b"x" * 32, token) is None
    forged = token.replace(token.split(".")[3], "c2VydmljZUFjY291bnQ6ZXZpbA")
    assert iam.principal_of(secret, forged) is None


def test_a_self_signed_jwt_is_verified_with_the_principals_key():
    from google.auth import crypt, jwt

    private, public = iam.new_key()
    info = iam.key_file(account("submit"), private, "k1", PROJECT, "http://127.0.0.1:1/token")
    signer = crypt.RSASigner.from_service_account_info(info)
    assertion = jwt.encode(
        signer,
        {
            "iss": info["client_email"],
            "sub": info["client_email"],
            "aud": "x",
            "iat": 1,
            "exp": 2**40,
        },
    ).decode()
    assert iam.signed_by({"k1": public}, assertion) == account("submit")
    other = iam.new_key()[1]
    assert iam.signed_by({"k1": other}, assertion) is None


def test_denied_reads_as_googles_refusal():
    body = orjson.loads(
        iam.Denied(account("split"), "storage.objects.get", obj("incoming/a")[0]).body()
    )
    assert body["error"]["code"] == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    assert body["error"]["message"] == (
        "Permission 'storage.objects.get' denied on resource "
        "'projects/_/buckets/drop/objects/incoming/a' (or it may not exist)."
    )


def test_storage_calls_map_to_their_permissions():
    checks = storage_front.storage_checks
    assert checks("GET", "/download/storage/v1/b/drop/o/batches%2Fx", {"alt": "media"}, b"") == [
        ("storage.objects.get", *obj("batches/x"))
    ]
    assert checks("GET", "/storage/v1/b/drop/o", {"prefix": "batches/"}, b"") == [
        ("storage.objects.list", *iam.storage_resource(BUCKET))
    ]
    assert checks(
        "POST", "/upload/storage/v1/b/drop/o", {"uploadType": "media", "name": "incoming/a"}, b""
    ) == [("storage.objects.create", *obj("incoming/a"))]
    multipart = (
        b'--x\r\ncontent-type: application/json\r\n\r\n{"name": "batches/m.json"}\r\n--x\r\n'
    )
    assert checks(
        "POST", "/upload/storage/v1/b/drop/o", {"uploadType": "multipart"}, multipart
    ) == [("storage.objects.create", *obj("batches/m.json"))]
    assert checks("PUT", "/upload/storage/v1/b/drop/o", {"upload_id": "abc"}, b"") == []
    compose = orjson.dumps({"sourceObjects": [{"name": "batches/a"}, {"name": "batches/b"}]})
    assert checks("POST", "/storage/v1/b/drop/o/batches%2Fc/compose", {}, compose) == [
        ("storage.objects.create", *obj("batches/c")),
        ("storage.objects.get", *obj("batches/a")),
        ("storage.objects.get", *obj("batches/b")),
    ]
    assert checks("DELETE", "/storage/v1/b/drop/o/incoming%2Fa", {}, b"") == [
        ("storage.objects.delete", *obj("incoming/a"))
    ]
    assert checks("POST", "/storage/v1/b", {"project": PROJECT}, b"") == [
        ("storage.buckets.create", f"projects/{PROJECT}", "")
    ]
