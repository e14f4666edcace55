"""Drift of one interval against the reference: Evidently's `DataDriftPreset` and a `ValueDrift` on the
model's prediction, run on per-column sketches (:mod:`.sketch`) with the error bound of each score.

Prediction drift follows the model's task (:func:`prediction_kind`): a binary model's probability of class 1 and a
regression model's value are numeric columns (``monitoring.num_method``), a multiclass model's predicted class a
categorical one (``monitoring.cat_method``); the reference's prediction column must be of the same kind
(:func:`lifecycle.monitoring.run.load_reference`).

Real intervals can be tiny or degenerate (0 or 1 rows, constant or all-missing columns, codes stored as numbers):
a feature that cannot be scored is left out of the scores with its reason (:class:`DriftResult`), never NaN,
so every result is plain JSON (Airflow refuses NaN in XCom)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.data.frames import category_label
from lifecycle.fileio import atomic_write
from lifecycle.monitoring.sketch import _js, _wasserstein_norm, sketch, sketch_error
from lifecycle.registry.artifacts import PREDICTION
from lifecycle.training.evaluation import UNDEFINED

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec, MonitoringPolicy

# ---------------------------------------------------------------------------------------------- drift (Evidently)


@dataclass
class DriftResult:
    """One interval's drift. ``scores`` holds the features that could be scored; a feature that could not (no
    rows, all values missing on one side) is in ``undefined`` instead, with the reason, and counts as not
    drifted: ``share`` is drifted features / all features. ``prediction_score`` is None with its reason under
    ``undefined[PREDICTION]`` when prediction drift was not asked for or cannot be computed. Every number is
    finite: :meth:`to_dict` is plain JSON."""

    scores: dict[str, float]
    thresholds: dict[str, float]
    drifted: list[str]
    share: float
    prediction_score: float | None
    bounds: dict[str, float]
    current_rows: int
    sketch_rows: int
    missing: dict[str, dict[str, float]] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)

    @property
    def uncertain(self) -> list[str]:
        """Features whose decision could differ from the uncompressed computation (score within the bound)."""
        return [c for c, s in self.scores.items() if abs(s - self.thresholds[c]) <= self.bounds.get(c, 0.0)]

    def to_dict(self) -> dict[str, Any]:
        """Every field and ``uncertain``, as plain JSON (``json.dumps(..., allow_nan=False)`` holds)."""
        return asdict(self) | {"uncertain": self.uncertain}


def prediction_kind(spec: ModelSpec) -> str:
    """How the ``prediction`` column is compared (Evidently's column type): ``categorical`` for a multiclass model (its
    predicted class), ``numeric`` for the others (a binary model's probability, a regression model's value)."""
    return "categorical" if spec.task == "multiclass" else "numeric"


def feature_kinds(spec: ModelSpec) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in spec.data.features if f.kind != "categorical"]
    categorical = [f.name for f in spec.data.features if f.kind == "categorical"]
    return numeric, categorical


def _as_numbers(column: pd.Series) -> np.ndarray:
    """A numeric column as float64; missing, infinite and non-numeric values become NaN (count as missing)."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _as_labels(column: pd.Series) -> pd.Series:
    """A categorical column as text labels (None where missing): codes stored as numbers (floats once a value is
    missing) compare equal to the same codes stored as integers, and Evidently takes them (float labels fail its
    data summary)."""
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    labels = np.array([category_label(v) for v in uniques] + [None], dtype=object)  # code -1 (missing) -> None
    return pd.Series(labels[codes], index=column.index, dtype=object)


