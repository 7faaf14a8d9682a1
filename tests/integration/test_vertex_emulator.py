"""The Vertex emulator driven only through the real aiplatform_v1 client; output checked against the seed's format."""

from __future__ import annotations

import time

import orjson
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

pytestmark = pytest.mark.stack


@pytest.fixture
def client(stack):
    return aiplatform_v1.JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                          client_options={"api_endpoint": stack.vertex})


def stage(bucket, name, lines):
    bucket.blob(name).upload_from_string(b"".join(orjson.dumps(l) + b"\n" for l in lines))
    return f"gs://{bucket.name}/{name}"


def make_job(stack, uri, prefix, labels=None):
    return aiplatform_v1.BatchPredictionJob(
        display_name="fidelity", model=f"projects/{stack.project}/locations/us-central1/publishers/google/models/"
                                       "gemini-2.5-flash",
        input_config={"instances_format": "jsonl", "gcs_source": {"uris": [uri]}},
        output_config={"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": prefix}},
        labels=labels or {})


def wait_terminal(client, name, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_batch_prediction_job(name=name)
        if job.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
                              "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
            return job
        time.sleep(0.1)
    raise AssertionError("job did not end")


def test_lifecycle_and_output_format(stack, bucket, client, vertex):
    vertex.faults(lines_per_file=3)
    lines = [{"request": {"contents": [{"role": "user", "parts": [
        {"text": "List objects in this image."},
        {"file_data": {"file_uri": "gs://cloud-samples-data/generative-ai/image/office-desk.jpeg",
                       "mime_type": "image/jpeg"}}]}], "generationConfig": {"temperature": 0.4}}}]
    lines += [{"request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]}} for i in range(6)]
    lines.append({"request": {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}})
    uri = stage(bucket, "fidelity/input.jsonl", lines)
    parent = f"projects/{stack.project}/locations/us-central1"
    job = client.create_batch_prediction_job(parent=parent, batch_prediction_job=make_job(
        stack, uri, f"gs://{bucket.name}/fidelity/out"))
    assert job.state == aiplatform_v1.JobState.JOB_STATE_QUEUED and job.name.startswith(parent)
    seen = {job.state.name}
    while job.state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        job = client.get_batch_prediction_job(name=job.name)
        seen.add(job.state.name)
        time.sleep(0.02)
    assert {"JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"} <= seen
    assert job.completion_stats.successful_count == 7 and job.completion_stats.failed_count == 1
    out_dir = job.output_info.gcs_output_directory
    assert out_dir.startswith(f"gs://{bucket.name}/fidelity/out/prediction-model-")
    files = sorted(b.name for b in bucket.list_blobs(prefix=out_dir[len(f"gs://{bucket.name}/"):]))
    assert len(files) == 3 and all(f.endswith(".jsonl") for f in files)
    rows = [orjson.loads(l) for f in files for l in bucket.blob(f).download_as_bytes().splitlines()]
    assert len(rows) == 8
    seed = next(r for r in rows if r["request"]["contents"][0]["parts"][0]["text"] == "List objects in this image.")
    # The seed notebook's documented shape: status, processed_time, the echo with null oneof siblings, response.
    assert seed["status"] == "" and seed["processed_time"]
    assert seed["request"]["contents"][0]["parts"] == [
        {"file_data": None, "text": "List objects in this image."},
        {"file_data": {"file_uri": "gs://cloud-samples-data/generative-ai/image/office-desk.jpeg",
                       "mime_type": "image/jpeg"}, "text": None}]
    assert seed["request"]["generationConfig"] == {"temperature": 0.4}
    response = seed["response"]
    assert response["candidates"][0]["finishReason"] == "STOP" and response["modelVersion"].startswith("gemini")
    assert set(response["usageMetadata"]) == {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"}
    bad = next(r for r in rows if r["status"])
    assert bad["status"].startswith("Bad Request: {") and "response" not in bad
    order = [r["request"]["contents"][0]["parts"][0]["text"] for r in rows if not r["status"]]
    assert order != sorted(order, key=lambda t: [l["request"]["contents"][0]["parts"][0]["text"] for l in lines].index(t))


def test_list_filter_paging_cancel_delete(stack, bucket, client, vertex):
    vertex.faults(queued_s=30)  # stay queued so cancel has something to cancel
    uri = stage(bucket, "fidelity/list.jsonl", [{"request": {"contents": [{"parts": [{"text": "x"}]}]}}])
    parent = f"projects/{stack.project}/locations/us-central1"
    names = [client.create_batch_prediction_job(parent=parent, batch_prediction_job=make_job(
        stack, uri, f"gs://{bucket.name}/fidelity/l{i}", labels={"suite": "paging", "n": str(i)})).name
        for i in range(5)]
    request = aiplatform_v1.ListBatchPredictionJobsRequest(parent=parent, filter='labels.suite="paging"', page_size=2)
    pager = client.list_batch_prediction_jobs(request=request)
    assert sorted(j.name for j in pager) == sorted(names)
    first_page = next(iter(client.list_batch_prediction_jobs(request=request).pages))
    assert len(first_page.batch_prediction_jobs) == 2 and first_page.next_page_token
    one = list(client.list_batch_prediction_jobs(request={"parent": parent, "filter": 'labels.suite="paging" AND labels.n="3"'}))
    assert [j.name for j in one] == [names[3]]
    client.cancel_batch_prediction_job(name=names[0])
    vertex.faults(queued_s=0.1)
    assert wait_terminal(client, names[0]).state.name == "JOB_STATE_CANCELLED"
    client.delete_batch_prediction_job(name=names[0]).result(timeout=10)
    with pytest.raises(exceptions.NotFound):
        client.get_batch_prediction_job(name=names[0])


def test_injected_faults(stack, bucket, client, vertex):
    uri = stage(bucket, "fidelity/faults.jsonl", [{"request": {"contents": [{"parts": [{"text": f"{i}"}]}]}}
                                                  for i in range(40)])
    parent = f"projects/{stack.project}/locations/us-central1"
    vertex.faults(create_errors=[429, 503])
    with pytest.raises(exceptions.TooManyRequests):
        client.create_batch_prediction_job(parent=parent, batch_prediction_job=make_job(stack, uri, "gs://x/y"))
    with pytest.raises(exceptions.ServiceUnavailable):
        client.create_batch_prediction_job(parent=parent, batch_prediction_job=make_job(stack, uri, "gs://x/y"))
    vertex.faults(fail_rate=0.5, fail_code=429, job_outcome="EXPIRED")
    job = client.create_batch_prediction_job(parent=parent, batch_prediction_job=make_job(
        stack, uri, f"gs://{bucket.name}/fidelity/faults"))
    job = wait_terminal(client, job.name)
    assert job.state.name == "JOB_STATE_EXPIRED" and "expired" in job.error.message
    assert 0 < job.completion_stats.failed_count < 40


SEED_CALLS = """
import os, time
from google.auth.credentials import AnonymousCredentials
import vertexai
from vertexai.batch_prediction import BatchPredictionJob

bucket = os.environ["DROPBATCH_BUCKET"]
vertexai.init(project=os.environ["DROPBATCH_PROJECT"], location="us-central1", api_transport="rest",
              api_endpoint=os.environ["DROPBATCH_VERTEX_ENDPOINT"], credentials=AnonymousCredentials())
job = BatchPredictionJob.submit(source_model="gemini-2.5-flash", input_dataset=f"gs://{bucket}/seed/input.jsonl",
                                output_uri_prefix=f"gs://{bucket}/seed/out")
print("state", job.state.name)
while not job.has_ended:
    time.sleep(0.2)
    job.refresh()
print("succeeded", job.has_succeeded)
print("output", job.output_location)
print("listed", job.resource_name in [j.resource_name for j in BatchPredictionJob.list()])
job.delete()
print("deleted")
"""


def test_seed_notebook_sdk_calls(stack, bucket, vertex):
    """The seed notebook's own calls: vertexai.init, BatchPredictionJob.submit, refresh, list, delete."""
    import os
    import subprocess
    import sys

    from corpus import SEED_LINE

    stage(bucket, "seed/input.jsonl", [SEED_LINE])
    env = {**os.environ, **stack.client_env()}
    out = subprocess.run([sys.executable, "-c", SEED_CALLS], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line and line.split(" ", 1)[0]
                 in ("state", "succeeded", "output", "listed"))
    assert lines["state"] == "JOB_STATE_QUEUED" and lines["succeeded"] == "True" and lines["listed"] == "True"
    assert lines["output"].startswith(f"gs://{bucket.name}/seed/out/prediction-model-")
    assert "deleted" in out.stdout
