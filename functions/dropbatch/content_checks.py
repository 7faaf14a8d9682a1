"""What the GenerateContentRequest schema cannot say (checks.py): contents and parts present,
roles, one payload per part, gs:// URIs, mime types, base64, line labels; the schema walk calls
these as its messages' hooks."""

from __future__ import annotations

import re

from .keys import LEGACY_LINE_LABEL, LINE_LABEL_PREFIX, shown
from .schema import ROOT
from .schema_walk import Line, base64_problem, path_of

# Mime types Gemini accepts for inline and file data (Vertex AI docs, Gemini 2.x models).
# Request labels, as Vertex takes them (cloud.google.com/vertex-ai/generative-ai/docs/multimodal/
# add-labels-to-api-calls): keys start with a lowercase letter; keys and values hold lowercase
# letters, digits, `_` and `-` (international characters allowed), at most 63 characters; at most 64
# labels a request, of which dropbatch keeps RESERVED_LABELS for the line it stages each request
# with (keys.line_labels).
MAX_LABELS, RESERVED_LABELS, MAX_LABEL_CHARS = 64, 5, 63

MIME_TYPES = frozenset(
    [
        "application/pdf",
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "audio/aac",
        "audio/flac",
        "audio/mp3",
        "audio/m4a",
        "audio/mpeg",
        "audio/mpga",
        "audio/mp4",
        "audio/opus",
        "audio/pcm",
        "audio/wav",
        "audio/webm",
        "video/x-flv",
        "video/quicktime",
        "video/mpeg",
        "video/mpegs",
        "video/mpg",
        "video/mp4",
        "video/webm",
        "video/wmv",
        "video/3gpp",
    ]
)
ROLES = ("user", "model")
PAYLOADS = (
    "text",
    "inline_data",
    "file_data",
    "function_call",
    "function_response",
    "executable_code",
    "code_execution_result",
)


# ---------------------------------------------------------------- checks the schema cannot express


def _first(obj: dict, *names):
    for name in names:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def _check_request(request: dict, node, out: Line) -> None:
    contents = request.get("contents")
    if contents is None or contents == [] or contents == {}:
        out.add(
            "empty_contents",
            (node, "contents"),
            'request.contents is missing or empty; give at least one {"role": "user", "parts": '
            "[...]}",
        )
    labels = request.get("labels")
    if isinstance(labels, dict):
        _check_labels(labels, (node, "labels"), out)


_LABEL_KEY = re.compile(r"[^\W\d_][\w-]*\Z")
_LABEL_VALUE = re.compile(r"[\w-]*\Z")


def _check_labels(labels: dict, node, out: Line) -> None:
    if len(labels) > MAX_LABELS - RESERVED_LABELS:
        out.add(
            "invalid_label",
            node,
            f"{path_of(node)} has {len(labels)} labels; at most "
            f"{MAX_LABELS - RESERVED_LABELS} (Vertex takes {MAX_LABELS}, dropbatch adds up to "
            f"{RESERVED_LABELS})",
        )
    for key, value in labels.items():
        child = (node, key)
        if key.startswith(LINE_LABEL_PREFIX) or key == LEGACY_LINE_LABEL:
            out.add(
                "invalid_label",
                child,
                f"{path_of(child)}: label keys starting with {LINE_LABEL_PREFIX!r} are "
                "dropbatch's own; choose another key",
            )
        elif len(key) > MAX_LABEL_CHARS or not _LABEL_KEY.match(key) or key != key.lower():
            out.add(
                "invalid_label",
                child,
                f"{path_of(child)}: label key {shown(key)} must start with a lowercase "
                f"letter and hold at most {MAX_LABEL_CHARS} lowercase letters, digits, '_' or '-'",
            )
        if isinstance(value, str) and (
            len(value) > MAX_LABEL_CHARS or not _LABEL_VALUE.match(value) or value != value.lower()
        ):
            out.add(
                "invalid_label",
                child,
                f"{path_of(child)}: label value {shown(value)} must hold at most "
                f"{MAX_LABEL_CHARS} lowercase letters, digits, '_' or '-'",
            )


