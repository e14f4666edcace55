"""A self-contained HTML lifecycle report for one model: what happened to it, when, and why.

Built from the ledger's events and the registry's versions, both passed in by the caller, so this module needs
neither MLflow nor Airflow and can run anywhere the ledger can be read. The page is one HTML file with inline
CSS and hand-made inline SVG plots (no scripts, fonts or stylesheets fetched from anywhere): it opens from disk,
offline, and can be archived next to the model it describes.

A "Deploys" section draws each deploy (the deploy events sharing a run id, :func:`deploys_of`): the challenger's
traffic share over time (the shadow stage shaded) and, per sequential test, its e-value at each verdict against
its rollback threshold, with the outcome and the deciding figures in one line. A "Fairness" section shows the
fairness audit each recent version was gated with (groups' figures, each metric against its threshold), read from
its gate event's details.

Every piece of text that comes from outside (reasons, tags, paths, model names) is HTML-escaped, and links are
only made for ``http``, ``https`` and ``file`` URLs or plain paths, so a reason or a detail cannot inject markup.
"""
from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.clock import parse_utc
from lifecycle.fileio import atomic_write
from lifecycle.ledger import EVENTS, Event
from lifecycle.paths import StatePaths
from lifecycle.registry.store import CHAMPION, TAG
from lifecycle.serving.evidence import TESTS

__all__ = ["LANES", "Deploy", "StageVerdict", "VersionInfo", "default_report_path", "deploy_outcome", "deploys_of",
           "render_report", "traffic_series", "write_report"]

# Registry tags shown in the versions table (written by training.flow with the registry's prefix).
TAG_DATA_BATCHES = f"{TAG}data_batches"
TAG_CODE_VERSION = f"{TAG}code_version"
TAG_GATE_REASON = f"{TAG}gate_reason"
KEY_METRICS = ("roc_auc", "log_loss", "calibration_error")
#: The versions table's metrics per task (the first: the chart's, the task's headline metric); :func:`task_of`.
TASK_KEY_METRICS = {"binary": KEY_METRICS, "multiclass": ("macro_f1", "accuracy", "log_loss"),
                    "regression": ("r2", "rmse", "mae")}
_METRIC_LABELS = {"roc_auc": "ROC AUC", "macro_f1": "macro F1", "r2": "R²"}


def task_of(versions: list[VersionInfo]) -> str:
    """The model's task as its versions' test metrics show it (the headline metric a version of each task logs:
    binary roc_auc, multiclass macro_f1, regression r2); binary when none shows."""
    for task in ("binary", "multiclass", "regression"):
        if any(TASK_KEY_METRICS[task][0] in v.metrics for v in versions):
            return task
    return "binary"

# One timeline lane per event family, top to bottom. Events not named here go to "monitoring" when they are
# about drift, else to an "other" lane that is drawn only when such events exist.
LANES: tuple[tuple[str, frozenset[str]], ...] = (
    ("data", frozenset({"batch_validated", "batch_quarantined"})),
    ("training / gate", frozenset({"trained", "gate_passed", "gate_rejected"})),
    ("deployment", frozenset({"promoted", "canary_step", "shadow_verdict", "rolled_back"})),
    ("monitoring", frozenset({"drift_detected", "retrain_triggered"})),
    ("retirement", frozenset({"retired", "archived", "restored"})),
    ("alerts", frozenset({"alert_sent"})),
)
OTHER_LANE = "other"

GREEN, RED, ORANGE, GREY, GOLD, BLUE = "#2e9d4a", "#d23b3b", "#f08c1a", "#8a8f98", "#d9a400", "#3b6fd2"
_GOOD = frozenset({"batch_validated", "gate_passed", "promoted"})
_BAD = frozenset({"batch_quarantined", "gate_rejected", "rolled_back"})
_DRIFT = frozenset({"drift_detected"})

_SAFE_SCHEMES = frozenset({"http", "https", "file"})
_SVG_W = 960  # viewBox width of every plot; the CSS scales it to the page width


@dataclass
class VersionInfo:
    """One registered model version as the report shows it; the caller reads these from the registry."""

    version: str
    status: str
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def default_report_path(model: str, paths: StatePaths | None = None) -> Path:
    """Where a model's report goes by default: ``<state>/reports/<model>/lifecycle.html``."""
    return (paths or StatePaths.current()).reports / model / "lifecycle.html"


# --------------------------------------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    """HTML-escape any value (quotes included, so the result is safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _parse_time(at: Any) -> dt.datetime | None:
    """An event's ISO 8601 time as an aware UTC datetime (:func:`lifecycle.clock.parse_utc`); None when it cannot
    be read (the plots skip it)."""
    try:
        return parse_utc(at)
    except ValueError:
        return None


def _fmt_time(at: str) -> str:
    """A compact, readable UTC time for tables; the raw string when it does not parse."""
    parsed = _parse_time(at)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ") if parsed else str(at)


def _number(value: Any) -> float | None:
    """A finite float from a metric or detail value, or None (bools, NaN, text and missing values)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt_metric(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.4f}"


def _n(value: float) -> str:
    """An SVG coordinate: one decimal is plenty at this size and keeps the markup short."""
    return f"{value:.1f}"


def _version_label(version: str | None) -> str:
    return "" if version in (None, "") else f"v{version}"


def _version_key(version: str) -> tuple[int, float, str]:
    """Sort versions numerically when they are numbers (registry versions are), else by text."""
    number = _number(version)
    return (0, number, "") if number is not None else (1, 0.0, str(version))


def _tooltip(event: Event) -> str:
    """The marker tooltip: ``event vX: reason`` (``event: reason`` for events without a version)."""
    label = _version_label(event.version)
    head = f"{event.event} {label}" if label else event.event
    return f"{head}: {event.reason}"


def _details(event: Event) -> dict[str, Any]:
    return event.details if isinstance(event.details, dict) else {}


def lane_of(event: Event) -> str:
    """The timeline lane (event family) an event is drawn in."""
    for name, members in LANES:
        if event.event in members:
            return name
    if "drift" in event.event or "drift_share" in _details(event):
        return "monitoring"
    return OTHER_LANE


def outcome_colour(event: Event) -> str:
    """Green for a good outcome, red for a refused or undone one, orange for drift, grey for the rest."""
    if event.event in _GOOD:
        return GREEN
    if event.event in _BAD:
        return RED
    if event.event in _DRIFT:
        return ORANGE
    details = _details(event)
    share, threshold = _number(details.get("drift_share")), _number(details.get("threshold"))
    if share is not None and threshold is not None and share > threshold:
        return ORANGE
    return GREY


def _href(target: Any, report_dir: Path | None) -> str | None:
    """A link target for a report path or URL, or None when it should be shown as text only.

    URLs are kept when their scheme is http(s) or file (no ``javascript:`` and friends). Absolute paths become
    paths relative to the report's folder when that is known, so the report and its linked files can move
    together; otherwise a ``file://`` URI. Relative paths are taken as relative to the report already.
    """
    if not isinstance(target, str) or not target.strip():
        return None
    target = target.strip()
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if len(scheme) > 1:  # one letter would be a Windows drive, not a scheme
        return target if scheme in _SAFE_SCHEMES else None
    path = Path(target)
    if not path.is_absolute():
        return urllib.parse.quote(path.as_posix())
    if report_dir is not None:
        try:
            return urllib.parse.quote(Path(os.path.relpath(path, Path(report_dir).absolute())).as_posix())
        except ValueError:  # another drive on Windows: no relative path exists
            pass
    return path.as_uri()


def _link(label: str, target: Any, report_dir: Path | None) -> str:
    """An escaped ``<a>`` for a safe target; an escaped ``<code>`` of the target when it is not linkable."""
    href = _href(target, report_dir)
    if href is None:
        return f'<code title="{_e(target)}">{_e(label)}: {_e(target)}</code>' if target else ""
    return f'<a href="{_e(href)}" title="{_e(target)}">{_e(label)}</a>'


def _event_links(event: Event, report_dir: Path | None) -> list[str]:
    """Links an event's details point to: its report(s) and, once archived, the archive."""
    details = _details(event)
    links: list[str] = []
    reports = details.get("report")
    for target in reports if isinstance(reports, list) else [reports]:
        if target:
            links.append(_link("report", target, report_dir))
    if details.get("archive_uri"):
        links.append(_link("archive", details["archive_uri"], report_dir))
    return links


