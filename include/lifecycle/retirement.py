"""Retiring a model version without ever losing it, and bringing an archived one back.

The retire DAG wires these steps: :func:`check` (refuse the champion or a version in a canary) -> drain
(gateway) -> :func:`stage` (collect everything the version is, plus its model card) -> :func:`archive.write_archive`
-> verify -> :func:`finalize` (only now: aliases removed, tags, local artifacts, ledger). Nothing about the
version changes before its archive is verified. :func:`restore` reads a manifest, verifies every file and
registers the model again as a new version.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.archive import ArchiveResult, Store, prefix_for, verify_archive
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry import CHALLENGER, CHAMPION, TAG, Registry, code_version

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)

KEEP_ALIASES = (CHAMPION, CHALLENGER)


class RetireRefusedError(ValueError):
    """This version may not be retired (the champion, a version in a canary, unknown); retrying will not help."""


def archive_uri(spec: ModelSpec, paths: StatePaths) -> str:
    return spec.retirement.archive_uri or str(paths.archive)


def check(spec: ModelSpec, version: str | int, paths: StatePaths | None = None,
          weights: dict[str, int] | None = None) -> dict[str, Any]:
    """Refuse, with the reason, to retire the champion, the challenger (a canary) or a version with live traffic
    that is not the champion's to take back. Returns what the retire steps need."""
    paths = paths or StatePaths.current()
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    from mlflow.exceptions import MlflowException

    try:
        mv = registry.version(name, version)
    except MlflowException as err:
        raise RetireRefusedError(f"{name} v{version} is not in the registry: {err}") from err
    aliases = registry.aliases(name)
    held = sorted(a for a, v in aliases.items() if str(v) == version)
    if CHAMPION in held:
        raise RetireRefusedError(f"{name} v{version} is the champion: promote or roll back to another version "
                                 "first")
    if CHALLENGER in held:
        raise RetireRefusedError(f"{name} v{version} is the challenger of a canary: let the deploy finish or roll "
                                 "it back first")
    champion = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    if (weights or {}).get(version, 0) > 0 and champion is None:
        raise RetireRefusedError(f"{name} v{version} serves traffic and there is no champion to take it")
    return {"model": spec.name, "registered_model": name, "version": version, "champion": champion,
            "aliases": held, "status": mv.tags.get(f"{TAG}status", "?"), "run_id": mv.run_id,
            "source": mv.source, "already_retired": mv.tags.get(f"{TAG}status") == "retired"}


def drain_weights(weights: dict[str, int], version: str, champion: str) -> dict[str, int]:
    """The weights with ``version``'s share moved to the champion."""
    out = {v: int(w) for v, w in weights.items()}
    moved = out.pop(version, 0)
    out[champion] = out.get(champion, 0) + moved
    out[version] = 0
    return out


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


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
                _write(out / dest, Path(got).read_bytes())
            except (MlflowException, OSError):  # an older version may lack one of these; the card lists files
                log.info("archive: %s v%s has no %s", name, version, artifact)
    _write(out / "mlflow/run.json", json.dumps({
        "run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
        "start_time": run.info.start_time, "end_time": run.info.end_time, "params": run.data.params,
        "metrics": run.data.metrics, "tags": {k: v for k, v in run.data.tags.items() if k != f"{TAG}result"},
    }, indent=2, sort_keys=True))
    _write(out / "mlflow/version.json", json.dumps({
        "name": name, "version": version, "source": mv.source, "run_id": mv.run_id, "tags": dict(mv.tags),
        "description": mv.description, "creation_timestamp": mv.creation_timestamp,
    }, indent=2, sort_keys=True))
    days = [d for d in mv.tags.get(f"{TAG}data_batches", "").split(",") if d]
    for day in days:
        for src in (paths.reports / spec.name / "gx" / f"{day}.html",
                    paths.validated(spec.name) / f"{day}.gx.json"):
            if src.exists():
                _write(out / "reports/gx" / src.name, src.read_bytes())
    drift_dir = paths.reports / spec.name / "drift"
    for summary in sorted(drift_dir.glob("*/drift_summary.json")) if drift_dir.exists() else []:
        if str(json.loads(summary.read_text()).get("champion_version")) == version:
            for f in summary.parent.iterdir():
                _write(out / "reports/drift" / summary.parent.name / f.name, f.read_bytes())
    events = [e for e in Ledger(paths.ledger_db).events(spec.name, version=version)]
    _write(out / "history/ledger.json", json.dumps([e.public() | {"details": e.details, "run_id": e.run_id}
                                                    for e in events], indent=2, default=str))
    from lifecycle.serving.traffic import TrafficStore

    traffic = [h for h in TrafficStore(paths.ledger_db).history(spec.name) if version in h.get("weights", {})]
    _write(out / "history/traffic.json", json.dumps(traffic, indent=2, default=str))
    _write(out / "MODEL_CARD.md", model_card(spec, version, mv, run, events, traffic, days, reason, out))
    (out / ".complete").touch()
    return out


