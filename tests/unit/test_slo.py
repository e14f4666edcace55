"""The serving SLO as pure functions: structured breaches from a stats window, their text, the JSON trip through
the trigger event, and the ops alert they become."""
from __future__ import annotations

import json

import pytest

from lifecycle.serving.slo import (
    Breach,
    alert_payload,
    breached_version,
    breaches_from_event,
    slo_breaches,
    unreachable_breach,
)

SLO = {"max_error_rate": 0.02, "max_p99_ms": 50.0, "window_seconds": 300.0, "min_requests": 100,
       "poll_seconds": 15.0}


def window(**versions: dict) -> dict:
    return {"model": "credit_default", "versions": {v.lstrip("v"): s for v, s in versions.items()}}


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        pytest.param(window(v1={"requests": 500, "errors": 1, "p99_ms": 12.0}), [], id="within"),
        pytest.param(window(v1={"requests": 99, "errors": 99, "p99_ms": 900.0}), [], id="too-few-requests"),
        pytest.param(window(v1={"requests": 200, "errors": 10, "p99_ms": 12.0}),
                     [Breach("error_rate", 0.05, 0.02, "1", 200)], id="error-rate"),
        pytest.param(window(v2={"requests": 200, "errors": 0, "p99_ms": 80.5}),
                     [Breach("p99_ms", 80.5, 50.0, "2", 200)], id="p99"),
        pytest.param(window(v1={"requests": 100, "errors": 3, "p99_ms": 51.0}),
                     [Breach("error_rate", 0.03, 0.02, "1", 100), Breach("p99_ms", 51.0, 50.0, "1", 100)],
                     id="both-error-rate-first"),
        pytest.param(window(v1={"requests": 300, "errors": None, "p99_ms": None}), [], id="no-latency-yet"),
        pytest.param({"versions": {}}, [], id="no-traffic"),
    ],
)
def test_slo_breaches_are_structured(stats, expected):
    # Act
    found = slo_breaches(stats, SLO)

    # Assert
    assert found == expected


@pytest.mark.parametrize(
    ("breach", "text"),
    [
        pytest.param(Breach("error_rate", 0.05, 0.02, "1", 200), "v1 error rate 0.050 > 0.020 over 200 requests",
                     id="error-rate"),
        pytest.param(Breach("p99_ms", 80.5, 50.0, "2", 200), "v2 p99 80.5 ms > 50.0 ms over 200 requests",
                     id="p99"),
        pytest.param(Breach("p99_ms", 3.2, 0.001, "1", 40), "v1 p99 3.2 ms > 0.0 ms over 40 requests",
                     id="tiny-limit"),
        pytest.param(unreachable_breach(3, 3, "connection refused"),
                     "gateway unreachable for 3 polls: connection refused", id="unreachable"),
    ],
)
def test_a_breach_reads_as_the_watch_always_wrote_it(breach, text):
    assert str(breach) == breach.describe() == text


def test_breaches_cross_the_trigger_boundary_as_json():
    # Arrange
    breaches = [Breach("error_rate", 0.05, 0.02, "1", 200), unreachable_breach(3, 3, OSError("refused"))]

    # Act
    event = json.loads(json.dumps({"breached": True, "breaches": [b.as_dict() for b in breaches]}))

    # Assert
    assert breaches_from_event(event) == breaches


@pytest.mark.parametrize(
    ("breaches", "version"),
    [
        pytest.param([Breach("error_rate", 0.05, 0.02, "1", 200), Breach("p99_ms", 60, 50, "1", 200)], "1",
                     id="one-version"),
        pytest.param([Breach("error_rate", 0.05, 0.02, "1", 200), Breach("p99_ms", 60, 50, "2", 200)], None,
                     id="two-versions"),
        pytest.param([unreachable_breach(3, 3, "timeout")], None, id="gateway-down"),
        pytest.param([Breach("p99_ms", 60, 50, "12", 200)], "12", id="multi-digit"),
    ],
)
def test_the_alert_names_the_version_only_when_there_is_one(breaches, version):
    assert breached_version(breaches) == version


def test_alert_payload_is_the_ops_alert_conf():
    # Arrange
    breaches = [Breach("p99_ms", 80.5, 50.0, "1", 200), Breach("error_rate", 0.05, 0.02, "1", 200)]

    # Act
    conf = alert_payload(breaches, "scheduled__2026-03-01T12:00:00+00:00")

    # Assert
    assert conf == {"event": "slo_breach", "version": "1",
                    "summary": "serving SLO breached: v1 p99 80.5 ms > 50.0 ms over 200 requests",
                    "reason": "v1 p99 80.5 ms > 50.0 ms over 200 requests; "
                              "v1 error rate 0.050 > 0.020 over 200 requests",
                    "links": {"watch_run": "scheduled__2026-03-01T12:00:00+00:00"}, "severity": "error"}
    assert json.loads(json.dumps(conf)) == conf
