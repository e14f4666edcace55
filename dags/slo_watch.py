"""
### SLO watch: `<model>__slo_watch` and `<model>__ops_alert`

Independent of any deploy: every run of `<model>__slo_watch` (the spec's `schedules.slo_watch`) defers a
sensor on the gateway's live metrics for one schedule period (`watch_seconds`, default: until the next run).
The trigger polls `/admin/models/<model>/stats` every `serving.slo.poll_seconds` and fires when a version's
error rate or p99 latency over the trailing `serving.slo.window_seconds` breaches `serving.slo` (with at least
`min_requests` in the window), or when the gateway stops answering. A breach triggers `<model>__ops_alert`,
which tells ops what breached and where to look; a clean window ends the run as skipped.

`<model>__ops_alert` is a plain alert DAG: trigger it with `{"event", "summary", "reason", "version",
"links"}` from anything that needs to page ops through the model's alert connections.
"""
from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import lifecycle_dag, load_specs
from lifecycle_airflow.operators import GatewaySLOSensor


def build_slo_watch(spec):
    @dag(
        **lifecycle_dag(spec, "slo_watch", f"Watch {spec.name}'s live error rate and latency against its serving SLO",
                        __doc__, cron=spec.schedules.slo_watch, retries=1, native=True, tag="alerts"),
        params={"watch_seconds": Param(None, type=["null", "number"], minimum=1,
                                       description="How long to watch (default: one schedule period)")},
    )
    def slo_watch_dag():
        @task
        def window(**context: Any) -> float:
            """Watch until the next scheduled run takes over (or for ``watch_seconds``)."""
            if context["params"].get("watch_seconds"):
                return float(context["params"]["watch_seconds"])
            start, end = context["data_interval_start"], context["data_interval_end"]
            return max((end - start).total_seconds(), 60.0)

        watch = GatewaySLOSensor(
            task_id="watch",
            model=spec.name,
            slo=spec.serving.slo.model_dump(),
            watch_seconds="{{ ti.xcom_pull(task_ids='window') }}",
        )

        @task
        def alert_payload(event: dict[str, Any], **context: Any) -> dict[str, Any]:
            """The breaches as the ops alert's conf (the breached version, when there is one)."""
            from lifecycle.serving import slo

            return slo.alert_payload(slo.breaches_from_event(event), context["run_id"])

        page = TriggerDagRunOperator(
            task_id="page_ops",
            trigger_dag_id=f"{spec.name}__ops_alert",
            trigger_run_id="slo__{{ run_id }}",
            conf="{{ ti.xcom_pull(task_ids='alert_payload') }}",
            wait_for_completion=False,
            skip_when_already_exists=True,
        )

        window() >> watch
        alert_payload(watch.output) >> page

    return slo_watch_dag()


def build_ops_alert(spec):
    @dag(
        **lifecycle_dag(spec, "ops_alert", f"Deliver an ops alert about {spec.name} through its alert connections",
                        __doc__, retries=1, max_active_runs=16, tag="alerts"),
        params={
            "event": Param("ops_alert", type="string"),
            "summary": Param("manual alert", type="string"),
            "reason": Param("", type="string"),
            "version": Param(None, type=["null", "string"]),
            "severity": Param("warning", enum=["info", "warning", "error"]),
            "links": Param({}, type="object"),
        },
    )
    def ops_alert_dag():
        @task
        def deliver(**context: Any) -> list[str]:
            from lifecycle_airflow.notifiers import alert_ops

            p = context["params"]
            sent = alert_ops(spec, p["event"], p["summary"], version=p.get("version"), reason=p.get("reason") or "",
                             severity=p.get("severity") or "warning", links=p.get("links") or {},
                             key=f"{spec.name}:ops_alert:{context['run_id']}")
            print(f"ops alert: {p['event']}: {p['summary']} delivered via {sent or 'no channel (see warnings)'}")
            return sent

        deliver()

    return ops_alert_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__slo_watch"] = build_slo_watch(_spec)
    globals()[f"{_spec.name}__ops_alert"] = build_ops_alert(_spec)