def _normalised(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    import pandas as pd

    out = {c: _as_numbers(frame[c]) for c in numeric} | {c: _as_labels(frame[c]).to_numpy() for c in categorical}
    return pd.DataFrame(out, index=range(len(frame)), columns=numeric + categorical)


def _why_unscorable(column: str, reference: pd.DataFrame, current: pd.DataFrame, sketched: pd.DataFrame,
                    numeric: bool) -> str | None:
    """Why ``column`` of the normalised frames cannot be scored (no rows or no value on one side), or None."""
    if len(reference) == 0:
        return "no rows in the reference"
    if len(current) == 0:
        return "no rows in the current interval"
    missing = "missing or not finite numbers" if numeric else "missing"
    if reference[column].notna().sum() == 0:
        return f"all {len(reference)} values {missing} in the reference"
    present = int(current[column].notna().sum())
    if present == 0:
        return f"all {len(current)} values {missing} in the current interval"
    if sketched[column].notna().sum() == 0:
        return (f"only {present} of {len(current)} values present in the current interval, none left in its "
                f"{len(sketched)}-row sketch")
    return None


def _placeholder_html(undefined: dict[str, str]) -> str:
    from html import escape

    items = "".join(f"<li><code>{escape(c)}</code>: {escape(why)}</li>" for c, why in undefined.items())
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Drift report</title></head><body>"
            f"<h1>Drift report</h1><p>Nothing could be scored:</p><ul>{items}</ul></body></html>")


def compute_drift(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, *,
                  html: Path | None = None, prediction: bool = True, sketch_rows: int | None = None,
                  policy: MonitoringPolicy | None = None, summary: bool = True) -> DriftResult:
    """Evidently ``DataDriftPreset`` (per-feature drift, drifted share), prediction drift and a data summary.

    ``current`` is compressed with :func:`sketch` first (``sketch_rows=0`` turns that off); the HTML report
    is written to ``html`` when given (a short page listing the reasons when nothing could be scored);
    ``summary=False`` leaves out the data summary (drift only).

    Any frames work, from 0 rows up: numeric values that are missing, infinite or not numbers count as missing;
    categorical values are compared as text labels (code 3 stored as 3 or 3.0 is ``"3"``); a feature with no
    value on one side is not scored (see :class:`DriftResult`). The ``prediction`` column of both frames is compared
    as the task's kind (:func:`prediction_kind`): numeric, or a multiclass model's predicted class as text. A RuntimeError when Evidently leaves out the
    score of a column it was given (a changed Evidently output, not a property of the data).
    """
    policy = policy or spec.monitoring
    numeric, categorical = feature_kinds(spec)
    pred_categorical = prediction_kind(spec) == "categorical"
    features = numeric + categorical
    undefined: dict[str, str] = {}
    if not prediction:
        undefined[PREDICTION] = "prediction drift not asked for"
    elif PREDICTION not in reference:
        undefined[PREDICTION] = f"no {PREDICTION} column in the reference"
    elif PREDICTION not in current:
        undefined[PREDICTION] = f"no {PREDICTION} column in the current interval"
    pred = [PREDICTION] if PREDICTION not in undefined else []
    num_cols = numeric + ([] if pred_categorical else pred)
    cat_cols = categorical + (pred if pred_categorical else [])
    ref = _normalised(reference, num_cols, cat_cols)
    cur = _normalised(current, num_cols, cat_cols)
    k = policy.sketch_rows if sketch_rows is None else sketch_rows
    sketched = sketch(cur, num_cols, cat_cols, k) if k else cur
    for c in num_cols + cat_cols:
        why = _why_unscorable(c, ref, cur, sketched, c in num_cols)
        if why is not None:
            undefined[c] = why
    scored_num = [c for c in numeric if c not in undefined]
    scored_cat = [c for c in categorical if c not in undefined]
    use_prediction = bool(pred) and PREDICTION not in undefined
    scored_pred = [PREDICTION] if use_prediction else []
    bounds = sketch_error(ref, cur, sketched, scored_num + ([] if pred_categorical else scored_pred),
                          scored_cat + (scored_pred if pred_categorical else []))
    thresholds = {c: policy.threshold(c) for c in features}
    scores: dict[str, float] = {}
    prediction_score = None
    snapshot = None
    if len(ref) and len(cur) and (scored_num or scored_cat or use_prediction or summary):
        snapshot, scores, prediction_score = _run_evidently(
            ref, sketched, numeric, categorical, scored_num + scored_cat, use_prediction, thresholds, policy,
            summary, pred_categorical)
    for c in [*scores, *([PREDICTION] if use_prediction else [])]:
        value = prediction_score if c == PREDICTION else scores[c]
        if value is None or not math.isfinite(value) or not math.isfinite(bounds.get(c, 0.0)):
            undefined[c] = f"Evidently's score {value!r} (sketch error bound {bounds.get(c, 0.0)!r}) is not finite"
            scores.pop(c, None)
            bounds.pop(c, None)
            if c == PREDICTION:
                prediction_score = None
    bounds = {c: b for c, b in bounds.items() if c not in undefined}
    drifted = [c for c in features if c in scores and scores[c] >= thresholds[c]]
    if html is not None:
        atomic_write(html, snapshot.get_html_str(as_iframe=False) if snapshot is not None  # what save_html writes
                     else _placeholder_html(undefined))
    missing = {c: {"current": float(cur[c].isna().mean()) if len(cur) else 0.0,
                   "reference": float(ref[c].isna().mean()) if len(ref) else 0.0} for c in features}
    return DriftResult(scores, thresholds, drifted, len(drifted) / len(features) if features else 0.0,
                       prediction_score, bounds, len(current), len(sketched), missing,
                       {c: undefined[c] for c in [*features, PREDICTION] if c in undefined})


