"""Where state lives: one git-ignored folder, ``.lifecycle/`` in the project root (or ``$LIFECYCLE_HOME``).

Deleting that folder resets everything: Airflow's DB, the MLflow registry, the ledger, batches, reports, archives.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def state_root() -> Path:
    """The state folder: ``$LIFECYCLE_HOME`` if set, else ``<project>/.lifecycle``."""
    return Path(os.environ.get("LIFECYCLE_HOME") or PROJECT_ROOT / ".lifecycle").resolve()


def specs_dir() -> Path:
    """Folder of model specs: ``$LIFECYCLE_SPECS_DIR`` if set, else ``include/models``."""
    return Path(os.environ.get("LIFECYCLE_SPECS_DIR") or PROJECT_ROOT / "include" / "models").resolve()


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")

#: The shortest token accepted (a generated one, ``secrets.token_urlsafe(32)``, has 43 characters).
MIN_TOKEN_CHARS = 32


def check_token(token: str, source: str) -> str:
    """``token`` if it has at least :data:`MIN_TOKEN_CHARS` characters, else :class:`ValueError`.

    ``source`` says where the token came from (a variable, a file, a connection); the message names it and never
    the token itself.
    """
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token from {source} is too short: at least {MIN_TOKEN_CHARS} characters are needed "
                         "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


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

    def checkpoint_dir(self, model: str, run_id: str) -> Path:
        """``checkpoints/<model>/<run_id>``: one training run's own folder (an MLflow run id), so two runs never
        share, overwrite or resume from each other's checkpoints."""
        for part in (model, run_id):
            if not _SAFE_NAME.fullmatch(part) or part.strip(".") == "":
                raise ValueError(f"not a safe folder name for checkpoints: {part!r}")
        return self.checkpoints / model / run_id

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

    @property
    def secrets_dir(self) -> Path:
        """``secrets/``: mode 0700, its files 0600 (see :meth:`secret`)."""
        return self.root / "secrets"

    def secret(self, name: str) -> str:
        """A random secret kept in ``secrets/<name>`` (created once, mode 0600 in a 0700 folder, never in the repo).

        Created with :func:`lifecycle.fileio.atomic_write` (mode 0600 from the start, ``replace=False``): the file
        is never seen empty or half written, and of processes starting at once exactly one creates it and all
        read that one. An empty file (left by a crash of an older, non-atomic version) is replaced. A folder or
        file left looser by an older version (or by hand) is tightened to 0700 / 0600 on the way.
        """
        import contextlib
        import secrets

        from lifecycle.fileio import atomic_write

        folder = self.secrets_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_mode & 0o777 != 0o700:  # the umask, or a folder made by an older version
            folder.chmod(0o700)
        path = folder / name
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
        value = path.read_text().strip() if path.exists() else ""
        if not value:
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                atomic_write(path, secrets.token_urlsafe(32), mode=0o600, replace=path.exists())
            value = path.read_text().strip()
        return value

    def gateway_token(self) -> str:
        """The serving gateway's admin token: ``$LIFECYCLE_GATEWAY_TOKEN``, else a random one in ``secrets/``.

        Raises :class:`ValueError` (naming where it came from, never the value) if it is shorter than
        :data:`MIN_TOKEN_CHARS`.
        """
        if os.environ.get("LIFECYCLE_GATEWAY_TOKEN"):
            return check_token(os.environ["LIFECYCLE_GATEWAY_TOKEN"], "$LIFECYCLE_GATEWAY_TOKEN")
        return check_token(self.secret("gateway_token"), f"{self.secrets_dir / 'gateway_token'}")

    def feedback_token(self) -> str:
        """The credential for posting labels to the gateway (``POST .../feedback``), separate from the admin token:
        ``$LIFECYCLE_FEEDBACK_TOKEN``, else a random one in ``secrets/`` (so the gateway and clients on this state
        folder share it with no configuration). Raises :class:`ValueError`, as :meth:`gateway_token`, if short.
        """
        if os.environ.get("LIFECYCLE_FEEDBACK_TOKEN"):
            return check_token(os.environ["LIFECYCLE_FEEDBACK_TOKEN"], "$LIFECYCLE_FEEDBACK_TOKEN")
        return check_token(self.secret("feedback_token"), f"{self.secrets_dir / 'feedback_token'}")

    def landing(self, model: str) -> Path:
        return self.root / "data" / model / "landing"

    def validated(self, model: str) -> Path:
        return self.root / "data" / model / "validated"

    def quarantine(self, model: str) -> Path:
        return self.root / "data" / model / "quarantine"
