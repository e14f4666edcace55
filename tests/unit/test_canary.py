from __future__ import annotations

import pytest

from lifecycle.serving.canary import enough_evidence, judge, one_sided_worse_pvalue
from lifecycle.serving.traffic import TrafficError, validate_weights
from lifecycle.spec import CanaryPlan

PLAN = CanaryPlan(steps=[5, 25, 100], min_requests=100, min_seconds=10,
                  slo={"max_error_rate_increase": 0.01, "max_p99_ms": 20, "max_p99_ratio": 2.0, "alpha": 0.01,
                       "min_feedback": 100})


def stats(requests=1000, errors=0, p99=5.0, feedback=500, correct=440):
    return {"requests": requests, "errors": errors, "p99_ms": p99, "feedback": feedback, "correct": correct}


def decide(champion, challenger, **kw):
    return judge(champion, challenger, PLAN, step=1, weight=5, version="2", champion_version="1", **kw)


def test_equal_versions_pass():
    decision = decide(stats(), stats(requests=60, feedback=300, correct=262))
    assert decision.passed and decision.reason.startswith("canary step 1 (5%): v2 holds against v1")


@pytest.mark.parametrize(
    ("challenger", "fragment"),
    [
        pytest.param(stats(errors=30), "breached error_rate: error rate 3.00% vs champion 0.00%", id="errors"),
        pytest.param(stats(p99=48.0), "breached p99_latency: p99 48.00 ms vs limit 20.00 ms", id="latency"),
        pytest.param(stats(feedback=400, correct=300), "breached accuracy: accuracy 0.750 (n=400) vs champion 0.880",
                     id="accuracy"),
    ],
)
def test_each_slo_breach_names_itself_and_by_how_much(challenger, fragment):
    decision = decide(stats(), challenger)
    assert not decision.passed and fragment in decision.reason


def test_a_small_accuracy_gap_on_few_labels_is_not_a_breach():
    # 84% vs 88% on 120 labels: within noise (p ~ 0.1), so no rollback on a coin flip
    decision = decide(stats(), stats(feedback=120, correct=101))
    assert decision.passed


def test_the_same_gap_on_many_labels_is():
    decision = decide(stats(feedback=5000, correct=4400), stats(feedback=5000, correct=4200))
    assert not decision.passed and "accuracy" in decision.reason


def test_accuracy_is_not_judged_without_enough_labels():
    decision = decide(stats(), stats(feedback=20, correct=2))
    assert decision.passed and "not judged: 20 / 500 labels" in decision.reason


def test_latency_limit_scales_with_a_slow_champion():
    assert decide(stats(p99=30.0), stats(p99=55.0)).passed  # limit = max(20, 2 x 30)


def test_timeout_without_evidence_is_a_breach():
    decision = decide(stats(), stats(requests=12, feedback=0), timed_out=True)
    assert not decision.passed and "still missing 12/100 requests" in decision.reason


def test_pvalue_is_one_sided():
    assert one_sided_worse_pvalue(880, 1000, 800, 1000) < 1e-5
    assert one_sided_worse_pvalue(800, 1000, 880, 1000) > 0.99


def test_enough_evidence_lists_what_is_missing():
    ok, missing = enough_evidence({"requests": 50, "feedback": 10}, PLAN, elapsed=3)
    assert not ok and missing == "50/100 requests, 3/10s, 10/100 labels"
    assert enough_evidence({"requests": 100, "feedback": 100}, PLAN, elapsed=10) == (True, "")


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [({"1": 50, "2": 40}, "sum to 100, got 90"), ({"1": 100, "3": 0}, "version 3 is not loaded"),
     ({"1": True}, "integer percent"), ({}, "non-empty")],
)
def test_weights_are_validated_as_a_whole(weights, fragment):
    with pytest.raises(TrafficError, match=fragment):
        validate_weights(weights, loaded={"1", "2"})


def test_canary_steps_must_end_at_100():
    with pytest.raises(ValueError, match="ending at 100"):
        CanaryPlan(steps=[5, 50])


def test_worse_probabilities_breach_the_brier_check_even_at_equal_accuracy():
    champion = stats() | {"brier": 0.080, "brier_var": 0.02}
    challenger = stats(feedback=400, correct=352) | {"brier": 0.160, "brier_var": 0.03}
    decision = decide(champion, challenger)
    assert not decision.passed and "breached brier: Brier score 0.1600 vs champion 0.0800" in decision.reason


def test_equal_brier_passes():
    champion = stats() | {"brier": 0.080, "brier_var": 0.02}
    assert decide(champion, stats(feedback=400, correct=352) | {"brier": 0.082, "brier_var": 0.02}).passed