def _run_evidently(reference: pd.DataFrame, sketched: pd.DataFrame, numeric: list[str], categorical: list[str],
                   scored: list[str], use_prediction: bool, thresholds: dict[str, float],
                   policy: MonitoringPolicy, summary: bool,
                   pred_categorical: bool = False) -> tuple[Any, dict[str, float], float | None]:
    """Evidently's report on the normalised frames: drift of the ``scored`` features (and of the prediction, a
    categorical column when ``pred_categorical``), the data summary of every feature; its snapshot, the feature
    scores and the prediction score."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    pred = [PREDICTION] if use_prediction else []
    num_cols = numeric + ([] if pred_categorical else pred)
    cat_cols = categorical + (pred if pred_categorical else [])
    definition = DataDefinition(numerical_columns=num_cols, categorical_columns=cat_cols)
    metrics: list[Any] = []
    if scored:
        metrics.append(DataDriftPreset(columns=scored, num_method=policy.num_method, cat_method=policy.cat_method,
                                       per_column_threshold={c: thresholds[c] for c in scored},
                                       drift_share=policy.drift_share))
    if use_prediction:
        metrics.append(ValueDrift(column=PREDICTION, method=policy.cat_method if pred_categorical
                                  else policy.num_method, threshold=policy.prediction_threshold))
    if summary:
        metrics.append(DataSummaryPreset(columns=numeric + categorical))
    snapshot = Report(metrics).run(
        Dataset.from_pandas(sketched[num_cols + cat_cols].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[num_cols + cat_cols].reset_index(drop=True), data_definition=definition))
    scores: dict[str, float] = {}
    prediction_score = None
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type") == "evidently:metric_v2:ValueDrift":
            if cfg["column"] == PREDICTION:
                prediction_score = float(m["value"])
            elif cfg["column"] in scored:
                scores[cfg["column"]] = float(m["value"])
    left_out = [c for c in scored if c not in scores] + (["prediction"] if use_prediction and prediction_score
                                                          is None else [])
    if left_out:
        raise RuntimeError(f"Evidently returned no drift score for {left_out}")
    return snapshot, scores, prediction_score


def full_scores(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """The same scores computed directly on every row (no sketch, no Evidently); the benchmark's reference.

    Values are normalised as :func:`compute_drift` does; a feature that cannot be scored is None with its
    reason under ``"undefined"`` (the representation of :mod:`lifecycle.training.evaluation`).
    """
    numeric, categorical = feature_kinds(spec)
    ref = _normalised(reference, numeric, categorical)
    cur = _normalised(current, numeric, categorical)
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    for c in numeric + categorical:
        out[c] = None
        why = _why_unscorable(c, ref, cur, cur, c in numeric)
        if why is None:
            if c in numeric:
                r = ref[c].to_numpy()
                score = _wasserstein_norm(r, cur[c].to_numpy(), max(float(np.nanstd(r)), 0.001))
            else:
                score = _js(ref[c], cur[c])
            if math.isfinite(score):
                out[c] = score
            else:
                why = f"the score {score!r} is not finite"
        if why is not None:
            undefined[c] = why
    return out | ({UNDEFINED: undefined} if undefined else {})
