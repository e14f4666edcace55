"""Concurrent registry writers: the embedded SQLite store vs the MLflow server over PostgreSQL with S3 artifacts.

Each writer is its own process (spawn context: a fresh interpreter, like a separate Airflow task) and does
what a training task followed by a registration task does, once:

    create_run (mlflow.start_run) -> BENCH_METRICS x log_metric (one call each, as a training loop does)
    -> log_model (a tiny pyfunc with an explicit signature and explicit pip_requirements: no inference)
    -> end_run -> register (MlflowClient.create_model_version) -> set_alias (``w<i>``, one alias per writer)

k = BENCH_K writers (default 1, 4, 16) run together on one registered model per (backend, k), fresh for each.
Before the timed sequence every writer imports mlflow, points it at the backend the way the project does
(``lifecycle.registry.store.configure_mlflow`` + ``ensure_experiment``) and reads the registered model; also untimed:
one ``mlflow.pyfunc.save_model`` to a temporary folder, which pays the ~2 s of CPU the first model save in a
process spends building mlflow's module-to-package map (a real task pays it once too; timed here, it would
measure 16 processes sharing the CPUs, not the store). Then all writers wait on one barrier and start together.
Each backend first gets one untimed round with one writer (the server's first requests import code lazily and
create its S3 client), so the k=1 row is not a cold start.

The latency of *every* call is recorded, failed ones included (a "database is locked" costs SQLite's 20 s busy
timeout, which is part of the picture). Any exception counts as an error, and the writer goes on with the next
step that still makes sense (no register without a logged model, no alias without a version), so error rates
are comparable across backends. Afterwards the registered versions are counted: exactly k are expected, one per
writer's run (a duplicate would be a retried request committed twice; a missing one a failed registration), and
each writer's alias must point at its own version.

Backends (BENCH_BACKENDS, default ``sqlite,server``):

* ``sqlite``: tracking and registry URI ``sqlite:///.../mlflow.db`` with artifacts in a local folder, as the
  embedded default uses MLflow; every writer process opens its own connections.
* ``server``: the distributed topology's MLflow tracking server (``--workers 2``) over PostgreSQL with
  artifacts proxied to S3 (moto's server), started by ``lifecycle.ops.topology`` in a private state folder
  (``.lifecycle/bench/registry``) on free ports; only PostgreSQL, S3 and MLflow, stopped at the end.

MLflow's HTTP client retries 408/429/5xx answers and connection errors with its defaults (reported in the
JSON, not changed here): a retried call succeeds late rather than failing, so it shows in p99, not in the error
count; ``server_5xx`` counts the 5xx answers in the server's access log during each round.

Prints a table and one summary line per (backend, k), then one JSON object as the last line; ``target_met``:
the server path at k=16 had no errors and registered exactly 16 versions, none duplicated. On a small machine
shared with other work (2 cores here) the timings are noisy: compare orders of magnitude, not percents.

    make bench-registry        BENCH_K=1,4 BENCH_BACKENDS=sqlite BENCH_METRICS=20 make bench-registry
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".lifecycle" / "bench" / "registry"
os.environ["LIFECYCLE_HOME"] = str(STATE)
for _var in ("LIFECYCLE_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LIFECYCLE_DB_URL"):
    os.environ.pop(_var, None)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from lifecycle.ops import services  # noqa: E402
from lifecycle.paths import StatePaths  # noqa: E402

KS = [int(k) for k in os.environ.get("BENCH_K", "1,4,16").split(",") if k.strip()]
METRICS = int(os.environ.get("BENCH_METRICS", "50"))
BACKENDS = [b.strip() for b in os.environ.get("BENCH_BACKENDS", "sqlite,server").split(",") if b.strip()]
CALLS = ("create_run", "log_metric", "log_model", "end_run", "register", "set_alias")
EXPERIMENT = "bench-registry"
WRITER_TIMEOUT_S = 1800  # HTTP retries with backoff can take minutes per call


def _tiny_model():
    """A pyfunc that echoes its input; defined here so cloudpickle stores it by value (no project code)."""
    import warnings

    import mlflow.pyfunc

    # "add type hints to predict": mlflow forces that notice on (simplefilter "once"), so record and drop it;
    # the signature is given explicitly
    with warnings.catch_warnings(record=True):

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

    return Echo()


def writer(i: int, home: str, tracking: str | None, model_name: str, metrics: int, barrier, queue) -> None:
    """One writer process: untimed warm-up, barrier, then the timed sequence; puts its record on ``queue``."""
    import tempfile
    import threading

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - mlflow prints "View run ..." links on end_run
    out: dict = {"writer": i, "lat": {c: [] for c in CALLS}, "errors": {c: [] for c in CALLS},
                 "run_id": None, "version": None, "setup_error": None, "start": None, "end": None}
    if tracking:
        os.environ["LIFECYCLE_TRACKING_URI"] = tracking
    else:
        os.environ.pop("LIFECYCLE_TRACKING_URI", None)
    try:
        import logging

        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from lifecycle.registry.store import configure_mlflow, ensure_experiment

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # the per-call cloudpickle notice
        paths = StatePaths(Path(home))
        configure_mlflow(paths)
        exp_id = ensure_experiment(EXPERIMENT, paths)
        client = mlflow.MlflowClient()
        client.get_registered_model(model_name)
        model = _tiny_model()
        schema = Schema([ColSpec("double", "x")])
        signature = ModelSignature(inputs=schema, outputs=schema)
        requirements = [f"mlflow=={mlflow.__version__}"]
        with tempfile.TemporaryDirectory() as tmp:  # the first save in a process builds mlflow's package map
            mlflow.pyfunc.save_model(Path(tmp) / "m", python_model=model, signature=signature,
                                     pip_requirements=requirements)
    except Exception as err:  # noqa: BLE001 - reported as this writer's error
        out["setup_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
    try:
        barrier.wait(timeout=900)
    except threading.BrokenBarrierError:
        out["setup_error"] = out["setup_error"] or "barrier broken (another process failed to start)"
    if out["setup_error"]:
        queue.put(out)
        return

    def timed(call: str, fn):
        t = time.perf_counter()
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - every exception is a measured error
            text = str(err).strip().splitlines()
            out["errors"][call].append(f"{type(err).__name__}: {text[0][:300] if text else ''}")
            return None
        finally:
            out["lat"][call].append((time.perf_counter() - t) * 1000)

    out["start"] = time.perf_counter()  # CLOCK_MONOTONIC on Linux: comparable across the writer processes
    run = timed("create_run", lambda: mlflow.start_run(experiment_id=exp_id, run_name=f"bench writer {i}"))
    if run is not None:
        out["run_id"] = run.info.run_id
        for step in range(metrics):
            timed("log_metric", lambda s=step: mlflow.log_metric("loss", 1.0 / (s + 1), step=s))
        info = timed("log_model", lambda: mlflow.pyfunc.log_model(
            name="model", python_model=model, signature=signature, pip_requirements=requirements))
        timed("end_run", mlflow.end_run)
        if info is not None:
            mv = timed("register", lambda: client.create_model_version(
                model_name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id))
            if mv is not None:
                out["version"] = mv.version
                timed("set_alias", lambda: client.set_registered_model_alias(model_name, f"w{i}", mv.version))
    out["end"] = time.perf_counter()
    queue.put(out)


def prepare(home: Path, tracking: str | None, model_name: str) -> None:
    """Create the experiment (and the SQLite schema) and the shared registered model, untimed, in this process."""
    import mlflow

    from lifecycle.registry.store import configure_mlflow, ensure_experiment

    if tracking:
        os.environ["LIFECYCLE_TRACKING_URI"] = tracking
    else:
        os.environ.pop("LIFECYCLE_TRACKING_URI", None)
    try:
        paths = StatePaths(home)
        configure_mlflow(paths)
        ensure_experiment(EXPERIMENT, paths)
        mlflow.MlflowClient().create_registered_model(model_name)
    finally:
        os.environ.pop("LIFECYCLE_TRACKING_URI", None)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(values, q))


def run_k(backend: str, k: int, home: Path, tracking: str | None, warmup: bool = False) -> dict:
    import multiprocessing as mp

    model_name = f"bench-{backend}-{'warmup' if warmup else f'k{k}'}"
    prepare(home, tracking, model_name)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(i, str(home), tracking, model_name, METRICS, barrier, queue))
             for i in range(k)]
    # mlflow's "no input example" notice on every log_model: ignored from interpreter start in the writers
    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning"
    try:
        for p in procs:
            p.start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved
    t0 = time.perf_counter()
    try:
        barrier.wait(timeout=900)
    except Exception:  # noqa: BLE001 - the writers report their own setup errors
        barrier.abort()
    print(f"  {backend} {'warm-up round' if warmup else f'k={k}'}: {k} writer(s) ready in "
          f"{time.perf_counter() - t0:.1f}s, running ...", flush=True)
    records = []
    for _ in procs:
        try:
            records.append(queue.get(timeout=WRITER_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - a writer that died without reporting
            break
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return summarize(backend, k, home, tracking, model_name, records)


def summarize(backend: str, k: int, home: Path, tracking: str | None, model_name: str, records: list[dict]) -> dict:
    calls = {}
    for c in CALLS:
        lat = [x for r in records for x in r["lat"][c]]
        errs = [e for r in records for e in r["errors"][c]]
        calls[c] = {"n": len(lat), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                    "max_ms": max(lat) if lat else None, "errors": len(errs)}
    setup_errors = [r["setup_error"] for r in records if r["setup_error"]] + ["writer died without reporting"] * (
        k - len(records))
    all_errors = [e for r in records for c in CALLS for e in r["errors"][c]] + setup_errors
    n_calls = sum(v["n"] for v in calls.values())
    starts = [r["start"] for r in records if r["start"] is not None]
    ends = [r["end"] for r in records if r["end"] is not None]
    versions = verify(home, tracking, model_name, k, records)
    examples: dict[str, int] = {}
    for e in all_errors:
        examples[e] = examples.get(e, 0) + 1
    return {
        "backend": backend, "k": k, "metrics_per_writer": METRICS, "calls": calls,
        "wall_s": round(max(ends) - min(starts), 2) if starts and ends else None,
        "calls_total": n_calls, "errors_total": len(all_errors),
        "error_rate": round(len(all_errors) / max(n_calls + len(setup_errors), 1), 4),
        "database_locked": sum("database is locked" in e for e in all_errors),
        "setup_errors": len(setup_errors),
        "error_messages": dict(sorted(examples.items(), key=lambda kv: -kv[1])[:5]),
        **versions,
    }


def verify(home: Path, tracking: str | None, model_name: str, k: int, records: list[dict]) -> dict:
    """Versions in the registry vs the writers' runs: expected exactly one per writer."""
    import mlflow

    uri = tracking or f"sqlite:///{StatePaths(home).mlflow_db}"
    client = mlflow.MlflowClient(uri, uri)
    try:
        found = client.search_model_versions(f"name = '{model_name}'")
        aliases = dict(client.get_registered_model(model_name).aliases)
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        return {"versions_registered": None, "versions_expected": k, "verify_error": str(err)[:300]}
    per_run: dict[str, int] = {}
    for v in found:
        per_run[v.run_id] = per_run.get(v.run_id, 0) + 1
    runs = {r["run_id"] for r in records if r["run_id"]}
    alias_ok = sum(1 for r in records if r["version"] and str(aliases.get(f"w{r['writer']}")) == str(r["version"]))
    return {"versions_registered": len(found), "versions_expected": k,
            "versions_duplicated": sum(n - 1 for n in per_run.values()),
            "versions_missing": k - len(runs & per_run.keys()),
            "aliases_ok": alias_ok}


