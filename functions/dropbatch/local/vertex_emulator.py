"""A Vertex AI batch prediction emulator: the REST surface aiplatform_v1.JobServiceClient(transport="rest") uses.

Jobs walk QUEUED -> PENDING -> RUNNING -> a terminal state on a configurable clock, read their JSONL input
from GCS (STORAGE_EMULATOR_HOST), and write OUTPUT_PREFIX/prediction-model-TIMESTAMP/*.jsonl in Vertex's
format: the request echoed re-serialized (oneof siblings as null), `status`, `processed_time`, `response`;
lines shuffled, several files past a size. Faults are set at start (--faults JSON) or at run time
(POST /_emulator/faults): per-request failure rate, a job outcome, errors on the first N creates, slow states.

    python -m dropbatch.local.vertex_emulator --port 8090 [--responder-url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import random
import threading
import time
import uuid

import orjson
from flask import Flask, Response, request

STATES = {"JOB_STATE_QUEUED": 1, "JOB_STATE_PENDING": 2, "JOB_STATE_RUNNING": 3, "JOB_STATE_SUCCEEDED": 4,
          "JOB_STATE_FAILED": 5, "JOB_STATE_CANCELLING": 6, "JOB_STATE_CANCELLED": 7, "JOB_STATE_EXPIRED": 9,
          "JOB_STATE_PARTIALLY_SUCCEEDED": 11}
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
            "JOB_STATE_PARTIALLY_SUCCEEDED"}
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_PART_ONEOF = ("text", "file_data")  # members Vertex writes back as null when unset (as seen in its output)
_SNAKE = {"inlineData": "inline_data", "fileData": "file_data", "functionCall": "function_call",
          "functionResponse": "function_response", "fileUri": "file_uri", "mimeType": "mime_type",
          "videoMetadata": "video_metadata", "executableCode": "executable_code",
          "codeExecutionResult": "code_execution_result"}


@dataclasses.dataclass
class Faults:
    queued_s: float = 0.2
    pending_s: float = 0.2
    running_s: float = 0.2
    fail_rate: float = 0.0  # share of requests answered with an error status
    fail_code: int = 500  # the error those requests get (500 INTERNAL, 429 RESOURCE_EXHAUSTED, ...)
    job_outcome: str = ""  # "", FAILED, EXPIRED, CANCELLED, PARTIALLY_SUCCEEDED
    create_errors: list = dataclasses.field(default_factory=list)  # HTTP codes for the next creates, in order
    duplicate_rate: float = 0.0  # share of requests written twice (Vertex has been seen doing it)
    drop_rate: float = 0.0  # share of requests with no output line at all
    lines_per_file: int = 5000
    seed: int = 7

    def update(self, values: dict) -> None:
        for k, v in values.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown fault {k!r}")
            setattr(self, k, v)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _share(seed: int, what: str, label: str, rate: float) -> bool:
    """A deterministic coin: the same request gets the same fate in every run."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{what}:{label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def _echo(value, in_part: bool = False):
    """Re-serialize a request the way Vertex's output shows it: parts get snake_case, unset oneof as null."""
    if isinstance(value, list):
        return [_echo(v, in_part) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k == "parts":
            parts = v if isinstance(v, list) else [v]
            out[k] = [_echo_part(p) for p in parts]
        else:
            out[_SNAKE.get(k, k) if in_part else k] = _echo(v, in_part)
    return out


def _echo_part(part):
    if not isinstance(part, dict):
        return part
    out = {name: None for name in _PART_ONEOF}
    for k, v in part.items():
        out[_SNAKE.get(k, k)] = _echo(v, in_part=True)
    return dict(sorted(out.items()))


def _prompt_text(req: dict) -> str:
    texts = []
    contents = req.get("contents") or []
    for content in contents if isinstance(contents, list) else [contents]:
        parts = content.get("parts") or [] if isinstance(content, dict) else []
        for part in parts if isinstance(parts, list) else [parts]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class Responder:
    """Deterministic by default: the answer and the token counts follow from the prompt."""

    def __init__(self, url: str = "", model: str = "local"):
        self.url, self.model = url.rstrip("/"), model

    def answer(self, req: dict) -> str:
        prompt = _prompt_text(req)
        if self.url:
            import requests

            r = requests.post(f"{self.url}/chat/completions", timeout=300, json={
                "model": self.model, "messages": [{"role": "user", "content": prompt}]})
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]
        config = req.get("generationConfig") or req.get("generation_config") or {}
        mime = config.get("responseMimeType") or config.get("response_mime_type")
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        if mime == "application/json":
            return orjson.dumps({"echo": prompt[:40], "digest": digest}).decode()
        return f"[{digest}] {prompt[:60]}"


