"""The retraining policy as a pure function: thresholds, minimum rows, performance, cooldown, daily cap, past
intervals."""
from __future__ import annotations

import datetime as dt

import pytest

from lifecycle.monitoring.policy import decide
from lifecycle.spec import MonitoringPolicy

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
POLICY = MonitoringPolicy(drift_share=0.3, min_rows=1000, min_labels=200, cooldown_minutes=60,
                          max_retrains_per_day=2, max_performance_drop={"roc_auc": 0.05}, stale_after_hours=6)


def measured(share=0.0, drifted=(), rows=5000, labels=0, live=None, offline=0.80, pred=None):
    return {"rows": rows, "drift_share": share, "drifted": list(drifted), "features": 10, "prediction_drift": pred,
            "performance": {"labels": labels, "roc_auc": {"live": live, "offline": offline}}}


def run(m, **kw):
    kw.setdefault("interval_end", NOW - dt.timedelta(minutes=5))
    return decide(m, POLICY, now=NOW, **kw)


def test_stable_interval_does_not_fire_and_says_why():
    d = run(measured(0.1, ["income"]))
    assert (d.drift, d.retrain) == (False, False)
    assert d.reason.startswith("no drift: share 0.10 < 0.30 (1/10 features drifted: income)")


def test_drift_share_at_threshold_fires():
    d = run(measured(0.3, ["age", "income", "debt_to_income"]))
    assert (d.drift, d.retrain) == (True, True)
    assert d.reason == "drift share 0.30 >= 0.30 (3/10 features drifted: age, income, debt_to_income)"


def test_too_few_rows_is_not_judged_even_when_drifted():
    d = run(measured(0.9, ["age"] * 9, rows=999))
    assert (d.drift, d.retrain) == (False, False)
    assert "999 rows" in d.reason and "min_rows is 1000" in d.reason


def test_performance_drop_alone_fires():
    d = run(measured(0.0, labels=500, live=0.70))
    assert d.retrain and "live roc_auc 0.700 vs offline 0.800: dropped 0.100 > 0.050 on 500 labels" in d.reason


def test_performance_within_tolerance_or_too_few_labels_does_not_fire():
    assert not run(measured(0.0, labels=500, live=0.77)).drift
    d = run(measured(0.0, labels=150, live=0.50))
    assert not d.drift and "150 labels (< min_labels 200): performance not judged" in d.reason


def test_prediction_drift_fires_only_when_the_policy_says_so():
    m = measured(0.0, pred=0.5)
    assert not decide(m, POLICY, now=NOW, interval_end=NOW).drift
    policy = POLICY.model_copy(update={"prediction_triggers": True})
    assert decide(m, policy, now=NOW, interval_end=NOW).retrain


@pytest.mark.parametrize("minutes_ago, retrain", [(10, False), (59, False), (61, True)])
def test_cooldown_since_last_retrain_or_promotion(minutes_ago, retrain):
    d = run(measured(0.5, ["a"] * 5), last_retrain_or_promotion=NOW - dt.timedelta(minutes=minutes_ago))
    assert d.drift and d.retrain is retrain
    if not retrain:
        assert f"cooldown: last retrain or promotion {minutes_ago} min ago (< 60 min), no retrain" in d.reason


def test_daily_cap():
    assert run(measured(0.5, ["a"] * 5), retrains_last_24h=1).retrain
    d = run(measured(0.5, ["a"] * 5), retrains_last_24h=2)
    assert d.drift and not d.retrain and "daily cap: 2 retrains in the last 24 h" in d.reason


def test_backfill_and_stale_intervals_report_but_never_retrain():
    d = run(measured(0.5, ["a"] * 5), backfill=True)
    assert d.drift and not d.retrain and "backfill" in d.reason and "report only" in d.reason
    d = run(measured(0.5, ["a"] * 5), interval_end=NOW - dt.timedelta(hours=7))
    assert d.drift and not d.retrain and "past interval (ended 7.0 h ago)" in d.reason
