"""The Vertex emulator's judgement of a create request and of each input line, on its own
(json_format.ParseDict into the real GenerateContentRequest), never with dropbatch's checks."""

from __future__ import annotations

import re

from . import vertex_families

# lowercase letters, digits, _ and -, international characters allowed
_LABEL = re.compile(r"[\w-]{0,64}\Z")


def _field_errors(fields: list[str]) -> str:
    """Vertex's wording for missing required fields."""
    return "List of found errors:\t" + "".join(
        f"{i}.Field: batch_prediction_job.{f}; Message: Required field is not set.\t"
        for i, f in enumerate(fields, 1)
    )


def create_problem(body: dict) -> str | None:
    """Why create refuses a job (400 INVALID_ARGUMENT), or None: required fields, label rules, the
    model."""
    missing = _missing_fields(body)
    if missing:
        return _field_errors(missing)
    problem = _label_problem(body.get("labels") or {})
    if problem:
        return problem
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


def _missing_fields(body: dict) -> list[str]:
    """The required fields a create body lacks (a BigQuery side needs its bq:// URI)."""
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
    return missing


def _label_problem(labels: dict) -> str | None:
    """Why a job's labels are refused, or None (at most 64; lowercase keys and values)."""
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
    return None


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
