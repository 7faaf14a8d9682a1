"""Offline checks of infra/ and cloudbuild.yaml: formatting, checkov, the IAM and wiring rules, and
every resource, block and argument name against the google provider's schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml
from dropbatch.config import Config
from dropbatch.local.terraform import clean_hcl as clean

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
# Project-level grants allowed, each because no narrower binding exists (the reason is beside each
# in iam.tf).
PROJECT_ROLES = {
    "${google_project_iam_custom_role.batch_jobs.name}",
    "${google_project_iam_custom_role.batch_jobs_read.name}",
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    # BigQuery jobs run in a project: job user has no narrower resource
    "roles/bigquery.jobUser",
}


def load_all(folder: Path = INFRA) -> dict:
    merged: dict = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": [],
        "terraform": [],
        "module": {},
    }
    for path in sorted(folder.glob("*.tf")):
        doc = clean(hcl2.load(path.open()))
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        merged[kind].setdefault(rtype, {})[name] = body
        for kind in ("variable", "output", "module"):
            for entry in doc.get(kind, []):
                merged[kind].update(entry)
        merged["locals"] += doc.get("locals", [])
        merged["terraform"] += doc.get("terraform", [])
    return merged


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_all()


@pytest.fixture(scope="module")
def bucket_module() -> dict:
    return load_all(INFRA / "modules" / "bucket")


def test_module_calls_use_declared_variables(tf, bucket_module):
    declared = set(bucket_module["variable"])
    required = {n for n, v in bucket_module["variable"].items() if "default" not in v}
    for name, call in tf["module"].items():
        assert call["source"] == "./modules/bucket"
        given = set(call) - {"source", "count", "for_each", "depends_on", "providers"}
        assert given <= declared, (name, given - declared)
        assert required <= given, (name, required - given)


def test_terraform_fmt():
    if not shutil.which("terraform"):
        pytest.skip("terraform is not installed; CI and Cloud Build run `terraform fmt -check`")
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(INFRA)], capture_output=True, text=True
    )
    assert out.returncode == 0, f"terraform fmt would change: {out.stdout}"


def test_checkov_zero_failed():
    if not CHECKOV.exists():
        pytest.skip("checkov is installed by `make test` into .venv-checkov")
    out = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(INFRA),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    failed = [
        (c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
    assert summary["passed"] > 30


def test_every_variable_typed_described_and_validated(tf, bucket_module):
    for name, body in [*tf["variable"].items(), *bucket_module["variable"].items()]:
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) > 10, f"variable {name} has no description"
    for name in ("region", "bucket_name", "model", "sweep_schedule", "project_id"):
        assert tf["variable"][name].get("validation"), f"variable {name} is not validated"


def test_provider_versions_bounded(tf, bucket_module):
    for block in (tf["terraform"][0], bucket_module["terraform"][0]):
        for name, spec in block["required_providers"][0].items():
            assert ">=" in spec["version"] and "<" in spec["version"].replace("<=", ""), (
                name,
                spec,
            )
        assert "<" in block["required_version"]


def test_one_service_account_per_function(tf):
    functions = tf["resource"]["google_cloudfunctions2_function"]
    assert (
        set(functions) == {"fn", "webhook"} and functions["fn"]["for_each"] == "${local.functions}"
    )
    # the webhook function (webhooks.tf): its own identity, the secret from Secret Manager
    hook = functions["webhook"]["service_config"][0]
    assert hook["service_account_email"] == "${google_service_account.webhook.email}"
    assert hook["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert hook["secret_environment_variables"][0]["key"] == "DROPBATCH_WEBHOOK_SECRET"
    assert "environment_variables" in hook and "event_trigger" not in functions["webhook"]
    table = next(l["functions"] for l in tf["locals"] if "functions" in l)
    assert set(table) == {"submit", "status", "split"}
    accounts = [spec["sa"] for spec in table.values()]
    assert sorted(accounts) == sorted(f"${{google_service_account.{k}.email}}" for k in table), (
        accounts
    )
    fn = functions["fn"]
    assert fn["service_config"][0]["service_account_email"] == "${each.value.sa}"
    assert fn["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert "dynamic" not in fn and "event_trigger" not in fn, (
        "every function is pushed to by a subscription"
    )


def test_submit_sees_only_uploads_under_the_prefix(tf):
    """A storage trigger on the bucket would invoke submit_batch for every object dropbatch writes
    (ledgers, parts, outputs, a result object per request): the notification is limited to finalize
    under incoming/."""
    note = tf["resource"]["google_storage_notification"]["uploads"]
    assert (
        note["event_types"] == ["OBJECT_FINALIZE"]
        and note["object_name_prefix"] == "${var.incoming_prefix}"
    )
    assert (
        note["topic"] == "${google_pubsub_topic.uploads.id}"
        and note["payload_format"] == "JSON_API_V1"
    )
    push = next(l["push"] for l in tf["locals"] if "push" in l)
    assert push["uploads"]["fn"] == '${google_cloudfunctions2_function.fn["submit"]}'
    grant = tf["resource"]["google_pubsub_topic_iam_member"]["gcs_agent_publishes_uploads"]
    assert (
        grant["topic"] == "${google_pubsub_topic.uploads.name}"
        and grant["member"] == "${local.gcs_agent}"
    )


def test_every_ack_deadline_outlasts_its_functions_timeout(tf):
    push = next(l["push"] for l in tf["locals"] if "push" in l)
    functions = next(l["functions"] for l in tf["locals"] if "functions" in l)
    by_fn = {"uploads": "submit", "sweep": "status", "split": "split"}
    for path, spec in push.items():
        assert spec["ack"] > functions[by_fn[path]]["timeout"], path
        assert spec["ack"] <= 600, "Pub/Sub's longest ack deadline"


def roles(tf):
    for rtype, named in tf["resource"].items():
        if rtype.endswith(("_iam_member", "_iam_binding", "_iam_policy")):
            for name, body in named.items():
                yield rtype, name, body.get("role", "")


def test_no_basic_or_iam_roles(tf):
    for rtype, name, role in roles(tf):
        assert role not in BASIC_ROLES, (rtype, name, role)
        assert not role.startswith("roles/iam."), (rtype, name, role)
        assert "admin" not in role.lower(), (rtype, name, role)
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), (
            "authoritative IAM would drop others' grants"
        )


def test_project_level_grants_only_where_unavoidable(tf):
    project = [
        (name, role) for rtype, name, role in roles(tf) if rtype == "google_project_iam_member"
    ]
    assert {role for _, role in project} <= PROJECT_ROLES, project
    iam = "\n".join(p.read_text() for p in sorted(INFRA.glob("*.tf")))
    for name, _ in project:
        block = iam.split(f'resource "google_project_iam_member" "{name}"')[0].rsplit("\n\n", 1)[-1]
        assert block.strip().startswith("#"), f"project-level grant {name} has no reason beside it"


def test_functions_write_only_under_batches(tf):
    members = tf["resource"]["google_storage_bucket_iam_member"]
    for name, body in members.items():
        if body["role"] in (
            "roles/storage.objectUser",
            "roles/storage.objectCreator",
            "roles/storage.objectAdmin",
        ):
            assert body.get("condition"), f"{name} may write anywhere in the bucket"
            assert body["condition"][0]["expression"] == "${local.batches_scope}"


def test_every_push_path_has_dead_letter_and_bounded_retry(tf):
    subs = tf["resource"]["google_pubsub_subscription"]
    push = {n: s for n, s in subs.items() if s.get("push_config")}
    assert push, "no push subscriptions"
    # the webhook push keeps no dead letter: the function gives a message up past 25 h
    # (deliver.py), and the subscription holds messages two days, longer than that
    hooks = push.pop("webhooks")
    assert hooks["retry_policy"][0]["maximum_backoff"] == "600s"
    assert int(hooks["message_retention_duration"].rstrip("s")) > Config().webhook_retry_s
    assert hooks["push_config"][0].get("oidc_token") and "dead_letter_policy" not in hooks
    for name, sub in push.items():
        assert sub.get("dead_letter_policy"), name
        assert sub["dead_letter_policy"][0]["max_delivery_attempts"] <= 20
        assert sub.get("retry_policy"), name
        assert sub["push_config"][0].get("oidc_token"), f"{name} pushes without authentication"
    local_push = next(l["push"] for l in tf["locals"] if "push" in l)
    assert set(local_push) == {"uploads", "sweep", "split"}


def test_buckets_are_private_versioned_with_lifecycle(tf, bucket_module):
    for bucket in (
        bucket_module["resource"]["google_storage_bucket"]["this"],
        tf["resource"]["google_storage_bucket"]["source"],
    ):
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert bucket["versioning"][0]["enabled"] is True
        assert bucket["lifecycle_rule"]
    this = bucket_module["resource"]["google_storage_bucket"]["this"]
    assert this["force_destroy"] is False
    rules = [d["lifecycle_rule"] for d in this["dynamic"]]
    assert [r["for_each"] for r in rules] == [
        "${var.holds_batches ? [1] : []}",
        "${var.holds_batches && var.batch_retention_days > 0 ? [1] : []}",
        "${var.holds_batches ? [1] : []}",
    ]
    noncurrent = rules[2]["content"][0]["condition"][0]
    assert (
        noncurrent["matches_prefix"] == ["batches/"]
        and noncurrent["days_since_noncurrent_time"] == 1
    ), "ledger rewrites on every sweep must not pile up noncurrent versions"
    assert tf["module"]["drop_bucket"]["holds_batches"] == '${var.results_bucket_name == ""}'
    assert tf["module"]["results_bucket"]["holds_batches"] is True


def test_outputs_and_scheduler(tf):
    assert {"bucket", "topics", "functions", "subscribe_command"} <= set(tf["output"])
    job = tf["resource"]["google_cloud_scheduler_job"]["sweep"]
    assert job["pubsub_target"][0]["topic_name"] == "${google_pubsub_topic.sweep.id}"


def test_names_match_the_provider_schema(tf):
    import provider_schema

    lib = provider_schema.fetch()
    if lib is None:
        pytest.skip("npm is not available to fetch the provider schema package")
    schema = provider_schema.load(lib)
    meta = {"count", "for_each", "depends_on", "lifecycle", "provider", "dynamic"}

    def check(where, body, names):
        for key, value in body.items():
            if key in meta:
                if key == "dynamic":
                    for dyn in value:
                        for block, spec in dyn.items():
                            assert block in names, f"{where}: no block {block!r}"
                            check(f"{where}.{block}", spec["content"][0], names[block])
                continue
            assert key in names, (
                f"{where}: {key!r} is not an argument of this resource (provider 6.50)"
            )
            if (
                names[key] is not None
                and isinstance(value, list)
                and value
                and isinstance(value[0], dict)
            ):
                for item in value:
                    check(f"{where}.{key}", item, names[key])

    checked = 0
    for config in (tf, load_all(INFRA / "modules" / "bucket")):
        checked += check_config(config, schema, check)
    assert checked >= 20
    # Attributes read from other resources exist on them.
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.tf"))
    refs = re.findall(
        r"(\bdata\.)?\b(google_[a-z0-9_]+)\.[a-z0-9_]+(?:\[[^\]]+\])?\.([a-z0-9_]+)", text
    )
    for data, rtype, attr in set(refs):
        if not_google(rtype):
            continue
        kind = "data" if data else "resource"
        getters = schema["getters"].get((kind, rtype), set())
        assert attr in getters or attr in schema[kind].get(rtype, {}), (
            f"{kind} {rtype} has no attribute {attr}"
        )


def broken_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of infra/ with `old` replaced by `new` once in `file` (the breakage must still
    apply)."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform", ".build"))
    text = (copy / file).read_text()
    assert old in text, f"the breakage no longer applies to {file}: update the test"
    (copy / file).write_text(text.replace(old, new, 1))
    return copy


GOOGLE_BETA_ONLY = {"google_project_service_identity"}


def not_google(rtype: str) -> bool:
    """Types of other providers (archive, time, random, google-beta-only), which the google 6.50
    schema cannot judge."""
    return rtype.startswith(("archive_", "time_", "random_")) or rtype in GOOGLE_BETA_ONLY


def check_config(tf, schema, check) -> int:
    checked = 0
    for kind in ("resource", "data"):
        for rtype, named in tf[kind].items():
            if not_google(rtype):
                # another provider (archive, time, google-beta); left to terraform validate
                continue
            assert rtype in schema[kind], (
                f"{kind} type {rtype} does not exist in the google provider"
            )
            for name, body in named.items():
                check(f"{rtype}.{name}", body, schema[kind][rtype])
                checked += 1
    return checked


def test_cloudbuild_steps_have_ids_and_pinned_images():
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    ids = [s.get("id") for s in build["steps"]]
    assert all(ids) and len(set(ids)) == len(ids)
    for step in build["steps"]:
        image = step["name"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d", tag)), image
    assert {
        "test",
        "terraform-fmt",
        "terraform-init",
        "terraform-validate",
        "terraform-plan",
        "terraform-apply",
        "smoke",
    } <= set(ids)
    assert ids.index("terraform-validate") < ids.index("terraform-plan")
    step = {s["id"]: s for s in build["steps"]}
    assert "make test" in step["test"]["args"][-1]
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (ROOT / "cloudbuild.yaml").read_text()))
    # every one declared
    assert used <= set(build["substitutions"]), used - set(build["substitutions"])
    smoke = step["smoke"]["args"][-1]
    assert '"state":"submitted"' in smoke and "succeeded" not in smoke, (
        "the smoke test waits for submitted only"
    )


def test_derived_names_fit_their_limits(tf):
    """BUCKET_NAME-fn-source must be a valid bucket name (at most 63 characters) for the longest
    bucket_name the variable accepts; account ids are 6-30 characters; the custom role id fits its
    pattern."""
    validation = tf["variable"]["bucket_name"]["validation"][0]["condition"]
    longest = int(re.search(r"\{1,(\d+)\}", validation).group(1)) + 2
    assert longest + len("-fn-source") <= 63
    assert (
        tf["resource"]["google_storage_bucket"]["source"]["name"] == "${var.bucket_name}-fn-source"
    )
    for name, account in tf["resource"]["google_service_account"].items():
        assert 6 <= len(account["account_id"]) <= 30 and re.fullmatch(
            r"[a-z][a-z0-9-]*[a-z0-9]", account["account_id"]
        ), name
    for role in tf["resource"]["google_project_iam_custom_role"].values():
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role["role_id"])


def test_vertex_rights_are_exactly_the_calls_made():
    """Each function's account holds exactly the batchPredictionJobs permissions its own modules use
    (the grants as the local stack enforces them, compiled from infra/); the CLI, not deployed,
    cancels with the user's rights. Only submit_batch creates jobs: the others ask it to
    (notify.ask_submit)."""
    from dropbatch.local.iam import compile_policy

    needs = {
        "create_job": {"create", "list"},
        "find_job": {"list"},
        "get_job": {"get"},
        "cancel_job": {"cancel"},
    }
    package = ROOT / "functions" / "dropbatch"
    modules = {
        "submit": ["submit.py", "jobs.py", "staging.py"],
        "status": ["sweep.py"],
        "split": [
            "rounds.py",
            "split.py",
            "matching.py",
            "finish.py",
            "retry.py",
            "split_outputs.py",
        ],
    }
    policy = compile_policy(INFRA, "p", "b")
    for account, files in modules.items():
        used = {
            name
            for f in files
            for name in re.findall(r"\bvertex\.(\w+_job)\(", (package / f).read_text())
        }
        wanted = {f"aiplatform.batchPredictionJobs.{v}" for u in used for v in needs[u]}
        granted = {
            p
            for p in ("create", "get", "list", "cancel", "delete")
            if policy.allowed(
                policy.accounts[account],
                f"aiplatform.batchPredictionJobs.{p}",
                "projects/p/locations/us-central1",
            )
        }
        assert {f"aiplatform.batchPredictionJobs.{p}" for p in granted} == wanted, (
            account,
            granted,
            wanted,
        )
    other = [
        p
        for p in package.glob("*.py")
        if p.name not in ("control.py", "vertex.py", *sum(modules.values(), []))
    ]
    assert not [p.name for p in other if re.search(r"\bvertex\.\w+_job\(", p.read_text())]


def test_service_agents_are_created_and_grants_propagate(tf):
    """A fresh project has no Vertex AI or Pub/Sub service agent until first use: they are created
    (google-beta google_project_service_identity), the Cloud Storage agent read from its data
    source, and the notification and the functions wait (time_sleep) for the agents' grants to
    propagate."""
    agents = tf["resource"]["google_project_service_identity"]["agents"]
    assert agents["provider"] in ("google-beta", "${google-beta}")
    assert agents["for_each"] == '${toset(["aiplatform.googleapis.com", "pubsub.googleapis.com"])}'
    assert "google_storage_project_service_account" in tf["data"]
    wait = tf["resource"]["time_sleep"]["agent_grants"]
    assert "${google_pubsub_topic_iam_member.gcs_agent_publishes_uploads}" in wait["depends_on"]
    assert tf["resource"]["google_storage_notification"]["uploads"]["depends_on"] == [
        "${time_sleep.agent_grants}"
    ]
    assert (
        "${time_sleep.agent_grants}"
        in tf["resource"]["google_cloudfunctions2_function"]["fn"]["depends_on"]
    )
    locals_ = {k: v for l in tf["locals"] for k, v in l.items()}
    assert "google_project_service_identity.agents" in locals_["vertex_agent"]
    assert "google_project_service_identity.agents" in locals_["pubsub_agent"]


def test_build_identity_and_apis(tf):
    """The functions build as dropbatch-build (logs, images, the source object), never a default
    account; the APIs include IAM and Resource Manager, and every service account waits for them."""
    fn = tf["resource"]["google_cloudfunctions2_function"]["fn"]
    assert fn["build_config"][0]["service_account"] == "${google_service_account.build.id}"
    grants = {
        (b["role"], b["member"])
        for r, _, b in (
            (r, n, b)
            for r, named in tf["resource"].items()
            if r.endswith("_iam_member")
            for n, b in named.items()
        )
    }
    build = "${google_service_account.build.member}"
    assert {
        ("roles/logging.logWriter", build),
        ("roles/artifactregistry.writer", build),
        ("roles/storage.objectViewer", build),
    } <= grants
    services = next(l["services"] for l in tf["locals"] if "services" in l)
    assert {"iam.googleapis.com", "cloudresourcemanager.googleapis.com"} <= set(services)
    for name, account in tf["resource"]["google_service_account"].items():
        assert account.get("depends_on") == ["${google_project_service.apis}"], name


def test_lifecycle_covers_every_staged_part(bucket_module):
    """Staged parts are matched by suffix (lifecycle conditions cannot match the middle of a name):
    the list covers every part a file within the default limits can have, and the first retry
    round's."""
    from dropbatch.config import Config

    locals_ = {k: v for l in bucket_module["locals"] for k, v in l.items()}
    text = locals_["staged_suffixes"]
    most_parts = Config().max_file_jobs  # the validator refuses a file that needs more jobs
    assert int(re.search(r"range\((\d+)\) : \[format\(\"/input/part-", text).group(1)) >= most_parts
    assert (
        int(re.search(r"range\((\d+)\) : \[format\(\"/input/retry-r1-", text).group(1))
        >= 2 * most_parts
    )


