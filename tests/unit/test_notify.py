"""notify: the completion message's schema."""

from __future__ import annotations

import pytest
from dropbatch import notify


def test_message_schema():
    msg = notify.build(
        "succeeded", batch_id="b", source="gs://x/incoming/a.jsonl", counts={"total": 1}
    )
    assert set(msg) == {
        "schema",
        "batch_id",
        "state",
        "source",
        "counts",
        "manifest",
        "results_prefix",
        "results_file",
        "report",
        "error",
    }
    assert msg["schema"] == "dropbatch.batch.v1"
    with pytest.raises(ValueError):
        notify.build("done", batch_id="b", source="s")
