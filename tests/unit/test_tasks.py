"""Multiclass and regression models through the offline path: spec, training, packaging, evaluation, gate.

The example specs are ``tests/fixtures/specs/credit_tier.yaml`` (multiclass: a three-class risk tier) and
``credit_loss.yaml`` (regression: a loss amount); the synthetic generator writes their targets from the same
applicant population as ``credit_default``'s (:mod:`lifecycle.data.synthetic`).
"""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle.spec import (
    TASK_GATE_DEFAULTS,
    GatePolicy,
    ModelSpec,
    SpecError,
    load_spec,
    task_metrics,
)
from lifecycle.training import flow as tf
from lifecycle.training.evaluation import (
    UNDEFINED,
    Evaluation,
    evaluate,
    multiclass_metrics,
    regression_metrics,
)
from lifecycle.training.promotion import decide
from lifecycle.training.trainer import Hyper, TrainingError, latest_checkpoint, train

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]


def plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def assert_clean(metrics: dict[str, Any], names: list[str]) -> None:
    """Every metric finite or None with a reason, a reason only for a None, and JSON without NaN."""
    plain_json(metrics)
    assert set(metrics) - {UNDEFINED} == set(names)
    reasons = metrics.get(UNDEFINED, {})
    assert reasons or UNDEFINED not in metrics
    for name in names:
        if metrics[name] is None:
            assert isinstance(reasons.get(name), str) and reasons[name], name
        else:
            assert isinstance(metrics[name], float) and math.isfinite(metrics[name]) and name not in reasons, name


def batches(spec: ModelSpec, days: list[dt.date] = DAYS) -> pd.DataFrame:
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch

    return numpy_dtypes(pd.concat([generate_batch(spec, d) for d in days], ignore_index=True))


def fit(spec: ModelSpec, folder: Path, frame: pd.DataFrame | None = None) -> SimpleNamespace:
    """Train on the generated rows as the train path does (without MLflow), save and load the model, evaluate it
    on the held-out rows and gate it as the first model."""
    from lifecycle.training.packaging import load_model_dir

    frame = batches(spec) if frame is None else frame
    data = tf.prepare_frame(spec, spec.training, frame)
    outcome = train(tf.hyper(spec.training), data.x_train, data.y_train, data.x_val, data.y_val,
                    checkpoint_dir=folder / "checkpoints", **data.target.head())
    threshold = tf.decision_threshold(data, outcome)
    model_dir = tf.write_model_dir(folder / "model_dir", outcome, data, threshold, {"model": spec.name})
    model = load_model_dir(model_dir)
    holdout = frame[data.split == 2].reset_index(drop=True)
    evaluation = tf.evaluate_model(spec, model, holdout, "the candidate")
    return SimpleNamespace(data=data, outcome=outcome, threshold=threshold, model_dir=model_dir, model=model,
                           holdout=holdout, evaluation=evaluation, decision=decide(evaluation, None, spec.gate))


@pytest.fixture(scope="module")
def tier() -> ModelSpec:
    return load_spec(SPECS / "credit_tier.yaml")


@pytest.fixture(scope="module")
def loss() -> ModelSpec:
    return load_spec(SPECS / "credit_loss.yaml")


@pytest.fixture(scope="module")
def tier_fit(tier, tmp_path_factory) -> SimpleNamespace:
    return fit(tier, tmp_path_factory.mktemp("tier"))


@pytest.fixture(scope="module")
def loss_fit(loss, tmp_path_factory) -> SimpleNamespace:
    return fit(loss, tmp_path_factory.mktemp("loss"))


