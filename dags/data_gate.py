"""
### Data gate: `<model>__data_gate`

Every day's batch is checked by the model's Great Expectations suite before anything may train on it.
The suite is derived from the spec (`include/models/<model>.yaml`): columns, types, ranges, categories and
allowed missing shares, plus the spec's own expectations.

* **pass**: the batch moves to `validated/` and the `<model>.validated_batches` asset is updated.
* **fail**: the batch moves to `quarantine/<day>/` with its GX result and an HTML report; ops are alerted.
  Nothing in quarantine is ever trained on.

Works on its data interval (one day), so `airflow backfill create` re-checks past days; a rerun of a decided
day returns the recorded decision. Trigger with the `day` param to check one specific day.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import (
    interval_day,
    lifecycle_dag,
    load_specs,
    validated_asset,
)


def build_data_gate(spec):
    asset = validated_asset(spec)

    @dag(
        **lifecycle_dag(spec, "data_gate", f"Data gate (GX) for {spec.name} batches",
                        __doc__, cron=spec.schedules.data_gate, max_active_runs=4, tag="data-gate"),
        params={"day": Param(None, type=["null", "string"], format="date",
                             description="Check this day's batch instead of the run's data interval")},
    )
    def data_gate():
        @task
        def validate(**context: Any) -> dict[str, Any]:
            """Run the GX suite on the day's batch; move it to validated/ or quarantine/."""
            from lifecycle.data.validation import gate_batch

            day = interval_day(context, context["params"].get("day"))
            return gate_batch(spec, day, run_id=context["run_id"]).to_dict()

        @task.branch
        def route(outcome: dict[str, Any]) -> str:
            return "publish" if outcome["passed"] else "alert_quarantine"

        @task(outlets=[asset])
        def publish(outcome: dict[str, Any], **context: Any) -> None:
            """Announce the validated batch to asset-aware DAGs."""
            context["outlet_events"][asset].extra = {"day": outcome["day"], "rows": outcome["rows"]}

        @task
        def alert_quarantine(outcome: dict[str, Any]) -> None:
            """Tell ops which batch was quarantined, why, and where the report is."""
            from lifecycle.alerts import Alert
            from lifecycle_airflow.notifiers import send_alert

            send_alert(Alert(model=spec.name, event="batch_quarantined", reason=outcome["reason"],
                             summary=f"batch {outcome['day']} quarantined: it will not be trained on",
                             links={"report": outcome["report_path"], "gx_result": outcome["result_path"]}),
                       webhook_conn_id=spec.alerts.webhook_conn_id, smtp_conn_id=spec.alerts.smtp_conn_id,
                       email_to=list(spec.alerts.email_to), key=f"{spec.name}:quarantine:{outcome['day']}")

        outcome = validate()
        route(outcome) >> [publish(outcome), alert_quarantine(outcome)]

    return data_gate()


for _spec in load_specs():
    globals()[f"{_spec.name}__data_gate"] = build_data_gate(_spec)
