"""Monitoring a multiclass and a regression model (issue 14): the gateway's log contract per task, read per task;
drift of the task's prediction (a multiclass model's class with the categorical method, a regression model's value
with the numeric one) against the champion's predictions on the reference rows; live performance per task against
the offline test metrics; the policy's decision. Every result is plain JSON (no NaN).

The example specs are ``tests/fixtures/specs/credit_tier.yaml`` (multiclass) and ``credit_loss.yaml`` (regression).
The end-to-end tests train a champion as tests/unit/test_tasks.py does (no data gate) and log it to MLflow as
training does: the drift reference (:func:`lifecycle.training.flow._log_reference`), the offline test metrics and the
model folder, registered with the ``champion`` alias.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from lifecycle.monitoring.drift import compute_drift
from lifecycle.monitoring.logs import read_interval
from lifecycle.monitoring.performance import live_performance
from lifecycle.registry.artifacts import PREDICTION
from lifecycle.spec import MonitoringPolicy, SpecError, load_spec
from lifecycle.training.evaluation import UNDEFINED

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
START = dt.datetime(2026, 2, 1, 10, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
#: The live metrics ``measure`` reports per task (with ``labels`` and, when some is undefined, ``undefined``).
LIVE_METRIC_NAMES = {"multiclass": ("accuracy", "macro_f1"), "regression": ("rmse", "mae", "r2")}
ROW = {"age": 40, "income": 50000.0, "debt_to_income": 0.3, "credit_utilization": 0.5, "months_employed": None,
       "loan_amount": 9000.0, "home_ownership": "RENT", "loan_purpose": "car", "region": "north"}


def plain_json(value: Any) -> Any:
    """``value`` through JSON with NaN and infinity refused (what Airflow's XCom and the reports need)."""
    return json.loads(json.dumps(value, allow_nan=False))


@pytest.fixture(scope="module")
def tier():
    return load_spec(SPECS / "credit_tier.yaml")


@pytest.fixture(scope="module")
def loss():
    return load_spec(SPECS / "credit_loss.yaml")


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def hour_file(state, kind: str, model: str) -> Path:
    return state.root / f"serving/{kind}/{model}/date=2026-02-01/hour=10/1.jsonl"


# ------------------------------------------------------------------------------------------------ the spec
def test_max_performance_drop_defaults_per_task(spec, tier, loss):
    assert spec.monitoring.max_performance_drop == {"roc_auc": 0.05}  # binary: as always
    assert tier.monitoring.max_performance_drop == {"macro_f1": 0.05}
    assert loss.monitoring.max_performance_drop == {"r2": 0.05}
    assert MonitoringPolicy().max_performance_drop == {"roc_auc": 0.05}


@pytest.mark.parametrize(("name", "drop", "message"), [
    pytest.param("credit_tier", {"roc_auc": 0.1}, "monitoring.max_performance_drop.roc_auc: not a multiclass "
                 "monitored metric (accuracy, macro_f1)", id="binary-metric-for-multiclass"),
    pytest.param("credit_loss", {"accuracy": 0.1}, "monitoring.max_performance_drop.accuracy: not a regression "
                 "monitored metric (r2)", id="classifier-metric-for-regression"),
    pytest.param("credit_loss", {"rmse": 0.1}, "monitoring.max_performance_drop.rmse.[key]: Input should be a "
                 "monitored metric: binary: roc_auc, accuracy; multiclass: accuracy, macro_f1; regression: r2",
                 id="rmse-is-in-target-units"),
])
def test_a_performance_drop_on_another_tasks_metric_is_one_line_naming_the_field(tmp_path, name, drop, message):
    data = yaml.safe_load((SPECS / f"{name}.yaml").read_text())
    data["monitoring"] = {"max_performance_drop": drop}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_given_performance_drop_of_the_task_is_kept(tmp_path):
    data = yaml.safe_load((SPECS / "credit_tier.yaml").read_text())
    data["monitoring"] = {"max_performance_drop": {"accuracy": 0.1, "macro_f1": 0.08}}
    (tmp_path / "credit_tier.yaml").write_text(yaml.safe_dump(data))
    assert load_spec(tmp_path / "credit_tier.yaml").monitoring.max_performance_drop == {"accuracy": 0.1,
                                                                                         "macro_f1": 0.08}


# ------------------------------------------------------------------------------------------------ reading the logs
def test_a_multiclass_log_is_read_as_classes(state, tier, caplog):
    """Prediction: the predicted class as text; feedback labels as text; a binary-shaped record (no class label)
    cannot line up with its rows and is left out with a warning."""
    t = START.timestamp()
    preds = [{"request_id": "a", "ts": t + 1, "model": "credit_tier", "version": "1", "rows": [ROW, ROW],
              "label": ["low", "high"], "probability": [0.7, 0.5], "probabilities": [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]],
              "latency_ms": 1.0},
             {"request_id": "b", "ts": t + 2, "model": "credit_tier", "version": "1", "rows": [ROW],
              "probability": [0.4], "latency_ms": 1.0}]  # no label: not this task's record
    write(hour_file(state, "predictions", "credit_tier"), preds)
    write(hour_file(state, "feedback", "credit_tier"), [{"request_id": "a", "ts": t + 5, "model": "credit_tier",
                                                          "label": ["low", "medium"]}])
    with caplog.at_level(logging.WARNING):
        interval = read_interval(tier, START, START + HOUR, state)
    assert interval.frame[PREDICTION].tolist() == ["low", "high"] == interval.frame["decision"].tolist()
    assert interval.frame["request_id"].tolist() == ["a", "a"]
    assert interval.labelled[[PREDICTION, "label"]].to_dict("list") == {PREDICTION: ["low", "high"],
                                                                       "label": ["low", "medium"]}
    assert "left out 1 prediction records without one label per row" in caplog.text


