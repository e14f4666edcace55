from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from lifecycle.data.synthetic import Scenario, generate_batch

DAY = dt.date(2026, 1, 1)


def test_same_day_same_batch_other_day_other_batch(spec):
    a, b = generate_batch(spec, DAY), generate_batch(spec, DAY)
    assert a.equals(b)
    assert not a.equals(generate_batch(spec, DAY + dt.timedelta(days=1)))


def test_batch_has_schema_realistic_missingness_and_default_rate(spec):
    frame = generate_batch(spec, DAY)
    assert list(frame.columns) == [spec.data.id_column, *spec.data.feature_names, spec.data.target]
    for f in spec.data.features:
        share = frame[f.name].isna().mean()
        assert share <= f.max_missing
        if f.max_missing > 0:
            assert share > 0, f"{f.name} should have some missing values"
    assert 0.05 < frame[spec.data.target].mean() < 0.3


def test_covariate_drift_moves_features_not_the_risk_function(spec):
    stable = generate_batch(spec, DAY)
    drifted = generate_batch(spec, DAY, Scenario("covariate_drift", severity=1.0))
    assert drifted["income"].median() < 0.8 * stable["income"].median()
    assert drifted["credit_utilization"].mean() > stable["credit_utilization"].mean() + 0.05


def test_concept_drift_keeps_features_and_changes_labels(spec):
    stable = generate_batch(spec, DAY)
    concept = generate_batch(spec, DAY, Scenario("concept_drift", severity=1.0))
    assert stable[spec.data.feature_names].equals(concept[spec.data.feature_names])
    south = (stable["region"] == "south").to_numpy()
    assert concept["default"][south].mean() > stable["default"][south].mean() + 0.05


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        pytest.param("missing_column", lambda f: "income" not in f.columns, id="missing_column"),
        pytest.param("wrong_type", lambda f: f["income"].dtype.kind not in "fi", id="wrong_type"),
        pytest.param("out_of_range", lambda f: (f["age"] < 0).mean() > 0.05, id="out_of_range"),
        pytest.param("nulls", lambda f: f["income"].isna().mean() > 0.3, id="nulls"),
    ],
)
def test_broken_batches_break_as_announced(spec, kind, check):
    assert check(generate_batch(spec, DAY, Scenario("broken", broken=kind)))


@pytest.mark.parametrize("text", ["stable", "broken:nulls", "covariate_drift:0.5", "concept_drift"])
def test_scenario_round_trips_through_text(text):
    parsed = Scenario.parse(text)
    assert Scenario.parse(str(parsed)) == parsed


def test_unknown_scenario_says_what_is_valid():
    with pytest.raises(ValueError, match="use stable, broken"):
        Scenario.parse("sunny")


def test_label_is_learnable(spec):
    from sklearn.metrics import roc_auc_score

    from lifecycle.data.synthetic import _features, default_logit

    rng = np.random.default_rng(0)
    f = _features(rng, 20_000, 0.0)
    p = 1 / (1 + np.exp(-default_logit(f)))
    y = rng.random(len(p)) < p
    assert roc_auc_score(y, p) > 0.8  # the Bayes-optimal AUC: room for a model to pass a 0.7 gate
