"""Where state lives: one git-ignored folder, ``.lifecycle/`` in the project root (or ``$LIFECYCLE_HOME``).

Deleting that folder resets everything: Airflow's DB, the MLflow registry, the ledger, batches, reports, archives.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def state_root() -> Path:
    """The state folder: ``$LIFECYCLE_HOME`` if set, else ``<project>/.lifecycle``."""
    return Path(os.environ.get("LIFECYCLE_HOME") or PROJECT_ROOT / ".lifecycle").resolve()


def specs_dir() -> Path:
    """Folder of model specs: ``$LIFECYCLE_SPECS_DIR`` if set, else ``include/models``."""
    return Path(os.environ.get("LIFECYCLE_SPECS_DIR") or PROJECT_ROOT / "include" / "models").resolve()


@dataclass(frozen=True)
class StatePaths:
    """Every location under the state root, derived in one place."""

    root: Path

    @classmethod
    def current(cls) -> StatePaths:
        return cls(state_root())

    @property
    def ledger_db(self) -> Path | str:
        """The lifecycle DB (ledger, traffic): ``$LIFECYCLE_DB_URL`` (PostgreSQL) or ``lifecycle.db`` here."""
        return os.environ.get("LIFECYCLE_DB_URL") or self.root / "lifecycle.db"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    @property
    def tracking_uri(self) -> str:
        """``$LIFECYCLE_TRACKING_URI`` (e.g. an MLflow server) or the embedded SQLite registry.

        Not ``MLFLOW_TRACKING_URI``: mlflow writes that variable itself on ``set_tracking_uri``, so it would
        pin a process to the first state folder it touched.
        """
        return os.environ.get("LIFECYCLE_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def run_dir(self) -> Path:
        """PID files and logs of services started by the project."""
        return self.root / "run"

    def secret(self, name: str) -> str:
        """A random secret kept in ``secrets/<name>`` (created once, mode 0600, never in the repo).

        Created with :func:`lifecycle.fileio.atomic_write` (mode 0600 from the start, ``replace=False``): the file
        is never seen empty or half written, and of processes starting at once exactly one creates it and all
        read that one. An empty file (left by a crash of an older, non-atomic version) is replaced.
        """
        import contextlib
        import secrets

        from lifecycle.fileio import atomic_write

        path = self.root / "secrets" / name
        value = path.read_text().strip() if path.exists() else ""
        if not value:
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                atomic_write(path, secrets.token_urlsafe(32), mode=0o600, replace=path.exists())
            value = path.read_text().strip()
        return value

    def landing(self, model: str) -> Path:
        return self.root / "data" / model / "landing"

    def validated(self, model: str) -> Path:
        return self.root / "data" / model / "validated"

    def quarantine(self, model: str) -> Path:
        return self.root / "data" / model / "quarantine"