def _check_content(content: dict, node, out: Line) -> None:
    role = content.get("role")
    if role is not None and isinstance(role, str) and role.lower() not in ROLES:
        hint = (
            "; put system prompts in request.systemInstruction" if role.lower() == "system" else ""
        )
        out.add(
            "invalid_role",
            (node, "role"),
            f"{path_of((node, 'role'))} is {shown(role)}; use 'user' or 'model'{hint}",
        )
    parts = content.get("parts")
    if parts is None or parts == [] or parts == {}:
        out.add(
            "empty_parts",
            (node, "parts"),
            f"{path_of((node, 'parts'))} is missing or empty; "
            'give at least one part, e.g. {"text": "..."}',
        )


_PAYLOAD_NAMES = {name: name for name in PAYLOADS} | {
    "inlineData": "inline_data",
    "fileData": "file_data",
    "functionCall": "function_call",
    "functionResponse": "function_response",
    "executableCode": "executable_code",
    "codeExecutionResult": "code_execution_result",
}


def _check_part(part: dict, node, out: Line) -> None:
    given = [name for name, value in part.items() if value is not None and name in _PAYLOAD_NAMES]
    if not given:
        out.add(
            "part_payload",
            node,
            f"{path_of(node)} has no content; give exactly one of text, inlineData, "
            "fileData, functionCall, functionResponse",
        )


def _check_mime(obj: dict, node, out: Line) -> None:
    mime = _first(obj, "mimeType", "mime_type")
    if mime is None:
        out.add(
            "mime_type",
            (node, "mimeType"),
            f"{path_of((node, 'mimeType'))} is missing; "
            'give the media type, e.g. "image/jpeg" or "application/pdf"',
        )
    elif isinstance(mime, str) and mime.lower() not in MIME_TYPES:
        out.add(
            "mime_type",
            (node, "mimeType"),
            f"{path_of((node, 'mimeType'))} is {shown(mime)}, which Gemini does not "
            "accept; use an image, audio, video, PDF or text/plain type",
        )


def _check_file_data(file_data: dict, node, out: Line) -> None:
    uri = _first(file_data, "fileUri", "file_uri")
    if uri is None:
        out.add(
            "file_uri",
            (node, "fileUri"),
            f"{path_of((node, 'fileUri'))} is missing; give a gs:// URI",
        )
    elif isinstance(uri, str) and not (uri.startswith("gs://") and len(uri) > 5 and "/" in uri[5:]):
        out.add(
            "file_uri",
            (node, "fileUri"),
            f"{path_of((node, 'fileUri'))} is {shown(uri)}; batch jobs read "
            "files from Cloud Storage: use gs://BUCKET/OBJECT (or send the bytes as inlineData)",
        )
    _check_mime(file_data, node, out)


def _check_blob(blob: dict, node, out: Line) -> None:
    _check_mime(blob, node, out)
    data = blob.get("data")
    if (
        isinstance(data, str)
        and not base64_problem(data, strict=False)
        and base64_problem(data, strict=True)
    ):
        out.add(
            "invalid_base64",
            (node, "data"),
            f"{path_of((node, 'data'))} is not valid base64; encode the bytes "
            "with base64 (e.g. base64.b64encode(data).decode())",
        )
    elif data is None or data == "":
        out.add(
            "invalid_base64",
            (node, "data"),
            f"{path_of((node, 'data'))} is empty; give the base64 bytes",
        )


HOOKS = {
    ROOT: _check_request,
    "google.cloud.aiplatform.v1.Content": _check_content,
    "google.cloud.aiplatform.v1.Part": _check_part,
    "google.cloud.aiplatform.v1.FileData": _check_file_data,
    "google.cloud.aiplatform.v1.Blob": _check_blob,
}