def _detail_bits(event: Event) -> list[str]:
    """Short, escaped facts from an event's details for the events table (what the reason may not say)."""
    details = _details(event)
    bits: list[str] = []
    if details.get("day"):
        bits.append(f"day {_e(details['day'])}")
    if _number(details.get("rows")) is not None:
        bits.append(f"{int(_number(details['rows']) or 0):,} rows")
    batches = details.get("batches")
    if isinstance(batches, list) and batches:
        span = f"{batches[0]} … {batches[-1]}" if len(batches) > 1 else str(batches[0])
        bits.append(f'<span title="{_e(", ".join(map(str, batches)))}">{len(batches)} batch{"es" if len(batches) > 1 else ""} ({_e(span)})</span>')
    if details.get("mlflow_run_id"):
        bits.append(f"run <code>{_e(details['mlflow_run_id'])}</code>")
    checks = details.get("checks")
    if isinstance(checks, list) and checks:
        rows = [c for c in checks if isinstance(c, dict)]
        failed = [c for c in rows if not c.get("passed")]
        unjudged = [c for c in rows if c.get("passed") and c.get("judged") is False]  # an undefined metric
        text = f"{len(rows) - len(failed) - len(unjudged)}/{len(rows)} checks passed"
        if unjudged:
            text += f", {len(unjudged)} not judged (" + "; ".join(str(c.get("detail", "")) for c in unjudged[:3]) \
                + ("; ..." if len(unjudged) > 3 else "") + ")"
        if failed:
            text += "; failed: " + ", ".join(f"{c.get('name', '?')} ({c.get('detail', '')})" for c in failed)
        bits.append(_e(text))
    weights = details.get("weights")
    if isinstance(weights, dict) and weights:
        bits.append(_e("weights " + ", ".join(f"v{k}: {w}%" for k, w in weights.items())))
    if details.get("step") is not None and isinstance(weights, dict):
        bits.append(f"step {_e(details['step'])}")
    share = _number(details.get("drift_share"))
    if share is not None:
        threshold = _number(details.get("threshold"))
        bits.append(_e(f"drift share {share:.3f}" + (f" (threshold {threshold:.3f})" if threshold is not None
                                                      else "")))
    if details.get("channel"):
        bits.append(f"via {_e(details['channel'])}")
    return bits


# -------------------------------------------------------------------------------------------------- the plots


class _TimeScale:
    """Maps event times onto an x range; a zero-length span (one event) is widened so nothing divides by 0."""

    def __init__(self, times: list[dt.datetime], x0: float, x1: float) -> None:
        start, end = min(times), max(times)
        span = (end - start).total_seconds()
        pad = span * 0.04 if span > 0 else 1800.0  # one event: half an hour either side
        self.start = start - dt.timedelta(seconds=pad)
        self.end = end + dt.timedelta(seconds=pad)
        self.seconds = (self.end - self.start).total_seconds()
        self.x0, self.x1 = x0, x1

    def x(self, when: dt.datetime) -> float:
        return self.x0 + (when - self.start).total_seconds() / self.seconds * (self.x1 - self.x0)

    def ticks(self, count: int = 6) -> list[tuple[float, str]]:
        """Evenly spaced ticks, labelled as precisely as the span needs."""
        fmt = "%Y-%m-%d" if self.seconds >= 3 * 86400 else "%m-%d %H:%M" if self.seconds >= 3600 else "%H:%M:%S"
        out = []
        for i in range(count):
            when = self.start + dt.timedelta(seconds=self.seconds * i / (count - 1))
            out.append((self.x(when), when.strftime(fmt)))
        return out


def _time_axis(scale: _TimeScale, y_top: float, y_axis: float, count: int = 6) -> list[str]:
    """Vertical grid lines and labels under a plot for a time scale (``count`` ticks)."""
    parts = [f'<line class="axis" x1="{_n(scale.x0)}" y1="{_n(y_axis)}" x2="{_n(scale.x1)}" y2="{_n(y_axis)}"/>']
    ticks = scale.ticks(count)
    for i, (x, label) in enumerate(ticks):
        anchor = "end" if i == len(ticks) - 1 else "middle"  # the last label would run off the right edge
        parts.append(f'<line class="grid" x1="{_n(x)}" y1="{_n(y_top)}" x2="{_n(x)}" y2="{_n(y_axis)}"/>')
        parts.append(f'<text class="tick" x="{_n(x)}" y="{_n(y_axis + 16)}" text-anchor="{anchor}">'
                     f"{_e(label)}</text>")
    return parts