def model_card(spec: ModelSpec, version: str, mv: Any, run: Any, events: list[Any], traffic: list[dict],
               days: list[str], reason: str, staged: Path) -> str:
    """A Markdown model card: purpose, lineage, metrics, slices, gates, deployment and drift history, why retired."""
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


def finalize(spec: ModelSpec, version: str | int, result: ArchiveResult, reason: str, run_id: str,
             paths: StatePaths | None = None, ledger: Ledger | None = None) -> dict[str, Any]:
    """After a verified archive: remove the version's aliases, tag it retired with the archive URI and the
    manifest's sha256, delete its local artifacts per policy, and record ``archived`` then ``retired``."""
    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    removed = [a for a, v in registry.aliases(name).items() if str(v) == version and a not in KEEP_ALIASES]
    for alias in removed:
        registry.delete_alias(name, alias)
    registry.set_tags(name, version, {f"{TAG}status": "retired", f"{TAG}archive_uri": result.uri,
                                      f"{TAG}archive_sha256": result.manifest_sha256,
                                      f"{TAG}retired_reason": reason[:500]})
    deleted = []
    if spec.retirement.delete_local_artifacts:
        mv = registry.version(name, version)
        for folder in (paths.checkpoints / spec.name / mv.run_id, paths.root / "archive_staging" / spec.name /
                       f"v{version}"):
            if folder.exists():
                shutil.rmtree(folder)
                deleted.append(str(folder))
    key = f"{name}:retire:v{version}"
    ledger.record(spec.name, "archived", f"v{version} archived to {result.uri}: {result.files} files, "
                  f"{result.bytes} bytes, manifest sha256 {result.manifest_sha256[:16]}..., every checksum verified",
                  version=version, run_id=run_id, key=f"{key}:archived",
                  details={"archive_uri": result.uri, "manifest_sha256": result.manifest_sha256,
                           "files": result.files, "bytes": result.bytes, "uploaded": result.uploaded})
    ledger.record(spec.name, "retired", f"v{version} retired: {reason}" + (f"; aliases removed: {removed}"
                                                                           if removed else ""),
                  version=version, run_id=run_id, key=f"{key}:retired",
                  details={"archive_uri": result.uri, "aliases_removed": removed, "deleted_local": deleted})
    return {"version": version, "archive_uri": result.uri, "aliases_removed": removed, "deleted_local": deleted}


