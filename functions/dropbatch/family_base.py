"""What every model family's checks and results share: the line marker a staged line carries, field
checks, a failed result."""

from __future__ import annotations

import re

import orjson

from . import keys
from .keys import shown
from .outcome import parse_status, result_object

LINE_ID = "dropbatch-line-"
_LINE_ID = re.compile(r"dropbatch-line-(\d{1,12})\Z")


def line_id(line: int) -> str:
    return f"{LINE_ID}{line}"


def line_of_id(value) -> int | None:
    match = _LINE_ID.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- shared pieces


def user_key(obj: dict, name: str, problems: list):
    key = obj.get(name)
    problem = keys.key_problem(key) if key is not None else None
    if problem:
        problems.append(("invalid_key", name, problem))
        return None
    return key


def only_fields(obj: dict, allowed, path: str, problems: list, hint: str) -> None:
    for name in obj:
        if name not in allowed:
            where = f"{path}.{name}" if path else name
            problems.append(
                (
                    "schema",
                    where,
                    f"{shown(name)} is not allowed {('in ' + path) if path else 'here'}; {hint}",
                )
            )


def number_field(
    obj: dict, name: str, path: str, problems: list, lo: float, hi: float, whole: bool = False
) -> None:
    value = obj.get(name)
    if value is None:
        return
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (not whole or float(value).is_integer())
    )
    if not ok or not lo <= value <= hi:
        kind = "a whole number" if whole else "a number"
        problems.append(
            (
                "schema",
                f"{path}.{name}",
                f"{path}.{name} is {shown(value)}; it must be {kind} from {lo:g} to {hi:g}",
            )
        )


def line_bytes(obj: dict) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def failed_result(key, batch_id, job, request, response, error, **fields) -> dict:
    return result_object(
        key, "failed", batch_id, job, request=request, response=response, error=error, **fields
    )


def status_error(out: dict) -> dict | None:
    """The error of an output line from its `status` string or an `error` object, in any shape
    seen."""
    status = out.get("status")
    if isinstance(status, str) and status:
        return parse_status(status)
    error = out.get("error")
    if isinstance(error, dict) and error:
        return {
            "code": error.get("code") or error.get("type") or "ERROR",
            "message": str(error.get("message") or "the request failed"),
        }
    return None


def custom_line(out: dict):
    return line_of_id(out.get("custom_id"))


def usage_fields(prompt, completion) -> dict | None:
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt, completion = prompt or 0, completion or 0
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    }


def custom_id_line(obj: dict, problems: list, fields: set, hint: str, who: str = "") -> object:
    """The fields of a line keyed by custom_id (Claude, open models: `fields`, `hint` when there are
    others) and its custom_id, which such a line must have; `who` names the family in messages."""
    only_fields(obj, fields, "", problems, hint)
    if obj.get("custom_id") is None:
        problems.append(
            (
                "missing_key",
                "custom_id",
                f"custom_id is missing; each {who}request needs a custom_id "
                "(1-128 characters of A-Z a-z 0-9 . _ -), unique in the file",
            )
        )
    return user_key(obj, "custom_id", problems)
