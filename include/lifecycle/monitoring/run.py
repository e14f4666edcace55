"""Drift monitoring: one data interval of live traffic against the serving champion's reference, with Evidently.

For an interval ``[start, end)`` the monitor reads the gateway's prediction log and the feedback received, and
compares the features (and the champion's prediction: a binary model's probability, a multiclass model's predicted
class, a regression model's value) with the reference: a sample of the champion's training rows stored with the
version when it was trained (``reference/reference.parquet``), with the champion's prediction of the same kind
(:func:`load_reference`). Live performance is measured per task too (:mod:`.performance`).

The steps live in their own modules: :mod:`.logs` (reading), :mod:`.drift` and :mod:`.sketch` (Evidently),
:mod:`.performance` (labelled outcomes), :mod:`.policy` (the decision), :mod:`.response` (what to do about it:
ledger, alert, the train DAG's conf); :func:`judge_interval` puts the last two together for the monitor DAG.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.data.validation import validated_days
from lifecycle.fileio import atomic_write
from lifecycle.monitoring.drift import compute_drift
from lifecycle.monitoring.logs import read_interval
from lifecycle.monitoring.performance import LIVE_METRICS, live_performance, offline_metrics
from lifecycle.paths import StatePaths
from lifecycle.registry.artifacts import PREDICTION, REFERENCE_ARTIFACT

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.monitoring.response import DriftResponse
    from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)


class MonitorError(RuntimeError):
    """The interval cannot be judged at all (no champion, no reference); retrying will not help."""


# -------------------------------------------------------------------------------------------- the monitor run


def report_dir(spec: ModelSpec, start: dt.datetime, end: dt.datetime, paths: StatePaths) -> Path:
    """One folder per interval: a recompute (rerun, backfill) overwrites it, never adds a second one."""
    return paths.reports / spec.name / "drift" / f"{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}"


def load_reference(spec: ModelSpec, version: str, paths: StatePaths) -> pd.DataFrame:
    """The reference sample stored with ``version`` at training (cached locally per version), its ``prediction``
    column of the kind the interval's has (:class:`lifecycle.monitoring.logs.Interval`), per task:

    - ``binary``: the stored probability of class 1, as always;
    - ``multiclass``: the champion's predicted class on the reference rows, as text (``str(class)``, as the gateway
      logs it), computed here with the model (:meth:`~lifecycle.training.packaging.LoadedModel.predict`): training
      stores the probability of that class, which is not what the live log's prediction is;
    - ``regression``: the champion's predicted value on the reference rows (target units), computed the same way.

    A MonitorError when the version has no reference, or was trained for another task than the spec's.
    """
    import tempfile

    import pandas as pd

    from lifecycle.registry.store import Registry

    name = f"v{version}.parquet" if spec.task == "binary" else f"v{version}.{spec.task}.parquet"
    cache = paths.reports / spec.name / "reference" / name
    if cache.exists():
        return pd.read_parquet(cache)
    from mlflow.exceptions import MlflowException

    registry = Registry(paths)
    mv = registry.version(spec.model_name, version)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache.parent) as tmp:
        try:
            local = Path(registry.client.download_artifacts(mv.run_id, REFERENCE_ARTIFACT, tmp))
        except (MlflowException, OSError) as err:
            raise MonitorError(f"{spec.model_name} v{version} has no drift reference ({REFERENCE_ARTIFACT} in run "
                               f"{mv.run_id}): {err}") from err
        if spec.task != "binary":
            reference = pd.read_parquet(local)
            reference[PREDICTION] = champion_predictions(spec, version, reference, registry, Path(tmp))
            local = Path(tmp) / name
            reference.to_parquet(local, index=False)
        local.replace(cache)
    return pd.read_parquet(cache)


def champion_predictions(spec: ModelSpec, version: str, rows: pd.DataFrame, registry: Any,
                         scratch: Path) -> np.ndarray:
    """``version``'s prediction for each of ``rows`` as the gateway logs it: a multiclass model's class as text, a
    regression model's value (float64). A MonitorError when the model's task is not the spec's."""
    from lifecycle.training.packaging import load_model_dir

    (scratch / "model").mkdir(parents=True, exist_ok=True)
    model = load_model_dir(registry.download_model(spec.model_name, version, scratch / "model"))
    if model.task != spec.task:
        raise MonitorError(f"{spec.model_name} v{version} is a {model.task} model, the spec's task is {spec.task}: "
                           "its predictions are not comparable with the live log's")
    values = model.predict(rows[spec.data.feature_names])
    if spec.task == "multiclass":
        return np.array([str(v) for v in values], dtype=object)
    return np.asarray(values, dtype=np.float64)