def restore(spec: ModelSpec, store: Store, version: str | int, run_id: str, paths: StatePaths | None = None,
            ledger: Ledger | None = None) -> dict[str, Any]:
    """Verify an archive, then register its model again as a new version tagged ``lifecycle.restored_from``.

    A tampered archive raises :class:`ChecksumMismatchError` naming the file, before anything is registered.
    Idempotent per ``run_id``: a rerun finds the version it registered.
    """
    import pandas as pd

    from lifecycle.packaging import log_pyfunc
    from lifecycle.registry import configure_mlflow, ensure_experiment

    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    source_uri = f"{store.uri}/{prefix_for(spec.name, version)}".rstrip("/")
    existing = registry.version_for_run(name, run_id)
    if existing is not None:
        return {"version": str(existing.version), "restored_from": source_uri, "already": True}
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        manifest, digest = verify_archive(store, spec.name, version, into=staged)
        weights = sorted(staged.joinpath("model").rglob("weights.pt"))
        if not weights:
            raise ValueError(f"{source_uri}: the archive holds no model (no weights.pt under model/)")
        model_dir = weights[0].parent
        ref = staged / "reference" / "reference.parquet"
        if ref.exists():
            example = pd.read_parquet(ref)[spec.data.feature_names].head(3)
        else:
            raw = json.loads(next(staged.joinpath("model").rglob("input_example.json")).read_text())
            example = pd.DataFrame(raw["data"], columns=raw["columns"])
        for f in spec.data.features:
            if f.kind != "categorical":
                example[f.name] = example[f.name].astype("float64")
        original = json.loads((staged / "mlflow/version.json").read_text()) \
            if (staged / "mlflow/version.json").exists() else {"tags": {}}
        import mlflow

        configure_mlflow(paths)
        exp_id = ensure_experiment(name, paths)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"restore v{version} ({run_id})") as run:
            mlflow.set_tags({f"{TAG}dag_run_id": run_id, f"{TAG}restored_from": source_uri})
            if ref.exists():
                mlflow.log_artifact(str(ref), artifact_path="reference")
            if (staged / "mlflow/evaluation.json").exists():
                mlflow.log_artifact(str(staged / "mlflow/evaluation.json"))
            info = log_pyfunc(model_dir, example)
            run_json = staged / "mlflow/run.json"
            if run_json.exists():  # the original offline metrics, so the restored version can be judged the same
                metrics = json.loads(run_json.read_text()).get("metrics", {})
                mlflow.log_metrics({k: v for k, v in metrics.items() if k.startswith("test_")})
        tags = {f"{TAG}status": "restored", f"{TAG}dag_run_id": run_id, f"{TAG}restored_from": source_uri,
                f"{TAG}restored_manifest_sha256": digest, f"{TAG}code_version": code_version(),
                f"{TAG}data_batches": original["tags"].get(f"{TAG}data_batches", ""),
                f"{TAG}restored_version": version}
        mv = registry.register(name, info.model_uri, run.info.run_id, tags, model_id=info.model_id,
                               description=f"restored from {source_uri}")
    new = str(mv.version)
    ledger.record(spec.name, "restored", f"v{version} restored from {source_uri} as v{new}: "
                  f"{len(manifest['files'])} files verified (manifest sha256 {digest[:16]}...)",
                  version=new, run_id=run_id, key=f"{name}:restore:{run_id}",
                  details={"restored_from": source_uri, "original_version": version, "manifest_sha256": digest})
    return {"version": new, "restored_from": source_uri, "files": len(manifest["files"]), "already": False}


def retention_candidates(spec: ModelSpec, paths: StatePaths | None = None,
                         now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Versions the retention policy retires: no ``champion``/``challenger``/``previous`` alias, not retired,
    and no traffic for ``retirement.retain_days`` (since their weight last went to 0, or since registration)."""
    from lifecycle.serving.traffic import TrafficStore

    paths = paths or StatePaths.current()
    now = now or dt.datetime.now(dt.UTC)
    days = spec.retirement.retain_days
    if days <= 0:
        return []
    registry = Registry(paths)
    name = spec.model_name
    held = {str(v) for v in registry.aliases(name).values()}
    history = TrafficStore(paths.ledger_db).history(spec.name)
    current = TrafficStore(paths.ledger_db).weights(spec.name)
    out = []
    for mv in registry.versions(name):
        version = str(mv.version)
        if version in held or mv.tags.get(f"{TAG}status") == "retired" or current.get(version, 0) > 0:
            continue
        idle_since = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
        served = False
        for h in history:
            weight = int(h.get("weights", {}).get(version, 0))
            if weight > 0:
                served = True
            elif served:
                idle_since, served = dt.datetime.fromisoformat(str(h["at"]).replace("Z", "+00:00")), False
        if now - idle_since >= dt.timedelta(days=days):
            out.append({"version": version, "idle_since": idle_since.isoformat(),
                        "reason": f"retention: no traffic for {(now - idle_since).days} days (retain_days {days:g}), "
                                  "no champion/challenger/previous alias"})
    return out