# ------------------------------------------------------------------------------------------------ the generator
def test_the_generator_writes_each_tasks_target_from_the_same_applicants(spec, tier, loss):
    from lifecycle.data.synthetic import generate_batch

    binary = generate_batch(spec, DAYS[0])
    tiers = generate_batch(tier, DAYS[0])
    losses = generate_batch(loss, DAYS[0])
    assert set(binary["default"].unique()) == {0, 1}
    assert list(tiers.columns) == ["customer_id", *tier.data.feature_names, "tier"]
    counts = tiers["tier"].value_counts()
    assert set(counts.index) == {"low", "medium", "high"} and counts.min() > 0.15 * len(tiers)
    amounts = losses["loss_amount"].to_numpy()
    assert np.isfinite(amounts).all() and (amounts >= 0).all() and amounts.std() > 0
    assert (amounts <= losses["loan_amount"].to_numpy()).all()
    # the tier follows the risk: high-tier applicants lose more (same seed: same applicants, same draws)
    same_seed = tier.model_copy(update={"data": tier.data.model_copy(update={"generator": loss.data.generator})})
    same = generate_batch(same_seed, DAYS[0])
    by_tier = losses.groupby(same["tier"])["loss_amount"].mean() / losses.groupby(same["tier"])["loan_amount"].mean()
    assert by_tier["low"] < by_tier["medium"] < by_tier["high"]


# ------------------------------------------------------------------------------------------------ multiclass
def test_multiclass_trains_packages_evaluates_and_passes_the_gate(tier, tier_fit):
    out = tier_fit
    assert out.outcome.architecture["task"] == "multiclass" and out.outcome.architecture["outputs"] == 3
    assert out.threshold is None and out.model.threshold is None
    assert out.model.task == "multiclass" and out.model.classes == ["low", "medium", "high"]
    assert out.model.meta["classes"] == ["low", "medium", "high"] and out.model.meta["threshold"] is None
    p = out.model.predict_proba(out.holdout)
    assert p.shape == (len(out.holdout), 3) and np.allclose(p.sum(axis=1), 1.0)
    assert set(out.model.predict(out.holdout)) <= {"low", "medium", "high"}
    ev = out.evaluation
    names = task_metrics("multiclass", tier.data.classes)
    assert_clean(ev.overall, names)
    assert set(ev.slices) == {f"region={r}" for r in ("east", "north", "south", "west")}
    for metrics in ev.slices.values():
        assert_clean(metrics, names)
    plain_json(ev.to_dict())
    assert ev.overall["macro_f1"] > 0.5 and ev.overall["accuracy"] > 0.5
    assert out.decision.passed and out.decision.first_model, out.decision.reason
    assert "macro_f1" in out.decision.reason
    # the flat MLflow names: numbers only, per-class recall included
    flat = ev.flat("test_")
    assert {"test_macro_f1", "test_recall.low", "test_slice.region_west.recall.high"} <= set(flat)


def test_a_bad_multiclass_model_is_rejected_naming_the_metric(tier, tier_fit):
    holdout = tier_fit.holdout
    uniform = np.full((len(holdout), 3), 1 / 3)  # always predicts the first class
    bad = evaluate(holdout, "tier", uniform, tier.slices, task="multiclass", classes=tier.data.classes)
    decision = decide(bad, None, tier.gate)
    assert not decision.passed and "macro_f1" in decision.reason and "< threshold 0.5" in decision.reason
    against = decide(bad, tier_fit.evaluation, tier.gate.model_copy(update={"thresholds": {}}))
    assert not against.passed and "macro_f1" in against.reason and "champion" in against.reason


