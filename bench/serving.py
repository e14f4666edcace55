"""Serving throughput and latency: our gateway vs `mlflow models serve` and vs a no-op ASGI app, same model, same
load, same machine.

* ``gateway``: routes between two registered versions (90/10) with prediction logging and live stats on;
* ``gw-100``: version 1 takes all traffic, no shadow (the baseline for the next row);
* ``gw-shadow``: version 1 takes all traffic and every request is mirrored to version 2 off the response path
  (both predictions logged, paired live evidence): the champion's latency with shadow on vs ``gw-100``;
* ``noop``: a Starlette app that parses the same payload and answers a constant (``bench/noop_app.py``), under
  the same uvicorn settings: the ceiling of any Python ASGI server on this machine;
* ``mlflow``: ``mlflow models serve`` on version 1.

wrk drives each: 1 and 8 connections, 1-row and 100-row payloads, BENCH_SECONDS each. Prints a table, then one
JSON object (its headline: 1-row payloads at 8 connections) as the last line.

    make bench-serving
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".lifecycle" / "bench" / "serving"
os.environ["LIFECYCLE_HOME"] = str(STATE)
os.environ.pop("LIFECYCLE_TRACKING_URI", None)

from lifecycle.ops import services  # noqa: E402
from lifecycle.paths import StatePaths  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
TOKEN = "bench-admin-token-of-at-least-32-chars"  # the gateway refuses shorter ones
NAMES = ("gateway", "gw-100", "gw-shadow", "noop", "mlflow")
FULL = [(1, 1), (1, 8), (100, 1), (100, 8)]
ONE_ROW = [(1, 1), (1, 8)]


def prepare(paths: StatePaths) -> list[dict]:
    """Two registered versions trained on three validated days; returns 100 request rows."""
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch, land_batch
    from lifecycle.data.validation import gate_batch
    from lifecycle.registry.store import CHAMPION, Registry
    from lifecycle.spec import get_spec
    from lifecycle.training import flow as tf

    spec = get_spec("credit_default")
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(3)]
    for day in days:
        land_batch(spec, day, paths=paths)
        gate_batch(spec, day, paths=paths)
    registry = Registry(paths)
    for seed in (1, 2):
        trained = tf.train_candidate(spec, days[-1], f"bench-{seed}", epochs=3, overrides={"seed": seed},
                                     paths=paths)
        registry.register(spec.model_name, trained["model_uri"], trained["run_id"],
                          {"lifecycle.dag_run_id": f"bench-{seed}"}, model_id=trained["model_id"])
    registry.set_alias(spec.model_name, CHAMPION, "1")
    frame = numpy_dtypes(generate_batch(spec, dt.date(2026, 2, 1)))[spec.data.feature_names].head(100)
    return json.loads(frame.to_json(orient="records"))


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{path}", "r")
wrk.body = f:read("*a")
f:close()
"""


