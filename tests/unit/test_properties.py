"""Properties of every judging stage on small and degenerate data, with Hypothesis: offline evaluation, the
promotion gate, drift scoring, live performance and the canary judge take frames of 0 to 50 rows, a single
class, constant and all-missing columns, one-row slices, codes stored as numbers and probabilities of exactly 0
and 1 (and small random evidence sums, consistent or not), and

(a) raise no exception but the documented, typed ones (ValueError for labels other than 0/1, probabilities
    outside [0, 1] and non-finite evidence, which the inputs never hold, but the last test gives the judge);
(b) return plain JSON: ``json.dumps(result, allow_nan=False)`` holds (Airflow refuses NaN in XCom);
(c) give a reason for every undefined (None) metric.

These are deterministic properties, not statistical tests: each must hold on every example, and Hypothesis runs
derandomized (a fixed seed, no example database), so the same examples run every time and a failure is a bug,
never bad luck (false-failure probability 0). The examples are small: the file runs in about half a minute;
drift through Evidently costs ~0.5 s an example (and Evidently's import ~10 s), so it gets fewer examples than
the pure functions.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.monitoring.drift import compute_drift, full_scores
from lifecycle.monitoring.performance import live_performance
from lifecycle.registry.artifacts import PREDICTION
from lifecycle.serving.evidence import PairedEvidence, decide
from lifecycle.spec import CanaryPlan, GatePolicy, ShadowPlan, Slice, get_spec
from lifecycle.training.evaluation import (
    METRIC_NAMES,
    UNDEFINED,
    Evaluation,
    binary_metrics,
    calibration_error,
    evaluate,
)
from lifecycle.training.promotion import decide as gate

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EVIDENTLY = settings(FAST, max_examples=10)

TARGET = "default"
SLICES = [Slice(name="region", column="region"), Slice(name="age_band", column="age", bins=[18, 25, 40, 60, 101])]
METRICS = ("roc_auc", "f1", "precision", "recall", "log_loss", "calibration_error", "accuracy")


def plain_json(value: Any) -> Any:
    """``value`` through ``json.dumps(..., allow_nan=False)`` and back (fails on NaN or infinity)."""
    return json.loads(json.dumps(value, allow_nan=False))


def assert_metrics(metrics: dict[str, Any]) -> None:
    """A metrics mapping of :func:`binary_metrics`: every metric finite or None with a reason, and no reason for a
    metric that has a value."""
    assert set(metrics) - {UNDEFINED} == set(METRIC_NAMES)
    reasons = metrics.get(UNDEFINED, {})
    assert reasons or UNDEFINED not in metrics  # the key only when something is undefined
    for name in METRIC_NAMES:
        value = metrics[name]
        if value is None:
            assert isinstance(reasons.get(name), str) and reasons[name], name
        else:
            assert isinstance(value, float) and math.isfinite(value) and name not in reasons, name
    assert metrics["rows"] is not None


# ------------------------------------------------------------------------------------------------ strategies
@st.composite
def probabilities(draw: st.DrawFn, n: int) -> np.ndarray:
    """n probabilities: constant (0, 1, 0.5 or any), from a few values with ties, or any in [0, 1]."""
    kind = draw(st.sampled_from(["constant", "few", "any"]))
    if kind == "constant":
        value = draw(st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1))
        return np.full(n, value)
    values = st.sampled_from([0.0, 1.0, 0.5, 1e-9, 1 - 1e-9]) if kind == "few" else st.floats(0, 1)
    return np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)


@st.composite
def labels(draw: st.DrawFn, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["mixed", "all 0", "all 1"]))
    if kind != "mixed":
        return np.full(n, int(kind[-1]))
    return np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)


def _column(draw: st.DrawFn, n: int, values: st.SearchStrategy, missing: Any) -> list[Any]:
    """n values: drawn (with missing ones mixed in) half the time, else constant or all missing."""
    kind = draw(st.sampled_from(["drawn", "drawn", "constant", "missing"]))
    if kind == "constant":
        return [draw(values)] * n
    if kind == "missing":
        return [missing] * n
    return draw(st.lists(values | st.just(missing), min_size=n, max_size=n))


@st.composite
def holdout(draw: st.DrawFn, max_rows: int = 50) -> tuple[pd.DataFrame, np.ndarray]:
    """A held-out frame with the target and two slice columns, and one probability per row. ``region`` holds text
    or codes stored as numbers; ``age`` may be constant, all missing, or outside every bin."""
    n = draw(st.integers(0, max_rows))
    codes = draw(st.booleans())
    names = st.sampled_from([1.0, 2.0, 3.0]) if codes else st.sampled_from(["west", "east", "a b"])
    region = _column(draw, n, names, np.nan if codes else None)
    age = _column(draw, n, st.sampled_from([18.0, 30.0, 59.5, 101.0, 5.0]) | st.floats(0, 120), np.nan)
    frame = pd.DataFrame({TARGET: draw(labels(n)), "region": pd.Series(region, dtype=float if codes else object),
                          "age": pd.Series(age, dtype=float)})
    return frame, draw(probabilities(n))


thresholds = st.sampled_from([0.5, 0.0, 1.0]) | st.floats(0, 1)


# ------------------------------------------------------------------------------------------------ evaluation
@FAST
@given(st.integers(0, 50).flatmap(lambda n: st.tuples(labels(n), probabilities(n))), thresholds)
def test_binary_metrics_are_plain_json_with_a_reason_for_every_undefined_metric(yp, threshold) -> None:
    y, p = yp
    metrics = binary_metrics(y, p, threshold, where="slice region=west")
    assert plain_json(metrics) == metrics
    assert_metrics(metrics)
    assert metrics["rows"] == len(y)
    ece = calibration_error(y, p)
    assert (ece is None) == (len(y) == 0) and (ece is None or math.isfinite(ece))


@FAST
@given(holdout(), thresholds)
def test_evaluate_round_trips_as_plain_json_on_any_holdout(data, threshold) -> None:
    frame, p = data
    ev = evaluate(frame, TARGET, p, SLICES, threshold)
    stored = plain_json(ev.to_dict())
    assert Evaluation.from_dict(stored) == ev
    assert_metrics(ev.overall)
    for name, metrics in ev.slices.items():
        assert_metrics(metrics)
        assert metrics["rows"] >= 1
        for metric, why in metrics.get(UNDEFINED, {}).items():
            assert ev.reason(metric, name) == why
    flat = plain_json(ev.flat("test_"))
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    assert sum(m["rows"] for n, m in ev.slices.items() if n.startswith("region=")) <= len(frame)


@FAST
@given(holdout(), st.lists(st.sampled_from(["nan", "inf", "none", "drop"]), max_size=4), st.randoms())
def test_stored_evaluations_with_nan_still_load_as_plain_json(data, damage, rnd) -> None:
    """Evaluations written before undefined metrics carried reasons hold NaN (MLflow's log_dict writes it)."""
    frame, p = data
    old = evaluate(frame, TARGET, p, SLICES).to_dict()
    targets = [old["overall"], *old["slices"].values()]
    for how in damage:
        metrics = rnd.choice(targets)
        metrics.pop(UNDEFINED, None)
        metric = rnd.choice(METRICS)
        if how == "drop":
            metrics.pop(metric, None)
        else:
            metrics[metric] = {"nan": float("nan"), "inf": float("inf"), "none": None}[how]
    ev = Evaluation.from_dict(json.loads(json.dumps(old)))  # allow_nan: what the old files hold
    for metrics in [ev.overall, *ev.slices.values()]:
        for name, value in metrics.items():
            if name != UNDEFINED:
                assert value is None or math.isfinite(value)
                assert (value is None) == (name in metrics.get(UNDEFINED, {}))
    assert Evaluation.from_dict(plain_json(ev.to_dict())) == ev


# ------------------------------------------------------------------------------------------------ the gate
@st.composite
def policies(draw: st.DrawFn) -> GatePolicy:
    floors = st.dictionaries(st.sampled_from(METRICS), st.floats(0, 1), max_size=3)
    return GatePolicy(thresholds=draw(floors), max_regression=draw(floors), slice_thresholds=draw(floors),
                      min_slice_rows=draw(st.integers(1, 10)))


@FAST
@given(holdout(), st.integers(0, 50).flatmap(probabilities), policies(), st.booleans())
def test_the_gate_judges_any_evaluation_and_names_every_undefined_metric(data, other, policy, first) -> None:
    frame, p = data
    candidate = evaluate(frame, TARGET, p, SLICES)
    champion = None if first else evaluate(frame, TARGET, np.resize(other, len(frame)) if len(other) else
                                           np.full(len(frame), 0.5), SLICES)
    decision = gate(candidate, champion, policy, version=4)
    d = plain_json(decision.to_dict())
    assert d["passed"] is decision.passed and d["first_model"] is first
    assert decision.passed == all(c.passed for c in decision.checks)
    checks = {c.name: c for c in decision.checks}
    for metric in policy.thresholds:
        check = checks[f"threshold.{metric}"]
        if candidate.overall[metric] is None:  # an undefined overall metric fails its threshold, with the reason
            assert not check.passed and candidate.reason(metric) in check.detail
    for name, metrics in candidate.slices.items():
        for metric in policy.slice_thresholds:
            check = checks.get(f"slice.{name}.{metric}")
            if metrics["rows"] < policy.min_slice_rows:
                assert check is None  # too small: skipped, as the spec says
            elif metrics[metric] is None:  # large enough but undefined: not judged, with the reason
                assert check.passed and not check.judged
                assert check.detail == f"slice {name}: {metric} not judged: {candidate.reason(metric, name)} " \
                                       f"({int(metrics['rows'])} rows)"
            else:
                assert check.judged
    if decision.passed and any(not c.judged for c in decision.checks):
        assert "not judged" in decision.reason


# ------------------------------------------------------------------------------------------------ drift
SPEC = get_spec("credit_default")
SMALL = SPEC.model_copy(update={"data": SPEC.data.model_copy(update={"features": [
    f for f in SPEC.data.features if f.name in ("age", "income", "region")]})})


@st.composite
def traffic(draw: st.DrawFn, min_rows: int = 0, max_rows: int = 40) -> pd.DataFrame:
    """Feature rows as the monitor reads them (or the reference stores them), degenerate ones included: 0 or 1
    rows, constant or all-missing columns, infinite values, codes stored as numbers, no prediction column."""
    n = draw(st.integers(2, max_rows) | st.integers(2, max_rows) | st.integers(min(min_rows, 1), 1))
    codes = draw(st.booleans())
    number = st.floats(-1e6, 1e6) | st.sampled_from([0.0, 1.0, float("inf")])
    frame = pd.DataFrame({
        "age": pd.Series(_column(draw, n, st.integers(18, 90).map(float), np.nan), dtype=float),
        "income": pd.Series(_column(draw, n, number, np.nan), dtype=float),
        "region": pd.Series(_column(draw, n, st.sampled_from([1.0, 2.0, 7.5]) if codes
                                    else st.sampled_from(["north", "south"]), np.nan if codes else None),
                            dtype=float if codes else object),
    })
    if draw(st.sampled_from([True, True, False])):
        frame[PREDICTION] = pd.Series(_column(draw, n, st.sampled_from([0.0, 1.0]) | st.floats(0, 1), np.nan),
                                      dtype=float)
    return frame


def assert_drift(result: Any, features: list[str]) -> None:
    d = plain_json(result.to_dict())
    assert set(d["scores"]) | (set(d["undefined"]) - {PREDICTION}) == set(features)
    assert not set(d["scores"]) & set(d["undefined"])  # each feature scored, or undefined with a reason
    assert all(isinstance(why, str) and why for why in d["undefined"].values())
    assert (d["prediction_score"] is None) == (PREDICTION in d["undefined"])
    assert set(d["drifted"]) <= set(d["scores"]) and 0.0 <= d["share"] <= 1.0
    assert set(d["bounds"]) <= set(d["scores"]) | {PREDICTION}


@FAST
@given(traffic(), traffic())
def test_full_drift_scores_are_plain_json_with_a_reason_for_every_unscored_feature(reference, current) -> None:
    scores = full_scores(SMALL, reference, current)
    assert plain_json(scores) == scores
    reasons = scores.get(UNDEFINED, {})
    for feature in ("age", "income", "region"):
        assert (scores[feature] is None) == (feature in reasons)
        assert scores[feature] is None or scores[feature] >= 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Evidently's summary divides by zero on constant data
@EVIDENTLY
@given(traffic(min_rows=1), traffic(), st.sampled_from([0, 5, 20]), st.booleans())
def test_drift_through_evidently_is_plain_json_on_any_interval(reference, current, k, summary) -> None:
    """Fewer examples (Evidently is slow), with a reference of at least one row so that most of them reach
    Evidently (an empty one is the cheap path, taken by the full-scores property above)."""
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "drift_report.html"
        result = compute_drift(SMALL, reference, current, html=html, sketch_rows=k, summary=summary)
        assert html.stat().st_size > 0  # the monitor logs the report: one is always written
    assert_drift(result, ["age", "income", "region"])
    assert result.current_rows == len(current)


@FAST
@given(st.integers(0, 30).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from(["3", "4"]), min_size=n, max_size=n),
    st.lists(st.sampled_from([0.0, 1.0, math.nan]) | st.floats(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n), labels(n))))
