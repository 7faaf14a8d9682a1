"""The embedded local stack: real emulators on loopback and the three functions behind push
subscriptions.

    fake-gcs-server --GCS notifications--> Pub/Sub emulator (topic uploads) --push--> submit_batch
    ticker (every 1.5 s) --> topic sweep --push--> on_job_event
                                      --> topic split --push--> split_results
    Vertex batch emulator <-- aiplatform_v1.JobServiceClient(transport="rest")
    gateway: token endpoint, storage front, one Pub/Sub front per function (gateway.py): each
    function runs as the service account infra/ gives it, and what infra/ does not grant it is
    refused (iam.py)

`up` starts what is not running and returns when every part answers; `down` stops exactly the
processes `up` started: by pid, with their process groups, and only when the process still has the
start time and command line recorded when it was started (a stale state file must never signal
another program); it keeps the local bucket's data unless asked to wipe it. `status` reads the state
file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from ..config import Config
from ..errors import UsageError
from .processes import (
    FUNCTIONS,
    MAIN_PY,
    StackError,
    _alive,
    _answers,
    _free_port,
    _function_command,
    _identity,
    bigquery_command,
    gateway_command,
    gcs_root,
    pubsub_emulator_command,
    state_dir,
    storage_command,
    vertex_command,
)
from .provision import _create_bucket, _create_results_table, _create_topics, _write_identities

TICK_S = 1.5
# the Pub/Sub emulator's JVM, unless CLOUD_PUBSUB_EMULATOR_OPTS (read by its start script) says
# otherwise: the client compiler only and one GC thread, a third less CPU to start and to work
PUBSUB_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:CICompilerCount=1"
# Settings that make the local stack quick to react; any DROPBATCH_* in the caller's environment
# wins.
LOCAL_DEFAULTS = {
    "DROPBATCH_CLAIM_LEASE_S": "60",
    "DROPBATCH_MAX_EVENT_AGE_S": "3600",
    "DROPBATCH_PROGRESS_S": "3",
    # webhooks may go to loopback (a receiver in a test, on this machine), over http too
    "DROPBATCH_WEBHOOK_LOOPBACK": "1",
}


@dataclasses.dataclass
class Stack:
    project: str
    bucket: str
    ports: dict
    pids: dict
    topics: dict
    logs: str
    # pid -> identity when started (_identity)
    idents: dict = dataclasses.field(default_factory=dict)
    iam: bool = True  # infra/'s grants enforced

    @property
    def iam_dir(self) -> Path:
        return Path(self.logs).parent / "iam"

    def credentials(self, who: str) -> str:
        """The credentials file a principal's programs use (owner, submit, status, split,
        vertex_agent)."""
        return str(self.iam_dir / "credentials" / f"{who}.json")

    @property
    def webhook_secret(self) -> str:
        """The secret the webhook function signs with (Secret Manager's, in the cloud)."""
        return (self.iam_dir / "webhook-secret").read_text()

    @property
    def storage(self) -> str:
        return f"http://127.0.0.1:{self.ports['storage']}"

    @property
    def pubsub(self) -> str:
        return f"127.0.0.1:{self.ports['pubsub']}"

    @property
    def vertex(self) -> str:
        return f"http://127.0.0.1:{self.ports['vertex']}"

    @property
    def bigquery(self) -> str:
        return f"http://127.0.0.1:{self.ports['bigquery']}"

    @property
    def results_table(self) -> str:
        """The results table the stack's functions load into (DROPBATCH_RESULTS_TABLE overrides it;
        "" is off)."""
        return os.environ.get("DROPBATCH_RESULTS_TABLE", f"{self.project}.dropbatch.results")

    def public(self) -> dict:
        """What a client needs to reach the stack (DESIGN.md: `dropbatch local status --json`)."""
        return {
            "project": self.project,
            "bucket": self.bucket,
            "storage": self.storage,
            "pubsub": self.pubsub,
            "vertex": self.vertex,
            "bigquery": self.bigquery,
            "topics": self.topics,
            "webhook_secret": self.webhook_secret,
        }

    def client_env(self) -> dict:
        """Environment for any Google client library (and dropbatch itself) to talk to this
        stack."""
        return {
            "STORAGE_EMULATOR_HOST": self.storage,
            "PUBSUB_EMULATOR_HOST": self.pubsub,
            # what google-cloud-bigquery's Client reads
            "BIGQUERY_EMULATOR_HOST": self.bigquery,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "DROPBATCH_PROJECT": self.project,
            # Application Default Credentials: the project's owner, tokens from the stack's
            # endpoint
            "GOOGLE_APPLICATION_CREDENTIALS": self.credentials("owner"),
            # what the google-genai SDK reads; its default Vertex AI endpoint reaches the
            # emulator through the gateway's HTTPS proxy, under the stack's CA (certifi's bundle
            # with it added)
            "GOOGLE_GENAI_USE_VERTEXAI": "true",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
            "HTTPS_PROXY": f"http://127.0.0.1:{self.ports['https_proxy']}",
            "NO_PROXY": "127.0.0.1,localhost",
            "SSL_CERT_FILE": str(self.iam_dir / "ca.pem"),
            "DROPBATCH_BUCKET": self.bucket,
            "DROPBATCH_VERTEX_ENDPOINT": self.vertex,
            "DROPBATCH_UPLOADS_TOPIC": self.topics["uploads"],
            "DROPBATCH_NOTIFICATIONS_TOPIC": self.topics["notifications"],
            "DROPBATCH_SWEEP_TOPIC": self.topics["sweep"],
            "DROPBATCH_SPLIT_TOPIC": self.topics["split"],
        }

    def config(self, **overrides) -> Config:
        return Config.from_env({**os.environ, **self.client_env()}, **overrides)


def _state_file() -> Path:
    return state_dir() / "stack.json"


def load() -> Stack | None:
    """The state file's stack (fields an older version wrote and this one lacks are left out)."""
    known = {f.name for f in dataclasses.fields(Stack)}
    try:
        return Stack(
            **{k: v for k, v in orjson.loads(_state_file().read_bytes()).items() if k in known}
        )
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _ours(stack: Stack, pid: int, strict: bool = True) -> bool:
    """Is `pid` still the process we started? Strict: the same start time and command line as
    recorded once it answered; else the start time only (a part that failed to start may have exec'd
    into another command)."""
    recorded, now_is = stack.idents.get(str(pid)), _identity(pid)
    if recorded is None or now_is is None:
        return False
    return now_is == recorded if strict else now_is.split(":", 1)[0] == recorded.split(":", 1)[0]


def _record(stack: Stack) -> None:
    """Record every part's identity once it answers (the Pub/Sub emulator's script execs into java
    first)."""
    stack.idents = {str(pid): _identity(pid) for pid in stack.pids.values()}
    _save(stack)


def _signal(stack: Stack, pid: int, sig: int, strict: bool = True) -> None:
    if _ours(stack, pid, strict):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def _spawn(stack: Stack, name: str, cmd: list[str], env: dict, logs: Path) -> int:
    with open(logs / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=str(MAIN_PY.parent),
        )
    stack.pids[name] = proc.pid
    stack.idents[str(proc.pid)] = _identity(proc.pid)
    return proc.pid


def _wait(
    what: str, check, timeout: float, pid: int | None = None, logs: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            tail = (logs / f"{what}.log").read_text(errors="replace")[-800:] if logs else ""
            raise StackError(f"{what} exited during start-up; its log ends:\n{tail}")
        time.sleep(0.05)
    raise StackError(f"{what} did not answer within {timeout:.0f} s (logs: {logs})")


def status() -> Stack | None:
    """The running stack, or None when there is none (or parts of it died)."""
    stack = load()
    if stack is None:
        return None
    if all(_alive(pid) for pid in stack.pids.values()) and all(
        _answers(p) for k, p in stack.ports.items()
    ):
        return stack
    return None


def _env(stack: Stack, **overrides) -> dict:
    env = {
        **os.environ,
        **LOCAL_DEFAULTS,
        "DROPBATCH_RESULTS_TABLE": stack.results_table,
        **{k: v for k, v in os.environ.items() if k.startswith("DROPBATCH_")},
        **stack.client_env(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    return env


def _workload_env(stack: Stack, who: str) -> dict:
    """A function's (or the Vertex AI service agent's) environment: its own credentials, the storage
    front that refuses anonymous calls, its own Pub/Sub front, and no gcloud configuration to fall
    back on."""
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": stack.credentials(who),
        "CLOUDSDK_CONFIG": str(stack.iam_dir / "gcloud"),
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{stack.ports['storage_fn']}",
        "DROPBATCH_IAM_DIR": str(stack.iam_dir),
    }
    if f"pubsub_{who}" in stack.ports:
        env["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{stack.ports[f'pubsub_{who}']}"
    if who == "webhook":
        env["DROPBATCH_WEBHOOK_SECRET"] = stack.webhook_secret
    return env


def restart_function(name: str, kill_signal: int = signal.SIGKILL, **env) -> Stack:
    """Kill one function's processes (SIGKILL by default: a crash, not a shutdown) and start it
    again on the same port, optionally with other environment variables (fault tests point it at a
    failing proxy). It needs the stack's record only: a stack busy enough that a part is slow to
    answer (status's check) is still the stack whose function is restarted."""
    stack = load()
    if stack is None:
        raise UsageError("the local stack is not running; start it with `dropbatch local up`")
    _signal(stack, stack.pids[name], kill_signal)
    deadline = time.monotonic() + 10
    while _alive(stack.pids[name]) and time.monotonic() < deadline:
        time.sleep(0.02)
    logs = Path(stack.logs)
    stack.idents.pop(str(stack.pids[name]), None)
    _spawn(
        stack,
        name,
        _function_command(name, stack.ports[name]),
        _env(stack, **{**_workload_env(stack, name), **env}),
        logs,
    )
    _save(stack)
    _wait(name, lambda: _answers(stack.ports[name]), 60, stack.pids[name], logs)
    _record(stack)
    return stack


def up(
    config: Config | None = None,
    faults: dict | None = None,
    responder_url: str = "",
    responder_model: str = "local",
    iam: bool = True,
) -> Stack:
    """Start the stack (a no-op when it is already up) and return it once every part answers."""
    running = status()
    if running is not None:
        return running
    down(strict=False)  # leftovers of a stack that half-died
    config = config or Config.from_env()
    stack = _new_stack(config, iam)
    logs, ports = Path(stack.logs), stack.ports
    base_env = _env(stack)
    try:
        _write_identities(stack)
        _spawn(
            stack,
            "pubsub",
            pubsub_emulator_command("127.0.0.1", ports["pubsub"]),
            {"CLOUD_PUBSUB_EMULATOR_OPTS": PUBSUB_JVM_OPTS, **base_env},
            logs,
        )
        _spawn(stack, "gateway", gateway_command(stack, config), base_env, logs)
        vertex = vertex_command(ports["vertex"], faults or {}, responder_url, responder_model)
        _spawn(stack, "vertex", vertex, {**base_env, **_workload_env(stack, "vertex_agent")}, logs)
        for name in FUNCTIONS:
            env = {**base_env, **_workload_env(stack, name)}
            _spawn(stack, name, _function_command(name, ports[name]), env, logs)
        _save(stack)
        _wait("pubsub", lambda: _answers(ports["pubsub"]), 30, stack.pids["pubsub"], logs)
        _create_topics(stack)
        _spawn(stack, "storage", storage_command(stack, config), base_env, logs)
        bigquery_env = {
            **base_env,
            "BQEMU_GCS_LOCAL_ROOT": gcs_root(),
            "BQEMU_LOG_LEVEL": "warning",
        }
        _spawn(stack, "bigquery", bigquery_command(stack), bigquery_env, logs)
        ticker = [sys.executable, "-m", "dropbatch.local.ticker", "--interval", str(TICK_S)]
        _spawn(stack, "ticker", ticker, base_env, logs)
        _save(stack)
        _wait("storage", lambda: _answers(ports["gcs"]), 20, stack.pids["storage"], logs)
        _wait("gateway", lambda: _answers(ports["storage"]), 20, stack.pids["gateway"], logs)
        _create_bucket(stack)
        for name in ("vertex", "bigquery", *FUNCTIONS):
            _wait(name, lambda n=name: _answers(ports[n]), 60, stack.pids[name], logs)
        if stack.results_table:
            _create_results_table(stack)
        _record(stack)
    except BaseException:
        down(strict=False)
        raise
    return stack


PORTS = (
    "pubsub",
    "storage",
    "vertex",
    *FUNCTIONS,
    "gcs",
    "storage_fn",
    "token",
    "https_proxy",
    "bigquery",
    "bigquery_grpc",
    *(f"pubsub_{f}" for f in FUNCTIONS),
)


def _new_stack(config: Config, iam: bool) -> Stack:
    """A stack not yet started: a free port for each part, the topics the configuration names."""
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return Stack(
        project=config.project,
        bucket=config.bucket,
        ports={name: _free_port() for name in PORTS},
        pids={},
        topics={
            "uploads": config.uploads_topic,
            "notifications": config.notifications_topic,
            "sweep": config.sweep_topic,
            "split": config.split_topic,
        },
        logs=str(logs),
        iam=iam,
    )


def _save(stack: Stack) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(dataclasses.asdict(stack), option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def down(wipe: bool = False, strict: bool = True) -> bool:
    """Stop what `up` started (and only that); True when something was running. The local bucket's
    files stay for the next `up` unless `wipe`."""
    stack = load()
    if stack is None:
        if wipe:
            shutil.rmtree(gcs_root(), ignore_errors=True)
        return False
    for pid in stack.pids.values():
        _signal(stack, pid, signal.SIGTERM, strict)
    deadline = time.monotonic() + 10
    for pid in stack.pids.values():
        while _ours(stack, pid, strict) and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal(stack, pid, signal.SIGKILL, strict)
    with contextlib.suppress(FileNotFoundError):
        _state_file().unlink()
    if wipe:
        shutil.rmtree(gcs_root(), ignore_errors=True)
    return True


def require() -> Stack:
    stack = status()
    if stack is None:
        raise UsageError("the local stack is not running; start it with `dropbatch local up`")
    return stack
