"""The train path, as four typed steps the train DAG wires: train -> evaluate -> gate -> register.

Before them, the DAG's ``plan`` asks :func:`window_end` and :func:`training_window` what to train on, and
:func:`skip_reason` whether the last training already used exactly those batches (then the run skips).

Each step takes and returns small JSON-able dicts (they travel as XCom), and each is idempotent for a given
DAG run id: a rerun reuses the MLflow run and the registered version instead of making new ones, and a retried
training task resumes from the last checkpoint of its run.

Every step follows the spec's task (binary, multiclass, regression): the target encoding and the network's head
(:class:`~lifecycle.training.preprocessing.TargetEncoding`), the model's files, the metrics of the evaluation
(:func:`evaluate_model`: the candidate and the champion by the same path) and so the gate's checks. A spec with a
``fairness`` section also has both audited (:func:`audit_model`) and the candidate's audit judged by the gate.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.data.validation import validated_batches
from lifecycle.ledger import Event, Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import (
    CHALLENGER,
    CHAMPION,
    TAG,
    Registry,
    code_version,
    configure_mlflow,
    ensure_experiment,
)
from lifecycle.spec import ModelSpec, TrainingConfig

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class EmptyWindowError(ValueError):
    """No (or too little) validated data in the training window."""


@dataclass
class Window:
    start: str
    end: str
    days: list[str]
    batches: list[str]
    quarantined: list[str]


def training_window(spec: ModelSpec, end: dt.date, paths: StatePaths | None = None) -> Window:
    """Validated batches of the ``window_days`` ending at ``end`` (inclusive). Quarantined days are excluded."""
    paths = paths or StatePaths.current()
    start = end - dt.timedelta(days=spec.training.window_days - 1)
    batches = validated_batches(spec, start, end, paths)
    qdir = paths.quarantine(spec.name)
    quarantined = sorted(p.name for p in qdir.iterdir() if start.isoformat() <= p.name <= end.isoformat()) \
        if qdir.exists() else []
    days = [p.name.removesuffix(".parquet") for p in batches]
    if not batches:
        why = f" ({len(quarantined)} quarantined: {', '.join(quarantined)})" if quarantined else ""
        raise EmptyWindowError(f"no validated batches for {spec.name} between {start} and {end}{why}: "
                               "nothing to train on")
    return Window(start.isoformat(), end.isoformat(), days, [str(b) for b in batches], quarantined)


def window_end(as_of: str | dt.date | None, interval_end: dt.datetime | None) -> dt.date:
    """The last day of a run's training window: ``as_of`` (ISO date) when given, else the day before the run's
    data interval ends. A manual run has no data interval: it must name ``as_of``."""
    if as_of:
        return as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(as_of)
    if interval_end is None:
        raise EmptyWindowError("this run has no data interval (a manual trigger): set the as_of param to the "
                               "last day to train on")
    return (interval_end - dt.timedelta(days=1)).date()


def skip_reason(last: Event | None, window: Window, run_id: str, force: bool = False) -> str | None:
    """Why a run need not train: the last ``trained`` ledger event, recorded by another run, used exactly the
    window's validated batches. None means train: nothing trained yet, new batches, ``force``, or a rerun of the
    run that trained (it finishes its own work)."""
    if last is None or force or last.run_id == run_id or last.details.get("batches") != window.days:
        return None
    return (f"v{last.version} was already trained on the same {len(window.days)} validated batches "
            f"({window.start}..{window.end}); trigger with force=true to retrain")


def load_window(window: Window) -> pd.DataFrame:
    import pandas as pd

    from lifecycle.data.frames import numpy_dtypes

    frames = [pd.read_parquet(p) for p in window.batches]
    return numpy_dtypes(pd.concat(frames, ignore_index=True))


def row_keys(spec: ModelSpec, frame: pd.DataFrame) -> pd.Series:
    """What splits rows (:func:`split_rows` hashes it): the spec's id column, or, for a model without one, each
    row's values as text (its features and target, by name, so a file's column order does not matter): stable
    across runs and library versions, and identical rows share a key."""
    if spec.data.id_column:
        return frame[spec.data.id_column]
    columns = sorted([*spec.data.feature_names, spec.data.target])
    return frame[columns].astype(str).agg("\x1f".join, axis=1)


def split_rows(ids: pd.Series, seed: int, holdout: float, validation: float) -> np.ndarray:
    """0 = train, 1 = validation, 2 = held-out test; decided by a hash of the row id (:func:`row_keys`), so
    stable across runs."""
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "little")
                  for i in ids.astype(str)], dtype=np.float64) / 2.0**64
    out = np.zeros(len(u), dtype=np.int8)
    out[u < holdout + validation * (1 - holdout)] = 1
    out[u < holdout] = 2
    return out


def effective_training(spec: ModelSpec, epochs: int | None = None,
                       overrides: dict[str, Any] | None = None) -> TrainingConfig:
    """The spec's training config with per-run overrides, validated by the same schema."""
    merged = {**spec.training.model_dump(), **(overrides or {})}
    if epochs:
        merged["epochs"] = epochs
    return TrainingConfig.model_validate(merged)