def test_split_reads_only_batches(tf):
    """split_results never needs a user's file: its only read grant is conditioned on batches/ (plus
    the bucket-level list call)."""
    reads = [
        (n, b)
        for n, b in tf["resource"]["google_storage_bucket_iam_member"].items()
        if "split" in str(b.get("member")) or (b.get("for_each") and "split" in str(b["for_each"]))
    ]
    assert [n for n, _ in reads] == ["split_reads_batches"], reads
    condition = reads[0][1]["condition"][0]["expression"]
    assert "${local.batches_scope}" in condition and "storage.googleapis.com/Bucket" in condition


def test_results_table_is_the_codes_schema_and_only_split_writes_it(tf):
    """infra/bigquery.tf makes the table from the code's own schema file, partitioned and clustered
    as the local stack's (table.create), and only the finishing identity (split) may edit it."""
    from dropbatch import table

    body = tf["resource"]["google_bigquery_table"]["results"]
    assert "functions/dropbatch/results_table.json" in body["schema"]
    assert body["time_partitioning"][0] == {"type": "DAY", "field": "finished_time"}
    assert body["clustering"] == ["batch_id"]
    assert {f["name"] for f in table.schema()} >= {"batch_id", "finished_time"}
    members = tf["resource"]["google_bigquery_dataset_iam_member"]
    assert members["split_edits_results"]["role"] == "roles/bigquery.dataEditor"
    assert members["split_edits_results"]["member"] == "${google_service_account.split.member}"
    # the only other dataset grant: submit reads the tables users point at (.bq.json), nothing more
    assert set(members) == {"split_edits_results", "submit_reads_inputs"}
    reads = members["submit_reads_inputs"]
    assert (reads["role"], reads["member"]) == (
        "roles/bigquery.dataViewer",
        "${google_service_account.submit.member}",
    )
    assert reads["for_each"] == "${toset(var.input_datasets)}"
    fn = (INFRA / "functions.tf").read_text()
    assert "DROPBATCH_RESULTS_TABLE       = var.results_table" in fn
