"""The main job: the model lifecycle on the embedded default, driven through Airflow's REST API.

1. reset ``.lifecycle/`` (unless ``KEEP_STATE=1``); start Airflow, the serving gateway, the alert receiver;
2. week 1: land daily batches (one with out-of-range values, one with a missing column) and gate them:
   good batches are validated, broken ones quarantined (ops alerted);
3. train v1 on the validated batches only: it passes the gate, becomes champion, the gateway serves it to a
   simulated client population (sticky customer ids, true outcomes reported back with a delay);
4. a deliberately under-trained candidate: the offline gate rejects it;
5. week 2: the upstream label join breaks (a concept-drift knob): the batches pass the data gate, the candidate
   trained on them beats the champion on its own held-out rows and passes the offline gate, but in shadow (it
   scores every request, no user sees its answers) the live outcomes judge it worse and it is rolled back before
   any user request is routed to it;
6. week 3: clean data again; the retrained candidate is canaried 5% -> 25% -> 100% and promoted;
7. week 4: the monitor DAG watches each simulated day of live traffic against the champion's reference with
   Evidently; two stable days pass; then the applicant population shifts (covariate drift): the monitor
   detects it in the first drifted interval, triggers the train DAG, and the retrained version is canaried
   and promoted;
8. retirement: v1 (no alias left, no traffic since week 3) is drained, archived with a sha256 manifest to the
   local archive, verified and retired; then restored once (a new version, weight 0) to prove the round trip;
9. write the HTML lifecycle report and ``.lifecycle/demo/summary.json``, print the timeline, stop services
   (unless ``KEEP=1``).

``LIFECYCLE_DEMO_SCENARIO=short`` keeps steps 1-3 and 7-9 and leaves out steps 4-6 (the under-trained candidate,
weeks 2 and 3) and the stable days of week 4 (the monitor watches the first drifted day): the data gate with its
quarantines, training, the monitor, the drift-triggered retrain canaried (shadow, ramp) and promoted, retirement
and restore, in less than half the time. The distributed test suite uses it (the embedded suite runs the full
scenario, where the rollback in shadow is).
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
from lifecycle.reporting.build import build_report
from lifecycle.spec import ModelSpec, get_spec

DEMO_MODEL = "credit_default"

FIRST_DAY = dt.date(2026, 1, 1)

DRIFT = "covariate_drift:0.5"  # week 4's applicant population: poorer, more indebted, more renters

#: Week -> day offset within the week -> scenario of that day's batch.
WEEKS = {
    1: {0: "stable", 1: "stable", 2: "stable", 3: "broken:out_of_range", 4: "stable", 5: "stable",
        6: "broken:missing_column"},
    2: dict.fromkeys(range(7), "concept_drift:2"),  # a broken label join upstream: invisible to GX
    3: dict.fromkeys(range(7), "stable"),
    4: {0: "stable", 1: "stable"} | dict.fromkeys(range(2, 7), DRIFT),  # the applicant population moves
}

CLIENT_RATE = 200.0  # requests per second from the simulated client population

MONITOR_SECONDS = 15.0  # wall-clock length of one simulated day of live traffic in week 4 (~3,000 requests)


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
        # A task can fail outside its own process (a resumed deferral, a heartbeat timeout): the scheduler says why.
        scheduler = paths.run_dir / "airflow-scheduler.log"
        if scheduler.exists():
            lines = [ln for ln in scheduler.read_text(errors="replace").splitlines()
                     if result.run_id in ln and task in ln]
            say(f"the scheduler's last lines on {task}:\n" + "\n".join(ln[:600] for ln in lines[-12:]))
    raise SystemExit(f"demo: {result.dag_id} run {result.run_id} ended {result.state} (failed: {failed}); "
                     f"service logs in {paths.run_dir}")


def write_summary(paths: StatePaths, *, airflow_url: str, gateway_url: str | None, report: Path) -> Path:
    from lifecycle.registry.store import tracking_uri

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


def week_days(week: int) -> list[dt.date]:
    first = FIRST_DAY + dt.timedelta(days=7 * (week - 1))
    return [first + dt.timedelta(days=i) for i in sorted(WEEKS[week])]


def land_week(client, spec: ModelSpec, paths: StatePaths, week: int) -> list[tuple[str, str]]:
    """Land a week of batches and trigger the data gate on each day through the REST API; don't wait.

    Returns (week label, run id) per day, for :func:`finish_gate`."""
    from lifecycle.data.synthetic import Scenario, land_batch

    gate_id = f"{spec.name}__data_gate"
    days = week_days(week)
    scenarios = WEEKS[week]
    for i, day in enumerate(days):
        land_batch(spec, day, Scenario.parse(scenarios[i]), paths)
    broken = sum(1 for v in scenarios.values() if v.startswith("broken"))
    say(f"week {week}: landed {len(days)} daily batches {days[0]}..{days[-1]}"
        + (f" ({broken} broken)" if broken else ""))
    return [(f"week {week}", client.trigger(gate_id, run_id=f"demo_gate_{day}",
                                            interval=(_utc(day), _utc(day + dt.timedelta(1))),
                                            note=f"demo: batch {day} ({scenarios[i]})"))
            for i, day in enumerate(days)]


def finish_gate(client, spec: ModelSpec, paths: StatePaths, runs: list[tuple[str, str]]) -> None:
    """Wait for the data gate runs :func:`land_week` started and print each day's verdict."""
    verdicts = []
    for _week, run_id in runs:
        result = client.wait(f"{spec.name}__data_gate", run_id, timeout=600)
        _expect_success(client, result, paths)
        verdicts.append("Q" if result.tasks.get("alert_quarantine") == "success" else "ok")
    say(f"  data gate ({runs[0][0]}): {' '.join(verdicts)}  (Q = quarantined)")


