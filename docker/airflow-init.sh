#!/usr/bin/env bash
# One-shot set-up of the compose topology (the airflow-init service of docker/compose.yaml), idempotent:
#   1. refuse to start with a secret left at its docker/.env.example placeholder, or an invalid Fernet key;
#   2. create the shared folders in the lifecycle-state volume (Airflow's task logs, the UI password file);
#   3. `airflow db migrate` (PostgreSQL);
#   4. the pools of airflow_settings.yaml: gpu = GPU_SLOTS (one slot per GPU the gpu workers have, default 1);
#   5. the UI admin's password (SimpleAuthManager's password file) from AIRFLOW_ADMIN_PASSWORD.
# Connections need no set-up: they are AIRFLOW_CONN_* variables of every Airflow service.
set -euo pipefail

bad="$(env | grep -E '^[A-Za-z_][A-Za-z0-9_]*=.*change-me' | cut -d= -f1 | sort || true)"
if [ -n "${bad}" ]; then
    echo "airflow-init: these variables still hold a placeholder from docker/.env.example; set real values in" \
         "docker/.env:" ${bad} >&2
    exit 1
fi
python - <<'PY'
import os
import sys

from cryptography.fernet import Fernet

try:
    Fernet(os.environ["AIRFLOW__CORE__FERNET_KEY"])
except (KeyError, ValueError) as err:
    sys.exit(f"airflow-init: AIRFLOW_FERNET_KEY in docker/.env is not a Fernet key ({err}); generate one with "
             "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
PY

mkdir -p "$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")" "${AIRFLOW__LOGGING__BASE_LOG_FOLDER}"

echo "airflow-init: migrating Airflow's metadata DB"
airflow db migrate

# airflow_settings.yaml: pool gpu, pool_slot "gpus" (one slot per GPU).
airflow pools set gpu "${GPU_SLOTS:-1}" "One slot per GPU; training tasks run here"

python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
password = os.environ.get("AIRFLOW_ADMIN_PASSWORD", "")
if not password:
    raise SystemExit("airflow-init: AIRFLOW_ADMIN_PASSWORD is empty (set it in docker/.env)")
passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
passwords["admin"] = password
path.write_text(json.dumps(passwords) + "\n")
path.chmod(0o600)
print(f"airflow-init: UI user admin, password from AIRFLOW_ADMIN_PASSWORD ({path})")
PY
echo "airflow-init: done"
