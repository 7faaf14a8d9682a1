"""The storage front of the gateway (gateway.py): every Cloud Storage call of a workload checked
against infra/'s grants (as the principal its token names) and against what Cloud Storage itself
checks (CRC32C and MD5 of an upload), then forwarded to fake-gcs-server."""

from __future__ import annotations

import http.client
import http.server
import re
import threading
import urllib.parse

import orjson

from .iam import Denied, Enforcer, storage_resource

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
