"""`airflow backfill create` over the monitor DAG, on the real scheduler: three past hourly intervals of
drifted traffic get exactly three reports (recomputed in place by a second backfill) and no retraining."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import time

import pytest

from lifecycle.ledger import Ledger
from lifecycle.ops import pgembedded, services
from lifecycle.ops.services import free_port
from lifecycle.spec import get_spec
from tests.integration.test_monitor_dag import champion_with_reference, traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.clock]
HOUR = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
DAG = "credit_default__monitor"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.ops.stack import start_stack
    from lifecycle.paths import StatePaths

    root = tmp_path_factory.mktemp("backfill")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        paths = StatePaths.current()
        spec = get_spec("credit_default")
        model = champion_with_reference(spec, paths)
        # Recent hours, so only the backfill run type keeps them from triggering retraining.
        traffic(spec, paths, model, {HOUR - dt.timedelta(hours=h): "covariate_drift:0.5" for h in (2, 1, 0)})
        # Tasks fork from a scheduler that preloaded pandas, MLflow and Evidently (as `make up` runs it): each
        # monitor task then starts warm instead of paying ~20 s of cold imports.
        started = start_stack(paths, api_port=free_port(), alerts_port=free_port(), time_schedules=False,
                              components=("api-server", "scheduler", "dag-processor"), with_gateway=False,
                              preload="default", log=lambda _msg: None)
        try:
            client = AirflowClient(started.airflow_url)
            client.wait_for_dags([DAG])
            client.unpause(DAG)
            yield {"paths": paths, "client": client, "env": started.env}
        finally:
            services.stop_all(paths)
            pgembedded.AirflowPostgres(paths).remove()


def backfill(stack, *extra: str) -> list[dict]:
    """Backfill the three hourly intervals before this hour (logical dates are interval starts); wait for them."""
    env = {**os.environ, **stack["env"],
           "PATH": f"{services.venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    first, last = HOUR - dt.timedelta(hours=3), HOUR - dt.timedelta(hours=1)
    # No retry: Airflow's metadata DB is the embedded PostgreSQL, where the CLI's write simply waits its turn
    # (on SQLite it failed at once with "database is locked" while the scheduler wrote).
    done = subprocess.run(["airflow", "backfill", "create", "--dag-id", DAG, "--from-date", first.isoformat(),
                           "--to-date", last.isoformat(), *extra], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = stack["client"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        runs = client.dag_runs(DAG, limit=50)
        backfills = client.backfills(DAG)
        if len(runs) >= 3 and all(r["state"] in ("success", "failed") for r in runs) \
                and all(b["completed_at"] for b in backfills):  # one backfill per DAG at a time
            return runs
        time.sleep(3)
    raise AssertionError(f"backfill runs did not finish: {[(r['dag_run_id'], r['state']) for r in runs]}")


def test_backfill_writes_one_report_per_interval_and_never_retrains(stack):
    runs = backfill(stack)
    assert len(runs) == 3 and {r["state"] for r in runs} == {"success"}, runs
    assert {r["run_type"] for r in runs} == {"backfill"}
    folder = stack["paths"].reports / "credit_default" / "drift"
    assert len([p for p in folder.iterdir() if (p / "drift_report.html").exists()]) == 3
    ledger = Ledger(stack["paths"].ledger_db)
    drift = ledger.events("credit_default", "drift_detected")
    assert len(drift) == 3 and all("backfill" in e.reason and "no retrain" in e.reason for e in drift)
    assert ledger.events("credit_default", "retrain_triggered") == []


def test_a_second_backfill_recomputes_in_place(stack):
    folder = stack["paths"].reports / "credit_default" / "drift"
    if not folder.exists():  # run alone: the first backfill first
        backfill(stack)
    before = {p.name: (p / "drift_summary.json").stat().st_mtime for p in folder.iterdir()}
    runs = backfill(stack, "--reprocess-behavior", "completed")
    assert {r["state"] for r in runs} == {"success"}
    after = {p.name: (p / "drift_summary.json").stat().st_mtime for p in folder.iterdir()}
    assert after.keys() == before.keys() and all(after[k] > before[k] for k in before)  # overwritten, not added
    ledger = Ledger(stack["paths"].ledger_db)
    assert len(ledger.events("credit_default", "drift_detected")) == 3
    assert ledger.events("credit_default", "retrain_triggered") == []
    import mlflow

    from lifecycle.registry.store import configure_mlflow

    configure_mlflow(stack["paths"])
    exp = mlflow.get_experiment_by_name("credit_default-monitoring")
    assert len(mlflow.MlflowClient().search_runs([exp.experiment_id])) == 3
