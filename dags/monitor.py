"""
### Monitor: `<model>__monitor`

Every data interval (the spec's `schedules.monitor`, hourly by default): reads the gateway's prediction log
and the feedback received in the interval and compares them with the serving champion's reference (a sample
of its training rows, stored with the version) using Evidently: per-feature drift, share of drifted features,
prediction drift, a data summary, and live performance on labelled feedback against the champion's offline
test metrics. The Evidently HTML report (`drift_report.html`) is linked from the `measure` task log; the
numbers go to the `<model>-monitoring` MLflow experiment and, when the interval drifted, to the ledger.

The `decide` task applies the spec's `monitoring` policy (drift share, per-feature and performance
thresholds, minimum rows, cooldown since the last retrain or promotion, daily cap) and says why in one line.
When it fires, the train DAG is triggered with the reason and the report, ops are alerted, and the ledger
records `drift_detected` and `retrain_triggered`.

**Backfills** (`airflow backfill create --dag-id <model>__monitor --from-date ... --to-date ...`) recompute
each interval's report in place (same folder, same MLflow run) and never trigger retraining: a past interval
is history. So does any interval that ended more than `monitoring.stale_after_hours` ago.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from lifecycle_airflow.dagkit import lifecycle_dag, load_specs


def build_monitor(spec):
    @dag(
        **lifecycle_dag(spec, "monitor", f"Drift and live performance of {spec.name}; retrains past policy",
                        __doc__, cron=spec.schedules.monitor, retries=1, native=True),
    )
    def monitor_dag():
        @task
        def measure(**context: Any) -> dict[str, Any]:
            """Evidently drift report and live metrics for this data interval (idempotent per interval)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from lifecycle.monitoring.run import MonitorError, measure

            start, end = context["data_interval_start"], context["data_interval_end"]
            try:
                result = measure(spec, start, end, dag_run_id=context["run_id"])
            except MonitorError as err:
                raise AirflowSkipException(f"monitor: {err}") from err
            print(f"measure: {result['rows']} rows, {result['labels']} labels, champion v{result['champion_version']}"
                  f", drift share {result['drift_share']:.2f} (drifted: {', '.join(result['drifted']) or 'none'})"
                  f", prediction drift {result['prediction_drift']}")
            if result["report"]:
                print(f"measure: Evidently drift report: file://{result['report']}")
            if result["uncertain"]:
                print(f"measure: within the sketch's error of their threshold: {result['uncertain']}")
            return result

        @task.short_circuit
        def decide(measured: dict[str, Any], **context: Any) -> dict[str, Any] | bool:
            """The monitoring policy; records and alerts drift; returns the retrain conf when it fires."""
            from lifecycle.ledger import Ledger
            from lifecycle.monitoring.response import is_backfill
            from lifecycle.monitoring.run import judge_interval
            from lifecycle_airflow.notifiers import alert_ops

            ledger = Ledger()
            todo = judge_interval(spec, measured, ledger, now=dt.datetime.now(dt.UTC),
                                  interval_end=context["data_interval_end"],
                                  backfill=is_backfill(context["dag_run"].run_type, context["run_id"]))
            print(f"decide: {todo.describe()}")
            if todo.drift and ledger.record(spec.name, "drift_detected", todo.reason, version=todo.version,
                                            run_id=context["run_id"], key=todo.key, details=todo.details):
                alert_ops(spec, "drift_detected", todo.alert, version=todo.version, reason=todo.reason,
                          links=todo.links, key=todo.alert_key)
            return todo.conf or False

        trigger = TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=f"{spec.name}__train",
            trigger_run_id="drift__{{ run_id }}",
            conf="{{ ti.xcom_pull(task_ids='decide') }}",
            wait_for_completion=False,
            skip_when_already_exists=True,
        )

        @task
        def record_retrain(measured: dict[str, Any], conf: dict[str, Any], **context: Any) -> str:
            """Ledger ``retrain_triggered`` and tell ops which train run to watch."""
            from lifecycle.ledger import Ledger
            from lifecycle_airflow.notifiers import alert_ops

            train_run = f"drift__{context['run_id']}"
            key = f"{spec.name}:retrain:{context['run_id']}"
            version = measured["champion_version"]
            reason = f"{conf['reason']} -> {spec.name}__train run {train_run} (as of {conf['as_of']})"
            if Ledger().record(spec.name, "retrain_triggered", reason, version=version, run_id=context["run_id"],
                               key=key, details={"train_run_id": train_run, "report": conf["report"],
                                                 "as_of": conf["as_of"]}):
                alert_ops(spec, "retrain_triggered", f"retraining {spec.name} after drift: {spec.name}__train run "
                          f"{train_run}", version=version, reason=conf["reason"],
                          links={"report": conf["report"] or ""}, key=f"{key}:alert")
            return train_run

        measured = measure()
        conf = decide(measured)
        conf >> trigger >> record_retrain(measured, conf)

    return monitor_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__monitor"] = build_monitor(_spec)