def test_the_multiclass_pyfunc_returns_the_class_and_one_probability_per_class(tier, tier_fit):
    from lifecycle.training.pyfunc_model import TabularClassifier

    pyfunc = TabularClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"model_dir": str(tier_fit.model_dir)}))
    out = pyfunc.predict(None, tier_fit.holdout[tier.data.feature_names].head(20))
    assert list(out.columns) == ["prediction", "probability.low", "probability.medium", "probability.high"]
    probs = out[["probability.low", "probability.medium", "probability.high"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert out["prediction"].tolist() == [["low", "medium", "high"][k] for k in probs.argmax(axis=1)]


def test_integer_classes_come_back_as_integers(tier, tmp_path):
    spec = tier.model_copy(update={"data": tier.data.model_copy(update={"classes": [1, 2, 3]})})
    frame = batches(spec, DAYS[:1])
    assert frame["tier"].dtype == np.int64
    model = fit(spec, tmp_path, frame).model
    out = model.predict_frame(frame.head(5))
    assert list(out.columns) == ["prediction", "probability.1", "probability.2", "probability.3"]
    assert out["prediction"].dtype == np.int64
    # a target of 2.0 (ints stored as floats) or "2" is class 2: matched by text
    ev = evaluate(frame.assign(tier=frame["tier"].astype(float)), "tier", model.predict_proba(frame), [],
                  task="multiclass", classes=[1, 2, 3])
    assert ev.overall["rows"] == len(frame)


# ------------------------------------------------------------------------------------------------ regression
def test_regression_trains_packages_evaluates_and_passes_the_gate(loss, loss_fit):
    out = loss_fit
    assert out.outcome.architecture["task"] == "regression" and out.outcome.architecture["outputs"] == 1
    assert out.threshold is None and out.model.task == "regression" and out.model.classes is None
    scaling = out.model.meta["target_scaling"]
    train_y = out.data.train_df["loss_amount"]
    assert scaling["mean"] == pytest.approx(train_y.mean()) and scaling["std"] == pytest.approx(train_y.std(ddof=0))
    with pytest.raises(ValueError, match="use predict"):
        out.model.predict_proba(out.holdout)
    values = out.model.predict(out.holdout)
    assert values.shape == (len(out.holdout),) and np.isfinite(values).all()
    assert abs(values.mean() - out.holdout["loss_amount"].mean()) < out.holdout["loss_amount"].std()  # target units
    ev = out.evaluation
    assert_clean(ev.overall, ["rmse", "mae", "r2", "rows"])
    for metrics in ev.slices.values():
        assert_clean(metrics, ["rmse", "mae", "r2", "rows"])
    assert ev.overall["r2"] > 0.2 and ev.overall["mae"] <= ev.overall["rmse"]
    assert out.decision.passed and out.decision.first_model, out.decision.reason


def test_a_bad_regression_model_is_rejected_naming_the_metric(loss, loss_fit):
    holdout = loss_fit.holdout
    off = np.full(len(holdout), holdout["loss_amount"].mean() + 3 * holdout["loss_amount"].std())
    bad = evaluate(holdout, "loss_amount", off, loss.slices, task="regression")
    decision = decide(bad, None, loss.gate)
    assert not decision.passed and decision.reason.startswith("gate: rejected candidate: r2 ")
    assert "< threshold 0.2" in decision.reason
    # rmse is lower-is-better: a rise beyond the slack is a regression
    against = decide(bad, loss_fit.evaluation, loss.gate.model_copy(update={"thresholds": {}}))
    failed = {c.name for c in against.checks if not c.passed}
    assert not against.passed and {"regression.rmse", "regression.r2"} <= failed
    assert "rmse" in against.reason and "> champion" in against.reason


def test_the_regression_pyfunc_returns_the_value(loss, loss_fit):
    from lifecycle.training.pyfunc_model import TabularClassifier

    pyfunc = TabularClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"model_dir": str(loss_fit.model_dir)}))
    rows = loss_fit.holdout[loss.data.feature_names].head(20)
    out = pyfunc.predict(None, rows)
    assert list(out.columns) == ["prediction"] and out["prediction"].dtype == np.float64
    np.testing.assert_allclose(out["prediction"].to_numpy(), loss_fit.model.predict(rows))


def test_the_rmse_gate_is_a_ceiling():
    ev = Evaluation({"rmse": 12.0, "mae": 9.0, "r2": 0.5, "rows": 100.0})
    assert not decide(ev, None, GatePolicy(thresholds={"rmse": 10.0}, max_regression={})).passed
    assert decide(ev, None, GatePolicy(thresholds={"rmse": 15.0}, max_regression={})).passed
    champion = Evaluation({"rmse": 11.0, "mae": 9.0, "r2": 0.5, "rows": 100.0})
    held = decide(ev, champion, GatePolicy(thresholds={}, max_regression={"rmse": 2.0}))
    assert held.passed and "rmse 12.0000 vs champion 11.0000 (allowed +2.0)" in held.reason
    assert not decide(ev, champion, GatePolicy(thresholds={}, max_regression={"rmse": 0.5})).passed


