"""The monitoring policy as a pure function: drift and live performance of an interval, cooldown and retrain
cap from the ledger -> alert and/or retrain, with the reason in one line."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lifecycle.clock import parse_utc

if TYPE_CHECKING:

    from lifecycle.spec import MonitoringPolicy



# ------------------------------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class PolicyDecision:
    """``drift``: the interval drifted past policy (ledger ``drift_detected``); ``retrain``: trigger training."""

    drift: bool
    retrain: bool
    reason: str


def _minutes(delta: dt.timedelta) -> str:
    m = delta.total_seconds() / 60
    return f"{m:.0f} min" if m < 120 else f"{m / 60:.1f} h"


def decide(measured: dict[str, Any], policy: MonitoringPolicy, *, now: dt.datetime, interval_end: dt.datetime,
           backfill: bool = False, last_retrain_or_promotion: dt.datetime | None = None,
           retrains_last_24h: int = 0) -> PolicyDecision:
    """The retraining policy, a pure function of one interval's measurements and the model's recent history.

    ``measured`` holds ``rows``, ``drift_share``, ``drifted`` (feature names), ``features`` (count),
    ``prediction_drift`` (or None; the drift of the task's prediction) and ``performance``: ``{metric: {"live",
    "offline"}}`` with ``labels``. Each metric of ``policy.max_performance_drop`` (the spec's task's:
    :data:`lifecycle.spec.MONITORED_METRICS`, all higher-is-better) drops by offline - live; one with no live or
    offline value is not judged.
    """
    rows = int(measured["rows"])
    if rows < policy.min_rows:
        return PolicyDecision(False, False, f"not judged: {rows} rows in the interval, monitoring.min_rows is "
                                            f"{policy.min_rows}")
    share, drifted = float(measured["drift_share"]), list(measured["drifted"])
    total = int(measured.get("features") or max(len(drifted), 1))
    findings = []
    if share >= policy.drift_share:
        findings.append(f"drift share {share:.2f} >= {policy.drift_share:.2f} ({len(drifted)}/{total} features "
                        f"drifted: {', '.join(drifted)})")
    pred = measured.get("prediction_drift")
    if policy.prediction_triggers and pred is not None and pred >= policy.prediction_threshold:
        findings.append(f"prediction drift {pred:.3f} >= {policy.prediction_threshold:.3f}")
    perf = measured.get("performance") or {}
    labels = int(perf.get("labels", 0))
    perf_notes = []
    if labels >= policy.min_labels:
        for metric, max_drop in policy.max_performance_drop.items():
            live, offline = perf.get(metric, {}).get("live"), perf.get(metric, {}).get("offline")
            if live is None or offline is None:
                continue
            drop = offline - live
            note = f"live {metric} {live:.3f} vs offline {offline:.3f}"
            if drop > max_drop:
                findings.append(f"{note}: dropped {drop:.3f} > {max_drop:.3f} on {labels} labels")
            else:
                perf_notes.append(note)
    elif labels:
        perf_notes.append(f"{labels} labels (< min_labels {policy.min_labels}): performance not judged")
    if not findings:
        why = f"no drift: share {share:.2f} < {policy.drift_share:.2f} ({len(drifted)}/{total} features drifted" \
              + (f": {', '.join(drifted)})" if drifted else ")")
        return PolicyDecision(False, False, "; ".join([why, *perf_notes]))
    found = "; ".join(findings)
    if backfill or now - interval_end > dt.timedelta(hours=policy.stale_after_hours):
        return PolicyDecision(True, False, f"{found}; past interval (ended {_minutes(now - interval_end)} ago"
                                           f"{', backfill' if backfill else ''}): report only, no retrain")
    if last_retrain_or_promotion is not None:
        since = now - last_retrain_or_promotion
        if since < dt.timedelta(minutes=policy.cooldown_minutes):
            return PolicyDecision(True, False, f"{found}; cooldown: last retrain or promotion {_minutes(since)} "
                                               f"ago (< {policy.cooldown_minutes:g} min), no retrain")
    if retrains_last_24h >= policy.max_retrains_per_day:
        return PolicyDecision(True, False, f"{found}; daily cap: {retrains_last_24h} retrains in the last 24 h "
                                           f"(max_retrains_per_day {policy.max_retrains_per_day}), no retrain")
    return PolicyDecision(True, True, found)


def history(ledger: Any, model: str, now: dt.datetime) -> tuple[dt.datetime | None, int]:
    """Last retrain trigger or promotion of ``model``, and the retrain triggers of the last 24 h."""
    def at(e: Any) -> dt.datetime:
        return parse_utc(e.at)

    relevant = [at(e) for e in ledger.events(model) if e.event in ("retrain_triggered", "promoted")]
    recent = sum(1 for e in ledger.events(model, "retrain_triggered") if now - at(e) < dt.timedelta(hours=24))
    return (max(relevant) if relevant else None), recent


def as_dict(decision: PolicyDecision) -> dict[str, Any]:
    return asdict(decision)
