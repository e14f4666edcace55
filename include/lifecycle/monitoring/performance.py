"""Live performance: ROC AUC, accuracy and Brier score on the labelled rows of an interval, and the champion's
offline test metrics to compare them with."""
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

# ------------------------------------------------------------------------------------------ live performance


def live_performance(labelled: pd.DataFrame, version: str) -> dict[str, Any]:
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


def offline_metrics(spec: ModelSpec, version: str, paths: StatePaths) -> dict[str, float]:
    """The champion's offline ``roc_auc`` and ``accuracy`` on its held-out rows (those recorded and finite)."""
    from lifecycle.registry.store import Registry

    registry = Registry(paths)
    mv = registry.version(spec.model_name, version)
    metrics = registry.client.get_run(mv.run_id).data.metrics
    return {k.removeprefix("test_"): v for k, v in metrics.items()
            if k in ("test_roc_auc", "test_accuracy") and math.isfinite(v)}