def test_live_performance_is_plain_json_with_a_reason_for_every_undefined_metric(rows) -> None:
    version, p, decision, y = rows
    labelled = pd.DataFrame({"version": pd.Series(version, dtype=object), PREDICTION: pd.Series(p, dtype=float),
                             "decision": pd.Series(decision, dtype="int64"), "label": pd.Series(y, dtype="int64")})
    perf = live_performance(labelled, "3")
    assert plain_json(perf) == perf
    assert perf["labels"] == version.count("3")
    for metric in ("accuracy", "brier", "roc_auc"):
        assert (perf[metric] is None) == (metric in perf.get(UNDEFINED, {}))


# ------------------------------------------------------------------------------------------------ the canary judge
@st.composite
def evidence(draw: st.DrawFn) -> PairedEvidence:
    """Sums as a gateway would pool them (consistent: means of d near 0 or anywhere in [-1, 1]), or arbitrary
    finite sums of the same size that :meth:`PairedEvidence.from_dict` accepts (inconsistent: a gateway bug, a
    hand-made file): the judge must take either."""
    count = st.integers(0, 3) | st.integers(0, 5000)
    pairs, labels_, requests, served_x = (draw(count) for _ in range(4))
    labels_ = min(labels_, pairs)
    consistent = draw(st.booleans())

    def total(n: int, lo: float, hi: float) -> float:
        if consistent:
            share = st.sampled_from([0.0, 0.005, -0.01]) | st.floats(lo, hi) if lo < 0 else st.floats(lo, hi)
            return draw(share) * n
        return draw(st.floats(-2.0 * n - 5 if lo < 0 else 0.0, 2.0 * n + 5))

    def square(n: int) -> float:
        return draw(st.floats(0, n)) if consistent else draw(st.floats(0, 3.0 * n + 5))

    return PairedEvidence(
        "1", "2", pairs=pairs, invalid=draw(st.sampled_from([0] * 9 + [2])),
        sum_pc=total(pairs, 0, 1), sum_px=total(pairs, 0, 1), sum_pc2=square(pairs), sum_px2=square(pairs),
        sum_pcpx=total(pairs, 0, 1), pos_c=draw(st.integers(0, pairs)), pos_x=draw(st.integers(0, pairs)),
        labels=labels_, sum_dacc=total(labels_, -1, 1), sum_dacc2=square(labels_),
        sum_dbrier=total(labels_, -1, 1), sum_dbrier2=square(labels_), requests=requests, sum_derr=total(requests, -1, 1), sum_derr2=square(requests),
        served_c=draw(count), served_x=served_x,
        slow_x=round(served_x * draw(st.sampled_from([0.0, 0.004]) | st.floats(0, 1))))


