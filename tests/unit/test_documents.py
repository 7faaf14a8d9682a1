"""The documents' wire shapes (docs/contracts.md, "Split tasks"): the names on the topic stay as
the contract spells them whatever the code calls the field."""

import msgspec
import pytest
from dropbatch.documents import ResumeTask, RetryTask, SplitTask, task_of


def test_a_continuation_travels_as_resume():
    task = SplitTask(batch_id="b", part=2, round=0, job=None, continuation=True)
    wire = msgspec.json.decode(msgspec.json.encode(task))
    assert wire == {"batch_id": "b", "part": 2, "round": 0, "job": None, "resume": True}
    assert task_of(wire) == task


def test_a_task_is_told_apart_by_its_fields():
    assert isinstance(task_of({"batch_id": "b", "resume_round": 2}), ResumeTask)
    assert isinstance(task_of({"batch_id": "b", "retry": 1}), RetryTask)
    with pytest.raises(msgspec.ValidationError):
        task_of(["not", "a", "task"])
    with pytest.raises(msgspec.ValidationError):  # a split task always says whether it continues
        task_of({"batch_id": "b", "part": 0, "round": 0, "job": None})
