from __future__ import annotations

import pytest

from lifecycle.spec import GatePolicy
from lifecycle.training.evaluation import Evaluation
from lifecycle.training.promotion import decide

POLICY = GatePolicy(thresholds={"roc_auc": 0.7, "calibration_error": 0.08},
                    max_regression={"roc_auc": 0.005, "log_loss": 0.01},
                    slice_thresholds={"roc_auc": 0.62}, min_slice_rows=100)


def ev(auc=0.8, log_loss=0.3, ece=0.02, slices=None) -> Evaluation:
    return Evaluation({"roc_auc": auc, "log_loss": log_loss, "calibration_error": ece, "rows": 2000.0},
                      slices or {})


def test_first_model_passing_absolute_thresholds_becomes_champion():
    decision = decide(ev(), None, POLICY)
    assert decision.passed and decision.first_model
    assert "first model: becomes champion" in decision.reason


def test_first_model_below_threshold_is_rejected_with_the_number():
    decision = decide(ev(auc=0.65), None, POLICY)
    assert not decision.passed
    assert decision.reason == "gate: rejected candidate: roc_auc 0.6500 < threshold 0.7"


@pytest.mark.parametrize(
    ("candidate", "passed", "fragment"),
    [
        pytest.param(ev(auc=0.797), True, "roc_auc 0.7970 vs champion 0.8000", id="within-slack"),
        pytest.param(ev(auc=0.79), False, "roc_auc 0.7900 < champion 0.8000 - 0.005", id="auc-regression"),
        pytest.param(ev(log_loss=0.32), False, "log_loss 0.3200 > champion 0.3000 + 0.01", id="lower-is-better"),
    ],
)
def test_regression_against_champion(candidate, passed, fragment):
    decision = decide(candidate, ev(), POLICY, version=7)
    assert decision.passed is passed
    assert fragment in decision.reason
    assert ("v7" in decision.reason) and not decision.first_model


def test_calibration_ceiling_is_a_ceiling():
    assert not decide(ev(ece=0.09), None, POLICY).passed
    assert decide(ev(ece=0.07), None, POLICY).passed


def test_slice_floor_applies_only_to_slices_with_enough_rows():
    weak_big = {"region=south": {"roc_auc": 0.55, "rows": 400.0}}
    weak_small = {"region=south": {"roc_auc": 0.55, "rows": 40.0}}
    rejected = decide(ev(slices=weak_big), None, POLICY)
    assert not rejected.passed and "slice region=south: roc_auc 0.5500 misses floor 0.62" in rejected.reason
    assert decide(ev(slices=weak_small), None, POLICY).passed


def test_nan_metric_never_passes():
    assert not decide(ev(auc=float("nan")), None, POLICY).passed


def test_every_failed_check_is_kept_for_the_record():
    decision = decide(ev(auc=0.6, ece=0.2), None, POLICY)
    assert [c.name for c in decision.checks if not c.passed] == ["threshold.roc_auc", "threshold.calibration_error"]
    assert "(+1 more failed checks)" in decision.reason
