"""The lifecycle on the distributed topology: the demo's short scenario (data gate with quarantines, train,
canary with rollback, drift-triggered retrain and promotion, retirement and restore: every DAG, about half the
demo's time) with ``LIFECYCLE_TOPOLOGY=distributed``: Airflow on PostgreSQL with
CeleryExecutor and two workers (``default``, ``gpu``), an MLflow server on PostgreSQL with artifacts on S3 (moto's
server over HTTP), the ledger and the gateway's traffic in PostgreSQL. Only the environment and the
scenario differ from ``tests/integration/test_demo_scheduler.py``; the DAGs and the spec are the same files."""
from __future__ import annotations

import json

import pytest

from lifecycle.paths import StatePaths
from tests.conftest import check_summary

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def demo(dist_demo):
    """(state, the finished demo process, topology with its password): tests/distributed/conftest.py runs it."""
    return dist_demo.state, dist_demo.done, dist_demo.topo


def test_demo_completes_on_celery_postgres_and_the_mlflow_server(demo):
    _state, done, _topo = demo
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    log = done.stdout
    assert "executor CeleryExecutor" in log and "Airflow DB postgresql://" in log
    assert "lifecycle DB (ledger, gateway traffic) postgresql://" in log and "MLflow server http://" in log
    assert " 0 failed" in next(ln for ln in log.splitlines() if "client population:" in ln)


def test_summary_and_ledger_come_from_the_shared_backends(demo):
    state, _done, topo = demo
    summary = json.loads((state / "demo" / "summary.json").read_text())
    assert summary["tracking_uri"] == f"http://127.0.0.1:{topo['mlflow_port']}"
    assert not (state / "lifecycle.db").exists() and not (state / "mlflow" / "mlflow.db").exists()
    by_event: dict[str, list] = {}
    for e in summary["events"]:
        by_event.setdefault(e["event"], []).append(e)
    # The short scenario: v1 on week 1, v2 retrained on week 4's drift, canaried (shadow, then the ramp) and
    # promoted, v1 retired and restored as v3.
    assert [e["version"] for e in by_event["promoted"]] == ["1", "2"]
    assert [e["version"] for e in by_event["shadow_verdict"]] == ["2"] and "rolled_back" not in by_event
    assert {e["version"] for e in by_event["canary_step"]} == {"2"}
    assert len(by_event["drift_detected"]) == len(by_event["retrain_triggered"]) == 1
    assert [e["version"] for e in by_event["retired"]] == ["1"]
    assert [e["version"] for e in by_event["restored"]] == ["3"]
    import psycopg2

    url = f"postgresql://lifecycle:{topo['password']}@127.0.0.1:{topo['pg_port']}/lifecycle"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == len(summary["events"])
        cur.execute("SELECT weights FROM traffic_history WHERE model = 'credit_default' ORDER BY id DESC LIMIT 1")
        last = json.loads(cur.fetchone()[0])
        assert {version: w for version, w in last.items() if w} == {"2": 100}, last


def test_summary_passes_the_shared_checker(demo):
    check_summary(demo[0] / "demo" / "summary.json")


def test_model_artifacts_live_in_s3_behind_the_mlflow_server(demo):
    import boto3

    _state, _done, topo = demo
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{topo['s3_port']}", aws_access_key_id="lifecycle",
                      aws_secret_access_key="lifecycle-local-s3", region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow-artifacts")
            for o in page.get("Contents", [])]
    assert any(k.endswith("weights.pt") for k in keys), keys[:20]
    assert any(k.endswith("reference/reference.parquet") for k in keys)


def test_training_ran_on_the_gpu_queue_and_the_rest_on_default(demo):
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.ops.airflow_env import admin_password

    state, _done, topo = demo
    summary = json.loads((state / "demo" / "summary.json").read_text())
    client = AirflowClient(summary["airflow_url"], password=admin_password(StatePaths(state)))
    train = client.task_instance("credit_default__train", "demo_train_v1", "train")
    evaluate = client.task_instance("credit_default__train", "demo_train_v1", "evaluate")
    assert train["state"] == "success" and train["queue"] == "gpu"
    assert evaluate["queue"] == "default"
    import psycopg2

    # Celery's result backend (the airflow database) holds one row per task a Celery worker ran.
    url = f"postgresql://lifecycle:{topo['password']}@127.0.0.1:{topo['pg_port']}/airflow"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] > 10
