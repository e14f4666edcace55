"""Restoring an archived version: verify the archive, re-log the model and register it as a new version with
``lifecycle.restored_from``."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import TAG, Registry, code_version
from lifecycle.retirement.archive import Store, prefix_for, verify_archive

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec



def restore(spec: ModelSpec, store: Store, version: str | int, run_id: str, paths: StatePaths | None = None,
            ledger: Ledger | None = None) -> dict[str, Any]:
    """Verify an archive, then register its model again as a new version tagged ``lifecycle.restored_from``.

    A tampered archive raises :class:`ChecksumMismatchError` naming the file, before anything is registered.
    Idempotent per ``run_id``: a rerun finds the version it registered.
    """
    import pandas as pd

    from lifecycle.registry.store import configure_mlflow, ensure_experiment
    from lifecycle.training.packaging import log_pyfunc

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