def wrk(url: str, body: bytes, connections: int) -> dict[str, float]:
    bodyfile = STATE / f"body-{len(body)}.json"
    bodyfile.write_bytes(body)
    script = STATE / f"post-{len(body)}.lua"
    script.write_text(LUA.format(path=bodyfile))
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{SECONDS}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def wait_ready(url: str, timeout: float = 180) -> None:
    services.wait_http(url, timeout=timeout, what=url)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench-serving needs wrk (apt-get install wrk); `make bench-serving` installs it")
    paths = StatePaths.current()
    services.stop_all(paths)
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    print("bench: training two versions for the registry ...", flush=True)
    rows = prepare(paths)
    gw_port, ml_port, noop_port = services.free_port(), services.free_port(), services.free_port()
    env = {"LIFECYCLE_HOME": str(STATE), "LIFECYCLE_GATEWAY_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": paths.tracking_uri}
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in NAMES}
    try:
        services.start("bench-gateway", [sys.executable, "-m", "lifecycle.serving", "--port", str(gw_port),
                                         "--models", "credit_default"], env, paths)
        services.start("bench-mlflow", [str(services.venv_bin() / "mlflow"), "models", "serve", "-m",
                                        "models:/credit_default/1", "--env-manager", "local", "-h", "127.0.0.1",
                                        "-p", str(ml_port)], env, paths)
        services.start("bench-noop", [sys.executable, str(ROOT / "bench" / "noop_app.py"), str(noop_port)], env,
                       paths)
        wait_ready(f"http://127.0.0.1:{gw_port}/readyz")
        import httpx

        admin = {"Authorization": f"Bearer {TOKEN}"}
        base = f"http://127.0.0.1:{gw_port}/admin/models/credit_default"
        httpx.post(f"{base}/versions/2/load", headers=admin, timeout=120).raise_for_status()
        wait_ready(f"http://127.0.0.1:{ml_port}/ping")
        wait_ready(f"http://127.0.0.1:{noop_port}/ping")
        gateway = (f"http://127.0.0.1:{gw_port}/v1/models/credit_default/predict",
                   lambda r: json.dumps(r if len(r) > 1 else r[0]).encode())

        def traffic(weights: dict[str, int], shadow: bool) -> None:
            httpx.put(f"{base}/traffic", headers=admin, json={"weights": weights, "reason": "bench"},
                      timeout=30).raise_for_status()
            if shadow:
                httpx.put(f"{base}/shadow", headers=admin, json={"champion": "1", "challenger": "2"},
                          timeout=30).raise_for_status()
            else:
                httpx.delete(f"{base}/shadow", headers=admin, timeout=30).raise_for_status()

        plan = [  # (name, url and encoder, set-up, the (rows, connections) it runs)
            ("gateway", gateway, lambda: traffic({"1": 90, "2": 10}, False), FULL),
            ("gw-100", gateway, lambda: traffic({"1": 100}, False), ONE_ROW),
            ("gw-shadow", gateway, lambda: traffic({"1": 100}, True), FULL),
            ("noop", (f"http://127.0.0.1:{noop_port}/predict", gateway[1]), None, FULL),
            ("mlflow", (f"http://127.0.0.1:{ml_port}/invocations",
                        lambda r: json.dumps({"dataframe_records": r}).encode()), None, FULL),
        ]
        for name, (url, encode), setup, runs in plan:
            if setup is not None:
                setup()
            for n_rows, conns in runs:
                r = wrk(url, encode(rows[:n_rows]), conns)
                results[name][f"rows{n_rows}_c{conns}"] = r
                print(f"  {name:<10} rows={n_rows:<4} connections={conns}: {r['rps']:>8.0f} req/s, "
                      f"p99 {r['p99_ms']:>7.2f} ms, non-2xx {r['non_2xx']}", flush=True)
    finally:
        services.stop_all(paths)

    print(f"\n{'payload':<8}{'conns':>6}" + "".join(f"{n + ' req/s':>17}{'p99 ms':>8}" for n in NAMES)
          + f"{'gw/mlflow':>11}{'gw/noop':>9}")
    for key in results["gateway"]:
        rows_, conns = key.split("_")
        cells = "".join(f"{results[n][key]['rps']:>17.0f}{results[n][key]['p99_ms']:>8.2f}" if key in results[n]
                        else f"{'-':>17}{'-':>8}" for n in NAMES)
        g = results["gateway"][key]["rps"]
        print(f"{rows_:<8}{conns[1:]:>6}{cells}{g / results['mlflow'][key]['rps']:>10.1f}x"
              f"{g / results['noop'][key]['rps']:>8.0%}")
    head = {name: results[name]["rows1_c8"] for name in NAMES}
    print(json.dumps({
        "gateway_rps": round(head["gateway"]["rps"], 1), "gateway_p99_ms": round(head["gateway"]["p99_ms"], 2),
        "gateway_shadow_rps": round(head["gw-shadow"]["rps"], 1),
        "gateway_shadow_p99_ms": round(head["gw-shadow"]["p99_ms"], 2),
        "gateway_no_shadow_p99_ms": round(head["gw-100"]["p99_ms"], 2),
        "shadow_p99_delta_ms": round(head["gw-shadow"]["p99_ms"] - head["gw-100"]["p99_ms"], 2),
        "shadow_p99_delta_ms_c1": round(results["gw-shadow"]["rows1_c1"]["p99_ms"]
                                        - results["gw-100"]["rows1_c1"]["p99_ms"], 2),
        "noop_rps": round(head["noop"]["rps"], 1), "noop_p99_ms": round(head["noop"]["p99_ms"], 2),
        "gateway_shadow_share_of_noop": round(head["gw-shadow"]["rps"] / head["noop"]["rps"], 3),
        "mlflow_rps": round(head["mlflow"]["rps"], 1), "mlflow_p99_ms": round(head["mlflow"]["p99_ms"], 2),
        "rps_ratio": round(head["gateway"]["rps"] / head["mlflow"]["rps"], 2),
        "gateway_errors": sum(r["non_2xx"] for name in NAMES[:3] for r in results[name].values()),
        "seconds_per_run": SECONDS, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }))


if __name__ == "__main__":
    main()
