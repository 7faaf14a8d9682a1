"""The Vertex emulator's answers: each request answered (Responder: deterministic, or an
OpenAI-compatible endpoint), and echoed back as Vertex echoes it (float32 floats, camelCase)."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct

import orjson


# members Vertex writes back as null when unset (as seen in its output)
def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_PART_ONEOF = ("text", "file_data")


_SNAKE = {
    "inlineData": "inline_data",
    "fileData": "file_data",
    "functionCall": "function_call",
    "functionResponse": "function_response",
    "fileUri": "file_uri",
    "mimeType": "mime_type",
    "videoMetadata": "video_metadata",
    "executableCode": "executable_code",
    "codeExecutionResult": "code_execution_result",
}


# GenerationConfig's `float` fields (google/cloud/aiplatform/v1/content.proto): echoed at float32
# precision.
_FLOAT32_FIELDS = {
    "temperature",
    "topP",
    "top_p",
    "presencePenalty",
    "presence_penalty",
    "frequencyPenalty",
    "frequency_penalty",
}


_F32 = struct.Struct("<f")


def _float32(value):
    if isinstance(value, float):
        return _F32.unpack(_F32.pack(value))[0]
    return value


def _echo(value, in_part: bool = False):
    """Re-serialize a request the way Vertex's output shows it: parts get snake_case with unset
    oneof members as null, float fields at float32 precision, keys in another order."""
    if isinstance(value, list):
        return [_echo(v, in_part) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in reversed(list(value.items())):
        if k == "parts":
            parts = v if isinstance(v, list) else [v]
            out[k] = [_echo_part(p) for p in parts]
        elif k in _FLOAT32_FIELDS:
            out[k] = _float32(v)
        else:
            out[_SNAKE.get(k, k) if in_part else k] = _echo(v, in_part)
    return out


def _echo_part(part):
    if not isinstance(part, dict):
        return part
    out = dict.fromkeys(_PART_ONEOF)
    for k, v in part.items():
        out[_SNAKE.get(k, k)] = _echo(v, in_part=True)
    return dict(sorted(out.items()))


def _prompt_text(req: dict) -> str:
    texts = []
    contents = req.get("contents") or []
    for content in contents if isinstance(contents, list) else [contents]:
        parts = content.get("parts") or [] if isinstance(content, dict) else []
        for part in parts if isinstance(parts, list) else [parts]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts)


class Responder:
    """Deterministic by default: the answer and the token counts follow from the prompt."""

    def __init__(self, url: str = "", model: str = "local"):
        self.url, self.model = url.rstrip("/"), model

    def answer(self, req: dict) -> str:
        config = req.get("generationConfig") or req.get("generation_config") or {}
        mime = config.get("responseMimeType") or config.get("response_mime_type")
        return self.answer_text(_prompt_text(req), as_json=mime == "application/json")

    def answer_text(self, prompt: str, as_json: bool = False) -> str:
        if self.url:
            import requests

            r = requests.post(
                f"{self.url}/chat/completions",
                timeout=300,
                json={"model": self.model, "messages": [{"role": "user", "content": prompt}]},
            )
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        if as_json:
            return orjson.dumps({"echo": prompt[:40], "digest": digest}).decode()
        return f"[{digest}] {prompt[:60]}"
