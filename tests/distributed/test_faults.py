"""Faults on the distributed topology, each while a real DAG run is in flight on CeleryExecutor:

* a Celery worker killed (SIGKILL, the whole process tree) in the middle of training: the scheduler notices the
  missing heartbeats, the task is retried on the replacement worker and resumes from its last checkpoint;
* PostgreSQL restarted mid-run: tasks retry and the run completes;
* the MLflow server down while the candidate is registered (stopped 15 s, then ~30 s to answer again): the call
  retries, and the registry ends with exactly one version for the DAG run.
"""
from __future__ import annotations

import datetime as dt
import signal
import time

import pytest

from lifecycle.paths import StatePaths
from tests.conftest import gate_days

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(2400)]
DAYS = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(4)]
#: A training run long enough to be interrupted: small batches, no early stop.
SLOW = {"batch_size": 16, "patience": 1000}
#: How long the MLflow server stays stopped; it then takes ~30 s more to answer: register's client retries (after
#: 0, 4, 12, 28, 60 s) meet the outage, and the one at 60 s finds it back (with 30 s stopped it missed it: +64 s).
DOWN_SECONDS = 15


@pytest.fixture(scope="module")
def cluster(dist_cluster):
    """The distributed cluster (the demo's, reused, when the session runs both: tests/distributed/conftest.py),
    with the fault tests' days gated and the train DAG unpaused."""
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.spec import get_spec

    paths, stack = dist_cluster
    spec = get_spec("credit_default")
    gate_days(spec, paths, days=DAYS)
    client = AirflowClient(stack.airflow_url)
    client.wait_for_dags([f"{spec.name}__train"])
    client.unpause(f"{spec.name}__train")
    return {"paths": paths, "stack": stack, "client": client, "spec": spec}


def _train(cluster, run_id: str, **conf) -> None:
    cluster["client"].trigger(f"{cluster['spec'].name}__train", run_id=run_id, conf={
        "as_of": DAYS[-1].isoformat(), "force": True, "reason": f"fault test {run_id}", **conf})


def _wait_task(cluster, run_id: str, task: str, states=("running",), timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = cluster["client"].task_instance(f"{cluster['spec'].name}__train", run_id, task)
        if ti["state"] in states:
            return ti
        time.sleep(1)
    raise AssertionError(f"{task} of {run_id} never reached {states}; last {ti['state']}")


def _checkpoints(paths: StatePaths) -> list:
    return sorted(paths.checkpoints.rglob("*.pt")) if paths.checkpoints.exists() else []


def _kill_tree(name: str, paths: StatePaths) -> int:
    """SIGKILL a service and every process it started (no warm shutdown: the machine died)."""
    import psutil

    pid = int((paths.run_dir / f"{name}.pid").read_text().split()[0])
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


def _versions_of(cluster, run_id: str) -> list[str]:
    from lifecycle.registry.store import Registry

    return [v.version for v in Registry(cluster["paths"]).versions(cluster["spec"].model_name)
            if v.tags.get("lifecycle.dag_run_id") == run_id]


def test_a_worker_killed_mid_training_is_replaced_and_training_resumes(cluster):
    from lifecycle.ledger import Ledger
    from lifecycle.ops import topology

    paths, run_id = cluster["paths"], "fault_worker_killed"
    earlier = set(_checkpoints(paths))  # the demo's trainings left theirs, on a reused cluster

    def new_checkpoints() -> int:
        return len(set(_checkpoints(paths)) - earlier)

    _train(cluster, run_id, epochs=6, overrides=SLOW)
    first = _wait_task(cluster, run_id, "train")
    assert first["queue"] == "gpu" and first["try_number"] == 1
    deadline = time.monotonic() + 300
    while new_checkpoints() < 2 and time.monotonic() < deadline:  # at least two epochs of this run done
        time.sleep(0.5)
    assert new_checkpoints() >= 2, "training never checkpointed"
    killed = _kill_tree("celery-worker-gpu", paths)
    print(f"killed the gpu worker ({killed} processes) after {new_checkpoints()} checkpoints of this run")
    topology.start_worker("celery-worker-gpu-2", cluster["stack"].env, paths, queues="gpu", concurrency=1)
    result = cluster["client"].wait(f"{cluster['spec'].name}__train", run_id, timeout=900)
    assert result.state == "success", result.tasks
    train = cluster["client"].task_instance(f"{cluster['spec'].name}__train", run_id, "train")
    assert train["try_number"] >= 2 and train["queue"] == "gpu"
    [trained] = [e for e in Ledger(paths.ledger_db).events(cluster["spec"].name, "trained") if e.run_id == run_id]
    assert trained.details.get("resumed_from_epoch"), trained.details
    assert len(_versions_of(cluster, run_id)) == 1


def test_postgres_restarted_mid_run_the_run_still_completes(cluster):
    from lifecycle.ops import topology

    paths, run_id = cluster["paths"], "fault_postgres_restart"
    _train(cluster, run_id, epochs=6, overrides=SLOW)
    _wait_task(cluster, run_id, "train")
    restarts_before = _supervisor_restarts(paths)
    fault_at = time.time()
    topology.restart_postgres(paths, down_seconds=5)
    result = cluster["client"].wait(f"{cluster['spec'].name}__train", run_id, timeout=900)
    assert result.state == "success", result.tasks
    assert len(_versions_of(cluster, run_id)) == 1
    # The fault hit: the server that answers now started after the fault, and Airflow components lost it
    # (they exit without their DB, and their supervisor brought them back).
    assert _postmaster_started(paths) > fault_at
    assert _supervisor_restarts(paths) > restarts_before


def _postmaster_started(paths: StatePaths) -> float:
    import psycopg2

    from lifecycle.ops import topology

    with psycopg2.connect(topology.Topology.for_state(paths).pg_url("lifecycle")) as conn, conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM pg_postmaster_start_time())")
        return float(cur.fetchone()[0])


def _supervisor_restarts(paths: StatePaths) -> int:
    """How many times a supervisor restarted a service that exited, from the services' logs."""
    return sum(log.read_text(errors="replace").count("; restarting in ") for log in paths.run_dir.glob("*.log"))


def test_mlflow_server_down_during_registration_retries_without_duplicates(cluster):
    from lifecycle.ops import services, topology

    paths, run_id = cluster["paths"], "fault_mlflow_down"
    _train(cluster, run_id, epochs=2)
    _wait_task(cluster, run_id, "gate", states=("success",))
    services.stop("mlflow-server", paths)
    stopped, stopped_at = time.monotonic(), time.time()
    try:
        ti = _wait_task(cluster, run_id, "register", states=("running", "up_for_retry", "failed"), timeout=120)
        print(f"register is {ti['state']} with the MLflow server down")
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - stopped)))
    finally:
        topology.start_mlflow(topology.Topology.for_state(paths), paths)
    result = cluster["client"].wait(f"{cluster['spec'].name}__train", run_id, timeout=900)
    assert result.state == "success", result.tasks
    [version] = _versions_of(cluster, run_id)
    # The fault hit the registration: register was in flight during the outage, and the version exists only
    # from after the server came back.
    from lifecycle.registry.store import Registry

    created = Registry(paths).version(cluster["spec"].model_name, version).creation_timestamp / 1000
    assert created >= stopped_at + DOWN_SECONDS - 1, (created, stopped_at)