def test_a_regression_log_is_read_as_values(state, loss):
    t = START.timestamp()
    write(hour_file(state, "predictions", "credit_loss"), [
        {"request_id": "a", "ts": t + 1, "model": "credit_loss", "version": "1", "rows": [ROW, ROW],
         "value": [120.5, 0.0], "latency_ms": 1.0}])
    write(hour_file(state, "feedback", "credit_loss"), [{"request_id": "a", "ts": t + 5, "model": "credit_loss",
                                                          "label": [100.0, 3.25]}])
    interval = read_interval(loss, START, START + HOUR, state)
    assert interval.frame[PREDICTION].dtype == np.float64 and interval.frame[PREDICTION].tolist() == [120.5, 0.0]
    assert interval.labelled["label"].dtype == np.float64 and interval.labelled["label"].tolist() == [100.0, 3.25]


@pytest.mark.parametrize("name", ["credit_tier", "credit_loss"])
def test_an_empty_interval_of_any_task_is_an_empty_frame(state, name):
    interval = read_interval(load_spec(SPECS / f"{name}.yaml"), START, START + HOUR, state)
    assert len(interval.frame) == 0 and len(interval.labelled) == 0


# ------------------------------------------------------------------------------------------------ live performance
def labelled(pred: list[Any], label: list[Any], version: str = "1") -> pd.DataFrame:
    return pd.DataFrame({"version": [version] * len(pred), PREDICTION: pd.Series(pred, dtype=object),
                         "decision": pd.Series(pred, dtype=object), "label": pd.Series(label, dtype=object)})


def test_multiclass_live_performance_matches_sklearn_and_counts_invalid_rows():
    from sklearn.metrics import f1_score

    pred = ["low", "low", "medium", "high", "high", "nope", None]
    label = ["low", "medium", "medium", "high", "low", "low", "high"]
    perf = live_performance(labelled(pred, label), "1", "multiclass", ["low", "medium", "high"])
    assert plain_json(perf) == perf
    assert perf["labels"] == 7 and perf["invalid"] == 2
    assert perf["accuracy"] == pytest.approx(3 / 5)
    assert perf["macro_f1"] == pytest.approx(f1_score(label[:5], pred[:5], average="macro"))
    assert UNDEFINED not in perf


def test_integer_classes_compare_as_text():
    perf = live_performance(labelled(["1", "2", "3"], ["1", "2", "2"]), "1", "multiclass", [1, 2, 3])
    assert perf["accuracy"] == pytest.approx(2 / 3) and "invalid" not in perf


@pytest.mark.parametrize(("task", "pred", "label", "undefined"), [
    pytest.param("multiclass", [], [], {"accuracy", "macro_f1"}, id="multiclass-no-rows"),
    pytest.param("multiclass", ["x"], ["low"], {"accuracy", "macro_f1"}, id="multiclass-no-valid-row"),
    pytest.param("regression", [], [], {"rmse", "mae", "r2"}, id="regression-no-rows"),
    pytest.param("regression", [1.0], [2.0], {"r2"}, id="regression-one-row"),
    pytest.param("regression", [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], {"r2"}, id="regression-constant-labels"),
    pytest.param("regression", [math.nan, math.inf], [1.0, 2.0], {"rmse", "mae", "r2"}, id="regression-not-finite"),
])
def test_undefined_live_metrics_are_none_with_a_reason(task, pred, label, undefined):
    perf = live_performance(labelled(pred, label), "1", task, ["low", "medium", "high"])
    assert plain_json(perf) == perf
    assert set(perf.get(UNDEFINED, {})) == undefined
    for metric, why in perf.get(UNDEFINED, {}).items():
        assert perf[metric] is None and why
    for metric in {"multiclass": ("accuracy", "macro_f1"), "regression": ("rmse", "mae", "r2")}[task]:
        assert (perf[metric] is None) == (metric in undefined)


