"""The MLflow 3 model registry, as the lifecycle uses it: versions with lifecycle tags, and aliases
(``champion``, ``challenger``, ``previous``) instead of the deprecated stages."""
from __future__ import annotations

import contextlib
import functools
import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle import __version__
from lifecycle.errors import NotFoundError, UnavailableError
from lifecycle.paths import PROJECT_ROOT, StatePaths

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
TAG = "lifecycle."


class RegistryUnavailableError(UnavailableError, RuntimeError):
    """The MLflow tracking/registry server cannot be reached; nothing was registered (HTTP 503)."""


class RegistryNotFoundError(NotFoundError, LookupError):
    """MLflow's ``RESOURCE_DOES_NOT_EXIST``: no such registered model, version or alias (HTTP 404).

    ``error_code`` keeps MLflow's code, for callers that read it."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


@functools.cache
def code_version() -> str:
    """The git commit the code runs from (``-dirty`` when the tree has changes), else the package version."""
    try:
        sha = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return f"lifecycle-{__version__}"


def tracking_uri(paths: StatePaths | None = None) -> str:
    paths = paths or StatePaths.current()
    if paths.tracking_uri.startswith("sqlite:"):
        paths.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    return paths.tracking_uri


def configure_mlflow(paths: StatePaths | None = None) -> str:
    """Point mlflow at the lifecycle's tracking URI; return it."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, paths: StatePaths | None = None) -> str:
    """The experiment's id, creating it with artifacts under the state folder when it is new."""
    import mlflow

    paths = paths or StatePaths.current()
    client = mlflow.MlflowClient()
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as err:
        raise RegistryUnavailableError(f"MLflow at {mlflow.get_tracking_uri()} unreachable while looking up "
                                       f"experiment {name!r}: {str(err).splitlines()[0][:300]}") from err
    if exp is not None:
        return exp.experiment_id
    location = None
    if paths.tracking_uri.startswith("sqlite:"):
        paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        location = (paths.mlflow_artifacts / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another task
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class Registry:
    """Registry operations for one tracking URI; errors reaching the store raise RegistryUnavailableError, and
    what does not exist raises RegistryNotFoundError."""

    def __init__(self, paths: StatePaths | None = None) -> None:
        import mlflow

        self.uri = configure_mlflow(paths)
        self.client = mlflow.MlflowClient(self.uri, self.uri)

    def _call(self, what: str, fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as err:
            if getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryNotFoundError(str(err)) from err
            if any(s in str(err) for s in ("Connection", "Max retries", "unable to open database", "refused")):
                raise RegistryUnavailableError(f"MLflow at {self.uri} unreachable while trying to {what}: "
                                               f"{str(err).splitlines()[0][:300]}") from err
            raise

    def ensure_model(self, name: str, description: str = "") -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._call("read the registered model", self.client.get_registered_model, name)
        except RegistryNotFoundError:
            try:
                self.client.create_registered_model(name, description=description)
            except MlflowException as again:  # raced with another writer
                if "already exists" not in str(again).lower():
                    raise

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._call(f"read alias {alias}", self.client.get_model_version_by_alias, name, alias)
        except RegistryNotFoundError:
            return None
        except MlflowException as err:
            if getattr(err, "error_code", "") == "INVALID_PARAMETER_VALUE":
                return None
            raise

    def version(self, name: str, version: str | int) -> ModelVersion:
        return self._call(f"read version {version}", self.client.get_model_version, name, str(version))

    def versions(self, name: str) -> list[ModelVersion]:
        found = self._call("list versions", self.client.search_model_versions, f"name = '{name}'")
        return sorted(found, key=lambda v: int(v.version))

    def versions_for_run(self, name: str, dag_run_id: str) -> list[ModelVersion]:
        """The versions tagged with a DAG run, oldest first (one, unless a retried request duplicated it)."""
        return [v for v in self.versions(name) if v.tags.get(f"{TAG}dag_run_id") == dag_run_id]

    def version_for_run(self, name: str, dag_run_id: str) -> ModelVersion | None:
        """The version a DAG run already registered (idempotent reruns), if any."""
        found = self.versions_for_run(name, dag_run_id)
        return found[0] if found else None

    def register(self, name: str, source: str, run_id: str, tags: dict[str, str],
                 model_id: str | None = None, description: str = "") -> ModelVersion:
        """Create a version with all its tags in one call: no version ever exists without its lineage.

        Callers look up ``version_for_run`` first (a rerun reuses its version). Exactly once per
        ``lifecycle.dag_run_id`` tag even so: if a retried request created a second version (the server
        committed, the answer was lost, the HTTP client sent it again while the server came back), the later
        copies are deleted and the first is returned.
        """
        self.ensure_model(name)
        mv = self._call("register a version", self.client.create_model_version, name, source, run_id=run_id,
                        tags=tags, description=description, model_id=model_id)
        key = tags.get(f"{TAG}dag_run_id")
        if not key:
            return mv
        same = self.versions_for_run(name, key)
        for extra in same[1:]:
            log.warning("registry: %s v%s duplicates v%s of DAG run %s (a retried request); deleting it",
                        name, extra.version, same[0].version, key)
            self._call(f"delete duplicate version {extra.version}", self.client.delete_model_version, name,
                       extra.version)
        return same[0] if same else mv

    def set_tags(self, name: str, version: str | int, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._call(f"tag version {version}", self.client.set_model_version_tag, name, str(version), key,
                       str(value))

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self._call(f"set alias {alias}", self.client.set_registered_model_alias, name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        with contextlib.suppress(RegistryNotFoundError):
            self._call(f"delete alias {alias}", self.client.delete_registered_model_alias, name, alias)

    def aliases(self, name: str) -> dict[str, str]:
        model = self._call("read the registered model", self.client.get_registered_model, name)
        return dict(model.aliases)

    def download_model(self, name: str, version: str | int, dest: Path) -> Path:
        """Fetch a registered version's files; return the folder holding ``weights.pt``."""
        return self.download_uri(self.version(name, version).source, dest, f"{name} v{version}")

    def download_uri(self, uri: str, dest: Path, what: str = "model") -> Path:
        """Fetch a logged model (``models:/...`` or a run artifact URI); return the folder holding ``weights.pt``."""
        import mlflow

        local = Path(self._call(f"download {what}", mlflow.artifacts.download_artifacts,
                                artifact_uri=uri, dst_path=str(dest), tracking_uri=self.uri))
        hits = sorted(local.rglob("weights.pt"))
        if not hits:
            raise FileNotFoundError(f"{what}: no weights.pt under {uri}: not a lifecycle model")
        return hits[0].parent
