"""The main job: the model lifecycle on the embedded default, driven through Airflow's REST API.

1. reset ``.lifecycle/`` (unless ``KEEP_STATE=1``) and start Airflow + the alert receiver;
2. land a week of daily batches (one with out-of-range values, one with a missing column);
3. trigger the data gate for each day: good batches are validated, broken ones quarantined (ops alerted);
4. trigger the train DAG: v1 is trained on the validated batches only, passes the gate, becomes champion;
5. trigger a deliberately under-trained candidate: the gate rejects it with its reason;
6. write the HTML lifecycle report and ``.lifecycle/demo/summary.json``, print the timeline, stop services
   (unless ``KEEP=1``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.spec import ModelSpec, get_spec

DEMO_MODEL = "credit_default"
FIRST_DAY = dt.date(2026, 1, 1)
#: Day offset -> scenario of that day's batch.
TIMELINE = {0: "stable", 1: "stable", 2: "stable", 3: "broken:out_of_range", 4: "stable", 5: "stable",
            6: "broken:missing_column"}


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _utc(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def _expect_success(client, result, paths: StatePaths) -> None:
    if result.state == "success":
        return
    failed = [t for t, s in result.tasks.items() if s == "failed"]
    for task in failed:
        log = client.task_log(result.dag_id, result.run_id, task)
        say(f"task {task} failed; last lines of its log:\n" + "\n".join(log.splitlines()[-30:]))
    raise SystemExit(f"demo: {result.dag_id} run {result.run_id} ended {result.state} (failed: {failed}); "
                     f"service logs in {paths.run_dir}")


def build_report(spec: ModelSpec, paths: StatePaths, links: dict[str, str]) -> Path:
    """Render the model's lifecycle report from the ledger and the registry."""
    from lifecycle.registry import Registry
    from lifecycle.report import VersionInfo, write_report

    registry = Registry(paths)
    aliases: dict[str, list[str]] = {}
    versions = []
    try:
        for alias, version in registry.aliases(spec.model_name).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in registry.versions(spec.model_name):
            run = registry.client.get_run(mv.run_id) if mv.run_id else None
            metrics = {k.removeprefix("test_"): v for k, v in (run.data.metrics if run else {}).items()
                       if k.startswith("test_") and "slice." not in k}
            versions.append(VersionInfo(str(mv.version), mv.tags.get("lifecycle.status", "?"),
                                        aliases.get(str(mv.version), []), metrics, dict(mv.tags)))
    except Exception as err:  # noqa: BLE001
        say(f"report: registry not readable ({type(err).__name__}); versions omitted")
    out = paths.reports / spec.name / "lifecycle.html"
    return write_report(spec.name, Ledger(paths.ledger_db).events(spec.name), versions, out, links=links,
                        report_dir=out.parent)


def write_summary(paths: StatePaths, *, airflow_url: str, gateway_url: str | None, report: Path) -> Path:
    from lifecycle.registry import tracking_uri

    summary: dict[str, Any] = {
        "tracking_uri": tracking_uri(paths),
        "airflow_url": airflow_url,
        "gateway_url": gateway_url,
        "report": str(report),
        "events": [e.public() for e in Ledger(paths.ledger_db).events()],
    }
    out = paths.root / "demo" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    return out


def print_timeline(paths: StatePaths) -> None:
    print("\nLifecycle timeline (ledger):")
    for e in Ledger(paths.ledger_db).events():
        who = f"v{e.version}" if e.version else "-"
        print(f"  {e.at}  {e.model:<16} {who:<4} {e.event:<18} {e.reason[:110]}")


