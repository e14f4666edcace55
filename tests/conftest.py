"""Test environment: a private Airflow home and lifecycle state per session, set before Airflow is imported."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION = Path(tempfile.mkdtemp(prefix="lifecycle-tests-"))
os.environ["LIFECYCLE_HOME"] = str(_SESSION / "state")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("LIFECYCLE_TRACKING_URI", None)

from lifecycle.ops.airflow_env import airflow_env, prepare_home  # noqa: E402
from lifecycle.paths import PROJECT_ROOT, StatePaths  # noqa: E402

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


# --------------------------------------------------------------------------------------------- live test harness
TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ROW = {"age": 41, "income": 52000.0, "debt_to_income": 0.31, "credit_utilization": 0.42, "num_open_accounts": 6,
       "months_employed": 30, "loan_amount": 12000.0, "home_ownership": "RENT", "loan_purpose": "car",
       "region": "north"}


def states(dag_run) -> dict[str, str]:
    """task id -> final state of every task instance of a DAG run (``dag.test()`` returns the run)."""
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


class Server:
    """The gateway app under uvicorn on a free loopback port, in a thread (``with Server(gateway) as s``)."""

    def __init__(self, gateway) -> None:
        import uvicorn

        from lifecycle.ops.services import free_port
        from lifecycle.serving.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(gateway), port=self.port, log_level="warning",
                                                    loop="asyncio", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "gateway did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class S3Server:
    """moto's S3 over HTTP; stop() and start() keep the objects (moto's backend lives in this process)."""

    def __init__(self) -> None:
        from lifecycle.ops.services import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                            aws_secret_access_key="test",
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2,
                                          read_timeout=5))


def archiving_to(spec, root: Any):
    """The spec with ``root`` (an archive store, or its URI) as its archive root: a restore refuses archives
    outside the spec's root."""
    uri = root if isinstance(root, str) else root.uri
    return spec.model_copy(update={"retirement": spec.retirement.model_copy(update={"archive_uri": uri})})


def write_spec(folder: Path, **sections: Any) -> Path:
    """A specs folder holding credit_default.yaml with the given top-level sections replaced."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data.update(sections)
    (folder / "credit_default.yaml").write_text(yaml.safe_dump(data))
    return folder


@contextlib.contextmanager
def live_lifecycle(root: Path, runs: dict[str, dict], *, spec_sections: dict[str, Any] | None = None,
                   evaluate: bool = False, serve: bool = True, loaded: dict[str, int] | None = None,
                   client_rate: float = 0.0, feedback_delay: tuple[float, float] = (0.2, 1.0),
                   sync_seconds: float = 0.5, env: dict[str, str] | None = None,
                   dags: bool = True, loader: Callable | None = None) -> Iterator[dict[str, Any]]:
    """A private lifecycle for one test module: a spec with ``spec_sections`` replaced, versions registered from
    ``runs`` (v1 champion), the gateway over HTTP (``serve``) with ``loaded`` weights, simulated clients at
    ``client_rate`` req/s, Airflow connections to it, and (``dags``) a DagBag of the project's DAGs. ``loader``:
    ``paths -> (spec, version) -> scorer``, the gateway's model loader (default: from the registry).

    Yields ``{"paths", "spec", "bag", "mp", "server", "clients", "root"}`` (None for what was not started).
    """
    from lifecycle.spec import get_spec

    specs = write_spec(root / "specs", **(spec_sections or {}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.setenv("LIFECYCLE_SPECS_DIR", str(specs))
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        paths = StatePaths.current()
        spec = get_spec("credit_default")
        register_versions(spec, paths, runs, evaluate=evaluate)
        live: dict[str, Any] = {"paths": paths, "spec": spec, "mp": mp, "server": None, "clients": None,
                                "root": root}
        with contextlib.ExitStack() as stack:
            if serve:
                from lifecycle.serving.app import Gateway

                server = stack.enter_context(Server(Gateway([spec], paths, token=TOKEN, sync_seconds=sync_seconds,
                                                            loader=loader(paths) if loader else None)))
                mp.setenv("AIRFLOW_CONN_LIFECYCLE_GATEWAY", json.dumps(
                    {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "password": TOKEN}))
                if loaded:
                    set_traffic(server.url, loaded)
                live["server"] = server
                if client_rate:
                    from lifecycle.ops.simulate import ClientPopulation

                    clients = ClientPopulation(spec, server.url, rate=client_rate,
                                               feedback_delay=feedback_delay).start()
                    stack.callback(clients.stop)
                    live["clients"] = clients
            live["bag"] = None
            if dags:
                from airflow.dag_processing.dagbag import DagBag

                live["bag"] = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
                assert not live["bag"].import_errors
            yield live


def set_traffic(url: str, weights: dict[str, int], model: str = "credit_default") -> dict[str, Any]:
    """Load every named version into the gateway and set the weights (the test's own arrange step)."""
    import httpx

    with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as admin:
        for version in weights:
            resp = admin.post(f"/admin/models/{model}/versions/{version}/load")
            assert resp.status_code == 200, resp.text
        resp = admin.put(f"/admin/models/{model}/traffic", json={"weights": weights, "reason": "test: arrange"})
        assert resp.status_code == 200, resp.text
        return resp.json()


def traffic_of(url: str, model: str = "credit_default") -> dict[str, Any]:
    import httpx

    return httpx.get(f"{url}/admin/models/{model}/traffic", headers=ADMIN).json()


SUMMARY_CHECKER = PROJECT_ROOT.parent / "shared" / "tools" / "check_summary.py"


def check_summary(path: Path, *expect: str) -> None:
    """The shared interface checker (``../shared/tools/check_summary.py``, beside the repo in CI and in sessions)
    on a demo summary; skips, visibly, where the checker is absent rather than passing without checking."""
    if not SUMMARY_CHECKER.exists():
        pytest.skip(f"the shared summary checker is not at {SUMMARY_CHECKER}")
    args = ["--expect", *expect] if expect else []
    done = subprocess.run([sys.executable, str(SUMMARY_CHECKER), str(path), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
