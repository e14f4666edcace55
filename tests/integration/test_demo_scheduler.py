"""The main job on the real Airflow scheduler: `python -m lifecycle.ops.demo` in a private state folder and on
free ports, driven through the REST API, exactly as `make demo` runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.ops.services import free_port
from lifecycle.paths import PROJECT_ROOT
from tests.conftest import check_summary

# ~10 minutes on a quiet 2-core machine; the limits leave room for a loaded one.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400), pytest.mark.clock]
LEFT_RUNNING: list[str] = []


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    state = tmp_path_factory.mktemp("demo") / "state"
    # LIFECYCLE_PRELOAD as `make demo` has it (the test session sets "none" for its in-process Airflow).
    env = {**os.environ, "LIFECYCLE_HOME": str(state), "LIFECYCLE_PRELOAD": "default", "AIRFLOW_PORT": str(free_port()),
           "LIFECYCLE_ALERTS_PORT": str(free_port()), "LIFECYCLE_GATEWAY_PORT": str(free_port())}
    try:
        done = subprocess.run([sys.executable, "-m", "lifecycle.ops.demo"], env=env, capture_output=True,
                              text=True, timeout=1800, cwd=PROJECT_ROOT)
    finally:  # a demo killed by the timeout leaves its services: stop them, or they load every later test
        from lifecycle.ops import services
        from lifecycle.paths import StatePaths

        LEFT_RUNNING[:] = sorted(p.name for p in (state / "run").glob("*.pid"))  # before the clean-up
        services.stop_all(StatePaths(state))
    yield state, done
    from lifecycle.ops.pgembedded import AirflowPostgres

    AirflowPostgres(StatePaths(state)).remove()  # its cluster may live in /var/tmp (pytest's folders are 0700)


def test_demo_runs_to_completion_on_the_scheduler(demo):
    _state, done = demo
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Done in" in done.stdout
    assert "Airflow DB postgresql+psycopg2://airflow@127.0.0.1:" in done.stdout  # the embedded PostgreSQL


def test_summary_meets_the_interface(demo):
    state, _ = demo
    path = state / "demo" / "summary.json"
    summary = json.loads(path.read_text())
    assert summary["tracking_uri"].startswith("sqlite:////")
    assert Path(summary["report"]).exists()
    assert summary["gateway_url"].startswith("http://127.0.0.1:")
    by_event = {}
    for e in summary["events"]:
        by_event.setdefault(e["event"], []).append(e)
    assert [e["version"] for e in by_event["promoted"]] == ["1", "4", "5"]
    # Week 2's candidate (broken labels) stopped in shadow by the live outcomes; weeks 3 and 4 passed shadow
    [rolled] = by_event["rolled_back"]
    assert rolled["version"] == "3" and "shadow" in rolled["reason"]
    assert "Brier score" in rolled["reason"] or "accuracy" in rolled["reason"]
    assert [(e["version"], "passed shadow" in e["reason"]) for e in by_event["shadow_verdict"]] == [
        ("3", False), ("4", True), ("5", True)]
    assert [e["version"] for e in by_event["gate_rejected"]] == ["2"]
    assert {e["version"] for e in by_event["canary_step"]} == {"4", "5"}  # v3 never got a traffic step
    # Week 4: covariate drift detected in its first drifted interval (none before), retrain triggered, v5 trained
    [drift] = by_event["drift_detected"]
    [retrain] = by_event["retrain_triggered"]
    assert drift["version"] == retrain["version"] == "4" and "drift share" in drift["reason"]
    assert "credit_default__train run drift__demo_monitor_2026-01-24" in retrain["reason"]
    trained_after = [e for e in by_event["trained"] if e["at"] > retrain["at"]]
    assert [e["version"] for e in trained_after] == ["5"]


def test_summary_passes_the_shared_checker(demo):
    state, _ = demo
    check_summary(state / "demo" / "summary.json", "batch_validated", "batch_quarantined", "trained", "gate_passed",
                  "gate_rejected", "promoted", "canary_step", "rolled_back", "alert_sent", "drift_detected",
                  "retrain_triggered", "retired", "archived", "restored")


def test_alerts_reached_the_receiver(demo):
    state, _ = demo
    lines = (state / "demo" / "alerts.jsonl").read_text().splitlines()
    alerts = [json.loads(line)["alert"] for line in lines]
    quarantined = [a for a in alerts if a["event"] == "batch_quarantined"]
    assert len(quarantined) == 2 and all(a["links"]["report"].endswith("report.html") for a in quarantined)
    [rollback] = [a for a in alerts if a["event"] == "rolled_back"]
    assert rollback["version"] == "3" and "rolled back" in rollback["reason"] and "e-value" in rollback["reason"]
    [drift] = [a for a in alerts if a["event"] == "drift_detected"]
    assert drift["links"]["report"].endswith("drift_report.html") and Path(drift["links"]["report"]).exists()
    assert [a["event"] for a in alerts].count("retrain_triggered") == 1


def test_v1_was_retired_with_a_verified_archive_and_restored(demo):
    import hashlib

    state, _ = demo
    events = json.loads((state / "demo" / "summary.json").read_text())["events"]
    [archived] = [e for e in events if e["event"] == "archived"]
    [retired] = [e for e in events if e["event"] == "retired"]
    [restored] = [e for e in events if e["event"] == "restored"]
    assert archived["version"] == retired["version"] == "1" and archived["at"] <= retired["at"]
    assert str(state / "archive" / "credit_default" / "v1") in archived["reason"]
    assert restored["version"] == "6" and "v1 restored from" in restored["reason"]
    folder = state / "archive" / "credit_default" / "v1"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["files"]) > 8
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]


def test_the_monitor_stayed_quiet_on_stable_days(demo):
    _state, done = demo
    lines = [ln for ln in done.stdout.splitlines() if "  monitor 2026-01-" in ln]
    assert len(lines) == 3, lines
    assert all("no retrain" in ln for ln in lines[:2]) and "RETRAIN triggered" in lines[2], lines


def test_no_user_request_was_answered_by_the_candidate_stopped_in_shadow(demo):
    _state, done = demo
    line = next(ln for ln in done.stdout.splitlines() if "canary:" in ln and "rolled back in shadow" in ln)
    assert "user requests answered by v3: 0 " in line, line


def test_clients_were_served_through_every_weight_change(demo):
    _state, done = demo
    line = next(ln for ln in done.stdout.splitlines() if "client population:" in ln)
    print(line)
    assert " 0 failed" in line, line


def test_demo_stops_everything_it_started(demo):
    assert LEFT_RUNNING == []  # pid files the demo itself left, seen before the fixture's clean-up