def gate_week(client, spec: ModelSpec, paths: StatePaths, week: int) -> None:
    """Land a week of batches and wait for the data gate's verdict on each day."""
    finish_gate(client, spec, paths, land_week(client, spec, paths, week))


def train(client, spec: ModelSpec, paths: StatePaths, run_id: str, last_day: dt.date, conf: dict) -> None:
    """Trigger the train DAG for the window ending ``last_day`` and report the registry outcome."""
    finish_train(client, spec, paths, start_train(client, spec, run_id, last_day, conf))


def start_train(client, spec: ModelSpec, run_id: str, last_day: dt.date, conf: dict) -> str:
    """Trigger the train DAG for the window ending ``last_day``; don't wait (:func:`finish_train`)."""
    interval = (_utc(last_day, 2), _utc(last_day + dt.timedelta(1), 2))
    return client.trigger(f"{spec.name}__train", run_id=run_id, interval=interval, conf=conf)


def finish_train(client, spec: ModelSpec, paths: StatePaths, run_id: str) -> None:
    """Wait for a train run and report the registry outcome (the gate's reason)."""
    result = client.wait(f"{spec.name}__train", run_id, timeout=900)
    _expect_success(client, result, paths)
    last = Ledger(paths.ledger_db).events(spec.name)
    gate = next((e for e in reversed(last) if e.event in ("gate_passed", "gate_rejected") and e.run_id == run_id),
                None)
    say(f"  {run_id}: {gate.reason if gate else result.tasks} ({result.seconds:.0f}s)")