def _monitoring_run(experiment_id: str, interval_key: str):
    import mlflow

    from lifecycle.registry.store import TAG

    found = mlflow.MlflowClient().search_runs([experiment_id], filter_string=f"tags.`{TAG}interval` = "
                                              f"'{interval_key}'", max_results=1)
    return found[0] if found else None


def measure(spec: ModelSpec, start: dt.datetime, end: dt.datetime, *, dag_run_id: str = "manual",
            paths: StatePaths | None = None) -> dict[str, Any]:
    """Everything the policy needs about one interval; writes the report and logs to MLflow. Idempotent.

    ``performance`` holds ``labels`` and, per live metric of the spec's task
    (:data:`~lifecycle.monitoring.performance.LIVE_METRICS`), ``{"live", "offline"}`` (binary: also ``brier``, live
    only); ``prediction_drift`` is the drift score of the task's prediction (:func:`load_reference`). Plain JSON: an
    undefined figure is None, with its reason under ``undefined`` (drift) or ``performance.undefined``."""
    import mlflow

    from lifecycle.registry.store import CHAMPION, TAG, Registry, configure_mlflow, ensure_experiment

    paths = paths or StatePaths.current()
    began = time.perf_counter()
    champion = Registry(paths).by_alias(spec.model_name, CHAMPION)
    if champion is None:
        raise MonitorError(f"{spec.model_name} has no champion: nothing is served, nothing to monitor")
    version = str(champion.version)
    interval = read_interval(spec, start, end, paths)
    out_dir = report_dir(spec, start, end, paths)
    result: dict[str, Any] = {
        "model": spec.name, "interval": [start.isoformat(), end.isoformat()], "champion_version": version,
        "rows": len(interval.frame), "labels": len(interval.labelled), "features": len(spec.data.features),
        "drift_share": 0.0, "drifted": [], "scores": {}, "thresholds": {}, "prediction_drift": None,
        "report": None, "uncertain": [], "sketch": {}, "versions": {},
        "out_of_spec_rows": int(interval.frame["out_of_spec"].sum()) if len(interval.frame) else 0,
    }
    if len(interval.frame):
        result["versions"] = {str(k): int(v) for k, v in interval.frame["version"].value_counts().items()}
    perf = live_performance(interval.labelled, version, spec.task, spec.data.classes)
    offline = offline_metrics(spec, version, paths)
    result["performance"] = {"labels": int(perf["labels"])} | {
        m: {"live": perf.get(m), "offline": offline.get(m)} for m in LIVE_METRICS[spec.task]}
    if spec.task == "binary":
        result["performance"]["brier"] = perf.get("brier")
    if perf.get("undefined"):  # why a live metric is null (one class among the labels, no labels)
        result["performance"]["undefined"] = dict(perf["undefined"])
    in_spec = interval.frame[~interval.frame["out_of_spec"]] if len(interval.frame) else interval.frame
    if len(in_spec) >= spec.monitoring.min_rows:  # rows served out of spec never count as drift
        reference = load_reference(spec, version, paths)
        current = in_spec.drop(columns="out_of_spec")
        # prediction drift: the champion's only (a multiclass model's prediction is text: None is its missing value)
        current.loc[current["version"] != version, PREDICTION] = None if spec.task == "multiclass" else np.nan
        html = out_dir / "drift_report.html"
        drift = compute_drift(spec, reference, current, html=html)
        result |= {"drift_share": drift.share, "drifted": drift.drifted, "scores": drift.scores,
                   "thresholds": drift.thresholds, "prediction_drift": drift.prediction_score,
                   "report": str(html), "uncertain": drift.uncertain, "missing": drift.missing,
                   "undefined": drift.undefined,  # features (or the prediction) not scored, with the reason
                   "sketch": {"rows": drift.sketch_rows, "max_error": max(drift.bounds.values(), default=0.0)}}
    result["seconds"] = round(time.perf_counter() - began, 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = atomic_write(out_dir / "drift_summary.json", json.dumps(result, indent=2, default=float))

    configure_mlflow(paths)
    exp_id = ensure_experiment(f"{spec.model_name}-monitoring", paths)
    key = f"{start.isoformat()}/{end.isoformat()}"
    previous = _monitoring_run(exp_id, key)
    ctx = (mlflow.start_run(run_id=previous.info.run_id) if previous is not None
           else mlflow.start_run(experiment_id=exp_id, run_name=f"monitor {start:%Y-%m-%d %H:%M}..{end:%H:%M}"))
    with ctx as run:
        mlflow.set_tags({f"{TAG}interval": key, f"{TAG}model": spec.name, f"{TAG}champion_version": version,
                         f"{TAG}dag_run_id": dag_run_id})
        metrics = {"rows": result["rows"], "labels": result["labels"], "drift_share": result["drift_share"],
                   "drifted_features": len(result["drifted"])}
        metrics |= {f"drift.{c}": s for c, s in result["scores"].items()}
        if result["prediction_drift"] is not None:
            metrics["prediction_drift"] = result["prediction_drift"]
        metrics |= {f"live_{m}": v["live"] for m, v in result["performance"].items()
                    if isinstance(v, dict) and v.get("live") is not None}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=0)
        mlflow.log_artifact(str(summary_path), artifact_path="drift")
        if result["report"]:
            mlflow.log_artifact(result["report"], artifact_path="drift")
        result["mlflow_run_id"] = run.info.run_id
    log.info("monitor: %s %s..%s: %d rows, %d labels, drift share %.2f (%s) in %.1fs", spec.name, start, end,
             result["rows"], result["labels"], result["drift_share"], ", ".join(result["drifted"]) or "none",
             result["seconds"])
    return result