LENIENT = CanaryPlan(min_requests=1, min_seconds=0, shadow=ShadowPlan(min_pairs=1, min_labels=0,
                                                                      min_labels_when_moved=0, min_seconds=0,
                                                                      constant_std=0.0))
STAGES = st.sampled_from(["shadow", "step 1 (5%)", "step 4 (100%)"])


@FAST
@given(evidence(), st.sampled_from([CanaryPlan(), LENIENT]), STAGES, st.floats(0, 10_000), st.integers(0, 10_000),
       st.booleans())
def test_the_canary_judge_is_plain_json_with_a_note_for_every_undefined_figure(ev, plan, stage, elapsed, exposure,
                                                                               timed_out) -> None:
    verdict = decide(ev, plan, stage=stage, stage_elapsed=elapsed, stage_exposure=exposure, timed_out=timed_out)
    d = plain_json(verdict.to_dict())
    assert d["action"] in ("rollback", "pass", "wait") and d["reason"].startswith(stage)
    for test in d["statistics"]["tests"].values():
        assert 0.0 <= test["p_anytime"] <= 1.0 and 0.0 <= test["e_value"] <= 1e300
        assert (test["estimate"] is None) == (test["n"] == 0) and (test["estimate"] is not None or test["note"])
    figures = d["statistics"].get("screen", {}).get("figures", {})
    for name, value in figures.items():
        if value is None:
            assert figures.get("note") or (name == "correlation" and figures.get("correlation_note")), name
    assert PairedEvidence.from_dict(plain_json(ev.to_dict())) == ev


@FAST
@given(evidence(), st.sampled_from([f.name for f in fields(PairedEvidence)[2:]] + ["stage_elapsed"]),
       st.sampled_from([math.nan, math.inf, -math.inf]))
def test_the_canary_judge_refuses_non_finite_numbers_with_a_value_error(ev, name, bad) -> None:
    """The documented, typed exception: a NaN or infinite number in the evidence (which
    :meth:`PairedEvidence.from_dict` never builds) or in ``stage_elapsed``."""
    elapsed = bad if name == "stage_elapsed" else 10.0
    if name != "stage_elapsed":
        ev = replace(ev, **{name: bad})
    with pytest.raises(ValueError, match=name):
        decide(ev, CanaryPlan(), stage="shadow", stage_elapsed=elapsed, stage_exposure=0)
