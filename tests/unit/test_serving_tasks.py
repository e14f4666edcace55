"""Serving, live statistics and the deploy judge for every task (issue 14): a multiclass model
(``tests/fixtures/specs/credit_tier.yaml``) and a regression model (``credit_loss.yaml``) served in process by the
gateway, trained briefly as any candidate is.

Covered per task: the scorers (NumPy and the torch fallback) equal to :meth:`LoadedModel.scores` to 1e-6; the
responses, the prediction log and the index; feedback (good labels, bad labels refused naming the item, the field,
the expected and the found, duplicates counted once); the live stats; the paired evidence and a judge verdict for
an equal and a clearly worse challenger; the screens (invalid, constant, inverted, moved) and their false alarms
for equal models. Binary behaviour is held unchanged by the existing serving tests.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from lifecycle.paths import StatePaths
from lifecycle.serving.evidence import (
    MulticlassEvidence,
    PairedEvidence,
    RegressionEvidence,
    decide,
    evaluate,
    screen,
)
from lifecycle.serving.live import ENTRY_BYTES, MulticlassPairedLive, RegressionPairedLive, half_brier
from lifecycle.serving.predlog import read_log
from lifecycle.serving.scoring import FastScorer, TorchScorer, scorer_for
from lifecycle.serving.tasks import MulticlassHead, RegressionHead, TaskMismatchError, class_text
from lifecycle.spec import CanaryPlan, ShadowPlan, load_spec
from tests.conftest import ADMIN, TOKEN
from tests.hostile_corpus import FEEDBACK_TOKEN, FEEDER

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
ATOL = 1e-6
TASKS = ("multiclass", "regression")
SPEC_FILE = {"multiclass": "credit_tier.yaml", "regression": "credit_loss.yaml"}


# ------------------------------------------------------------------------------------------------ arrange
def _train(spec, folder: Path) -> SimpleNamespace:
    """A brief training run of ``spec`` as the train path does it (no MLflow): the loaded model, the JSON rows
    of the held-out split and their targets."""
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch
    from lifecycle.training import flow as tf
    from lifecycle.training.packaging import load_model_dir
    from lifecycle.training.trainer import train

    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 3})})
    frame = numpy_dtypes(generate_batch(spec, dt.date(2026, 1, 1)).head(800))
    data = tf.prepare_frame(spec, spec.training, frame)
    outcome = train(tf.hyper(spec.training), data.x_train, data.y_train, data.x_val, data.y_val,
                    checkpoint_dir=folder / "checkpoints", **data.target.head())
    model = load_model_dir(tf.write_model_dir(folder / "model_dir", outcome, data, None, {"model": spec.name}))
    names = [spec.data.id_column, *spec.data.feature_names]
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v))
             for k, v in r.items()} for r in frame[names].to_dict("records")]
    truth = frame[spec.data.target].tolist()
    return SimpleNamespace(spec=spec, model=model, frame=frame, rows=rows, truth=truth)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, SimpleNamespace]:
    return {task: _train(load_spec(SPECS / SPEC_FILE[task]), tmp_path_factory.mktemp(task)) for task in TASKS}


class Worse:
    """A clearly worse challenger built on a real scorer: multiclass its probabilities rolled by one class (the
    right class gets the wrong probability), regression its values shifted by two target sds and scaled."""

    def __init__(self, scorer: Any) -> None:
        self.inner, self.task, self.classes, self.target = scorer, scorer.task, scorer.classes, scorer.target
        self.threshold = None

    def scores(self, rows):
        out = self.inner.scores(rows)
        if self.task == "multiclass":
            return np.roll(out, 1, axis=1)
        return out * 1.5 + 2 * self.target.std

    proba = scores


def gateway_for(root: Path, fit: SimpleNamespace, scorers: dict[str, Any]):
    from lifecycle.serving.app import Gateway, create_app

    gw = Gateway([fit.spec], StatePaths(root), token=TOKEN, loader=lambda s, v: scorers[v],
                 feedback_token=FEEDBACK_TOKEN)

    async def arrange():
        for version in scorers:
            await gw.load(fit.spec.name, version)
        await gw.set_weights(fit.spec.name, {"1": 100}, "test: arrange")

    asyncio.run(arrange())
    return gw, TestClient(create_app(gw))


@pytest.fixture
def served(tmp_path):
    made = []

    def make(fit, scorers):
        gw, client = gateway_for(tmp_path / f"state{len(made)}", fit, scorers)
        made.append(gw)
        return gw, client

    yield make
    for gw in made:
        gw.logs.close()


def urls(spec) -> SimpleNamespace:
    m = spec.name
    return SimpleNamespace(predict=f"/v1/models/{m}/predict", feedback=f"/v1/models/{m}/feedback",
                           stats=f"/admin/models/{m}/stats", shadow=f"/admin/models/{m}/shadow",
                           evidence=f"/admin/models/{m}/evidence")


# ------------------------------------------------------------------------------------------------ 1. scoring
@pytest.mark.parametrize("task", TASKS)
def test_the_numpy_and_the_torch_scorers_equal_the_loaded_model(trained, task):
    # Arrange
    fit = trained[task]
    rows = [*fit.rows[:60], {**fit.rows[0], "income": None, "months_employed": None, "credit_utilization": None}]
    import pandas as pd

    expected = fit.model.scores(pd.DataFrame(rows))

    # Act
    fast, torch_scorer = FastScorer(fit.model), TorchScorer(fit.model)

    # Assert
    assert isinstance(scorer_for(fit.model), FastScorer)
    target = fit.model.target
    for scorer in (fast, torch_scorer):
        got = scorer.scores(rows)
        assert got.shape == expected.shape and got.dtype == np.float64
        if task == "multiclass":
            np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
        else:  # to 1e-6 in the network's (standardised) units: target units scale float32's rounding by the sd
            np.testing.assert_allclose((got - target.mean) / target.std, (expected - target.mean) / target.std,
                                       atol=ATOL, rtol=0)
    if task == "multiclass":
        assert np.allclose(fast.scores(rows).sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(fast.proba(rows), fast.scores(rows))
    else:
        with pytest.raises(ValueError, match="regression model predicts values"):
            fast.proba(rows)


@pytest.mark.parametrize("task", TASKS)
def test_a_custom_torch_module_is_scored_by_the_torch_fallback(trained, task):
    # Arrange: a user's own module (no .net), with the fitted preprocessing and target of the trained model
    import pandas as pd
    import torch

    from lifecycle.training.packaging import LoadedModel

    fit = trained[task]
    outputs = len(fit.spec.data.classes) if task == "multiclass" else 1

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.first = torch.nn.Linear(fit.model.preprocessor.width, 8)
            self.last = torch.nn.Linear(8, outputs)

        def forward(self, x):
            return self.last(torch.tanh(self.first(x)))  # (n, 1) for regression: read as (n,)

    model = LoadedModel(fit.model.preprocessor, Tiny().eval(), None, fit.model.meta)
    rows = fit.rows[:40]

    # Act
    scorer = scorer_for(model)

    # Assert
    assert isinstance(scorer, TorchScorer)
    expected = model.scores(pd.DataFrame(rows))  # a regression module's (n, 1), as LoadedModel leaves it
    got = scorer.scores(rows)
    if task == "regression":
        expected = (expected.reshape(-1) - fit.model.target.mean) / fit.model.target.std
        got = (got - fit.model.target.mean) / fit.model.target.std
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="built-in MLP"):
        FastScorer(model)


# ------------------------------------------------------------------------------------------------ 2. the gateway
def _labels(fit, n: int, start: int = 0) -> list[Any]:
    return fit.truth[start:start + n]


def test_multiclass_responses_log_index_feedback_and_live_stats(trained, served):
    # Arrange
    fit = trained["multiclass"]
    gw, client = served(fit, {"1": scorer_for(fit.model)})
    u, classes = urls(fit.spec), fit.spec.data.classes
    rows = fit.rows[:20]

    # Act
    resp = client.post(u.predict, json=rows)

    # Assert: the response
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    p = fit.model.predict_proba(fit.frame.head(20))
    for i, pred in enumerate(answer["predictions"]):
        assert set(pred) == {"label", "probability", "probabilities"}
        assert list(pred["probabilities"]) == [str(c) for c in classes]
        k = int(np.argmax(p[i]))
        assert pred["label"] == classes[k] and pred["probability"] == pytest.approx(p[i, k], abs=ATOL)
        assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    # the index keeps K float64 per row
    assert gw.models[fit.spec.name].index.bytes == ENTRY_BYTES + 8 * len(classes) * len(rows)

    # Act: feedback (the labels as text and, for one row, a class the spec writes as text given as is)
    truth = _labels(fit, 20)
    good = client.post(u.feedback, json={"request_id": answer["request_id"], "labels": truth}, headers=FEEDER)
    again = client.post(u.feedback, json={"request_id": answer["request_id"], "labels": truth}, headers=FEEDER)
    bad = client.post(u.feedback, json={"request_id": answer["request_id"], "labels": [*truth[:3], "extreme"]},
                      headers=FEEDER)
    boolean = client.post(u.feedback, json={"request_id": answer["request_id"], "label": True}, headers=FEEDER)
    gw.logs.flush()

    # Assert: feedback
    assert good.status_code == 202 and good.json() == {"accepted": 1, "matched": 1, "duplicates": 0}
    assert again.json() == {"accepted": 1, "matched": 0, "duplicates": 1}  # counted once
    assert bad.status_code == 422
    assert bad.json()["error"] == ("feedback: labels[3] must be one of the classes ['low', 'medium', 'high'], got "
                                   "str 'extreme'")
    assert boolean.status_code == 422 and "feedback: label must be one of the classes" in boolean.json()["error"]
    assert "got bool True" in boolean.json()["error"]
    # the logs
    t = gw.models[fit.spec.name].stats["1"].buckets[0].start
    start, end = (dt.datetime.fromtimestamp(t, dt.UTC) + dt.timedelta(hours=h) for h in (-1, 2))
    (record,) = read_log(gw.paths.root / "serving", "predictions", fit.spec.name, start, end)
    assert record["label"] == [str(classes[int(np.argmax(r))]) for r in p]
    assert record["probability"] == pytest.approx(p.max(axis=1).tolist(), abs=ATOL)
    assert np.allclose(record["probabilities"], p, atol=ATOL)
    assert "value" not in record and record["rows"] == rows
    feedback = read_log(gw.paths.root / "serving", "feedback", fit.spec.name, start, end)
    assert [f["label"] for f in feedback] == [truth, truth]
    assert [f.get("duplicate", False) for f in feedback] == [False, True]
    # the live stats: correctness of the most probable class, Brier / 2
    stats = client.get(f"{u.stats}?since=0", headers=ADMIN).json()["versions"]["1"]
    y = np.array([classes.index(t) for t in truth])
    assert stats["feedback"] == 20 and stats["correct"] == int((p.argmax(axis=1) == y).sum())
    assert stats["brier"] == pytest.approx(float(half_brier(p, y).mean()), abs=ATOL)
    assert 0.0 <= stats["brier"] <= 1.0


def test_regression_responses_log_index_feedback_and_live_stats(trained, served):
    # Arrange
    fit = trained["regression"]
    gw, client = served(fit, {"1": scorer_for(fit.model)})
    u = urls(fit.spec)
    rows = fit.rows[:10]

    # Act
    answer = client.post(u.predict, json=rows).json()
    one = client.post(u.predict, json=rows[0]).json()

    # Assert: the response and the index
    values = fit.model.predict(fit.frame.head(10))
    assert [set(p) for p in answer["predictions"]] == [{"value"}] * 10
    assert [p["value"] for p in answer["predictions"]] == pytest.approx(values.tolist(), rel=1e-6, abs=ATOL)
    assert one["predictions"][0]["value"] == pytest.approx(values[0], rel=1e-6)
    assert gw.models[fit.spec.name].index.bytes == 2 * ENTRY_BYTES + 8 * 11

    # Act: feedback
    truth = [float(t) for t in _labels(fit, 10)]
    sent = [int(truth[0]), *truth[1:]]  # an integer is a number too
    good = client.post(u.feedback, json={"request_id": answer["request_id"], "labels": sent}, headers=FEEDER)
    dup = client.post(u.feedback, json=[{"request_id": answer["request_id"], "labels": sent},
                                        {"request_id": one["request_id"], "label": truth[0]}], headers=FEEDER)
    refused = {
        "text": client.post(u.feedback, json={"request_id": one["request_id"], "label": "12.5"}, headers=FEEDER),
        "bool": client.post(u.feedback, json={"request_id": one["request_id"], "labels": [1.0, False]},
                            headers=FEEDER),
        "inf": client.post(u.feedback, content=b'{"request_id": "%s", "label": 1e999}' % one["request_id"].encode(),
                           headers={**FEEDER, "content-type": "application/json"}),
    }
    gw.logs.flush()

    # Assert
    assert good.json() == {"accepted": 1, "matched": 1, "duplicates": 0}
    assert dup.json() == {"accepted": 2, "matched": 1, "duplicates": 1}
    assert refused["text"].status_code == 422
    assert refused["text"].json()["error"] == ("feedback: label must be a finite number (the target, in its "
                                               "units), got str '12.5'")
    assert refused["bool"].json()["error"].startswith("feedback: labels[1] must be a finite number")
    assert refused["inf"].status_code == 422 and "label must be a finite number" in refused["inf"].json()["error"]
    t = gw.models[fit.spec.name].stats["1"].buckets[0].start
    start, end = (dt.datetime.fromtimestamp(t, dt.UTC) + dt.timedelta(hours=h) for h in (-1, 2))
    records = read_log(gw.paths.root / "serving", "predictions", fit.spec.name, start, end)
    assert all(set(r) >= {"value"} and not set(r) & {"probability", "label", "probabilities"} for r in records)
    feedback = read_log(gw.paths.root / "serving", "feedback", fit.spec.name, start, end)
    assert feedback[0]["label"] == [float(x) for x in sent] and all(type(x) is float for x in feedback[0]["label"])
    # live stats: no correctness; the loss e^2 / (e^2 + s^2) in [0, 1]
    stats = client.get(f"{u.stats}?since=0", headers=ADMIN).json()["versions"]["1"]
    s = fit.model.target.std
    e2 = (np.array([*values.tolist(), values[0]]) - np.array([*sent, truth[0]])) ** 2
    assert stats["feedback"] == 11 and stats["correct"] is None
    assert stats["brier"] == pytest.approx(float((e2 / (e2 + s * s)).mean()), rel=1e-6)


def test_a_version_of_another_task_or_other_classes_is_refused_at_load(trained, tmp_path):
    from lifecycle.serving.app import Gateway

    tier, loss = trained["multiclass"], trained["regression"]
    gw = Gateway([tier.spec], StatePaths(tmp_path), token=TOKEN, feedback_token=FEEDBACK_TOKEN,
                 loader=lambda s, v: scorer_for(loss.model))
    with pytest.raises(TaskMismatchError, match="is a regression model but the spec's task is multiclass"):
        asyncio.run(gw.load(tier.spec.name, "1"))
    gw.logs.close()
    head = MulticlassHead(["low", "high", "medium"])
    with pytest.raises(TaskMismatchError, match="same classes, same order"):
        head.check(scorer_for(tier.model), "credit_tier", "4")


def test_a_class_label_matches_by_its_text_form():
    head = MulticlassHead([0, 1, 2])
    assert head.labels("feedback", "labels", [2, "2", 2.0, 0])[0] == ["2", "2", "2", "0"]
    assert class_text(True) is None and class_text(2.5) is None
    with pytest.raises(ValueError, match=r"labels\[0\] must be one of the classes \['0', '1', '2'\], got int 3"):
        head.labels("feedback", "labels", [3])
    with pytest.raises(ValueError, match="got float nan"):
        RegressionHead().labels("item 2", "label", [math.nan])


# ------------------------------------------------------------------------------------------------ 3. the judge
def _shadow_run(client, fit, challenger: str, rows: list[dict], truth: list[Any], batch: int = 50) -> dict:
    """Set the shadow pair v1 -> ``challenger``, send ``rows`` in batches, label every row; -> the evidence."""
    u = urls(fit.spec)
    assert client.put(u.shadow, json={"champion": "1", "challenger": challenger}, headers=ADMIN).status_code == 200
    for i in range(0, len(rows), batch):
        answer = client.post(u.predict, json=rows[i:i + batch]).json()
        labels = truth[i:i + batch]
        resp = client.post(u.feedback, json={"request_id": answer["request_id"], "labels": labels}, headers=FEEDER)
        assert resp.json()["matched"] == 1, resp.text
    got = client.get(f"{u.evidence}?challenger={challenger}&since=0", headers=ADMIN)
    assert got.status_code == 200, got.text
    return got.json()["evidence"]


@pytest.mark.parametrize("task", TASKS)
def test_the_judge_passes_an_equal_challenger_and_rolls_back_a_clearly_worse_one(trained, served, task):
    """Equal: the same model as v1 (every d is 0: never rejected, whatever alpha). Worse: its false-failure
    probability is that of the e-process not crossing 1/alpha on 400 labelled rows of a large effect (accuracy
    drops by tens of points, or the normalised squared-error difference averages > 0.3): far below 1e-3, and the
    run is seeded (deterministic)."""
    # Arrange
    fit = trained[task]
    real = scorer_for(fit.model)
    _gw, client = served(fit, {"1": real, "2": scorer_for(fit.model), "3": Worse(real)})
    rows, truth = fit.rows[:400], [float(t) for t in fit.truth[:400]] if task == "regression" else fit.truth[:400]
    plan = CanaryPlan()

    # Act
    equal = PairedEvidence.from_dict(_shadow_run(client, fit, "2", rows, truth))
    worse = PairedEvidence.from_dict(_shadow_run(client, fit, "3", rows, truth))
    v_equal = decide(equal, plan, stage="shadow", stage_elapsed=60, stage_exposure=0)
    v_worse = decide(worse, plan, stage="shadow", stage_elapsed=60, stage_exposure=0)

    # Assert: the evidence
    for ev in (equal, worse):
        assert ev.task == task and ev.pairs == 400 and ev.labels == 400 and ev.invalid == 0
        assert ev.requests == 8 and ev.sum_derr == 0
    assert equal.sum_dacc == 0 and equal.sum_dbrier == pytest.approx(0.0, abs=1e-9)
    if task == "multiclass":
        assert equal.classes == ["low", "medium", "high"] and sum(equal.class_c) == sum(equal.class_x) == 400
        assert equal.class_c == equal.class_x
        assert worse.sum_dacc > 50  # the challenger is right far less often
    else:
        assert equal.sum_dacc == worse.sum_dacc == 0  # no correctness for values
        assert worse.sum_dbrier / worse.labels > 0.3
    # the verdicts
    assert v_equal.action == "pass", v_equal.reason
    assert v_worse.action == "rollback", v_worse.reason
    stats = v_equal.to_dict()["statistics"]
    if task == "regression":
        assert stats["tests"]["accuracy"]["applicable"] is False and stats["tests"]["accuracy"]["alpha"] == 0
        assert stats["alpha_per_test"] == pytest.approx(plan.slo.alpha / 3)
        assert "accuracy not applicable" in stats["correction"] and "accuracy not applicable" in v_equal.reason
        assert v_worse.statistics["decided_by"] in ("brier", "screen")
    else:
        assert stats["alpha_per_test"] == pytest.approx(plan.slo.alpha / 4)
        assert "applicable" not in stats["tests"]["accuracy"]
    orjson.dumps(v_worse.to_dict())  # plain JSON


def test_regression_accuracy_is_not_applicable_and_never_passes_on_no_data():
    slo = CanaryPlan().slo
    tests = evaluate(RegressionEvidence("1", "2"), slo)
    acc = tests["accuracy"]
    assert (acc.applicable, acc.rejected, acc.n, acc.estimate, acc.alpha) == (False, False, 0, None, 0.0)
    assert "not applicable" in acc.note
    assert {t.alpha for name, t in tests.items() if name != "accuracy"} == {slo.alpha / 3}
    binary = evaluate(PairedEvidence("1", "2"), slo)
    assert {t.alpha for t in binary.values()} == {slo.alpha / 4}
    assert "applicable" not in binary["accuracy"].to_dict()


# ------------------------------------------------------------------------------------------------ 4. the screens
K = 3


def _multiclass_pair(rng, n: int, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two equal noisy models: a shared latent signal, each version's logits with its own noise."""
    signal = rng.normal(0, 1.5, (n, K))

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return softmax(signal + rng.normal(0, noise, (n, K))), softmax(signal + rng.normal(0, noise, (n, K)))


