"""The Vertex emulator's output writer: each input line answered (Responder), echoed as Vertex
echoes it, and written as prediction-model-*/ files or a BigQuery table."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import random

import orjson

from . import vertex_families
from .vertex_answers import _echo, _prompt_text
from .vertex_faults import OUTCOME_ERRORS, _share, _status_text, input_forbidden
from .vertex_judge import _request_problem
from .vertex_tables import TableWriter, _stats


# members Vertex writes back as null when unset (as seen in its output)
def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class OutputWriter(TableWriter):
    """The output half of Emulator: reading a job's input, answering it, writing its output."""

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
                    with contextlib.suppress(orjson.JSONDecodeError):
                        value = orjson.loads(value)
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
        if self.faults.input_forbidden:
            return self._finish(name, "JOB_STATE_FAILED", error=input_forbidden(uris[0]))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out_dir = f"{prefix}/prediction-model-{stamp}"
        self._set(name, outputInfo={"gcsOutputDirectory": out_dir})
        lines, total = self._answer_all(job)
        # best effort: it may still finish
        cancel_ignored = _share(self.faults.seed, "cancel", name, 1 - self.faults.cancel_wins)
        written = self._write_outputs(name, out_dir, lines, total, cancel_ignored)
        if written is None:
            return None  # forgotten (deleted behind the client's back): it writes no more
        ok, failed = written
        stats = _stats(ok, failed, max(0, total - ok - failed))
        if self._state(name) == "JOB_STATE_CANCELLING":
            if cancel_ignored and ok + failed == len({label for _, _, label in lines}):
                return self._finish(name, "JOB_STATE_SUCCEEDED", completionStats=stats)
            return self._cancelled(name, stats)
        return self._end(name, stats, ok, failed)

    def _answer_all(self, job: dict) -> tuple[list[tuple[bytes, bool, str]], int]:
        """(output line, succeeded, which request) for each request, in a shuffled order, with the
        faults' drops and duplicates; and how many requests there were."""
        f, lines, total = self.faults, [], 0
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
        return lines, total

    def _write_outputs(self, name, out_dir, lines, total, cancel_ignored) -> tuple[int, int] | None:
        """Write the output files, lines_per_file lines each, the job's stats updated as it goes;
        (succeeded, failed) requests written, or None when the job was forgotten meanwhile. A job
        whose outcome is a failure stops after partial_share of its files; a cancelled one stops
        unless the cancel is ignored."""
        f = self.faults
        per_file = max(1, f.lines_per_file)
        chunks = [lines[i : i + per_file] for i in range(0, len(lines), per_file)] or [[]]
        stop_after = (
            len(chunks)
            if f.job_outcome in ("", "PARTIALLY_SUCCEEDED")
            else int(len(chunks) * f.partial_share)
        )
        bucket, _, base = out_dir[5:].partition("/")
        done: dict[str, bool] = {}  # request -> succeeded: stats count requests, not output lines
        ok = failed = 0
        pause = f.running_s / len(chunks)
        if f.output_at_end:
            self._sleep(name, f.running_s, lambda: self.faults.output_at_end)
            pause = 0
        for i, chunk in enumerate(chunks):
            if name not in self.jobs:
                return None
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
            self._sleep(name, pause)
        return ok, failed

    def _end(self, name: str, stats: dict, ok: int, failed: int) -> None:
        """The job's end state: the faults' outcome, else succeeded unless every request failed."""
        outcome = self.faults.job_outcome
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
        if outcome in ("FAILED", "EXPIRED", "CANCELLED"):
            return self._finish(
                name,
                f"JOB_STATE_{outcome}",
                completionStats=stats,
                error=OUTCOME_ERRORS[outcome],
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
        return self._finish(
            name, state, completionStats=stats, **({"partialFailures": partial} if partial else {})
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
        response = self._gemini_response(req, label, model)
        return orjson.dumps(
            {"status": "", "processed_time": processed, "request": echo, "response": response}
        ) + b"\n", True

    def _gemini_response(self, req: dict, label: str, model: str) -> dict:
        """A GenerateContentResponse for a good request: blocked (BLOCKME), an empty finish (the
        faults' empty_finish_rate), else the responder's answer, with usage in tokens."""
        f = self.faults
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
        return response
