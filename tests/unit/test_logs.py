"""logs: structured JSON lines with severity, the batch id and the request's trace."""

from __future__ import annotations

import orjson
from dropbatch import logs


def test_log_lines_carry_severity_and_context(capfd):
    token = logs.bind(batch_id="b-1", execution_id="x-1")
    try:
        logs.warning("careful", part=3)
    finally:
        logs.reset(token)
    logs.info("outside")
    first, second = [orjson.loads(l) for l in capfd.readouterr().out.splitlines()]
    assert (
        first["severity"] == "WARNING"
        and first["batch_id"] == "b-1"
        and first["execution_id"] == "x-1"
    )
    assert first["part"] == 3 and first["message"] == "careful"
    assert first["logging.googleapis.com/labels"] == {"batch_id": "b-1", "execution_id": "x-1"}
    assert "batch_id" not in second and "logging.googleapis.com/labels" not in second


def test_log_lines_inside_a_request_carry_its_trace(capfd, monkeypatch):
    """Cloud Logging groups lines under the platform's request log by `logging.googleapis.com/trace`
    (projects/P/traces/ID) and `.../spanId` (16 hex digits), read from W3C traceparent or
    X-Cloud-Trace-Context."""
    import flask

    monkeypatch.setenv("DROPBATCH_PROJECT", "my-project")
    app = flask.Flask("t")
    cases = [
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "00f067aa0ba902b7",
        ),
        ({"X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/17;o=1"}, "0000000000000011"),
        (
            {"traceparent": "garbage", "X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736"},
            None,
        ),
    ]
    for headers, span in cases:
        with app.test_request_context(headers=headers):
            logs.info("in a request")
        line = orjson.loads(capfd.readouterr().out)
        assert (
            line["logging.googleapis.com/trace"]
            == "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        )
        assert line.get("logging.googleapis.com/spanId") == span
    with app.test_request_context(headers={"traceparent": "00-nothex-00f067aa0ba902b7-01"}):
        logs.info("no trace")
    assert "logging.googleapis.com/trace" not in orjson.loads(capfd.readouterr().out)
