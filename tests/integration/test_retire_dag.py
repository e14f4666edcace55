"""The retire and restore DAGs with `dag.test()`: a live gateway with clients, the archive on moto's S3 server
over HTTP through Airflow's amazon provider (an `aws` connection with an endpoint URL)."""
from __future__ import annotations

import json

import httpx
import pytest
import yaml

from lifecycle.ledger import Ledger
from lifecycle.ops.simulate import ClientPopulation
from lifecycle.paths import PROJECT_ROOT
from lifecycle.registry.store import Registry
from lifecycle.serving.app import Gateway
from lifecycle.spec import get_spec
from tests.conftest import register_versions
from tests.integration.test_archive import BUCKET, S3Server
from tests.integration.test_gateway import ADMIN, TOKEN, Server

pytestmark = pytest.mark.integration


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def live(tmp_path_factory, airflow_db):
    root = tmp_path_factory.mktemp("retire")
    specs = root / "specs"
    specs.mkdir()
    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data["retirement"] = {"archive_uri": f"s3://{BUCKET}/models", "quiet_seconds": 2, "max_drain_seconds": 60}
    (specs / "credit_default.yaml").write_text(yaml.safe_dump(data))
    s3 = S3Server()
    s3.start()
    s3.client().create_bucket(Bucket=BUCKET)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.setenv("LIFECYCLE_SPECS_DIR", str(specs))
        mp.setenv("AIRFLOW_CONN_LIFECYCLE_ARCHIVE", json.dumps(
            {"conn_type": "aws", "login": "test", "password": "test",
             "extra": {"endpoint_url": s3.url, "region_name": "us-east-1"}}))
        from lifecycle.paths import StatePaths

        paths = StatePaths.current()
        spec = get_spec("credit_default")
        register_versions(spec, paths, {"r1": {"epochs": 2, "overrides": {"seed": 1}},
                                        "r2": {"epochs": 2, "overrides": {"seed": 2}}})
        with Server(Gateway([spec], paths, token=TOKEN, sync_seconds=0.3)) as server:
            mp.setenv("AIRFLOW_CONN_LIFECYCLE_GATEWAY", json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "password": TOKEN}))
            with httpx.Client(base_url=server.url, headers=ADMIN, timeout=60) as admin:
                assert admin.post("/admin/models/credit_default/versions/2/load").status_code == 200
                assert admin.put("/admin/models/credit_default/traffic",
                                 json={"weights": {"1": 80, "2": 20}, "reason": "test"}).status_code == 200
            clients = ClientPopulation(spec, server.url, rate=100, feedback_delay=(0.2, 0.5)).start()
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
            assert not bag.import_errors
            yield {"paths": paths, "server": server, "bag": bag, "spec": spec, "clients": clients, "s3": s3}
            stats = clients.stop()
    s3.stop()
    assert stats["failed"] == 0, stats  # nobody saw an error while a serving version was retired


def traffic(live) -> dict:
    return httpx.get(f"{live['server'].url}/admin/models/credit_default/traffic", headers=ADMIN).json()


def test_retiring_the_champion_is_refused_and_changes_nothing(live):
    run = live["bag"].get_dag("credit_default__retire").test(run_conf={"version": 1, "reason": "test"})
    s = states(run)
    assert str(run.state) == "failed" and s["check"] == "failed" and s["archive"] == "upstream_failed", s
    assert traffic(live)["weights"] == {"1": 80, "2": 20}


def test_retire_drains_archives_verifies_then_retires(live):
    run = live["bag"].get_dag("credit_default__retire").test(run_conf={"version": 2, "reason": "test: replaced"})
    s = states(run)
    assert str(run.state) == "success", s
    assert s["sweep"] == "skipped" and all(s[t] == "success" for t in ("check", "drain", "wait_quiet", "archive",
                                                                        "verify", "finalize")), s
    weights = traffic(live)["weights"]
    assert weights == {"1": 100}, weights  # drained to the champion, then unloaded
    mv = Registry(live["paths"]).version("credit_default", "2")
    assert mv.tags["lifecycle.status"] == "retired"
    assert mv.tags["lifecycle.archive_uri"] == f"s3://{BUCKET}/models/credit_default/v2"
    keys = {o["Key"] for o in live["s3"].client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "models/credit_default/v2/manifest.json" in keys and "models/credit_default/v2/MODEL_CARD.md" in keys
    events = [e.event for e in Ledger(live["paths"].ledger_db).events("credit_default", version="2")]
    assert events[-3:] == ["archived", "retired", "alert_sent"] or events[-2:] == ["archived", "retired"]


def test_a_second_run_verifies_and_finishes_without_uploading(live):
    run = live["bag"].get_dag("credit_default__retire").test(run_conf={"version": 2, "reason": "test: again"})
    assert str(run.state) == "success", states(run)
    ledger = Ledger(live["paths"].ledger_db)
    assert len(ledger.events("credit_default", "archived")) == 1  # idempotent keys: recorded once


def test_restore_registers_a_new_version_loaded_with_weight_zero(live):
    run = live["bag"].get_dag("credit_default__restore").test(run_conf={"version": 2})
    assert str(run.state) == "success", states(run)
    mv = Registry(live["paths"]).version("credit_default", "3")
    assert mv.tags["lifecycle.restored_from"] == f"s3://{BUCKET}/models/credit_default/v2"
    t = traffic(live)
    assert t["weights"].get("3") == 0 and t["weights"]["1"] == 100, t
    [restored] = Ledger(live["paths"].ledger_db).events("credit_default", "restored")
    assert restored.version == "3"
