"""The Vertex emulator's job runner: jobs, their states on a clock, the concurrent-job cap."""

from __future__ import annotations

import threading
import time
import uuid

from google.api_core.exceptions import Forbidden

from .vertex_answers import Responder
from .vertex_faults import Faults
from .vertex_output import OutputWriter, now_iso

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


class Emulator(OutputWriter):
    def __init__(self, faults: Faults, responder: Responder):
        self.faults, self.responder = faults, responder
        self.jobs: dict[str, dict] = {}
        self.created: dict[str, float] = {}  # job -> monotonic create time (list lag)
        self.operations: dict[str, dict] = {}
        self.slots: set[str] = set()  # jobs holding one of the project's max_running slots
        self.lock = threading.Lock()
        self.calls = {
            "create": 0,
            "get": 0,
            "list": 0,
            "cancel": 0,
            "delete": 0,
            "refused": 0,
            "count_tokens": 0,
        }
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

    def _sleep(self, name: str, seconds: float, hold=lambda: True) -> None:
        """Wait out a state while `hold()`, but wake up at once when the job is being cancelled."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and hold() and self._state(name) != "JOB_STATE_CANCELLING":
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