def run(keep: bool = False, keep_state: bool = False) -> int:
    from lifecycle import services
    from lifecycle.airflow_client import AirflowClient
    from lifecycle.datagen import Scenario, land_batch
    from lifecycle.stack import start_stack

    started = time.monotonic()
    paths = StatePaths.current()
    if services.running(paths):
        say("stopping services left running by an earlier `make up` / `KEEP=1` demo")
        services.stop_all(paths)
    if not keep_state and paths.root.exists():
        say(f"resetting {paths.root} (set KEEP_STATE=1 to keep earlier state)")
        shutil.rmtree(paths.root)
    spec = get_spec(DEMO_MODEL)
    # The demo drives a simulated calendar (January 2026) itself: no cron runs for today's date.
    stack = start_stack(paths, time_schedules=False, log=say)
    try:
        client = AirflowClient(stack.airflow_url)
        gate_id, train_id = f"{spec.name}__data_gate", f"{spec.name}__train"
        client.wait_for_dags([gate_id, train_id])
        for dag_id in (gate_id, train_id):
            client.unpause(dag_id)

        days = [FIRST_DAY + dt.timedelta(days=i) for i in sorted(TIMELINE)]
        for i, day in enumerate(days):
            land_batch(spec, day, Scenario.parse(TIMELINE[i]), paths)
        say(f"landed {len(days)} daily batches {days[0]}..{days[-1]} "
            f"({sum(1 for s in TIMELINE.values() if s.startswith('broken'))} broken) in {paths.landing(spec.name)}")

        runs = [client.trigger(gate_id, run_id=f"demo_gate_{day}", interval=(_utc(day), _utc(day + dt.timedelta(1))),
                               note=f"demo: batch {day} ({TIMELINE[i]})") for i, day in enumerate(days)]
        say(f"triggered {len(runs)} data gate runs through the REST API; waiting")
        for run_id in runs:
            result = client.wait(gate_id, run_id, timeout=600)
            _expect_success(client, result, paths)
            verdict = "quarantined" if result.tasks.get("alert_quarantine") == "success" else "validated"
            say(f"  {run_id}: {verdict} ({result.seconds:.0f}s)")

        last = days[-1]
        interval = (_utc(last, 2), _utc(last + dt.timedelta(1), 2))
        run_id = client.trigger(train_id, run_id="demo_train_v1", interval=interval,
                                conf={"reason": "demo: first model on a week of validated data"})
        say(f"triggered {train_id} for the window ending {last}; waiting (training on CPU)")
        result = client.wait(train_id, run_id, timeout=900)
        _expect_success(client, result, paths)
        say(f"  {run_id}: {result.state} in {result.seconds:.0f}s")

        interval = (_utc(last + dt.timedelta(1), 2), _utc(last + dt.timedelta(2), 2))
        run_id = client.trigger(train_id, run_id="demo_train_undertrained", interval=interval, conf={
            "reason": "demo: deliberately under-trained candidate (1 epoch, tiny learning rate)",
            "force": True, "epochs": 1, "overrides": {"learning_rate": 0.00005}})
        say("triggered a deliberately under-trained candidate; the gate must reject it")
        result = client.wait(train_id, run_id, timeout=900)
        _expect_success(client, result, paths)
        say(f"  {run_id}: {result.state} in {result.seconds:.0f}s")

        mlflow_ui = f"mlflow ui --backend-store-uri {paths.tracking_uri} --port 5000"
        report = build_report(spec, paths, {"Airflow UI": stack.airflow_url, "MLflow UI (run: " + mlflow_ui + ")":
                                            "http://127.0.0.1:5000"})
        summary = write_summary(paths, airflow_url=stack.airflow_url, gateway_url=None, report=report)
        print_timeline(paths)
        alerts = paths.root / "demo" / "alerts.jsonl"
        n_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
        print(f"""
Done in {time.monotonic() - started:.0f}s.
  summary        {summary}
  report         {report}
  Airflow UI     {stack.airflow_url}   {'(still running: `make down` stops it)' if keep else '(stopped; `make up` restarts it)'}
  MLflow UI      {mlflow_ui}
  alerts         {alerts} ({n_alerts} received)
  GX reports     {paths.reports / spec.name / 'gx'} and {paths.quarantine(spec.name)}
""")
        return 0
    finally:
        if not keep:
            stopped = services.stop_all(paths)
            say(f"stopped {', '.join(stopped)}")


def main() -> None:
    sys.exit(run(keep=os.environ.get("KEEP") == "1", keep_state=os.environ.get("KEEP_STATE") == "1"))


if __name__ == "__main__":
    main()
