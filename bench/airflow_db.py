"""Airflow's metadata DB under what operators do at once: the embedded PostgreSQL against SQLite, in one run.

For each backend: a private state folder under .lifecycle/bench/airflow_db/, Airflow (API server, scheduler,
DAG processor) with LocalExecutor and the test DAG ``load_probe`` (one 2 s task per run, 4 runs at a time);
one run busy, then at once 20 REST triggers (no client retry) and ``airflow backfill create`` over 5 days.
Prints one line per backend, the ratios, then one JSON object as its last line.

    make bench-airflow-db            (BENCH_TRIGGERS to change the 20)
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / ".lifecycle" / "bench" / "airflow_db"
sys.path.insert(0, str(ROOT / "include"))

from lifecycle.ops import pgembedded, services  # noqa: E402
from lifecycle.ops.airflow_client import AirflowClient  # noqa: E402
from lifecycle.ops.loadcheck import run_load  # noqa: E402
from lifecycle.ops.stack import start_stack  # noqa: E402
from lifecycle.paths import StatePaths  # noqa: E402

TRIGGERS = int(os.environ.get("BENCH_TRIGGERS", "20"))
DAGS = ROOT / "tests" / "integration" / "load_dags"


def one(backend: str):
    state = BASE / backend
    paths = StatePaths(state)
    services.stop_all(paths)
    pgembedded.AirflowPostgres(paths).remove()
    shutil.rmtree(state, ignore_errors=True)
    os.environ["LIFECYCLE_HOME"] = str(state)
    os.environ["LIFECYCLE_AIRFLOW_DB"] = backend
    try:
        stack = start_stack(paths, api_port=services.free_port(), alerts_port=services.free_port(),
                            time_schedules=False, dags_folder=DAGS, with_gateway=False, preload="none",
                            components=("api-server", "scheduler", "dag-processor"), log=lambda _m: None)
        client = AirflowClient(stack.airflow_url)
        client.wait_for_dags(["load_probe"])
        client.unpause("load_probe")
        logs = [str(paths.run_dir / f"airflow-{c}.log") for c in ("api-server", "scheduler", "dag-processor")]
        return run_load(client, stack.env, "load_probe", triggers=TRIGGERS, logs=logs)
    finally:
        services.stop_all(paths)
        pgembedded.AirflowPostgres(paths).remove()


def main() -> None:
    results = {backend: one(backend) for backend in ("postgres", "sqlite")}
    for backend, r in results.items():
        print(r.line(f"{backend:8s}"))
    pg, lite = results["postgres"], results["sqlite"]
    p50 = {k: sorted(r.trigger_seconds)[len(r.trigger_seconds) // 2] for k, r in results.items()}
    ratio = lite.backfill_seconds / pg.backfill_seconds if pg.backfill_seconds else float("nan")
    print(f"ratios sqlite/postgres: trigger p50 {p50['sqlite'] / p50['postgres']:.2f}x, backfill create "
          f"{ratio:.2f}x")
    print(json.dumps({k: {"created": r.created, "http_5xx": r.server_errors, "timeouts": r.timeouts, "poll_errors": r.poll_errors, "lock_errors": r.lock_errors,
                          "backfill_rc": r.backfill_rc, "backfill_s": round(r.backfill_seconds, 2),
                          "trigger_p50_ms": round(p50[k] * 1000, 1), "all_done_s": r.all_done_seconds}
                      for k, r in results.items()}))


if __name__ == "__main__":
    main()