def _timeline_svg(timed: list[tuple[dt.datetime, Event]], scale: _TimeScale) -> str:
    """One lane per event family, one marker per event, coloured by outcome, with an ``event vX: reason`` tooltip."""
    lanes = [name for name, _ in LANES]
    if any(lane_of(e) == OTHER_LANE for _, e in timed):
        lanes.append(OTHER_LANE)
    top, lane_h = 14.0, 34.0
    axis_y = top + lane_h * len(lanes)
    height = axis_y + 30
    parts = [f'<svg id="timeline" class="plot" viewBox="0 0 {_SVG_W} {_n(height)}" role="img" '
             f'aria-label="Timeline of lifecycle events" xmlns="http://www.w3.org/2000/svg">']
    for i, name in enumerate(lanes):
        mid = top + lane_h * i + lane_h / 2
        if i % 2 == 0:
            parts.append(f'<rect class="lane" x="{_n(scale.x0)}" y="{_n(top + lane_h * i)}" '
                         f'width="{_n(scale.x1 - scale.x0)}" height="{_n(lane_h)}"/>')
        parts.append(f'<text class="lane-label" x="{_n(scale.x0 - 10)}" y="{_n(mid + 4)}" text-anchor="end">'
                     f'{_e(name)}</text>')
    parts += _time_axis(scale, top, axis_y)
    stacked: Counter[tuple[str, int]] = Counter()  # markers at the same spot fan out vertically
    for when, event in timed:
        lane = lane_of(event)
        x = scale.x(when)
        nth = stacked[(lane, round(x / 4))]
        stacked[(lane, round(x / 4))] += 1
        offset = 0 if nth == 0 else (1 if nth % 2 else -1) * 5 * ((nth + 1) // 2)
        y = top + lane_h * lanes.index(lane) + lane_h / 2 + max(-12, min(12, offset))
        parts.append(f'<circle class="marker" data-event="{_e(event.event)}" cx="{_n(x)}" cy="{_n(y)}" r="5.5" '
                     f'fill="{outcome_colour(event)}"><title>{_e(_tooltip(event))}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    items = ((GREEN, "validated / passed / promoted"), (RED, "quarantined / rejected / rolled back"),
             (ORANGE, "drift"), (GREY, "other"))
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{_e(label)}</span>' for c, label in items) + "</p>"


def _auc_svg(versions: list[VersionInfo], metric: str = "roc_auc") -> str | None:
    """``metric`` (the task's headline: ROC AUC, macro F1, R²) per version as bars joined by a line, the
    champion's bar in gold; None when no version has it."""
    label = _METRIC_LABELS.get(metric, metric)
    points = [(v, _number(v.metrics.get(metric))) for v in sorted(versions, key=lambda v: _version_key(v.version))]
    points = [(v, auc) for v, auc in points if auc is not None]
    if not points:
        return None
    aucs = [auc for _, auc in points]
    # an R² can be any negative number: the axis stops at -1 and a bar below it is drawn to the axis (its value
    # and tooltip stay exact)
    lo = max(-1.0, min(0.5, math.floor((min(aucs) - 0.05) * 10) / 10))
    hi = max(1.0, math.ceil(max(aucs) * 10) / 10)
    left, right, top, bottom, height = 70.0, _SVG_W - 20.0, 24.0, 210.0, 250
    slot = (right - left) / len(points)
    bar_w = min(56.0, slot * 0.6)

    def y(value: float) -> float:
        return bottom - (max(value, lo) - lo) / (hi - lo) * (bottom - top)

    parts = [f'<svg id="auc-plot" class="plot" viewBox="0 0 {_SVG_W} {height}" role="img" '
             f'aria-label="{_e(label)} per model version" xmlns="http://www.w3.org/2000/svg">']
    step = 0.1 if hi - lo <= 0.6 else 0.2
    tick = lo
    while tick <= hi + 1e-9:
        parts.append(f'<line class="grid" x1="{_n(left)}" y1="{_n(y(tick))}" x2="{_n(right)}" y2="{_n(y(tick))}"/>')
        parts.append(f'<text class="tick" x="{_n(left - 8)}" y="{_n(y(tick) + 4)}" text-anchor="end">'
                     f'{tick:.1f}</text>')
        tick = round(tick + step, 10)
    parts.append(f'<text class="tick" x="14" y="{_n((top + bottom) / 2)}" '
                 f'transform="rotate(-90 14 {_n((top + bottom) / 2)})" text-anchor="middle">{_e(label)}</text>')
    parts.append(f'<line class="axis" x1="{_n(left)}" y1="{_n(bottom)}" x2="{_n(right)}" y2="{_n(bottom)}"/>')
    line: list[str] = []
    for i, (version, auc) in enumerate(points):
        cx = left + slot * (i + 0.5)
        champion = CHAMPION in version.aliases
        colour = GOLD if champion else BLUE
        aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
        css = "bar champion" if champion else "bar"
        parts.append(f'<rect class="{css}" x="{_n(cx - bar_w / 2)}" y="{_n(y(auc))}" width="{_n(bar_w)}" '
                     f'height="{_n(bottom - y(auc))}" fill="{colour}"><title>'
                     f'{_e(f"v{version.version}{aliases}: {metric} {auc:.4f}")}</title></rect>')
        parts.append(f'<text class="value" x="{_n(cx)}" y="{_n(y(auc) - 6)}" text-anchor="middle">'
                     f'{auc:.3f}{" ★" if champion else ""}</text>')
        parts.append(f'<text class="tick" x="{_n(cx)}" y="{_n(bottom + 16)}" text-anchor="middle">'
                     f'{_e(_version_label(version.version))}</text>')
        if champion:
            parts.append(f'<text class="tick champion-label" x="{_n(cx)}" y="{_n(bottom + 30)}" '
                         f'text-anchor="middle">champion</text>')
        line.append(f"{_n(cx)},{_n(y(auc))}")
    if len(line) > 1:
        parts.append(f'<polyline class="trend" points="{" ".join(line)}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _drift_points(timed: list[tuple[dt.datetime, Event]]) -> list[tuple[dt.datetime, float, float | None, Event]]:
    """Every timed event that carries a numeric ``drift_share`` (whatever the event is called)."""
    out = []
    for when, event in timed:
        share = _number(_details(event).get("drift_share"))
        if share is not None:
            out.append((when, share, _number(_details(event).get("threshold")), event))
    return out


def _drift_svg(timed: list[tuple[dt.datetime, Event]], scale: _TimeScale,
               readings: list[tuple[dt.datetime, Event]] | None = None) -> str | None:
    """Drift share over time against its threshold (a step line), promotions and rollbacks as vertical lines.

    ``readings`` (every monitored interval, drifted or not) are plotted when given; else the timed events that
    carry a drift share."""
    points = _drift_points(readings) if readings else _drift_points(timed)
    if not points:
        return None
    values = [share for _, share, _, _ in points] + [t for _, _, t, _ in points if t is not None]
    top_value = max([*values, 0.05]) * 1.1
    step = next((s for s in (0.02, 0.05, 0.1, 0.2, 0.25, 0.5) if top_value / s <= 6), 10 ** math.ceil(
        math.log10(top_value / 6)))
    hi = math.ceil(top_value / step) * step
    if max(values) <= 1.0:
        hi = min(hi, 1.0)
    y_ticks = round(hi / step)
    top, bottom, height = 24.0, 200.0, 236

    def y(value: float) -> float:
        return bottom - value / hi * (bottom - top)

    parts = [f'<svg id="drift-plot" class="plot" viewBox="0 0 {_SVG_W} {height}" role="img" '
             f'aria-label="Drift share over time" xmlns="http://www.w3.org/2000/svg">']
    for i in range(y_ticks + 1):
        value = hi * i / y_ticks
        parts.append(f'<line class="grid" x1="{_n(scale.x0)}" y1="{_n(y(value))}" x2="{_n(scale.x1)}" '
                     f'y2="{_n(y(value))}"/>')
        parts.append(f'<text class="tick" x="{_n(scale.x0 - 8)}" y="{_n(y(value) + 4)}" text-anchor="end">'
                     f'{value:.2f}</text>')
    label_x, mid = scale.x0 - 50, (top + bottom) / 2
    parts.append(f'<text class="tick" x="{_n(label_x)}" y="{_n(mid)}" transform="rotate(-90 {_n(label_x)} '
                 f'{_n(mid)})" text-anchor="middle">drift share</text>')
    parts += _time_axis(scale, top, bottom)
    for when, event in timed:
        if event.event not in ("promoted", "rolled_back"):
            continue
        x = scale.x(when)
        css, colour = ("promo-line", GREEN) if event.event == "promoted" else ("rollback-line", RED)
        parts.append(f'<line class="{css}" x1="{_n(x)}" y1="{_n(top)}" x2="{_n(x)}" y2="{_n(bottom)}" '
                     f'stroke="{colour}"><title>{_e(_tooltip(event))}</title></line>')
        label = _version_label(event.version) or event.event
        label += "" if event.event == "promoted" else " rolled back"
        near_right = x > scale.x1 - 90
        parts.append(f'<text class="tick" x="{_n(x - 3 if near_right else x + 3)}" y="{_n(top - 6)}" '
                     f'text-anchor="{"end" if near_right else "start"}" style="fill:{colour}">{_e(label)}</text>')
    thresholds = [(when, t) for when, _, t, _ in points if t is not None]
    if thresholds:  # the threshold in force holds until the next reading changes it
        xs = [scale.x0] + [scale.x(when) for when, _ in thresholds[1:]] + [scale.x1]
        steps = []
        for i, (_, t) in enumerate(thresholds):
            steps += [f"{_n(xs[i])},{_n(y(t))}", f"{_n(xs[i + 1])},{_n(y(t))}"]
        parts.append(f'<polyline class="threshold" points="{" ".join(steps)}"><title>threshold</title></polyline>')
    if len(points) > 1:
        line = " ".join(f"{_n(scale.x(when))},{_n(y(share))}" for when, share, _, _ in points)
        parts.append(f'<polyline class="trend" points="{line}"/>')
    for when, share, threshold, event in points:
        over = threshold is not None and share > threshold
        label = f"{_tooltip(event)} (drift share {share:.3f}"
        label += f", threshold {threshold:.3f})" if threshold is not None else ")"
        parts.append(f'<circle class="drift-point" cx="{_n(scale.x(when))}" cy="{_n(y(share))}" r="4.5" '
                     f'fill="{ORANGE if over else GREEN}"><title>{_e(label)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ the deploys

DEPLOY_EVENTS = frozenset({"canary_step", "shadow_verdict", "rolled_back", "promoted"})
MAX_DEPLOYS = 8  # deploy panels drawn, newest first
_TEST_COLOURS = {"accuracy": BLUE, "brier": "#8e44ad", "error_rate": ORANGE, "latency": "#14a3a3"}
_PANEL_W = 480  # viewBox width of a deploy panel's plots
_LOG_E_FLOOR = -2.0  # e-values under 0.01 (a challenger clearly not worse) are drawn at 0.01
_REASON_CHARS = 240  # reasons are cut here in a panel (in full in its tooltip, up to _TITLE_CHARS)
_TITLE_CHARS = 2000
_STEP_RE = re.compile(r"\bstep\s+(\d+)")


@dataclass
class StageVerdict:
    """One deploy stage's verdict as recorded: when, the stage (``shadow``, ``step 2 (25%)``), ``pass`` or
    ``rollback``, the judge's statistics (:meth:`lifecycle.serving.evidence.Verdict.to_dict`) and the paired
    evidence (:meth:`lifecycle.serving.evidence.PairedEvidence.to_dict`); both ``{}`` when not recorded."""

    when: dt.datetime | None
    stage: str
    action: str
    statistics: dict[str, Any]
    evidence: dict[str, Any]


@dataclass
class Deploy:
    """One deploy read back from the ledger: the deploy events sharing a run id, in ledger order.

    ``shifts``: the traffic changes (``canary_step`` with weights) as (time, challenger's percent, step);
    ``verdicts``: one per stage judged (the shadow stage, each step that held, the deciding one), oldest first;
    ``end``: the ``promoted`` or ``rolled_back`` event that ended it (None while it runs). ``shadow_start``: when
    the shadow stage began (its verdict's time less its ``stage_elapsed``), when recorded."""

    run_id: str
    events: list[Event]
    challenger: str | None = None
    champion: str | None = None
    shifts: list[tuple[dt.datetime, float, int | None]] = field(default_factory=list)
    verdicts: list[StageVerdict] = field(default_factory=list)
    end: Event | None = None
    shadow_start: dt.datetime | None = None
    start: dt.datetime | None = None
    finish: dt.datetime | None = None

    @property
    def shadow(self) -> StageVerdict | None:
        """The shadow stage's verdict, if one was recorded."""
        return next((v for v in self.verdicts if v.stage == "shadow"), None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _share(weights: Any, challenger: str | None) -> float | None:
    """The challenger's percent in a weights map (0 when the map leaves it out), clipped to [0, 100]."""
    if not isinstance(weights, dict) or not weights or challenger is None:
        return None
    raw = {str(k): w for k, w in weights.items()}.get(challenger, 0)
    share = _number(raw)
    return None if share is None else max(0.0, min(100.0, share))


def _stage_verdict(event: Event, when: dt.datetime | None) -> StageVerdict | None:
    """The verdict an event carries: a ``shadow_verdict``, a ``canary_step`` that held (no weights), or the
    ``verdict`` of a ``rolled_back`` / ``promoted``; None for any other event."""
    details = _details(event)
    if event.event in ("rolled_back", "promoted"):
        verdict = details.get("verdict")
        if not isinstance(verdict, dict):
            return None
    elif event.event == "shadow_verdict" or (event.event == "canary_step" and "weights" not in details
                                              and ("statistics" in details or "stage" in details)):
        verdict = details
    else:
        return None
    stage = verdict.get("stage") or ("shadow" if event.event == "shadow_verdict" else "")
    return StageVerdict(when, str(stage), str(verdict.get("action") or ""), _dict(verdict.get("statistics")),
                        _dict(details.get("evidence")))


def _read_deploy(run_id: str, members: list[Event]) -> Deploy | None:
    """A deploy from its run's events; None when the run is not a deploy (a gate's first promotion, a manual
    rollback on its own)."""
    if not any(e.event in ("canary_step", "shadow_verdict") or isinstance(_details(e).get("verdict"), dict)
               or _details(e).get("superseded") for e in members):
        return None
    deploy = Deploy(run_id, members)
    deploy.challenger = next((str(e.version) for e in members if e.version not in (None, "")), None)
    stages: set[str] = set()
    times: list[dt.datetime] = []
    for event in members:
        when = _parse_time(event.at)
        if when is not None:
            times.append(when)
        details = _details(event)
        weights = details.get("weights")
        if event.event == "canary_step" and isinstance(weights, dict):
            if deploy.champion is None:
                deploy.champion = next((str(k) for k in weights if str(k) != deploy.challenger), None)
            share = _share(weights, deploy.challenger)
            step = _number(details.get("step"))
            if when is not None and share is not None:
                deploy.shifts.append((when, share, None if step is None else int(step)))
            continue
        verdict = _stage_verdict(event, when)
        if verdict is not None and verdict.stage not in stages:  # a promotion repeats the last step's verdict
            stages.add(verdict.stage)
            deploy.verdicts.append(verdict)
        if event.event in ("rolled_back", "promoted") and deploy.end is None:
            deploy.end = event
    if deploy.champion is None:
        sources = [*(v.statistics for v in deploy.verdicts), *(v.evidence for v in deploy.verdicts),
                   _details(deploy.end) if deploy.end else {}]
        deploy.champion = next((str(s["champion"]) for s in sources if s.get("champion") not in (None, "")), None)
    if deploy.challenger is None:
        sources = [*(v.statistics for v in deploy.verdicts), *(v.evidence for v in deploy.verdicts)]
        deploy.challenger = next((str(s["challenger"]) for s in sources if s.get("challenger") not in (None, "")),
                                 None)
    shadow = deploy.shadow
    elapsed = _number(shadow.statistics.get("stage_elapsed")) if shadow else None
    if shadow and shadow.when is not None and elapsed is not None and 0 <= elapsed < 400 * 86400:
        deploy.shadow_start = shadow.when - dt.timedelta(seconds=elapsed)
        times.append(deploy.shadow_start)
    deploy.shifts.sort(key=lambda s: s[0])
    if times:
        deploy.start, deploy.finish = min(times), max(times)
    return deploy


def deploys_of(events: list[Event]) -> list[Deploy]:
    """Every deploy in ``events`` (ledger order): the ``canary_step``, ``shadow_verdict``, ``rolled_back`` and
    ``promoted`` events grouped by run id, newest first (by start; a deploy without a readable time last)."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        if event.event in DEPLOY_EVENTS and event.run_id not in (None, ""):
            groups.setdefault(str(event.run_id), []).append(event)
    found = [(d, i) for i, (run_id, members) in enumerate(groups.items())
             if (d := _read_deploy(run_id, members)) is not None]
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    found.sort(key=lambda p: (p[0].start or oldest, p[1]), reverse=True)
    return [d for d, _ in found]


def deploy_outcome(deploy: Deploy) -> tuple[str, str]:
    """How a deploy ended, in words, and its colour: promoted, rolled back in shadow / at step N (manually),
    superseded, or in progress."""
    end = deploy.end
    if end is None:
        return "in progress (no outcome recorded)", GREY
    if end.event == "promoted":
        return "promoted", GREEN
    details = _details(end)
    if details.get("superseded"):
        return "superseded", ORANGE
    if details.get("manual"):
        return "rolled back manually", RED
    stage = str(_dict(details.get("verdict")).get("stage") or "")
    found = _STEP_RE.search(stage)
    if stage == "shadow":
        return "rolled back in shadow", RED
    if found:
        return f"rolled back at step {found.group(1)}", RED
    if deploy.shifts:
        step = deploy.shifts[-1][2]
        return ("rolled back" if step is None else f"rolled back at step {step}"), RED
    return ("rolled back in shadow" if deploy.shadow else "rolled back"), RED


def traffic_series(deploy: Deploy) -> list[tuple[dt.datetime, float]]:
    """The challenger's share of traffic at each change: 0 from the deploy's start while it is in shadow, each
    step's percent, then 0 at a rollback, 100 at a promotion, what another operator left at a supersede (the last
    share when not recorded); a deploy still running holds its last share until its last event."""
    points: list[tuple[dt.datetime, float]] = []
    if deploy.start is not None and (deploy.shadow is not None or not deploy.shifts):
        first = deploy.shadow_start or deploy.start
        if not deploy.shifts or first <= deploy.shifts[0][0]:
            points.append((first, 0.0))
    points += [(when, share) for when, share, _ in deploy.shifts]
    end = deploy.end
    when = _parse_time(end.at) if end is not None else None
    if end is not None and when is not None:
        details = _details(end)
        level: float | None = 0.0
        if end.event == "promoted":
            level = 100.0
        elif details.get("superseded"):
            level = _share(details.get("weights"), deploy.challenger)
            if level is None and points:
                level = points[-1][1]
        if level is not None:
            points.append((when, level))
    elif points and deploy.finish is not None and deploy.finish > points[-1][0]:
        points.append((deploy.finish, points[-1][1]))
    points.sort(key=lambda p: p[0])
    return points


def _tests_of(statistics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A verdict's per-test statistics (e_value, threshold, p_anytime, n, estimate, ...) in the judge's order."""
    tests = {str(k): v for k, v in _dict(statistics.get("tests")).items() if isinstance(v, dict)}
    return {k: tests[k] for k in sorted(tests, key=lambda k: (TESTS.index(k) if k in TESTS else len(TESTS), k))}


def _fmt_g(value: Any, digits: int = 3) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.{digits}g}"


def _fmt_count(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{int(number):,}"


def _pow10_label(k: int) -> str:
    return {-3: "0.001", -2: "0.01", -1: "0.1", 0: "1", 1: "10", 2: "100"}.get(k, f"1e{k}")


def _traffic_svg(deploy: Deploy, scale: _TimeScale) -> str:
    """A step chart of the challenger's share of traffic, the shadow stage shaded."""
    top, bottom, height = 10.0, 84.0, 106
    label = _version_label(deploy.challenger) or "the challenger"

    def y(share: float) -> float:
        return bottom - share / 100.0 * (bottom - top)

    parts = [f'<svg class="plot traffic" viewBox="0 0 {_PANEL_W} {height}" role="img" '
             f'aria-label="{_e(f"Traffic share of {label} over time")}" xmlns="http://www.w3.org/2000/svg">']
    shadow = deploy.shadow
    if shadow is not None:
        x_a = scale.x(deploy.shadow_start) if deploy.shadow_start else scale.x0
        x_b = scale.x(shadow.when) if shadow.when else (scale.x(deploy.shifts[0][0]) if deploy.shifts else scale.x1)
        x_a, x_b = max(scale.x0, min(x_a, x_b)), min(scale.x1, max(x_a, x_b))
        parts.append(f'<rect class="shadow-stage" x="{_n(x_a)}" y="{_n(top)}" width="{_n(x_b - x_a)}" '
                     f'height="{_n(bottom - top)}"><title>shadow: {_e(label)} mirrored, no user sees it'
                     f"</title></rect>")
        parts.append(f'<text class="tick" x="{_n(x_a + 3)}" y="{_n(top + 11)}">shadow</text>')
    for share in (0, 50, 100):
        parts.append(f'<line class="grid" x1="{_n(scale.x0)}" y1="{_n(y(share))}" x2="{_n(scale.x1)}" '
                     f'y2="{_n(y(share))}"/>')
        parts.append(f'<text class="tick" x="{_n(scale.x0 - 6)}" y="{_n(y(share) + 4)}" text-anchor="end">'
                     f"{share}%</text>")
    parts += _time_axis(scale, top, bottom, count=4)
    series = traffic_series(deploy)
    if series:
        points: list[str] = []
        for i, (when, share) in enumerate(series):
            x = scale.x(when)
            if i:
                points.append(f"{_n(x)},{_n(y(series[i - 1][1]))}")
            points.append(f"{_n(x)},{_n(y(share))}")
        shares = " ".join(f"{share:g}" for _, share in series)
        parts.append(f'<polyline class="share" data-shares="{shares}" points="{" ".join(points)}"/>')
        for when, share in series:
            parts.append(f'<circle class="share-point" cx="{_n(scale.x(when))}" cy="{_n(y(share))}" r="2.5">'
                         f'<title>{_e(f"{when:%Y-%m-%d %H:%M:%SZ}: {label} at {share:g}%")}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _evidence_svg(deploy: Deploy, scale: _TimeScale) -> str | None:
    """Per test, log10 of its e-value at each verdict (points joined by a line) and its rollback threshold (a
    dashed line); None when no verdict carries test statistics. The scale runs from 0.01 to a little above the
    highest threshold (up to 1000x it when an e-value went that far); points beyond are drawn hollow at the edge."""
    points: list[tuple[str, StageVerdict, float, float, dict[str, Any]]] = []  # test, verdict, x, log10 e, stats
    thresholds: dict[str, list[tuple[float, float]]] = {}  # test -> (x, threshold) where it is recorded
    for verdict in deploy.verdicts:
        if verdict.when is None:
            continue
        x = scale.x(verdict.when)
        for name, test in _tests_of(verdict.statistics).items():
            threshold = _number(test.get("threshold"))
            if threshold is not None and threshold > 0:
                thresholds.setdefault(name, []).append((x, threshold))
            e_value = _number(test.get("e_value"))
            if e_value is not None:
                points.append((name, verdict, x, math.log10(e_value) if e_value > 0 else -324.0, test))
    if not points and not thresholds:
        return None
    top_threshold = math.ceil(max((math.log10(t) for ts in thresholds.values() for _, t in ts), default=2.0))
    top_value = math.ceil(max((p[3] for p in points), default=0.0))
    lo, hi = _LOG_E_FLOOR, float(max(top_threshold + 1, min(top_value, top_threshold + 3), 1))
    top, bottom, height = 10.0, 110.0, 132

    def y(log_e: float) -> float:
        return bottom - (max(lo, min(hi, log_e)) - lo) / (hi - lo) * (bottom - top)

    parts = [f'<svg class="plot evidence" viewBox="0 0 {_PANEL_W} {height}" role="img" '
             f'aria-label="e-values of the deploy tests at each verdict" xmlns="http://www.w3.org/2000/svg">']
    every = 1 if hi - lo <= 7 else 2
    for k in range(int(lo), int(hi) + 1, every):
        parts.append(f'<line class="grid" x1="{_n(scale.x0)}" y1="{_n(y(k))}" x2="{_n(scale.x1)}" y2="{_n(y(k))}"/>')
        parts.append(f'<text class="tick" x="{_n(scale.x0 - 6)}" y="{_n(y(k) + 4)}" text-anchor="end">'
                     f"{_pow10_label(k)}</text>")
    parts += _time_axis(scale, top, bottom, count=4)
    names = list(thresholds) + [p[0] for p in points if p[0] not in thresholds]
    names = sorted(set(names), key=names.index)
    for i, name in enumerate(names):
        colour = _TEST_COLOURS.get(name, GREY)
        steps = thresholds.get(name)
        if not steps:
            continue
        # The threshold in force holds until a later verdict records another; the four tests' lines usually
        # coincide (alpha is split evenly), so each is dashed at its own offset and all four colours show.
        steps = [s for j, s in enumerate(steps) if j == 0 or s[1] != steps[j - 1][1]]
        xs = [scale.x0] + [x for x, _ in steps[1:]] + [scale.x1]
        line = []
        for j, (_, threshold) in enumerate(steps):
            line += [f"{_n(xs[j])},{_n(y(math.log10(threshold)))}", f"{_n(xs[j + 1])},{_n(y(math.log10(threshold)))}"]
        last = steps[-1][1]
        parts.append(f'<polyline class="e-threshold" data-test="{_e(name)}" data-threshold="{last:g}" '
                     f'points="{" ".join(line)}" style="stroke:{colour};stroke-dashoffset:{-5 * (i % 4)}">'
                     f"<title>{_e(f'{name}: rollback threshold {last:g} (1 / its alpha)')}</title></polyline>")
    for i, name in enumerate(names):
        colour = _TEST_COLOURS.get(name, GREY)
        mine = [p for p in points if p[0] == name]
        dx = (i % 4 - 1.5) * 3.0  # the four tests side by side at one verdict
        if len(mine) > 1:
            line = " ".join(f"{_n(x + dx)},{_n(y(log_e))}" for _, _, x, log_e, _ in mine)
            parts.append(f'<polyline class="e-line" data-test="{_e(name)}" points="{line}" style="stroke:{colour}"/>')
        for _, verdict, x, log_e, test in mine:
            clipped = log_e < lo or log_e > hi
            threshold = _number(test.get("threshold"))
            rejected = threshold is not None and log_e >= math.log10(threshold)
            css = "e-point" + (" clipped" if clipped else "") + (" rejected" if rejected else "")
            fill = "#fff" if clipped else colour
            estimate = _number(test.get("estimate"))
            tip = (f"{name} at {verdict.stage or 'a verdict'} ({verdict.action or 'n/a'}): e-value "
                   f"{_fmt_g(test.get('e_value'))} vs threshold {_fmt_g(threshold)}, anytime p "
                   f"{_fmt_g(test.get('p_anytime'), 2)}, n {_fmt_count(test.get('n'))}, estimate "
                   f"{'n/a' if estimate is None else f'{estimate:.4g}'}")
            parts.append(f'<circle class="{css}" data-test="{_e(name)}" data-stage="{_e(verdict.stage)}" '
                         f'data-log10e="{max(-324.0, log_e):.3f}" cx="{_n(x + dx)}" cy="{_n(y(log_e))}" '
                         f'r="{4.5 if rejected else 3.5}" style="fill:{fill};stroke:{colour}">'
                         f"<title>{_e(tip)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _decision_text(verdict: StageVerdict | None) -> str:
    """The final verdict in words: its stage and action, and the deciding test's e-value against its threshold
    (for a pass, or a verdict not decided by a test, the test closest to its threshold)."""
    if verdict is None:
        return "no verdict recorded"
    head = " ".join(x for x in (verdict.stage, verdict.action) if x) or "verdict"
    tests = _tests_of(verdict.statistics)
    by = verdict.statistics.get("decided_by")
    by = str(by) if by not in (None, "") else None

    def ratio(test: dict[str, Any]) -> float:
        e_value, threshold = _number(test.get("e_value")), _number(test.get("threshold"))
        return e_value / threshold if e_value is not None and threshold else -1.0

    if by in tests:
        name, which = by, "decided by"
    elif tests:
        name, which = max(tests, key=lambda k: ratio(tests[k])), "closest to its threshold:"
        head += f", decided by {by}" if by else ""
    else:
        return head + (f", decided by {by}" if by else "") + ", no test statistics"
    test = tests[name]
    e_value, threshold = _number(test.get("e_value")), _number(test.get("threshold"))
    sign = "vs" if e_value is None or threshold is None else "≥" if e_value >= threshold else "<"
    return f"{head}, {which} {name}: e-value {_fmt_g(e_value)} {sign} threshold {_fmt_g(threshold)}"


def _deploy_panel(deploy: Deploy) -> str:
    """One deploy: title (challenger vs champion, run id, outcome), traffic chart, evidence chart, one line."""
    outcome, colour = deploy_outcome(deploy)
    champion = _version_label(deploy.champion) or "champion n/a"
    title = (f'<h3>{_e(_version_label(deploy.challenger) or "challenger n/a")} vs {_e(champion)} · run '
             f'<code>{_e(deploy.run_id)}</code> · <span class="outcome" style="color:{colour}">{_e(outcome)}'
             f"</span></h3>")
    parts = [f'<article class="deploy" data-run-id="{_e(deploy.run_id)}" data-outcome="{_e(outcome)}">', title]
    if deploy.start is not None and deploy.finish is not None:
        scale = _TimeScale([deploy.start, deploy.finish], 46.0, _PANEL_W - 12.0)
        parts.append('<p class="caption">traffic share of the challenger (shaded: shadow, no user sees it)</p>')
        parts.append(_traffic_svg(deploy, scale))
        evidence = _evidence_svg(deploy, scale)
        if evidence:
            parts.append('<p class="caption">e-value per test at each verdict (log scale; dashed: its rollback '
                         "threshold)</p>" + evidence)
        else:
            parts.append('<p class="empty">No verdict statistics recorded for this deploy.</p>')
    else:
        parts.append('<p class="empty">No readable times: nothing to plot.</p>')
    final = deploy.verdicts[-1] if deploy.verdicts else None
    statistics, evidence_sums = (final.statistics, final.evidence) if final else ({}, {})
    labels = next((v for v in (evidence_sums.get("labels"), statistics.get("labels")) if _number(v) is not None), None)
    exposure = next((v for v in (evidence_sums.get("served_x"), statistics.get("exposure"))
                     if _number(v) is not None), None)
    reason = str((deploy.end or deploy.events[-1]).reason or "")
    short = reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS - 1] + "…"
    served = "n/a" if exposure is None else f"{_fmt_count(exposure)} requests"
    line = f"labels {_fmt_count(labels)} · user exposure {served} (served_x) at the decision · {_decision_text(final)}"
    parts.append(f'<p class="deploy-line">{_e(line)} · reason: <span class="reason" '
                 f'title="{_e(reason[:_TITLE_CHARS])}">{_e(short)}</span></p></article>')
    return "".join(parts)


def _deploys_section(events: list[Event]) -> str | None:
    """The "Deploys" section: one panel per deploy, newest first, the last :data:`MAX_DEPLOYS`; None without
    deploys."""
    deploys = deploys_of(events)
    if not deploys:
        return None
    shown = deploys[:MAX_DEPLOYS]
    note = (f"Newest first: the last {len(shown)} of {len(deploys)} deploys." if len(deploys) > len(shown)
            else "Newest first.")
    legend = "".join(f'<span><i style="background:{c}"></i>{_e(name)}</span>' for name, c in _TEST_COLOURS.items())
    return ('<section id="deploys"><h2>Deploys</h2>'
            f'<p class="meta">{_e(note)} Hollow points: beyond the plotted range.</p>'
            f'<p class="legend">{legend}</p><div class="deploys">' + "".join(_deploy_panel(d) for d in shown)
            + "</div></section>")


# ------------------------------------------------------------------------------------------------- the tables


def _versions_table(versions: list[VersionInfo]) -> str:
    if not versions:
        return '<p class="empty">No registered versions.</p>'
    key_metrics = TASK_KEY_METRICS[task_of(versions)]
    head = ("version", "status", "aliases", *key_metrics, "data batches", "code version", "gate reason")
    rows = []
    for v in sorted(versions, key=lambda v: _version_key(v.version), reverse=True):
        tags = v.tags or {}
        batches = [b for b in str(tags.get(TAG_DATA_BATCHES, "")).split(",") if b.strip()]
        if len(batches) > 2:
            batch_cell = (f'<span title="{_e(", ".join(batches))}">{len(batches)}: '
                          f"{_e(batches[0])} … {_e(batches[-1])}</span>")
        else:
            batch_cell = _e(", ".join(batches))
        reason = str(tags.get(TAG_GATE_REASON, ""))
        reason_cell = (f"<details><summary>{_e(reason[:120])}…</summary>{_e(reason)}</details>"
                       if len(reason) > 160 else _e(reason))
        aliases = " ".join(f'<span class="alias{" champion" if a == CHAMPION else ""}">{_e(a)}</span>'
                           for a in v.aliases)
        metrics = "".join(f'<td class="num">{_fmt_metric(v.metrics.get(m)) if m in v.metrics else ""}</td>'
                          for m in key_metrics)
        rows.append(f"<tr><td>{_e(_version_label(v.version))}</td><td>{_e(v.status)}</td><td>{aliases}</td>"
                    f"{metrics}<td>{batch_cell}</td><td><code>{_e(tags.get(TAG_CODE_VERSION, ''))}</code></td>"
                    f'<td class="reason">{reason_cell}</td></tr>')
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


#: Versions whose fairness audit the "Fairness" section shows, newest first.
MAX_FAIRNESS_VERSIONS = 4


def _fairness_section(events: list[Event]) -> str | None:
    """The "Fairness" section: for the newest :data:`MAX_FAIRNESS_VERSIONS` versions gated with a fairness audit
    (the ``fairness`` details of their ``gate_passed`` / ``gate_rejected`` events: see
    :mod:`lifecycle.training.fairness`), a small table per attribute of the groups' figures, then each metric
    against its threshold and the notes; None when no gate event holds an audit."""
    from lifecycle.training.fairness import audit_tables

    audited: dict[str, Event] = {}
    for event in events:  # ledger order: the last gate event of a version wins
        if event.event in ("gate_passed", "gate_rejected") and isinstance(_details(event).get("fairness"), dict):
            audited[str(event.version)] = event
    if not audited:
        return None
    parts = ['<section id="fairness"><h2>Fairness</h2><p class="meta">Each version\'s audit on its held-out rows '
             "when it was gated, newest first; a breach rejects the version.</p>"]
    for version in sorted(audited, key=_version_key, reverse=True)[:MAX_FAIRNESS_VERSIONS]:
        event = audited[version]
        colour = outcome_colour(event)
        for table in audit_tables(_details(event)["fairness"]):
            title = f"{_version_label(version)} · {table['attribute']} (column {table['column']})" \
                if table["attribute"] else _version_label(version)
            parts.append(f'<h3><i class="dot" style="background:{colour}"></i>{_e(title)} · {_e(event.event)}</h3>')
            if table["header"]:
                parts.append("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in table["header"])
                             + "</tr></thead><tbody>"
                             + "".join("<tr>" + f"<td>{_e(row[0])}</td>" + "".join(f'<td class="num">{_e(c)}</td>'
                                                                                  for c in row[1:]) + "</tr>"
                                       for row in table["rows"]) + "</tbody></table>")
            items = table["metrics"] + [f"note: {n}" for n in table["notes"]]
            if items:
                parts.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in items) + "</ul>")
    return "".join(parts) + "</section>"


def _events_table(events: list[Event], report_dir: Path | None) -> str:
    if not events:
        return '<p class="empty">No events recorded yet.</p>'
    rows = []
    for event in events:
        colour = outcome_colour(event)
        links = " ".join(_event_links(event, report_dir))
        bits = "; ".join(_detail_bits(event))
        rows.append(f'<tr><td class="time">{_e(_fmt_time(event.at))}</td><td>{_e(_version_label(event.version))}'
                    f'</td><td><i class="dot" style="background:{colour}"></i>{_e(event.event)}</td>'
                    f'<td class="reason">{_e(event.reason)}</td><td class="details">{bits}</td>'
                    f"<td>{links}</td></tr>")
    return ("<table><thead><tr><th>time (UTC)</th><th>version</th><th>event</th><th>reason</th><th>details</th>"
            "<th>links</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


_CSS = """
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6270;margin:0 0 10px}
.links a{margin-right:14px}
.counts{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0;padding:0}
.counts li{list-style:none;background:#fff;border:1px solid #dde1e7;border-radius:12px;padding:2px 10px}
.counts b{margin-left:4px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:4px 16px 14px;margin-top:16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e6e9ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
td.reason{max-width:420px;white-space:pre-wrap;word-break:break-word}
td.details{color:#4a5160;max-width:300px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.alias{background:#e8eefc;border-radius:8px;padding:0 6px;margin-right:4px}
.alias.champion{background:#fbefc4}
.dot,.legend i{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}
.legend span{margin-right:16px;color:#4a5160}
.empty{color:#6b7280;font-style:italic}
svg.plot{width:100%;height:auto;display:block}
svg .lane{fill:#f3f5f8}svg .lane-label{font-size:12px;fill:#3b4250}
svg .grid{stroke:#e3e6eb;stroke-width:1}svg .axis{stroke:#9aa1ad;stroke-width:1}
svg .tick{font-size:11px;fill:#5b6270}svg .value{font-size:11px;fill:#1d2330}
svg .marker{stroke:#fff;stroke-width:1.5}
svg .trend{fill:none;stroke:#4a5160;stroke-width:1.5;stroke-opacity:.6}
svg .threshold{fill:none;stroke:#d23b3b;stroke-width:1.5;stroke-dasharray:6 4}
svg .promo-line,svg .rollback-line{stroke-width:1.5;stroke-dasharray:3 3}
.deploys{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px;margin-top:6px}
.deploy{border:1px solid #e3e6eb;border-radius:6px;padding:4px 10px 8px}
.deploy h3{font-size:14px;margin:4px 0}
.caption{font-size:12px;color:#5b6270;margin:6px 0 0}
.deploy-line{font-size:12px;margin:6px 0 0;word-break:break-word}
svg .shadow-stage{fill:#eceff4}
svg .share{fill:none;stroke:#3b6fd2;stroke-width:2}svg .share-point{fill:#3b6fd2}
svg .e-threshold{fill:none;stroke-width:1.5;stroke-dasharray:5 15}
svg .e-line{fill:none;stroke-width:1.2;stroke-opacity:.6}
svg .e-point{stroke-width:1.2}
"""


# --------------------------------------------------------------------------------------------------- the page


def render_report(model: str, events: list[Event], versions: list[VersionInfo], *, title: str | None = None,
                  links: dict[str, str] | None = None, report_dir: Path | None = None,
                  generated_at: dt.datetime | None = None, readings: list[Event] | None = None) -> str:
    """The lifecycle report of one model as a self-contained HTML page.

    ``events`` are the model's ledger events (any order; shown by time), ``versions`` its registered versions.
    ``links`` (label to URL, e.g. the Airflow and MLflow UIs) are listed at the top. ``report_dir`` is the
    folder the page will be saved in: absolute report paths in event details are linked relative to it.
    ``generated_at`` (default: now) is the time stamped in the header. ``readings`` are the monitor's results
    per interval (``details``: ``drift_share``, ``threshold``), plotted in the drift chart only. Deploys are read
    from ``events`` by run id (:func:`deploys_of`); the last :data:`MAX_DEPLOYS` get a panel each.
    """
    events = list(events)
    versions = list(versions)
    generated = (generated_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    title = title or f"{model} — model lifecycle"

    # Chronological; events whose time does not parse keep ledger order at the end (table only, not plotted).
    parsed = [(_parse_time(e.at), i, e) for i, e in enumerate(events)]
    parsed.sort(key=lambda p: (p[0] is None, p[0] or dt.datetime.min.replace(tzinfo=dt.UTC), p[1]))
    ordered = [e for _, _, e in parsed]
    timed = [(when, e) for when, _, e in parsed if when is not None]
    timed_readings = sorted(((w, r) for r in readings or [] if (w := _parse_time(r.at)) is not None),
                            key=lambda p: p[0])

    counts = Counter(e.event for e in events)
    kinds = [k for k in EVENTS if counts[k]] + sorted(k for k in counts if k not in EVENTS)
    champions = [v for v in versions if CHAMPION in v.aliases]

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
           f"<header><h1>{_e(title)}</h1>",
           f'<p class="meta">Model <b>{_e(model)}</b> · generated {_e(generated.strftime("%Y-%m-%d %H:%M:%S"))} UTC'
           f" · {len(events)} events · {len(versions)} versions"
           + (f" · champion <b>{_e(_version_label(champions[0].version))}</b>" if champions else "") + "</p>"]
    if links:
        out.append('<nav class="links">' + "".join(_link(label, url, report_dir) for label, url in links.items())
                   + "</nav>")
    if kinds:
        out.append('<ul class="counts">' + "".join(f"<li>{_e(k)}<b>{counts[k]}</b></li>" for k in kinds)
                   + "</ul>")
    out.append("</header>")

    out.append("<section><h2>Versions</h2>" + _versions_table(versions) + "</section>")

    out.append("<section><h2>Timeline</h2>")
    if timed:
        scale = _TimeScale([when for when, _ in timed + timed_readings], 130.0, _SVG_W - 20.0)
        out.append(_timeline_svg(timed, scale) + _legend())
    else:
        scale = None
        out.append('<p class="empty">No events recorded yet.</p>')
    out.append("</section>")

    headline = TASK_KEY_METRICS[task_of(versions)][0]
    auc = _auc_svg(versions, headline)
    if auc:
        out.append(f"<section><h2>{_e(_METRIC_LABELS[headline])} per version</h2>" + auc + "</section>")
    drift = _drift_svg(timed, scale, timed_readings) if scale else None
    if drift:
        out.append("<section><h2>Drift share</h2>" + drift
                   + '<p class="legend"><span>dashed red: drift threshold</span><span>dotted green: promotion'
                     "</span><span>dotted red: rollback</span></p></section>")

    deploys = _deploys_section(events)
    if deploys:
        out.append(deploys)
    fairness = _fairness_section(events)
    if fairness:
        out.append(fairness)

    out.append("<section><h2>Events</h2>" + _events_table(ordered, report_dir) + "</section>")
    out.append("</main></body></html>\n")
    return "\n".join(out)


def write_report(model: str, events: list[Event], versions: list[VersionInfo], out: Path, **kw: Any) -> Path:
    """Render the report and write it to ``out`` atomically (:func:`lifecycle.fileio.atomic_write`), so a
    reader never sees half a page. Creates the parent folders; links are made relative to them unless
    ``report_dir`` is given. Returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kw.setdefault("report_dir", out.parent)
    page = render_report(model, events, versions, **kw)
    return atomic_write(out, page, mode=0o644)  # a report is meant to be read
