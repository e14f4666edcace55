"""Staging a version for the archive: weights, metrics, ledger events, traffic history and a model card in one
local folder, ready to upload."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.fileio import atomic_write, fsync_tree
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import TAG, Registry

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec
log = logging.getLogger(__name__)


def stage(spec: ModelSpec, version: str | int, reason: str, paths: StatePaths | None = None) -> Path:
    """Collect what the version is into ``<state>/archive_staging/<model>/v<version>/`` (once: a retry reuses a
    complete staging folder, so the archive's sums never change between attempts)."""
    paths = paths or StatePaths.current()
    version = str(version)
    out = paths.root / "archive_staging" / spec.name / f"v{version}"
    if (out / ".complete").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    registry = Registry(paths)
    name = spec.model_name
    mv = registry.version(name, version)
    run = registry.client.get_run(mv.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        import mlflow
        from mlflow.exceptions import MlflowException

        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp,
                                                         tracking_uri=registry.uri))
        shutil.copytree(local, out / "model")
        for artifact, dest in (("evaluation.json", "mlflow/evaluation.json"),
                               ("reference/reference.parquet", "reference/reference.parquet")):
            try:
                got = registry.client.download_artifacts(mv.run_id, artifact, tmp)
                atomic_write(out / dest, Path(got).read_bytes())
            except (MlflowException, OSError):  # an older version may lack one of these; the card lists files
                log.info("archive: %s v%s has no %s", name, version, artifact)
    atomic_write(out / "mlflow/run.json", json.dumps({
        "run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
        "start_time": run.info.start_time, "end_time": run.info.end_time, "params": run.data.params,
        "metrics": run.data.metrics, "tags": {k: v for k, v in run.data.tags.items() if k != f"{TAG}result"},
    }, indent=2, sort_keys=True))
    atomic_write(out / "mlflow/version.json", json.dumps({
        "name": name, "version": version, "source": mv.source, "run_id": mv.run_id, "tags": dict(mv.tags),
        "description": mv.description, "creation_timestamp": mv.creation_timestamp,
    }, indent=2, sort_keys=True))
    days = [d for d in mv.tags.get(f"{TAG}data_batches", "").split(",") if d]
    for day in days:
        for src in (paths.reports / spec.name / "gx" / f"{day}.html",
                    paths.validated(spec.name) / f"{day}.gx.json"):
            if src.exists():
                atomic_write(out / "reports/gx" / src.name, src.read_bytes())
    drift_dir = paths.reports / spec.name / "drift"
    for summary in sorted(drift_dir.glob("*/drift_summary.json")) if drift_dir.exists() else []:
        if str(json.loads(summary.read_text()).get("champion_version")) == version:
            for f in summary.parent.iterdir():
                atomic_write(out / "reports/drift" / summary.parent.name / f.name, f.read_bytes())
    events = [e for e in Ledger(paths.ledger_db).events(spec.name, version=version)]
    atomic_write(out / "history/ledger.json", json.dumps([e.public() | {"details": e.details, "run_id": e.run_id}
                                                    for e in events], indent=2, default=str))
    from lifecycle.serving.traffic import TrafficStore

    traffic = [h for h in TrafficStore(paths.ledger_db).history(spec.name) if version in h.get("weights", {})]
    atomic_write(out / "history/traffic.json", json.dumps(traffic, indent=2, default=str))
    atomic_write(out / "MODEL_CARD.md", model_card(spec, version, mv, run, events, traffic, days, reason, out))
    fsync_tree(out)  # the copied model files too: the marker must never outlive what it vouches for
    atomic_write(out / ".complete", "")
    return out


def recorded_archive_sha256(spec: ModelSpec, version: str | int, paths: StatePaths | None = None) -> str | None:
    """The manifest sha256 the registry recorded when ``version`` was retired (``lifecycle.archive_sha256``), or
    None: what :func:`~lifecycle.retirement.archive.write_archive` may trust in an existing manifest when a
    retired version is archived again (its staging folder is gone, so what is staged anew differs)."""
    mv = Registry(paths or StatePaths.current()).version(spec.model_name, str(version))
    return mv.tags.get(f"{TAG}archive_sha256") or None


def _recorded_audit(staged: Path, events: list[Any]) -> dict[str, Any] | None:
    """The version's own fairness audit from when it was gated: its run's ``evaluation.json`` (staged as
    ``mlflow/evaluation.json``), else its gate event's details; None when neither holds one."""
    from lifecycle.training.fairness import candidate_audit

    path = staged / "mlflow" / "evaluation.json"
    if path.exists():
        try:
            audit = candidate_audit(json.loads(path.read_text()))
        except (ValueError, AttributeError):  # an unreadable or foreign file: fall back to the ledger
            audit = None
        if audit is not None:
            return audit
    for e in reversed(events):
        if e.event in ("gate_passed", "gate_rejected") and isinstance(e.details.get("fairness"), dict):
            return e.details["fairness"]
    return None


