"""The embedded default as running services: Airflow (API server, scheduler, DAG processor, triggerer) with
LocalExecutor on its own PostgreSQL (:mod:`lifecycle.ops.pgembedded`; ``LIFECYCLE_AIRFLOW_DB=sqlite`` keeps the
SQLite file instead), the alert receiver, the serving gateway, and the settings from ``airflow_settings.yaml``."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lifecycle import db
from lifecycle.ops import pgembedded, services, topology
from lifecycle.ops.airflow_env import airflow_env, prepare_home
from lifecycle.paths import PROJECT_ROOT, StatePaths

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class Stack:
    airflow_url: str
    alerts_url: str
    gateway_url: str
    gateway_token: str
    env: dict[str, str]


def _airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PATH": f"{services.venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(services.venv_bin() / "airflow"), *args], env=full, capture_output=True, text=True)


def migrate(env: dict[str, str]) -> None:
    done = _airflow(env, "db", "migrate")
    if done.returncode != 0:
        raise services.ServiceError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if url.startswith("sqlite:///"):  # WAL: readers never block the writer (persistent in the DB file)
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def gpu_count() -> int:
    """GPUs on this machine (``nvidia-smi -L``; ``CUDA_VISIBLE_DEVICES`` narrows it), 0 without a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    found = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")) if out.returncode == 0 else 0
    if visible:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found


def apply_settings(client, settings: Path = PROJECT_ROOT / "airflow_settings.yaml",
                   ports: dict[str, int] | None = None, passwords: dict[str, str] | None = None) -> list[str]:
    """Create or update the connections, pools and variables of an astro-format settings file via REST.

    ``ports`` overrides a connection's port by id (the local alert receiver may run elsewhere than 8799).
    """
    data = (yaml.safe_load(settings.read_text()) or {}).get("airflow", {}) or {}
    done = []
    for pool in data.get("pools") or []:
        slots = pool["pool_slot"]
        slots = max(gpu_count(), 1) if slots == "gpus" else int(slots)  # "gpus": one slot per visible GPU
        body = {"name": pool["pool_name"], "slots": slots,
                "description": pool.get("pool_description", ""),
                "include_deferred": bool(pool.get("include_deferred", False))}
        client.upsert_pool(body)
        done.append(f"pool {body['name']}={body['slots']}")
    for conn in data.get("connections") or []:
        import json

        body = {"connection_id": conn["conn_id"], "conn_type": conn["conn_type"],
                "host": conn.get("conn_host"), "port": conn.get("conn_port"), "login": conn.get("conn_login"),
                "password": conn.get("conn_password"), "schema": conn.get("conn_schema"),
                "extra": json.dumps(conn.get("conn_extra") or {}), "description": conn.get("conn_description")}
        if ports and conn["conn_id"] in ports:
            body["port"] = ports[conn["conn_id"]]
        if passwords and conn["conn_id"] in passwords:
            body["password"] = passwords[conn["conn_id"]]
        body = {k: v for k, v in body.items() if v is not None}
        client.upsert_connection(body)
        done.append(f"connection {body['connection_id']}")
    for var in data.get("variables") or []:
        client.upsert_variable(var["variable_name"], str(var["variable_value"]))
        done.append(f"variable {var['variable_name']}")
    return done