def wait_serving(gateway_url: str, model: str, row: dict, timeout: float = 120) -> None:
    """Wait until the gateway answers a real prediction (it picks up the new champion within seconds)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.post(f"{gateway_url}/v1/models/{model}/predict", json=row).status_code == 200:
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: the gateway never started serving {model}")


def canary(client, deploy_id: str, paths: StatePaths, after: str) -> None:
    """Wait for the deploy run the train run's challenger asset started, and report how it ended."""
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and run_id is None:
        runs = client.dag_runs(deploy_id, order_by="-run_after", limit=5)
        fresh = [r for r in runs if r["dag_run_id"] == f"canary__{after}"]
        if fresh:
            run_id = fresh[0]["dag_run_id"]
        else:
            time.sleep(2)
    if run_id is None:
        raise SystemExit(f"demo: no deploy run started after {after} (did it register a challenger?)")
    say(f"  {after} registered a challenger and started {deploy_id} run {run_id}; canary in progress")
    result = client.wait(deploy_id, run_id, timeout=1500, poll=3)
    _expect_success(client, result, paths)
    events = [e for e in Ledger(paths.ledger_db).events() if e.run_id == run_id]
    shadow = next((e for e in events if e.event == "shadow_verdict"), None)
    shifts = [e for e in events if e.event == "canary_step" and "weights" in e.details]
    final = next((e for e in reversed(events) if e.event in ("promoted", "rolled_back")), None)
    if shadow:
        say(f"  shadow: {shadow.reason}")
    evidence = (final.details.get("evidence") or {}) if final else {}
    exposure = (f"; user requests answered by v{final.version}: {evidence['served_x']}"
                if final and "served_x" in evidence else "")
    in_shadow = bool(final and final.event == "rolled_back"
                     and (final.details.get("verdict") or {}).get("stage") == "shadow")
    outcome = ("rolled back in shadow (the reason above)" if in_shadow else
               f"{final.event}: {final.reason}" if final else "no outcome recorded")
    say(f"  canary: {len(shifts)} traffic step(s); {outcome}{exposure} ({result.seconds:.0f}s)")


def monitor_week(client, spec: ModelSpec, paths: StatePaths, clients, stable_days: int = 2) -> str | None:
    """One monitor run per simulated day of week 4, on the wall-clock window that day's traffic took; only the
    first ``stable_days`` of its stable days are watched. A day's monitor run executes while the next day's
    traffic flows, as the hourly runs of `make up` do.

    Returns the train run the monitor triggered (None if it never fired)."""
    monitor_id = f"{spec.name}__monitor"
    stable = [i for i, scenario in WEEKS[4].items() if scenario == "stable"]
    plan = [(day, WEEKS[4][i]) for i, day in enumerate(week_days(4)) if i not in stable[stable_days:]]
    pending = None  # (run id, day, scenario, start, end) of the monitor run in flight
    for day, scenario in [*plan, (None, None)]:
        if day is not None:
            clients.switch(scenario)
        start = dt.datetime.now(dt.UTC)
        if pending:
            fired = _monitor_result(client, spec, paths, monitor_id, *pending)
            if fired:
                return fired
        if day is None:
            return None
        time.sleep(max(0.0, MONITOR_SECONDS - (dt.datetime.now(dt.UTC) - start).total_seconds()))
        end = dt.datetime.now(dt.UTC)
        run_id = f"demo_monitor_{day}"
        client.trigger(monitor_id, run_id=run_id, interval=(start, end), note=f"demo: live traffic of {day} "
                       f"({scenario})")
        pending = (run_id, day, scenario, start, end)
    return None


def _monitor_result(client, spec: ModelSpec, paths: StatePaths, monitor_id: str, run_id: str, day: dt.date,
                    scenario: str, start: dt.datetime, end: dt.datetime) -> str | None:
    """Wait for one monitor run, print its verdict; -> the train run it triggered, if it fired."""
    from lifecycle.monitoring.run import report_dir

    result = client.wait(monitor_id, run_id, timeout=600)
    _expect_success(client, result, paths)
    summary = json.loads((report_dir(spec, start, end, paths) / "drift_summary.json").read_text())
    fired = result.tasks.get("trigger_retrain") == "success"
    say(f"  monitor {day} ({scenario}): {summary['rows']} rows, {summary['labels']} labels, drift share "
        f"{summary['drift_share']:.2f} ({', '.join(summary['drifted']) or 'no feature drifted'}); "
        + ("RETRAIN triggered" if fired else "no retrain") + f" ({result.seconds:.0f}s)")
    return f"drift__{run_id}" if fired else None


