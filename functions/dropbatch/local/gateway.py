"""The local stack's identities: a token endpoint, a front for the storage emulator and one for
Pub/Sub.

    token endpoint   POST /token (OAuth2 refresh-token grant, RFC 6749 section 6): the credentials
                     files the stack writes (`authorized_user`, token_uri here) get access tokens
                     naming their principal
    storage front    every Cloud Storage JSON API call is checked against the grants of infra/
                     (iam.py) and passed to fake-gcs-server. Two ports: the public one (what
                     `dropbatch local env` gives users, where a client without credentials is the
                     project's owner, since google-cloud-storage sends none under
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
(https://cloud.google.com/storage/docs/access-control/iam-permissions#object_permissions).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import re
import socket
import socketserver
import ssl
import threading
import urllib.parse

import orjson

from .iam import OWNER, Denied, Enforcer, issue, signed_by, storage_resource

PUBLISH = "/google.pubsub.v1.Publisher/Publish"
_OBJECT = re.compile(
    r"^/(?:download/|upload/)?storage/v1/b/(?P<bucket>[^/]+)(?:/o(?:/(?P<object>[^?]+?))?)?"
    r"(?P<action>/compose|/rewriteTo/b/[^/]+/o/.+|/copyTo/b/[^/]+/o/.+)?$"
)
_DEST = re.compile(r"/(?:rewriteTo|copyTo)/b/(?P<bucket>[^/]+)/o/(?P<object>.+)$")
HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
}


def storage_checks(method: str, path: str, query: dict, body: bytes) -> list[tuple[str, str, str]]:
    """The (permission, resource, resource type) a Cloud Storage JSON API call needs."""
    match = _OBJECT.match(path)
    if path.rstrip("/") == "/storage/v1/b":
        return [
            (
                "storage.buckets.create" if method == "POST" else "storage.buckets.list",
                f"projects/{query.get('project', '_')}",
                "",
            )
        ]
    if not match:
        # anything else of the emulator's: the owner's only
        return [("storage.admin", "projects/_", "")]
    bucket = urllib.parse.unquote(match["bucket"])
    obj = urllib.parse.unquote(match["object"]) if match["object"] else None
    action = match["action"] or ""
    if path.startswith("/upload/"):
        if method == "PUT" or "upload_id" in query:
            # a resumable session's own URL is its credential (checked when it was opened)
            return []
        name = query.get("name") or _metadata_name(body)
        return [("storage.objects.create", *storage_resource(bucket, name))]
    if action == "/compose":
        sources = [s.get("name") for s in orjson.loads(body or b"{}").get("sourceObjects", [])]
        return [("storage.objects.create", *storage_resource(bucket, obj))] + [
            ("storage.objects.get", *storage_resource(bucket, s)) for s in sources
        ]
    if action:
        dest = _DEST.search(action)
        return [
            ("storage.objects.get", *storage_resource(bucket, obj)),
            (
                "storage.objects.create",
                *storage_resource(
                    urllib.parse.unquote(dest["bucket"]), urllib.parse.unquote(dest["object"])
                ),
            ),
        ]
    if obj is None and "/o" in path[len("/storage/v1/b/") :]:
        return [("storage.objects.list", *storage_resource(bucket))]
    if obj is None:
        verb = {"GET": "get", "DELETE": "delete"}.get(method, "update")
        return [(f"storage.buckets.{verb}", *storage_resource(bucket))]
    verb = {"GET": "get", "DELETE": "delete"}.get(method, "update")
    return [(f"storage.objects.{verb}", *storage_resource(bucket, obj))]


def checksum_problem(content_type: str, path: str, body: bytes) -> str | None:
    """Why Cloud Storage refuses a multipart upload whose metadata gives a CRC32C that the bytes
    sent do not have (cloud.google.com/storage/docs/data-validation: the server computes its own
    checksum and the write fails when the two differ); None when it has none to check or it matches.
    """
    import base64

    import google_crc32c

    if not path.startswith("/upload/") or not content_type.startswith("multipart/related"):
        return None
    boundary = content_type.partition("boundary=")[2].strip('"').encode()
    parts = body.split(b"--" + boundary)
    if not boundary or len(parts) < 3:
        return None
    metadata, media = (part.partition(b"\r\n\r\n")[2] for part in parts[1:3])
    try:
        given = orjson.loads(metadata).get("crc32c")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not given:
        return None
    # less its CRLF
    computed = base64.b64encode(google_crc32c.value(media[:-2]).to_bytes(4, "big")).decode()
    return (
        None
        if given == computed
        else f'Provided CRC32C "{given}" doesn\'t match calculated CRC32C "{computed}".'
    )


def _metadata_name(body: bytes) -> str | None:
    """The object name in a multipart or resumable upload's JSON metadata (the first part of the
    body)."""
    match = re.search(rb'"name"\s*:\s*("(?:[^"\\]|\\.)*")', body[:65536])
    return orjson.loads(match.group(1)) if match else None


class StorageFront(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: Nagle would hold the body 40 ms
    disable_nagle_algorithm = True
    enforcer: Enforcer
    upstream: int
    anonymous: str | None  # who a call without a token is (None: refused)
    local = threading.local()

    def log_message(self, *args) -> None:  # one line per refusal is logged instead
        pass

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(
                "127.0.0.1", self.upstream, timeout=300
            )
        return conn

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _principal(self) -> str | None:
        token = self.enforcer.principal(self.headers)
        if token is not None:
            return token
        return None if self.headers.get("Authorization") else self.anonymous

    def _handle(self) -> None:
        body = self._body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        principal = self._principal()
        if principal is None:
            self._reply(
                401,
                orjson.dumps(
                    {
                        "error": {
                            "code": 401,
                            "status": "UNAUTHENTICATED",
                            "message": "Anonymous caller does not have storage access: the request "
                            "is missing a valid credential.",
                        }
                    }
                ),
            )
            return
        try:
            self._authorize(principal, self.command, url.path, query, body)
        except Denied as exc:
            print(
                orjson.dumps(
                    {
                        "severity": "WARNING",
                        "message": "storage call refused",
                        "principal": principal,
                        "permission": exc.permission,
                        "resource": exc.resource,
                    }
                ).decode(),
                flush=True,
            )
            self._reply(403, exc.body())
            return
        problem = checksum_problem(self.headers.get("Content-Type", ""), url.path, body)
        if problem:
            self._reply(
                400,
                orjson.dumps(
                    {
                        "error": {
                            "code": 400,
                            "message": problem,
                            "errors": [
                                {"message": problem, "domain": "global", "reason": "invalid"}
                            ],
                        }
                    }
                ),
            )
            return
        self._forward(body)

    def _authorize(self, principal: str, method: str, path: str, query: dict, body: bytes) -> None:
        policy = self.enforcer.policy
        for permission, resource, kind in storage_checks(method, path, query, body):
            policy.check(principal, permission, resource, kind)
            if (
                permission == "storage.objects.create"
                and query.get("ifGenerationMatch") != "0"
                and not policy.allowed(principal, "storage.objects.delete", resource, kind)
                and self._exists(resource)
            ):
                raise Denied(principal, "storage.objects.delete", resource)

    def _exists(self, resource: str) -> bool:
        bucket, name = resource.split("/buckets/", 1)[1].split("/objects/", 1)
        conn = self._conn()
        conn.request("GET", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}")
        response = conn.getresponse()
        response.read()
        return response.status == 200

    def _forward(self, body: bytes) -> None:
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in HOP | {"content-length"}
        }
        headers["Content-Length"] = str(len(body))
        # a kept-alive upstream connection the emulator closed: reconnect once
        for attempt in (1, 2):
            try:
                conn = self._conn()
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                break
            except (http.client.HTTPException, ConnectionError):
                self.local.conn = None
                if attempt == 2:
                    raise
        own = f"http://127.0.0.1:{self.server.server_address[1]}".encode()
        upstream = f"http://127.0.0.1:{self.upstream}".encode()
        rewrite = "json" in (response.getheader("Content-Type") or "")
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() in HOP or key.lower() == "content-length":
                continue
            if key.lower() == "location":
                value = value.replace(upstream.decode(), own.decode())
            self.send_header(key, value)
        if rewrite or response.getheader("Content-Length") is None:
            data = response.read()
            data = data.replace(upstream, own) if rewrite else data
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Content-Length", response.getheader("Content-Length"))
        self.end_headers()
        while chunk := response.read(1 << 20):
            self.wfile.write(chunk)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


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