def latest_validated_day(spec: ModelSpec, up_to: dt.date, paths: StatePaths | None = None) -> dt.date | None:
    """The newest validated batch (:func:`lifecycle.data.validation.is_validated`: file and gate record) on or
    before ``up_to``: what a drift-triggered retrain trains up to."""
    days = validated_days(spec, paths, end=up_to)
    return days[-1] if days else None


def judge_interval(spec: ModelSpec, measured: dict[str, Any], ledger: Any, *, now: dt.datetime,
                   interval_end: dt.datetime, backfill: bool = False,
                   paths: StatePaths | None = None) -> DriftResponse:
    """The monitor DAG's ``decide`` step: the policy (:func:`.policy.decide`, with the cooldown and retrain cap
    read from ``ledger``) and what to do about it (:func:`.response.respond`). Reads; records and sends nothing."""
    from lifecycle.monitoring.policy import decide, history
    from lifecycle.monitoring.response import respond

    last, recent = history(ledger, spec.name, now)
    decision = decide(measured, spec.monitoring, now=now, interval_end=interval_end, backfill=backfill,
                      last_retrain_or_promotion=last, retrains_last_24h=recent)
    as_of = latest_validated_day(spec, interval_end.date(), paths) if decision.retrain else None
    return respond(spec.name, measured, decision, drift_share=spec.monitoring.drift_share, as_of=as_of)
