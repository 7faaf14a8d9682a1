"""infra/monitoring.tf and dashboard.json, checked offline (monitoring_checks.py): every metric
counts lines the code writes, with fields the code logs; every alert watches a metric that exists
and says what to do; every dashboard tile has a title and charts a metric defined here or documented
by Google. Each breakage below, made in a copy, is caught."""

from __future__ import annotations

import monitoring_checks as checks
import pytest
from test_terraform import broken_copy


def test_monitoring_passes_its_checks():
    assert checks.problems() == []
    ev = checks.evaluate()
    assert len(ev["metrics"]) >= 9 and len(ev["alerts"]) >= 5


BREAKAGES = {
    "metric counts an event nobody logs": (
        "monitoring.tf",
        'jsonPayload.event=\\"tokens\\"',
        'jsonPayload.event=\\"token\\"',
        "metric tokens: counts event ['token']",
    ),
    "metric extracts a field never logged": (
        "monitoring.tf",
        "EXTRACT(jsonPayload.latency_s)",
        "EXTRACT(jsonPayload.latency)",
        "jsonPayload.latency is not a field",
    ),
    "metric wants a severity never logged": (
        "monitoring.tf",
        'notification_undelivered\\" AND severity>=ERROR',
        'notification_undelivered\\" AND severity>=CRITICAL',
        "not severity>=",
    ),
    "alert watches a metric that does not exist": (
        "monitoring.tf",
        'pubsub.googleapis.com/subscription/num_undelivered_messages\\" AND resource.type=\\"pubsub',
        'pubsub.googleapis.com/subscription/undelivered\\" AND resource.type=\\"pubsub',
        "alert dead_letters: pubsub",
    ),
    "alert without its runbook paragraph": (
        "monitoring.tf",
        "One occurrence heals itself; ",
        "",
        "alert stalled: its documentation",
    ),
    "dashboard tile without a title": (
        "dashboard.json",
        '"title": "Retry rounds",',
        "",
        "no title",
    ),
    "dashboard charts an undefined metric": (
        "dashboard.json",
        "user/dropbatch/batches_ended",
        "user/dropbatch/batch_ended",
        "batch_ended is not a log-based metric",
    ),
    "dashboard PromQL names an undefined metric": (
        "dashboard.json",
        "user_dropbatch_tokens_sum",
        "user_dropbatch_token_sum",
        "user_dropbatch_token is not",
    ),
    "dashboard that does not parse": (
        "dashboard.json",
        '"mosaicLayout": {',
        '"mosaicLayout": {{',
        "does not parse",
    ),
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_each_breakage_is_caught(tmp_path, what):
    file, old, new, expected = BREAKAGES[what]
    copy = broken_copy(tmp_path, file, old, new)
    found = checks.problems(copy)
    assert any(expected in p for p in found), (what, found)


def test_filters_are_judged_as_cloud_logging_does():
    line = {
        "severity": "ERROR",
        "message": "m",
        "time": "t",
        "event": "x",
        "count": 3,
        "state": "failed",
    }
    e = checks.entry(line, "dropbatch-split")
    assert checks.matches(
        'resource.type="cloud_run_revision" AND resource.labels.service_name=("dropbatch-submit" '
        'OR "dropbatch-split") AND jsonPayload.event="x" AND severity>=WARNING AND '
        "jsonPayload.count>=1",
        e,
    )
    assert not checks.matches('jsonPayload.event="x" AND severity>=CRITICAL', e)
    assert not checks.matches("jsonPayload.count>=4", e)
    assert not checks.matches("jsonPayload.missing>=0", e)
    assert "time" not in e["jsonPayload"] and e["jsonPayload"]["message"] == "m"
    assert checks.extract("EXTRACT(jsonPayload.count)", e) == 3
    for unjudged in (
        'jsonPayload.event:"x"',
        'jsonPayload.event="x" OR severity=ERROR',
        'NOT jsonPayload.event="x"',
    ):
        with pytest.raises(ValueError):
            checks.matches(unjudged, e)


def test_monitoring_waits_for_its_apis():
    """On a fresh project every monitoring resource is created after the Logging and Monitoring APIs
    are on, and the alerts and dashboard after the log-based metrics have had time to appear
    (time_sleep)."""
    tf = checks.evaluate()["tf"]
    services = tf["locals"]["services"]
    assert {"logging.googleapis.com", "monitoring.googleapis.com"} <= set(services)
    res = tf["resource"]
    assert res["google_logging_metric"]["m"]["depends_on"] == ["${google_project_service.apis}"]
    assert res["time_sleep"]["log_metrics"]["depends_on"] == ["${google_logging_metric.m}"]
    assert res["google_monitoring_alert_policy"]["symptom"]["depends_on"] == [
        "${time_sleep.log_metrics}"
    ]
    assert res["google_monitoring_alert_policy"]["error_ratio"]["depends_on"] == [
        "${google_project_service.apis}"
    ]
    assert res["google_monitoring_dashboard"]["dropbatch"]["depends_on"] == [
        "${time_sleep.log_metrics}"
    ]
