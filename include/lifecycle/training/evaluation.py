"""Offline evaluation: metrics on held-out rows, overall and per slice named in the spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import Slice


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean prediction - observed rate| per equal-width bin, weighted by size."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            err += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(err)


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC AUC, F1, precision, recall, accuracy, log loss and calibration error. AUC is NaN for one class."""
    from sklearn.metrics import f1_score, log_loss, precision_score, recall_score, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "accuracy": float((pred == y).mean()),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "calibration_error": calibration_error(y, p),
        "rows": float(len(y)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
    }


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold maximising F1 (on validation rows), shipped with the model."""
    order = np.argsort(-p)
    ys = np.asarray(y)[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    fn = ys.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    i = int(np.argmax(f1))
    return float(p[order][i])


def slice_masks(frame: pd.DataFrame, slices: list[Slice]) -> dict[str, np.ndarray]:
    """``{"region=south": mask, "age_band=[18,25)": mask, ...}`` for every slice value present."""
    out: dict[str, np.ndarray] = {}
    for s in slices:
        col = frame[s.column]
        if s.bins is None:
            for value in sorted(col.dropna().astype(str).unique()):
                out[f"{s.name}={value}"] = (col.astype(str) == value).to_numpy()
        else:
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            for lo, hi in zip(s.bins[:-1], s.bins[1:], strict=True):
                out[f"{s.name}=[{lo:g},{hi:g})"] = (values >= lo) & (values < hi)
    return out


@dataclass
class Evaluation:
    overall: dict[str, float]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "slices": self.slices}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(dict(data["overall"]), {k: dict(v) for k, v in data.get("slices", {}).items()})

    def flat(self, prefix: str = "") -> dict[str, float]:
        """MLflow-friendly metric names: ``test_roc_auc``, ``test_slice.region_south.roc_auc``."""
        out = {f"{prefix}{k}": v for k, v in self.overall.items()}
        for name, m in self.slices.items():
            key = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
            out.update({f"{prefix}slice.{key}.{k}": v for k, v in m.items()})
        return out


def evaluate(frame: pd.DataFrame, target: str, proba: np.ndarray, slices: list[Slice],
             threshold: float = 0.5) -> Evaluation:
    y = frame[target].to_numpy().astype(int)
    ev = Evaluation(binary_metrics(y, proba, threshold))
    for name, mask in slice_masks(frame, slices).items():
        if mask.sum() > 0:
            ev.slices[name] = binary_metrics(y[mask], proba[mask], threshold)
    return ev