def test_regression_live_performance_is_the_offline_computation():
    from lifecycle.training.evaluation import regression_metrics

    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 300.0, 500)
    v = y + rng.normal(0, 100, 500)
    perf = live_performance(labelled(list(v), list(y)), "1", "regression")
    offline = regression_metrics(y, v)
    assert {m: perf[m] for m in ("rmse", "mae", "r2")} == pytest.approx({m: offline[m] for m in ("rmse", "mae", "r2")})


# ------------------------------------------------------------------------------------------------ prediction drift
def batch(spec, day: dt.date, scenario: str = "stable", rows: int | None = None) -> pd.DataFrame:
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import Scenario, generate_batch

    if rows is not None:
        gen = spec.data.generator.model_copy(update={"rows_per_day": rows})
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"generator": gen})})
    return numpy_dtypes(generate_batch(spec, day, Scenario.parse(scenario)))


@pytest.mark.slow  # Evidently's first import: ~8 s
def test_a_multiclass_prediction_drifts_as_a_category(tier):
    """The predicted class is compared with the categorical method (Jensen-Shannon distance of the class shares),
    whatever the column's dtype. Deterministic: the class columns are set, not drawn."""
    reference = batch(tier, dt.date(2026, 1, 1), rows=3000)
    current = batch(tier, dt.date(2026, 1, 2), rows=3000)
    reference[PREDICTION] = np.array(["low", "medium", "high"] * 1000, dtype=object)
    current[PREDICTION] = np.array(["low", "medium", "high"] * 1000, dtype=object)
    same = compute_drift(tier, reference, current, summary=False)
    assert same.prediction_score == pytest.approx(0.0, abs=1e-9)
    current[PREDICTION] = np.array(["high"] * 2000 + ["low", "medium"] * 500, dtype=object)
    moved = compute_drift(tier, reference, current, summary=False)
    shares = pd.Series(current[PREDICTION]).value_counts(normalize=True).reindex(["low", "medium", "high"])
    from scipy.spatial import distance

    expected = distance.jensenshannon([1 / 3] * 3, shares.to_numpy())
    assert moved.prediction_score == pytest.approx(expected, abs=1e-6)
    assert moved.prediction_score >= tier.monitoring.prediction_threshold
    assert plain_json(moved.to_dict()) == moved.to_dict()


@pytest.mark.slow  # Evidently's first import: ~8 s
def test_a_prediction_that_cannot_be_scored_is_none_with_a_reason(tier, loss):
    reference = batch(tier, dt.date(2026, 1, 1), rows=200)
    current = batch(tier, dt.date(2026, 1, 2), rows=200)
    reference[PREDICTION] = np.array(["low"] * 200, dtype=object)
    current[PREDICTION] = np.array([None] * 200, dtype=object)
    result = compute_drift(tier, reference, current, summary=False)
    assert result.prediction_score is None and "all 200 values missing" in result.undefined[PREDICTION]
    current[PREDICTION] = np.full(200, np.inf)
    reference[PREDICTION] = np.linspace(0, 1000, 200)
    result = compute_drift(loss, reference, current, summary=False)
    assert result.prediction_score is None and "not finite" in result.undefined[PREDICTION]
    assert plain_json(result.to_dict()) == result.to_dict()


