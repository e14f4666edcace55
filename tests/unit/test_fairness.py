"""The fairness gate (spec ``fairness``, :mod:`lifecycle.training.fairness`): fairlearn's figures per group of a
sensitive attribute, a breach rejects the candidate naming the groups and the gap, undefined figures are null with
a reason, every audit is plain JSON; the spec refuses what cannot be audited, one line per field; the model card
and the report show the figures.

The synthetic frames are built so the expected figures are known exactly (rates of whole counts), not sampled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.spec import FairnessConfig, SpecError, get_spec, load_spec
from lifecycle.training.evaluation import evaluate
from lifecycle.training.fairness import audit, audit_tables, candidate_audit, flat_metrics, gate_findings
from lifecycle.training.promotion import decide

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLASSIFIER_METRICS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
                      "tpr_gap", "fpr_gap")


def plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def config(*, ages: bool = True, **thresholds: float) -> FairnessConfig:
    """Audit ``grp`` (and, with ``ages``, the rows' random ages in two bands) at ``thresholds``."""
    age = [{"name": "age_band", "column": "age", "bins": [18, 40, 101]}] if ages else []
    return FairnessConfig.model_validate({"attributes": [{"name": "grp", "column": "grp"}, *age],
                                         "thresholds": thresholds or {"equalized_odds_difference": 0.1},
                                         "min_group_rows": 20})


def frame_of(groups: dict[str, tuple[int, int, int, int]], seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows per group from exact counts (true positives, false negatives, false positives, true negatives): the
    label, a probability on the right side of 0.5 for the decision, and an age unrelated to the group."""
    rows, probs = [], []
    for g, (tp, fn, fp, tn) in groups.items():
        for label, decision, n in ((1, 1, tp), (1, 0, fn), (0, 1, fp), (0, 0, tn)):
            rows += [{"grp": g, "default": label}] * n
            probs += [0.8 if decision else 0.2] * n
    frame = pd.DataFrame(rows, columns=["grp", "default"])
    frame["age"] = np.random.default_rng(seed).integers(18, 100, len(frame))
    return frame, np.array(probs)


# A: TPR 0.40 (20 of 50), FPR 0.10; B: TPR 0.80 (40 of 50), FPR 0.10. Equalized odds gap 0.40, at A.
BIASED = {"A": (20, 30, 5, 45), "B": (40, 10, 5, 45)}
# Both groups: TPR 0.80, FPR 0.10.
FAIR = {"A": (40, 10, 5, 45), "B": (40, 10, 5, 45)}


def gate(frame: pd.DataFrame, p: np.ndarray, cfg: FairnessConfig):
    ev = evaluate(frame, "default", p, [])
    return decide(ev, None, get_spec("credit_default").gate.model_copy(update={"thresholds": {}}),
                  fairness=audit(frame, "default", p, cfg))


# ------------------------------------------------------------------------------------------------ the figures
def test_a_group_with_a_much_lower_tpr_is_rejected_naming_the_group_and_the_gap():
    frame, p = frame_of(BIASED)
    result = audit(frame, "default", p, config(equalized_odds_difference=0.1, tpr_gap=0.1))
    grp = result["attributes"]["grp"]
    assert grp["groups"]["A"] == {"rows": 100, "selection_rate": 0.25, "tpr": 0.4, "fpr": 0.1}
    assert grp["groups"]["B"] == {"rows": 100, "selection_rate": 0.45, "tpr": 0.8, "fpr": 0.1}
    eo = grp["metrics"]["equalized_odds_difference"]
    assert eo["value"] == pytest.approx(0.4) and eo["judged"] and not eo["passed"] and eo["groups"] == ["A", "B"]
    decision = gate(frame, p, config(ages=False, equalized_odds_difference=0.1))
    assert not decision.passed
    failed = [c for c in decision.checks if not c.passed]
    assert [c.name for c in failed] == ["fairness.grp.equalized_odds_difference"]
    assert failed[0].detail == "fairness.grp.equalized_odds_difference 0.4 > 0.1: TPR 0.4 for A vs 0.8 for B"
    assert decision.reason == f"gate: rejected candidate: {failed[0].detail}"
    plain_json(result)


def test_a_fair_model_passes_and_says_so():
    frame, p = frame_of(FAIR)
    decision = gate(frame, p, config(ages=False, equalized_odds_difference=0.1, demographic_parity_difference=0.05,
                                     demographic_parity_ratio=0.9, tpr_gap=0.05, fpr_gap=0.05))
    assert decision.passed, decision.reason
    checks = {c.name: c for c in decision.checks}
    eo = checks["fairness.grp.equalized_odds_difference"]
    assert eo.passed and eo.judged and eo.detail.startswith("fairness.grp.equalized_odds_difference 0 <= 0.1")
    assert checks["fairness.grp.demographic_parity_ratio"].detail.startswith(
        "fairness.grp.demographic_parity_ratio 1 >= 0.9")


def test_the_decision_threshold_is_the_models():
    frame, p = frame_of(BIASED)
    at_09 = audit(frame, "default", p, config(), threshold=0.9)["attributes"]["grp"]  # nobody is selected
    assert {g: f["selection_rate"] for g, f in at_09["groups"].items()} == {"A": 0.0, "B": 0.0}
    ratio = audit(frame, "default", p, config(demographic_parity_ratio=0.8), threshold=0.9)
    m = ratio["attributes"]["grp"]["metrics"]["demographic_parity_ratio"]
    assert m["value"] is None and "0 / 0" in m["reason"] and not m["judged"] and m["passed"]


def test_tiny_single_class_and_one_row_groups_are_null_with_reasons():
    frame, p = frame_of({"A": (20, 10, 5, 45), "B": (30, 0, 0, 0), "C": (1, 0, 0, 0), "D": (0, 0, 3, 27)})
    result = plain_json(audit(frame, "default", p, config(equalized_odds_difference=0.1, tpr_gap=0.1,
                                                          fpr_gap=0.1)))
    grp = result["attributes"]["grp"]
    assert grp["small_groups"] == {"C": "1 row < min_group_rows 20: reported, not judged"}
    assert grp["groups"]["C"]["tpr"] == 1.0 and grp["groups"]["C"]["fpr"] is None
    assert grp["groups"]["B"]["fpr"] is None  # all positive
    assert grp["groups"]["B"]["undefined"]["fpr"] == "no negative label in the 30 rows of attribute grp B"
    assert grp["groups"]["D"]["tpr"] is None  # all negative
    assert "no positive label in the 30 rows" in grp["groups"]["D"]["undefined"]["tpr"]
    eo = grp["metrics"]["equalized_odds_difference"]  # only A has both rates among the judged A, B, D
    assert eo["value"] is None and eo["judged"] is False and eo["passed"] is True
    assert "both defined in 1 judged group(s)" in eo["reason"]
    tpr = grp["metrics"]["tpr_gap"]  # A and B have a TPR: judged, D left out with its reason
    assert tpr["judged"] and tpr["value"] == pytest.approx(1 - 20 / 30)
    assert set(tpr["left_out"]) == {"D"}
    checks = {name: (passed, detail, judged) for name, passed, detail, judged in gate_findings(result)}
    assert checks["fairness.grp.equalized_odds_difference"] == (
        True, f"fairness.grp.equalized_odds_difference not judged: {eo['reason']}", False)


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_an_audit_of_almost_no_rows_is_plain_json(rows):
    frame, p = frame_of({"A": (rows, 0, 0, 0)})
    result = plain_json(audit(frame, "default", p, config(equalized_odds_difference=0.1, demographic_parity_ratio=0.8)))
    for attribute in result["attributes"].values():
        for m in attribute["metrics"].values():
            assert m["value"] is None and m["reason"] and m["judged"] is False
    assert all(judged is False for *_, judged in gate_findings(result))


def test_rows_outside_the_bins_or_missing_are_in_no_group():
    frame, p = frame_of(FAIR)
    frame.loc[:9, "age"] = 150
    frame.loc[10:14, "grp"] = None
    result = audit(frame, "default", p, config())
    assert result["attributes"]["age_band"]["unassigned_rows"] == 10
    assert result["attributes"]["grp"]["unassigned_rows"] == 5
    assert sum(g["rows"] for g in result["attributes"]["grp"]["groups"].values()) == 195


def test_regression_compares_the_groups_errors():
    n = 50
    frame = pd.DataFrame({"grp": ["A"] * n + ["B"] * n, "age": [30] * n + [50] * n,
                          "loss": np.r_[np.full(n, 100.0), np.full(n, 100.0)]})
    values = np.r_[np.full(n, 110.0), np.full(n, 140.0)]  # A off by 10, B by 40
    cfg = FairnessConfig.model_validate({"attributes": [{"name": "grp", "column": "grp"}],
                                         "thresholds": {"mae_gap": 20, "rmse_gap": 50}, "min_group_rows": 20})
    result = plain_json(audit(frame, "loss", values, cfg, task="regression"))
    grp = result["attributes"]["grp"]
    assert grp["groups"] == {"A": {"rows": 50, "mae": 10.0, "rmse": 10.0}, "B": {"rows": 50, "mae": 40.0,
                                                                                 "rmse": 40.0}}
    mae = grp["metrics"]["mae_gap"]
    assert mae["value"] == 30.0 and not mae["passed"] and mae["groups"] == ["B", "A"]
    assert grp["metrics"]["rmse_gap"]["passed"]
    failed = [(name, detail) for name, passed, detail, _ in gate_findings(result) if not passed]
    assert failed == [("fairness.grp.mae_gap", "fairness.grp.mae_gap 30 > 20: MAE 40 for B vs 10 for A")]
    assert result["threshold"] is None


def test_multiclass_is_judged_one_vs_rest_and_names_the_worst_class():
    classes = ["low", "medium", "high"]
    n = 60
    y = np.array([0, 1, 2] * (2 * n // 3))
    p = np.eye(3)[y] * 0.8 + 0.2 / 3  # right for everyone ...
    p[:n][y[:n] == 2] = [0.8, 0.1, 0.1]  # ... but group A's "high" rows are called "low"
    frame = pd.DataFrame({"grp": ["A"] * n + ["B"] * n, "age": 30, "tier": [classes[k] for k in y]})
    cfg = FairnessConfig.model_validate({"attributes": [{"name": "grp", "column": "grp"}],
                                         "thresholds": {"tpr_gap": 0.2}, "min_group_rows": 20})
    result = plain_json(audit(frame, "tier", p, cfg, task="multiclass", classes=classes))
    m = result["attributes"]["grp"]["metrics"]["tpr_gap"]
    assert m["class"] == "high" and m["value"] == 1.0 and not m["passed"]
    assert m["per_class"] == {"low": 0.0, "medium": 0.0, "high": 1.0}
    assert m["detail"] == "class high: TPR 0 for A vs 1 for B"
    assert result["attributes"]["grp"]["groups"]["A"]["tpr.high"] == 0.0


def test_the_audit_reads_back_from_an_evaluation_and_flattens_for_mlflow():
    frame, p = frame_of(BIASED)
    result = audit(frame, "default", p, config(equalized_odds_difference=0.1))
    assert candidate_audit({"fairness": {"candidate": result, "champion": None}}) == result
    assert candidate_audit({"candidate": {}}) is None and candidate_audit({"fairness": None}) is None
    flat = flat_metrics(result)
    assert set(flat) == {"fairness.grp.equalized_odds_difference", "fairness.age_band.equalized_odds_difference"}
    assert flat["fairness.grp.equalized_odds_difference"] == pytest.approx(0.4)


# ------------------------------------------------------------------------------------- the card and the report
def test_the_model_card_and_the_report_show_the_figures():
    from lifecycle.ledger import Event
    from lifecycle.reporting.html import render_report
    from lifecycle.retirement.staging import fairness_section

    frame, p = frame_of(BIASED)
    frame.loc[frame["grp"] == "B", "grp"] = "<b>B</b>"
    result = audit(frame, "default", p, config(equalized_odds_difference=0.1))
    card = "\n".join(fairness_section(result))
    assert "### grp (column `grp`)" in card and "| group | rows | selection_rate | tpr | fpr |" in card
    assert "| A | 100 | 0.250 | 0.400 | 0.100 |" in card
    assert "- equalized_odds_difference 0.400 (threshold <= 0.1): BREACH (TPR 0.4 for A vs 0.8 for <b>B</b>)" in card
    assert "no fairness audit recorded" in "\n".join(fairness_section(None))
    event = Event("credit_default", "3", "gate_rejected", "2026-01-02T03:00:00+00:00", "gate: rejected v3",
                  {"checks": [], "fairness": result})
    page = render_report("credit_default", [event], [])
    assert '<section id="fairness">' in page and "v3 · grp (column grp)" in page
    assert "&lt;b&gt;B&lt;/b&gt;" in page and "<b>B</b>" not in page
    assert '<section id="fairness">' not in render_report("credit_default", [], [])
    assert audit_tables({"unavailable": "champion v1 is a regression model"})[0]["notes"] == [
        "champion v1 is a regression model"]


# ------------------------------------------------------------------------------------------------- the spec
def test_the_demo_spec_audits_age_bands():
    fairness = get_spec("credit_default").fairness
    assert fairness is not None and [a.name for a in fairness.attributes] == ["age_band"]
    assert fairness.attributes[0].bins == [18, 25, 40, 60, 101]


def _spec_error(tmp_path: Path, name: str, fairness: dict[str, Any]) -> str:
    data = yaml.safe_load((SPECS / f"{name}.yaml").read_text() if name != "credit_default" else
                          (Path(__file__).parents[2] / "include" / "models" / "credit_default.yaml").read_text())
    data["fairness"] = fairness
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value)


AGE = {"name": "age_band", "column": "age", "bins": [18, 40, 101]}


@pytest.mark.parametrize(
    ("name", "fairness", "line"),
    [
        pytest.param("credit_default", {"attributes": [AGE], "thresholds": {"mae_gap": 10}},
                     "fairness.thresholds.mae_gap: not a binary fairness metric (demographic_parity_difference, "
                     "demographic_parity_ratio, equalized_odds_difference, tpr_gap, fpr_gap)", id="reg-on-binary"),
        pytest.param("credit_loss", {"attributes": [AGE], "thresholds": {"tpr_gap": 0.1}},
                     "fairness.thresholds.tpr_gap: not a regression fairness metric (mae_gap, rmse_gap)",
                     id="class-on-regression"),
        pytest.param("credit_default", {"attributes": [AGE], "thresholds": {"equalized_odds_difference": 1.5}},
                     "fairness.thresholds.equalized_odds_difference: 1.5 is above 1", id="rate-above-1"),
        pytest.param("credit_default", {"attributes": [{"name": "sex", "column": "sex"}],
                                        "thresholds": {"tpr_gap": 0.1}},
                     "fairness.attributes.0.column: 'sex' is neither a feature nor declared in fairness.columns",
                     id="undeclared-column"),
        pytest.param("credit_default", {"attributes": [{"name": "r", "column": "region", "bins": [0, 1]}],
                                        "thresholds": {"tpr_gap": 0.1}},
                     "fairness.attributes.0.bins: categorical column 'region' takes no bins", id="bins-on-category"),
        pytest.param("credit_default", {"attributes": [{"name": "a", "column": "age"}], "thresholds": {"tpr_gap": 0.1}},
                     "fairness.attributes.0.bins: numeric column 'age' needs bins", id="numeric-without-bins"),
        pytest.param("credit_default", {"columns": [{"name": "age", "kind": "integer"}], "attributes": [AGE],
                                        "thresholds": {"tpr_gap": 0.1}},
                     "fairness.columns.0.name: 'age' is already the id, the target or a feature", id="feature-twice"),
        pytest.param("credit_default", {"attributes": [AGE, AGE], "thresholds": {"tpr_gap": 0.1}},
                     "fairness.attributes: Value error, duplicate attribute names: ['age_band']", id="duplicate"),
        pytest.param("credit_default", {"attributes": [AGE], "thresholds": {}},
                     "fairness.thresholds: Dictionary should have at least 1 item", id="no-threshold"),
    ],
)
def test_spec_errors_name_the_field(tmp_path, name, fairness, line):
    message = _spec_error(tmp_path, name, fairness)
    assert f"{tmp_path / name}.yaml: {line}" in message, message


def test_a_sensitive_column_outside_the_features_is_gated_and_never_a_model_input(tmp_path):
    from lifecycle.data.frames import batch_columns
    from lifecycle.data.validation import expectation_specs
    from lifecycle.training import flow as tf
    from tests.unit.test_tasks import batches

    raw = yaml.safe_load((Path(__file__).parents[2] / "include" / "models" / "credit_default.yaml").read_text())
    raw["fairness"] = {"columns": [{"name": "sex", "kind": "categorical", "categories": ["F", "M"]}],
                       "attributes": [{"name": "sex", "column": "sex"}], "thresholds": {"equalized_odds_difference": 0.2}}
    path = tmp_path / "credit_default.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert "sex" in batch_columns(spec) and "sex" not in spec.data.feature_names
    suite = expectation_specs(spec)
    assert ("expect_column_to_exist", {"column": "sex"}) in suite
    assert ("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["F", "M"]}) in suite
    frame = batches(spec)
    frame["sex"] = np.where(np.arange(len(frame)) % 2, "F", "M")
    with_sex = tf.prepare_frame(spec, spec.training, frame)
    without = tf.prepare_frame(spec, spec.training, frame.drop(columns=["sex"]))
    assert np.array_equal(with_sex.x_train, without.x_train)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def small_frames(draw) -> tuple[pd.DataFrame, np.ndarray]:
    n = draw(st.integers(0, 40))
    groups = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
    probs = draw(st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0]), min_size=n, max_size=n))
    ages = draw(st.lists(st.sampled_from([17.0, 18.0, 30.0, 45.0, 100.0, float("nan")]), min_size=n, max_size=n))
    return pd.DataFrame({"grp": groups, "default": labels, "age": ages}), np.array(probs, dtype=float)


@FAST
@given(small_frames(), st.integers(1, 5), st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_every_audit_is_plain_json_and_every_null_has_a_reason(data, min_rows, threshold):
    frame, p = data
    cfg = FairnessConfig.model_validate({
        "attributes": [{"name": "grp", "column": "grp"}, {"name": "age_band", "column": "age", "bins": [18, 40, 101]}],
        "thresholds": dict.fromkeys(CLASSIFIER_METRICS, 0.5), "min_group_rows": min_rows})
    result = plain_json(audit(frame, "default", p, cfg, threshold=threshold))
    for attribute in result["attributes"].values():
        for g, figures in attribute["groups"].items():
            for k, v in figures.items():
                if v is None:
                    assert figures["undefined"][k], (g, k)
        for m in attribute["metrics"].values():
            assert (m["value"] is None) == (not m["judged"])
            if m["value"] is None:
                assert m["reason"] and m["passed"]
    findings = gate_findings(result)
    assert len(findings) == 2 * len(CLASSIFIER_METRICS)
    plain_json(findings)


@FAST
@given(st.integers(0, 30), st.lists(st.floats(-1e6, 1e6), min_size=30, max_size=30), st.integers(1, 4))
def test_every_regression_audit_is_plain_json(n, values, min_rows):
    frame = pd.DataFrame({"grp": (["a", "b", "c"] * 10)[:n], "age": 30.0, "loss": values[:n]})
    cfg = FairnessConfig.model_validate({"attributes": [{"name": "grp", "column": "grp"}],
                                         "thresholds": {"mae_gap": 1.0, "rmse_gap": 1.0}, "min_group_rows": min_rows})
    result = plain_json(audit(frame, "loss", np.zeros(n), cfg, task="regression"))
    for m in result["attributes"]["grp"]["metrics"].values():
        assert m["value"] is not None or m["reason"]


# ------------------------------------------------------------------------------------------- the train path
@pytest.mark.slow
@pytest.mark.integration
def test_the_demo_spec_audits_both_versions_gates_and_records_the_figures(spec, state):
    """credit_default as the demo trains it (five validated days, its own config): both runs pass the age audit,
    the second with the champion's figures recorded; the gate's checks, the ledger and the MLflow run hold them."""
    import mlflow

    from lifecycle.ledger import Ledger
    from lifecycle.training import flow as tf
    from tests.conftest import DAYS, gate_days

    gate_days(spec, state, days=DAYS[:5])
    trained = tf.train_candidate(spec, DAYS[4], "run-1", paths=state)
    evaluation = plain_json(tf.evaluate_candidate(spec, trained, state))
    first = evaluation["fairness"]["candidate"]["attributes"]["age_band"]
    assert set(first["groups"]) == {"[18,25)", "[25,40)", "[40,60)", "[60,101)"}
    assert set(first["metrics"]) == {"equalized_odds_difference", "demographic_parity_difference"}
    assert evaluation["fairness"]["champion"] is None
    decision = tf.gate_candidate(spec, evaluation)
    names = {c["name"]: c for c in decision["checks"]}
    assert names["fairness.age_band.equalized_odds_difference"]["passed"], decision["reason"]
    assert decision["passed"], decision["reason"]
    tf.register_candidate(spec, trained, evaluation, decision, "run-1", state)
    gate = Ledger(state.ledger_db).events(event="gate_passed")[0]
    assert gate.details["fairness"] == evaluation["fairness"]["candidate"]
    run = mlflow.MlflowClient().get_run(trained["run_id"])
    assert "fairness.age_band.equalized_odds_difference" in run.data.metrics

    trained = tf.train_candidate(spec, DAYS[4], "run-2", paths=state, overrides={"seed": 6})
    evaluation = plain_json(tf.evaluate_candidate(spec, trained, state))
    champion = evaluation["fairness"]["champion"]["attributes"]["age_band"]  # v1 on this run's held-out rows
    assert set(champion["groups"]) == set(first["groups"]) and set(champion["metrics"]) == set(first["metrics"])
    checks = {c["name"] for c in tf.gate_candidate(spec, evaluation)["checks"]}
    assert {"fairness.age_band.equalized_odds_difference", "fairness.age_band.demographic_parity_difference"} <= checks