def _regression_pair(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    signal = rng.normal(1000.0, 300.0, n)
    return signal + rng.normal(0, 150.0, n), signal + rng.normal(0, 150.0, n)


def _evidence(task: str, p_c: np.ndarray, p_x: np.ndarray) -> PairedEvidence:
    live = MulticlassPairedLive("1", "2", ["a", "b", "c"]) if task == "multiclass" else RegressionPairedLive("1", "2")
    live.mirrored(1000.0, False, False, p_c, p_x)
    return PairedEvidence.from_dict(orjson.loads(orjson.dumps(live.summary(0))))


@pytest.mark.parametrize("task", TASKS)
def test_screen_false_alarms_for_equal_models(task):
    """1,000 seeded screens of two equal noisy models at exactly ``min_pairs`` (200) pairs: no stop and no hold
    (seeded, so deterministic; with another seed the nearest figure is 7 sd or more from its rule (see
    :func:`screen_multiclass`, :func:`screen_regression`), a false failure probability < 1e-6 per screen)."""
    rng, plan = np.random.default_rng(14), ShadowPlan()
    stops = holds = 0
    for _ in range(1000):
        p_c, p_x = (_multiclass_pair if task == "multiclass" else _regression_pair)(rng, plan.min_pairs)
        sc = screen(_evidence(task, p_c, p_x), plan)
        stops += sc.stop
        holds += sc.hold
    assert stops == 0 and holds == 0
    same = screen(_evidence(task, p_c, p_c), plan)  # the same model: never
    assert not same.stop and not same.hold and same.figures["correlation"] == pytest.approx(1.0)


@pytest.mark.parametrize(("task", "make", "stop", "fragment"), [
    pytest.param("multiclass", lambda c, x: (c, np.where(np.arange(len(x))[:, None] == 3, np.nan, x)), True,
                 "1 invalid challenger probability rows", id="multiclass-nan"),
    pytest.param("multiclass", lambda c, x: (c, np.where(np.arange(len(x))[:, None] == 5, x * 1.01, x)), True,
                 "not summing to 1", id="multiclass-not-summing-to-1"),
    pytest.param("multiclass", lambda c, x: (c, np.tile([0.2, 0.3, 0.5], (len(x), 1))), True,
                 "probabilities are constant", id="multiclass-constant"),
    pytest.param("multiclass", lambda c, x: (c, (1 - x) / 2), True, "inverted", id="multiclass-inverted"),
    pytest.param("multiclass", lambda c, x: (c, (x + np.array([0.0, 0.0, 1.0])) / 2), False, "moved",
                 id="multiclass-moved"),
    pytest.param("regression", lambda c, x: (c, np.where(np.arange(len(x)) == 7, np.inf, x)), True,
                 "1 invalid challenger values (NaN or infinite)", id="regression-inf"),
    pytest.param("regression", lambda c, x: (c, np.full(len(x), 950.0)), True, "values are constant",
                 id="regression-constant"),
    pytest.param("regression", lambda c, x: (c, 2000.0 - x), True, "inverted", id="regression-inverted"),
    pytest.param("regression", lambda c, x: (c, x + 300.0), False, "moved", id="regression-moved"),
])
def test_a_broken_or_moved_challenger_is_screened(task, make, stop, fragment):
    rng, plan = np.random.default_rng(3), ShadowPlan()
    p_c, p_x = (_multiclass_pair if task == "multiclass" else _regression_pair)(rng, 400)
    p_c, p_x = make(p_c, p_x)
    ev = _evidence(task, p_c, p_x)

    sc = screen(ev, plan)

    orjson.dumps(sc.to_dict())
    assert (sc.stop, sc.hold) == (stop, not stop), sc.reason
    assert fragment in sc.reason
    verdict = decide(ev, CanaryPlan(), stage="shadow", stage_elapsed=60, stage_exposure=0)
    assert verdict.action == ("rollback" if stop else "wait")


def test_paired_losses_are_bounded_and_oriented():
    e_c = np.array([0.0, 1.0, 2.0, 1e200, 0.0, 3.0])
    e_x = np.array([0.0, 2.0, 1.0, 1e201, 5.0, -3.0])
    from lifecycle.serving.live import normalised_sq_diff

    d = normalised_sq_diff(e_c, e_x)
    assert d.tolist() == pytest.approx([0.0, 0.6, -0.6, 1.0, 1.0, 0.0], abs=1e-2)
    assert (np.abs(d) <= 1).all()
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1 / 3] * 3])
    assert half_brier(p, np.array([0, 0, 2])).tolist() == pytest.approx([0.0, 1.0, 1 / 3])


