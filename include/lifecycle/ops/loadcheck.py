"""What operators do to Airflow at once, as a check: many REST triggers and a CLI backfill while the scheduler
and a DAG run are busy (issue 12's proof that the embedded default's metadata DB holds; the load test and
``make bench-airflow-db`` run it on PostgreSQL and on SQLite)."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field

import httpx

from lifecycle.ops import services
from lifecycle.ops.airflow_client import AirflowAPIError, AirflowClient

TIMEOUT = 0  #: the status recorded for a trigger that got no answer
LOCK_ERRORS = ("database is locked", "database table is locked")


@dataclass
class LoadResult:
    triggers: int
    statuses: list[int] = field(default_factory=list)
    trigger_seconds: list[float] = field(default_factory=list)
    backfill_rc: int | None = None
    backfill_seconds: float = 0.0
    backfill_output: str = ""
    lock_errors: int = 0
    finished_runs: int = 0
    all_done_seconds: float | None = None
    poll_errors: int = 0

    @property
    def server_errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500)

    @property
    def timeouts(self) -> int:
        return self.statuses.count(TIMEOUT)

    @property
    def created(self) -> int:
        return sum(1 for s in self.statuses if s == 200)

    def line(self, label: str) -> str:
        lat = sorted(self.trigger_seconds) or [0.0]
        done = f"{self.all_done_seconds:.0f}s" if self.all_done_seconds is not None else "not all finished"
        return (f"{label}: {self.created}/{self.triggers} REST triggers created, {self.server_errors} HTTP 5xx, "
                f"trigger p50 {lat[len(lat) // 2] * 1000:.0f} ms / max {lat[-1] * 1000:.0f} ms; CLI backfill "
                f"rc={self.backfill_rc} in {self.backfill_seconds:.1f}s; lock errors {self.lock_errors}; "
                f"{self.finished_runs} runs finished, all in {done}; {self.poll_errors} status polls unanswered")


def _count_lock_errors(text: str) -> int:
    return sum(text.count(e) for e in LOCK_ERRORS)


def run_load(client: AirflowClient, env: dict[str, str], dag_id: str, *, triggers: int = 20,
             backfill_days: int = 5, wait_seconds: float = 300, logs: list | None = None) -> LoadResult:
    """Start one run and wait until it is running; then, at once, ``triggers`` REST triggers (one thread each,
    no client-side retry: a 5xx counts) and ``airflow backfill create`` over ``backfill_days`` past days.
    Wait up to ``wait_seconds`` for every run to finish. ``logs``: service log files to scan for lock errors."""
    result = LoadResult(triggers=triggers)

    def runs() -> list[dict]:  # a poll the API does not answer (SQLite under load) counts, and is retried
        try:
            return client.dag_runs(dag_id, limit=200)
        except (httpx.HTTPError, AirflowAPIError):
            result.poll_errors += 1
            return []

    tag = dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    client.trigger(dag_id, run_id=f"busy_{tag}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(r["state"] == "running" for r in runs()):
            break
        time.sleep(0.5)
    start_gate = threading.Barrier(triggers + 1)
    lock = threading.Lock()

    def trigger(i: int) -> None:
        start_gate.wait()
        t0 = time.perf_counter()
        try:
            status = client.http.post(f"/api/v2/dags/{dag_id}/dagRuns",
                                      json={"dag_run_id": f"load_{tag}_{i:02d}", "logical_date": None}).status_code
        except httpx.HTTPError:  # no answer within the client's timeout (30 s)
            status = TIMEOUT
        with lock:
            result.statuses.append(status)
            result.trigger_seconds.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(triggers)]
    for t in threads:
        t.start()
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    full_env = {**os.environ, **env, "PATH": f"{services.venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(services.venv_bin() / "airflow"), "backfill", "create", "--dag-id", dag_id,
            "--from-date", (today - dt.timedelta(days=backfill_days)).isoformat(),
            "--to-date", (today - dt.timedelta(days=1)).isoformat(), "--reprocess-behavior", "completed"]
    start_gate.wait()
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=300)
    result.backfill_seconds = time.perf_counter() - t0
    result.backfill_rc = done.returncode
    result.backfill_output = (done.stdout + done.stderr)[-3000:]
    for t in threads:
        t.join()
    t_all = time.monotonic()
    deadline = t_all + wait_seconds
    expected = 1 + result.created + (backfill_days if done.returncode == 0 else 0)
    while time.monotonic() < deadline:
        result.finished_runs = max(result.finished_runs,
                                   sum(1 for r in runs() if r["state"] in ("success", "failed")))
        if result.finished_runs >= expected:
            result.all_done_seconds = time.monotonic() - t_all
            break
        time.sleep(2)
    result.lock_errors = _count_lock_errors(result.backfill_output)
    for path in logs or []:
        if os.path.exists(path):
            with open(path, errors="replace") as fh:
                result.lock_errors += _count_lock_errors(fh.read())
    return result
