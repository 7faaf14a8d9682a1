"""The Vertex emulator's responders: deterministic by default, any OpenAI-compatible endpoint when
given."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dropbatch.local.vertex_answers import Responder, _echo
from dropbatch.local.vertex_faults import Faults, _status_text
from dropbatch.local.vertex_jobs import Emulator


def test_default_responder_is_deterministic():
    req = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
    assert Responder().answer(req) == Responder().answer(req)
    assert Responder().answer(req) != Responder().answer(
        {"contents": [{"parts": [{"text": "other"}]}]}
    )
    as_json = Responder().answer(
        {**req, "generationConfig": {"responseMimeType": "application/json"}}
    )
    assert json.loads(as_json)["echo"] == "hello there"


def test_openai_compatible_endpoint():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            data = json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": "a real answer"}}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        answer = Responder(url, "my-model").answer(
            {"contents": [{"role": "user", "parts": [{"text": "Why?"}]}]}
        )
    finally:
        server.shutdown()
    assert answer == "a real answer"
    assert seen == [
        (
            "/v1/chat/completions",
            {"model": "my-model", "messages": [{"role": "user", "content": "Why?"}]},
        )
    ]


def test_echo_and_status_shapes():
    echoed = _echo(
        {
            "contents": [
                {
                    "role": "user",
                    "parts": {"fileData": {"fileUri": "gs://b/o", "mimeType": "image/png"}},
                }
            ],
            "generationConfig": {"temperature": 0.4},
        }
    )
    assert echoed["contents"][0]["parts"] == [
        {"file_data": {"file_uri": "gs://b/o", "mime_type": "image/png"}, "text": None}
    ]
    # a `float` field, at float32
    assert echoed["generationConfig"] == {"temperature": 0.4000000059604645}
    status = _status_text(429, "Resource exhausted.")
    assert (
        status.startswith("Too Many Requests: ")
        and json.loads(status.split(": ", 1)[1])["error"]["code"] == 429
    )
    shapes = {_status_text(500, "Internal error encountered.", shape) for shape in range(4)}
    assert shapes == {
        'Internal Server Error: {"error":{"code":500,"message":"Internal error '
        'encountered.","status":'
        '"INTERNAL"}}',
        'INTERNAL error occurred: {"error":{"code":500,"message":"Internal error '
        'encountered.","status":"INTERNAL"}}',
        '{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}',
        "Internal error occurred.",
    }
    from dropbatch.outcome import is_retryable, parse_status

    assert all(
        parse_status(s)["status"] == "INTERNAL" and is_retryable(parse_status(s)) for s in shapes
    )


def test_fault_names_are_checked():
    emulator = Emulator(Faults(), Responder())
    try:
        emulator.faults.update({"no_such_fault": 1})
    except ValueError as exc:
        assert "no_such_fault" in str(exc)
    else:
        raise AssertionError("an unknown fault was accepted")
