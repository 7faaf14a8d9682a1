"""The local stack's identities: a token endpoint, a front for the storage emulator and one for
Pub/Sub.

    token endpoint   POST /token (OAuth2 refresh-token grant, RFC 6749 section 6): the credentials
                     files the stack writes (`authorized_user`, token_uri here) get access tokens
                     naming their principal
    storage front    (storage_front.py) every Cloud Storage JSON API call is checked against the
                     grants of infra/ (iam.py) and passed to fake-gcs-server. Two ports: the public
                     one (what `dropbatch local env` gives users, where a client without credentials
                     is the project's owner, since google-cloud-storage sends none under
                     STORAGE_EMULATOR_HOST) and the workloads' one, where a call without a token is
                     refused 401 as Cloud Storage refuses it
    HTTPS proxy      what `dropbatch local env` sets as HTTPS_PROXY: a CONNECT to Vertex AI's host
                     names (REGION-aiplatform.googleapis.com, aiplatform.googleapis.com) is answered
                     with TLS under a certificate of the stack's CA (SSL_CERT_FILE) and piped to the
                     Vertex emulator, so that a program using Google's default endpoints (the
                     google-genai SDK as Google's samples write it) reaches the stack unchanged; any
                     other host is tunnelled to as it is
    Pub/Sub fronts   one port per function: a Publish through it is checked as that function's
                     service account (the emulator's clients send no credentials, so the port is the
                     identity); everything else passes unchanged

Cloud Storage permissions per call: https://cloud.google.com/storage/docs/access-control/iam-json;
writing over an existing object also needs storage.objects.delete
(https://cloud.google.com/storage/docs/access-control/iam-permissions#object_permissions)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import socket
import socketserver
import ssl
import threading
import urllib.parse

import orjson

from .iam import OWNER, Denied, Enforcer, issue, signed_by
from .storage_front import StorageFront

PUBLISH = "/google.pubsub.v1.Publisher/Publish"


class TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """The OAuth2 token endpoint: a JWT-bearer grant (RFC 7523, the assertion signed with a service
    account's key, as google.oauth2.service_account makes it) answered with a Bearer access token
    (RFC 6749 5.1)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    enforcer: Enforcer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        form = dict(
            urllib.parse.parse_qsl(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            )
        )
        principal = signed_by(self.enforcer.certs, form.get("assertion", ""))
        if (
            form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
            or principal is None
        ):
            status, body = (
                400,
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
            )
        else:
            status, body = (
                200,
                {
                    "access_token": issue(self.enforcer.secret, principal),
                    "expires_in": 3599,
                    "token_type": "Bearer",
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            )
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class VertexProxy(socketserver.BaseRequestHandler):
    """An HTTPS proxy for Vertex AI's host names only (RFC 9110 CONNECT), ending at the Vertex
    emulator."""

    hosts: set
    upstream: int
    tls: ssl.SSLContext

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
        host, _, port = target.decode(errors="replace").rpartition(":")
        if method != b"CONNECT" or not port.isdigit():
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if host not in self.hosts:
            self._tunnel(host, int(port))
            return
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with (
            self.tls.wrap_socket(self.request, server_side=True) as client,
            socket.create_connection(("127.0.0.1", self.upstream)) as upstream,
        ):
            _splice(client, upstream)

    def _tunnel(self, host: str, port: int) -> None:
        """Any other host: a plain tunnel to it, so that the shell `local env` set up keeps working
        for the rest (pip, npm, curl)."""
        try:
            upstream = socket.create_connection((host, port), timeout=30)
        except OSError:
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            upstream.settimeout(None)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _splice(self.request, upstream)


def _splice(client: socket.socket, upstream: socket.socket) -> None:
    """Bytes both ways until either side closes (and the other has had 5 s to finish)."""
    done = threading.Event()
    threading.Thread(target=_pipe, args=(upstream, client, done), daemon=True).start()
    _pipe(client, upstream, done)
    done.wait(5)


def _pipe(source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
    """Copy bytes until either side closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        done.set()
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def vertex_hosts(location: str) -> list[str]:
    """Vertex AI's host names a client may use: the location's and the global endpoint's."""
    return sorted(
        {
            f"{location}-aiplatform.googleapis.com",
            "us-central1-aiplatform.googleapis.com",
            "aiplatform.googleapis.com",
        }
    )


def pubsub_front(enforcer: Enforcer, upstream: str, port: int, principal: str):
    """A gRPC server on `port` that passes every Pub/Sub call to the emulator, checking a Publish
    first."""
    from concurrent import futures

    import grpc
    from google.pubsub_v1.types import PublishRequest

    channel = grpc.insecure_channel(upstream)

    class Forward(grpc.GenericRpcHandler):
        def service(self, details):
            if details.method.endswith("/StreamingPull"):
                return None  # no function pulls: its messages are pushed
            call = channel.unary_unary(details.method)

            def handler(request: bytes, context):
                if details.method == PUBLISH:
                    topic = PublishRequest.deserialize(request).topic
                    try:
                        enforcer.policy.check(principal, "pubsub.topics.publish", topic)
                    except Denied as exc:
                        print(
                            orjson.dumps(
                                {
                                    "severity": "WARNING",
                                    "message": "publish refused",
                                    "principal": principal,
                                    "topic": topic,
                                }
                            ).decode(),
                            flush=True,
                        )
                        context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
                try:
                    return call(
                        request,
                        timeout=context.time_remaining(),
                        metadata=[
                            m for m in details.invocation_metadata if not m.key.startswith(":")
                        ],
                    )
                except grpc.RpcError as exc:
                    context.abort(exc.code(), exc.details())

            return grpc.unary_unary_rpc_method_handler(handler)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Forward(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's 5 refuses connections when every function writes at once
    request_queue_size = 512


def serve(handler: type, port: int, **attributes) -> http.server.ThreadingHTTPServer:
    server = _Server(("127.0.0.1", port), type(handler.__name__, (handler,), attributes))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="the local stack's token endpoint and IAM fronts")
    parser.add_argument("--iam-dir", required=True)
    parser.add_argument(
        "--ports",
        required=True,
        help="JSON: token, storage, storage_fn, gcs, pubsub, pubsub_fronts, https_proxy, vertex",
    )
    parser.add_argument("--location", default="us-central1")
    args = parser.parse_args(argv)
    ports = orjson.loads(args.ports)
    enforcer = Enforcer(args.iam_dir)
    serve(TokenEndpoint, ports["token"], enforcer=enforcer)
    serve(StorageFront, ports["storage"], enforcer=enforcer, upstream=ports["gcs"], anonymous=OWNER)
    serve(
        StorageFront, ports["storage_fn"], enforcer=enforcer, upstream=ports["gcs"], anonymous=None
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(enforcer.folder / "host.pem", enforcer.folder / "host.key")
    proxy = type(
        "Proxy",
        (socketserver.ThreadingTCPServer,),
        {"daemon_threads": True, "request_queue_size": 128, "allow_reuse_address": True},
    )
    server = proxy(
        ("127.0.0.1", ports["https_proxy"]),
        type(
            "VertexProxyHere",
            (VertexProxy,),
            {"hosts": set(vertex_hosts(args.location)), "upstream": ports["vertex"], "tls": tls},
        ),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    accounts = enforcer.policy.accounts
    servers = [
        pubsub_front(enforcer, f"127.0.0.1:{ports['pubsub']}", port, accounts[name])
        for name, port in ports["pubsub_fronts"].items()
    ]
    threading.Event().wait()  # serve until stopped
    del servers


if __name__ == "__main__":
    main()
