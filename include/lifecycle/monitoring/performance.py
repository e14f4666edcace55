"""Live performance: ROC AUC, accuracy and Brier score on the labelled rows of an interval, and the champion's
offline test metrics to compare them with."""
from __future__ import annotations

from typing import TYPE_CHECKING

from lifecycle.paths import StatePaths
from lifecycle.registry.artifacts import PREDICTION

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec

# ------------------------------------------------------------------------------------------ live performance


def live_performance(labelled: pd.DataFrame, version: str) -> dict[str, float]:
    """ROC AUC, accuracy and Brier score of ``version`` on the labelled rows it served."""
    from sklearn.metrics import roc_auc_score

    rows = labelled[labelled["version"] == version]
    out: dict[str, float] = {"labels": float(len(rows))}
    if len(rows) == 0:
        return out
    y, p = rows["label"].to_numpy(dtype=int), rows[PREDICTION].to_numpy(dtype=float)
    out["accuracy"] = float((rows["decision"].to_numpy(dtype=int) == y).mean())
    out["brier"] = float(((p - y) ** 2).mean())
    if 0 < y.sum() < len(y):
        out["roc_auc"] = float(roc_auc_score(y, p))
    return out


def offline_metrics(spec: ModelSpec, version: str, paths: StatePaths) -> dict[str, float]:
    from lifecycle.registry.store import Registry

    registry = Registry(paths)
    mv = registry.version(spec.model_name, version)
    metrics = registry.client.get_run(mv.run_id).data.metrics
    return {k.removeprefix("test_"): v for k, v in metrics.items() if k in ("test_roc_auc", "test_accuracy")}