def fairness_section(audit: dict[str, Any] | None) -> list[str]:
    """The model card's fairness lines: per audited attribute, a Markdown table of its groups' figures, then each
    metric against its threshold and the notes (groups too small to judge, undefined figures)."""
    from lifecycle.training.fairness import audit_tables

    tables = audit_tables(audit)
    if not tables:
        return ["- no fairness audit recorded (the spec had no `fairness` section when this version was gated)"]
    lines: list[str] = []
    for table in tables:
        if table["attribute"]:
            lines += [f"### {table['attribute']} (column `{table['column']}`)", ""]
        if table["header"]:
            lines += ["| " + " | ".join(table["header"]) + " |", "|" + " --- |" * len(table["header"])]
            lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
            lines.append("")
        lines += [f"- {line}" for line in table["metrics"]]
        lines += [f"- note: {note}" for note in table["notes"]]
        lines.append("")
    return lines[:-1]


def model_card(spec: ModelSpec, version: str, mv: Any, run: Any, events: list[Any], traffic: list[dict],
               days: list[str], reason: str, staged: Path) -> str:
    """A Markdown model card: purpose, lineage, metrics, slices, fairness, gates, deployment and drift history, why
    retired."""
    metrics = run.data.metrics
    params = run.data.params
    overall = {k.removeprefix("test_"): v for k, v in sorted(metrics.items())
               if k.startswith("test_") and ".slice." not in k and "slice." not in k}
    slices = {k.removeprefix("test_slice."): v for k, v in sorted(metrics.items()) if k.startswith("test_slice.")}
    lines = [f"# {spec.model_name} v{version}", "", f"**Status:** retired. **Why:** {reason}", "",
             "## Purpose", "", spec.description.strip(), "", f"Owner: {spec.owner}.", "",
             "## Data lineage", "",
             f"- training window: {params.get('data.window_start', '?')} .. {params.get('data.window_end', '?')}, "
             f"{params.get('data.rows', '?')} rows ({params.get('data.train_rows', '?')} train, "
             f"{params.get('data.val_rows', '?')} validation, {params.get('data.holdout_rows', '?')} held out)",
             f"- validated batches: {', '.join(days) or 'unknown'}",
             f"- quarantined days excluded: {params.get('data.quarantined_days', 'none')}",
             f"- MLflow run: `{run.info.run_id}`; Airflow run: `{mv.tags.get(f'{TAG}dag_run_id', '?')}`; "
             f"code version: `{mv.tags.get(f'{TAG}code_version', '?')}`",
             f"- features: {', '.join(spec.data.feature_names)}; target: `{spec.data.target}`", "",
             "## Metrics (held-out rows)", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in overall.items()] or ["| (none recorded) | |"]
    lines += ["", "## Slices", ""]
    by_slice: dict[str, dict[str, float]] = {}
    for key, value in slices.items():
        name, _, metric = key.rpartition(".")
        by_slice.setdefault(name, {})[metric] = value
    if by_slice:
        lines += ["| slice | rows | roc_auc | accuracy | calibration_error |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {m.get('rows', float('nan')):.0f} | {m.get('roc_auc', float('nan')):.4f} | "
                  f"{m.get('accuracy', float('nan')):.4f} | {m.get('calibration_error', float('nan')):.4f} |"
                  for name, m in by_slice.items()]
    else:
        lines.append("- none recorded")
    lines += ["", "## Fairness", "", *fairness_section(_recorded_audit(staged, events))]
    lines += ["", "## Gates", "", f"- promotion gate: {mv.tags.get(f'{TAG}gate_reason', 'not recorded')}"]
    lines += [f"- canary: {e.event} {e.at}: {e.reason}" for e in events
              if e.event in ("canary_step", "promoted", "rolled_back")]
    lines += ["", "## Deployment history", ""]
    lines += ([f"- {h['at']}: weights {h['weights']} ({h.get('reason', '')})" for h in traffic]
              or ["- never served traffic"])
    lines += ["", "## Drift history", ""]
    drift = [e for e in events if e.event in ("drift_detected", "retrain_triggered")]
    lines += ([f"- {e.at} {e.event}: {e.reason}" for e in drift] or ["- no drift recorded while it served"])
    lines += ["", "## Archive contents", ""]
    lines += [f"- `{p.relative_to(staged).as_posix()}`" for p in sorted(staged.rglob("*"))
              if p.is_file() and not p.name.startswith(".")]
    return "\n".join(lines) + "\n"
