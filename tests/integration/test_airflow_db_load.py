"""The embedded default's Airflow metadata DB under what operators do at once (issue 12, item 1): 20 REST
triggers and a CLI backfill while the scheduler and a DAG run are busy, on the PostgreSQL the project starts
itself. Zero lock errors, zero HTTP 5xx, every run created and finished. (``make bench-airflow-db`` runs the
same against SQLite, where the CLI backfill fails with "database is locked".)"""
from __future__ import annotations

import os
import stat

import pytest

from lifecycle.ops import pgembedded, services
from lifecycle.ops.services import free_port
from lifecycle.paths import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.ops.stack import start_stack
    from lifecycle.paths import StatePaths

    root = tmp_path_factory.mktemp("airflow-db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.delenv("LIFECYCLE_AIRFLOW_DB", raising=False)
        paths = StatePaths.current()
        try:
            started = start_stack(paths, api_port=free_port(), alerts_port=free_port(), time_schedules=False,
                                  dags_folder=PROJECT_ROOT / "tests" / "integration" / "load_dags",
                                  components=("api-server", "scheduler", "dag-processor"), with_gateway=False,
                                  log=lambda _msg: None)
            client = AirflowClient(started.airflow_url)
            client.wait_for_dags(["load_probe"])
            client.unpause("load_probe")
            yield {"paths": paths, "client": client, "env": started.env}
        finally:
            services.stop_all(paths)
            pgembedded.AirflowPostgres(paths).remove()


def test_triggers_and_a_backfill_at_once_meet_no_lock_and_no_5xx(stack):
    from lifecycle.ops.loadcheck import run_load

    assert stack["env"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    logs = [str(stack["paths"].run_dir / f"airflow-{c}.log") for c in ("api-server", "scheduler", "dag-processor")]
    result = run_load(stack["client"], stack["env"], "load_probe", triggers=20, backfill_days=5, logs=logs)
    print(result.line("postgres"))
    assert result.server_errors == result.timeouts == 0 and result.created == 20, result.statuses
    assert result.backfill_rc == 0, result.backfill_output
    assert result.lock_errors == 0
    assert result.all_done_seconds is not None, f"only {result.finished_runs} runs finished"
    runs = stack["client"].dag_runs("load_probe", limit=200)
    assert {r["run_type"] for r in runs} >= {"manual", "backfill"}
    assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]


def test_the_server_runs_unprivileged_and_no_password_is_on_a_command_line(stack):
    import psutil

    pg = pgembedded.AirflowPostgres(stack["paths"])
    secrets = stack["paths"].secrets_dir
    passwords = [(secrets / name).read_text().strip()
                 for name in ("airflow_db_password", "postgres_superuser_password", "airflow_admin_password")]
    for proc in psutil.process_iter(["cmdline", "username"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert not any(p in cmdline for p in passwords), f"a password on the command line of pid {proc.pid}"
        if str(pg.data) in cmdline and os.geteuid() == 0:
            assert proc.info["username"] == "nobody"
    assert stat.S_IMODE(pg.data.stat().st_mode) == 0o700
    for name in ("airflow_db_password", "postgres_superuser_password", "airflow_admin_password",
                 "airflow_passwords.json", "fernet_key"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600, name
    assert not list(pg.cluster_dir().glob("*.pw")), "initdb's password file is deleted once it is read"


def test_connection_passwords_are_stored_encrypted(stack):
    """The generated Fernet key encrypts the gateway connection's password (its admin token) in the metadata DB."""
    import psycopg2

    url = stack["env"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT is_encrypted, password FROM connection WHERE conn_id = 'lifecycle_gateway'")
        encrypted, stored = cur.fetchone()
    token = stack["paths"].gateway_token()
    assert encrypted and stored and token not in stored
