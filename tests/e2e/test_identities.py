"""The local stack as a model of the deployment: each function runs as its own service account and
what infra/ does not grant is refused as Google refuses it (HTTP 403 PERMISSION_DENIED naming the
permission and the resource: google.rpc.Status, https://cloud.google.com/apis/design/errors).
Negative tests change a copy of infra/ and check that the stack, reading it, refuses and that the
batch ends with a message naming the permission."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import NOT_TERMINAL, drop, req, settled
from google.api_core import exceptions

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def as_account(stack, who: str):
    """Credentials of one of the stack's principals (submit, status, split, vertex_agent, owner)."""
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_file(
        stack.credentials(who), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )


def storage_as(stack, who: str):
    """A storage client as a function sees Cloud Storage: its own credentials, on the port that
    refuses callers without any (the functions' STORAGE_EMULATOR_HOST)."""
    from google.cloud import storage

    previous = os.environ["STORAGE_EMULATOR_HOST"]
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{stack.ports['storage_fn']}"
    try:
        return storage.Client(project=stack.project, credentials=as_account(stack, who))
    finally:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


def jobs_as(stack, who: str):
    from google.cloud import aiplatform_v1

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        credentials=as_account(stack, who),
        client_options={"api_endpoint": stack.vertex},
    )


def test_each_function_has_its_own_account_from_infra(stack):
    """The key files name the accounts infra/iam.tf creates, and each function's process was given
    its own."""
    from dropbatch.local import stack as local

    pids = local.require().pids  # as they are now: fault tests restart functions
    policy = orjson.loads((stack.iam_dir / "policy.json").read_bytes())
    assert stack.iam and policy["enforce"]  # on by default: the suite runs with enforcement
    accounts = policy["accounts"]
    for who in ("submit", "status", "split"):
        key = orjson.loads(Path(stack.credentials(who)).read_bytes())
        assert (
            key["type"] == "service_account"
            and f"serviceAccount:{key['client_email']}" == accounts[who]
        )
        assert key["client_email"] == f"dropbatch-{who}@{stack.project}.iam.gserviceaccount.com"
        assert key["token_uri"].startswith("http://127.0.0.1:")
        environ = Path(f"/proc/{pids[who]}/environ").read_bytes().split(b"\0")
        assert f"GOOGLE_APPLICATION_CREDENTIALS={stack.credentials(who)}".encode() in environ


