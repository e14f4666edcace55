"""Test environment: a private Airflow home and lifecycle state per session, set before Airflow is imported."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION = Path(tempfile.mkdtemp(prefix="lifecycle-tests-"))
os.environ["LIFECYCLE_HOME"] = str(_SESSION / "state")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("LIFECYCLE_TRACKING_URI", None)

from lifecycle.ops.airflow_env import airflow_env, prepare_home  # noqa: E402
from lifecycle.paths import StatePaths  # noqa: E402

_env = airflow_env(StatePaths.current())
_env["LIFECYCLE_PRELOAD"] = "none"
_env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.update(_env)

# tests/distributed needs the distributed topology's servers: `make test-distributed` runs it.
collect_ignore = [] if os.environ.get("LIFECYCLE_TOPOLOGY") == "distributed" else ["distributed"]

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(6)]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StatePaths:
    """A fresh lifecycle state folder (ledger, registry, batches) for one test."""
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "state"))
    return StatePaths.current()


@pytest.fixture(scope="session")
def spec():
    from lifecycle.spec import get_spec

    return get_spec("credit_default")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's Airflow metadata DB, migrated once."""
    home = prepare_home(StatePaths.current())
    if not (home / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                       env=os.environ.copy())
    return home


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from lifecycle.paths import PROJECT_ROOT

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def land_days(spec, paths: StatePaths, scenarios: dict[int, str] | None = None, days=DAYS) -> list[dt.date]:
    """Land one batch per day (index -> scenario, default stable)."""
    from lifecycle.data.synthetic import Scenario, land_batch

    for i, day in enumerate(days):
        land_batch(spec, day, Scenario.parse((scenarios or {}).get(i, "stable")), paths)
    return list(days)


def gate_days(spec, paths: StatePaths, days=DAYS[:4]) -> list[dt.date]:
    """Land a stable batch per day and pass it through the data gate: a window ready to train on."""
    from lifecycle.data.validation import gate_batch

    for day in land_days(spec, paths, days=days):
        gate_batch(spec, day, paths=paths)
    return list(days)


def register_versions(spec, paths: StatePaths, runs: dict[str, dict], *, champion: str | None = "1",
                      evaluate: bool = False):
    """Four validated days, then one registered version per ``runs`` entry (run id -> train_candidate kwargs),
    in order (v1, v2, ...); ``champion`` gets the alias; ``evaluate`` logs the offline test metrics too."""
    from lifecycle.registry.store import CHAMPION, Registry
    from lifecycle.training import flow as tf

    gate_days(spec, paths)
    registry = Registry(paths)
    for run, kwargs in runs.items():
        trained = tf.train_candidate(spec, DAYS[3], run, paths=paths, **kwargs)
        if evaluate:
            tf.evaluate_candidate(spec, trained, paths)
        registry.register(spec.model_name, trained["model_uri"], trained["run_id"],
                          {"lifecycle.dag_run_id": run, "lifecycle.status": "challenger",
                           "lifecycle.data_batches": ",".join(trained["window"]["days"])},
                          model_id=trained["model_id"])
    if champion:
        registry.set_alias(spec.model_name, CHAMPION, champion)
    return registry