# ------------------------------------------------------------------------------------------------ training
def test_binary_models_keep_their_architecture_dict_and_files(spec, tmp_path):
    frame = batches(spec, DAYS[:1])
    small = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 2, "hidden_units": [8]})})
    out = fit(small, tmp_path, frame)
    assert set(out.outcome.architecture) == {"width", "hidden", "dropout"}
    assert not {"task", "classes", "target_scaling"} & set(out.model.meta)
    assert isinstance(out.model.meta["threshold"], float)
    assert out.model.task == "binary" and out.model.classes is None
    assert out.model.predict_frame(frame.head(3)).columns.tolist() == ["probability", "prediction"]
    assert set(out.evaluation.overall) - {UNDEFINED} >= {"roc_auc", "log_loss", "positive_rate"}


def _arrays(n: int = 600, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.3 * rng.normal(size=n), [-0.5, 0.5])
    return x[:450], y[:450], x[450:], y[450:]


def _hp(**kw) -> Hyper:
    return Hyper(**{**dict(epochs=5, batch_size=64, learning_rate=3e-3, weight_decay=1e-4, hidden_units=[16],
                           dropout=0.1, patience=10, seed=3, device="cpu"), **kw})


def test_a_multiclass_run_resumes_exactly_and_never_from_a_binary_checkpoint(tmp_path):
    import torch

    xt, yt, xv, yv = _arrays()
    full = train(_hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "full", task="multiclass", outputs=3)

    class Crash(Exception):
        pass

    def crash_after_2(epoch, metrics, ckpt):
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        train(_hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed", on_epoch=crash_after_2, task="multiclass",
              outputs=3)
    resumed = train(_hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed", task="multiclass", outputs=3)
    assert resumed.resumed_from == 2
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0)
    binary = tmp_path / "binary"
    train(_hp(epochs=1), xt, (yt > 0).astype(np.int64), xv, (yv > 0).astype(np.int64), checkpoint_dir=binary)
    assert latest_checkpoint(binary) is not None
    with pytest.raises(TrainingError, match="made for another architecture"):
        train(_hp(), xt, yt, xv, yv, checkpoint_dir=binary, task="multiclass", outputs=3)


def test_multiclass_labels_must_be_class_indices():
    xt, yt, xv, yv = _arrays()
    with pytest.raises(TrainingError, match=r"training labels must be class indices in \[0, 2\)"):
        train(_hp(epochs=1), xt, yt, xv, yv, task="multiclass", outputs=2)
    with pytest.raises(TrainingError, match="a regression model has 1 output, not 3"):
        train(_hp(epochs=1), xt, yt.astype(np.float32), xv, yv.astype(np.float32), task="regression", outputs=3)


def _one_line_training_error(spec: ModelSpec, frame: pd.DataFrame) -> str:
    with pytest.raises(TrainingError) as err:
        tf.prepare_frame(spec, spec.training, frame)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_target_the_task_cannot_learn_from_is_one_training_error_line(tier, loss):
    frame = batches(tier, DAYS[:1])
    frame.loc[frame.index[::10], "tier"] = "extreme"
    message = _one_line_training_error(tier, frame)
    assert message.startswith("target 'tier' in the ") and "training rows" in message
    assert "not one of data.classes ['low', 'medium', 'high'] (e.g. 'extreme')" in message
    assert "not one of data.classes" in _one_line_training_error(tier, frame.assign(tier=None))
    assert "every row is class 'medium'" in _one_line_training_error(tier, frame.assign(tier="medium"))

    frame = batches(loss, DAYS[:1])
    text = frame.assign(loss_amount=frame["loss_amount"].astype(object))
    text.loc[text.index[::10], "loss_amount"] = "n/a"
    message = _one_line_training_error(loss, text)
    assert "values are not finite numbers" in message and "must be a number on every row" in message
    infinite = frame.assign(loss_amount=np.where(np.arange(len(frame)) % 7 == 0, np.inf, frame["loss_amount"]))
    assert "not finite numbers (e.g. inf)" in _one_line_training_error(loss, infinite)
    assert "the target is constant (5.0 on every row)" in _one_line_training_error(loss,
                                                                                 frame.assign(loss_amount=5.0))