# ------------------------------------------------------------------------------------------------ end to end
def register_champion(spec, paths, folder: Path) -> SimpleNamespace:
    """Train ``spec``'s model quickly (test_tasks.fit), log its drift reference, its offline test metrics on
    held-out stable rows and its model folder to MLflow as training does, and make it v1, the champion."""
    import mlflow

    from lifecycle.registry.store import CHAMPION, Registry, configure_mlflow, ensure_experiment
    from lifecycle.training import flow as tf
    from tests.unit.test_tasks import fit

    out = fit(spec, folder)
    # The offline baseline on OFFLINE_ROWS held-out stable rows (days neither trained nor served): see the test.
    evaluation = tf.evaluate_model(spec, out.model, batch(spec, dt.date(2026, 1, 20), rows=OFFLINE_ROWS))
    configure_mlflow(paths)
    with mlflow.start_run(experiment_id=ensure_experiment(spec.model_name, paths)) as run:
        tf._log_reference(spec, out.data.train_df, out.data.pre, out.outcome, spec.training.seed, out.data.target)
        mlflow.log_metrics(evaluation.flat("test_"))
        mlflow.log_artifacts(str(out.model_dir), artifact_path="model_dir")
    registry = Registry(paths)
    registry.register(spec.model_name, f"{run.info.artifact_uri}/model_dir", run.info.run_id,
                      {"lifecycle.status": "champion"})
    registry.set_alias(spec.model_name, CHAMPION, "1")
    return SimpleNamespace(model=out.model, offline=evaluation.overall)


#: Held-out stable rows of the offline baseline, and rows of each hour of traffic: enough that the sampling error of
#: a live metric against the offline one stays far below the policy's 0.05 (see the tests' docstrings).
OFFLINE_ROWS = 16_000
LIVE_ROWS = 8000


