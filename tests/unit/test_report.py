"""The HTML lifecycle report: self-contained, escaped, one timeline marker per event, plots only when there is
data for them, atomic writes and links to GX reports relative to the report's folder."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from lifecycle.ledger import Event
from lifecycle.reporting.html import VersionInfo, render_report, write_report

MODEL = "churn"


def ev(event: str, at: str, reason: str = "ok", version: str | None = None,
       details: dict[str, Any] | None = None) -> Event:
    """An event as the ledger would return it."""
    return Event(MODEL, version, event, at, reason, details or {})


def history() -> list[Event]:
    return [
        ev("batch_validated", "2026-01-04T10:00:00.000Z", "3000 rows valid",
           details={"day": "2026-01-04", "rows": 3000, "report": "/state/reports/gx/2026-01-04.html"}),
        ev("batch_quarantined", "2026-01-05T10:00:00.000Z", "nulls in tenure",
           details={"day": "2026-01-05", "rows": 3000}),
        ev("trained", "2026-01-05T11:00:00.000Z", "trained on 1 batch", "1",
           {"mlflow_run_id": "abc123", "batches": ["2026-01-04"]}),
        ev("gate_passed", "2026-01-05T11:01:00.000Z", "first model", "1",
           {"checks": [{"name": "roc_auc_floor", "passed": True, "detail": "0.79 >= 0.7"}]}),
        ev("promoted", "2026-01-05T11:02:00.000Z", "became champion", "1"),
        ev("drift_detected", "2026-01-08T09:00:00.000Z", "40% of features drifted", "1",
           {"drift_share": 0.4, "threshold": 0.3, "report": "/state/reports/drift/1.html"}),
        ev("retrain_triggered", "2026-01-08T09:00:01.000Z", "drift"),
        ev("alert_sent", "2026-01-08T09:00:02.000Z", "ops notified", "1", {"channel": "webhook"}),
    ]


def versions() -> list[VersionInfo]:
    return [
        VersionInfo("1", "READY", ["previous"], {"roc_auc": 0.79, "log_loss": 0.31},
                    {"lifecycle.data_batches": "2026-01-04", "lifecycle.code_version": "deadbeef"}),
        VersionInfo("2", "READY", ["champion"], {"roc_auc": 0.81, "log_loss": 0.29, "calibration_error": 0.02},
                    {"lifecycle.gate_reason": "no regression", "lifecycle.code_version": "cafe"}),
    ]


def markers(page: str) -> int:
    return len(re.findall(r'<circle class="marker"', page))


def test_renders_with_no_events_and_no_versions() -> None:
    page = render_report(MODEL, [], [])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "No events recorded yet." in page and "No registered versions." in page
    assert 'id="timeline"' not in page and 'id="auc-plot"' not in page and 'id="drift-plot"' not in page
    # Self-contained: nothing fetched from elsewhere.
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_header_counts_versions_table_and_top_links() -> None:
    page = render_report(MODEL, history(), versions(), links={"Airflow UI": "http://localhost:8080/",
                                                             "Evil": "javascript:alert(1)"},
                         generated_at=dt.datetime(2026, 1, 9, 12, 0, tzinfo=dt.UTC))
    assert "generated 2026-01-09 12:00:00 UTC" in page
    assert "<li>batch_validated<b>1</b></li>" in page and "<li>promoted<b>1</b></li>" in page
    assert '<a href="http://localhost:8080/"' in page
    assert 'href="javascript:' not in page  # shown as text, never as a link
    for text in ("0.8100", "0.0200", "deadbeef", "no regression", "champion <b>v2</b>"):
        assert text in page


def test_escapes_reason_tags_and_model_name() -> None:
    bad = "<script>alert('x')</script> & \"quoted\""
    page = render_report("m<1>", [ev("gate_rejected", "2026-01-05T11:00:00Z", bad, "3")],
                         [VersionInfo("3", "READY", [], {}, {"lifecycle.gate_reason": bad})])
    assert "<script>" not in page and "alert('x')" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "m&lt;1&gt;" in page and "<title>m<1>" not in page


def test_one_timeline_marker_per_event_with_tooltip() -> None:
    events = history()
    page = render_report(MODEL, events, versions())
    assert markers(page) == len(events)
    assert "<title>promoted v1: became champion</title>" in page
    assert "<title>batch_quarantined: nulls in tenure</title>" in page  # no version: no "v"
    assert re.search(r'data-event="batch_quarantined"[^>]*fill="#d23b3b"', page)  # red
    assert re.search(r'data-event="promoted"[^>]*fill="#2e9d4a"', page)  # green
    assert re.search(r'data-event="drift_detected"[^>]*fill="#f08c1a"', page)  # orange


def test_single_event_and_unparseable_time_do_not_break_scaling() -> None:
    page = render_report(MODEL, [ev("trained", "2026-01-05T11:00:00Z", "one", "1")], [])
    assert markers(page) == 1 and not re.search(r'="-?(nan|inf)', page)  # a zero time span is widened
    page = render_report(MODEL, [ev("trained", "not a time", "odd clock")], [])
    assert markers(page) == 0 and "odd clock" in page  # still listed in the events table


def test_auc_plot_only_when_a_version_has_auc_and_marks_champion() -> None:
    page = render_report(MODEL, [], versions())
    assert 'id="auc-plot"' in page
    assert page.count('class="bar') == 2 and page.count('class="bar champion"') == 1
    assert "v2 (champion): roc_auc 0.8100" in page
    no_auc = [VersionInfo("1", "READY", [], {"log_loss": 0.3}, {}),
              VersionInfo("2", "READY", [], {"roc_auc": float("nan")}, {})]
    assert 'id="auc-plot"' not in render_report(MODEL, [], no_auc)
    # an undefined metric (None, as evaluations record it) is "n/a" in the versions table, and no bar
    undefined = render_report(MODEL, [], [VersionInfo("1", "READY", [], {"roc_auc": None, "log_loss": 0.3}, {})])
    assert 'id="auc-plot"' not in undefined and '<td class="num">n/a</td><td class="num">0.3000</td>' in undefined


def test_drift_plot_from_any_event_with_drift_share_and_promotion_lines() -> None:
    assert 'id="drift-plot"' not in render_report(MODEL, history()[:5], versions())
    events = [*history(), ev("drift_checked", "2026-01-07T09:00:00Z", "checked", "1",
                             {"drift_share": 0.1, "threshold": 0.3})]
    page = render_report(MODEL, events, versions())
    assert 'id="drift-plot"' in page
    drift = page[page.index('id="drift-plot"'):]
    drift = drift[:drift.index("</svg>")]
    assert drift.count('class="drift-point"') == 2
    assert drift.count('class="promo-line"') == 1 and 'class="threshold"' in drift
    assert markers(page) == len(events)  # the unknown event still gets its (monitoring) marker


def test_report_links_relative_to_report_dir_or_file_uri(tmp_path: Path) -> None:
    gx = tmp_path / "state" / "reports" / "gx" / "2026-01-04 a.html"
    event = ev("batch_validated", "2026-01-04T10:00:00Z", "valid", details={"report": str(gx)})
    page = render_report(MODEL, [event], [], report_dir=tmp_path / "state" / "reports" / MODEL)
    assert 'href="../gx/2026-01-04%20a.html"' in page
    page = render_report(MODEL, [event], [])
    assert f'href="{gx.as_uri()}"' in page
    url = ev("batch_validated", "2026-01-04T10:00:00Z", "valid", details={"report": "https://gx.example/r?a=1&b=2"})
    assert 'href="https://gx.example/r?a=1&amp;b=2"' in render_report(MODEL, [url], [])


def test_write_report_is_atomic_and_returns_path(tmp_path: Path) -> None:
    out = tmp_path / "reports" / MODEL / "lifecycle.html"
    gx = tmp_path / "reports" / "gx" / "day.html"
    events = [ev("batch_validated", "2026-01-04T10:00:00Z", "valid", details={"report": str(gx)})]
    assert write_report(MODEL, events, versions(), out) == out
    page = out.read_text(encoding="utf-8")
    assert 'href="../gx/day.html"' in page  # relative to the report's own folder by default
    assert os.listdir(out.parent) == ["lifecycle.html"]  # no temp file left behind
    out.write_text("old", encoding="utf-8")
    write_report(MODEL, [], [], out, title="Second")
    assert "<h1>Second</h1>" in out.read_text(encoding="utf-8")
    assert os.listdir(out.parent) == ["lifecycle.html"]


# ------------------------------------------------------------------------------------------------- deploys


def dev(event: str, at: str, reason: str, run_id: str, version: str = "5",
        details: dict[str, Any] | None = None) -> Event:
    """A deploy event (it carries the deploy's run id)."""
    return Event(MODEL, version, event, at, reason, details or {}, run_id)


def statistics(stage: str, e_values: dict[str, float], *, labels: int, exposure: int, elapsed: float = 600.0,
               decided_by: str | None = None, threshold: float = 400.0) -> dict[str, Any]:
    """``Verdict.to_dict()["statistics"]`` as the judge writes it (alpha 0.01 over four tests)."""
    tests = {name: {"name": name, "e_value": e, "threshold": threshold, "p_anytime": min(1.0, 1 / e) if e > 0 else 1.0, "n": labels,
                    "estimate": None if not labels else 0.02, "margin": 0.005, "alpha": 1 / threshold,
                    "rejected": e >= threshold, "note": ""} for name, e in e_values.items()}
    return {"stage": stage, "champion": "4", "challenger": "5", "alpha": 0.01, "alpha_per_test": 0.0025,
            "correction": "Bonferroni over 4 anytime-valid tests", "tests": tests, "pairs": labels + 50,
            "labels": labels, "requests": labels + 50, "invalid": 0, "exposure": exposure, "served_champion": 900,
            "stage_elapsed": elapsed, "stage_exposure": exposure, "decided_by": decided_by}


def evidence(labels: int, served_x: int) -> dict[str, Any]:
    return {"champion": "4", "challenger": "5", "pairs": labels + 50, "labels": labels, "served_c": 900,
            "served_x": served_x, "requests": labels + 50}


HOSTILE = "<script>alert('deploy')</script>"


def shadow_rollback(run_id: str = "deploy__shadow") -> list[Event]:
    """(a) Rolled back in shadow on accuracy: no user saw the challenger."""
    verdict = {"stage": "shadow", "action": "rollback",
               "statistics": statistics("shadow", {"accuracy": 2.5e4, "brier": 40.0, "error_rate": 0.5,
                                                   "latency": 1.0}, labels=320, exposure=0, elapsed=900,
                                        decided_by="accuracy")}
    return [
        dev("shadow_verdict", "2026-01-10T10:15:00Z", "v5 failed shadow against v4", run_id,
            details=verdict | {"evidence": evidence(320, 0)}),
        dev("rolled_back", "2026-01-10T10:15:05Z", f"v5 rolled back to v4: {HOSTILE}", run_id,
            details={"verdict": verdict, "evidence": evidence(320, 0)}),
    ]


def promoted_deploy(run_id: str = "deploy__promoted") -> list[Event]:
    """(b) Through shadow and two steps (20%, 100%) to promotion; real ``decide`` statistics."""
    from lifecycle.serving.evidence import PairedEvidence, decide
    from lifecycle.spec import CanaryPlan

    plan = CanaryPlan(steps=[20, 100])
    n = 400
    ev_ = PairedEvidence("4", "6", pairs=n, sum_pc=n * 0.3, sum_px=n * 0.3, sum_pc2=n * 0.13, sum_px2=n * 0.13,
                         sum_pcpx=n * 0.13, pos_c=80, pos_x=80, labels=n, requests=n, served_c=n)

    def judged(stage: str, served_x: int, exposure: int) -> dict[str, Any]:
        ev_.served_x = served_x
        verdict = decide(ev_, plan, stage=stage, stage_elapsed=700, stage_exposure=exposure).to_dict()
        assert verdict["action"] == "pass", verdict["reason"]
        return {"stage": verdict["stage"], "action": "pass", "statistics": verdict["statistics"],
                "evidence": ev_.to_dict()}

    shadow, step1, step2 = judged("shadow", 0, 0), judged("step 1 (20%)", 300, 300), judged("step 2 (100%)", 900, 600)
    return [
        dev("shadow_verdict", "2026-01-11T09:12:00Z", "v6 passed shadow against v4", run_id, "6", shadow),
        dev("canary_step", "2026-01-11T09:12:05Z", "step 1: v6 at 20%", run_id, "6",
            {"step": 1, "weights": {"4": 80, "6": 20}, "revision": 7}),
        dev("canary_step", "2026-01-11T09:24:00Z", "step 1 (20%) held", run_id, "6", step1),
        dev("canary_step", "2026-01-11T09:24:05Z", "step 2: v6 at 100%", run_id, "6",
            {"step": 2, "weights": {"6": 100, "4": 0}, "revision": 8}),
        dev("canary_step", "2026-01-11T09:36:00Z", "step 2 (100%) held", run_id, "6", step2),
        dev("promoted", "2026-01-11T09:36:05Z", "v6 passed every stage", run_id, "6",
            {"revision": 9, "verdict": {k: step2[k] for k in ("stage", "action", "statistics")},
             "evidence": step2["evidence"]}),
    ]


def old_style_deploy(run_id: str = "deploy__old") -> list[Event]:
    """(c) Written before verdicts were recorded: steps with weights, then a rollback without a verdict."""
    return [
        dev("canary_step", "2026-01-06T08:00:00Z", "step 1: v3 at 5%", run_id, "3",
            {"step": 1, "weights": {"2": 95, "3": 5}}),
        dev("canary_step", "2026-01-06T08:10:00Z", "step 2: v3 at 25%", run_id, "3",
            {"step": 2, "weights": {"2": 75, "3": 25}}),
        dev("rolled_back", "2026-01-06T08:14:00Z", "v3 rolled back to v2: error rate 4% > 2%", run_id, "3"),
    ]


def panels(page: str) -> dict[str, str]:
    """Each deploy panel's HTML by run id, in page order."""
    found = re.findall(r'<article class="deploy" data-run-id="([^"]*)".*?</article>', page, re.S)
    return {run: page[page.index(f'data-run-id="{run}"'):].split("</article>")[0] for run in found}


def shares(panel: str) -> list[float]:
    return [float(s) for s in re.search(r'class="share" data-shares="([^"]*)"', panel).group(1).split()]


def test_deploy_panels_titles_traffic_and_evidence() -> None:
    events = [*old_style_deploy(), *shadow_rollback(), *promoted_deploy(),
              # not deploys: the gate's first promotion and a manual rollback on their own run ids
              dev("promoted", "2026-01-05T11:02:00Z", "became champion", "gate__1", "1"),
              dev("rolled_back", "2026-01-12T08:00:00Z", "manual rollback: v6 -> v4", "manual__1", "6",
                  {"champion": "4", "demoted": "6", "manual": True})]
    page = render_report(MODEL, events, versions())
    assert '<section id="deploys"><h2>Deploys</h2>' in page
    found = panels(page)
    assert list(found) == ["deploy__promoted", "deploy__shadow", "deploy__old"]  # newest first, no others

    promoted, shadow, old = found["deploy__promoted"], found["deploy__shadow"], found["deploy__old"]
    assert "<h3>v6 vs v4 · run <code>deploy__promoted</code>" in promoted and ">promoted</span>" in promoted
    assert "<h3>v5 vs v4 · run <code>deploy__shadow</code>" in shadow and ">rolled back in shadow</span>" in shadow
    assert "<h3>v3 vs v2 · run <code>deploy__old</code>" in old and ">rolled back at step 2</span>" in old

    # Traffic: 0 in shadow, each step, 100 at promotion / 0 at rollback; the shadow stage shaded.
    assert shares(promoted) == [0, 20, 100, 100]
    assert shares(shadow) == [0, 0]
    assert shares(old) == [5, 25, 0]
    assert 'class="shadow-stage"' in promoted and 'class="shadow-stage"' in shadow
    assert 'class="shadow-stage"' not in old
    points = re.search(r'class="share" data-shares="[^"]*" points="([^"]*)"', promoted).group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert len(points) == 2 * 4 - 1 and ys[0] == ys[1] and ys[-1] == ys[-3] < ys[2] < ys[0]  # steps going up

    # Evidence: one point per test per verdict (the promotion repeats step 2's verdict: not drawn twice),
    # a dashed threshold per test, the deciding test in the summary line.
    assert promoted.count('class="e-point') == 4 * 3 and shadow.count('class="e-point') == 4
    for name in ("accuracy", "brier", "error_rate", "latency"):
        assert f'class="e-threshold" data-test="{name}" data-threshold="400"' in shadow
        assert f'class="e-threshold" data-test="{name}" data-threshold="400"' in promoted
    assert 'data-test="accuracy" data-stage="shadow" data-log10e="4.398"' in shadow
    assert "labels 320 · user exposure 0 requests (served_x)" in shadow
    assert "decided by accuracy: e-value 2.5e+04 ≥ threshold 400" in shadow
    assert "user exposure 900 requests (served_x)" in promoted and "closest to its threshold" in promoted
    assert "No verdict statistics recorded" in old and 'class="e-threshold"' not in old
    assert "labels n/a · user exposure n/a (served_x)" in old and "no verdict recorded" in old

    # Escaped, no NaN, shadow verdicts in the deployment lane.
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;deploy&#x27;)&lt;/script&gt;" in shadow
    assert not re.search(r"\bnan\b", page, re.I)
    assert markers(page) == len(events)


def test_deploys_superseded_in_progress_at_most_eight_and_odd_values() -> None:
    odd = statistics("shadow", {"accuracy": float("nan"), "brier": 0.0, "error_rate": 1e300, "latency": 2.0},
                     labels=0, exposure=0, elapsed=float("nan"))
    odd["labels"] = float("nan")
    events = [
        dev("shadow_verdict", "2026-01-10T10:00:00Z", "odd", "odd", details={"stage": "shadow", "action": "pass",
                                                                              "statistics": odd, "evidence": None}),
        dev("canary_step", "2026-01-10T10:01:00Z", "held", "odd", details={"stage": "<b>step</b>", "action": "pass",
                                                                           "statistics": {"tests": "junk"}}),
        dev("rolled_back", "2026-01-10T10:05:00Z", "deploy superseded: traffic changed", "odd",
            details={"superseded": True, "weights": {"4": 100}, "champion": "4"}),
        dev("canary_step", "2026-01-10T11:00:00Z", "step 1: v7 at 5%", "running", "7",
            {"step": 1, "weights": {"4": 95, "7": 5}}),
        dev("canary_step", "not a time", "step 2", "running", "7", {"step": 2, "weights": {"4": 75, "7": 25}}),
    ]
    page = render_report(MODEL, events, [])
    found = panels(page)
    assert ">superseded</span>" in found["odd"] and shares(found["odd"]) == [0, 0]
    assert ">in progress (no outcome recorded)</span>" in found["running"] and shares(found["running"]) == [5]
    assert 'data-log10e="300.000"' in found["odd"] and 'class="e-point clipped' in found["odd"]  # drawn at the top
    assert not re.search(r"\bnan\b", page, re.I) and not re.search(r'="-?(nan|inf)', page)
    assert "<b>step" not in page and "&lt;b&gt;step&lt;/b&gt; pass, no test statistics" in found["odd"]

    many = [e for i in range(11) for e in shadow_rollback(f"run{i:02d}")]
    many = [Event(e.model, e.version, e.event, e.at.replace("10T10", f"{10 + int(e.run_id[3:]):02d}T10"), e.reason,
                  e.details, e.run_id) for e in many]
    found = panels(render_report(MODEL, many, []))
    assert list(found) == [f"run{i:02d}" for i in range(10, 2, -1)]
    assert "the last 8 of 11 deploys" in render_report(MODEL, many, [])
    assert 'id="deploys"' not in render_report(MODEL, history(), versions())  # no deploy, no section


def test_gate_checks_not_judged_are_counted_apart_from_passed() -> None:
    checks = [{"name": "threshold.roc_auc", "passed": True, "detail": "roc_auc 0.81 >= 0.7"},
              {"name": "slice.region=west.roc_auc", "passed": True, "judged": False,
               "detail": "slice region=west: roc_auc not judged: one class (all negative) in 160 rows (160 rows)"}]
    page = render_report(MODEL, [ev("gate_passed", "2026-01-05T11:01:00.000Z", "passed", "1", {"checks": checks})],
                         versions(), links={})
    assert "1/2 checks passed, 1 not judged (slice region=west: roc_auc not judged: one class" in page


def test_a_regression_model_shows_its_own_metrics_and_charts_r2() -> None:
    versions = [VersionInfo("1", "READY", ["previous"], {"r2": 0.41, "rmse": 55.2, "mae": 44.0}, {}),
                VersionInfo("2", "READY", ["champion"], {"r2": -0.12, "rmse": 61.0, "mae": 49.5}, {})]
    html = render_report(MODEL, [], versions)
    assert "<h2>R² per version</h2>" in html and "ROC AUC" not in html
    assert "<th>rmse</th>" in html and "<th>roc_auc</th>" not in html
    assert "v2 (champion): r2 -0.1200" in html  # a negative R² is charted below the 0.5 baseline, not dropped


def test_a_hugely_negative_r2_keeps_the_chart_small() -> None:
    """An R² of -1e4 (a regression model far worse than the mean) is drawn at the axis's floor of -1."""
    html = render_report(MODEL, [], [VersionInfo("1", "READY", ["champion"], {"r2": -1e4}, {})])
    assert html.count('class="grid"') <= 12 and "r2 -10000.0000" in html