# ------------------------------------------------------------------------------------------------ metrics
CLASSES = ["low", "medium", "high"]


def test_multiclass_metrics_on_degenerate_rows_are_none_with_reasons():
    names = task_metrics("multiclass", CLASSES)
    one = multiclass_metrics(["high"], [[0.1, 0.2, 0.7]], CLASSES, where="slice region=west")
    assert_clean(one, names)
    assert one["accuracy"] == 1.0 and one["recall.high"] == 1.0 and one["rows"] == 1.0
    assert one[UNDEFINED] == {"recall.low": "no row of class 'low' in the 1 row of slice region=west",
                              "recall.medium": "no row of class 'medium' in the 1 row of slice region=west"}
    empty = multiclass_metrics([], np.zeros((0, 3)), CLASSES)
    assert_clean(empty, names)
    assert empty["rows"] == 0.0 and all(empty[m] is None for m in names if m != "rows")
    constant = multiclass_metrics(["low"] * 4, [[0.2, 0.5, 0.3]] * 4, CLASSES)
    assert_clean(constant, names)
    assert constant["accuracy"] == 0.0 and constant["recall.low"] == 0.0 and constant["recall.medium"] is None
    certain = multiclass_metrics(["low", "high"], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], CLASSES)
    assert_clean(certain, names)  # a probability of 0 for the true class: a large, finite log loss
    with pytest.raises(ValueError, match=r"1 of 2 values are not one of data.classes .* \(e.g. 'extreme'\)"):
        multiclass_metrics(["low", "extreme"], [[1 / 3] * 3] * 2, CLASSES)
    with pytest.raises(ValueError, match="do not sum to 1"):
        multiclass_metrics(["low"], [[0.5, 0.1, 0.1]], CLASSES)
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        multiclass_metrics(["low"], [[0.5, 0.5]], CLASSES)


def test_regression_metrics_on_degenerate_rows_are_none_with_reasons():
    names = ["rmse", "mae", "r2", "rows"]
    one = regression_metrics([3.0], [2.0], where="slice region=west")
    assert_clean(one, names)
    assert one["rmse"] == 1.0 and one["mae"] == 1.0 and one["r2"] is None
    assert one[UNDEFINED]["r2"] == "R^2 needs at least 2 rows, slice region=west has 1 row"
    constant = regression_metrics([5.0, 5.0, 5.0], [4.0, 5.0, 6.0])
    assert_clean(constant, names)
    assert "the target is constant (5.0) in the 3 rows of the evaluation" in constant[UNDEFINED]["r2"]
    empty = regression_metrics([], [])
    assert_clean(empty, names)
    assert empty[UNDEFINED]["rmse"] == "no rows in the evaluation"
    huge = regression_metrics([1e200, -1e200], [-1e200, 1e200])
    assert_clean(huge, names)  # an overflow is None with a reason, never infinity
    assert huge["rmse"] is None and "not a finite number" in huge[UNDEFINED]["rmse"]
    with pytest.raises(ValueError, match=r"not finite numbers \(e.g. 'n/a'\)"):
        regression_metrics(["n/a", 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="predictions are NaN or infinite"):
        regression_metrics([1.0, 2.0], [np.nan, 2.0])


def test_evaluate_dispatches_per_slice_and_stays_plain_json():
    frame = pd.DataFrame({"y": ["low", "high", "high", "medium"], "region": ["west", "west", "east", None]})
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.2, 0.6, 0.2]])
    from lifecycle.spec import Slice

    ev = evaluate(frame, "y", p, [Slice(name="region", column="region")], task="multiclass", classes=CLASSES)
    assert set(ev.slices) == {"region=east", "region=west"}
    assert ev.slices["region=east"]["recall.low"] is None
    assert Evaluation.from_dict(plain_json(ev.to_dict())).to_dict() == ev.to_dict()
    reg = evaluate(frame.assign(y=[1.0, 2.0, 2.0, 4.0]), "y", np.array([1.0, 2.5, 2.0, 3.0]),
                   [Slice(name="region", column="region")], task="regression")
    assert reg.slices["region=east"]["r2"] is None and reg.overall["r2"] is not None
    plain_json(reg.to_dict())
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        evaluate(frame, "y", p, [], task="ranking")


