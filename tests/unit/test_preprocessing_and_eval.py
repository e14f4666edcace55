from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lifecycle.spec import Slice
from lifecycle.training.evaluation import (
    Evaluation,
    best_threshold,
    binary_metrics,
    calibration_error,
    evaluate,
    format_metric,
)
from lifecycle.training.preprocessing import Preprocessor


@pytest.fixture
def frame(spec):
    import datetime as dt

    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch

    return numpy_dtypes(generate_batch(spec, dt.date(2026, 1, 1)))


def test_statistics_come_from_the_rows_it_is_fitted_on(spec, frame):
    train, other = frame.iloc[:1000], frame.iloc[1000:].copy()
    other["age"] = other["age"] + 40
    pre = Preprocessor.fit(spec.data, train)
    age = next(c for c in pre.numeric if c.name == "age")
    assert age.mean == pytest.approx(train["age"].mean())
    assert Preprocessor.fit(spec.data, other).numeric[0].mean != pytest.approx(age.mean)


def test_missing_values_get_the_median_and_an_indicator(spec, frame):
    pre = Preprocessor.fit(spec.data, frame)
    row = frame.iloc[:1].copy()
    row["income"] = np.nan
    x = pre.transform(row)
    names = pre.output_names
    assert x[0, names.index("income__missing")] == 1.0
    income = next(c for c in pre.numeric if c.name == "income")
    expected = (np.log1p(income.median) - income.mean) / income.std if income.log else \
        (income.median - income.mean) / income.std
    assert x[0, names.index("income")] == pytest.approx(expected, rel=1e-5)


def test_unknown_category_lands_in_the_unknown_slot(spec, frame):
    pre = Preprocessor.fit(spec.data, frame)
    row = {k: [v] for k, v in frame.iloc[0].to_dict().items()}
    row["region"] = ["atlantis"]
    x = pre.transform(row)
    assert x[0, pre.output_names.index("region=__unknown__")] == 1.0
    assert x.shape == (1, pre.width)


def test_round_trip_through_json_gives_identical_features(spec, frame):
    pre = Preprocessor.fit(spec.data, frame)
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(pre.transform(frame), again.transform(frame))


def _reference_features(pre: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """The preprocessing written out one column and one value at a time (float64, one rounding to float32)."""
    out = np.zeros((len(frame), pre.width), dtype=np.float32)
    for i, row in enumerate(frame.to_dict("records")):
        j = 0
        for c in pre.numeric:
            value = row[c.name]
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            x = float(c.median if missing else value)
            if c.log:
                x = float(np.log1p(max(x, 0.0)))
            out[i, j] = (x - c.mean) / c.std
            j += 1
            if c.indicator:
                out[i, j] = float(missing)
                j += 1
        for c in pre.categorical:
            slot = c.categories.index(row[c.name]) if row[c.name] in c.categories else len(c.categories)
            out[i, j + slot] = 1.0
            j += len(c.categories) + 1
    return out


def test_columns_and_json_rows_give_the_reference_features_bit_for_bit(spec, frame):
    """The vectorised transform (one pass over every numeric column) is the per-value arithmetic, exactly: on
    missing values, log-transformed columns, unknown and missing categories, for frames and for JSON rows."""
    fitted = Preprocessor.fit(spec.data, frame).to_dict()
    for column in fitted["numeric"]:  # a log-transformed column too (this generator's tails are too light)
        column["log"] = column["log"] or column["name"] == "income"
    pre = Preprocessor.from_dict(fitted)
    assert any(c.log for c in pre.numeric) and any(c.indicator for c in pre.numeric)
    sample = frame.iloc[:200].copy()
    sample.loc[sample.index[:20], "income"] = np.nan
    sample.loc[sample.index[10:30], "months_employed"] = np.nan
    sample.loc[sample.index[5:9], "region"] = "atlantis"
    sample.loc[sample.index[40:44], "home_ownership"] = None
    expected = _reference_features(pre, sample)
    np.testing.assert_array_equal(pre.transform(sample), expected)
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in sample.to_dict("records")]
    np.testing.assert_array_equal(pre.transform_rows(rows), expected)
    # One row at a time (the gateway's single-row path), missing values as None and as NaN
    np.testing.assert_array_equal(np.vstack([pre.transform_rows([r]) for r in rows]), expected)
    nan_rows = [{k: (float("nan") if v is None and k in ("income", "months_employed") else v) for k, v in r.items()}
                for r in rows]
    np.testing.assert_array_equal(np.vstack([pre.transform_rows([r]) for r in nan_rows]), expected)


def test_calibration_error_of_perfect_and_biased_predictions():
    rng = np.random.default_rng(0)
    p = rng.random(50_000)
    y = (rng.random(50_000) < p).astype(int)
    assert calibration_error(y, p) < 0.01
    assert calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_metrics_and_slices(spec):
    df = pd.DataFrame({"region": ["a", "a", "b", "b"], "age": [20.0, 30.0, 50.0, 70.0], "default": [0, 1, 0, 1]})
    p = np.array([0.1, 0.9, 0.6, 0.4])
    ev = evaluate(df, "default", p, [Slice(name="region", column="region"),
                                    Slice(name="age", column="age", bins=[18, 40, 100])])
    assert ev.overall["roc_auc"] == pytest.approx(0.75)
    assert ev.slices["region=a"]["roc_auc"] == 1.0 and ev.slices["region=b"]["roc_auc"] == 0.0
    assert set(ev.slices) == {"region=a", "region=b", "age=[18,40)", "age=[40,100)"}
    one_class = binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]), where="slice region=west")
    assert one_class["roc_auc"] is None
    assert one_class["undefined"] == {"roc_auc": "one class (all positive) in the 2 rows of slice region=west"}


def test_undefined_metrics_are_none_with_a_reason_and_old_nan_records_still_load():
    df = pd.DataFrame({"region": ["a", "b", "b"], "default": [1, 0, 1]})
    ev = evaluate(df, "default", np.array([0.0, 1.0, 1.0]), [Slice(name="region", column="region")])
    assert ev.slices["region=a"]["roc_auc"] is None and ev.slices["region=a"]["precision"] is None
    assert ev.reason("roc_auc", "region=a") == "one class (all positive) in the 1 row of slice region=a"
    assert "no row predicted positive" in ev.reason("precision", "region=a")
    assert "undefined" not in ev.overall and ev.overall["roc_auc"] == 0.25
    text = json.dumps(ev.to_dict(), allow_nan=False)
    assert Evaluation.from_dict(json.loads(text)) == ev
    assert "slice.region_a.roc_auc" not in ev.flat() and ev.flat()["slice.region_b.accuracy"] == 0.5
    # an evaluation stored before the reasons existed (NaN, as MLflow's log_dict wrote it)
    old = Evaluation.from_dict(json.loads('{"overall": {"roc_auc": NaN, "rows": 1.0}, '
                                          '"slices": {"region=a": {"roc_auc": NaN, "rows": 1.0}}}'))
    assert old.overall["roc_auc"] is None and "stored as nan" in old.reason("roc_auc")
    json.dumps(old.to_dict(), allow_nan=False)
    assert format_metric(old.overall, "roc_auc") == "n/a" and format_metric(ev.overall, "rows", 0) == "3"
    with pytest.raises(ValueError, match="probabilities are NaN"):
        evaluate(df, "default", np.array([0.1, np.nan, 0.5]), [])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        evaluate(df.assign(default=[1.0, np.nan, 0.0]), "default", np.array([0.1, 0.2, 0.5]), [])


def test_best_threshold_maximises_f1():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.9])
    assert best_threshold(y, p) == pytest.approx(0.35)
