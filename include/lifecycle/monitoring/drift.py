"""Drift of one interval against the reference: Evidently's `DataDriftPreset` and a `ValueDrift` on the
predicted probability, run on per-column sketches (:mod:`.sketch`) with the error bound of each score."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.fileio import atomic_write
from lifecycle.monitoring.sketch import _js, _wasserstein_norm, sketch, sketch_error
from lifecycle.registry.artifacts import PREDICTION

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec, MonitoringPolicy

# ---------------------------------------------------------------------------------------------- drift (Evidently)


@dataclass
class DriftResult:
    scores: dict[str, float]
    thresholds: dict[str, float]
    drifted: list[str]
    share: float
    prediction_score: float | None
    bounds: dict[str, float]
    current_rows: int
    sketch_rows: int
    missing: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def uncertain(self) -> list[str]:
        """Features whose decision could differ from the uncompressed computation (score within the bound)."""
        return [c for c, s in self.scores.items() if abs(s - self.thresholds[c]) <= self.bounds.get(c, 0.0)]


def feature_kinds(spec: ModelSpec) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in spec.data.features if f.kind != "categorical"]
    categorical = [f.name for f in spec.data.features if f.kind == "categorical"]
    return numeric, categorical


def compute_drift(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, *,
                  html: Path | None = None, prediction: bool = True, sketch_rows: int | None = None,
                  policy: MonitoringPolicy | None = None, summary: bool = True) -> DriftResult:
    """Evidently ``DataDriftPreset`` (per-feature drift, drifted share), prediction drift and a data summary.

    ``current`` is compressed with :func:`sketch` first (``sketch_rows=0`` turns that off); the HTML report
    is written to ``html`` when given; ``summary=False`` leaves out the data summary (drift only).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    policy = policy or spec.monitoring
    numeric, categorical = feature_kinds(spec)
    features = numeric + categorical
    use_prediction = prediction and PREDICTION in reference and PREDICTION in current \
        and current[PREDICTION].notna().any()
    num_cols = numeric + ([PREDICTION] if use_prediction else [])
    k = policy.sketch_rows if sketch_rows is None else sketch_rows
    sketched = sketch(current, num_cols, categorical, k) if k else current[num_cols + categorical]
    bounds = sketch_error(reference, current, sketched, num_cols, categorical)
    thresholds = {c: policy.threshold(c) for c in features}
    definition = DataDefinition(numerical_columns=num_cols, categorical_columns=categorical)
    metrics: list[Any] = [DataDriftPreset(columns=features, num_method=policy.num_method,
                                          cat_method=policy.cat_method, per_column_threshold=thresholds,
                                          drift_share=policy.drift_share)]
    if use_prediction:
        metrics.append(ValueDrift(column=PREDICTION, method=policy.num_method,
                                  threshold=policy.prediction_threshold))
    if summary:
        metrics.append(DataSummaryPreset(columns=features))
    snapshot = Report(metrics).run(
        Dataset.from_pandas(sketched.reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[num_cols + categorical].reset_index(drop=True), data_definition=definition))
    scores: dict[str, float] = {}
    prediction_score = None
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type") == "evidently:metric_v2:ValueDrift":
            if cfg["column"] == PREDICTION:
                prediction_score = float(m["value"])
            elif cfg["column"] in thresholds:
                scores[cfg["column"]] = float(m["value"])
    missing_scores = [c for c in features if c not in scores or not math.isfinite(scores[c])]
    if missing_scores:
        raise RuntimeError(f"Evidently returned no drift score for {missing_scores}")
    drifted = [c for c in features if scores[c] >= thresholds[c]]
    if html is not None:
        atomic_write(html, snapshot.get_html_str(as_iframe=False))  # what save_html writes
    missing = {c: {"current": float(current[c].isna().mean()) if len(current) else 0.0,
                   "reference": float(reference[c].isna().mean())} for c in features}
    return DriftResult(scores, thresholds, drifted, len(drifted) / len(features), prediction_score, bounds,
                       len(current), len(sketched), missing)


def full_scores(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """The same scores computed directly on every row (no sketch, no Evidently); the benchmark's reference."""
    numeric, categorical = feature_kinds(spec)
    out = {}
    for c in numeric:
        ref = reference[c].to_numpy(dtype=np.float64, na_value=np.nan)
        out[c] = _wasserstein_norm(ref, current[c].to_numpy(dtype=np.float64, na_value=np.nan),
                                   max(float(np.nanstd(ref)), 0.001))
    for c in categorical:
        out[c] = _js(reference[c], current[c])
    return out
