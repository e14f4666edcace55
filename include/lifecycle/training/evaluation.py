"""Offline evaluation: metrics on held-out rows, overall and per slice named in the spec.

The metrics follow the model's task (:func:`evaluate` dispatches on it): a binary classifier's
(:func:`binary_metrics`: ROC AUC, F1, precision, recall, accuracy, log loss, calibration error, rows, positive
rate), a multiclass classifier's (:func:`multiclass_metrics`: accuracy, macro F1, log loss, rows and
``recall.<class>`` per class) or a regression model's (:func:`regression_metrics`: RMSE, MAE, R^2, rows; RMSE and
MAE in target units). scikit-learn computes them.

Undefined metrics. Real held-out rows have tiny slices, single-class slices and constant scores: ROC AUC needs
both classes, recall a positive label, precision a positive prediction, F1 either, every other metric one row;
a class's recall needs a row of that class; R^2 two rows and a target that is not constant. A metric that is
undefined on its rows is ``None`` (JSON null), never NaN or infinity (Airflow refuses NaN in XCom), and its
reason sits next to the metrics under the reserved key ``"undefined"`` (:data:`UNDEFINED`)::

    {"roc_auc": None, "accuracy": 1.0, ..., "rows": 1.0,
     "undefined": {"roc_auc": "one class (all negative) in the 1 row of slice region=west"}}

The key is present only when some metric is undefined, so every metrics mapping (one per call of the task's
metrics function: ``Evaluation.overall`` and each of ``Evaluation.slices``) serialises with ``json.dumps(...,
allow_nan=False)`` and every ``None`` in it has a reason. :func:`metric_value`, :func:`undefined_reason` and
:func:`defined_metrics` read such a mapping; :class:`Evaluation` reads back evaluations stored before the
reasons existed (NaN floats) as ``None`` with a reason saying so. The promotion gate
(:mod:`lifecycle.training.promotion`) reports these reasons in its checks.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.spec import CLASS_RECALL, MULTICLASS_METRICS, REGRESSION_METRICS
from lifecycle.training.preprocessing import class_indices, target_numbers

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import Slice

#: The reserved key of a metrics mapping holding ``{metric: reason}`` for its undefined (``None``) metrics.
UNDEFINED = "undefined"
#: The metrics :func:`binary_metrics` computes, in the order it reports them.
METRIC_NAMES = ("roc_auc", "f1", "precision", "recall", "accuracy", "log_loss", "calibration_error", "rows",
                "positive_rate")
#: The metrics :func:`multiclass_metrics` computes besides ``recall.<class>`` per class, and those
#: :func:`regression_metrics` computes.
MULTICLASS_METRIC_NAMES = MULTICLASS_METRICS
REGRESSION_METRIC_NAMES = REGRESSION_METRICS
#: The metric each task's log lines and registry tag lead with.
HEADLINE = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "r2"}
#: Clip of the probabilities for log loss (a probability of exactly 0 or 1 would give an infinite loss).
EPSILON = 1e-7
_LEGACY = ("stored as {value}, not a finite number (an evaluation written before undefined metrics carried a "
           "reason)")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error: |mean prediction - observed rate| per equal-width bin, weighted by size.

    ``y`` holds 0/1 labels and ``p`` probabilities in [0, 1] (as :func:`binary_metrics` checks); None when there
    are no rows (the error of an empty set is undefined).
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return None
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            err += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(err)


def _labels(y: Any, where: str) -> np.ndarray:
    """``y`` as an int array of 0/1; a ValueError naming ``where`` for a missing or non-binary label."""
    raw = np.asarray(y)
    try:
        values = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: labels must be 0 or 1, got values such as "
                         f"{sorted({str(v) for v in raw.ravel()})[:5]}") from None
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{where}: labels must be 0 or 1: {int(bad.sum())} of {len(values)} are not "
                         f"(e.g. {float(values[bad][0])!r}; a missing label is not)")
    return values.astype(np.int64)


def _probabilities(p: Any, n: int, where: str) -> np.ndarray:
    """``p`` as float64 in [0, 1] with ``n`` values; a ValueError naming ``where`` otherwise."""
    try:
        values = np.asarray(p, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{where}: probabilities must be numbers") from None
    if len(values) != n:
        raise ValueError(f"{where}: {len(values)} probabilities for {_rows(n)}")
    bad = ~(np.isfinite(values) & (values >= 0.0) & (values <= 1.0))
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} of {len(values)} probabilities are NaN, infinite or outside "
                         f"[0, 1] (e.g. {float(values[bad][0])!r})")
    return values


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5, *,
                   where: str = "the evaluation") -> dict[str, Any]:
    """ROC AUC, F1, precision, recall, accuracy, log loss, calibration error, rows and positive rate.

    Every value is a finite float or ``None`` when undefined on these rows, with its reason under
    :data:`UNDEFINED` (see the module docstring): ROC AUC needs both classes, recall a positive label, precision
    a positive prediction (``p >= threshold``), F1 one of the two; every metric but ``rows`` needs a row.
    ``where`` names the rows in the reasons (``"slice region=west"``). ``y`` must hold 0/1 labels and ``p``
    probabilities in [0, 1], as many as labels: anything else (a missing label, a NaN score) is a ValueError.
    Probabilities of exactly 0 or 1 are fine: log loss clips them to [1e-7, 1 - 1e-7] (:data:`EPSILON`); the
    other metrics take them as they are.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    y = _labels(y, where)
    n = len(y)
    p = _probabilities(p, n, where)
    out: dict[str, Any] = dict.fromkeys(METRIC_NAMES)
    out["rows"] = float(n)
    if n == 0:
        return out | {UNDEFINED: {m: f"no rows in {where}" for m in METRIC_NAMES if m != "rows"}}
    undefined: dict[str, str] = {}
    positives = int(y.sum())
    pred = (p >= threshold).astype(np.int64)
    tp = int((pred & y).sum())
    fp, fn = int(pred.sum()) - tp, positives - tp
    if 0 < positives < n:
        out["roc_auc"] = float(roc_auc_score(y, p))
    else:
        undefined["roc_auc"] = (f"one class (all {'positive' if positives else 'negative'}) in the {_rows(n)} "
                                f"of {where}")
    if positives:
        out["recall"] = tp / positives
    else:
        undefined["recall"] = f"no positive label in the {_rows(n)} of {where}"
    if tp + fp:
        out["precision"] = tp / (tp + fp)
    else:
        undefined["precision"] = f"no row predicted positive (p >= {threshold:g}) in the {_rows(n)} of {where}"
    if 2 * tp + fp + fn:
        out["f1"] = 2 * tp / (2 * tp + fp + fn)
    else:
        undefined["f1"] = f"no positive label and no positive prediction in the {_rows(n)} of {where}"
    out["accuracy"] = float((pred == y).mean())
    out["log_loss"] = float(log_loss(y, np.clip(p, EPSILON, 1 - EPSILON), labels=[0, 1]))
    out["calibration_error"] = calibration_error(y, p)
    out["positive_rate"] = positives / n
    for metric, value in out.items():
        if value is not None:
            out[metric] = float(value)
    return out | ({UNDEFINED: undefined} if undefined else {})


