#!/usr/bin/env bash
# Run once by the postgres image (/docker-entrypoint-initdb.d) when the postgres-data volume is empty: one role
# and one database per client, each database owned by its role (PostgreSQL 15+ grants CREATE on the public
# schema only to the database owner):
#   airflow    Airflow's metadata DB and Celery's result backend
#   mlflow     the MLflow tracking store and model registry
#   lifecycle  the lifecycle ledger and the gateway's traffic state (LIFECYCLE_DB_URL)
# Passwords come from docker/.env (AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD, LIFECYCLE_DB_PASSWORD) through the
# postgres service's environment (DB_PASSWORD_<DATABASE>). A changed password in .env is
# NOT applied to an existing volume: ALTER ROLE by hand, or remove the volume.
# No `set -u`: the image sources this file when it is not executable.
set -eo pipefail

lifecycle_create_db() {
    local name="$1" password="$2"
    case "${password}" in
        "" | change-me*)
            echo "postgres-init: the password of role ${name} is unset or still the placeholder of" \
                 "docker/.env.example; set it in docker/.env" >&2
            exit 1 ;;
    esac
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v name="${name}" -v password="${password}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
    echo "postgres-init: created role and database ${name}"
}

lifecycle_create_db airflow "${DB_PASSWORD_AIRFLOW}"
lifecycle_create_db mlflow "${DB_PASSWORD_MLFLOW}"
lifecycle_create_db lifecycle "${DB_PASSWORD_LIFECYCLE}"