def retire_and_restore(client, spec: ModelSpec, paths: StatePaths, version: int) -> None:
    """Retire ``version`` through the retire DAG, then restore it once through the restore DAG."""
    retire_id, restore_id = f"{spec.name}__retire", f"{spec.name}__restore"
    for dag_id in (retire_id, restore_id):
        client.unpause(dag_id)
    say(f"retirement: v{version} has no alias left and serves no traffic; drain, archive, verify, retire")
    run_id = f"demo_retire_v{version}"
    client.trigger(retire_id, run_id=run_id, conf={"version": version, "reason": "demo: superseded; no "
                                                   "traffic since a newer champion took over"})
    result = client.wait(retire_id, run_id, timeout=600)
    _expect_success(client, result, paths)
    ledger = Ledger(paths.ledger_db)
    archived = next(e for e in reversed(ledger.events(spec.name, "archived")) if e.version == str(version))
    say(f"  {archived.reason} ({result.seconds:.0f}s)")
    run_id = f"demo_restore_v{version}"
    client.trigger(restore_id, run_id=run_id, conf={"version": version})
    result = client.wait(restore_id, run_id, timeout=600)
    _expect_success(client, result, paths)
    restored = ledger.last(spec.name, "restored")
    say(f"  {restored.reason if restored else result.tasks}; loaded in the gateway with weight 0 "
        f"({result.seconds:.0f}s)")


