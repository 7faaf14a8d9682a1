"""A Vertex AI batch prediction emulator: the REST surface
aiplatform_v1.JobServiceClient(transport="rest") and the google-genai SDK (v1beta1 paths) use,
modelled on what Google documents, and on the documented worst case where the sources are silent. It
judges requests on its own (json_format.ParseDict into the real GenerateContentRequest), never with
dropbatch's validator, so that a dropbatch bug shows up as a disagreement.

Sources: the BatchPredictionJob REST reference (fields, states, label rules: keys and values at most
64 characters of lowercase letters, digits, `_` and `-`, international characters allowed), the
batch prediction pages (batch-prediction-gemini, batch-prediction-from-cloud-storage: output in
prediction-model-*/ with the request echoed, `status`, `processed_time`), the batch quotas page (a
per-project cap on concurrent jobs: extra jobs wait, they are not refused),
JobService.CancelBatchPredictionJob ("best effort": the job may still succeed; a cancelled job gets
`error` with code CANCELLED), DeleteBatchPredictionJob (a long-running operation), CompletionStats
(int64 as strings; incompleteCount: never processed), and the batch-prediction-resume page (a job
writes completed rows to its output location while it runs, and keeps them when it is cancelled or
expires). Modelled worst cases (not confirmed from a public source, so chosen to be hard on
clients): while a job runs its output appears file by file (`lines_per_file` lines each, shuffled,
completionStats updated after each); a FAILED, EXPIRED or CANCELLED job leaves partial output. A
file that grows (rewritten as a new generation with more lines, a half-written line at its end) is
not made here: the Vertex service agent may only create objects under the output prefix
(infra/iam.tf, as Google's pages grant it), and the stack refused exactly that when this emulator
tried it; the split still handles it (tests/integration/ test_incremental_split.py, against real
Cloud Storage streams); echoed float fields come back at float32 precision; failed lines use several
status shapes; list results lag behind creates when `list_lag_s` is set.

Models other than Gemini generation (embeddings, Claude, open models) are answered in their
families' shapes by vertex_families.py, whose docstring names each shape's page and what is
modelled.

Jobs walk QUEUED -> PENDING -> RUNNING -> a terminal state on a configurable clock, read their JSONL
input from GCS (STORAGE_EMULATOR_HOST) and write OUTPUT_PREFIX/prediction-model-TIMESTAMP/*.jsonl;
or read a BigQuery table's `request` column and write a BigQuery table (BIGQUERY_EMULATOR_HOST;
batch-prediction-from-bigquery: the input's columns plus `response` and `status`). Faults are set at
start (--faults JSON) or at run time (POST /_emulator/faults).

    python -m dropbatch.local.vertex_emulator --port 8090 [--responder-url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import io
import os
import random
import re
import struct
import threading
import time
import uuid

import orjson
from flask import Flask, Response, request
from google.api_core.exceptions import Forbidden

from . import vertex_families

STATES = {
    "JOB_STATE_QUEUED": 1,
    "JOB_STATE_PENDING": 2,
    "JOB_STATE_RUNNING": 3,
    "JOB_STATE_SUCCEEDED": 4,
    "JOB_STATE_FAILED": 5,
    "JOB_STATE_CANCELLING": 6,
    "JOB_STATE_CANCELLED": 7,
    "JOB_STATE_EXPIRED": 9,
    "JOB_STATE_PARTIALLY_SUCCEEDED": 11,
}
TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# members Vertex writes back as null when unset (as seen in its output)
_PART_ONEOF = ("text", "file_data")
_SNAKE = {
    "inlineData": "inline_data",
    "fileData": "file_data",
    "functionCall": "function_call",
    "functionResponse": "function_response",
    "fileUri": "file_uri",
    "mimeType": "mime_type",
    "videoMetadata": "video_metadata",
    "executableCode": "executable_code",
    "codeExecutionResult": "code_execution_result",
}
# GenerationConfig's `float` fields (google/cloud/aiplatform/v1/content.proto): echoed at float32
# precision.
_FLOAT32_FIELDS = {
    "temperature",
    "topP",
    "top_p",
    "presencePenalty",
    "presence_penalty",
    "frequencyPenalty",
    "frequency_penalty",
}
# lowercase letters, digits, _ and -, international characters allowed
_LABEL = re.compile(r"[\w-]{0,64}\Z")
_F32 = struct.Struct("<f")


@dataclasses.dataclass
class Faults:
    queued_s: float = 0.2
    pending_s: float = 0.2
    running_s: float = 0.2
    fail_rate: float = 0.0  # share of requests answered with an error status
    fail_code: int = 500  # the error those requests get (500 INTERNAL, 429 RESOURCE_EXHAUSTED, ...)
    job_outcome: str = ""  # "", FAILED, EXPIRED, CANCELLED, PARTIALLY_SUCCEEDED
    # HTTP codes for the next creates (0: none)
    create_errors: list = dataclasses.field(default_factory=list)
    duplicate_rate: float = 0.0  # share of requests written twice (Vertex has been seen doing it)
    drop_rate: float = 0.0  # share of requests with no output line at all
    lines_per_file: int = 5000
    seed: int = 7
    # per project; more jobs wait in QUEUED or PENDING (batch quotas page), never a 429
    max_running: int = 8
    cancel_s: float = 0.2  # how long a job stays CANCELLING
    # chance that a cancel ends CANCELLED; otherwise the job still SUCCEEDS
    cancel_wins: float = 1.0
    # share of output a FAILED, EXPIRED or CANCELLED job has written when it ends
    partial_share: float = 0.5
    list_lag_s: float = 0.0  # a new job is invisible to list for this long
    # the Vertex service agent may not read the input: the job FAILS (code 7)
    input_forbidden: bool = False
    # the next creates make their job, then answer 503 (a response lost on the way)
    create_lost: int = 0
    # share of answers ending MAX_TOKENS, SAFETY or RECITATION with no text
    empty_finish_rate: float = 0.0
    thinking: bool = False  # answers carry a thought part and thoughtsTokenCount

    def update(self, values: dict) -> None:
        for k, v in values.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown fault {k!r}")
            setattr(self, k, v)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _share(seed: int, what: str, label: str, rate: float) -> bool:
    """A deterministic coin: the same request gets the same fate in every run."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{what}:{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def _float32(value):
    if isinstance(value, float):
        return _F32.unpack(_F32.pack(value))[0]
    return value


