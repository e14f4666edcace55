"""The distributed suite's shared cluster: the demo's short scenario runs once on the distributed topology
(``dist_demo``), its services are kept, and the fault tests run on that same cluster afterwards when the session
selects both (``dist_cluster``): one cluster start instead of two. Run alone, a fault test starts a bare cluster
of its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lifecycle.ops.services import free_port
from lifecycle.paths import PROJECT_ROOT, StatePaths

LIFECYCLE = "tests/distributed/test_lifecycle_distributed.py"
FAULTS = "tests/distributed/test_faults.py"
PORTS = ("AIRFLOW_PORT", "LIFECYCLE_ALERTS_PORT", "LIFECYCLE_GATEWAY_PORT", "LIFECYCLE_PG_PORT", "LIFECYCLE_REDIS_PORT",
         "LIFECYCLE_S3_PORT", "LIFECYCLE_MLFLOW_PORT")


def pytest_collection_modifyitems(session, config, items):
    """The fault tests last: they restart PostgreSQL, kill a worker and add runs and versions to the cluster,
    which the lifecycle tests read as the demo left it."""
    faults = [item for item in items if item.nodeid.startswith(FAULTS)]
    if faults:
        items[:] = [item for item in items if not item.nodeid.startswith(FAULTS)] + faults


@dataclass
class DistDemo:
    state: Path
    done: subprocess.CompletedProcess
    topo: dict
    ports: dict[str, str]


@pytest.fixture(scope="session")
def dist_demo(tmp_path_factory):
    """The demo (short scenario) with KEEP=1 on free ports: its services stay up for the session (the backends
    are inspected, the fault tests reuse them) and are stopped at its end."""
    from lifecycle.ops import services
    from lifecycle.ops.topology import remove_cluster

    state = tmp_path_factory.mktemp("dist-demo") / "state"
    ports = {name: str(free_port()) for name in PORTS}
    env = {**os.environ, **ports, "LIFECYCLE_HOME": str(state), "LIFECYCLE_TOPOLOGY": "distributed", "KEEP": "1",
           "LIFECYCLE_DEMO_SCENARIO": "short", "LIFECYCLE_PRELOAD": "default"}
    for key in ("LIFECYCLE_DB_URL", "LIFECYCLE_TRACKING_URI"):
        env.pop(key, None)
    try:
        done = subprocess.run([sys.executable, "-m", "lifecycle.ops.demo"], env=env, capture_output=True, text=True,
                              timeout=1800, cwd=PROJECT_ROOT)
        print(done.stdout[-3000:])
        topo = json.loads((state / "topology.json").read_text())
        assert "password" not in topo, "topology.json is readable by others: no password in it"
        topo["password"] = (state / "secrets" / "postgres_password").read_text().strip()
        yield DistDemo(state, done, topo, ports)
    finally:
        services.stop_all(StatePaths(state))
        remove_cluster(StatePaths(state))


@pytest.fixture(scope="module")
def dist_cluster(request, tmp_path_factory):
    """-> (state paths, the running stack): the demo's cluster when this session runs the lifecycle tests too
    (after them: see ``pytest_collection_modifyitems``), with its DAGs other than train paused; else a bare
    cluster of its own (no gateway), stopped afterwards. Either way this process's environment points at it
    while the module runs."""
    from lifecycle.ops import services
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.ops.stack import start_stack
    from lifecycle.ops.topology import remove_cluster

    reuse = any(item.nodeid.startswith(LIFECYCLE) for item in request.session.items)
    saved = {k: os.environ.get(k) for k in ("LIFECYCLE_HOME", "LIFECYCLE_DB_URL", "LIFECYCLE_TRACKING_URI", *PORTS)}
    try:
        if reuse:
            shared: DistDemo = request.getfixturevalue("dist_demo")
            assert shared.done.returncode == 0, "the distributed demo failed: its cluster cannot host the faults"
            os.environ.update(shared.ports, LIFECYCLE_HOME=str(shared.state))
            paths = StatePaths.current()
            stack = start_stack(paths, time_schedules=False, preload="default")  # running: returns its handle
            client = AirflowClient(stack.airflow_url)
            for stage in ("data_gate", "deploy", "monitor", "retire", "restore"):  # a fault run's challenger
                client.pause(f"credit_default__{stage}")                          # starts no canary
            yield paths, stack
        else:
            os.environ["LIFECYCLE_HOME"] = str(tmp_path_factory.mktemp("faults") / "state")
            os.environ.update({name: str(free_port()) for name in PORTS})
            paths = StatePaths.current()
            try:
                yield paths, start_stack(paths, time_schedules=False, with_gateway=False, preload="default")
            finally:
                services.stop_all(paths)
                remove_cluster(paths)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