def test_task_evidence_round_trips_adds_and_refuses_what_does_not_fit():
    # Arrange
    rng = np.random.default_rng(5)
    p_c, p_x = _multiclass_pair(rng, 50)
    multi = _evidence("multiclass", p_c, p_x)
    v_c, v_x = _regression_pair(rng, 50)
    reg = _evidence("regression", v_c - 5000.0, v_x - 5000.0)  # negative values: sums of any sign

    # Act / Assert
    assert isinstance(multi, MulticlassEvidence) and isinstance(reg, RegressionEvidence)
    for ev in (multi, reg):
        d = orjson.loads(orjson.dumps(ev.to_dict()))
        assert d["task"] == ev.task and PairedEvidence.from_dict(d) == ev
        assert (ev + ev).pairs == 100 and ev.merged() == ev
    assert (multi + multi).class_c == [2 * c for c in multi.class_c] and sum(multi.class_c) == 50
    assert reg.sum_pc < 0
    with pytest.raises(ValueError, match="cannot add"):
        multi + reg
    with pytest.raises(ValueError, match="cannot add"):
        multi + MulticlassEvidence("1", "2", classes=["x", "y", "z"], class_c=[0] * 3, class_x=[0] * 3,
                                   sum_pck=[0.0] * 3, sum_pxk=[0.0] * 3)
    with pytest.raises(ValueError, match="class_c must be a list of 3 numbers"):
        PairedEvidence.from_dict(multi.to_dict() | {"class_c": [1, 2]})
    with pytest.raises(ValueError, match="task must be one of"):
        PairedEvidence.from_dict(multi.to_dict() | {"task": "ranking"})
    with pytest.raises(ValueError, match=r"class_x\[1\]"):
        decide(replace(multi, class_x=[1, math.nan, 2]), CanaryPlan(), stage="shadow", stage_elapsed=1,
               stage_exposure=0)
    assert "task" not in PairedEvidence("1", "2").to_dict()  # binary: as it always was


