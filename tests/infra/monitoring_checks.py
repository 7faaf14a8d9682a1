"""Judging infra/monitoring.tf offline: its log filters evaluated against log entries, its metrics
against the log lines the code writes, its alerts and dashboard against the metrics that exist.

Filters use the part of the Logging query language
(https://cloud.google.com/logging/docs/view/logging-query-language) and of Monitoring filters
(https://cloud.google.com/monitoring/api/v3/filters) that monitoring.tf uses: comparisons joined by
AND, `FIELD=("a" OR "b")`, `= != >= > <= <` on strings and numbers, severities by their order, and
the functions starts_with() and monitoring.regex.full_match(). Anything else raises ValueError, so a
filter the checks cannot judge fails rather than passes.

A stdout JSON line becomes a LogEntry as Cloud Logging's structured logging page says: `severity` is
the entry's severity, `time` its timestamp, and the other fields (`message` too) its jsonPayload; a
Gen2 function's entries have the resource cloud_run_revision with the function's name as
service_name.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from dropbatch.local.terraform import Terraform, load_terraform

ROOT = Path(__file__).resolve().parents[2]
SEVERITIES = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)
# Google's metrics the alerts and the dashboard chart, with their monitored resource, from Google
# Cloud metrics (https://cloud.google.com/monitoring/api/metrics_gcp: run, pubsub and storage
# sections).
GOOGLE_METRICS = {
    "run.googleapis.com/request_count": "cloud_run_revision",
    "run.googleapis.com/request_latencies": "cloud_run_revision",
    "pubsub.googleapis.com/subscription/num_undelivered_messages": "pubsub_subscription",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": "pubsub_subscription",
    "storage.googleapis.com/storage/object_count": "gcs_bucket",
}
USER_PREFIX = "logging.googleapis.com/user/"
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])|(?P<op>>=|<=|!=|=~|=|>|<|\(|\)|,)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_./-]*))"
)
FUNCTIONS = {
    "starts_with": lambda v, arg: isinstance(v, str) and v.startswith(arg),
    "monitoring.regex.full_match": lambda v, arg: (
        isinstance(v, str) and re.fullmatch(arg, v) is not None
    ),
}


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read the filter at {text[pos : pos + 30]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def parse(text: str) -> list[tuple]:
    """The filter's terms: (field, op, value) with value a str, a number, ("in", values) or ("fn",
    name, arg)."""
    toks, i, terms = tokens(text), 0, []

    def take(kind=None, value=None):
        nonlocal i
        if i >= len(toks) or (kind and toks[i][0] != kind) or (value and toks[i][1] != value):
            raise ValueError(f"{text!r}: expected {value or kind} at term {len(terms) + 1}")
        i += 1
        return toks[i - 1]

    def literal():
        kind, tok = take()
        if kind == "str":
            return json.loads(tok)
        if kind == "num":
            return float(tok)
        if kind == "word" and tok in SEVERITIES:
            return tok
        if kind == "word" and tok in FUNCTIONS:
            take("op", "(")
            arg = json.loads(take("str")[1])
            take("op", ")")
            return ("fn", tok, arg)
        if tok == "(":
            values = [literal()]
            while toks[i][1] == "OR":
                take("word", "OR")
                values.append(literal())
            take("op", ")")
            return ("in", tuple(values))
        raise ValueError(f"{text!r}: cannot judge {tok!r}")

    while True:
        field = take("word")[1]
        op = take("op")[1]
        if op not in ("=", "!=", ">=", ">", "<=", "<"):
            raise ValueError(f"{text!r}: operator {op!r} is not judged here")
        terms.append((field, op, literal()))
        if i == len(toks):
            return terms
        take("word", "AND")


def entry(line: dict, service: str) -> dict:
    """The LogEntry Cloud Logging makes of one structured stdout line of a Gen2 function."""
    payload = {
        k: v
        for k, v in line.items()
        if k not in ("severity", "time") and not k.startswith("logging.googleapis.com/")
    }
    return {
        "severity": line.get("severity", "DEFAULT"),
        "jsonPayload": payload,
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
    }


def field(obj: dict, path: str):
    for name in path.split("."):
        if not isinstance(obj, dict) or name not in obj:
            return None
        obj = obj[name]
    return obj


def _holds(value, op: str, want) -> bool:
    if isinstance(want, tuple) and want[0] == "in":
        return (
            any(_holds(value, op, w) for w in want[1])
            if op == "="
            else not _holds(value, "=", want)
        )
    if isinstance(want, tuple) and want[0] == "fn":
        hit = FUNCTIONS[want[1]](value, want[2])
        return hit if op == "=" else not hit
    if value is None:
        return False
    if want in SEVERITIES:
        value, want = SEVERITIES.index(value), SEVERITIES.index(want)
    elif isinstance(want, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
    elif not isinstance(value, str):
        value = str(value)
    return {
        "=": value == want,
        "!=": value != want,
        ">=": value >= want,
        ">": value > want,
        "<=": value <= want,
        "<": value < want,
    }[op]


def matches(filter_text: str, log_entry: dict) -> bool:
    return all(_holds(field(log_entry, f), op, want) for f, op, want in parse(filter_text))


def extract(extractor: str, log_entry: dict):
    m = re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor)
    if not m:
        raise ValueError(f"cannot judge the extractor {extractor!r}")
    return field(log_entry, m.group(1))


# ---------------------------------------------------------------- the Terraform, evaluated


def evaluate(infra: Path = ROOT / "infra") -> dict:
    tf = load_terraform(infra)
    variables = {k: v.get("default") for k, v in tf["variable"].items()}
    variables.update(project_id="my-project", region="us-central1")
    t = Terraform(tf, variables)
    return {
        "tf": tf,
        "metrics": t.resource("google_logging_metric", "m"),
        "alerts": {
            **t.resource("google_monitoring_alert_policy", "symptom"),
            "error_ratio": t.resource("google_monitoring_alert_policy", "error_ratio"),
        },
        "dashboard": (infra / "dashboard.json").read_text(),
    }


def code_events(package: Path = ROOT / "functions" / "dropbatch") -> dict:
    """{event: {"fields": keywords of its logs calls, "severities": their severities}} from the
    code's logs.info/ warning/error calls that pass event="..."."""
    events = {}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "logs"
            ):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if isinstance(kw.get("event"), ast.Constant):
                seen = events.setdefault(kw["event"].value, {"fields": set(), "severities": set()})
                seen["fields"] |= set(kw) | {"message", "batch_id", "execution_id"}
                seen["severities"].add(node.func.attr.upper())
    return events


