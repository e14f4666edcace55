"""The monitor DAG with `dag.test()`: a stable interval (no trigger), a drifted one (train DAG triggered with
conf, ledger and alerts), a drifted one inside the cooldown with a dead alert receiver (the DAG still succeeds),
and the report of an interval recomputed in place."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest
import yaml

from lifecycle.alerts import serve_receiver
from lifecycle.data.frames import numpy_dtypes
from lifecycle.data.synthetic import Scenario, generate_batch
from lifecycle.ledger import Ledger
from lifecycle.ops.services import free_port
from lifecycle.ops.simulate import write_traffic_log
from lifecycle.paths import PROJECT_ROOT
from lifecycle.training.packaging import load_model_dir
from tests.conftest import DAYS, ROW, TOKEN, Server, live_lifecycle, register_versions, states

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.clock]
HOUR = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)


def alert_conn(port: int) -> str:
    return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port})


def monitor_sections() -> dict:

    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data["monitoring"]["cooldown_minutes"] = 30
    # An SLO no real gateway meets (p99 under a microsecond), so any 20 requests in a minute breach it.
    data["serving"]["slo"] = {"max_error_rate": 0.02, "max_p99_ms": 0.001, "window_seconds": 60, "min_requests": 20,
                              "poll_seconds": 0.5}
    return {"monitoring": data["monitoring"], "serving": data["serving"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    """Champion v1 (with its drift reference) and gateway-format traffic logs for four recent hours."""
    root = tmp_path_factory.mktemp("monitor")
    received = root / "alerts.jsonl"
    receiver = serve_receiver(received)
    with live_lifecycle(root, {"monitor_v1": {"epochs": 4}}, spec_sections=monitor_sections(), evaluate=True,
                        serve=False, env={"AIRFLOW_CONN_LIFECYCLE_ALERTS": alert_conn(receiver.server_address[1])}
                        ) as live:
        spec, paths = live["spec"], live["paths"]
        model = champion_model(spec, paths)
        # The three hours before this one: stable, drifted, drifted (the last falls in the cooldown).
        traffic(spec, paths, model, {HOUR - dt.timedelta(hours=2): "stable", HOUR - dt.timedelta(hours=1):
                                     "covariate_drift:0.5", HOUR: "covariate_drift:0.5"})
        yield {**live, "received": received, "receiver_port": receiver.server_address[1], "ran": set()}
    receiver.shutdown()


def champion_model(spec, paths):
    from lifecycle.registry.store import Registry

    with tempfile.TemporaryDirectory() as tmp:
        return load_model_dir(Registry(paths).download_model(spec.model_name, "1", Path(tmp)))


def champion_with_reference(spec, paths):
    """v1 trained briefly on four validated days, champion, with its drift reference and offline metrics."""
    register_versions(spec, paths, {"monitor_v1": {"epochs": 4}}, evaluate=True)
    return champion_model(spec, paths)


def traffic(spec, paths, model, hours: dict[dt.datetime, str]) -> None:
    """One hour of gateway-format traffic (3,000 rows scored by ``model``) ending at each key, per scenario."""
    for i, (end, scenario) in enumerate(hours.items()):
        frame = numpy_dtypes(generate_batch(spec, dt.date(2026, 2, 1 + i), Scenario.parse(scenario)))
        write_traffic_log(spec, paths.root, frame, version="1", probability=model.predict_proba(frame),
                          threshold=model.threshold, start=end - dt.timedelta(hours=1), end=end)


def run_hour(env, hours_ago: int):
    """Run the monitor for the hourly interval ending ``hours_ago - 1`` hours before this hour."""
    env["ran"].add(hours_ago)
    return env["bag"].get_dag("credit_default__monitor").test(logical_date=HOUR - dt.timedelta(hours=hours_ago - 1))


def ensure_ran(env, *hours_ago: int) -> None:
    """Arrange: the intervals a test builds on have been monitored (by an earlier test or now)."""
    for hours in hours_ago:
        if hours not in env["ran"]:
            assert str(run_hour(env, hours).state) == "success"


def alerts(env) -> list[dict]:
    path = env["received"]
    return [json.loads(line)["alert"] for line in path.read_text().splitlines()] if path.exists() else []


def test_stable_interval_writes_a_report_and_triggers_nothing(env):
    run = run_hour(env, 3)
    s = states(run)
    assert s["measure"] == s["decide"] == "success", s
    assert s["trigger_retrain"] == s["record_retrain"] == "skipped", s
    reports = list((env["paths"].reports / "credit_default" / "drift").glob("*/drift_report.html"))
    assert len(reports) == 1
    summary = json.loads((reports[0].parent / "drift_summary.json").read_text())
    assert summary["rows"] == 3000 and summary["labels"] > 2500 and summary["drift_share"] < 0.3
    assert summary["performance"]["roc_auc"]["live"] > 0.7
    assert Ledger(env["paths"].ledger_db).events("credit_default", "drift_detected") == []


def test_drifted_interval_triggers_the_train_dag_with_reason_and_report(env):
    from airflow.models.dagrun import DagRun

    run = run_hour(env, 2)
    s = states(run)
    assert s["measure"] == s["decide"] == s["trigger_retrain"] == s["record_retrain"] == "success", s
    [train_run] = DagRun.find(dag_id="credit_default__train", run_id=f"drift__{run.run_id}")
    conf = train_run.conf
    assert conf["reason"].startswith("drift: drift share") and conf["as_of"] == DAYS[3].isoformat()
    assert conf["report"].endswith("drift_report.html") and Path(conf["report"]).exists()
    ledger = Ledger(env["paths"].ledger_db)
    [drift] = ledger.events("credit_default", "drift_detected")
    [retrain] = ledger.events("credit_default", "retrain_triggered")
    assert drift.version == "1" and drift.details["drift_share"] >= 0.3
    assert f"drift__{run.run_id}" in retrain.reason
    events = {a["event"] for a in alerts(env)}
    assert {"drift_detected", "retrain_triggered"} <= events
    assert any(a["links"].get("report", "").endswith("drift_report.html") for a in alerts(env))


def test_cooldown_and_a_dead_receiver_do_not_fail_the_dag(env):
    ensure_ran(env, 2)  # the drifted interval that triggered retraining, an hour before this one
    env["mp"].setenv("AIRFLOW_CONN_LIFECYCLE_ALERTS", alert_conn(free_port()))  # nothing listens there
    sent_before = len(Ledger(env["paths"].ledger_db).events("credit_default", "alert_sent"))
    run = run_hour(env, 1)
    s = states(run)
    assert str(run.state) == "success" and s["trigger_retrain"] == "skipped", s
    ledger = Ledger(env["paths"].ledger_db)
    assert len(ledger.events("credit_default", "drift_detected")) == 2
    assert len(ledger.events("credit_default", "retrain_triggered")) == 1
    assert "cooldown" in ledger.events("credit_default", "drift_detected")[-1].reason
    assert len(ledger.events("credit_default", "alert_sent")) == sent_before  # not delivered, not recorded


def test_recomputing_an_interval_overwrites_its_report(env):
    ensure_ran(env, 3, 2, 1)
    folder = env["paths"].reports / "credit_default" / "drift"
    before = sorted(p.name for p in folder.iterdir())
    run = run_hour(env, 3)
    assert str(run.state) == "success"
    assert sorted(p.name for p in folder.iterdir()) == before
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("credit_default-monitoring").experiment_id])
    assert len(runs) == 3  # one MLflow run per interval, reused on recompute


def test_slo_watch_pages_ops_through_the_alert_dag_on_a_breach(env):
    import httpx
    from airflow.models.dagrun import DagRun

    from lifecycle.serving.app import Gateway

    env["mp"].setenv("AIRFLOW_CONN_LIFECYCLE_ALERTS", alert_conn(env["receiver_port"]))
    watch = env["bag"].get_dag("credit_default__slo_watch")
    with Server(Gateway([env["spec"]], env["paths"], token=TOKEN, sync_seconds=0.2)) as server:
        env["mp"].setenv("AIRFLOW_CONN_LIFECYCLE_GATEWAY", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "password": TOKEN}))
        quiet = watch.test(run_conf={"watch_seconds": 2})  # no traffic yet: nothing to judge, window passes
        assert states(quiet)["watch"] == "skipped" and states(quiet)["page_ops"] == "skipped"
        with httpx.Client(base_url=server.url) as http:
            for _ in range(40):
                assert http.post("/v1/models/credit_default/predict", json=ROW).status_code == 200
        run = watch.test(run_conf={"watch_seconds": 30})
    s = states(run)
    assert s["watch"] == s["alert_payload"] == s["page_ops"] == "success", s
    [page] = DagRun.find(dag_id="credit_default__ops_alert", run_id=f"slo__{run.run_id}")
    assert page.conf["event"] == "slo_breach" and "p99" in page.conf["reason"] and page.conf["version"] == "1"
    delivered = env["bag"].get_dag("credit_default__ops_alert").test(run_conf=page.conf)
    assert str(delivered.state) == "success"
    [alert] = [a for a in alerts(env) if a["event"] == "slo_breach"]
    assert alert["severity"] == "error" and "> 0.0 ms over" in alert["reason"]