def run(keep: bool = False, keep_state: bool = False, short: bool = False) -> int:
    from lifecycle.ops import services
    from lifecycle.ops.airflow_client import AirflowClient
    from lifecycle.ops.simulate import ClientPopulation
    from lifecycle.ops.stack import start_stack

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
        client.wait_for_dags([gate_id, train_id, f"{spec.name}__deploy", f"{spec.name}__rollback",
                              f"{spec.name}__monitor", f"{spec.name}__retire", f"{spec.name}__restore"])
        for dag_id in (gate_id, train_id):
            client.unpause(dag_id)

        deploy_id = f"{spec.name}__deploy"
        client.unpause(deploy_id)
        gate_week(client, spec, paths, 1)
        last = week_days(1)[-1]
        train(client, spec, paths, "demo_train_v1", last, {"reason": "demo: first model on a week of validated data"})

        say("starting the simulated client population against the gateway "
            f"({CLIENT_RATE:.0f} req/s, sticky customer ids, outcomes reported 0.5-3 s later)")
        clients = ClientPopulation(spec, stack.gateway_url, rate=CLIENT_RATE, feedback_delay=(0.5, 3.0))
        wait_serving(stack.gateway_url, spec.name, clients.applicants[0][0])
        clients.start()
        try:
            if short:  # the distributed suite: no under-trained candidate, no week 2 or 3
                gate_week(client, spec, paths, 4)
            else:
                # The under-trained candidate trains on week 1's batches again (as_of: its window does not
                # depend on how far week 2's gate, running meanwhile, has got; force: the same batches as v1).
                undertrained = start_train(client, spec, "demo_train_undertrained", last + dt.timedelta(1), {
                    "reason": "demo: deliberately under-trained candidate (1 epoch, tiny learning rate)",
                    "as_of": last.isoformat(), "force": True, "epochs": 1, "overrides": {"learning_rate": 0.00005}})
                gating = land_week(client, spec, paths, 2)
                finish_train(client, spec, paths, undertrained)
                finish_gate(client, spec, paths, gating)
                say("week 2: the label join upstream broke; batches still pass the data gate")
                train(client, spec, paths, "demo_train_week2", week_days(2)[-1],
                      {"reason": "demo: nightly retrain on week 2 (silently mislabelled)"})
                # Batches keep arriving while a deploy runs: the next week's data gate runs beside the canary.
                gating = land_week(client, spec, paths, 3)
                canary(client, deploy_id, paths, after="demo_train_week2")
                finish_gate(client, spec, paths, gating)

                train(client, spec, paths, "demo_train_week3", week_days(3)[-1],
                      {"reason": "demo: nightly retrain on week 3 (clean data)"})
                gating = land_week(client, spec, paths, 4)
                canary(client, deploy_id, paths, after="demo_train_week3")
                finish_gate(client, spec, paths, gating)

            say(f"week 4: the monitor DAG compares each day of live traffic with the champion's reference "
                f"(Evidently); from {week_days(4)[2]} the applicant population shifts ({DRIFT})")
            client.unpause(f"{spec.name}__monitor")
            retrain = monitor_week(client, spec, paths, clients, stable_days=0 if short else 2)
            if retrain is None:
                raise SystemExit("demo: the monitor never detected the covariate drift")
            result = client.wait(train_id, retrain, timeout=900)
            _expect_success(client, result, paths)
            gate = next((e for e in reversed(Ledger(paths.ledger_db).events(spec.name))
                         if e.event in ("gate_passed", "gate_rejected") and e.run_id == retrain), None)
            say(f"  {retrain}: {gate.reason if gate else result.tasks} ({result.seconds:.0f}s)")
            canary(client, deploy_id, paths, after=retrain)
            retire_and_restore(client, spec, paths, version=1)
        finally:
            stats = clients.stop()
        say(f"client population: {stats['sent']} requests, {stats['ok']} answered, {stats['failed']} failed, "
            f"{stats['feedback']} outcomes reported; statuses {stats['statuses']}"
            + (f", transport errors {stats['errors']}" if stats["errors"] else ""))

        if paths.tracking_uri.startswith("http"):  # the distributed topology's MLflow server serves its UI
            mlflow_ui, mlflow_link = f"{paths.tracking_uri}   (the MLflow server)", {"MLflow UI": paths.tracking_uri}
        else:
            mlflow_ui = f"mlflow ui --backend-store-uri {paths.tracking_uri} --port 5000"
            mlflow_link = {"MLflow UI (run: " + mlflow_ui + ")": "http://127.0.0.1:5000"}
        report = build_report(spec, paths, {"Airflow UI": stack.airflow_url, **mlflow_link})
        summary = write_summary(paths, airflow_url=stack.airflow_url, gateway_url=stack.gateway_url, report=report)
        print_timeline(paths)
        alerts = paths.root / "demo" / "alerts.jsonl"
        n_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
        print(f"""
Done in {time.monotonic() - started:.0f}s.
  summary        {summary}
  report         {report}
  Airflow UI     {stack.airflow_url}   {'(still running: `make down` stops it)' if keep else '(stopped; `make up` restarts it)'}
                 user admin, password in .lifecycle/secrets/airflow_admin_password
  gateway        {stack.gateway_url}/v1/models/{spec.name}/predict   (admin token: .lifecycle/secrets/gateway_token)
  MLflow UI      {mlflow_ui}
  alerts         {alerts} ({n_alerts} received)
  GX reports     {paths.reports / spec.name / 'gx'} and {paths.quarantine(spec.name)}
  drift reports  {paths.reports / spec.name / 'drift'}/*/drift_report.html (Evidently)
  archive        {paths.archive}/{spec.name}/v*/manifest.json   (`lifecycle verify-archive {spec.name} 1` re-checks it)
""")
        return 0
    finally:
        if not keep:
            stopped = services.stop_all(paths)
            say(f"stopped {', '.join(stopped)}")


def main() -> None:
    scenario = os.environ.get("LIFECYCLE_DEMO_SCENARIO", "full")
    if scenario not in ("full", "short"):
        sys.exit(f"demo: LIFECYCLE_DEMO_SCENARIO must be 'full' or 'short', not {scenario!r}")
    sys.exit(run(keep=os.environ.get("KEEP") == "1", keep_state=os.environ.get("KEEP_STATE") == "1",
                 short=scenario == "short"))


if __name__ == "__main__":
    main()
