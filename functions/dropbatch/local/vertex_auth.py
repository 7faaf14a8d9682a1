"""Who may call the Vertex emulator: aiplatform.batchPredictionJobs.* as infra/ grants it."""

from __future__ import annotations

from flask import Flask, request

from .vertex_rest import error, job_name

# The permission each route needs (https://cloud.google.com/vertex-ai/docs/general/access-control);
# jobs inherit their project's policy (batch jobs have no IAM policy of their own).
PERMISSIONS = {
    "create": "aiplatform.batchPredictionJobs.create",
    "list_jobs": "aiplatform.batchPredictionJobs.list",
    "get": "aiplatform.batchPredictionJobs.get",
    "cancel": "aiplatform.batchPredictionJobs.cancel",
    "delete": "aiplatform.batchPredictionJobs.delete",
    "operation": "aiplatform.batchPredictionJobs.get",
    "count_tokens": "aiplatform.endpoints.predict",
}


def add_authorization(app: Flask, emulator) -> None:
    """Refuse a call the caller's grants do not allow, before its route runs."""

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
