"""Live performance on the labelled rows of an interval, per task, and the champion's offline test metrics to compare
them with (:data:`LIVE_METRICS`): a binary model's ROC AUC, accuracy and Brier score (as always), a multiclass
model's accuracy and macro F1, a regression model's RMSE, MAE (target units) and R^2. Each is computed as the offline
evaluation computes it (:mod:`lifecycle.training.evaluation`), so live and offline figures compare."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.paths import StatePaths
from lifecycle.registry.artifacts import PREDICTION
from lifecycle.training.evaluation import UNDEFINED

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec

#: The live metrics measured per task; the offline test metric of the same name is what a drop is measured against
#: (``monitoring.max_performance_drop`` names some of them: :data:`lifecycle.spec.MONITORED_METRICS`).
LIVE_METRICS: dict[str, tuple[str, ...]] = {"binary": ("roc_auc", "accuracy"), "multiclass": ("accuracy", "macro_f1"),
                                            "regression": ("rmse", "mae", "r2")}

# ------------------------------------------------------------------------------------------ live performance


def live_performance(labelled: pd.DataFrame, version: str, task: str = "binary",
                     classes: list[str | int] | None = None) -> dict[str, Any]:
    """The live metrics of ``version`` on the labelled rows it served, for a model of ``task`` (a multiclass model's
    ``classes``: ``data.classes``): :func:`binary_performance`, :func:`multiclass_performance` or
    :func:`regression_performance`. Plain JSON for any frame: ``labels`` counts the version's rows, ``invalid``
    (when any) those left out, and a metric undefined on the rest is None with its reason under ``"undefined"``."""
    if task == "multiclass":
        return multiclass_performance(labelled, version, classes or [])
    if task == "regression":
        return regression_performance(labelled, version)
    return binary_performance(labelled, version)


def binary_performance(labelled: pd.DataFrame, version: str) -> dict[str, Any]:
    """ROC AUC, accuracy and Brier score of ``version`` on the labelled rows it served.

    ``labels`` counts those rows. The metrics use the rows with a label of 0 or 1 and a probability in [0, 1]
    (the others, if any, are counted in ``invalid``). A metric undefined on them (no such row; ROC AUC on one
    class) is None with its reason under ``"undefined"``, as in :mod:`lifecycle.training.evaluation`: the result
    is plain JSON (no NaN or infinity) for any frame.
    """
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    rows = labelled[labelled["version"].astype(str) == str(version)]
    out: dict[str, Any] = {"labels": float(len(rows)), "accuracy": None, "brier": None, "roc_auc": None}
    y = pd.to_numeric(rows["label"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    p = pd.to_numeric(rows[PREDICTION], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    decision = pd.to_numeric(rows["decision"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    valid = np.isin(y, (0.0, 1.0)) & np.isfinite(p) & (p >= 0.0) & (p <= 1.0)
    if (~valid).any():
        out["invalid"] = float((~valid).sum())
    y, p, decision = y[valid], p[valid], decision[valid]
    n, positives = len(y), int(y.sum())
    if n == 0:
        why = f"no labelled rows of v{version}" + (" with a 0/1 label and a probability in [0, 1]"
                                                   if len(rows) else "")
        return out | {UNDEFINED: dict.fromkeys(("accuracy", "brier", "roc_auc"), why)}
    out["accuracy"] = float((decision == y).mean())
    out["brier"] = float(((p - y) ** 2).mean())
    if 0 < positives < n:
        out["roc_auc"] = float(roc_auc_score(y.astype(np.int64), p))
        return out
    kind = "positive" if positives else "negative"
    return out | {UNDEFINED: {"roc_auc": f"one class (all {kind}) in the {n} labelled row{'' if n == 1 else 's'} "
                                            f"of v{version}"}}


def _no_rows(out: dict[str, Any], names: tuple[str, ...], version: str, rows: int, which: str) -> dict[str, Any]:
    why = f"no labelled rows of v{version}" + (f" with {which}" if rows else "")
    return out | {UNDEFINED: dict.fromkeys(names, why)}


def _class_codes(values: pd.Series, index: dict[str, int]) -> np.ndarray:
    """Each value's index in ``index`` (class text -> index) by its text form
    (:func:`lifecycle.data.frames.category_label`), -1 for a missing value or one that is no class; each distinct
    value is looked up once."""
    import pandas as pd

    from lifecycle.data.frames import category_label

    codes, uniques = pd.factorize(pd.Series(np.asarray(values, dtype=object)))  # missing values: code -1
    lookup = np.array([index.get(category_label(u) or "", -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[codes]


def multiclass_performance(labelled: pd.DataFrame, version: str, classes: list[str | int]) -> dict[str, Any]:
    """Accuracy and macro F1 (the unweighted mean F1 of the classes among the labels or the predictions, as offline)
    of ``version`` on the labelled rows it served.

    ``labels`` counts those rows. The metrics use the rows whose label and predicted class are both one of
    ``classes`` (compared as text: class ``2`` is ``"2"``; the others, if any, are counted in ``invalid``); on no
    such row both are None with the reason under ``"undefined"``.
    """
    from sklearn.metrics import f1_score

    names = LIVE_METRICS["multiclass"]
    rows = labelled[labelled["version"].astype(str) == str(version)]
    out: dict[str, Any] = {"labels": float(len(rows))} | dict.fromkeys(names)
    index = {str(c): i for i, c in enumerate(classes)}
    y, pred = _class_codes(rows["label"], index), _class_codes(rows[PREDICTION], index)
    valid = (y >= 0) & (pred >= 0)
    if (~valid).any():
        out["invalid"] = float((~valid).sum())
    y, pred = y[valid], pred[valid]
    if len(y) == 0:
        return _no_rows(out, names, version, len(rows), f"a label and a prediction among {list(index)}")
    out["accuracy"] = float((pred == y).mean())
    out["macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0.0))
    return out


def regression_performance(labelled: pd.DataFrame, version: str) -> dict[str, Any]:
    """RMSE, MAE (target units) and R^2 of ``version`` on the labelled rows it served
    (:func:`lifecycle.training.evaluation.regression_metrics`, as offline).

    ``labels`` counts those rows. The metrics use the rows whose label and predicted value are finite numbers (the
    others, if any, are counted in ``invalid``). Undefined (None, with the reason under ``"undefined"``): every
    metric on no such row; R^2 on fewer than 2 rows or constant labels (it divides by their variance).
    """
    import pandas as pd

    from lifecycle.training.evaluation import regression_metrics

    names = LIVE_METRICS["regression"]
    rows = labelled[labelled["version"].astype(str) == str(version)]
    out: dict[str, Any] = {"labels": float(len(rows))} | dict.fromkeys(names)
    y = pd.to_numeric(rows["label"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    v = pd.to_numeric(rows[PREDICTION], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    valid = np.isfinite(y) & np.isfinite(v)
    if (~valid).any():
        out["invalid"] = float((~valid).sum())
    if not valid.any():
        return _no_rows(out, names, version, len(rows), "a finite label and predicted value")
    metrics = regression_metrics(y[valid], v[valid], where=f"the labelled rows of v{version}")  # finite or None
    reasons = {m: why for m, why in (metrics.get(UNDEFINED) or {}).items() if m in names}
    return out | {m: metrics[m] for m in names} | ({UNDEFINED: reasons} if reasons else {})


def offline_metrics(spec: ModelSpec, version: str, paths: StatePaths) -> dict[str, float]:
    """The champion's offline test metrics on its held-out rows that :data:`LIVE_METRICS` names for the spec's task
    (binary ``roc_auc`` and ``accuracy``, as always), those recorded and finite."""
    from lifecycle.registry.store import Registry

    registry = Registry(paths)
    mv = registry.version(spec.model_name, version)
    metrics = registry.client.get_run(mv.run_id).data.metrics
    wanted = {f"test_{m}" for m in LIVE_METRICS[spec.task]}
    return {k.removeprefix("test_"): v for k, v in metrics.items() if k in wanted and math.isfinite(v)}
