"""Drift computation on a large interval: the monitor's method vs Evidently's default preset on every row.

Data: a 10,000-row reference (what training stores) and a BENCH_ROWS-row current interval (default 10^6) with
20 columns (the credit_default features twice, from independent draws), under BENCH_SCENARIO (default a mild
covariate drift that puts several features near the 0.1 threshold, where a decision is easiest to change).

Each method runs in its own process (peak memory is per process; imports are excluded from the time):

* ``evidently_full``: Evidently ``DataDriftPreset()`` with its defaults on every row: the computation the
  decision must not differ from (its per-column scores are the reference; they equal a direct scipy
  computation to 1e-9, which the tests check).
* ``monitor``: what the monitor DAG does: quantile sketch to 20,000 values per column, Evidently drift +
  data summary, HTML report, error bounds.
* ``monitor_from_log``: the same, starting from the gateway's JSON-lines prediction log (read + parse + frame).
* ``random_50k``: Evidently with the same methods on a uniform random sample of 50,000 rows (the usual
  shortcut), for contrast.

Prints a table, then one JSON object as the last line.

    make bench-drift            BENCH_ROWS=200000 make bench-drift
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".lifecycle" / "bench" / "drift"
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
SCENARIO = os.environ.get("BENCH_SCENARIO", "covariate_drift:0.12")
METHODS = ("evidently_full", "monitor", "monitor_from_log", "random_50k")


def wide_spec():
    """credit_default with every feature twice (``<name>`` and ``<name>_b``): 20 columns."""
    from lifecycle.spec import get_spec

    spec = get_spec("credit_default")
    features = list(spec.data.features) + [f.model_copy(update={"name": f"{f.name}_b"}) for f in spec.data.features]
    return spec.model_copy(update={"data": spec.data.model_copy(update={"features": features})})


def frame(rows: int, day: dt.date, scenario: str):
    """``rows`` rows with 20 feature columns: two independent draws of the generator side by side."""
    import pandas as pd

    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import Scenario, generate_batch
    from lifecycle.spec import get_spec

    base = get_spec("credit_default")
    gen = base.data.generator.model_copy(update={"rows_per_day": rows})
    spec = base.model_copy(update={"data": base.data.model_copy(update={"generator": gen})})
    a = numpy_dtypes(generate_batch(spec, day, Scenario.parse(scenario)))
    b = numpy_dtypes(generate_batch(spec, day + dt.timedelta(days=100), Scenario.parse(scenario)))
    b = b[base.data.feature_names].add_suffix("_b")
    return pd.concat([a, b], axis=1)


def prepare() -> tuple[Path, Path, Path]:
    import numpy as np

    STATE.mkdir(parents=True, exist_ok=True)
    tag = f"{ROWS}_{SCENARIO.replace(':', '_')}"
    ref_path, cur_path, log_root = STATE / "reference.parquet", STATE / f"current_{tag}.parquet", STATE / f"log_{tag}"
    if not ref_path.exists():
        frame(10_000, dt.date(2026, 1, 1), "stable").to_parquet(ref_path)
    if not cur_path.exists():
        t = time.perf_counter()
        cur = frame(ROWS, dt.date(2026, 2, 1), SCENARIO)
        cur.to_parquet(cur_path)
        print(f"generated {ROWS} rows in {time.perf_counter() - t:.1f}s", flush=True)
    if not (log_root / "done").exists():
        import pandas as pd

        from lifecycle.ops.simulate import write_traffic_log

        t = time.perf_counter()
        cur = pd.read_parquet(cur_path)
        start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        write_traffic_log(wide_spec(), log_root, cur, version="1", probability=np.full(len(cur), 0.2),
                          threshold=0.5, start=start, end=start + dt.timedelta(hours=1), labels=False)
        (log_root / "done").touch()
        print(f"wrote {ROWS} rows of gateway prediction log in {time.perf_counter() - t:.1f}s", flush=True)
    return ref_path, cur_path, log_root


def measure(method: str, ref_path: Path, cur_path: Path, log_root: Path) -> dict:
    """Run one method in this process; return its time, peak memory and per-column scores."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from lifecycle.monitoring.drift import compute_drift, feature_kinds
    from lifecycle.monitoring.logs import read_interval
    from lifecycle.paths import StatePaths

    spec = wide_spec()
    numeric, categorical = feature_kinds(spec)
    cols = numeric + categorical
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path) if method != "monitor_from_log" else None
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    bounds: dict[str, float] = {}
    if method in ("evidently_full", "random_50k"):
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        kw = {} if method == "evidently_full" else {"num_method": "wasserstein", "cat_method": "jensenshannon"}
        data = cur[cols] if method == "evidently_full" else cur[cols].sample(50_000, random_state=1)
        snap = Report([DataDriftPreset(**kw)]).run(Dataset.from_pandas(data, data_definition=definition),
                                                   Dataset.from_pandas(ref[cols], data_definition=definition))
        scores = {m["config"]["column"]: float(m["value"]) for m in snap.dict()["metrics"]
                  if m["config"]["type"] == "evidently:metric_v2:ValueDrift"}
    else:
        if method == "monitor_from_log":
            start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
            cur = read_interval(spec, start, start + dt.timedelta(hours=1), StatePaths(log_root)).frame
        result = compute_drift(spec, ref, cur, prediction=False, html=STATE / f"{method}_drift_report.html")
        scores, bounds = result.scores, result.bounds
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "seconds": round(seconds, 2), "peak_mb": round(peak / 1024),
            "added_mb": round((peak - rss_before) / 1024), "rows": len(cur), "scores": scores, "bounds": bounds}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        paths = prepare()
        print(json.dumps(measure(sys.argv[2], *paths)))
        return
    prepare()
    spec = wide_spec()
    threshold, share_needed = spec.monitoring.feature_threshold, spec.monitoring.drift_share
    results = {}
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--one", method], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{method} failed:\n{out.stderr[-3000:]}")
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {method}: {results[method]['seconds']}s", flush=True)
    full = results["evidently_full"]["scores"]
    full_drifted = {c for c, v in full.items() if v >= threshold}
    full_decision = len(full_drifted) / len(full) >= share_needed
    print(f"\n{ROWS:,} rows x {len(full)} columns, scenario {SCENARIO}; reference 10,000 rows; feature threshold "
          f"{threshold}, drift share {share_needed}")
    print(f"{'method':<18}{'seconds':>9}{'peak MB':>9}{'drifted':>9}{'share':>7}{'interval':>10}"
          f"{'max |dScore|':>14}{'flips':>7}{'vs full':>9}")
    rows = {}
    for method, r in results.items():
        drifted = {c for c, v in r["scores"].items() if v >= threshold}
        share = len(drifted) / len(r["scores"])
        diff = max(abs(r["scores"][c] - full[c]) for c in full)
        flips = len(drifted ^ full_drifted)
        rows[method] = {"seconds": r["seconds"], "peak_mb": r["peak_mb"], "drifted": len(drifted),
                        "share": round(share, 3), "drift": share >= share_needed, "max_score_diff": round(diff, 5),
                        "feature_flips": flips, "speedup": round(results["evidently_full"]["seconds"] / r["seconds"], 1),
                        "max_bound": round(max(r["bounds"].values()), 5) if r["bounds"] else None}
        print(f"{method:<18}{r['seconds']:>9.2f}{r['peak_mb']:>9}{len(drifted):>9}{share:>7.2f}"
              f"{'DRIFT' if share >= share_needed else 'ok':>10}{diff:>14.5f}{flips:>7}"
              f"{rows[method]['speedup']:>8.1f}x")
    near = sorted((abs(v - threshold), c) for c, v in full.items())[:3]
    print("closest to the threshold (full scores): " + ", ".join(f"{c} {full[c]:.4f}" for _, c in near))
    print(f"monitor's largest sketch error bound: {rows['monitor']['max_bound']}")
    print(json.dumps({"bench": "drift", "rows": ROWS, "columns": len(full), "scenario": SCENARIO,
                      "full_decision": full_decision, "methods": rows}))


if __name__ == "__main__":
    main()
