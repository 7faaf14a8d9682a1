"""The reuse fingerprint (reuse.py): what makes two requests the same request."""

from __future__ import annotations

import pytest
from dropbatch import reuse
from dropbatch.config import Config
from dropbatch.errors import UsageError


def request(text: str, **extra) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def test_key_order_and_spacing_do_not_count():
    a = {"generationConfig": {"temperature": 0.2, "topK": 3}, **request("hi")}
    b = {**request("hi"), "generationConfig": {"topK": 3, "temperature": 0.2}}
    assert reuse.fingerprint("gemini-2.5-flash", a) == reuse.fingerprint("gemini-2.5-flash", b)


@pytest.mark.parametrize(
    ("model", "other"),
    [
        ("gemini-2.5-flash", request("hi!")),  # the prompt
        ("gemini-2.5-pro", request("hi")),  # the model
        ("gemini-2.5-flash", request("hi", labels={"team": "x"})),  # the user's labels
        ("gemini-2.5-flash", request("hi", generationConfig={"temperature": 0.3})),
    ],
)
def test_anything_else_makes_another_request(model, other):
    fp = reuse.fingerprint("gemini-2.5-flash", request("hi"))
    assert reuse.fingerprint(model, other) != fp
    assert len(fp) == 32 and int(fp, 16) >= 0


def test_reuse_is_on_or_off():
    assert not reuse.enabled(Config())
    assert reuse.enabled(Config(reuse="on"))
    with pytest.raises(UsageError, match="DROPBATCH_REUSE='yes'"):
        reuse.enabled(Config(reuse="yes"))
