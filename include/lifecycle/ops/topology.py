"""The distributed topology on one machine: what a team runs when one machine is not enough, on loopback.

``LIFECYCLE_TOPOLOGY=distributed`` makes ``start_stack`` (so ``make up``, the demo and the tests) start, instead
of SQLite and LocalExecutor:

* **PostgreSQL** (Debian's package; its own cluster under ``$LIFECYCLE_PG_DATA``, default
  ``/var/tmp/lifecycle-pg-<hash of the state folder>``) with three databases: ``airflow`` (Airflow's metadata
  and Celery's results), ``mlflow`` (the MLflow tracking store and registry) and ``lifecycle`` (the ledger and
  the gateway's traffic state, ``LIFECYCLE_DB_URL``);
* **Redis** as the Celery broker;
* an **S3** endpoint (moto's server over HTTP, standing in for S3 or MinIO) holding MLflow's artifacts;
* an **MLflow tracking server** over that PostgreSQL database, proxying artifacts to that bucket
  (``LIFECYCLE_TRACKING_URI``): tasks and the gateway need no S3 credentials;
* Airflow with **CeleryExecutor** and two Celery workers: ``default`` and ``gpu`` (the queue the training task
  is sent to, ``training.queue``).

The DAGs and specs are the same; only the environment changes. ``make test-distributed`` runs the lifecycle on
it. Ports come from ``LIFECYCLE_PG_PORT``, ``LIFECYCLE_REDIS_PORT``, ``LIFECYCLE_S3_PORT`` and
``LIFECYCLE_MLFLOW_PORT`` (defaults 5433, 6380, 9100, 5001); ``topology.json`` in the state folder records them.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lifecycle import db
from lifecycle.fileio import atomic_write
from lifecycle.ops import services
from lifecycle.paths import StatePaths

DATABASES = ("airflow", "mlflow", "lifecycle")
ARTIFACT_BUCKET = "mlflow-artifacts"
#: Celery workers: service name -> (queues, concurrency).
WORKERS = {"celery-worker-default": ("default", 4), "celery-worker-gpu": ("gpu", 1)}  # default: as compose
S3_KEYS = {"AWS_ACCESS_KEY_ID": "lifecycle", "AWS_SECRET_ACCESS_KEY": "lifecycle-local-s3",
           "AWS_DEFAULT_REGION": "us-east-1"}


def enabled(paths: StatePaths | None = None) -> bool:
    """``LIFECYCLE_TOPOLOGY`` (``embedded`` or ``distributed``); unset: whatever the state folder was started
    with (``topology.json`` is there), so ``make up`` after a distributed demo finds its databases again."""
    choice = os.environ.get("LIFECYCLE_TOPOLOGY", "").strip().lower()
    if choice:
        return choice == "distributed"
    return ((paths or StatePaths.current()).root / "topology.json").exists()


@dataclass
class Topology:
    root: str
    pg_data: str
    pg_port: int
    redis_port: int
    s3_port: int
    mlflow_port: int
    password: str

    @classmethod
    def for_state(cls, paths: StatePaths) -> Topology:
        saved = paths.root / "topology.json"
        if saved.exists():  # the password is not in it: secrets/postgres_password (0600) holds it
            data = json.loads(saved.read_text())
            data["password"] = paths.secret("postgres_password")
            return cls(**data)
        digest = hashlib.sha256(str(paths.root).encode()).hexdigest()[:12]
        env = os.environ.get
        return cls(root=str(paths.root), pg_data=env("LIFECYCLE_PG_DATA") or f"/var/tmp/lifecycle-pg-{digest}",
                   pg_port=int(env("LIFECYCLE_PG_PORT", "5433")), redis_port=int(env("LIFECYCLE_REDIS_PORT", "6380")),
                   s3_port=int(env("LIFECYCLE_S3_PORT", "9100")), mlflow_port=int(env("LIFECYCLE_MLFLOW_PORT", "5001")),
                   password=paths.secret("postgres_password"))

    def save(self) -> None:
        """``topology.json`` (ports and folders; readable by others, so without the password)."""
        data = {k: v for k, v in asdict(self).items() if k != "password"}
        atomic_write(Path(self.root) / "topology.json", json.dumps(data, indent=2))

    def pg_url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://lifecycle:{self.password}@127.0.0.1:{self.pg_port}/{database}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client_env(self) -> dict[str, str]:
        """What every lifecycle process (tasks, gateway, the demo driver) needs to find the shared state."""
        return {"LIFECYCLE_TOPOLOGY": "distributed", "LIFECYCLE_DB_URL": self.pg_url("lifecycle"),
                "LIFECYCLE_TRACKING_URI": self.mlflow_url}

    def airflow_env(self) -> dict[str, str]:
        """Airflow on PostgreSQL with CeleryExecutor on Redis (overrides the embedded default's settings)."""
        return {
            **self.client_env(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg_url("airflow", "postgresql+psycopg2"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": self.pg_url("airflow", "db+postgresql"),
            "AIRFLOW__CORE__PARALLELISM": "8",
            # Redelivery of an unacknowledged task message (a worker died): longer than any training run.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
            # A worker that dies mid-task: its task is failed (and retried on another worker) after 30 s
            # without a heartbeat (six missed beats), not after the default 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }

    def describe(self) -> str:
        return (f"executor CeleryExecutor (broker redis://127.0.0.1:{self.redis_port}, workers: "
                + ", ".join(f"{name.removeprefix('celery-worker-')} queue" for name in WORKERS)
                + f"); Airflow DB {db.describe(self.pg_url('airflow'))}; MLflow server {self.mlflow_url} on "
                f"{db.describe(self.pg_url('mlflow'))} with artifacts in s3://{ARTIFACT_BUCKET} at {self.s3_url}; "
                f"lifecycle DB (ledger, gateway traffic) {db.describe(self.pg_url('lifecycle'))}")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_packages(log=print) -> Path:
    """PostgreSQL and Redis from Debian's packages (installed once, needs root); return PostgreSQL's bin dir."""
    if _pg_bin() is None or shutil.which("redis-server") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise services.ServiceError("the distributed topology needs PostgreSQL and Redis: install Debian's "
                                        "postgresql and redis-server packages (or run as root with apt-get)")
        log("topology: installing postgresql and redis-server (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql", "redis-server"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise services.ServiceError(f"{' '.join(cmd)} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    found = _pg_bin()
    assert found is not None
    return found


def _pg_user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root


def _as_pg_user(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, user=_pg_user(), cwd="/")


def start_postgres(topo: Topology, paths: StatePaths, pg_bin: Path, log=print) -> None:
    data = Path(topo.pg_data)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / f".{data.name}.pw"
        atomic_write(pwfile, topo.password, mode=0o600)  # owner-only from the start, like secrets/
        if _pg_user():
            shutil.chown(data, _pg_user())
            shutil.chown(pwfile, _pg_user())
        data.chmod(0o700)
        done = _as_pg_user([str(pg_bin / "initdb"), "-D", str(data), "-U", "lifecycle", f"--pwfile={pwfile}",
                            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"])
        pwfile.unlink()
        if done.returncode != 0:
            raise services.ServiceError(f"initdb failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
        log(f"topology: created a PostgreSQL cluster in {data}")
    services.start("postgres", [str(pg_bin / "postgres"), "-D", str(data), "-p", str(topo.pg_port),
                                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
                                "-c", "max_connections=300"],  # PostgreSQL's durability defaults: fsync on
                   {}, paths, user=_pg_user(), stop_signal="SIGINT")
    wait_postgres(topo)
    import psycopg2

    conn = psycopg2.connect(topo.pg_url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in DATABASES:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def wait_postgres(topo: Topology, timeout: float = 60) -> None:
    import psycopg2

    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(topo.pg_url("postgres"), connect_timeout=3).close()
            return
        except psycopg2.OperationalError as err:
            last = str(err).strip().splitlines()[0]
            time.sleep(0.5)
    raise services.ServiceError(f"PostgreSQL on port {topo.pg_port} did not accept connections in {timeout:.0f}s: "
                                f"{last}")


def start_redis(topo: Topology, paths: StatePaths) -> None:
    services.start("redis", ["redis-server", "--port", str(topo.redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(paths.run_dir)], {}, paths)
    deadline = time.monotonic() + 30
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", topo.redis_port)) == 0:
                return
        time.sleep(0.3)
    raise services.ServiceError(f"Redis did not listen on port {topo.redis_port} within 30s")


def start_s3(topo: Topology, paths: StatePaths) -> None:
    services.start("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(topo.s3_port)],
                   {}, paths)
    services.wait_http(f"{topo.s3_url}/moto-api/", timeout=60, what="S3 endpoint (moto server)",
                       log=paths.run_dir / "s3.log")
    import boto3

    s3 = boto3.client("s3", endpoint_url=topo.s3_url, aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                      region_name=S3_KEYS["AWS_DEFAULT_REGION"])
    if ARTIFACT_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)


def start_mlflow(topo: Topology, paths: StatePaths, wait: bool = True) -> None:
    """Start the MLflow tracking server; ``wait=False`` returns at once (it takes ~30 s to answer here: call
    :func:`wait_mlflow` before the first use)."""
    # The backend store URL holds the DB password: an environment variable, not the command line (ps).
    env = {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": topo.s3_url,
           "MLFLOW_BACKEND_STORE_URI": topo.pg_url("mlflow", "postgresql+psycopg2")}
    services.start("mlflow-server", [str(services.venv_bin() / "mlflow"), "server",
                                     "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}",
                                     "--host", "127.0.0.1", "--port", str(topo.mlflow_port), "--workers", "2"],
                   env, paths)
    if wait:
        wait_mlflow(topo, paths)


def wait_mlflow(topo: Topology, paths: StatePaths) -> None:
    services.wait_http(f"{topo.mlflow_url}/health", timeout=180, what="MLflow tracking server",
                       log=paths.run_dir / "mlflow-server.log")


def start_backends(paths: StatePaths, log=print, wait_mlflow: bool = True) -> Topology:
    """Start PostgreSQL, Redis, the S3 endpoint and the MLflow server (idempotent per service); with
    ``wait_mlflow=False`` the MLflow server may still be starting on return (:func:`wait_mlflow`)."""
    topo = Topology.for_state(paths)
    pg_bin = ensure_packages(log)
    for port, what in ((topo.pg_port, "PostgreSQL (LIFECYCLE_PG_PORT)"), (topo.redis_port, "Redis (LIFECYCLE_REDIS_PORT)"),
                       (topo.s3_port, "S3 endpoint (LIFECYCLE_S3_PORT)"),
                       (topo.mlflow_port, "MLflow server (LIFECYCLE_MLFLOW_PORT)")):
        if not services.port_free(port):
            raise services.ServiceError(f"port {port} for {what} is taken by another process; stop it or pick "
                                        "another port")
    if not (paths.root / "topology.json").exists() and Path(topo.pg_data).exists():
        shutil.rmtree(topo.pg_data)  # the cluster of a state folder that was deleted: its password is gone too
    paths.root.mkdir(parents=True, exist_ok=True)
    topo.save()
    start_postgres(topo, paths, pg_bin, log)
    start_redis(topo, paths)
    start_s3(topo, paths)
    start_mlflow(topo, paths, wait=wait_mlflow)
    return topo


def start_worker(name: str, env: dict[str, str], paths: StatePaths, queues: str | None = None,
                 concurrency: int | None = None) -> int:
    """One Celery worker (``queues``/``concurrency`` default to ``WORKERS[name]``), named ``<name>@<host>``;
    each serves its task logs on a port of its own (several share this machine)."""
    default_queues, default_concurrency = WORKERS.get(name, ("default", 1))
    argv = ["airflow", "celery", "worker", "--queues", queues or default_queues,
            "--concurrency", str(concurrency or default_concurrency),
            "--celery-hostname", f"{name.removeprefix('celery-worker-')}@%h", "--without-mingle", "--without-gossip"]
    return services.start(name, argv,
                          {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(services.free_port())}, paths,
                          supervised=True)


def restart_postgres(paths: StatePaths, down_seconds: float = 5.0) -> None:
    """Fault injection: a fast shutdown of PostgreSQL, ``down_seconds`` without it, then the same cluster back."""
    topo = Topology.for_state(paths)
    services.stop("postgres", paths)
    time.sleep(down_seconds)
    pg_bin = _pg_bin()
    assert pg_bin is not None
    start_postgres(topo, paths, pg_bin)


def remove_cluster(paths: StatePaths) -> None:
    """Delete the PostgreSQL cluster of a state folder (after ``stop_all``): test clean-up, a full reset."""
    if (paths.root / "topology.json").exists():
        shutil.rmtree(Topology.for_state(paths).pg_data, ignore_errors=True)
