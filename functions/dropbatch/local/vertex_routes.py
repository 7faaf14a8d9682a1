"""The Vertex emulator's REST surface: the JobService routes for batch prediction jobs (v1 and
v1beta1) and the tests' hooks under /_emulator/."""

from __future__ import annotations

import dataclasses
import uuid

from flask import Flask, request

from .vertex_answers import _prompt_text
from .vertex_auth import add_authorization
from .vertex_families import tokens
from .vertex_faults import Faults
from .vertex_jobs import STATES, TERMINAL, Emulator
from .vertex_judge import create_problem
from .vertex_output import now_iso
from .vertex_rest import JOBS, error, job_name, out


def create_app(emulator: Emulator) -> Flask:
    """The JobService's REST surface for batch prediction jobs, and the test hooks
    (add_test_hooks)."""
    app = Flask("vertex_emulator")

    @app.url_value_preprocessor
    def versions(endpoint, values):  # aiplatform_v1 uses /v1, the google-genai SDK /v1beta1
        if values and values.get("version", "v1") not in ("v1", "v1beta1"):
            from werkzeug.exceptions import NotFound

            raise NotFound()

    add_authorization(app, emulator)

    @app.post(JOBS)
    def create(version, project, location):
        emulator.calls["create"] += 1
        with emulator.lock:
            injected = (
                emulator.faults.create_errors.pop(0) if emulator.faults.create_errors else None
            )
        if injected:
            if int(injected) == 429:
                return error(
                    429,
                    "Quota exceeded for aiplatform.googleapis.com/batch_prediction_jobs.",
                )
            return error(int(injected), "Emulated fault on create.")
        body = request.get_json(force=True, silent=True) or {}
        problem = create_problem(body)
        if problem:
            return error(400, problem)
        job = emulator.create(f"projects/{project}/locations/{location}", body)
        with emulator.lock:
            lost = emulator.faults.create_lost > 0
            emulator.faults.create_lost -= lost
        return error(503, "The service is currently unavailable.") if lost else out(job)

    add_reading_routes(app, emulator)
    add_ending_routes(app, emulator)
    add_token_routes(app, emulator)
    add_test_hooks(app, emulator)
    return app


def add_token_routes(app: Flask, emulator: Emulator) -> None:
    """LlmUtilityService.CountTokens on a publisher model (the REST reference's
    projects.locations.publishers.models.countTokens): totalTokens as the emulator's batch answers
    count promptTokenCount (about 4 characters a token, text parts only)."""

    @app.post(
        "/<version>/projects/<project>/locations/<location>/publishers/<publisher>/models/"
        "<model>:countTokens"
    )
    def count_tokens(version, project, location, publisher, model):
        emulator.calls["count_tokens"] += 1
        body = request.get_json(force=True, silent=True) or {}
        if not isinstance(body.get("contents"), list) or not body["contents"]:
            return error(400, "Invalid request: contents must not be empty.")
        text = _prompt_text(body)
        return out({"totalTokens": tokens(text), "totalBillableCharacters": len(text)})


def add_reading_routes(app: Flask, emulator: Emulator) -> None:
    """list (with its filter and pages) and get."""

    @app.get(JOBS)
    def list_jobs(version, project, location):
        emulator.calls["list"] += 1
        parent = f"projects/{project}/locations/{location}/"
        try:
            match = _parse_filter(request.args.get("filter", ""))
        except ValueError as exc:
            return error(400, str(exc))
        with emulator.lock:
            jobs = [
                dict(j)
                for n, j in sorted(emulator.jobs.items())
                if n.startswith(parent) and emulator.visible(n) and match(j)
            ]
        size = int(request.args.get("pageSize") or 100)
        start = int(request.args.get("pageToken") or 0)
        page = {"batchPredictionJobs": jobs[start : start + size]}
        if start + size < len(jobs):
            page["nextPageToken"] = str(start + size)
        return out(page)

    @app.get(f"{JOBS}/<job_id>")
    def get(version, project, location, job_id):
        emulator.calls["get"] += 1
        job = emulator.jobs.get(job_name(project, location, job_id))
        return out(dict(job)) if job else error(404, f"BatchPredictionJob {job_id} not found.")