def monitored(filter_text: str) -> tuple[str, str]:
    terms = {f: want for f, op, want in parse(filter_text) if op == "="}
    return terms.get("metric.type"), terms.get("resource.type")


def metric_problem(metric_type: str, resource: str | None, user_metrics: set) -> str | None:
    if metric_type is None:
        return "no metric.type"
    if metric_type.startswith(USER_PREFIX):
        name = metric_type[len(USER_PREFIX) :]
        return (
            None
            if name in user_metrics
            else f"{metric_type} is not a log-based metric of monitoring.tf"
        )
    if metric_type not in GOOGLE_METRICS:
        return f"{metric_type} is neither defined here nor in Google's metrics list"
    if resource is not None and GOOGLE_METRICS[metric_type] != resource:
        return f"{metric_type} is reported on {GOOGLE_METRICS[metric_type]}, not {resource}"
    return None


def promql_metrics(query: str) -> list[str]:
    """The Monitoring metric types a PromQL query names (Cloud Monitoring's mapping: the first /
    becomes :, the rest _; a distribution's series end _sum, _count or _bucket)."""
    names = re.findall(r"\b([a-z0-9_]+:[a-z0-9_]+)", query)
    out = []
    for name in names:
        domain, _, rest = name.partition(":")
        rest = re.sub(r"_(sum|count|bucket)$", "", rest)
        out.append((domain, rest))
    return out


def get(obj, key, default=None):
    """obj[key] for evaluated Terraform bodies too (their attributes are evaluated on first
    access)."""
    try:
        return obj[key]
    except (KeyError, ValueError):  # not written: the evaluator says it is not modelled
        return default


