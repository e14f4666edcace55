"""
### Rollback: `<model>__rollback` (manual, one click)

Restores the `previous` version as champion with 100% of the gateway's traffic, demotes the current champion
(tagged `rolled_back` with the reason given), and records `rolled_back` in the ledger. Works whether or not a
deploy run is in progress. Trigger it from the UI with a `reason`.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import fail_fast, lifecycle_dag, load_specs


def build_rollback(spec):
    @dag(
        **lifecycle_dag(spec, "rollback", f"Roll {spec.name} back to its previous version",
                        __doc__, retries=1),
        params={"reason": Param("manual rollback from the UI", type="string", minLength=3,
                                description="Why (recorded on the demoted version and in the ledger)")},
    )
    def rollback_dag():
        @task
        def rollback_to_previous(**context: Any) -> dict[str, str]:
            from lifecycle.alerts import Alert
            from lifecycle.serving.deploy import manual_rollback
            from lifecycle_airflow.hooks import GatewayHook
            from lifecycle_airflow.notifiers import send_alert

            with fail_fast():
                result = manual_rollback(spec, context["params"]["reason"], GatewayHook().get_conn(),
                                         context["run_id"])
            send_alert(Alert(model=spec.name, version=result["demoted"] or None, event="rolled_back",
                             summary=f"manual rollback: v{result['champion']} is champion again",
                             reason=context["params"]["reason"]), webhook_conn_id=spec.alerts.webhook_conn_id,
                       key=f"{spec.name}:{context['run_id']}:manual_rollback")
            return result

        rollback_to_previous()

    return rollback_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__rollback"] = build_rollback(_spec)
