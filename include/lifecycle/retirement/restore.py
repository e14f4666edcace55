"""Restoring an archived version: check the archive is the retired version's own, verify it, re-log the model and
register it as a new version with ``lifecycle.restored_from``.

An archive is trusted only as far as the registry vouches for it. Before anything is registered:

- the archive lies under the spec's archive root (:func:`~lifecycle.retirement.retire.archive_uri`): another
  bucket, or a folder outside the root, is refused;
- the original version is in the registry, retired, with the manifest sha256 its retirement recorded
  (``lifecycle.archive_sha256``), and the manifest read now has exactly that sha256;
- the manifest names that model and version, and the version's source run (``source_run_id``, and the run id in
  the archived ``mlflow/version.json``);
- every file matches the manifest (:func:`~lifecycle.retirement.archive.verify_archive`).

Any mismatch raises :class:`RestoreRefusedError` (or :class:`ChecksumMismatchError` for a file) naming it, and
nothing changes: no MLflow run, no version, no ledger row.

Resumable per DAG run id: the steps are verify -> an MLflow run holding the re-logged model (tagged with the DAG
run id and, last, the logged model's URI) -> the registered version -> the ``restored`` ledger row (keyed by the
DAG run id). A retry reuses a finished MLflow run of an earlier attempt, finds a version already registered, and
records the ledger row if a crash came before it.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ConflictError
from lifecycle.fileio import crash_point
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import TAG, Registry, RegistryNotFoundError, code_version
from lifecycle.retirement.archive import Store, prefix_for, verify_archive
from lifecycle.retirement.retire import archive_uri

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec

#: Tags on the restore's MLflow run: the logged model, set last, so a run carrying them is complete.
MODEL_URI_TAG, MODEL_ID_TAG = f"{TAG}restore_model_uri", f"{TAG}restore_model_id"


class RestoreRefusedError(ConflictError, ValueError):
    """The archive is not (provably) the retired version's own, or lies outside the allowed archive root; nothing
    was restored, and retrying will not help (HTTP 409)."""


def _location(uri: str) -> tuple[str, tuple[str, ...]]:
    """(``s3://bucket`` or ``file``, path parts) of an archive URI; ``..`` segments are resolved (a local path)
    or refused (S3, where they would be literal key characters a reader might resolve)."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        parts = tuple(p for p in prefix.split("/") if p)
        if any(p in (".", "..") for p in parts):
            raise RestoreRefusedError(f"archive URI {uri!r} has a '.' or '..' segment")
        return f"s3://{bucket}", parts
    if "://" in uri and not uri.startswith("file://"):
        raise RestoreRefusedError(f"archive URI {uri!r}: not s3:// or a local folder")
    return "file", Path(uri.removeprefix("file://")).resolve().parts


def check_location(uri: str, root: str) -> None:
    """Refuse (:class:`RestoreRefusedError`) an archive ``uri`` that is not ``root`` or a folder under it."""
    (where, parts), (root_where, root_parts) = _location(uri), _location(root)
    if where != root_where or parts[:len(root_parts)] != root_parts:
        raise RestoreRefusedError(f"archive {uri} is outside the allowed archive root {root} "
                                  "(retirement.archive_uri): refusing to restore from it")


def check_manifest(spec: ModelSpec, version: str, manifest: dict[str, Any], digest: str, mv: Any,
                   archived_version: dict[str, Any] | None) -> None:
    """Refuse a manifest that is not the one recorded when ``mv`` (the original version) was retired, or that
    names another model, version or source run; the message lists every mismatch."""
    problems = []
    recorded = mv.tags.get(f"{TAG}archive_sha256")
    if digest != recorded:
        problems.append(f"manifest sha256 {digest[:16]}... is not the {recorded[:16]}... recorded when "
                        f"v{version} was retired")
    if str(manifest.get("model")) != spec.name:
        problems.append(f"manifest model {manifest.get('model')!r} != {spec.name!r}")
    if str(manifest.get("version")) != version:
        problems.append(f"manifest version {manifest.get('version')!r} != {version!r}")
    if str(manifest.get("registered_model", spec.model_name)) != spec.model_name:
        problems.append(f"manifest registered model {manifest.get('registered_model')!r} != {spec.model_name!r}")
    runs = {"manifest source_run_id": manifest.get("source_run_id"),
            "archived mlflow/version.json run_id": (archived_version or {}).get("run_id")}
    if not any(runs.values()):
        problems.append("the archive names no source run")
    problems += [f"{what} {run!r} != the registry's {mv.run_id!r}" for what, run in runs.items()
                 if run and run != mv.run_id]
    if problems:
        raise RestoreRefusedError(f"{spec.model_name} v{version}: the archive is not the retired version's own: "
                                  + "; ".join(problems) + "; nothing restored")


def _retired_version(spec: ModelSpec, registry: Registry, version: str) -> Any:
    try:
        mv = registry.version(spec.model_name, version)
    except RegistryNotFoundError as err:
        raise RestoreRefusedError(f"{spec.model_name} v{version} is not in the registry, so nothing vouches for "
                                  f"its archive: {err}") from err
    if mv.tags.get(f"{TAG}status") != "retired" or not mv.tags.get(f"{TAG}archive_sha256"):
        raise RestoreRefusedError(f"{spec.model_name} v{version} was never retired (status "
                                  f"{mv.tags.get(f'{TAG}status', '?')!r}, no lifecycle.archive_sha256): no "
                                  "recorded manifest to check the archive against")
    return mv


def _record(spec: ModelSpec, ledger: Ledger, version: str, new: str, source_uri: str, files: int, digest: str,
            run_id: str) -> None:
    ledger.record(spec.name, "restored", f"v{version} restored from {source_uri} as v{new}: "
                  f"{files} files verified (manifest sha256 {digest[:16]}...)",
                  version=new, run_id=run_id, key=f"{spec.model_name}:restore:{run_id}",
                  details={"restored_from": source_uri, "original_version": version, "manifest_sha256": digest})


def _earlier_run(exp_id: str, run_id: str, source_uri: str) -> Any:
    """A finished MLflow run of an earlier attempt of this restore, holding its logged model, if any."""
    import mlflow

    if "'" in run_id:  # not expressible in a search filter; such a run id simply never resumes
        return None
    runs = mlflow.MlflowClient().search_runs(
        [exp_id], filter_string=f"tags.`{TAG}dag_run_id` = '{run_id}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"])
    return next((r for r in runs if r.data.tags.get(f"{TAG}restored_from") == source_uri
                 and r.data.tags.get(MODEL_URI_TAG)), None)