class Emulator:
    def __init__(self, faults: Faults, responder: Responder):
        self.faults, self.responder = faults, responder
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.calls = {"create": 0, "get": 0, "list": 0, "cancel": 0, "delete": 0}
        self._storage = None

    @property
    def storage(self):
        if self._storage is None:
            from google.cloud import storage

            self._storage = storage.Client()
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
            "createTime": stamp, "updateTime": stamp,
        }
        with self.lock:
            self.jobs[job["name"]] = job
        threading.Thread(target=self._run, args=(job["name"],), daemon=True).start()
        return job

    def _set(self, name: str, **fields) -> dict:
        with self.lock:
            job = self.jobs[name]
            job.update(fields)
            job["updateTime"] = now_iso()
            return job

    def _sleep(self, name: str, seconds: float) -> None:
        """Wait out a state, but wake up at once when the job is cancelled."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._cancelled(name):
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _cancelled(self, name: str) -> bool:
        return self.jobs[name]["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")

    def _run(self, name: str) -> None:
        f = self.faults
        for state, wait in (("JOB_STATE_PENDING", f.queued_s), ("JOB_STATE_RUNNING", f.pending_s)):
            self._sleep(name, wait)
            if self._cancelled(name):
                return self._finish(name, "JOB_STATE_CANCELLED")
            self._set(name, state=state, **({"startTime": now_iso()} if state == "JOB_STATE_RUNNING" else {}))
        try:
            stats = self._predict(name)
        except Exception as exc:  # the job fails as Vertex's would, with the reason in `error`
            return self._finish(name, "JOB_STATE_FAILED", error={"code": 3, "message": f"{type(exc).__name__}: {exc}"})
        self._sleep(name, f.running_s)
        if self._cancelled(name):
            return self._finish(name, "JOB_STATE_CANCELLED", completionStats=stats)
        outcome = f.job_outcome
        if outcome:
            error = {"code": 13, "message": f"Emulated job outcome {outcome}."} if outcome != "PARTIALLY_SUCCEEDED" \
                else None
            if outcome == "EXPIRED":
                error = {"code": 4, "message": "Batch prediction job expired: it did not finish within 24 hours."}
            return self._finish(name, f"JOB_STATE_{outcome}", completionStats=stats,
                                **({"error": error} if error else {}))
        failed = int(stats["failedCount"])
        state = "JOB_STATE_SUCCEEDED" if not failed or int(stats["successfulCount"]) else "JOB_STATE_FAILED"
        self._finish(name, state, completionStats=stats)

    def _finish(self, name: str, state: str, **fields) -> None:
        self._set(name, state=state, endTime=now_iso(), **fields)

    def _predict(self, name: str) -> dict:
        job = self.jobs[name]
        f = self.faults
        uris = job["inputConfig"].get("gcsSource", {}).get("uris", [])
        prefix = job["outputConfig"].get("gcsDestination", {}).get("outputUriPrefix", "").rstrip("/")
        if not uris or not prefix.startswith("gs://"):
            raise ValueError("inputConfig.gcsSource.uris and outputConfig.gcsDestination.outputUriPrefix are required")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out_dir = f"{prefix}/prediction-model-{stamp}"
        lines: list[bytes] = []
        ok = failed = 0
        model = job["model"].rsplit("/", 1)[-1]
        for uri in uris:
            bucket, _, path = uri[5:].partition("/")
            with self.storage.bucket(bucket).blob(path).open("rb") as stream:
                for n, raw in enumerate(stream):
                    if not raw.strip():
                        continue
                    label = f"{uri}:{n}"
                    line, good = self._predict_line(raw, label, model)
                    if _share(f.seed, "drop", label, f.drop_rate):
                        continue
                    lines.append(line)
                    ok, failed = ok + good, failed + (not good)
                    if _share(f.seed, "dup", label, f.duplicate_rate):
                        lines.append(line)
        random.Random(f.seed).shuffle(lines)
        bucket, _, base = out_dir[5:].partition("/")
        per_file = max(1, f.lines_per_file)
        for i in range(0, max(len(lines), 1), per_file):
            fname = "predictions.jsonl" if i == 0 else f"predictions_{i // per_file:05d}.jsonl"
            self.storage.bucket(bucket).blob(f"{base}/{fname}").upload_from_string(
                b"".join(lines[i:i + per_file]), content_type="application/jsonl")
        self._set(name, outputInfo={"gcsOutputDirectory": out_dir})
        return {"successfulCount": str(ok), "failedCount": str(failed), "incompleteCount": "0"}

    def _predict_line(self, raw: bytes, label: str, model: str) -> tuple[bytes, bool]:
        f = self.faults
        processed = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        try:
            req = orjson.loads(raw)["request"]
            if not isinstance(req, dict):
                raise ValueError
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            status = _status_text(400, "Invalid JSON payload received. Each line needs a \"request\" object.")
            return orjson.dumps({"status": status, "processed_time": processed, "request": None}) + b"\n", False
        echo = _echo(req)
        problem = _request_problem(req)
        if problem or _share(f.seed, "fail", label, f.fail_rate):
            code = 400 if problem else f.fail_code
            message = problem or {500: "Internal error encountered.", 429: "Resource exhausted. Please try again "
                                  "later.", 503: "The service is currently unavailable."}.get(code, "Error.")
            return orjson.dumps({"status": _status_text(code, message), "processed_time": processed,
                                 "request": echo}) + b"\n", False
        prompt = _prompt_text(req)
        usage = {"promptTokenCount": _tokens(prompt)}
        response = {"modelVersion": f"{model}@default", "createTime": now_iso(),
                    "responseId": hashlib.sha256(label.encode()).hexdigest()[:16]}
        if "BLOCKME" in prompt:
            response["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
            usage["totalTokenCount"] = usage["promptTokenCount"]
        else:
            text = self.responder.answer(req)
            usage["candidatesTokenCount"] = _tokens(text)
            usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
            response["candidates"] = [{"content": {"role": "model", "parts": [{"text": text}]},
                                       "finishReason": "STOP", "avgLogprobs": -0.1}]
        response["usageMetadata"] = usage
        return orjson.dumps({"status": "", "processed_time": processed, "request": echo,
                             "response": response}) + b"\n", True


def _status_text(code: int, message: str) -> str:
    kind = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}.get(code, "Error")
    return f"{kind}: " + orjson.dumps({"error": {"code": code, "message": message,
                                                 "status": _STATUS_NAMES.get(code, "UNKNOWN")}}).decode()


def _request_problem(req: dict) -> str | None:
    """Vertex's verdict on one request, judged independently of dropbatch's validator.

    The API parses the JSON into the real GenerateContentRequest, so json_format.ParseDict does here. Vertex
    also takes `contents` and `parts` given as one object (the batch docs' own sample writes
    `"parts": {"text": ...}`: cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage),
    and refuses roles other than user and model ("Please use a valid role: user, model.").
    """
    from google.cloud.aiplatform_v1.types import GenerateContentRequest
    from google.protobuf import json_format

    req = dict(req)
    contents = req.get("contents")
    req["contents"] = [dict(c) if isinstance(c, dict) else c
                       for c in (contents if isinstance(contents, list) else [contents] if contents else [])]
    for name in ("systemInstruction", "system_instruction"):
        if isinstance(req.get(name), dict):
            req[name] = dict(req[name])
    for content in req["contents"] + [req.get("systemInstruction"), req.get("system_instruction")]:
        if isinstance(content, dict):
            if isinstance(content.get("parts"), dict):
                content["parts"] = [content["parts"]]
            if content in req["contents"] and content.get("role") not in (None, "", "user", "model"):
                return "Please use a valid role: user, model."
    try:
        json_format.ParseDict(req, GenerateContentRequest.pb(GenerateContentRequest()))
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        return f"Invalid JSON payload received. {str(exc)[:300]}"
    if not req["contents"]:
        return "Unable to submit request because it has an empty contents field."
    return None


# ---------------------------------------------------------------- HTTP surface

def create_app(emulator: Emulator) -> Flask:
    app = Flask("vertex_emulator")

    def out(obj, status: int = 200) -> Response:
        if request.args.get("$alt", "").find("enum-encoding=int") >= 0:
            obj = _int_enums(obj)
        return Response(orjson.dumps(obj), status=status, mimetype="application/json")

    def error(code: int, message: str) -> Response:
        return Response(orjson.dumps({"error": {"code": code, "message": message,
                                                "status": _STATUS_NAMES.get(code, "UNKNOWN")}}),
                        status=code, mimetype="application/json")

    @app.post("/v1/projects/<project>/locations/<location>/batchPredictionJobs")
    def create(project, location):
        emulator.calls["create"] += 1
        with emulator.lock:
            injected = emulator.faults.create_errors.pop(0) if emulator.faults.create_errors else None
        if injected:
            return error(int(injected), "Emulated fault on create.")
        body = request.get_json(force=True, silent=True) or {}
        if not body.get("model") or not body.get("inputConfig"):
            return error(400, "model and inputConfig are required.")
        return out(emulator.create(f"projects/{project}/locations/{location}", body))

    @app.get("/v1/projects/<project>/locations/<location>/batchPredictionJobs")
    def list_jobs(project, location):
        emulator.calls["list"] += 1
        parent = f"projects/{project}/locations/{location}/"
        try:
            match = _parse_filter(request.args.get("filter", ""))
        except ValueError as exc:
            return error(400, str(exc))
        with emulator.lock:
            jobs = [dict(j) for n, j in sorted(emulator.jobs.items()) if n.startswith(parent) and match(j)]
        size = int(request.args.get("pageSize") or 100)
        start = int(request.args.get("pageToken") or 0)
        page = {"batchPredictionJobs": jobs[start:start + size]}
        if start + size < len(jobs):
            page["nextPageToken"] = str(start + size)
        return out(page)

    @app.get("/v1/projects/<project>/locations/<location>/batchPredictionJobs/<job_id>")
    def get(project, location, job_id):
        emulator.calls["get"] += 1
        job = emulator.jobs.get(f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}")
        return out(dict(job)) if job else error(404, f"BatchPredictionJob {job_id} not found.")

    @app.post("/v1/projects/<project>/locations/<location>/batchPredictionJobs/<job_id>:cancel")
    def cancel(project, location, job_id):
        emulator.calls["cancel"] += 1
        name = f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}"
        job = emulator.jobs.get(name)
        if not job:
            return error(404, f"BatchPredictionJob {job_id} not found.")
        if job["state"] in TERMINAL:
            return error(400, f"BatchPredictionJob {job_id} is already in state {job['state']}.")
        emulator._set(name, state="JOB_STATE_CANCELLING")
        return out({})

    @app.delete("/v1/projects/<project>/locations/<location>/batchPredictionJobs/<job_id>")
    def delete(project, location, job_id):
        emulator.calls["delete"] += 1
        name = f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}"
        with emulator.lock:
            job = emulator.jobs.pop(name, None)
        if not job:
            return error(404, f"BatchPredictionJob {job_id} not found.")
        return out({"name": f"{name}/operations/{uuid.uuid4().int % 10**18}", "done": True,
                    "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                                 "genericMetadata": {"createTime": now_iso(), "updateTime": now_iso()}},
                    "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}})

    @app.get("/_emulator/health")
    def health():
        return out({"ok": True})

    @app.get("/_emulator/stats")
    def stats():
        return out({"calls": emulator.calls, "jobs": len(emulator.jobs), "faults": dataclasses.asdict(emulator.faults)})

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

    return app


def _int_enums(obj):
    if isinstance(obj, list):
        return [_int_enums(v) for v in obj]
    if isinstance(obj, dict):
        return {k: STATES.get(v, v) if k == "state" else _int_enums(v) for k, v in obj.items()}
    return obj


def _parse_filter(text: str):
    """The subset of AIP-160 filters clients use here: labels.K=V, state=S, display_name=N joined by AND."""
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
    parser.add_argument("--responder-url", default="", help="an OpenAI-compatible endpoint for real answers")
    parser.add_argument("--responder-model", default="local")
    parser.add_argument("--faults", default="{}", help='JSON, e.g. {"fail_rate": 0.1, "queued_s": 1}')
    args = parser.parse_args(argv)
    faults = Faults()
    faults.update(orjson.loads(args.faults))
    app = create_app(Emulator(faults, Responder(args.responder_url, args.responder_model)))
    from werkzeug.serving import make_server

    make_server(args.host, args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