def warm_up(backend: str, home: Path, tracking: str | None) -> None:
    """One untimed writer sequence first: the server's lazy imports and S3 client, SQLite's schema and files."""
    r = run_k(backend, 1, home, tracking, warmup=True)
    if r["errors_total"]:
        print(f"  {backend} warm-up round: {r['errors_total']} errors: {r['error_messages']}", flush=True)


def start_server(paths: StatePaths):
    """PostgreSQL, the S3 endpoint and the MLflow server of the distributed topology, on free ports."""
    from lifecycle.ops import topology

    for var in ("LIFECYCLE_PG_PORT", "LIFECYCLE_REDIS_PORT", "LIFECYCLE_S3_PORT", "LIFECYCLE_MLFLOW_PORT"):
        os.environ[var] = str(services.free_port())
    os.environ.pop("LIFECYCLE_PG_DATA", None)
    topo = topology.Topology.for_state(paths)
    pg_bin = topology.ensure_packages()
    if Path(topo.pg_data).exists():  # a previous bench run's cluster: its password went with the state folder
        shutil.rmtree(topo.pg_data)
    paths.root.mkdir(parents=True, exist_ok=True)
    topo.save()
    t = time.perf_counter()
    topology.start_postgres(topo, paths, pg_bin)
    topology.start_s3(topo, paths)
    topology.start_mlflow(topo, paths)
    print(f"bench: PostgreSQL :{topo.pg_port}, S3 :{topo.s3_port}, MLflow server {topo.mlflow_url} up in "
          f"{time.perf_counter() - t:.0f}s", flush=True)
    return topo


