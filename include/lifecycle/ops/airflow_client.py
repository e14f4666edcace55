"""A small client of Airflow 3's public REST API (``/api/v2``): what the demo and tests need, as a real
client would do it: unpause, trigger with a data interval and conf, wait, read task states and logs."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    """Airflow's REST API refused a call; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, str]
    seconds: float


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class AirflowClient:
    def __init__(self, base_url: str, username: str = "admin", password: str | None = None,
                 timeout: float = 30) -> None:
        """``password``: default the generated admin password of the current state folder
        (``secrets/airflow_admin_password``)."""
        from lifecycle.ops.airflow_env import admin_password

        self.base = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base, timeout=timeout)
        self._login(username, admin_password() if password is None else password)

    def _login(self, username: str, password: str) -> None:
        resp = self.http.post("/auth/token", json={"username": username, "password": password})
        if resp.status_code in (401, 403):
            raise AirflowAPIError(f"Airflow at {self.base} refused the login of {username!r} (HTTP "
                                  f"{resp.status_code}): the admin password is in secrets/airflow_admin_password "
                                  "of the state folder that started it", resp.status_code)
        if resp.status_code >= 400:
            raise AirflowAPIError(f"POST /auth/token: HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def _req(self, method: str, path: str, **kw: Any) -> Any:
        """One API call; a transient server error (HTTP 5xx, e.g. SQLite "database is locked") is retried
        3 times. Safe for POSTs too: a failed transaction created nothing, and a repeat that finds the object
        answers 409, which the caller handles."""
        for attempt in range(4):
            resp = self.http.request(method, f"/api/v2{path}", **kw)
            if resp.status_code < 500 or attempt == 3:
                break
            time.sleep(1 + 2 * attempt)
        if resp.status_code >= 400:
            raise AirflowAPIError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}", resp.status_code)
        return resp.json() if resp.content else None

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the DAG processor has parsed every DAG (and report import errors if it never does)."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            missing = [d for d in dag_ids if self.http.get(f"/api/v2/dags/{d}").status_code != 200]
            if not missing:
                return
            time.sleep(2)
        errors = self._req("GET", "/importErrors").get("import_errors", [])
        raise AirflowAPIError(f"DAGs never appeared: {missing}; import errors: "
                              f"{[e.get('stack_trace', '')[-500:] for e in errors]}")

    def unpause(self, dag_id: str) -> None:
        self._req("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._req("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def trigger(self, dag_id: str, *, run_id: str, interval: tuple[dt.datetime, dt.datetime] | None = None,
                conf: dict[str, Any] | None = None, note: str | None = None) -> str:
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        if interval:
            body.update(logical_date=_iso(interval[0]), data_interval_start=_iso(interval[0]),
                        data_interval_end=_iso(interval[1]))
        if note:
            body["note"] = note
        try:
            return self._req("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]
        except AirflowAPIError as err:  # a retried POST whose first try did commit
            if err.status == 409 and self._req("GET", f"/dags/{dag_id}/dagRuns/{run_id}"):
                return run_id
            raise

    def dag_runs(self, dag_id: str, *, order_by: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The DAG's runs as the API lists them (``dag_run_id``, ``state``, ``run_after``, ...), at most ``limit``,
        sorted by ``order_by`` (a field, ``-`` first for descending, e.g. ``"-run_after"``) if given."""
        params: dict[str, Any] = {"limit": limit}
        if order_by:
            params["order_by"] = order_by
        return self._req("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's backfills (``id``, ``completed_at`` null while one runs, ...)."""
        return self._req("GET", "/backfills", params={"dag_id": dag_id})["backfills"]

    def _upsert(self, collection: str, key: str, body: dict[str, Any]) -> None:
        if self.http.get(f"/api/v2/{collection}/{key}").status_code == 200:
            self._req("PATCH", f"/{collection}/{key}", json=body)
        else:
            self._req("POST", f"/{collection}", json=body)

    def upsert_pool(self, body: dict[str, Any]) -> None:
        """Create the pool ``body["name"]`` or update it to ``body`` (``slots``, ``description``,
        ``include_deferred``)."""
        self._upsert("pools", body["name"], body)

    def upsert_connection(self, body: dict[str, Any]) -> None:
        """Create the connection ``body["connection_id"]`` or update it to ``body`` (``conn_type``, ``host``,
        ``port``, ``login``, ``password``, ``schema``, ``extra`` as a JSON string, ``description``)."""
        self._upsert("connections", body["connection_id"], body)

    def upsert_variable(self, key: str, value: str) -> None:
        """Create the Airflow variable ``key`` or set it to ``value``."""
        self._upsert("variables", key, {"key": key, "value": value})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._req("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the API lists them (``task_id``, ``state``, ``start_date``, ...)."""
        return self._req("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance: state, try_number, queue, hostname, executor, ..."""
        return self._req("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task try's log as text, one line per structured log event (Airflow 3 serves JSON only)."""
        resp = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                             params={"full_content": "true"}, headers={"Accept": "application/json"})
        if resp.status_code != 200:
            return f"(log not available: HTTP {resp.status_code}: {resp.text[:300]})"
        content = resp.json().get("content", "")
        if isinstance(content, str):
            return content
        return "\n".join(" ".join(str(part) for part in (e.get("timestamp", ""), e.get("level", ""), e.get("event", ""))
                                   if part) for e in content if isinstance(e, dict))

    def wait(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2.0) -> RunResult:
        start = time.monotonic()
        while True:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL:
                return RunResult(dag_id, run_id, state, self.task_states(dag_id, run_id), time.monotonic() - start)
            if time.monotonic() - start > timeout:
                raise AirflowAPIError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s: "
                                      f"{self.task_states(dag_id, run_id)}")
            time.sleep(poll)
