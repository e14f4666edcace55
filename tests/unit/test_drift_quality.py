"""Detection quality: the monitor detects covariate drift at onset without ever firing on stable intervals, over 10
seeds of the generator (Evidently's computation; a module of its own so `make test`'s xdist workers can run it
beside test_drift.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from lifecycle.monitoring.drift import compute_drift
from lifecycle.monitoring.policy import decide
from tests.unit.test_drift import SPEC, batch, reference, spec_with


@pytest.mark.slow
def test_detection_quality_over_ten_seeds():
    """3 stable intervals, then covariate drift ramping up: found at onset (or the next interval), never before."""
    policy = SPEC.monitoring.model_copy(update={"cooldown_minutes": 0})
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    plan = ["stable", "stable", "stable", "covariate_drift:0.3", "covariate_drift:0.5"]
    onset = plan.index("covariate_drift:0.3")
    for seed in range(10):
        spec = spec_with(seed=100 + seed)
        ref = reference(spec)
        fired = []
        for i, scenario in enumerate(plan):
            drift = compute_drift(SPEC, ref, batch(spec, dt.date(2026, 2, 1) + dt.timedelta(days=i), scenario),
                                  prediction=False, summary=False)
            d = decide({"rows": drift.current_rows, "drift_share": drift.share, "drifted": drift.drifted,
                        "features": len(drift.scores)}, policy, now=now, interval_end=now)
            fired.append(d.retrain)
            if i >= onset and d.retrain:
                break
        assert not any(fired[:onset]), f"seed {seed}: fired on a stable interval: {fired}"
        assert any(fired[onset:onset + 2]), f"seed {seed}: drift not found within one interval of onset: {fired}"