def test_a_champion_of_another_task_is_not_compared(tier, tier_fit, spec, tmp_path):
    binary = fit(spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 1})}), tmp_path,
                 batches(spec, DAYS[:1])).model
    champion = tf.evaluate_model(tier, binary, tier_fit.holdout, "champion v1")
    plain_json(champion.to_dict())
    assert champion.reason("macro_f1") == ("champion v1 is a binary model; this spec's task is multiclass: not "
                                           "comparable")
    decision = decide(tier_fit.evaluation, champion, tier.gate)
    assert decision.passed and not decision.first_model
    assert "not judged against the champion" in decision.reason


# ------------------------------------------------------------------------------------------------ the spec
def _raw(name: str) -> dict:
    return yaml.safe_load((SPECS / f"{name}.yaml").read_text())


def _error(tmp_path: Path, name: str, edit) -> str:
    data = _raw(name)
    edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value)


@pytest.mark.parametrize(
    ("name", "edit", "line"),
    [
        pytest.param("credit_loss", lambda d: d["gate"]["thresholds"].update(roc_auc=0.7),
                     "gate.thresholds.roc_auc: not a regression metric (rmse, mae, r2, rows)", id="binary-on-reg"),
        pytest.param("credit_loss", lambda d: d["gate"]["slice_thresholds"].update(macro_f1=0.5),
                     "gate.slice_thresholds.macro_f1: not a regression metric", id="slice-metric"),
        pytest.param("credit_tier", lambda d: d.update(gate={"max_regression": {"rmse": 1.0}}),
                     "gate.max_regression.rmse: not a multiclass metric (accuracy, macro_f1, log_loss, rows, "
                     "recall.<class>)", id="reg-on-multiclass"),
        pytest.param("credit_tier", lambda d: d.update(gate={"thresholds": {"recall.extreme": 0.3}}),
                     "gate.thresholds.recall.extreme: 'extreme' is not one of data.classes ['low', 'medium', "
                     "'high']", id="unknown-class"),
        pytest.param("credit_tier", lambda d: d["data"].pop("classes"),
                     "data.classes: required for task multiclass", id="no-classes"),
        pytest.param("credit_tier", lambda d: d["data"].update(classes=["low", "high"]),
                     "data.classes: Value error, a multiclass model needs at least 3 classes, got 2", id="two"),
        pytest.param("credit_tier", lambda d: d["data"].update(classes=["low", "1", 1]),
                     "data.classes: Value error, classes must be distinct (as text): ['1']", id="duplicate"),
        pytest.param("credit_tier", lambda d: d["data"].update(classes=["low", 1.5, "high"]),
                     "data.classes: Value error, class 1 (1.5) must be text or a whole number", id="float-class"),
        pytest.param("credit_loss", lambda d: d["data"].update(classes=[1, 2, 3]),
                     "data.classes: only a multiclass model has classes (this spec's task is regression)",
                     id="classes-on-regression"),
        pytest.param("credit_loss", lambda d: d["gate"]["thresholds"].update(auc=0.7),
                     "gate.thresholds.auc.[key]: Input should be a metric: binary: roc_auc", id="unknown-metric"),
    ],
)
def test_spec_errors_name_the_field(tmp_path, name, edit, line):
    message = _error(tmp_path, name, edit)
    assert f"{tmp_path / name}.yaml: {line}" in message, message


def test_lifecycle_check_reports_each_wrong_metric_on_its_own_line(tmp_path, capsys):
    from lifecycle.cli import main

    def edit(d):
        d["gate"]["thresholds"].update(roc_auc=0.7, f1=0.5)

    data = _raw("credit_loss")
    edit(data)
    path = tmp_path / "credit_loss.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr()
    out = (lines.out + lines.err).splitlines()
    assert f"{path}: gate.thresholds.f1: not a regression metric (rmse, mae, r2, rows)" in out
    assert f"{path}: gate.thresholds.roc_auc: not a regression metric (rmse, mae, r2, rows)" in out