def restore(spec: ModelSpec, store: Store, version: str | int, run_id: str, paths: StatePaths | None = None,
            ledger: Ledger | None = None) -> dict[str, Any]:
    """Check and verify an archive, then register its model again as a new version tagged
    ``lifecycle.restored_from``.

    A forged or foreign archive raises :class:`RestoreRefusedError`, a tampered file
    :class:`~lifecycle.retirement.archive.ChecksumMismatchError` naming it, before anything is registered.
    Idempotent per ``run_id``: a rerun finds the version it registered (and completes its ledger row).
    """
    import pandas as pd

    from lifecycle.registry.store import configure_mlflow, ensure_experiment
    from lifecycle.training.packaging import log_pyfunc

    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    name, version = spec.model_name, str(version)
    source_uri = f"{store.uri}/{prefix_for(spec.name, version)}".rstrip("/")
    check_location(source_uri, archive_uri(spec, paths))
    registry = Registry(paths)
    original = _retired_version(spec, registry, version)
    existing = registry.version_for_run(name, run_id)
    if existing is not None:  # a rerun, or a retry after a crash between registering and the ledger row
        tags = existing.tags
        files = int(tags.get(f"{TAG}restored_files", "0"))
        _record(spec, ledger, version, str(existing.version), tags.get(f"{TAG}restored_from", source_uri), files,
                tags.get(f"{TAG}restored_manifest_sha256", ""), run_id)
        return {"version": str(existing.version), "restored_from": tags.get(f"{TAG}restored_from", source_uri),
                "files": files, "already": True}
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        manifest, digest = verify_archive(store, spec.name, version, into=staged)
        version_json = staged / "mlflow/version.json"
        archived_version = json.loads(version_json.read_text()) if version_json.exists() else None
        check_manifest(spec, version, manifest, digest, original, archived_version)
        weights = sorted(staged.joinpath("model").rglob("weights.pt"))
        if not weights:
            raise RestoreRefusedError(f"{source_uri}: the archive holds no model (no weights.pt under model/)")
        crash_point("restore.verified")
        import mlflow

        configure_mlflow(paths)
        exp_id = ensure_experiment(name, paths)
        run = _earlier_run(exp_id, run_id, source_uri)
        if run is None:
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
            with mlflow.start_run(experiment_id=exp_id, run_name=f"restore v{version} ({run_id})") as active:
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
                mlflow.set_tags({MODEL_URI_TAG: info.model_uri, MODEL_ID_TAG: info.model_id or ""})
            run = mlflow.MlflowClient().get_run(active.info.run_id)
        crash_point("restore.model_logged")
        tags = {f"{TAG}status": "restored", f"{TAG}dag_run_id": run_id, f"{TAG}restored_from": source_uri,
                f"{TAG}restored_manifest_sha256": digest, f"{TAG}code_version": code_version(),
                f"{TAG}data_batches": (archived_version or {}).get("tags", {}).get(f"{TAG}data_batches", ""),
                f"{TAG}restored_version": version, f"{TAG}restored_files": str(len(manifest["files"]))}
        mv = registry.register(name, run.data.tags[MODEL_URI_TAG], run.info.run_id, tags,
                               model_id=run.data.tags.get(MODEL_ID_TAG) or None,
                               description=f"restored from {source_uri}")
    new = str(mv.version)
    crash_point("restore.registered")
    _record(spec, ledger, version, new, source_uri, len(manifest["files"]), digest, run_id)
    return {"version": new, "restored_from": source_uri, "files": len(manifest["files"]), "already": False}