# ------------------------------------------------------------------------------------------------ review fixes
def test_a_users_network_is_scored_by_torch_even_with_a_net_of_linear_layers(trained):
    """A factory's module runs its own forward: a ``.net`` of Linear layers plus a skip in ``forward`` would be
    scored wrongly by the NumPy path, which reads ``.net`` alone."""
    import torch

    from lifecycle.training.packaging import LoadedModel

    fit = trained["regression"]

    class WithSkip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(fit.model.preprocessor.width, 1))

        def forward(self, x):
            return self.net(x).squeeze(-1) + 1.0  # the skip the NumPy path would miss

    model = LoadedModel(fit.model.preprocessor, WithSkip().eval(), None, fit.model.meta,
                        {"module": "tests.fixtures.custom_modules:linear"})
    assert model.factory is not None and isinstance(scorer_for(model), TorchScorer)


def test_regression_values_beyond_any_model_are_invalid_and_keep_the_sums_finite():
    """A challenger answering 1e200 (or NaN): counted invalid, left out of the sums of squares (which would
    overflow to inf and make the evidence unreadable), so the screen stops the deploy."""
    live = RegressionPairedLive("1", "2")
    live.mirrored(100.0, False, False, np.array([1.0, 2.0, 3.0]), np.array([1e200, np.nan, 3.0]))
    live.labelled(100.0, np.array([1.0, 2.0, 3.0]), np.array([1e200, 2.5, 3.0]), np.array([1.0, 2.0, 1e300]))
    evidence = RegressionEvidence.from_dict(orjson.loads(orjson.dumps(live.summary(0.0))))
    assert evidence.invalid == 2 and evidence.pairs == 1 and evidence.labels == 1
    assert all(math.isfinite(v) for v in orjson.loads(orjson.dumps(evidence.to_dict())).values()
               if isinstance(v, float))


def test_the_feedback_rate_limit_charges_each_label_of_a_task_model(trained, served):
    """Multiclass and regression feedback is charged per label, as binary's is (not per item)."""
    fit = trained["regression"]
    gw, client = served(fit, {"1": scorer_for(fit.model)})
    u = urls(fit.spec)
    rid = client.post(u.predict, json=fit.rows[:3]).json()["request_id"]
    charged = []
    gw._charge = lambda rt, who, n: charged.append(n)
    resp = client.post(u.feedback, json={"request_id": rid, "labels": [float(y) for y in fit.truth[:3]]},
                       headers=FEEDER)
    assert resp.status_code == 202, resp.text
    assert charged == [3]