def test_gate_defaults_follow_the_task(tier, loss):
    assert tier.gate.thresholds == {"macro_f1": 0.5} and tier.gate.max_regression == {"macro_f1": 0.01}
    assert loss.gate.max_regression == {"rmse": 50.0, "r2": 0.02}  # given: kept
    data = _raw("credit_loss")
    data["gate"] = {"thresholds": {"rmse": 100.0}}
    spec = ModelSpec.model_validate(data)
    assert spec.gate.thresholds == {"rmse": 100.0} and spec.gate.max_regression == {"r2": 0.01}
    data.pop("gate")
    assert ModelSpec.model_validate(data).gate.thresholds == TASK_GATE_DEFAULTS["regression"]["thresholds"]
    # binary: exactly as before
    assert GatePolicy().thresholds == {"roc_auc": 0.7} and GatePolicy().max_regression == {"roc_auc": 0.005}
    binary = _raw("credit_loss") | {"task": "binary"}
    binary.pop("gate")
    assert ModelSpec.model_validate(binary).gate == GatePolicy()
    # a spec round-trips through its dump
    assert ModelSpec.model_validate(yaml.safe_load(yaml.safe_dump(tier.model_dump(mode="json")))) == tier


def test_a_drafted_multiclass_spec_lists_its_classes_and_gates_on_its_metrics():
    from lifecycle.data.draft import draft_spec, render

    frame = pd.DataFrame({"id": [f"r{i}" for i in range(90)], "x": np.arange(90) * 1.5,
                          "y": ["a", "b", "c"] * 30})
    draft = draft_spec("acme", frame, "y", id_column="id")
    spec = ModelSpec.model_validate(yaml.safe_load(render(draft)))
    assert spec.task == "multiclass" and spec.data.classes == ["a", "b", "c"]
    assert spec.gate.thresholds == {"macro_f1": 0.5}
    regression = ModelSpec.model_validate(yaml.safe_load(render(draft_spec("acme", frame.assign(y=frame["x"] * 2.5),
                                                                           "y", id_column="id"))))
    assert regression.task == "regression" and regression.gate.thresholds == {"r2": 0.0}


# ------------------------------------------------------------------------------------------------ the train path
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("name", ["credit_tier", "credit_loss"])
def test_the_train_path_trains_evaluates_gates_and_registers(name, state):
    from lifecycle.registry.store import CHAMPION, Registry
    from tests.conftest import gate_days

    spec = load_spec(SPECS / f"{name}.yaml")
    gate_days(spec, state, days=DAYS)
    trained = tf.train_candidate(spec, DAYS[1], "run-1", paths=state)
    evaluation = tf.evaluate_candidate(spec, trained, state)
    plain_json(evaluation)
    decision = tf.gate_candidate(spec, evaluation)
    assert decision["passed"], decision["reason"]
    registered = tf.register_candidate(spec, trained, evaluation, decision, "run-1", state)
    assert registered["status"] == "champion"
    # the second run is scored against the champion by the same path
    trained = tf.train_candidate(spec, DAYS[1], "run-2", paths=state, overrides={"seed": 6})
    evaluation = tf.evaluate_candidate(spec, trained, state)
    assert str(evaluation["champion_version"]) == "1" and evaluation["champion"]["overall"]
    decision = tf.gate_candidate(spec, evaluation)
    assert any(c["name"].startswith("regression.") and c["judged"] for c in decision["checks"])
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{spec.model_name}@{CHAMPION}")
    rows = tf.load_window(tf.Window(**trained["window"]))[spec.data.feature_names].head(5)
    rows = rows.astype({f.name: "float64" for f in spec.data.features if f.kind != "categorical"})  # the signature
    out = model.predict(rows)
    assert out.columns[0] == "prediction" and len(out) == 5
    assert str(Registry(state).by_alias(spec.model_name, CHAMPION).version) == "1"