def _find_run(experiment_id: str, dag_run_id: str):
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{TAG}dag_run_id` = '{dag_run_id}'", max_results=5,
        order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def train_candidate(spec: ModelSpec, end: dt.date, dag_run_id: str, *, epochs: int | None = None,
                    overrides: dict[str, Any] | None = None, reason: str = "scheduled",
                    paths: StatePaths | None = None,
                    announce: Callable[[Path | None], None] | None = None) -> dict[str, Any]:
    """Train on the window ending at ``end``; log params, per-epoch metrics, checkpoints and the pyfunc to MLflow.

    Returns ``{"run_id", "model_uri", "model_id", "window", ...}``. A rerun for a DAG run whose MLflow run already
    finished returns it unchanged; an unfinished one (a crashed or retried task) resumes from its last checkpoint.
    """
    import mlflow

    from lifecycle.training.packaging import log_pyfunc
    from lifecycle.training.trainer import latest_checkpoint, train

    paths = paths or StatePaths.current()
    cfg = effective_training(spec, epochs, overrides)
    window = training_window(spec, end, paths)
    configure_mlflow(paths)
    exp_id = ensure_experiment(spec.model_name, paths)
    previous = _find_run(exp_id, dag_run_id)
    if previous is not None and previous.info.status == "FINISHED" and previous.data.tags.get(f"{TAG}model_uri"):
        log.info("training: run %s already trained for %s; reusing it", previous.info.run_id, dag_run_id)
        if announce:
            announce(None)
        return json.loads(previous.data.tags[f"{TAG}result"])

    data = prepare_data(spec, cfg, window)
    frame, split, train_df, val_df, pre = data.frame, data.split, data.train_df, data.val_df, data.pre
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    hp = hyper(cfg)

    run_ctx = (mlflow.start_run(run_id=previous.info.run_id) if previous is not None
               else mlflow.start_run(experiment_id=exp_id, run_name=f"train {window.end} ({dag_run_id})"))
    with run_ctx as run:
        ckpt_dir = paths.checkpoint_dir(spec.name, run.info.run_id)  # this run's own: no other run touches it
        if previous is not None and latest_checkpoint(ckpt_dir) is None:
            _restore_checkpoint(run.info.run_id, ckpt_dir)
        if previous is None:
            mlflow.set_tags({f"{TAG}dag_run_id": dag_run_id, f"{TAG}model": spec.name,
                             f"{TAG}data_batches": ",".join(window.days), f"{TAG}code_version": code_version(),
                             f"{TAG}reason": reason[:500]})
            # Hyperparameters only: where the task runs (queue, pod, its env) is deployment, not the model.
            mlflow.log_params({**{f"train.{k}": v for k, v in cfg.model_dump(exclude={"kubernetes"}).items()},
                               "data.window_start": window.start, "data.window_end": window.end,
                               "data.rows": len(frame), "data.train_rows": len(train_df),
                               "data.val_rows": len(val_df), "data.holdout_rows": int((split == 2).sum()),
                               "data.quarantined_days": ",".join(window.quarantined) or "none"})

        def on_epoch(epoch: int, metrics: dict[str, float], ckpt: Path | None) -> None:
            mlflow.log_metrics({"train_loss": metrics["train_loss"], "val_loss": metrics["val_loss"]}, step=epoch)
            if ckpt is not None:
                mlflow.log_artifact(str(ckpt), artifact_path="checkpoints")
            log.info("training: epoch %d train_loss %.4f val_loss %.4f", epoch, metrics["train_loss"],
                     metrics["val_loss"])

        if announce:  # the other DDP ranks train into the same checkpoint folder
            announce(ckpt_dir)
        outcome = train(hp, x_train, y_train, x_val, y_val, checkpoint_dir=ckpt_dir, on_epoch=on_epoch,
                        **data.target.head())
        threshold = decision_threshold(data, outcome)
        mlflow.log_metrics({"best_epoch": outcome.best_epoch, "epochs_run": len(outcome.history),
                            **({"decision_threshold": threshold} if threshold is not None else {})})
        mlflow.set_tag(f"{TAG}device", outcome.device)
        _log_reference(spec, train_df, pre, outcome, cfg.seed, data.target)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = write_model_dir(Path(tmp) / "model_dir", outcome, data, threshold,
                                        {"model": spec.name, "features": spec.data.feature_names,
                                         "mlflow_run_id": run.info.run_id, "window": asdict(window)})
            # Numeric columns as float64 in the signature: integers with a missing value arrive as floats.
            example = train_df[spec.data.feature_names].head(3).reset_index(drop=True)
            for f in spec.data.features:
                if f.kind != "categorical":
                    example[f.name] = example[f.name].astype("float64")
            info = log_pyfunc(model_dir, example)
        result = {"run_id": run.info.run_id, "model_uri": info.model_uri, "model_id": info.model_id,
                  "window": asdict(window), "rows": len(frame), "best_epoch": outcome.best_epoch,
                  "epochs_run": len(outcome.history), "stopped_early": outcome.stopped_early,
                  "resumed_from_epoch": outcome.resumed_from, "device": outcome.device,
                  "training": cfg.model_dump(exclude={"kubernetes"}), "reason": reason, "dag_run_id": dag_run_id}
        mlflow.set_tags({f"{TAG}model_uri": info.model_uri, f"{TAG}result": json.dumps(result)})
    log.info("training: %s trained on %d rows from %d batches (%s..%s), best epoch %d of %d%s",
             spec.name, len(frame), len(window.days), window.start, window.end, outcome.best_epoch,
             len(outcome.history), f", resumed after epoch {outcome.resumed_from}" if outcome.resumed_from else "")
    return result


@dataclass
class TrainingData:
    """The arrays one training run learns from; ``y_train`` / ``y_val`` as :attr:`target` encodes them (binary: the
    0/1 target as it is)."""

    frame: Any
    split: np.ndarray
    train_df: Any
    val_df: Any
    pre: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: The target encoding (:class:`~lifecycle.training.preprocessing.TargetEncoding`) of the spec's task.
    target: Any = None


def prepare_data(spec: ModelSpec, cfg: TrainingConfig, window: Window) -> TrainingData:
    """The window's rows, split by row-id hash, preprocessing fitted on the training split only.

    Deterministic: every DDP rank computes the same arrays on its own.
    """
    frame = load_window(window)
    if len(frame) < cfg.min_rows:
        raise EmptyWindowError(f"only {len(frame)} validated rows for {spec.name} in {window.start}..{window.end}; "
                               f"training.min_rows is {cfg.min_rows}")
    return prepare_frame(spec, cfg, frame)


def prepare_frame(spec: ModelSpec, cfg: TrainingConfig, frame: pd.DataFrame) -> TrainingData:
    """:func:`prepare_data` on rows already loaded: split them, fit the preprocessing and the target encoding on
    the training split (a target the task cannot learn from is a ``TrainingError``: see
    :class:`~lifecycle.training.preprocessing.TargetEncoding`) and encode both splits."""
    from lifecycle.training.preprocessing import Preprocessor, TargetEncoding

    split = split_rows(row_keys(spec, frame), cfg.seed, cfg.holdout_fraction, cfg.validation_fraction)
    train_df, val_df = frame[split == 0], frame[split == 1]
    pre = Preprocessor.fit(spec.data, train_df)
    target = spec.data.target
    encoding = TargetEncoding.fit(spec.task, target, train_df[target], spec.data.classes)
    return TrainingData(frame, split, train_df, val_df, pre, pre.transform(train_df),
                        encoding.encode(train_df[target], target, "training rows"), pre.transform(val_df),
                        encoding.encode(val_df[target], target, "validation rows"), encoding)


def decision_threshold(data: TrainingData, outcome: Any) -> float | None:
    """A binary model's decision threshold: the one maximising F1 on the validation rows. None for the other
    tasks (a multiclass model predicts its most probable class, a regression model a value)."""
    from lifecycle.training.evaluation import best_threshold
    from lifecycle.training.trainer import predict_proba

    if data.target is not None and data.target.task != "binary":
        return None
    return best_threshold(data.y_val, predict_proba(outcome.state_dict, outcome.architecture, data.x_val))


def write_model_dir(folder: Path, outcome: Any, data: TrainingData, threshold: float | None,
                    meta: dict[str, Any]) -> Path:
    """The trained model's files (:func:`lifecycle.training.packaging.save_model_dir`), its metadata ``meta`` plus
    the target encoding (nothing more for a binary model)."""
    from lifecycle.training.packaging import save_model_dir

    extra = data.target.to_meta() if data.target is not None else {}
    return save_model_dir(folder, outcome.state_dict, outcome.architecture, data.pre, threshold, {**meta, **extra})


def hyper(cfg: TrainingConfig) -> Any:
    from lifecycle.training.trainer import Hyper

    return Hyper(cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.weight_decay, list(cfg.hidden_units),
                 cfg.dropout, cfg.patience, cfg.seed, cfg.device, cfg.module, dict(cfg.module_options))


def train_distributed(spec: ModelSpec, end: dt.date, dag_run_id: str, processes: int, *, epochs: int | None = None,
                      overrides: dict[str, Any] | None = None, reason: str = "scheduled",
                      paths: StatePaths | None = None, timeout: float = 6 * 3600) -> dict[str, Any]:
    """``train_candidate`` as ``torchrun --standalone --nproc-per-node <processes>`` (DDP: NCCL on GPUs, gloo on
    CPU). Rank 0 logs to MLflow and writes checkpoints exactly as one process does; the result is the same
    dict. A failed worker fails the whole group (torchrun stops the others) and this raises with its output."""
    import os
    import re
    import subprocess
    import sys

    paths = paths or StatePaths.current()
    out = paths.run_dir / f"ddp-{re.sub(r'[^A-Za-z0-9_.-]', '_', dag_run_id)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", "lifecycle.training.ddp", "--model", spec.name, "--end", end.isoformat(), "--run-id", dag_run_id,
           "--reason", reason, "--out", str(out), "--overrides", json.dumps(overrides or {})]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    env = {**os.environ, "LIFECYCLE_HOME": str(paths.root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log.info("training: %s", " ".join(cmd))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not out.exists():
        tail = (done.stdout[-2000:] + "\n" + done.stderr[-4000:]).strip()
        raise RuntimeError(f"torchrun with {processes} processes failed (exit {done.returncode}):\n{tail}")
    return json.loads(out.read_text())


def _log_reference(spec: ModelSpec, train_df: pd.DataFrame, pre: Any, outcome: Any, seed: int,
                   target: Any = None) -> None:
    """Keep a sample of the training rows, with this model's prediction, as the drift reference: a binary model's
    probability, a multiclass model's probability of its predicted class, a regression model's value (target
    units)."""
    import mlflow

    from lifecycle.registry.artifacts import PREDICTION, REFERENCE_ARTIFACT
    from lifecycle.training.trainer import predict_proba

    n = min(len(train_df), spec.monitoring.reference_rows)
    sample = train_df.sample(n=n, random_state=seed).reset_index(drop=True)
    keep = [spec.data.id_column] if spec.data.id_column else []
    sample = sample[[*keep, *spec.data.feature_names, spec.data.target]].copy()
    outputs = predict_proba(outcome.state_dict, outcome.architecture, pre.transform(sample))
    task = target.task if target is not None else "binary"
    if task == "multiclass":
        outputs = outputs.max(axis=1)
    elif task == "regression":
        outputs = target.to_target(outputs)
    sample[PREDICTION] = outputs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        sample.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))


def _restore_checkpoint(run_id: str, ckpt_dir: Path) -> None:
    """A retried task on another worker: fetch the newest checkpoint from the run's artifacts.

    The download lands in a private temp folder inside the run's own ``ckpt_dir`` (never a folder shared with
    other runs), then is renamed into place: the checkpoint appears whole or not at all.
    """
    import mlflow

    client = mlflow.MlflowClient()
    files = sorted(f.path for f in client.list_artifacts(run_id, "checkpoints") if f.path.endswith(".pt"))
    if files:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=ckpt_dir) as tmp:
            local = Path(client.download_artifacts(run_id, files[-1], tmp))
            local.replace(ckpt_dir / Path(files[-1]).name)
        log.info("training: restored checkpoint %s from the MLflow run", files[-1])


def evaluate_model(spec: ModelSpec, model: Any, frame: pd.DataFrame, who: str = "the model") -> Any:
    """The :class:`~lifecycle.training.evaluation.Evaluation` of a loaded model on ``frame``, overall and per
    slice, by the model's own task (and classes): the candidate and the champion take this same path.

    A model that cannot be compared with the spec's (trained for another task, or, multiclass, for another set of
    classes: e.g. a champion from before the spec changed) gets every metric of the spec's task undefined, with
    that as the reason: the gate then judges no regression against it.
    """
    from lifecycle.spec import task_metrics
    from lifecycle.training.evaluation import UNDEFINED, Evaluation, evaluate

    why = None
    if model.task != spec.task:
        why = f"{who} is a {model.task} model; this spec's task is {spec.task}: not comparable"
    elif spec.task == "multiclass" and {str(c) for c in model.classes or []} != {str(c) for c in spec.data.classes
                                                                                 or []}:
        why = (f"{who} was trained for the classes {[str(c) for c in model.classes or []]}, this spec has "
               f"{[str(c) for c in spec.data.classes or []]}: not comparable")
    if why is not None:
        names = [m for m in task_metrics(spec.task, spec.data.classes) if m != "rows"]
        return Evaluation({**dict.fromkeys(names), "rows": float(len(frame)), UNDEFINED: dict.fromkeys(names, why)})
    threshold = model.threshold if model.task == "binary" else 0.5
    return evaluate(frame, spec.data.target, model.scores(frame), spec.slices, threshold, task=model.task,
                    classes=model.classes)


def audit_model(spec: ModelSpec, model: Any, frame: pd.DataFrame, who: str = "the model") -> dict[str, Any] | None:
    """The fairness audit (:func:`lifecycle.training.fairness.audit`) of a loaded model on ``frame``, by the spec's
    ``fairness`` section; None when the spec has none. A model that cannot be compared with the spec's (another
    task, or another set of classes: see :func:`evaluate_model`) is not audited: ``{"unavailable": REASON}``."""
    from lifecycle.training.fairness import audit

    if spec.fairness is None:
        return None
    if model.task != spec.task:
        return {"unavailable": f"{who} is a {model.task} model; this spec's task is {spec.task}: not audited"}
    if spec.task == "multiclass" and {str(c) for c in model.classes or []} != {str(c) for c in spec.data.classes
                                                                               or []}:
        return {"unavailable": f"{who} was trained for the classes {[str(c) for c in model.classes or []]}: "
                               "not audited"}
    return audit(frame, spec.data.target, model.scores(frame), spec.fairness, task=model.task,
                 threshold=model.threshold if model.task == "binary" else 0.5, classes=model.classes)


def _score_version(registry: Registry, spec: ModelSpec, version: str,
                   frame: pd.DataFrame) -> tuple[Any, dict[str, Any] | None]:
    """A registered version's evaluation and fairness audit (:func:`audit_model`) on ``frame``."""
    from lifecycle.training.packaging import load_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model_dir(registry.download_model(spec.model_name, version, Path(tmp)))
        who = f"champion v{version}"
        return evaluate_model(spec, model, frame, who), audit_model(spec, model, frame, who)


def evaluate_candidate(spec: ModelSpec, trained: dict[str, Any], paths: StatePaths | None = None) -> dict[str, Any]:
    """Score the candidate and the serving champion on the same held-out rows, overall and per slice, and audit
    both for fairness when the spec has a ``fairness`` section: ``fairness`` is then ``{"candidate": AUDIT,
    "champion": AUDIT or None}`` (:func:`audit_model`; the gate judges the candidate's, the champion's is for the
    record), else None. The audits go into the run's ``evaluation.json``, their metric values into its metrics
    (``fairness.<attribute>.<metric>``, ``champion_fairness.…``)."""
    import mlflow

    from lifecycle.training.evaluation import HEADLINE, Evaluation, format_metric
    from lifecycle.training.fairness import flat_metrics, gate_findings
    from lifecycle.training.packaging import load_model_dir

    paths = paths or StatePaths.current()
    registry = Registry(paths)
    window = Window(**trained["window"])
    frame = load_window(window)
    cfg = TrainingConfig.model_validate(trained["training"])
    holdout = frame[split_rows(row_keys(spec, frame), cfg.seed, cfg.holdout_fraction,
                               cfg.validation_fraction) == 2].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model_dir(registry.download_uri(trained["model_uri"], Path(tmp), "the candidate"))
        candidate = evaluate_model(spec, model, holdout, "the candidate")
        candidate_figures = audit_model(spec, model, holdout, "the candidate")
    champion_mv = registry.by_alias(spec.model_name, CHAMPION)
    champion, champion_figures = None, None
    if champion_mv is not None:
        champion, champion_figures = _score_version(registry, spec, champion_mv.version, holdout)
    fairness = {"candidate": candidate_figures, "champion": champion_figures} if spec.fairness is not None else None
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics(candidate.flat("test_"))  # defined metrics only: undefined ones are in evaluation.json
        if champion is not None:
            mlflow.log_metrics(Evaluation(champion.overall).flat("champion_test_"))  # overall, defined only
        if fairness is not None:
            mlflow.log_metrics({**flat_metrics(candidate_figures), **flat_metrics(champion_figures, "champion_fairness.")})
        mlflow.log_dict({"candidate": candidate.to_dict(),
                         "champion": champion.to_dict() if champion else None,
                         "champion_version": champion_mv.version if champion_mv else None,
                         "holdout_rows": len(holdout), "fairness": fairness}, "evaluation.json")
    headline = HEADLINE[spec.task]
    log.info("evaluation: candidate %s %s on %d held-out rows; champion %s", headline,
             format_metric(candidate.overall, headline, reason=True), len(holdout),
             f"v{champion_mv.version} {headline} {format_metric(champion.overall, headline, reason=True)}"
             if champion and champion_mv else "none")
    if fairness is not None:
        findings = gate_findings(candidate_figures)
        breaches = [detail for _, passed, detail, _ in findings if not passed]
        unjudged = [detail for _, _, detail, judged in findings if not judged]
        log.info("fairness: candidate %s", "; ".join(breaches) if breaches else
                 f"{len(findings) - len(unjudged)} figures within their thresholds"
                 + (f", {len(unjudged)} not judged ({unjudged[0]})" if unjudged else ""))
    return {"candidate": candidate.to_dict(), "champion": champion.to_dict() if champion else None,
            "champion_version": champion_mv.version if champion_mv else None, "holdout_rows": len(holdout),
            "fairness": fairness}


def gate_candidate(spec: ModelSpec, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The pure gate decision, as a dict (see :func:`lifecycle.training.promotion.decide`), the candidate's fairness
    audit (when the evaluation holds one) judged with it."""
    from lifecycle.training.evaluation import Evaluation
    from lifecycle.training.fairness import candidate_audit
    from lifecycle.training.promotion import decide

    champion = Evaluation.from_dict(evaluation["champion"]) if evaluation.get("champion") else None
    decision = decide(Evaluation.from_dict(evaluation["candidate"]), champion, spec.gate,
                      fairness=candidate_audit(evaluation))
    log.info("%s", decision.reason)
    return decision.to_dict() | {"status": decision.status}


def register_candidate(spec: ModelSpec, trained: dict[str, Any], evaluation: dict[str, Any],
                       decision: dict[str, Any], dag_run_id: str, paths: StatePaths | None = None,
                       ledger: Ledger | None = None) -> dict[str, Any]:
    """Register the candidate as a new version with its lineage and gate tags; set aliases from the decision.

    Every trained model is registered (a rejected one too, tagged ``rejected``), so the registry is the record.
    The first passing model becomes ``champion``; a later one ``challenger`` (the deploy DAG canaries it).
    """
    from lifecycle.training.evaluation import HEADLINE, format_metric

    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    registry = Registry(paths)
    name = spec.model_name
    passed, first = bool(decision["passed"]), bool(decision["first_model"])
    status = ("champion" if first else "challenger") if passed else "rejected"
    mv = registry.version_for_run(name, dag_run_id)
    if mv is None:
        tags = {
            f"{TAG}status": status,
            f"{TAG}dag_run_id": dag_run_id,
            f"{TAG}data_batches": ",".join(trained["window"]["days"]),
            f"{TAG}code_version": code_version(),
            f"{TAG}mlflow_run_id": trained["run_id"],
            f"{TAG}gate_decision": decision["status"],
            f"{TAG}gate_reason": decision["reason"][:5000],
            f"{TAG}train_reason": str(trained.get("reason", ""))[:500],
            # the task's headline metric: test_roc_auc for a binary model, as ever
            f"{TAG}test_{HEADLINE[spec.task]}": format_metric(evaluation["candidate"]["overall"],
                                                             HEADLINE[spec.task]),
        }
        mv = registry.register(name, trained["model_uri"], trained["run_id"], tags, model_id=trained.get("model_id"),
                               description=spec.description.strip())
        log.info("registry: registered %s v%s (%s)", name, mv.version, status)
    else:
        log.info("registry: %s v%s already registered by %s; finishing its aliases", name, mv.version, dag_run_id)
    version = str(mv.version)
    reason_with_version = decision["reason"].replace("candidate", f"v{version}", 1)
    if mv.tags.get(f"{TAG}gate_reason") != reason_with_version[:5000]:
        registry.set_tags(name, version, {f"{TAG}gate_reason": reason_with_version[:5000]})
    if passed:
        registry.set_alias(name, CHAMPION if first else CHALLENGER, version)
    key = f"{name}:{dag_run_id}"
    window = trained["window"]
    ledger.record(spec.name, "trained", f"trained on {trained['rows']} rows from {len(window['days'])} validated "
                  f"batches {window['start']}..{window['end']}; best epoch {trained['best_epoch']}"
                  + (f" (resumed after epoch {trained['resumed_from_epoch']})"
                     if trained.get("resumed_from_epoch") else ""),
                  version=version, run_id=dag_run_id, key=f"{key}:trained",
                  details={"mlflow_run_id": trained["run_id"], "batches": window["days"],
                           "resumed_from_epoch": trained.get("resumed_from_epoch"), "device": trained.get("device")})
    from lifecycle.training.fairness import candidate_audit

    audit = candidate_audit(evaluation)  # its figures travel with the decision (the report's fairness table)
    ledger.record(spec.name, "gate_passed" if passed else "gate_rejected", reason_with_version, version=version,
                  run_id=dag_run_id, key=f"{key}:gate",
                  details={"checks": decision["checks"], **({"fairness": audit} if audit is not None else {})})
    if passed and first:
        ledger.record(spec.name, "promoted", f"v{version} is the first model to pass the gate: alias champion",
                      version=version, run_id=dag_run_id, key=f"{key}:promoted")
    return {"model": name, "version": version, "status": status, "reason": reason_with_version,
            "aliases": registry.aliases(name)}


def run_training_task(spec: ModelSpec, window_end: dt.date | str, dag_run_id: str, epochs: int | str | None = None,
                      overrides: dict[str, Any] | None = None, reason: str = "scheduled",
                      paths: StatePaths | None = None) -> dict[str, Any]:
    """The train task wherever it runs (``TorchTrainOperator`` in the worker, ``lifecycle train-task`` in a
    Kubernetes pod): ``train_candidate`` in this process, or ``train_distributed`` (torchrun) when the effective
    ``processes`` is above 1. Takes values as templates render them (``epochs`` may be ``"None"``, ``window_end``
    a datetime string; ``overrides`` that are not a dict are ignored). Returns the training result dict."""
    epochs = int(epochs) if epochs not in (None, "", "None") else None
    overrides = overrides if isinstance(overrides, dict) else None
    if isinstance(window_end, dt.datetime):
        window_end = window_end.date()
    end = window_end if isinstance(window_end, dt.date) else dt.date.fromisoformat(str(window_end)[:10])
    processes = effective_training(spec, epochs, overrides).processes
    log.info("training %s on the window ending %s with %d process(es) (reason: %s)", spec.name, end, processes,
             reason)
    if processes > 1:  # torchrun, DDP; same MLflow run, checkpoints and resume as one process
        return train_distributed(spec, end, dag_run_id, processes, epochs=epochs, overrides=overrides,
                                 reason=str(reason), paths=paths)
    return train_candidate(spec, end, dag_run_id, epochs=epochs, overrides=overrides, reason=str(reason),
                           paths=paths)