@pytest.fixture(scope="module", params=["credit_tier", "credit_loss"])
def monitored(request, tmp_path_factory):
    """A champion of the task and an hour of its traffic in the contract's shape per scenario: stable (10:00) and
    drifted (11:00: the population moved, and the outcomes no longer follow the relation it learned)."""
    from lifecycle.ops.simulate import write_traffic_log
    from lifecycle.paths import StatePaths

    spec = load_spec(SPECS / f"{request.param}.yaml")
    root = tmp_path_factory.mktemp(spec.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        paths = StatePaths.current()
        champion = register_champion(spec, paths, root / "train")
        for i, rows in enumerate([batch(spec, dt.date(2026, 2, 1), rows=LIVE_ROWS),
                                  drifted_batch(spec, dt.date(2026, 2, 2), LIVE_ROWS)]):
            write_traffic_log(spec, paths.root, rows, version="1", probability=champion.model.scores(rows),
                              threshold=None, start=START + i * HOUR, end=START + (i + 1) * HOUR)
        yield SimpleNamespace(spec=spec, paths=paths, offline=champion.offline)


def drifted_batch(spec, day: dt.date, rows: int) -> pd.DataFrame:
    """Covariate drift (severity 1: poorer, more indebted applicants) and concept drift (severity 2: the risk
    relation itself changed) at once: the generator's covariate-drifted batch, its target drawn again from the same
    applicants' latent risk under the changed relation (the generator's own functions, the same random draws)."""
    from lifecycle.data import synthetic

    frame = batch(spec, day, "covariate_drift:1", rows=rows)
    rng = np.random.default_rng(synthetic.day_seed(spec.data.generator.seed, day))
    raw = synthetic._features(rng, rows, 1.0)  # the draws generate_batch made for this batch, in its order
    logit = synthetic.default_logit(raw, concept=2.0)
    gen = spec.data.generator.model_copy(update={"rows_per_day": rows})
    frame[spec.data.target] = synthetic._target(spec.model_copy(update={"data": spec.data.model_copy(
        update={"generator": gen})}), raw, logit, rng.random(rows))
    return frame


@pytest.mark.slow
def test_measure_a_stable_interval(monitored):
    """Stable traffic: no drift (of the features or of the prediction), live performance held.

    False failure <= 1e-3 over the sampling of the stable hour, measured for this champion and reference on 15
    generator days of 4,000 rows (LIVE_ROWS = 8,000 only narrows it): the prediction drift scores mean 0.017, sd
    0.006 (multiclass) and mean 0.040, sd 0.007 (regression) against a threshold of 0.1, over 8 sd away; the live
    metric minus the offline one (OFFLINE_ROWS held-out stable rows) is sampling error only, mean ~0, sd 0.008
    (macro F1) and 0.019 (R^2 of heavy-tailed losses at 4,000 live and 8,000 offline rows; ~0.013 at these sizes),
    so a drop past 0.05 is >= 3.7 sd away (P <= 1.1e-4 by a normal tail); no feature share came near 0.5 (<= 0.11).
    """
    from lifecycle.monitoring.policy import decide
    from lifecycle.monitoring.run import measure

    spec, policy = monitored.spec, monitored.spec.monitoring
    result = measure(spec, START, START + HOUR, paths=monitored.paths)
    assert plain_json(result) == result
    summary = Path(result["report"]).with_name("drift_summary.json").read_text()
    json.loads(summary, parse_constant=lambda c: pytest.fail(f"{c} in drift_summary.json"))
    assert result["rows"] == result["labels"] == LIVE_ROWS
    assert result["prediction_drift"] is not None and result["prediction_drift"] < policy.prediction_threshold
    assert PREDICTION not in result["undefined"] and result["drift_share"] < policy.drift_share
    perf = result["performance"]
    assert set(perf) - {"labels", "undefined"} == set(LIVE_METRIC_NAMES[spec.task])
    for metric, max_drop in policy.max_performance_drop.items():
        assert perf[metric]["offline"] == pytest.approx(monitored.offline[metric])
        assert perf[metric]["offline"] - perf[metric]["live"] <= max_drop, (metric, perf[metric])
    decision = decide(result, policy.model_copy(update={"prediction_triggers": True}), now=START + HOUR,
                      interval_end=START + HOUR)
    assert not decision.drift, decision.reason


@pytest.mark.slow
def test_measure_a_drifted_interval(monitored):
    """The population moved and the outcomes changed: prediction drift and a drop of the task's live metric are
    both found, and the policy retrains naming them.

    False failure <= 1e-3 over the sampling of the drifted hour (5 generator days of 4,000 rows, this champion):
    prediction drift 0.46-0.47 (multiclass) and 2.1-2.3 (regression) against a threshold of 0.1; macro F1 0.30-0.31
    against 0.65 offline and R^2 0.32-0.36 against 0.74: drops of 0.3-0.4 against a bound of 0.05, where the
    sampling sd is <= 0.02 (the stable test's)."""
    from lifecycle.monitoring.policy import decide
    from lifecycle.monitoring.run import measure

    spec, policy = monitored.spec, monitored.spec.monitoring
    result = measure(spec, START + HOUR, START + 2 * HOUR, paths=monitored.paths)
    assert plain_json(result) == result
    assert result["rows"] == result["labels"] == LIVE_ROWS
    assert result["prediction_drift"] >= policy.prediction_threshold
    [(metric, max_drop)] = policy.max_performance_drop.items()  # the task's default: macro_f1 or r2
    live, offline = result["performance"][metric]["live"], result["performance"][metric]["offline"]
    assert offline - live > max_drop
    decision = decide(result, policy.model_copy(update={"prediction_triggers": True}), now=START + 2 * HOUR,
                      interval_end=START + 2 * HOUR)
    assert decision.drift and decision.retrain
    assert f"prediction drift {result['prediction_drift']:.3f}" in decision.reason
    assert f"live {metric} {live:.3f} vs offline {offline:.3f}: dropped" in decision.reason


def test_the_traffic_writer_keeps_the_binary_record_and_writes_each_tasks_contract(tmp_path, spec, tier, loss):
    from lifecycle.ops.simulate import write_traffic_log

    def records(s, scores, threshold=None):
        rows = batch(s, dt.date(2026, 1, 1), rows=3)
        write_traffic_log(s, tmp_path / s.name, rows, version="1", probability=scores, threshold=threshold,
                          start=START, end=START + HOUR)
        serving = tmp_path / s.name / "serving"
        return ([json.loads(line) for f in sorted(serving.glob("predictions/**/*.jsonl")) for line in f.open()],
                [json.loads(line) for f in sorted(serving.glob("feedback/**/*.jsonl")) for line in f.open()], rows)

    preds, feedback, rows = records(spec, [0.2, 0.7, 0.5], threshold=0.5)
    assert [list(r) for r in preds] == [["request_id", "ts", "model", "version", "rows", "probability", "label",
                                        "latency_ms"]] * 3
    assert [r["label"] for r in preds] == [[0], [1], [1]]
    assert [r["label"] for r in feedback] == [[int(v)] for v in rows[spec.data.target]]
    preds, feedback, rows = records(tier, np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]))
    assert [(r["label"], r["probability"]) for r in preds] == [(["low"], [0.7]), (["high"], [0.6]),
                                                               (["medium"], [0.5])]
    assert preds[1]["probabilities"] == [[0.1, 0.3, 0.6]] and "value" not in preds[0]
    assert [r["label"] for r in feedback] == [[str(v)] for v in rows[tier.data.target]]
    preds, feedback, rows = records(loss, [10.5, 0.0, 99.0])
    assert [r["value"] for r in preds] == [[10.5], [0.0], [99.0]]
    assert all("probability" not in r and "label" not in r for r in preds)
    assert [r["label"] for r in feedback] == [[float(v)] for v in rows[loss.data.target]]