def test_storage_refuses_what_the_bucket_bindings_do_not_allow(stack, bucket):
    """split_results may read and write only under batches/ (iam.tf conditions); a caller without a
    token gets 401 on the functions' port."""
    bucket.blob("incoming/user-file.jsonl").upload_from_string(b"{}\n")
    split = storage_as(stack, "split").bucket(stack.bucket)
    split.blob("batches/probe/x.json").upload_from_string(b"{}")  # allowed: under batches/
    assert [b.name for b in split.list_blobs(prefix="batches/probe/")] == ["batches/probe/x.json"]
    with pytest.raises(exceptions.Forbidden) as refused:
        split.blob("incoming/user-file.jsonl").download_as_bytes()
    assert "storage.objects.get" in refused.value.message
    with pytest.raises(exceptions.Forbidden) as refused:
        split.blob("incoming/evil.jsonl").upload_from_string(b"{}")
    assert "storage.objects.create" in refused.value.message
    submit = storage_as(stack, "submit").bucket(stack.bucket)
    # objectViewer on the bucket
    assert submit.blob("incoming/user-file.jsonl").download_as_bytes() == b"{}\n"
    # but writes only under batches/: a user's file is never touched
    with pytest.raises(exceptions.Forbidden):
        submit.blob("incoming/user-file.jsonl").delete()
    import requests

    r = requests.get(
        f"http://127.0.0.1:{stack.ports['storage_fn']}/storage/v1/b/{stack.bucket}/o", timeout=10
    )
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_the_result_writer_refreshes_its_own_token(stack, monkeypatch):
    """Found when the functions got real credentials: gcs_http's token refresh went through its
    single-host pool to Cloud Storage ("Tried to open a foreign host"); in the cloud the first
    refresh after an hour would fail."""
    from dropbatch import store

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{stack.ports['storage_fn']}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", stack.credentials("split"))
    store.gcs_credentials.cache_clear()
    try:
        http = store.gcs_http(2)
        assert not http.credentials.valid  # nothing refreshed it before this request
        r = http.request(
            "POST",
            f"/upload/storage/v1/b/{stack.bucket}/o?uploadType=media&name=batches%2Fprobe%2Fr",
            body=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 200, r.data[:300]
        http.http.close()
    finally:
        store.gcs_credentials.cache_clear()


def test_vertex_refuses_callers_without_the_role(stack, vertex):
    """Only submit_batch may create jobs (dropbatchBatchJobs); on_job_event may only GET them;
    split_results has no Vertex role at all. Refusals carry Vertex's 403 shape (over REST, api_core
    raises a 403 as Forbidden; over gRPC as PermissionDenied)."""
    parent = f"projects/{stack.project}/locations/us-central1"
    with pytest.raises(exceptions.Forbidden) as refused:
        jobs_as(stack, "split").list_batch_prediction_jobs(parent=parent)
    assert "aiplatform.batchPredictionJobs.list" in refused.value.message
    assert f"//aiplatform.googleapis.com/{parent}" in refused.value.message
    with pytest.raises(exceptions.Forbidden) as refused:
        jobs_as(stack, "status").create_batch_prediction_job(
            parent=parent,
            batch_prediction_job={
                "display_name": "x",
                "model": f"{parent}/publishers/google/models/gemini-2.5-flash",
            },
        )
    assert "aiplatform.batchPredictionJobs.create" in refused.value.message
    list(jobs_as(stack, "submit").list_batch_prediction_jobs(parent=parent))  # allowed
    import requests

    r = requests.get(f"{stack.vertex}/v1/{parent}/batchPredictionJobs", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_publishing_is_checked_per_function(stack):
    """Each function reaches Pub/Sub through a front of its own: split_results may publish split
    tasks and messages, not sweep ticks."""
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{stack.ports['pubsub_split']}"}
    program = """
import os
from google.cloud import pubsub_v1
client = pubsub_v1.PublisherClient()
for topic in os.environ["TOPICS"].split(","):
    try:
        client.publish(client.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], topic), b"{}").result(timeout=30)
        print(topic, "published")
    except Exception as exc:
        print(topic, "refused", type(exc).__name__, exc)
"""
    env["TOPICS"] = f"{stack.topics['split']},{stack.topics['sweep']}"
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines[stack.topics["split"]] == "published", out.stdout + out.stderr
    assert lines[stack.topics["sweep"]].startswith("refused PermissionDenied"), out.stdout
    assert "pubsub.topics.publish" in lines[stack.topics["sweep"]]


# ---------------------------------------------------------------- enforcement reads infra/


def failed_message(bucket, inbox, batch_id) -> dict:
    messages = settled(bucket, inbox, batch_id, timeout=120)
    terminal = [m for m in messages if m["state"] not in NOT_TERMINAL]
    assert [m["state"] for m in terminal] == ["failed"], messages
    return terminal[0]


def test_without_the_split_accounts_write_the_batch_fails_naming_it(
    stack, bucket, inbox, vertex, infra_copy
):
    infra_copy(
        """resource "google_storage_bucket_iam_member" "functions_write_batches" {
  for_each = local.function_sas""",
        """resource "google_storage_bucket_iam_member" "functions_write_batches" {
  for_each = { submit = google_service_account.submit.member, status = google_service_account.status.member }""",
    )
    _, batch_id = drop(bucket, "no-split-write.jsonl", [req(f"q{i}") for i in range(5)])
    message = inbox.wait_for(batch_id, "failed", timeout=120)
    assert re.search(r"Permission 'storage\.objects\.(create|delete)' denied", message["error"]), (
        message
    )


def test_without_the_submit_accounts_create_the_batch_fails_naming_it(
    stack, bucket, inbox, vertex, infra_copy
):
    infra_copy(
        """  permissions = ["aiplatform.batchPredictionJobs.create", "aiplatform.batchPredictionJobs.list", "aiplatform.endpoints.predict"]""",
        """  permissions = ["aiplatform.batchPredictionJobs.list", "aiplatform.endpoints.predict"]""",
    )
    _, batch_id = drop(bucket, "no-create.jsonl", [req(f"q{i}") for i in range(5)])
    message = failed_message(bucket, inbox, batch_id)
    assert "Permission 'aiplatform.batchPredictionJobs.create' denied" in message["error"]
    calls = vertex.stats()["calls"]
    assert calls["refused"] == 1 and calls["create"] == 0  # refused once, never retried


def test_without_the_vertex_agents_read_the_batch_fails_naming_it(
    stack, bucket, inbox, vertex, infra_copy
):
    infra_copy(
        """resource "google_storage_bucket_iam_member" "vertex_agent_read" {""",
        """resource "google_storage_bucket_iam_member" "vertex_agent_read_removed" {
  count  = 0""",
    )
    _, batch_id = drop(bucket, "no-agent-read.jsonl", [req(f"q{i}") for i in range(5)])
    message = failed_message(bucket, inbox, batch_id)
    assert "Permission 'storage.objects.get' denied" in message["error"]
    assert re.search(r"batches/no-agent-read-[0-9a-f]+/input/", message["error"])


def test_retry_rounds_create_their_jobs_as_the_submit_account(stack, bucket, inbox, vertex):
    """The bug enforcement found: a retry round's jobs were created by split_results, which holds no
    Vertex role (in the cloud: 403, and the batch ended `failed`). Its jobs are now created by
    submit_batch."""
    vertex.faults(fail_rate=0.5, fail_code=503)
    # 40 requests, one job a round (DROPBATCH_MAX_JOB_REQUESTS=40). The emulator fails a job whose
    # every line failed, and the batch with it: with 20 requests a round of K retried lines did that
    # one run in 300 (0.75**20, the mean of 0.5**K), and a fresh clone drew it; with 40, one in
    # 100,000 (0.75**40).
    _, batch_id = drop(bucket, "round-identity.jsonl", [req(f"r{i}") for i in range(40)])
    done = inbox.wait_for(batch_id, ["succeeded", "partially_succeeded", "failed"], timeout=120)
    assert done["state"] in ("succeeded", "partially_succeeded") and not done["error"], done
    manifest = orjson.loads(bucket.blob(f"batches/{batch_id}/manifest.json").download_as_bytes())
    assert [r["round"] for r in manifest["rounds"]] == [0, 1]
    logs = Path(stack.logs)
    created = [
        orjson.loads(l) for l in (logs / "submit.log").read_text().splitlines() if l.startswith("{")
    ]
    assert (
        sum(1 for l in created if l.get("batch_id") == batch_id and l["message"] == "job created")
        == 2
    )
    split_log = (logs / "split.log").read_text()
    assert not any(batch_id in l and "job created" in l for l in split_log.splitlines())


# ---------------------------------------------------------------- programs nobody here wrote

# The calls of python-docs-samples genai/batch_prediction/batchpredict_with_gcs.py (Apache-2.0, not
# copied here): genai.Client(http_options=HttpOptions(api_version=...)),
# client.batches.create(model, src, config=CreateBatchJobConfig(dest=...)), then a poll loop on
# client.batches.get until a completed state. The sample's own source object,
# gs://cloud-samples-data/batch/prompt_for_batch_gemini_predict.jsonl, is created on the stack
# (Google's public sample bucket, readable by allUsers). Its poll sleeps 30 s; this one 0.5 s.
GOOGLE_SAMPLE = """
import sys, time
from google import genai
from google.genai.types import CreateBatchJobConfig, JobState, HttpOptions

client = genai.Client(http_options=HttpOptions(api_version=sys.argv[1]))
job = client.batches.create(
    model="gemini-2.5-flash",
    src="gs://cloud-samples-data/batch/prompt_for_batch_gemini_predict.jsonl",
    config=CreateBatchJobConfig(dest=sys.argv[2]),
)
print(f"Job name: {job.name}")
completed_states = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED,
                    JobState.JOB_STATE_PAUSED}
while job.state not in completed_states:
    time.sleep(0.5)
    job = client.batches.get(name=job.name)
print(f"Job state: {job.state}")
"""

PLAIN_CLIENTS = """
import os
from google.cloud import pubsub_v1, storage

names = [b.name for b in storage.Client().list_blobs(os.environ["DROPBATCH_BUCKET"], prefix="incoming/plain")]
print("listed", names)
publisher = pubsub_v1.PublisherClient()
topic = publisher.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["DROPBATCH_NOTIFICATIONS_TOPIC"])
print("published", bool(publisher.publish(topic, b"{}").result(timeout=30)))
"""


def only_local_env(stack) -> dict:
    """Nothing but what `eval "$(dropbatch local env)"` sets, and a PATH."""
    out = subprocess.run(
        [sys.executable, "-m", "dropbatch", "local", "env"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
        check=True,
    )
    env = dict(
        re.fullmatch(r"export (\w+)=(.*)", line).groups() for line in out.stdout.splitlines()
    )
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == stack.credentials("owner")
    return {**env, "PATH": os.environ["PATH"]}


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_googles_batch_sample_runs_with_only_local_env(stack, bucket, vertex, version):
    from corpus import SEED_LINE
    from google.cloud import storage

    owner = storage.Client(project=stack.project)
    samples = owner.bucket("cloud-samples-data")
    if not samples.exists():
        owner.create_bucket("cloud-samples-data")
    samples.blob("batch/prompt_for_batch_gemini_predict.jsonl").upload_from_string(
        orjson.dumps(SEED_LINE) + b"\n"
    )
    dest = f"gs://{stack.bucket}/batches/google-sample-{version}"
    out = subprocess.run(
        [sys.executable, "-c", GOOGLE_SAMPLE, version, dest],
        capture_output=True,
        text=True,
        env=only_local_env(stack),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Job state: JobState.JOB_STATE_SUCCEEDED" in out.stdout, out.stdout
    written = [
        b.name
        for b in bucket.list_blobs(prefix=f"batches/google-sample-{version}/prediction-model-")
    ]
    assert written and all(n.endswith(".jsonl") for n in written)


def test_plain_clients_run_with_only_local_env(stack, bucket):
    bucket.blob("incoming/plain-probe.txt").upload_from_string(b"x")
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_CLIENTS],
        capture_output=True,
        text=True,
        env=only_local_env(stack),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "listed ['incoming/plain-probe.txt']" in out.stdout and "published True" in out.stdout


BIGQUERY_CLIENT = """
import os
from google.cloud import bigquery
client = bigquery.Client()  # BIGQUERY_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT from `dropbatch local env`
client.create_dataset("probe", exists_ok=True)
schema = [bigquery.SchemaField("key", "STRING"), bigquery.SchemaField("response", "JSON")]
job = client.load_table_from_uri(f"gs://{os.environ['DROPBATCH_BUCKET']}/probe/rows.jsonl", "probe.rows",
                                 job_config=bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON",
                                                                   schema=schema, write_disposition="WRITE_TRUNCATE"))
job.result()
rows = client.query("SELECT key, JSON_VALUE(response, '$.n') AS n FROM probe.rows ORDER BY key").result()
print("rows", [(r.key, r.n) for r in rows])
"""


def test_bigquery_client_runs_with_only_local_env(stack, bucket):
    """The stack's BigQuery (`local status --json` "bigquery") answers google-cloud-bigquery with
    nothing but `local env`, and a load job reads gs:// objects of the stack's bucket."""
    import requests

    assert (
        requests.get(
            f"{stack.public()['bigquery']}/bigquery/v2/projects/{stack.project}/datasets",
            timeout=10,
        ).status_code
        == 200
    )
    bucket.blob("probe/rows.jsonl").upload_from_string(
        b'{"key": "b", "response": {"n": 2}}\n{"key": "a", "response": {"n": 1}}\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", BIGQUERY_CLIENT],
        capture_output=True,
        text=True,
        env=only_local_env(stack),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rows [('a', '1'), ('b', '2')]" in out.stdout, out.stdout


# The calls of python-docs-samples genai/batch_prediction/batchpredict_with_bq.py (Apache-2.0, not
# copied here): client.batches.create(model="gemini-2.5-flash",
# src="bq://storage-samples.generative_ai.batch_requests_for_ multimodal_input",
# config=CreateBatchJobConfig(dest=output_uri)), then the same poll loop (30 s there, 0.5 s here).
# The sample's source table is made in the stack's BigQuery by the test, with a JSON `request`
# column (batch-prediction-from-bigquery: "A request column is required, and must be valid JSON")
# and one more column, which the output table must carry over.
GOOGLE_BQ_SAMPLE = GOOGLE_SAMPLE.replace(
    '"gs://cloud-samples-data/batch/prompt_for_batch_gemini_predict.jsonl"',
    '"bq://storage-samples.generative_ai.batch_requests_for_multimodal_input"',
)


def test_googles_bigquery_sample_runs_with_only_local_env(stack, vertex):
    import io

    from corpus import SEED_LINE
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    assert GOOGLE_BQ_SAMPLE != GOOGLE_SAMPLE
    bq = bigquery.Client(
        project="storage-samples",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack.bigquery),
    )
    bq.create_dataset("storage-samples.generative_ai", exists_ok=True)
    source = "storage-samples.generative_ai.batch_requests_for_multimodal_input"
    schema = [bigquery.SchemaField("request", "JSON"), bigquery.SchemaField("id", "INT64")]
    bq.delete_table(source, not_found_ok=True)
    bq.create_table(bigquery.Table(source, schema=schema))
    rows = [
        {"request": SEED_LINE["request"], "id": 1},
        {
            "request": {"contents": [{"role": "user", "parts": [{"text": "Name a colour."}]}]},
            "id": 2,
        },
    ]
    bq.load_table_from_file(
        io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows)),
        source,
        job_config=bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=schema),
    ).result(timeout=60)
    dest = f"{stack.project}.sample_out.predictions"
    out = subprocess.run(
        [sys.executable, "-c", GOOGLE_BQ_SAMPLE, "v1", f"bq://{dest}"],
        capture_output=True,
        text=True,
        env=only_local_env(stack),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Job state: JobState.JOB_STATE_SUCCEEDED" in out.stdout, out.stdout
    got = {
        r["id"]: r
        for r in bq.query(
            f"SELECT id, status, TO_JSON_STRING(response) AS response, "
            f"TO_JSON_STRING(request) AS request FROM `{dest}`"
        ).result()
    }
    assert sorted(got) == [1, 2], "every input row, its other columns carried over"
    for row in got.values():
        assert (
            row["status"] == ""
            and orjson.loads(row["response"])["candidates"][0]["content"]["parts"]
        )
        assert orjson.loads(row["request"])["contents"]


# The calls of python-docs-samples genai/batch_prediction/batchpredict_embeddings_with_gcs.py
# (Apache-2.0, not copied here): the same client.batches.create with model="text-embedding-005" and
# src="gs://cloud-samples-data/generative-ai/embeddings/embeddings_input.jsonl", then the same poll
# loop (30 s there, 0.5 s here). The source object is made on the stack with instances as the
# embeddings batch page writes them ({"content": "..."}).
GOOGLE_EMBEDDINGS_SAMPLE = GOOGLE_SAMPLE.replace(
    'model="gemini-2.5-flash"', 'model="text-embedding-005"'
).replace(
    '"gs://cloud-samples-data/batch/prompt_for_batch_gemini_predict.jsonl"',
    '"gs://cloud-samples-data/generative-ai/embeddings/embeddings_input.jsonl"',
)


def test_googles_embeddings_sample_runs_with_only_local_env(stack, bucket, vertex):
    from google.cloud import storage

    assert (
        GOOGLE_EMBEDDINGS_SAMPLE.count("text-embedding-005") == 1
        and "embeddings_input" in GOOGLE_EMBEDDINGS_SAMPLE
    )
    vertex.faults(fail_rate=0.0)
    owner = storage.Client(project=stack.project)
    samples = owner.bucket("cloud-samples-data")
    if not samples.exists():
        owner.create_bucket("cloud-samples-data")
    texts = [
        "Give a short description of a machine learning model:",
        "Best recipe for banana bread:",
    ]
    samples.blob("generative-ai/embeddings/embeddings_input.jsonl").upload_from_string(
        b"".join(orjson.dumps({"content": t}) + b"\n" for t in texts)
    )
    dest = f"gs://{stack.bucket}/batches/google-embeddings-sample"
    out = subprocess.run(
        [sys.executable, "-c", GOOGLE_EMBEDDINGS_SAMPLE, "v1", dest],
        capture_output=True,
        text=True,
        env=only_local_env(stack),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Job state: JobState.JOB_STATE_SUCCEEDED" in out.stdout, out.stdout
    lines = [
        orjson.loads(l)
        for b in bucket.list_blobs(prefix="batches/google-embeddings-sample/prediction-model-")
        for l in b.download_as_bytes().splitlines()
    ]
    assert sorted(l["instance"]["content"] for l in lines) == sorted(texts)
    for line in lines:
        embeddings = line["predictions"][0]["embeddings"]
        assert line["status"] == "" and len(embeddings["values"]) == 768, (
            "text-embedding-005's 768 dimensions"
        )
        assert (
            embeddings["statistics"]["token_count"] > 0
            and embeddings["statistics"]["truncated"] is False
        )
