"""The environment every Airflow process of the embedded default runs with (demo, `make up`, tests).

Kept in one place so the scheduler, the API server, task processes and tests agree on folders, executor,
secrets and connections. No Airflow import here: this only builds a dict of environment variables.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from lifecycle.paths import PROJECT_ROOT, StatePaths

#: sqlite3/aiosqlite connect arguments for Airflow's metadata DB (see ``airflow_env``).
SQLITE_CONNECT_ARGS = {"timeout": 60}

ADMIN_USER = "admin"
PASSWORDS_FILE = "airflow_passwords.json"


def fernet_key(paths: StatePaths) -> str:
    """Airflow's Fernet key, kept in ``secrets/fernet_key``: 32 random bytes in URL-safe base64 (a secret of
    43 characters plus the padding Fernet expects)."""
    return paths.secret("fernet_key") + "="


def admin_password(paths: StatePaths | None = None) -> str:
    """The Airflow admin's password (``secrets/airflow_admin_password``, generated once)."""
    return (paths or StatePaths.current()).secret("airflow_admin_password")


def write_passwords_file(paths: StatePaths) -> Path:
    """The simple auth manager's passwords file (``secrets/airflow_passwords.json``, 0600), written atomically
    from the generated admin password."""
    from lifecycle.fileio import atomic_write

    target = paths.secrets_dir / PASSWORDS_FILE
    atomic_write(target, json.dumps({ADMIN_USER: admin_password(paths)}) + "\n", mode=0o600)
    return target


def airflow_env(paths: StatePaths | None = None, *, api_port: int = 8080, alerts_url: str | None = None,
                parallelism: int = 4, time_schedules: bool = True, dags_folder: Path | None = None,
                preload: str | None = None) -> dict[str, str]:
    """Environment variables for Airflow on SQLite + LocalExecutor with this project's DAGs and plugins.

    ``time_schedules=False`` stops the scheduler from creating cron runs (manual, backfill and asset-triggered
    runs still execute): the demo drives its own simulated calendar and must not get nightly runs for today.
    """
    paths = paths or StatePaths.current()
    home = paths.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "LIFECYCLE_HOME": str(paths.root),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),  # see lifecycle/__init__
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # Four Airflow components and the task processes share one SQLite file: wait for a lock (up to 60 s)
        # instead of failing after SQLite's default 5 s with "database is locked".
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "lifecycle.ops.airflow_env.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "lifecycle.ops.airflow_env.SQLITE_CONNECT_ARGS",
        # One admin account whose password is generated into secrets/ (printed by `make up`, read by the demo's
        # and the tests' REST client); Airflow's default would make every caller an admin.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.secrets_dir / PASSWORDS_FILE),
        # Connection passwords and variables are stored encrypted in the metadata DB.
        "AIRFLOW__CORE__FERNET_KEY": fernet_key(paths),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": paths.secret("jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": paths.secret("api_secret_key"),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(time_schedules),
        # Heavy libraries the scheduler pre-imports so that forked task processes start warm
        # (see airflow_config/airflow_local_settings.py and bench/orchestration.py).
        "LIFECYCLE_PRELOAD": preload or os.environ.get("LIFECYCLE_PRELOAD", "default"),
    }
    if os.environ.get("LIFECYCLE_TRACKING_URI"):
        env["LIFECYCLE_TRACKING_URI"] = os.environ["LIFECYCLE_TRACKING_URI"]
    if alerts_url:
        host_port = alerts_url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.partition(":")
        env["AIRFLOW_CONN_LIFECYCLE_ALERTS"] = json.dumps(
            {"conn_type": "http", "host": host, "port": int(port or 80),
             "extra": {"endpoint": "/" + alerts_url.split("://", 1)[1].partition("/")[2]}})
    return env


def local_settings_source() -> Path:
    return PROJECT_ROOT / "airflow_config" / "airflow_local_settings.py"


def prepare_home(paths: StatePaths | None = None) -> Path:
    """Create the Airflow home and link the project's local settings into its ``config/`` folder."""
    paths = paths or StatePaths.current()
    write_passwords_file(paths)
    config = paths.airflow_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    link = config / "airflow_local_settings.py"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(local_settings_source())
    return paths.airflow_home
