"""The Vertex emulator's REST conventions: the jobs' path, JSON bodies, and errors as
google.rpc.Status (https://cloud.google.com/apis/design/errors)."""

from __future__ import annotations

import orjson
from flask import Response, request

from .vertex_faults import _STATUS_NAMES
from .vertex_jobs import STATES

JOBS = "/<version>/projects/<project>/locations/<location>/batchPredictionJobs"


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


def _int_enums(obj):
    if isinstance(obj, list):
        return [_int_enums(v) for v in obj]
    if isinstance(obj, dict):
        return {k: STATES.get(v, v) if k == "state" else _int_enums(v) for k, v in obj.items()}
    return obj
