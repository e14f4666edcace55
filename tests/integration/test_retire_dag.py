"""The retire and restore DAGs with `dag.test()`: a live gateway with clients, the archive on moto's S3 server
over HTTP through Airflow's amazon provider (an `aws` connection with an endpoint URL)."""
from __future__ import annotations

import json

import pytest

from lifecycle.ledger import Ledger
from lifecycle.registry.store import Registry
from tests.conftest import S3Server, live_lifecycle, states, traffic_of
from tests.integration.test_archive import BUCKET

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.clock]


@pytest.fixture(scope="module")
def live(tmp_path_factory, airflow_db):
    """v1 champion at 80%, v2 at 20% with 100 req/s of clients; archives to moto's S3 over HTTP."""
    s3 = S3Server()
    s3.start()
    s3.client().create_bucket(Bucket=BUCKET)
    archive_conn = json.dumps({"conn_type": "aws", "login": "test", "password": "test",
                               "extra": {"endpoint_url": s3.url, "region_name": "us-east-1"}})
    runs = {"r1": {"epochs": 2, "overrides": {"seed": 1}}, "r2": {"epochs": 2, "overrides": {"seed": 2}}}
    retirement = {"archive_uri": f"s3://{BUCKET}/models", "quiet_seconds": 2, "max_drain_seconds": 60}
    with live_lifecycle(tmp_path_factory.mktemp("retire"), runs, spec_sections={"retirement": retirement},
                        loaded={"1": 80, "2": 20}, client_rate=100, feedback_delay=(0.2, 0.5), sync_seconds=0.3,
                        env={"AIRFLOW_CONN_LIFECYCLE_ARCHIVE": archive_conn}) as live:
        yield {**live, "s3": s3}
        stats = live["clients"].stop()
    s3.stop()
    assert stats["failed"] == 0, stats  # nobody saw an error while a serving version was retired


def traffic(live) -> dict:
    return traffic_of(live["server"].url)


def ensure_retired(live, version: str = "2") -> None:
    """Arrange: ``version`` has been retired (by an earlier test, or now), so a test can build on its archive."""
    if Registry(live["paths"]).version("credit_default", version).tags.get("lifecycle.status") != "retired":
        run = live["bag"].get_dag("credit_default__retire").test(run_conf={"version": int(version),
                                                                           "reason": "test: arrange"})
        assert str(run.state) == "success", states(run)


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
    ensure_retired(live)
    run = live["bag"].get_dag("credit_default__retire").test(run_conf={"version": 2, "reason": "test: again"})
    assert str(run.state) == "success", states(run)
    ledger = Ledger(live["paths"].ledger_db)
    assert len(ledger.events("credit_default", "archived")) == 1  # idempotent keys: recorded once


def test_restore_registers_a_new_version_loaded_with_weight_zero(live):
    ensure_retired(live)
    run = live["bag"].get_dag("credit_default__restore").test(run_conf={"version": 2})
    assert str(run.state) == "success", states(run)
    mv = Registry(live["paths"]).version("credit_default", "3")
    assert mv.tags["lifecycle.restored_from"] == f"s3://{BUCKET}/models/credit_default/v2"
    t = traffic(live)
    assert t["weights"].get("3") == 0 and t["weights"]["1"] == 100, t
    [restored] = Ledger(live["paths"].ledger_db).events("credit_default", "restored")
    assert restored.version == "3"