def start_stack(paths: StatePaths | None = None, *, api_port: int | None = None, alerts_port: int | None = None,
                time_schedules: bool = True, dags_folder: Path | None = None, preload: str | None = None,
                components: tuple[str, ...] = AIRFLOW_COMPONENTS, gateway_port: int | None = None,
                with_gateway: bool = True, log=print) -> Stack:
    """Start every service of the embedded default and wait until Airflow answers; idempotent if running."""
    from lifecycle.ops.airflow_client import AirflowClient

    paths = paths or StatePaths.current()
    api_port = api_port or int(os.environ.get("AIRFLOW_PORT", "8080"))
    alerts_port = alerts_port or int(os.environ.get("LIFECYCLE_ALERTS_PORT", "8799"))
    gateway_port = gateway_port or int(os.environ.get("LIFECYCLE_GATEWAY_PORT", "8000"))
    already = services.running(paths)
    env = airflow_env(paths, api_port=api_port, time_schedules=time_schedules, dags_folder=dags_folder,
                      preload=preload)
    airflow_url = f"http://127.0.0.1:{api_port}"
    alerts_url = f"http://127.0.0.1:{alerts_port}/alerts"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    token = paths.gateway_token()  # refused here, before anything starts, if shorter than 32 characters
    topo = None
    if topology.enabled(paths):  # PostgreSQL, Redis, S3, MLflow server; CeleryExecutor (see lifecycle.ops.topology)
        topo = topology.Topology.for_state(paths) if already else topology.start_backends(paths, log, wait_mlflow=False)
        env.update(topo.airflow_env())
        os.environ.update(topo.client_env())  # this process (the demo driver) reads the same ledger and registry
    else:  # the embedded default: Airflow's metadata DB on a PostgreSQL server of its own (lifecycle.ops.pgembedded)
        airflow_db = os.environ.get("LIFECYCLE_AIRFLOW_DB", "postgres").strip().lower()
        if airflow_db not in ("postgres", "sqlite"):
            raise services.ServiceError(f"LIFECYCLE_AIRFLOW_DB must be postgres or sqlite, got {airflow_db!r}")
        if airflow_db == "postgres":
            pg = pgembedded.AirflowPostgres(paths)
            env.update(pgembedded.airflow_db_env(pg.ensure(log)))
    already = [name for name in already if name != pgembedded.SERVICE
               and name.startswith(("airflow-", "gateway", "alert", "celery"))]
    if not already:
        ports = [(api_port, "Airflow API server (AIRFLOW_PORT)"), (alerts_port, "alert receiver")]
        if with_gateway:
            ports.append((gateway_port, "serving gateway (LIFECYCLE_GATEWAY_PORT)"))
        for port, what in ports:
            if not services.port_free(port):
                raise services.ServiceError(f"port {port} for the {what} is taken by another process; "
                                            "stop it or pick another port")
        prepare_home(paths)
        log("stack: preparing the Airflow metadata DB ("
            + ("SQLite" if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite") else "PostgreSQL") + ")")
        migrate(env)
        services.start("alert-receiver", [sys.executable, "-m", "lifecycle.alerts", "--out",
                                          str(paths.root / "demo" / "alerts.jsonl"), "--port", str(alerts_port)],
                       env, paths)
        for component in components:
            argv = ["airflow", component]
            if component == "api-server":
                argv += ["--port", str(api_port), "--host", "127.0.0.1", "--workers", "1"]
            # Airflow's components exit when their PostgreSQL goes away (a restart): a supervisor brings them back.
            services.start(f"airflow-{component}", argv, env, paths, supervised=True)
        for worker in topology.WORKERS if topo else ():
            topology.start_worker(worker, env, paths)
        if with_gateway:
            services.start("gateway", [sys.executable, "-m", "lifecycle.serving", "--port", str(gateway_port)],
                           {**env, "LIFECYCLE_GATEWAY_TOKEN": token}, paths, supervised=True)
        log(f"stack: started Airflow ({', '.join(components)}"
            + (f", Celery workers {', '.join(topology.WORKERS)}" if topo else "") + "), the alert receiver"
            f"{' and the serving gateway' if with_gateway else ''}; waiting for the API")
        log("stack: " + (topo.describe() if topo else
                         f"executor LocalExecutor; Airflow DB {db.describe(env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}; MLflow "
                         f"{paths.tracking_uri}; lifecycle DB (ledger, gateway traffic) {paths.ledger_db}"))
    services.wait_http(f"{airflow_url}/api/v2/monitor/health", timeout=180, what="Airflow API server",
                       log=paths.run_dir / "airflow-api-server.log")
    if topo:  # it started beside Airflow's migration and components (~30 s of its own)
        topology.wait_mlflow(topo, paths)
    client = AirflowClient(airflow_url)
    for item in apply_settings(client, ports={"lifecycle_alerts": alerts_port, "lifecycle_gateway": gateway_port},
                               passwords={"lifecycle_gateway": token}):
        log(f"stack: applied {item}")
    if with_gateway:
        services.wait_http(f"{gateway_url}/healthz", timeout=120, what="serving gateway",
                           log=paths.run_dir / "gateway.log")
    return Stack(airflow_url, alerts_url, gateway_url, token, env)


def cli_env(paths: StatePaths | None = None) -> dict[str, str]:
    """The environment Airflow's CLI needs to act on this state folder's Airflow (``lifecycle airflow ...``):
    its home, settings and metadata DB, which lives in a server of the stack, so the stack must be up."""
    paths = paths or StatePaths.current()
    env = airflow_env(paths, api_port=int(os.environ.get("AIRFLOW_PORT", "8080")))
    if topology.enabled(paths):
        env.update(topology.Topology.for_state(paths).airflow_env())
    elif os.environ.get("LIFECYCLE_AIRFLOW_DB", "postgres").strip().lower() == "postgres":
        pg = pgembedded.AirflowPostgres(paths)
        if not pg.running():
            raise services.ServiceError(f"Airflow's PostgreSQL of {paths.root} is not running: `make up` first")
        env.update(pgembedded.airflow_db_env(pg.url()))
    return env


def stop_stack(paths: StatePaths | None = None) -> list[str]:
    return services.stop_all(paths)