def client_settings() -> dict:
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )
    from mlflow.utils.request_utils import _TRANSIENT_FAILURE_RESPONSE_CODES

    return {"http_max_retries": MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(),
            "http_backoff_factor": MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
            "http_backoff_jitter": MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get(),
            "http_timeout_s": MLFLOW_HTTP_REQUEST_TIMEOUT.get(),
            "http_retry_codes": sorted(_TRANSIENT_FAILURE_RESPONSE_CODES),
            "sqlite_busy_timeout_ms": 20000}


def server_log_5xx(paths: StatePaths, since: int) -> int:
    """5xx answers in the MLflow server's access log written since byte ``since`` (each one a client retry)."""
    import re

    log = paths.run_dir / "mlflow-server.log"
    if not log.exists():
        return 0
    with log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return len(re.findall(r'HTTP/1\.[01]" 5\d\d', text))


def log_size(paths: StatePaths) -> int:
    log = paths.run_dir / "mlflow-server.log"
    return log.stat().st_size if log.exists() else 0


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    import mlflow

    paths = StatePaths(STATE)
    services.stop_all(paths)  # a previous run that was interrupted
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    settings = client_settings()
    print(f"bench-registry: k={KS}, {METRICS} metrics/writer, backends {BACKENDS}, mlflow {mlflow.__version__}, "
          f"{os.cpu_count()} CPUs; client retries: {settings}", flush=True)
    results: list[dict] = []
    failures: dict[str, str] = {}
    for backend in BACKENDS:
        if backend == "sqlite":
            home = STATE / "sqlite"
            warm_up("sqlite", home, None)
            for k in KS:
                results.append(run_k("sqlite", k, home, None))
                print(f"  sqlite k={k}: {results[-1]['errors_total']} errors", flush=True)
        elif backend == "server":
            topo = None
            try:
                topo = start_server(paths)
                warm_up("server", paths.root, topo.mlflow_url)
                for k in KS:
                    mark = log_size(paths)
                    res = run_k("server", k, paths.root, topo.mlflow_url)
                    res["server_5xx"] = server_log_5xx(paths, mark)
                    results.append(res)
                    print(f"  server k={k}: {res['errors_total']} errors, {res['server_5xx']} 5xx answers",
                          flush=True)
            except Exception as err:  # noqa: BLE001 - reported; the other backend's figures still print
                failures["server"] = f"{type(err).__name__}: {str(err)[:500]}"
                print(f"bench: server backend failed: {failures['server']}", flush=True)
            finally:
                services.stop_all(paths)
                if topo is not None:
                    shutil.rmtree(topo.pg_data, ignore_errors=True)
        else:
            raise SystemExit(f"unknown backend {backend!r} in BENCH_BACKENDS (sqlite, server)")

    print(f"\n{'backend':<8}{'k':>4}  {'call':<11}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
    for r in results:
        for c in CALLS:
            s = r["calls"][c]
            print(f"{r['backend']:<8}{r['k']:>4}  {c:<11}{s['n']:>6}{fmt(s['p50_ms']):>10}{fmt(s['p99_ms']):>10}"
                  f"{fmt(s['max_ms']):>10}{s['errors']:>8}")
    print()
    for r in results:
        extra = f", server 5xx {r['server_5xx']}" if "server_5xx" in r else ""
        print(f"{r['backend']:<8} k={r['k']:<3} wall {fmt(r['wall_s'])} s, {r['calls_total']} calls, "
              f"{r['errors_total']} errors (rate {r['error_rate']:.2%}; 'database is locked' {r['database_locked']}), "
              f"versions {r['versions_registered']}/{r['versions_expected']} (duplicated "
              f"{r.get('versions_duplicated')}, missing {r.get('versions_missing')}), aliases ok "
              f"{r.get('aliases_ok')}/{r['k']}{extra}")
        for msg, n in r["error_messages"].items():
            print(f"    {n} x {msg}")
    for backend, msg in failures.items():
        print(f"{backend}: FAILED: {msg}")
    head = next((r for r in results if r["backend"] == "server" and r["k"] == 16), None)
    target = bool(head and head["errors_total"] == 0 and head["versions_registered"] == head["versions_expected"]
                  and head.get("versions_duplicated") == 0)
    for r in results:
        for s in r["calls"].values():
            for key in ("p50_ms", "p99_ms", "max_ms"):
                s[key] = None if s[key] is None else round(s[key], 2)
    print(json.dumps({"bench": "registry", "results": results, "target_met": target,
                      "target": "server path at k=16: 0 errors, exactly 16 versions, none duplicated",
                      "failures": failures, "client_retry_settings": settings, "mlflow": mlflow.__version__,
                      "cpus": os.cpu_count(), "python": sys.version.split()[0],
                      "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


if __name__ == "__main__":
    main()
