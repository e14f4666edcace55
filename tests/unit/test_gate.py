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


def test_undefined_overall_metric_fails_its_threshold_naming_the_reason():
    why = "one class (all negative) in the 40 rows of the evaluation"
    candidate = Evaluation({"roc_auc": None, "log_loss": 0.3, "calibration_error": 0.02, "rows": 40.0,
                            "undefined": {"roc_auc": why}})
    decision = decide(candidate, None, POLICY)
    assert not decision.passed
    assert decision.reason == f"gate: rejected candidate: roc_auc undefined ({why}): threshold >= 0.7 not met"
    regression = decide(candidate, ev(), POLICY)
    assert "regression.roc_auc" in [c.name for c in regression.checks if not c.passed]


def test_undefined_slice_metric_on_a_large_slice_is_not_judged_and_said_so():
    why = "one class (all negative) in the 400 rows of slice region=west"
    slices = {"region=west": {"roc_auc": None, "rows": 400.0, "undefined": {"roc_auc": why}},
              "region=tiny": {"roc_auc": None, "rows": 3.0, "undefined": {"roc_auc": "one class"}}}
    decision = decide(ev(slices=slices), None, POLICY)
    assert decision.passed
    check = next(c for c in decision.checks if c.name == "slice.region=west.roc_auc")
    assert check.passed and not check.judged
    assert check.detail == f"slice region=west: roc_auc not judged: {why} (400 rows)"
    assert not any("tiny" in c.name for c in decision.checks)  # below min_slice_rows: skipped as ever
    assert f"1 not judged: slice region=west: roc_auc not judged: {why}" in decision.reason
    assert decision.to_dict()["checks"][-1]["judged"] is False


def test_undefined_champion_metric_leaves_the_regression_check_not_judged():
    champion = Evaluation({"roc_auc": 0.8, "log_loss": None, "rows": 2000.0, "undefined": {"log_loss": "why"}})
    decision = decide(ev(), champion, POLICY, version=3)
    check = next(c for c in decision.checks if c.name == "regression.log_loss")
    assert decision.passed and check.passed and not check.judged and "(why)" in check.detail
    assert "roc_auc 0.8000 vs champion 0.8000" in decision.reason
