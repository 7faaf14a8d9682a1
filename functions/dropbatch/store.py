"""State in the bucket: JSON documents written only with generation preconditions, and the active
index.

batches/BATCH_ID/ledger.json is the record of one batch; batches/_active/BATCH_ID marks the batches
the sweep must look at, so it never lists every batch ever run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import time
import uuid

import msgspec
import orjson

from . import layout
from .config import Config
from .documents import Ledger, plain
from .errors import Conflict, PermanentError, TransientError, denied
from .events import now


@functools.cache
def gcs_credentials():
    """The credentials every Cloud Storage call uses: the default ones, on an emulator too (the
    local stack checks them against infra/'s grants; google-cloud-storage alone would send none
    there)."""
    import google.auth

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
    )
    return credentials


def gcs_endpoint() -> str:
    return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"


class _Pools:
    """urllib3's request interface over one pool of kept-alive connections to Cloud Storage
    (relative URLs: a PoolManager would parse every URL again), and a PoolManager for the absolute
    URLs google-auth refreshes its token at through the same object (the metadata server, an OAuth
    token endpoint): a single-host pool refuses those ("Tried to open a foreign host")."""

    def __init__(self, connections: int):
        import urllib3

        self.pool = urllib3.connection_from_url(gcs_endpoint(), maxsize=connections, block=True)
        self.other = urllib3.PoolManager(num_pools=2)

    def _for(self, url: str):
        return self.pool if url.startswith("/") else self.other

    def urlopen(self, method: str, url: str, **kwargs):
        return self._for(url).urlopen(method, url, **kwargs)

    def request(self, method: str, url: str, **kwargs):
        return self._for(url).request(method, url, **kwargs)

    def close(self) -> None:
        self.pool.close()
        self.other.clear()


def gcs_http(connections: int = 1):
    """google-auth's AuthorizedHttp over kept-alive connections to Cloud Storage (requests take
    paths relative to gcs_endpoint()); close it with .http.close()."""
    from google.auth.transport.urllib3 import AuthorizedHttp

    return AuthorizedHttp(gcs_credentials(), _Pools(connections))


class ObjectReader(io.RawIOBase):
    """One object (one generation of it, when given) read from `offset` in ranged GETs through the
    public JSON API, over a single kept-alive connection (google-auth AuthorizedHttp on urllib3),
    each retried as the storage client retries. The storage client's reader hands a body over 8 KB
    at a time, which made reading the largest cost of a submission (docs/benchmarks.md). The
    stored bytes are read as they are (no decompressive transcoding: a gzip file is dropbatch's to
    decompress). A generation that is gone raises NotFound."""

    def __init__(self, bucket: str, name: str, generation: int | None = None, offset: int = 0):
        import urllib.parse

        from google.cloud.storage.retry import DEFAULT_RETRY

        quote = functools.partial(urllib.parse.quote, safe="")
        self.url = f"/download/storage/v1/b/{quote(bucket)}/o/{quote(name)}?alt=media" + (
            f"&generation={generation}" if generation else ""
        )
        self.http = gcs_http()
        self.pos = offset
        self._get = DEFAULT_RETRY.with_timeout(300)(self._range)

    def readable(self) -> bool:
        return True

    def _range(self, start: int, size: int) -> bytes:
        response = self.http.request(
            "GET",
            self.url,
            headers={"Range": f"bytes={start}-{start + size - 1}", "Accept-Encoding": "gzip"},
            timeout=120.0,
            retries=False,
            decode_content=False,
        )
        if response.status == 416:  # past the end
            return b""
        if response.status >= 300:
            raise http_error(response.status, response.data, f"reading {self.url}")
        return response.data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(8 << 20), b""))
        data = self._get(self.pos, size) if size else b""
        self.pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.http.http.close()
        super().close()


class ObjectWriter:
    """Objects written whole (and deleted), each in one request through the public JSON API
    (objects.insert with uploadType=multipart: the metadata, then the bytes;
    cloud.google.com/storage/docs/uploading-objects), over kept-alive connections (`connections`
    threads may write at once), each retried as the storage client retries. The object's CRC32C goes
    in the metadata, so Cloud Storage refuses bytes that changed on the way
    (cloud.google.com/storage/docs/data-validation). The bytes are one piece of a three-piece body,
    sent as they are, never copied into one body (the storage client's upload does, and opens a
    resumable session past 8 MB)."""

    def __init__(self, bucket: str, connections: int = 1):
        import urllib.parse

        from google.cloud.storage.retry import DEFAULT_RETRY

        self.quote = functools.partial(urllib.parse.quote, safe="")
        self.objects = f"/storage/v1/b/{self.quote(bucket)}/o/"
        self.url = f"/upload/storage/v1/b/{self.quote(bucket)}/o?uploadType=multipart"
        self.http = gcs_http(connections)
        self._retried = DEFAULT_RETRY.with_timeout(300)(self._write)
        self._retried_delete = DEFAULT_RETRY.with_timeout(300)(self._delete)

    def write(self, name: str, data: bytes, content_type: str) -> None:
        _gcs_call(self._retried, name, data, content_type)

    def delete(self, name: str) -> None:
        """Delete an object (objects.delete); one that is gone already is no error."""
        _gcs_call(self._retried_delete, name)

    def _delete(self, name: str) -> None:
        response = self.http.request(
            "DELETE", self.objects + self.quote(name), timeout=120.0, retries=False
        )
        if response.status >= 300 and response.status != 404:
            raise http_error(response.status, response.data, f"deleting {name}")

    def _write(self, name: str, data: bytes, content_type: str) -> None:
        import base64

        import google_crc32c

        crc = base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()
        boundary = uuid.uuid4().hex.encode()  # 128 random bits: never a line of the data
        head = (
            b"--%b\r\nContent-Type: application/json; "
            b"charset=UTF-8\r\n\r\n%b\r\n--%b\r\nContent-Type: %b\r\n\r\n"
            % (
                boundary,
                orjson.dumps({"name": name, "contentType": content_type, "crc32c": crc}),
                boundary,
                content_type.encode(),
            )
        )
        tail = b"\r\n--%b--\r\n" % boundary
        response = self.http.request(
            "POST",
            self.url,
            body=[head, data, tail],
            headers={
                "Content-Type": f"multipart/related; boundary={boundary.decode()}",
                "Content-Length": str(len(head) + len(data) + len(tail)),
            },
            timeout=120.0,
            retries=False,
        )
        if response.status >= 300:
            raise http_error(response.status, response.data, f"writing {name}")

    def close(self) -> None:
        self.http.http.close()


def open_lines(blob, offset: int = 0) -> io.BufferedReader:
    """A Cloud Storage object opened for reading lines from `offset`, 1 MB at a time (the storage
    client's own BlobReader has no peek: its readline reads one byte per call, 100 million calls for
    96 MB)."""
    return io.BufferedReader(
        ObjectReader(blob.bucket.name, blob.name, blob.generation, offset), 1 << 20
    )


@functools.cache
def storage_client(project: str):
    from google.cloud import storage

    return storage.Client(project=project, credentials=gcs_credentials())


def execution_id() -> str:
    """This execution's id: the platform's `Function-Execution-Id` header (functions-framework sets
    one when the platform did not), so that dropbatch's log lines join the platform's request logs;
    a new one outside a request (the CLI, a test calling a stage directly)."""
    import flask

    if flask.has_request_context():
        value = flask.request.headers.get("Function-Execution-Id")
        if value:
            return value[:64]
    return uuid.uuid4().hex[:12]


def http_error(status: int, data: bytes, what: str):
    """The api_core exception for a JSON API error answer over urllib3, with the API's own message
    (Cloud Storage answers {"error": {"code", "message", "errors"}})."""
    from google.api_core import exceptions

    try:
        detail = orjson.loads(data)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = data[:200].decode(errors="replace")
    return exceptions.from_http_status(status, f"{what}: {detail[:500]}")


def gcs_error(exc: Exception, what: str = "Cloud Storage") -> Exception:
    """The one mapping of a Cloud Storage failure to dropbatch's errors: a failed precondition is a
    Conflict, 429/5xx/timeouts are transient, a 403 is a ConfigurationError naming the permission,
    NotFound stays itself (callers read it as "none"), any other API error is permanent."""
    from google.api_core import exceptions

    if isinstance(exc, exceptions.PreconditionFailed):
        return Conflict(str(exc))
    if isinstance(
        exc,
        (
            exceptions.TooManyRequests,
            exceptions.ServerError,
            exceptions.RetryError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return TransientError(f"{what}: {exc}")
    if isinstance(exc, exceptions.Forbidden):
        return denied(what, exc)
    if isinstance(exc, exceptions.NotFound):
        return exc
    return PermanentError(f"{what}: {exc}")


def _gcs_call(fn, *args, **kwargs):
    from google.api_core import exceptions

    caught = (exceptions.GoogleAPICallError, exceptions.RetryError, ConnectionError, TimeoutError)
    try:
        return fn(*args, **kwargs)
    except caught as exc:
        mapped = gcs_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


class Store:
    """The state bucket (the drop bucket unless a results bucket is set), as JSON documents and byte
    objects."""

    def __init__(self, config: Config):
        self.config = config
        self.client = storage_client(config.project)
        self.bucket = self.client.bucket(config.state_bucket)
        self.prefix = config.batches_prefix
        # batch id -> (ledger bytes, generation) read or written here
        self.seen: dict[str, tuple[bytes, int]] = {}

    def path(self, batch_id: str, name: str) -> str:
        return f"{self.prefix}{batch_id}/{name}"

    def uri(self, path: str) -> str:
        return f"gs://{self.config.state_bucket}/{path}"

    def read_json(self, path: str, type=None) -> tuple:
        """(document, generation); (None, 0) when there is none. With `type` (a documents.py type),
        the document is decoded as one; one that is not (a hand-edited or corrupted ledger) is a
        PermanentError naming the path and the field, so the sweep logs it and goes on with the
        other batches."""
        data, generation = self._read_bytes(path)
        if data is None:
            return None, 0
        return self._decode(path, data, type), generation

    def _read_bytes(self, path: str) -> tuple[bytes | None, int]:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(path)
        try:
            return _gcs_call(blob.download_as_bytes), blob.generation
        except NotFound:
            return None, 0

    @staticmethod
    def _decode(path: str, data: bytes, type=None):
        if type is None:
            return orjson.loads(data)
        try:
            return msgspec.json.decode(data, type=type)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise PermanentError(f"{path} is not a valid {type.__name__}: {exc}") from exc

    def write_json(
        self, path: str, doc, if_generation_match: int | None = None, metadata: dict | None = None
    ) -> int:
        """Write a document (and object metadata), under a generation precondition when given. A
        conditional write whose response was lost is retried by the client and then answered 412;
        when the object holds exactly our bytes, that 412 is our own write succeeding, not someone
        else's (compared by content, which carries a timestamp)."""
        from google.api_core.exceptions import NotFound
        from google.cloud.storage.retry import DEFAULT_RETRY

        data = orjson.dumps(doc, default=plain, option=orjson.OPT_INDENT_2)
        blob = self.bucket.blob(path)
        blob.metadata = metadata
        try:
            _gcs_call(
                blob.upload_from_string,
                data,
                content_type="application/json",
                if_generation_match=if_generation_match,
                retry=DEFAULT_RETRY,
            )
        except Conflict:
            current = self.bucket.blob(path)
            try:
                if _gcs_call(current.download_as_bytes) == data:
                    return current.generation
            except NotFound:
                pass
            raise
        return blob.generation

    def create_json(self, path: str, doc, replacing: int = 0) -> bool:
        """Write a document only if none exists (or, with `replacing`, only over that generation of
        it); False when another write came first."""
        try:
            self.write_json(path, doc, if_generation_match=replacing)
            return True
        except Conflict:
            return False

    def delete(self, path: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            _gcs_call(self.bucket.blob(path).delete)

    # ------------------------------------------------------------ the ledger

    def ledger_path(self, batch_id: str) -> str:
        return self.path(batch_id, layout.LEDGER)

    def create_ledger(self, doc: Ledger) -> bool:
        """Write a batch's first ledger only if it has none; False when another write came first."""
        try:
            generation = self.write_json(self.ledger_path(doc.batch_id), doc, if_generation_match=0)
        except Conflict:
            return False
        self.seen[doc.batch_id] = (msgspec.json.encode(doc), generation)
        return True

    def read_ledger(self, batch_id: str) -> tuple[Ledger | None, int]:
        """The ledger as it is now (always read)."""
        path = self.ledger_path(batch_id)
        data, generation = self._read_bytes(path)
        if data is None:
            return None, 0
        self.seen[batch_id] = (data, generation)
        return self._decode(path, data, Ledger), generation

    def update_ledger(self, batch_id: str, mutate, attempts: int = 20) -> Ledger | None:
        """Read-modify-write under a generation precondition; `mutate(doc)` returns False to leave
        it as is.

        The first try starts from the ledger as this Store last read or wrote it, without reading it
        again: the write's generation precondition fails if anyone wrote since, and so does a
        `mutate` that declines (it may decline only on what is there now); either way the ledger is
        then read and `mutate` asked again. A write with ifGenerationMatch proceeds only if the
        object's generation matches, else it fails with 412 Precondition Failed
        (cloud.google.com/storage/docs/request-preconditions), which is Conflict here."""
        path = self.ledger_path(batch_id)
        seen = self.seen.pop(batch_id, None)
        # the try on what was seen is not one of `attempts`
        for attempt in range(attempts + (seen is not None)):
            if seen is not None:
                (data, generation), seen = seen, None
                doc, fresh = self._decode(path, data, Ledger), False
            else:
                (doc, generation), fresh = self.read_ledger(batch_id), True
            if doc is None:
                return None
            if mutate(doc) is False:
                if fresh:
                    return doc
                continue
            doc.updated = now()
            # this write's own mark: a lost response's retry knows its bytes
            doc.writer = uuid.uuid4().hex[:12]
            try:
                generation = self.write_json(path, doc, if_generation_match=generation)
            except Conflict:
                if fresh:
                    time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            self.seen[batch_id] = (msgspec.json.encode(doc), generation)
            return doc
        raise TransientError(f"ledger of {batch_id} kept changing under us")

    def win_ledger(self, batch_id: str, move) -> tuple[Ledger | None, bool]:
        """(ledger, won): `move(doc)` changes the ledger in place and returns True, or returns False
        to leave it; won is True only when this call wrote the version on which `move` returned
        True. A write that loses its precondition re-reads and asks `move` again, so a win on a
        stale read is never counted."""
        won = [False]

        def mutate(doc):
            won[0] = bool(move(doc))
            return won[0]

        doc = self.update_ledger(batch_id, mutate)
        return doc, won[0] and doc is not None

    # ------------------------------------------------------------ the active index

    def _marker(self, batch_id: str) -> str:
        return f"{self.prefix}{layout.ACTIVE}{batch_id}"

    def mark_active(self, batch_id: str) -> None:
        self.create_json(self._marker(batch_id), {"batch_id": batch_id, "since": now()})

    def mark_inactive(self, batch_id: str) -> None:
        self.delete(self._marker(batch_id))

    def active_since(self, batch_id: str) -> str | None:
        """When the batch was marked active; None when it is not marked."""
        marker, _ = self.read_json(self._marker(batch_id))
        return None if marker is None else marker.get("since") or ""

    def active_batches(self) -> list[str]:
        return sorted(b.name.rsplit("/", 1)[-1] for b in self.objects(layout.ACTIVE))

    def objects(self, prefix: str):
        """The objects under batches/PREFIX, as listed (names and metadata)."""
        return _gcs_call(self.client.list_blobs, self.bucket, prefix=f"{self.prefix}{prefix}")

    def ledgers(self, since_s: float | None = None, limit: int | None = None) -> list[Ledger]:
        """Batches' ledgers, newest first: those received in the last `since_s` seconds, at most
        `limit`."""
        # Cloud Storage filters by the glob; the name check is for emulators that ignore it.
        blobs = (
            b
            for b in _gcs_call(
                self.client.list_blobs,
                self.bucket,
                prefix=self.prefix,
                match_glob=f"{self.prefix}*/{layout.LEDGER}",
            )
            if b.name.endswith("/" + layout.LEDGER)
            and b.name.count("/") == self.prefix.count("/") + 1
        )
        if since_s is not None:
            cutoff = time.time() - since_s
            blobs = (b for b in blobs if b.time_created.timestamp() >= cutoff)
        docs = (
            self.read_json(b.name, Ledger)[0]
            for b in sorted(blobs, key=lambda b: b.time_created, reverse=True)[:limit]
        )
        return sorted((d for d in docs if d), key=lambda d: d.created, reverse=True)