def add_ending_routes(app: Flask, emulator: Emulator) -> None:
    """Cancel, delete and the delete's long-running operation."""

    @app.post(f"{JOBS}/<job_id>:cancel")
    def cancel(version, project, location, job_id):
        emulator.calls["cancel"] += 1
        name = job_name(project, location, job_id)
        job = emulator.jobs.get(name)
        if not job:
            return error(404, f"BatchPredictionJob {job_id} not found.")
        if job["state"] in TERMINAL:
            return error(
                400,
                f"BatchPredictionJob {job_id} is already in state {job['state']}.",
                "FAILED_PRECONDITION",
            )
        emulator._set(name, state="JOB_STATE_CANCELLING")  # asynchronous and best effort
        return out({})

    @app.delete(f"{JOBS}/<job_id>")
    def delete(version, project, location, job_id):
        emulator.calls["delete"] += 1
        name = job_name(project, location, job_id)
        with emulator.lock:
            job = emulator.jobs.get(name)
            if job and job["state"] not in TERMINAL:
                return error(
                    400,
                    f"The BatchPredictionJob {job_id} is in state {job['state']}; only ended jobs "
                    "can be deleted. Cancel it first.",
                    "FAILED_PRECONDITION",
                )
            emulator.jobs.pop(name, None)
        if not job:
            return error(404, f"BatchPredictionJob {job_id} not found.")
        op = {
            "name": f"{name}/operations/{uuid.uuid4().int % 10**18}",
            "done": True,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                "genericMetadata": {"createTime": now_iso(), "updateTime": now_iso()},
            },
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }
        emulator.operations[op["name"]] = op
        return out(op)

    @app.get(f"{JOBS}/<job_id>/operations/<op_id>")
    def operation(version, project, location, job_id, op_id):
        op = emulator.operations.get(f"{job_name(project, location, job_id)}/operations/{op_id}")
        return out(op) if op else error(404, f"Operation {op_id} not found.")


def add_test_hooks(app: Flask, emulator: Emulator) -> None:
    """/_emulator/...: the tests' handles on the twin (health, call counts, faults, a job that
    vanishes)."""

    @app.post("/_emulator/jobs/<job_id>:forget")
    def forget(job_id):
        """Test hook: a job that disappears behind the client's back (deleted by someone else, a
        wiped project)."""
        with emulator.lock:
            gone = [n for n in emulator.jobs if n.endswith(f"/batchPredictionJobs/{job_id}")]
            for n in gone:
                emulator.jobs.pop(n)
        return out({"forgotten": len(gone)})

    @app.get("/_emulator/health")
    def health():
        return out({"ok": True})

    @app.get("/_emulator/stats")
    def stats():
        return out(
            {
                "calls": emulator.calls,
                "jobs": len(emulator.jobs),
                "faults": dataclasses.asdict(emulator.faults),
            }
        )

    @app.post("/_emulator/faults")
    def set_faults():
        try:
            emulator.faults.update(request.get_json(force=True) or {})
        except ValueError as exc:
            return error(400, str(exc))
        return out(dataclasses.asdict(emulator.faults))

    @app.post("/_emulator/reset")
    def reset():
        emulator.faults = Faults()
        for k in emulator.calls:
            emulator.calls[k] = 0
        return out(dataclasses.asdict(emulator.faults))


def _parse_filter(text: str):
    """The subset of AIP-160 filters clients use here: labels.K=V, state=S, display_name=N joined by
    AND."""
    terms = []
    for term in filter(None, (t.strip() for t in text.replace(" and ", " AND ").split(" AND "))):
        key, sep, value = term.partition("=")
        if not sep:
            raise ValueError(f"Unsupported filter term {term!r}.")
        key, value = key.strip(), value.strip().strip('"')
        terms.append((key, value))

    def match(job: dict) -> bool:
        for key, value in terms:
            if key.startswith("labels."):
                if job.get("labels", {}).get(key[7:]) != value:
                    return False
            elif key == "state":
                if job["state"] != value and str(STATES.get(job["state"])) != value:
                    return False
            elif key in ("display_name", "displayName"):
                if job.get("displayName") != value:
                    return False
            else:
                raise ValueError(f"Unsupported filter field {key!r}.")
        return True

    for key, _ in terms:
        if not (key.startswith("labels.") or key in ("state", "display_name", "displayName")):
            raise ValueError(f"Unsupported filter field {key!r}.")
    return match