def _class_probabilities(p: Any, n: int, k: int, where: str) -> np.ndarray:
    """``p`` as float64 rows x ``k`` probabilities, each row summing to 1 (within 1e-3); a ValueError naming
    ``where`` otherwise."""
    try:
        values = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: probabilities must be numbers") from None
    if n == 0 and values.size == 0:
        return values.reshape(0, k)
    if values.ndim != 2 or values.shape != (n, k):
        raise ValueError(f"{where}: probabilities of shape {values.shape} for {_rows(n)} and {k} classes "
                         f"(want ({n}, {k}))")
    bad = ~(np.isfinite(values) & (values >= 0.0) & (values <= 1.0))
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} of {values.size} probabilities are NaN, infinite or outside "
                         f"[0, 1] (e.g. {float(values[bad][0])!r})")
    off = np.abs(values.sum(axis=1) - 1.0) > 1e-3
    if off.any():
        raise ValueError(f"{where}: the probabilities of {int(off.sum())} of {_rows(n)} do not sum to 1 (e.g. "
                         f"{float(values[off][0].sum())!r})")
    return values


def _predictions(v: Any, n: int, where: str) -> np.ndarray:
    """``v`` as ``n`` finite float64 values; a ValueError naming ``where`` otherwise."""
    try:
        values = np.asarray(v, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{where}: predictions must be numbers") from None
    if len(values) != n:
        raise ValueError(f"{where}: {len(values)} predictions for {_rows(n)}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} of {len(values)} predictions are NaN or infinite")
    return values


def _finished(out: dict[str, Any], undefined: dict[str, str], where: str) -> dict[str, Any]:
    """Floats, and a value that came out NaN or infinite (an overflow on extreme inputs) as None with a reason."""
    for metric, value in out.items():
        if value is None:
            continue
        out[metric] = float(value)
        if not math.isfinite(out[metric]):
            undefined[metric] = f"not a finite number ({out[metric]!r}) on the rows of {where}"
            out[metric] = None
    return out | ({UNDEFINED: undefined} if undefined else {})


def multiclass_metrics(y: Any, p: Any, classes: list[str | int], *, where: str = "the evaluation",
                       indices: bool = False) -> dict[str, Any]:
    """Accuracy, macro F1, log loss, rows and ``recall.<class>`` for each of ``classes``.

    ``y`` holds the rows' classes as the data holds them (matched to ``classes`` by their text form:
    :func:`lifecycle.training.preprocessing.class_indices`), or their indices in ``classes`` with
    ``indices=True``; ``p`` the rows x classes probabilities (columns in the order of ``classes``, each row
    summing to 1). The predicted class is the most probable one. Macro F1 is the unweighted mean of the F1 of
    every class that occurs in the rows or in the predictions (scikit-learn's default); log loss clips the
    probabilities to [1e-7, 1] and renormalises each row. Undefined (None, with its reason under
    :data:`UNDEFINED`): every metric but ``rows`` on no rows; ``recall.<class>`` when no row is of that class. A
    ValueError for a label outside ``classes`` (a missing one too) or probabilities of the wrong shape, not
    finite, outside [0, 1] or not summing to 1.
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score

    k = len(classes)
    y = np.asarray(y, dtype=np.int64) if indices else class_indices(y, classes, where)
    n = len(y)
    p = _class_probabilities(p, n, k, where)
    recalls = [f"{CLASS_RECALL}{c}" for c in classes]
    out: dict[str, Any] = dict.fromkeys([*MULTICLASS_METRIC_NAMES, *recalls])
    out["rows"] = float(n)
    if n == 0:
        return out | {UNDEFINED: {m: f"no rows in {where}" for m in out if m != "rows"}}
    undefined: dict[str, str] = {}
    pred = p.argmax(axis=1)
    out["accuracy"] = accuracy_score(y, pred)
    out["macro_f1"] = f1_score(y, pred, average="macro", zero_division=0.0)
    q = np.clip(p, EPSILON, 1.0)
    out["log_loss"] = log_loss(y, q / q.sum(axis=1, keepdims=True), labels=list(range(k)))
    counts = np.bincount(y, minlength=k)
    present = [i for i in range(k) if counts[i]]
    for i, value in zip(present, recall_score(y, pred, labels=present, average=None, zero_division=0.0),
                        strict=True):
        out[recalls[i]] = value
    for i in range(k):
        if not counts[i]:
            undefined[recalls[i]] = f"no row of class {str(classes[i])!r} in the {_rows(n)} of {where}"
    return _finished(out, undefined, where)


def regression_metrics(y: Any, v: Any, *, where: str = "the evaluation") -> dict[str, Any]:
    """RMSE, MAE (both in target units), R^2 and rows of the predictions ``v`` against the targets ``y``.

    Undefined (None, with its reason under :data:`UNDEFINED`): every metric but ``rows`` on no rows; R^2 with
    fewer than 2 rows or a constant target (it divides by the target's variance). A ValueError for a target or a
    prediction that is missing, not a number or not finite, or for a different number of predictions and rows.
    """
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    y = target_numbers(y, where)
    n = len(y)
    v = _predictions(v, n, where)
    out: dict[str, Any] = dict.fromkeys(REGRESSION_METRIC_NAMES)
    out["rows"] = float(n)
    if n == 0:
        return out | {UNDEFINED: {m: f"no rows in {where}" for m in out if m != "rows"}}
    undefined: dict[str, str] = {}
    with np.errstate(over="ignore", invalid="ignore"):
        out["rmse"] = root_mean_squared_error(y, v)
        out["mae"] = mean_absolute_error(y, v)
        if n < 2:
            undefined["r2"] = f"R^2 needs at least 2 rows, {where} has {_rows(n)}"
        elif float(np.ptp(y)) == 0.0:
            undefined["r2"] = (f"the target is constant ({float(y[0])!r}) in the {_rows(n)} of {where}: R^2 "
                               "divides by its variance")
        else:
            out["r2"] = r2_score(y, v)
    return _finished(out, undefined, where)


def metric_value(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The metric as a finite float, or None when it is undefined, missing, NaN or infinite (older records)."""
    value = metrics.get(metric)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def undefined_reason(metrics: Mapping[str, Any], metric: str) -> str | None:
    """Why ``metric`` has no value in ``metrics`` (None when it has one): the recorded reason, else what is
    wrong with the stored value."""
    if metric_value(metrics, metric) is not None:
        return None
    reasons = metrics.get(UNDEFINED)
    if isinstance(reasons, Mapping) and reasons.get(metric):
        return str(reasons[metric])
    if metric not in metrics:
        return f"{metric} is not in the evaluation"
    value = metrics[metric]
    return "undefined (no reason recorded)" if value is None else _LEGACY.format(value=repr(value))


def defined_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that have a value (finite floats), without the reasons of the undefined ones."""
    out = {}
    for k in metrics:
        if k != UNDEFINED and (value := metric_value(metrics, k)) is not None:
            out[k] = value
    return out


def format_metric(metrics: Mapping[str, Any], metric: str, digits: int = 4, *, reason: bool = False) -> str:
    """``"0.8123"``, or ``"n/a"`` when the metric is undefined (``"n/a (REASON)"`` with ``reason=True``): for logs,
    tags and tables."""
    value = metric_value(metrics, metric)
    if value is not None:
        return f"{value:.{digits}f}"
    return f"n/a ({undefined_reason(metrics, metric)})" if reason else "n/a"


def _clean(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A stored metrics mapping in the current form: NaN, infinite and non-numeric values become None, each with
    its recorded reason or one saying what was stored."""
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    for k in metrics:
        if k == UNDEFINED:
            continue
        out[k] = metric_value(metrics, k)
        if out[k] is None:
            undefined[k] = undefined_reason(metrics, k) or "undefined (no reason recorded)"
    return out | ({UNDEFINED: undefined} if undefined else {})


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
    """Metrics of one model on held-out rows: ``overall`` and one mapping per slice with rows, each as the task's
    metrics function returns it (:func:`binary_metrics`, :func:`multiclass_metrics`, :func:`regression_metrics`;
    undefined metrics are None with their reasons under :data:`UNDEFINED`)."""

    overall: dict[str, Any]
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``json.dumps(..., allow_nan=False)`` holds): NaN or infinite values set by hand come out as
        None with a reason, like :meth:`from_dict` reads them."""
        return {"overall": _clean(self.overall), "slices": {k: _clean(v) for k, v in self.slices.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """Read :meth:`to_dict`'s form, or one stored before undefined metrics carried reasons (NaN floats,
        which become None with a reason saying so)."""
        return cls(_clean(data["overall"]), {k: _clean(v) for k, v in (data.get("slices") or {}).items()})

    def reason(self, metric: str, slice_name: str | None = None) -> str | None:
        """Why ``metric`` is undefined overall (or in ``slice_name``); None when it has a value."""
        return undefined_reason(self.overall if slice_name is None else self.slices[slice_name], metric)

    def flat(self, prefix: str = "") -> dict[str, float]:
        """MLflow-friendly metric names: ``test_roc_auc``, ``test_slice.region_south.roc_auc``,
        ``test_recall.high``; defined metrics only (MLflow takes numbers; the reasons of the others are in
        :meth:`to_dict`). Characters MLflow refuses (in slice and class names) become ``_``."""
        out = {f"{prefix}{_key(k)}": v for k, v in defined_metrics(self.overall).items()}
        for name, m in self.slices.items():
            out.update({f"{prefix}slice.{_key(name)}.{_key(k)}": v for k, v in defined_metrics(m).items()})
        return out


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def evaluate(frame: pd.DataFrame, target: str, proba: np.ndarray, slices: list[Slice],
             threshold: float = 0.5, *, task: str = "binary", classes: list[str | int] | None = None) -> Evaluation:
    """Metrics of a model's outputs on the rows of ``frame``, overall and on every slice with rows, by ``task``:

    - ``binary``: ``proba`` one probability per row, ``threshold`` the decision threshold (:func:`binary_metrics`);
    - ``multiclass``: ``proba`` rows x ``classes`` probabilities (:func:`multiclass_metrics`);
    - ``regression``: ``proba`` the predicted values, in target units (:func:`regression_metrics`).

    Any frame works, from 0 rows up, single-class (or constant), with constant or all-missing slice columns:
    what cannot be computed is None with its reason. A ValueError for targets the task cannot read (binary: other
    than 0/1; multiclass: outside ``classes``; regression: not a finite number; missing ones too) and for outputs
    that are NaN, infinite, out of range or not one per row.
    """
    if task == "binary":
        y = _labels(frame[target].to_numpy(), f"target {target!r}")
        p = _probabilities(proba, len(y), "the evaluation")

        def metrics(mask: Any, where: str) -> dict[str, Any]:
            return binary_metrics(y[mask], p[mask], threshold, where=where)
    elif task == "multiclass":
        if not classes:
            raise ValueError("a multiclass evaluation needs the model's classes")
        y = class_indices(frame[target], classes, f"target {target!r}")
        p = _class_probabilities(proba, len(y), len(classes), "the evaluation")

        def metrics(mask: Any, where: str) -> dict[str, Any]:
            return multiclass_metrics(y[mask], p[mask], classes, where=where, indices=True)
    elif task == "regression":
        y = target_numbers(frame[target], f"target {target!r}")
        p = _predictions(proba, len(y), "the evaluation")

        def metrics(mask: Any, where: str) -> dict[str, Any]:
            return regression_metrics(y[mask], p[mask], where=where)
    else:
        raise ValueError(f"unknown task {task!r}: use binary, multiclass or regression")
    ev = Evaluation(metrics(slice(None), "the evaluation"))
    for name, mask in slice_masks(frame, slices).items():
        if mask.sum() > 0:
            ev.slices[name] = metrics(mask, f"slice {name}")
    return ev