def _echo(value, in_part: bool = False):
    """Re-serialize a request the way Vertex's output shows it: parts get snake_case with unset
    oneof members as null, float fields at float32 precision, keys in another order."""
    if isinstance(value, list):
        return [_echo(v, in_part) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in reversed(list(value.items())):
        if k == "parts":
            parts = v if isinstance(v, list) else [v]
            out[k] = [_echo_part(p) for p in parts]
        elif k in _FLOAT32_FIELDS:
            out[k] = _float32(v)
        else:
            out[_SNAKE.get(k, k) if in_part else k] = _echo(v, in_part)
    return out


def _echo_part(part):
    if not isinstance(part, dict):
        return part
    out = dict.fromkeys(_PART_ONEOF)
    for k, v in part.items():
        out[_SNAKE.get(k, k)] = _echo(v, in_part=True)
    return dict(sorted(out.items()))


def _status_text(code: int, message: str, shape: int = 0) -> str:
    """A failed line's `status`, in the shapes users report (tests/data/vertex-output-lines.jsonl
    says where)."""
    name = _STATUS_NAMES.get(code, "UNKNOWN")
    body = {"error": {"code": code, "message": message, "status": name}}
    kind = {
        400: "Bad Request",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(code, "Error")
    if code == 400 or shape % 4 == 0:
        return f"{kind}: " + orjson.dumps(body).decode()
    if shape % 4 == 1:
        return f"{name} error occurred: " + orjson.dumps(body).decode()
    if shape % 4 == 2:
        return orjson.dumps(body["error"]).decode()
    return "Internal error occurred." if code == 500 else f"{name}: {message}"


def _field_errors(fields: list[str]) -> str:
    """Vertex's wording for missing required fields."""
    return "List of found errors:\t" + "".join(
        f"{i}.Field: batch_prediction_job.{f}; Message: Required field is not set.\t"
        for i, f in enumerate(fields, 1)
    )


def create_problem(body: dict) -> str | None:
    """Why create refuses a job (400 INVALID_ARGUMENT), or None: required fields, label rules, the
    model."""
    missing = [
        f
        for f, ok in (
            ("display_name", body.get("displayName")),
            (
                "input_config.instances_format",
                (body.get("inputConfig") or {}).get("instancesFormat"),
            ),
            ("output_config", body.get("outputConfig")),
            (
                "output_config.predictions_format",
                (body.get("outputConfig") or {}).get("predictionsFormat"),
            ),
        )
        if not ok
    ]
    for side, fmt, key, field, path in (
        (
            "inputConfig",
            "instancesFormat",
            "bigquerySource",
            "inputUri",
            "input_config.bigquery_source.input_uri",
        ),
        (
            "outputConfig",
            "predictionsFormat",
            "bigqueryDestination",
            "outputUri",
            "output_config.bigquery_destination.output_uri",
        ),
    ):
        config = body.get(side) or {}
        if config.get(fmt) == "bigquery" and not str(
            (config.get(key) or {}).get(field, "")
        ).startswith("bq://"):
            missing.append(path)
    if missing:
        return _field_errors(missing)
    labels = body.get("labels") or {}
    if len(labels) > 64:
        return "At most 64 labels are allowed."
    for k, v in labels.items():
        if (
            not k
            or not _LABEL.match(k)
            or not _LABEL.match(str(v))
            or k != k.lower()
            or str(v) != str(v).lower()
        ):
            return (
                f"Invalid label: keys and values can be no longer than 64 characters, and can only "
                f"contain "
                f"lowercase letters, numeric characters, underscores and dashes (key {k[:70]!r})."
            )
    model = body.get("model") or ""
    if not vertex_families.MODEL.match(model):
        return (
            f"Invalid model: {str(model)[:200]}; use publishers/google/models/gemini-... "
            "(or another publisher's)"
        )
    if vertex_families.family(model) == "gemini_embedding" and "bigquery" in (
        (body.get("inputConfig") or {}).get("instancesFormat"),
        (body.get("outputConfig") or {}).get("predictionsFormat"),
    ):
        return (
            "BigQuery tables are not supported for Gemini embedding models; "
            "use JSONL files in Cloud Storage."
        )
    return None


def _prompt_text(req: dict) -> str:
    texts = []
    contents = req.get("contents") or []
    for content in contents if isinstance(contents, list) else [contents]:
        parts = content.get("parts") or [] if isinstance(content, dict) else []
        for part in parts if isinstance(parts, list) else [parts]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


class Responder:
    """Deterministic by default: the answer and the token counts follow from the prompt."""

    def __init__(self, url: str = "", model: str = "local"):
        self.url, self.model = url.rstrip("/"), model

    def answer(self, req: dict) -> str:
        config = req.get("generationConfig") or req.get("generation_config") or {}
        mime = config.get("responseMimeType") or config.get("response_mime_type")
        return self.answer_text(_prompt_text(req), as_json=mime == "application/json")

    def answer_text(self, prompt: str, as_json: bool = False) -> str:
        if self.url:
            import requests

            r = requests.post(
                f"{self.url}/chat/completions",
                timeout=300,
                json={"model": self.model, "messages": [{"role": "user", "content": prompt}]},
            )
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        if as_json:
            return orjson.dumps({"echo": prompt[:40], "digest": digest}).decode()
        return f"[{digest}] {prompt[:60]}"


class Emulator:
    def __init__(self, faults: Faults, responder: Responder):
        self.faults, self.responder = faults, responder
        self.jobs: dict[str, dict] = {}
        self.created: dict[str, float] = {}  # job -> monotonic create time (list lag)
        self.operations: dict[str, dict] = {}
        self.slots: set[str] = set()  # jobs holding one of the project's max_running slots
        self.lock = threading.Lock()
        self.calls = {"create": 0, "get": 0, "list": 0, "cancel": 0, "delete": 0, "refused": 0}
        self._storage = None
        # the stack's IAM (DROPBATCH_IAM_DIR): who may call, checked against infra/
        self.enforcer = None

    @property
    def storage(self):
        if self._storage is None:
            import google.auth
            from google.cloud import storage

            # as the Vertex AI service agent, with what infra/ grants it (the stack's credentials
            # for it)
            self._storage = storage.Client(credentials=google.auth.default()[0])
        return self._storage

    # ------------------------------------------------------------ job lifecycle

    def create(self, parent: str, body: dict) -> dict:
        job_id = str(uuid.uuid4().int)[:19]
        stamp = now_iso()
        job = {
            "name": f"{parent}/batchPredictionJobs/{job_id}",
            "displayName": body.get("displayName", ""),
            "model": body.get("model", ""),
            "inputConfig": body.get("inputConfig", {}),
            "outputConfig": body.get("outputConfig", {}),
            "labels": body.get("labels", {}),
            "state": "JOB_STATE_QUEUED",
            "createTime": stamp,
            "updateTime": stamp,
        }
        with self.lock:
            self.jobs[job["name"]] = job
            self.created[job["name"]] = time.monotonic()
        threading.Thread(target=self._run, args=(job["name"],), daemon=True).start()
        return job

    def visible(self, name: str) -> bool:
        return time.monotonic() - self.created.get(name, 0) >= self.faults.list_lag_s

    def _set(self, name: str, **fields) -> dict:
        with self.lock:
            job = self.jobs.get(name)
            if job is None:  # deleted under us: nothing to update
                return {}
            job.update(fields)
            job["updateTime"] = now_iso()
            return job

    def _state(self, name: str) -> str:
        return (self.jobs.get(name) or {}).get("state", "JOB_STATE_CANCELLED")

    def _sleep(self, name: str, seconds: float) -> None:
        """Wait out a state, but wake up at once when the job is being cancelled."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and self._state(name) != "JOB_STATE_CANCELLING":
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _take_slot(self, name: str) -> bool:
        with self.lock:
            if len(self.slots) >= self.faults.max_running:
                return False
            self.slots.add(name)
            return True

    def _run(self, name: str) -> None:
        try:
            self._lifecycle(name)
        finally:
            with self.lock:
                self.slots.discard(name)

    def _lifecycle(self, name: str) -> None:
        f = self.faults
        self._sleep(name, f.queued_s)
        while not self._take_slot(name) and self._state(name) != "JOB_STATE_CANCELLING":
            time.sleep(0.05)  # the project's cap on running jobs: wait in QUEUED
        if self._state(name) != "JOB_STATE_CANCELLING":
            self._set(name, state="JOB_STATE_PENDING")
            self._sleep(name, f.pending_s)
        if self._state(name) == "JOB_STATE_CANCELLING":
            return self._cancelled(name, None)
        self._set(name, state="JOB_STATE_RUNNING", startTime=now_iso())
        try:
            self._predict(name)
        except Forbidden as exc:  # the service agent may not read the input or write the output
            return self._finish(name, "JOB_STATE_FAILED", error={"code": 7, "message": exc.message})
        except Exception as exc:  # the job fails as Vertex's would, with the reason in `error`
            return self._finish(
                name,
                "JOB_STATE_FAILED",
                error={"code": 3, "message": f"{type(exc).__name__}: {exc}"},
            )

    def _finish(self, name: str, state: str, **fields) -> None:
        self._set(name, state=state, endTime=now_iso(), **fields)

    def _cancelled(self, name: str, stats: dict | None) -> None:
        """CANCELLING for a while, then CANCELLED with `error` (code 1, CANCELLED); or, best effort
        failing, the job still completes (when its output was all written)."""
        time.sleep(self.faults.cancel_s)
        fields = {"completionStats": stats} if stats else {}
        self._finish(
            name, "JOB_STATE_CANCELLED", error={"code": 1, "message": "CANCELED"}, **fields
        )

    def _inputs(self, job: dict):
        """(line, label, the row's other columns or None) for every input instance: the JSONL lines
        of gcsSource.uris, or the rows of bigquerySource.inputUri as {"request": ...} lines."""
        source = job["inputConfig"]
        if source.get("instancesFormat") == "bigquery":
            from google.cloud import bigquery

            uri = (source.get("bigquerySource") or {}).get("inputUri", "")
            client = bigquery.Client()
            for n, row in enumerate(client.list_rows(client.get_table(uri[5:]))):
                columns = dict(row.items())
                value = columns.get("request")
                if isinstance(value, str):  # a STRING column holds the request's JSON text
                    try:
                        value = orjson.loads(value)
                    except orjson.JSONDecodeError:
                        pass
                yield orjson.dumps({"request": value}), f"{uri}:{n}", columns
            return
        for uri in source.get("gcsSource", {}).get("uris", []):
            bucket, _, path = uri[5:].partition("/")
            # buffered: the storage client's BlobReader alone reads a line one byte per call
            with io.BufferedReader(
                self.storage.bucket(bucket).blob(path).open("rb", chunk_size=8 << 20),
                buffer_size=1 << 20,
            ) as stream:
                for n, raw in enumerate(stream):
                    if raw.strip():
                        yield raw, f"{uri}:{n}", None

    def _predict(self, name: str) -> None:
        job = self.jobs[name]
        f = self.faults
        if job["outputConfig"].get("predictionsFormat") == "bigquery":
            return self._predict_to_table(name, job)
        uris = job["inputConfig"].get("gcsSource", {}).get("uris", []) or [
            (job["inputConfig"].get("bigquerySource") or {}).get("inputUri", "")
        ]
        prefix = (
            job["outputConfig"].get("gcsDestination", {}).get("outputUriPrefix", "").rstrip("/")
        )
        if not uris[0] or not prefix.startswith("gs://"):
            raise ValueError(
                "inputConfig.gcsSource.uris and outputConfig.gcsDestination.outputUriPrefix are "
                "required"
            )
        if f.input_forbidden:
            sa = "service-PROJECT_NUMBER@gcp-sa-aiplatform.iam.gserviceaccount.com"
            return self._finish(
                name,
                "JOB_STATE_FAILED",
                error={
                    "code": 7,
                    "message": (
                        f"Failed to read {uris[0]}: {sa} does not have storage.objects.get access "
                        f"to the Google Cloud "
                        "Storage object. Permission 'storage.objects.get' denied on resource (or "
                        "it may not exist)."
                    ),
                },
            )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out_dir = f"{prefix}/prediction-model-{stamp}"
        self._set(name, outputInfo={"gcsOutputDirectory": out_dir})
        lines: list[tuple[bytes, bool, str]] = []  # (output line, succeeded, which request)
        total = 0
        for raw, label, _ in self._inputs(job):
            total += 1
            line, good = self._predict_line(raw, label, job["model"])
            # never an injected fault
            if b"BLOCKME" not in raw and _share(f.seed, "drop", label, f.drop_rate):
                continue
            lines.append((line, good, label))
            if _share(f.seed, "dup", label, f.duplicate_rate):
                lines.append((line, good, label))
        random.Random(f.seed).shuffle(lines)
        per_file = max(1, f.lines_per_file)
        chunks = [lines[i : i + per_file] for i in range(0, len(lines), per_file)] or [[]]
        outcome = f.job_outcome
        stop_after = (
            len(chunks)
            if outcome in ("", "PARTIALLY_SUCCEEDED")
            else int(len(chunks) * f.partial_share)
        )
        bucket, _, base = out_dir[5:].partition("/")
        done: dict[str, bool] = {}  # request -> succeeded: stats count requests, not output lines
        ok = failed = 0
        # best effort: it may still finish
        cancel_ignored = _share(f.seed, "cancel", name, 1 - f.cancel_wins)
        for i, chunk in enumerate(chunks):
            # forgotten (deleted behind the client's back): it writes no more
            if name not in self.jobs:
                return
            if i >= stop_after or (
                self._state(name) == "JOB_STATE_CANCELLING" and not cancel_ignored
            ):
                break
            fname = "predictions.jsonl" if i == 0 else f"predictions_{i:05d}.jsonl"
            self.storage.bucket(bucket).blob(f"{base}/{fname}").upload_from_string(
                b"".join(line for line, _, _ in chunk), content_type="application/jsonl"
            )
            done.update((label, good) for _, good, label in chunk)
            ok, failed = sum(done.values()), len(done) - sum(done.values())
            # updated while running
            self._set(name, completionStats=_stats(ok, failed, total - ok - failed))
            self._sleep(name, f.running_s / len(chunks))
        stats = _stats(ok, failed, max(0, total - ok - failed))
        partial = (
            [
                {
                    "code": 13,
                    "message": f"{failed} requests failed; see the status of each output line.",
                }
            ]
            if failed
            else []
        )
        if self._state(name) == "JOB_STATE_CANCELLING":
            if cancel_ignored and ok + failed == len({label for _, _, label in lines}):
                return self._finish(name, "JOB_STATE_SUCCEEDED", completionStats=stats)
            return self._cancelled(name, stats)
        if outcome in ("FAILED", "EXPIRED", "CANCELLED"):
            error = {
                "FAILED": {"code": 13, "message": "Emulated job outcome FAILED."},
                "EXPIRED": {
                    "code": 4,
                    "message": "Batch prediction job expired: it did not finish within 24 hours.",
                },
                "CANCELLED": {"code": 1, "message": "CANCELED"},
            }[outcome]
            return self._finish(
                name,
                f"JOB_STATE_{outcome}",
                completionStats=stats,
                error=error,
                partialFailures=partial,
            )
        if outcome == "PARTIALLY_SUCCEEDED":
            return self._finish(
                name,
                "JOB_STATE_PARTIALLY_SUCCEEDED",
                completionStats=stats,
                partialFailures=partial,
            )
        state = "JOB_STATE_SUCCEEDED" if not failed or ok else "JOB_STATE_FAILED"
        self._finish(
            name, state, completionStats=stats, **({"partialFailures": partial} if partial else {})
        )

    def _predict_to_table(self, name: str, job: dict) -> None:
        """A BigQuery destination (bigqueryDestination.outputUri: bq://PROJECT, bq://PROJECT.DATASET
        or bq://PROJECT.DATASET.TABLE, as BigQueryDestination documents it: a dataset
        prediction_<model>_<time> and a table `predictions` when not given). Each row is the input
        row's columns, `request` among them, plus `response` (JSON) for a row that succeeded and
        `status` (STRING, empty when it succeeded), as batch-prediction-from-bigquery describes the
        output table. No `processed_time`: no public source shows one in a BigQuery output."""
        from google.cloud import bigquery

        uri = (job["outputConfig"].get("bigqueryDestination") or {}).get("outputUri", "")
        names = uri[5:].split(".") if uri.startswith("bq://") else []
        if not 1 <= len(names) <= 3 or not all(names):
            raise ValueError(
                "outputConfig.bigqueryDestination.outputUri must be bq://PROJECT[.DATASET[.TABLE]]"
            )
        model = job["model"].rsplit("/", 1)[-1]
        stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%dT%H_%M_%S_%fZ")
        project, dataset, table = (
            names
            + [f"prediction_{re.sub(r'[^A-Za-z0-9_]', '_', model)}_{stamp}", "predictions"][
                len(names) - 1 :
            ]
        )[:3]
        client = bigquery.Client(project=project)
        client.create_dataset(f"{project}.{dataset}", exists_ok=True)
        self._set(
            name,
            outputInfo={
                "bigqueryOutputDataset": f"bq://{project}.{dataset}",
                "bigqueryOutputTable": table,
            },
        )
        source = job["inputConfig"]
        schema = (
            [
                f
                for f in client.get_table(source["bigquerySource"]["inputUri"][5:]).schema
                if f.name not in ("response", "status")
            ]
            if source.get("instancesFormat") == "bigquery"
            else [bigquery.SchemaField("request", "JSON")]
        )
        schema += [
            bigquery.SchemaField("response", "JSON"),
            bigquery.SchemaField("status", "STRING"),
        ]
        rows, ok, failed = [], 0, 0
        for raw, label, columns in self._inputs(job):
            line, good = self._predict_line(raw, label, job["model"])
            out = orjson.loads(line)
            rows.append(
                {
                    "request": out.get("request"),
                    **(columns or {}),
                    "response": out.get("response"),
                    "status": out.get("status") or "",
                }
            )
            ok, failed = ok + good, failed + (not good)
        # datetimes as RFC 3339
        data = b"".join(orjson.dumps(row, default=str) + b"\n" for row in rows)
        client.load_table_from_file(
            io.BytesIO(data),
            f"{project}.{dataset}.{table}",
            job_config=bigquery.LoadJobConfig(
                source_format="NEWLINE_DELIMITED_JSON",
                schema=schema,
                write_disposition="WRITE_APPEND",
            ),
        ).result(timeout=120)
        self._sleep(name, self.faults.running_s)
        stats = _stats(ok, failed, 0)
        self._finish(
            name,
            "JOB_STATE_SUCCEEDED" if ok or not failed else "JOB_STATE_FAILED",
            completionStats=stats,
        )

    def _fault(self, label: str, raw: bytes) -> tuple[int, str] | None:
        """(code, status text) when the faults make this request fail, else None (BLOCKME lines
        never do)."""
        f = self.faults
        if b"BLOCKME" in raw or not _share(f.seed, "fail", label, f.fail_rate):
            return None
        message = {
            500: "Internal error encountered.",
            429: "Resource exhausted. Please try again later.",
            503: "The service is currently unavailable.",
        }.get(f.fail_code, "Error.")
        return f.fail_code, _status_text(
            f.fail_code, message, int(hashlib.sha256(label.encode()).hexdigest()[:4], 16)
        )

    def _predict_line(self, raw: bytes, label: str, resource: str) -> tuple[bytes, bool]:
        kind = vertex_families.family(resource)
        if kind != "gemini":
            return vertex_families.predict(
                kind, raw, self.responder.answer_text, self._fault(label, raw)
            )
        f = self.faults
        model = resource.rsplit("/", 1)[-1]
        processed = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        try:
            req = orjson.loads(raw)["request"]
            if not isinstance(req, dict):
                raise ValueError
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            status = _status_text(
                400, 'Invalid JSON payload received. Each line needs a "request" object.'
            )
            return orjson.dumps(
                {"status": status, "processed_time": processed, "request": None}
            ) + b"\n", False
        echo = _echo(req)
        problem = _request_problem(req)
        # the BLOCKME marker is always answered blocked (never an injected fault), so block handling
        # tests hold
        fault = None if problem else self._fault(label, raw)
        if problem or fault:
            status = (
                _status_text(400, problem, int(hashlib.sha256(label.encode()).hexdigest()[:4], 16))
                if problem
                else fault[1]
            )
            return orjson.dumps(
                {"status": status, "processed_time": processed, "request": echo}
            ) + b"\n", False
        prompt = _prompt_text(req)
        usage = {"promptTokenCount": vertex_families.tokens(prompt)}
        response = {
            "modelVersion": f"{model}@default",
            "createTime": now_iso(),
            "responseId": hashlib.sha256(label.encode()).hexdigest()[:16],
        }
        if "BLOCKME" in prompt:
            response["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
            usage["totalTokenCount"] = usage["promptTokenCount"]
        elif _share(f.seed, "empty", label, f.empty_finish_rate):
            reason = ("MAX_TOKENS", "SAFETY", "RECITATION")[
                int(hashlib.sha256(label.encode()).hexdigest()[:2], 16) % 3
            ]
            candidate = {"finishReason": reason}
            if reason == "MAX_TOKENS":  # the budget went on thinking
                candidate["content"] = {
                    "role": "model",
                    "parts": [{"text": "Let me think", "thought": True}],
                }
                usage["thoughtsTokenCount"] = 64
            response["candidates"] = [candidate]
            usage["totalTokenCount"] = usage["promptTokenCount"] + usage.get(
                "thoughtsTokenCount", 0
            )
        else:
            text = self.responder.answer(req)
            usage["candidatesTokenCount"] = vertex_families.tokens(text)
            parts = [{"text": text}]
            if f.thinking:
                parts.insert(0, {"text": "Thinking it over.", "thought": True})
                usage["thoughtsTokenCount"] = 4
            usage["totalTokenCount"] = (
                usage["promptTokenCount"]
                + usage["candidatesTokenCount"]
                + usage.get("thoughtsTokenCount", 0)
            )
            response["candidates"] = [
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": "STOP",
                    "avgLogprobs": -0.1,
                }
            ]
        response["usageMetadata"] = usage
        return orjson.dumps(
            {"status": "", "processed_time": processed, "request": echo, "response": response}
        ) + b"\n", True


def _stats(ok: int, failed: int, incomplete: int) -> dict:
    """CompletionStats as the REST API writes them: int64 values are strings."""
    return {
        "successfulCount": str(ok),
        "failedCount": str(failed),
        "incompleteCount": str(incomplete),
    }


def _request_problem(req: dict) -> str | None:
    """Vertex's verdict on one request, judged independently of dropbatch's validator.

    The API parses the JSON into the real GenerateContentRequest, so json_format.ParseDict does
    here. Vertex also takes `contents` and `parts` given as one object (the batch docs' own sample
    writes `"parts": {"text": ...}`:
    cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage),
    and refuses roles other than user and model ("Please use a valid role: user, model.").
    """
    from google.cloud.aiplatform_v1.types import GenerateContentRequest
    from google.protobuf import json_format

    req = dict(req)
    contents = req.get("contents")
    req["contents"] = [
        dict(c) if isinstance(c, dict) else c
        for c in (contents if isinstance(contents, list) else [contents] if contents else [])
    ]
    for name in ("systemInstruction", "system_instruction"):
        if isinstance(req.get(name), dict):
            req[name] = dict(req[name])
    for content in req["contents"] + [req.get("systemInstruction"), req.get("system_instruction")]:
        if isinstance(content, dict):
            if isinstance(content.get("parts"), dict):
                content["parts"] = [content["parts"]]
            if content in req["contents"] and content.get("role") not in (
                None,
                "",
                "user",
                "model",
            ):
                return "Please use a valid role: user, model."
    try:
        json_format.ParseDict(req, GenerateContentRequest.pb(GenerateContentRequest()))
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        return f"Invalid JSON payload received. {str(exc)[:300]}"
    if not req["contents"]:
        return "Unable to submit request because it has an empty contents field."
    return None


# ---------------------------------------------------------------- HTTP surface

JOBS = "/<version>/projects/<project>/locations/<location>/batchPredictionJobs"
# The permission each route needs (https://cloud.google.com/vertex-ai/docs/general/access-control);
# jobs inherit their project's policy (batch jobs have no IAM policy of their own).
PERMISSIONS = {
    "create": "aiplatform.batchPredictionJobs.create",
    "list_jobs": "aiplatform.batchPredictionJobs.list",
    "get": "aiplatform.batchPredictionJobs.get",
    "cancel": "aiplatform.batchPredictionJobs.cancel",
    "delete": "aiplatform.batchPredictionJobs.delete",
    "operation": "aiplatform.batchPredictionJobs.get",
}


def out(obj, status: int = 200) -> Response:
    """A JSON answer (with int enums when the client asks for them, as the REST transport does)."""
    if request.args.get("$alt", "").find("enum-encoding=int") >= 0:
        obj = _int_enums(obj)
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def error(code: int, message: str, status: str | None = None) -> Response:
    """An error as Google APIs give it: a google.rpc.Status under "error"."""
    return Response(
        orjson.dumps(
            {
                "error": {
                    "code": code,
                    "message": message,
                    "status": status or _STATUS_NAMES.get(code, "UNKNOWN"),
                }
            }
        ),
        status=code,
        mimetype="application/json",
    )


def job_name(project, location, job_id):
    return f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}"


def create_app(emulator: Emulator) -> Flask:
    """The JobService's REST surface for batch prediction jobs, and the test hooks
    (add_test_hooks)."""
    app = Flask("vertex_emulator")

    @app.url_value_preprocessor
    def versions(endpoint, values):  # aiplatform_v1 uses /v1, the google-genai SDK /v1beta1
        if values and values.get("version", "v1") not in ("v1", "v1beta1"):
            from werkzeug.exceptions import NotFound

            raise NotFound()

    @app.before_request
    def authorize():
        """Who calls, and may they: aiplatform.batchPredictionJobs.* on the project's location or
        the job, as infra/ grants them (Vertex AI's 401 and 403 bodies: google.rpc.Status,
        https://cloud.google.com/apis/design/errors)."""
        permission = PERMISSIONS.get(request.endpoint)
        if emulator.enforcer is None or permission is None:
            return None
        values = request.view_args or {}
        resource = f"projects/{values['project']}/locations/{values['location']}"
        if "job_id" in values:
            resource = job_name(values["project"], values["location"], values["job_id"])
        principal = emulator.enforcer.principal(request.headers)
        if principal is None:
            return error(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
            )
        if not emulator.enforcer.policy.allowed(principal, permission, resource):
            app.logger.warning("refused %s to %s", permission, principal)
            emulator.calls["refused"] += 1
            return error(
                403,
                f"Permission '{permission}' denied on resource '//aiplatform.googleapis.com/"
                f"{resource}' (or it may not exist).",
                "PERMISSION_DENIED",
            )
        return None

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

    add_test_hooks(app, emulator)
    return app


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


def _int_enums(obj):
    if isinstance(obj, list):
        return [_int_enums(v) for v in obj]
    if isinstance(obj, dict):
        return {k: STATES.get(v, v) if k == "state" else _int_enums(v) for k, v in obj.items()}
    return obj


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--responder-url", default="", help="an OpenAI-compatible endpoint for real answers"
    )
    parser.add_argument("--responder-model", default="local")
    parser.add_argument(
        "--faults", default="{}", help='JSON, e.g. {"fail_rate": 0.1, "queued_s": 1}'
    )
    args = parser.parse_args(argv)
    faults = Faults()
    faults.update(orjson.loads(args.faults))
    emulator = Emulator(faults, Responder(args.responder_url, args.responder_model))
    if os.environ.get("DROPBATCH_IAM_DIR"):
        from .iam import Enforcer

        emulator.enforcer = Enforcer(os.environ["DROPBATCH_IAM_DIR"])
    app = create_app(emulator)
    from werkzeug.serving import make_server

    make_server(args.host, args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
