"""The gateway scores what was trained: its scorer (:class:`lifecycle.serving.scoring.FastScorer`) gives the
pyfunc's probabilities to 1e-6 on ordinary rows, missing values, unknown categories and extreme values.

The scorer is called directly, below the gateway's request validation, so values that validation may refuse
(far outside the spec's range, a null category) are compared too: the two paths must agree whatever reaches them.
"""
from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lifecycle.serving.scoring import FastScorer

ATOL = 1e-6
FAR = (1e12, -1e12, 1e6, -1e6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, spec):
    """A tiny model trained like any candidate (2 epochs on one synthetic day), saved as the model folder the
    pyfunc ships, and loaded by the pyfunc class itself; plus the rows it was trained on."""
    import datetime as dt
    from types import SimpleNamespace

    from lifecycle.data.synthetic import generate_batch
    from lifecycle.training import flow as tf
    from lifecycle.training.packaging import save_model_dir
    from lifecycle.training.preprocessing import Preprocessor
    from lifecycle.training.trainer import train

    frame = generate_batch(spec, dt.date(2026, 1, 1)).head(2000)
    train_df, val_df = frame.iloc[:1600], frame.iloc[1600:]
    pre = Preprocessor.fit(spec.data, train_df)
    target = spec.data.target
    outcome = train(tf.hyper(tf.effective_training(spec, 2, {"device": "cpu"})),
                    pre.transform(train_df), train_df[target].to_numpy(), pre.transform(val_df),
                    val_df[target].to_numpy())
    folder = save_model_dir(tmp_path_factory.mktemp("parity") / "model_dir", outcome.state_dict,
                            outcome.architecture, pre, 0.5, {"model": spec.name})
    from lifecycle.training.pyfunc_model import TabularClassifier

    pyfunc = TabularClassifier()
    pyfunc.load_context(SimpleNamespace(artifacts={"model_dir": str(folder)}))  # as mlflow loads it
    return pyfunc, frame


def _rows(spec, frame: pd.DataFrame) -> list[dict]:
    """Real rows, then the same rows with missing values, unknown categories and extreme values."""
    names = spec.data.feature_names
    base = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame[[spec.data.id_column, *names]].head(40).to_dict("records")]
    rows = [dict(r) for r in base]
    feats = spec.data.features
    numeric = [f for f in feats if f.kind != "categorical"]
    nullable = [f.name for f in feats if f.max_missing > 0]
    for i, r in enumerate(base):
        row = dict(r)
        for name in nullable[: 1 + i % len(nullable)]:
            row[name] = None  # one, two, then every nullable feature missing
        rows.append(row)
    for f in feats:
        if f.kind == "categorical":
            for value in ("NOT-A-CATEGORY", "", f.categories[0].lower(), None):
                rows.append({**base[0], f.name: value})
    for f in numeric:
        for value in (f.min, f.max, *FAR, (f.max or 0) * 10 + 1, (f.min or 0) - 1):
            if value is not None:
                rows.append({**base[1], f.name: value})
    rows.append({**base[2], **{f.name: 1e12 for f in numeric}})
    rows.append({**base[3], **{f.name: -1e12 for f in numeric}})
    rows.append({**base[4], **{f.name: f.min for f in numeric}})
    rows.append({**base[5], **{f.name: f.max for f in numeric}})
    rows.append({**base[6], **{f.name: None for f in feats}})  # everything missing
    return rows


def _frame(spec, rows: list[dict]) -> pd.DataFrame:
    """The rows as the pyfunc takes them: numeric columns float64 (NaN = missing), categories as objects."""
    out = pd.DataFrame(rows)[spec.data.feature_names]
    for f in spec.data.features:
        if f.kind != "categorical":
            out[f.name] = out[f.name].astype("float64")
    return out


def test_the_gateway_scorer_equals_the_pyfunc(trained, spec):
    pyfunc, frame = trained
    model = pyfunc.model  # the LoadedModel the pyfunc wraps
    scorer = FastScorer(model)
    rows = _rows(spec, frame)
    expected = pyfunc.predict(None, _frame(spec, rows))["probability"].to_numpy()
    got = scorer.proba(rows)
    assert got.shape == expected.shape == (len(rows),)
    assert np.isfinite(got).all() and np.isfinite(expected).all()
    worst = int(np.argmax(np.abs(got - expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=f"worst row {worst}: {rows[worst]}")
    # The features themselves are the same float32 matrix, bit for bit: one preprocessing code.
    np.testing.assert_array_equal(scorer.features(rows), model.preprocessor.transform(_frame(spec, rows)))
    # Not a degenerate comparison: the rows span a real range of scores.
    assert expected.max() - expected.min() > 0.01


def test_the_gateway_scorer_scores_single_rows_as_the_batch(trained, spec):
    pyfunc, frame = trained
    scorer = FastScorer(pyfunc.model)
    rows = _rows(spec, frame)[::7]
    batch = scorer.proba(rows)
    one_by_one = np.array([scorer.proba([r])[0] for r in rows])
    np.testing.assert_allclose(one_by_one, batch, rtol=0, atol=1e-12)


def test_the_gateway_scorer_equals_a_model_registered_before_the_move(tmp_path):
    """The legacy fixture (see ``test_legacy_model.py``): 50 rows and the pyfunc's probabilities at the time."""
    from lifecycle.training.packaging import load_model_dir

    with tarfile.open(Path(__file__).parents[1] / "fixtures" / "legacy_model_e70ebac.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    scorer = FastScorer(load_model_dir(tmp_path / "model" / "artifacts" / "model_dir"))
    frame = pd.read_parquet(tmp_path / "rows.parquet")
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]
    expected = pd.read_parquet(tmp_path / "expected.parquet")["probability"].to_numpy()
    np.testing.assert_allclose(scorer.proba(rows), expected, rtol=0, atol=ATOL)
