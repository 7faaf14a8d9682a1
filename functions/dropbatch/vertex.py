"""Vertex AI batch jobs through aiplatform_v1.JobServiceClient: create once (found again by label),
get, cancel."""

from __future__ import annotations

import functools

import orjson

from . import families
from .config import Config
from .errors import PermanentError, TransientError, denied

# Job labels: keys without `-` (a `-` in an AIP-160 list filter is not a plain name character).
BATCH_LABEL = "dropbatch_batch"
PART_LABEL = "dropbatch_part"


@functools.cache
def _service(name: str, endpoint: str, location: str):
    """An aiplatform_v1 client (JobServiceClient, LlmUtilityServiceClient) for the endpoint: the
    local emulator over plain HTTP with the default credentials, else Vertex AI over gRPC."""
    from google.cloud import aiplatform_v1

    cls = getattr(aiplatform_v1, name)
    if endpoint.startswith("http://"):
        return cls(transport="rest", client_options={"api_endpoint": endpoint})
    return cls(client_options={"api_endpoint": endpoint or api_endpoint(location)})


def count_tokens(config: Config, model: str, request: dict, timeout: float = 10.0) -> int:
    """A Gemini request's input tokens as Vertex counts them: countTokens on the publisher model
    (POST v1/{endpoint=projects/*/locations/*/publishers/*/models/*}:countTokens, the REST
    reference's projects.locations.publishers.models.countTokens), with its contents, system
    instruction and tools; permission aiplatform.endpoints.predict."""
    from google.cloud import aiplatform_v1

    name = families.resource_name(model, config.project, config.location)
    fields = {k: request[k] for k in ("contents", "systemInstruction", "tools") if k in request}
    body = aiplatform_v1.CountTokensRequest.from_json(
        orjson.dumps({"endpoint": name, "model": name, **fields}), ignore_unknown_fields=True
    )
    client = _service("LlmUtilityServiceClient", config.vertex_endpoint, config.location)
    return int(_call(client.count_tokens, request=body, timeout=timeout).total_tokens)


def api_endpoint(location: str) -> str:
    """Vertex AI's host for a location: the global endpoint has no region prefix
    (https://cloud.google.com/vertex-ai/generative-ai/docs/learn/locations#global-endpoint); a
    region's is REGION-aiplatform.googleapis.com."""
    return (
        "aiplatform.googleapis.com"
        if location == "global"
        else f"{location}-aiplatform.googleapis.com"
    )


def client(config: Config):
    return _service("JobServiceClient", config.vertex_endpoint, config.location)


def _call(fn, *args, **kwargs):
    """Run a client call; 429/5xx/timeouts become TransientError, other API errors
    PermanentError."""
    from google.api_core import exceptions

    try:
        return fn(*args, **kwargs)
    except (
        exceptions.TooManyRequests,
        exceptions.ServerError,
        exceptions.DeadlineExceeded,
        exceptions.ServiceUnavailable,
        exceptions.RetryError,
    ) as exc:
        raise TransientError(f"Vertex AI: {exc}") from exc
    # a 403 over gRPC and over REST
    except (exceptions.PermissionDenied, exceptions.Forbidden) as exc:
        raise denied("Vertex AI", exc) from exc
    except exceptions.GoogleAPICallError as exc:
        raise PermanentError(f"Vertex AI: {exc}") from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise TransientError(f"Vertex AI unreachable: {exc}") from exc


def job_to_dict(job) -> dict:
    """The fields dropbatch records of a job, as plain JSON."""
    stats = job.completion_stats
    error = (
        {"code": job.error.code, "message": job.error.message}
        if job.error.code or job.error.message
        else None
    )
    return {
        "name": job.name,
        "state": job.state.name,
        "output_dir": job.output_info.gcs_output_directory or None,
        "completion_stats": {
            "successful": stats.successful_count,
            "failed": stats.failed_count,
            "incomplete": stats.incomplete_count,
        },
        "error": error,
        "create_time": _time(job.create_time),
        "end_time": _time(job.end_time),
    }


def _time(value) -> str | None:
    return value.isoformat() if value else None


def find_job(config: Config, batch_id: str, part: int, round_: int = 0):
    from google.cloud import aiplatform_v1

    parent = f"projects/{config.project}/locations/{config.location}"
    flt = f'labels.{BATCH_LABEL}="{batch_id}" AND labels.{PART_LABEL}="{round_}-{part}"'
    request = aiplatform_v1.ListBatchPredictionJobsRequest(parent=parent, filter=flt)
    for job in _call(client(config).list_batch_prediction_jobs, request=request):
        return job
    return None


def create_job(
    config: Config,
    *,
    batch_id: str,
    part: int,
    round_: int,
    input_uri: str,
    output_prefix: str,
    model: str,
) -> dict:
    """Create the job for one part, or return the one a previous try already created."""
    from google.cloud import aiplatform_v1

    existing = find_job(config, batch_id, part, round_)
    if existing is not None:
        return job_to_dict(existing)
    labels = {BATCH_LABEL: batch_id, PART_LABEL: f"{round_}-{part}"}
    job = aiplatform_v1.BatchPredictionJob(
        display_name=f"dropbatch-{batch_id}-{round_}-{part}"[:128],
        model=families.resource_name(model, config.project, config.location),
        input_config={"instances_format": "jsonl", "gcs_source": {"uris": [input_uri]}},
        output_config={
            "predictions_format": "jsonl",
            "gcs_destination": {"output_uri_prefix": output_prefix},
        },
        labels=labels,
    )
    parent = f"projects/{config.project}/locations/{config.location}"
    return job_to_dict(
        _call(client(config).create_batch_prediction_job, parent=parent, batch_prediction_job=job)
    )


def get_job(config: Config, name: str) -> dict:
    return job_to_dict(_call(client(config).get_batch_prediction_job, name=name))


def cancel_job(config: Config, name: str) -> None:
    _call(client(config).cancel_batch_prediction_job, name=name)
