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
