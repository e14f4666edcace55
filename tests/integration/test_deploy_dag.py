"""The deploy and rollback DAGs with `dag.test()` against a running gateway with live simulated traffic."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from lifecycle.ledger import Ledger
from lifecycle.ops.simulate import ClientPopulation
from lifecycle.paths import PROJECT_ROOT
from lifecycle.registry.store import CHAMPION, PREVIOUS, Registry
from lifecycle.serving.app import Gateway
from lifecycle.spec import get_spec
from lifecycle.training import flow as tf
from tests.conftest import DAYS, gate_days
from tests.integration.test_gateway import ADMIN, TOKEN, Server

pytestmark = pytest.mark.integration
FAST_CANARY = {"steps": [20, 100], "min_requests": 40, "min_seconds": 1, "max_seconds": 90, "poll_seconds": 0.5,
               "slo": {"min_feedback": 60, "alpha": 0.001, "max_p99_ms": 250}}  # v3 is far worse; v2 must not flake


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def live(tmp_path_factory, airflow_db):
    """Registry with v1 (champion), v2 (good), v3 (under-trained); a gateway; 200 req/s of clients."""
    root = tmp_path_factory.mktemp("deploy")
    specs = root / "specs"
    specs.mkdir()
    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data["canary"] = FAST_CANARY
    (specs / "credit_default.yaml").write_text(yaml.safe_dump(data))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.setenv("LIFECYCLE_SPECS_DIR", str(specs))
        from lifecycle.paths import StatePaths

        paths = StatePaths.current()
        spec = get_spec("credit_default")
        gate_days(spec, paths)
        registry = Registry(paths)
        for run, kwargs in (("v1", {"epochs": 8}), ("v2", {"epochs": 8, "overrides": {"seed": 7}}),
                            ("v3", {"epochs": 1, "overrides": {"learning_rate": 0.00005}})):
            trained = tf.train_candidate(spec, DAYS[3], run, paths=paths, **kwargs)
            registry.register(spec.model_name, trained["model_uri"], trained["run_id"],
                              {"lifecycle.dag_run_id": run, "lifecycle.status": "challenger"},
                              model_id=trained["model_id"])
        registry.set_alias(spec.model_name, CHAMPION, "1")
        with Server(Gateway([spec], paths, token=TOKEN, sync_seconds=0.5)) as server:
            mp.setenv("AIRFLOW_CONN_LIFECYCLE_GATEWAY", json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "password": TOKEN}))
            clients = ClientPopulation(spec, server.url, rate=200, feedback_delay=(0.2, 1.0)).start()
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
            assert not bag.import_errors
            yield {"paths": paths, "server": server, "bag": bag, "clients": clients, "spec": spec}
            clients.stop()


def weights(live) -> dict[str, int]:
    import httpx

    return httpx.get(f"{live['server'].url}/admin/models/credit_default/traffic", headers=ADMIN).json()["weights"]


def test_good_challenger_is_canaried_and_promoted(live):
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 2})
    assert str(run.state) == "success", states(run)
    s = states(run)
    assert s["step_1.judge"] == s["step_2.judge"] == s["promote"] == "success"
    assert s["step_1.rollback"] == s["step_2.rollback"] == "skipped"
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "2"
    assert str(registry.by_alias("credit_default", PREVIOUS).version) == "1"
    assert weights(live) == {"1": 0, "2": 100}
    events = Ledger(live["paths"].ledger_db).events("credit_default")
    steps = [e for e in events if e.event == "canary_step" and e.version == "2"]
    assert [e.details["weights"] for e in steps] == [{"1": 80, "2": 20}, {"2": 100, "1": 0}]
    assert events[-1].event == "promoted" and events[-1].version == "2"


def test_bad_challenger_is_rolled_back_by_the_live_feedback_checks(live):
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 3})
    s = states(run)
    assert s["step_1.rollback"] == "success" and s["promote"] == "skipped" and s["step_2.shift"] == "skipped"
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "2"
    v3 = registry.version("credit_default", 3)
    assert v3.tags["lifecycle.status"] == "rolled_back"
    assert re.search(r"canary step 1 \(20%\): v3 breached (accuracy|brier)", v3.tags["lifecycle.rollback_reason"])
    assert weights(live) == {"1": 0, "2": 100, "3": 0}
    rolled = Ledger(live["paths"].ledger_db).last("credit_default", "rolled_back")
    assert rolled.version == "3" and "one-sided p=" in rolled.reason


def test_rejected_version_cannot_be_deployed(live):
    Registry(live["paths"]).set_tags("credit_default", 3, {"lifecycle.status": "rejected"})
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 3})
    assert states(run)["prepare"] == "failed"
    Registry(live["paths"]).set_tags("credit_default", 3, {"lifecycle.status": "rolled_back"})


def test_manual_rollback_restores_previous(live):
    run = live["bag"].get_dag("credit_default__rollback").test(run_conf={"reason": "test: bad news from risk"})
    assert str(run.state) == "success", states(run)
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "1"
    assert registry.by_alias("credit_default", PREVIOUS) is None
    assert registry.version("credit_default", 2).tags["lifecycle.status"] == "rolled_back"
    assert weights(live)["1"] == 100


def test_clients_never_saw_an_error(live):
    assert live["clients"].failed == 0 and live["clients"].ok > 500