def problems(
    infra: Path = ROOT / "infra", package: Path = ROOT / "functions" / "dropbatch"
) -> list[str]:
    found = []
    try:
        ev = evaluate(infra)
    except (ValueError, KeyError) as exc:
        return [f"the Terraform does not evaluate: {exc!r}"]
    events = code_events(package)
    user = {m["name"] for m in ev["metrics"].values()}
    for key, m in ev["metrics"].items():
        where = f"metric {key}"
        try:
            terms = parse(m["filter"])
        except ValueError as exc:
            found.append(f"{where}: {exc}")
            continue
        event = [want for f, op, want in terms if f == "jsonPayload.event"]
        if len(event) != 1 or event[0] not in events:
            found.append(f"{where}: counts event {event} that no logs call in the code writes")
            continue
        written = events[event[0]]
        used = [f for f, _, _ in terms if f.startswith("jsonPayload.")]
        used += [
            re.sub(r"^EXTRACT\((.*)\)$", r"\1", x)
            for x in [get(m, "value_extractor"), *m["label_extractors"].values()]
            if x
        ]
        for f in used:
            if not f.startswith("jsonPayload.") or f.split(".", 1)[1] not in written["fields"]:
                found.append(f"{where}: {f} is not a field the code logs with event {event[0]!r}")
        for f, op, want in terms:
            if f == "severity" and not any(_holds(s, op, want) for s in written["severities"]):
                found.append(
                    f"{where}: the code logs {event[0]!r} at {written['severities']}, not "
                    f"severity{op}{want}"
                )
        descriptor = m["metric_descriptor"][0]
        distribution = descriptor["value_type"] == "DISTRIBUTION"
        buckets = get(m, "bucket_options") or any(
            "bucket_options" in d for d in get(m, "dynamic", [])
        )
        if distribution != bool(get(m, "value_extractor")) or distribution and not buckets:
            found.append(
                f"{where}: a distribution needs a value extractor and bucket options, a counter "
                f"neither"
            )
        dynamic = {name: spec for d in descriptor.get("dynamic", []) for name, spec in d.items()}
        if (
            m["label_extractors"]
            and dynamic.get("labels", {}).get("for_each") != "${each.value.labels}"
        ):
            found.append(f"{where}: its descriptor does not declare the labels it extracts")
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for key, a in ev["alerts"].items():
        where = f"alert {key}"
        doc = (get(a, "documentation") or [{}])[0].get("content") or ""
        if len(doc) < 80 or doc not in runbook:
            found.append(
                f"{where}: its documentation must say what to do, and be in docs/runbook.md word "
                f"for word"
            )
        if get(a, "notification_channels") != ev["tf"]["variable"]["notification_channels"].get(
            "default", []
        ) or "var.notification_channels" not in str(
            ev["tf"]["resource"]["google_monitoring_alert_policy"][
                "error_ratio" if key == "error_ratio" else "symptom"
            ]["notification_channels"]
        ):
            found.append(f"{where}: notification_channels is not var.notification_channels")
        for c in a["conditions"]:
            t = c["condition_threshold"][0]
            for text in filter(None, (t.get("filter"), t.get("denominator_filter"))):
                try:
                    problem = metric_problem(*monitored(text), user)
                except ValueError as exc:
                    problem = str(exc)
                if problem:
                    found.append(f"{where}: {problem}")
    try:
        dashboard = json.loads(ev["dashboard"])
    except json.JSONDecodeError as exc:
        return found + [f"dashboard.json does not parse: {exc}"]
    tiles = dashboard.get("mosaicLayout", {}).get("tiles", [])
    if not tiles:
        found.append("dashboard: no tiles")
    for n, tile in enumerate(tiles):
        widget = tile.get("widget", {})
        where = f"dashboard tile {n} ({widget.get('title')!r})"
        if not widget.get("title"):
            found.append(f"{where}: no title")
        for ds in widget.get("xyChart", {}).get("dataSets", []):
            query = ds.get("timeSeriesQuery", {})
            if "timeSeriesFilter" in query:
                try:
                    problem = metric_problem(*monitored(query["timeSeriesFilter"]["filter"]), user)
                except ValueError as exc:
                    problem = str(exc)
                if problem:
                    found.append(f"{where}: {problem}")
            elif "prometheusQuery" in query:
                names = promql_metrics(query["prometheusQuery"])
                if not names:
                    found.append(f"{where}: its query names no metric")
                for domain, rest in names:
                    if (
                        domain != "logging_googleapis_com"
                        or not rest.startswith("user_")
                        or rest[5:] not in {u.replace("/", "_") for u in user}
                    ):
                        found.append(
                            f"{where}: {domain}:{rest} is not a log-based metric of monitoring.tf"
                        )
            else:
                found.append(f"{where}: a data set with no query")
    return found
