"""Per-task overhead of the real Airflow scheduler, and what preloading heavy imports saves.

Runs on the embedded default (SQLite + LocalExecutor, a private state folder under .lifecycle/bench/):
1. a chain of N no-op tasks through the real scheduler vs the same N calls in-process;
2. a chain of M tasks that each import what our lifecycle tasks import (GX, MLflow, pandas, scikit-learn):
   first with a cold scheduler (every forked task imports them itself), then with the scheduler preloading
   them (airflow_config/airflow_local_settings.py), so forked tasks start warm.
Prints a table, then one JSON object as its last line.

    make bench-orchestration            (N=10, M=4; BENCH_N / BENCH_M to change)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".lifecycle" / "bench" / "orchestration"
os.environ["LIFECYCLE_HOME"] = str(STATE)
sys.path.insert(0, str(ROOT / "include"))

from lifecycle.clock import parse_utc  # noqa: E402
from lifecycle.ops import services  # noqa: E402
from lifecycle.ops.airflow_client import AirflowClient  # noqa: E402
from lifecycle.ops.stack import start_stack  # noqa: E402
from lifecycle.paths import StatePaths  # noqa: E402

N = int(os.environ.get("BENCH_N", "10"))
M = int(os.environ.get("BENCH_M", "4"))
HEAVY = "import pandas, pyarrow.parquet, sklearn.metrics, great_expectations, mlflow, mlflow.pyfunc"

DAGS = textwrap.dedent(f'''
    """Benchmark DAGs: a chain of no-op tasks, and a chain of tasks importing the lifecycle's heavy libraries."""
    import pendulum
    from airflow.sdk import dag, task, chain


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["bench"])
    def bench_noop_chain():
        chain(*[task(task_id=f"t{{i:02d}}")(lambda: None)() for i in range({N})])


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["bench"])
    def bench_import_chain():
        def heavy():
            import time
            t = time.perf_counter()
            {HEAVY}
            return time.perf_counter() - t
        chain(*[task(task_id=f"t{{i:02d}}")(heavy)() for i in range({M})])


    bench_noop_chain()
    bench_import_chain()
''')


def _ts(text: str) -> float:
    return parse_utc(text).timestamp()


def run_chain(client: AirflowClient, dag_id: str, tag: str) -> dict[str, float]:
    run_id = client.trigger(dag_id, run_id=f"{tag}_{int(time.time())}")
    result = client.wait(dag_id, run_id, timeout=900, poll=0.5)
    if result.state != "success":
        raise SystemExit(f"{dag_id} {result.state}: {result.tasks}")
    tis = sorted(client.task_instances(dag_id, run_id), key=lambda t: t["task_id"])
    starts = [_ts(t["start_date"]) for t in tis]
    ends = [_ts(t["end_date"]) for t in tis]
    gaps = [s - e for s, e in zip(starts[1:], ends[:-1], strict=True)]
    durations = [e - s for s, e in zip(starts, ends, strict=True)]
    return {"tasks": len(tis), "wall_s": ends[-1] - starts[0], "gap_s": sum(gaps) / len(gaps),
            "task_s": sum(durations) / len(durations)}


def cold_import_seconds() -> float:
    code = f"import time; t = time.perf_counter(); {HEAVY}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    paths = StatePaths.current()
    services.stop_all(paths)
    shutil.rmtree(STATE, ignore_errors=True)
    dags = STATE / "dags"
    dags.mkdir(parents=True)
    (dags / "bench_dags.py").write_text(DAGS)
    port = services.free_port()
    results: dict[str, dict[str, float]] = {}
    try:
        for preload in ("none", "default"):
            services.stop_all(paths)
            start_stack(paths, api_port=port, alerts_port=services.free_port(), time_schedules=False,
                        dags_folder=dags, preload=preload, components=("api-server", "scheduler", "dag-processor"),
                        log=lambda m: print(f"  {m}", flush=True))
            client = AirflowClient(f"http://127.0.0.1:{port}")
            client.wait_for_dags(["bench_noop_chain", "bench_import_chain"])
            if preload == "none":
                run_chain(client, "bench_noop_chain", "warmup")
                results["noop_chain"] = run_chain(client, "bench_noop_chain", "noop")
            results[f"import_chain_preload_{preload}"] = run_chain(client, "bench_import_chain", f"imp_{preload}")
    finally:
        services.stop_all(paths)

    t = time.perf_counter()
    for _ in range(N):
        (lambda: None)()
    inprocess_s = time.perf_counter() - t
    cold = cold_import_seconds()
    noop = results["noop_chain"]
    cold_chain, warm_chain = results["import_chain_preload_none"], results["import_chain_preload_default"]
    print(f"\n{'measure':<52}{'value':>12}")
    rows = [
        (f"no-op chain of {N} through the scheduler: wall (s)", noop["wall_s"]),
        ("  mean gap, one task's end to the next one's start (s)", noop["gap_s"]),
        ("  mean task duration (s)", noop["task_s"]),
        (f"same {N} calls in-process (s)", inprocess_s),
        ("cold import of GX+MLflow+pandas+sklearn, one process (s)", cold),
        (f"import chain of {M}, cold scheduler: mean task (s)", cold_chain["task_s"]),
        (f"import chain of {M}, preloading scheduler: mean task (s)", warm_chain["task_s"]),
        ("  saved per task by preloading (s)", cold_chain["task_s"] - warm_chain["task_s"]),
    ]
    for name, value in rows:
        print(f"{name:<60}{value:>10.3f}")
    summary = {
        "n_tasks": N, "scheduler_wall_s": round(noop["wall_s"], 3), "inprocess_wall_s": round(inprocess_s, 6),
        "scheduler_vs_inprocess_ratio": round(noop["wall_s"] / max(inprocess_s, 1e-9), 1),
        "per_task_gap_s": round(noop["gap_s"], 3), "cold_import_s": round(cold, 2),
        "task_s_cold": round(cold_chain["task_s"], 2), "task_s_preloaded": round(warm_chain["task_s"], 2),
        "preload_speedup": round(cold_chain["task_s"] / max(warm_chain["task_s"], 1e-9), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
