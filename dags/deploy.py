"""
### Deploy: `<model>__deploy` (shadow, then a canary ramp, with automatic rollback)

Started by the train DAG when it registers a challenger (its `start_canary` task, conf `{"version": N}`), or
from the UI with a `version` param (default: the version holding the `challenger` alias).

1. **Shadow** (`canary.shadow.enabled`, on by default): the gateway mirrors the champion's requests to the
   challenger and logs both predictions under the same request id; users only get the champion's answer. Before
   any label, a challenger whose scores are NaN, out of [0, 1], constant or inverted against the champion's is
   rolled back. Then the labels score both versions on the same rows.
2. **Ramp**: traffic moves to the challenger step by step (`canary.steps`, e.g. 5% -> 25% -> 50% -> 100%)
   through the gateway's admin API; mirroring goes on both ways, so all evidence stays paired.

One anytime-valid test judges the whole deploy (`lifecycle.serving.evidence`): e-processes on the paired
accuracy and Brier-score differences, the error-rate difference and the challenger's latency exceedances,
pooled from the start of shadow, re-evaluated at every watch poll by a deferrable trigger (no worker waits).
The deploy rolls back the moment the evidence crosses its threshold; a stage passes when its minimum labels
(shadow) or exposure and time (a step) are met without a rejection. Every verdict goes on record with its
statistic, labels, user exposure and alpha: ledger `shadow_verdict`, `canary_step`, `rolled_back`, `promoted`,
and tags on the version.

* every stage held: alias `champion` moves to the new version, the old champion keeps `previous`; ledger `promoted`.
* a rejection: weights back to the champion at once, mirroring stopped, the version tagged `rolled_back` with the
  reason (which test, the estimate, the e-value), ops alerted; ledger `rolled_back`.

Manual rollback: the `<model>__rollback` DAG. Every traffic change of a deploy is a compare-and-set against the
revision it last saw: if another operator changed the weights meanwhile, the deploy stops (ledger `rolled_back`
"deploy superseded: ...", the task skipped).
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import Param, TaskGroup, dag, task

from lifecycle_airflow.dagkit import fail_fast, lifecycle_dag, load_specs, superseded_skips
from lifecycle_airflow.operators import DeployWatchOperator


def build_deploy(spec):
    steps = spec.canary.steps
    shadow = spec.canary.shadow.enabled

    def gateway():
        from lifecycle_airflow.hooks import GatewayHook

        return GatewayHook().get_conn()

    def rollback_task(group: str, where: str):
        @task(task_id="rollback")
        def rollback(plan: dict[str, Any], seen: dict[str, Any], **context: Any) -> str:
            """Weights back to the champion, mirroring off, tag the version, tell ops."""
            from lifecycle.alerts import Alert
            from lifecycle.serving.deploy import rollback as do_rollback
            from lifecycle_airflow.notifiers import send_alert

            verdict = context["ti"].xcom_pull(task_ids=f"{group}.watch")
            with superseded_skips():
                reason = do_rollback(spec, plan, verdict["reason"], gateway(), context["run_id"], seen=seen,
                                     verdict=verdict)
            send_alert(Alert(model=spec.name, version=plan["version"], event="rolled_back", severity="error",
                             summary=f"v{plan['version']} rolled back to v{plan['champion']} {where}",
                             reason=reason), webhook_conn_id=spec.alerts.webhook_conn_id,
                       smtp_conn_id=spec.alerts.smtp_conn_id, email_to=list(spec.alerts.email_to),
                       key=f"{spec.name}:{context['run_id']}:rollback")
            return reason

        return rollback

    def judge_task(group: str, next_task: str):
        @task.branch(task_id="judge")
        def judge(plan: dict[str, Any], verdict: dict[str, Any], **context: Any) -> str:
            """Record the stage's verdict with its evidence; go on, promote, or roll back."""
            from lifecycle.serving.deploy import record_verdict

            print(record_verdict(spec, plan, verdict, context["run_id"]))
            return next_task if verdict["action"] == "pass" else f"{group}.rollback"

        return judge

    @dag(
        **lifecycle_dag(spec, "deploy", f"Shadow and canary deployment of a {spec.name} challenger with automatic "
                        "rollback", __doc__, retries=1),
        params={"version": Param(None, type=["null", "integer"], minimum=1,
                                 description="Version to canary (default: the one the train DAG announced)")},
    )
    def deploy_dag():
        @task
        def prepare(**context: Any) -> dict[str, Any]:
            """Pick the challenger, check it may be deployed, load it in the gateway at weight 0, start mirroring."""
            from lifecycle.serving.deploy import DeployError, start_canary

            version = context["params"].get("version")
            if version is None:
                from lifecycle.registry.store import CHALLENGER, Registry

                mv = Registry().by_alias(spec.model_name, CHALLENGER)
                version = mv.version if mv else None
            with fail_fast():
                if version is None:
                    raise DeployError(f"no version to deploy: pass the 'version' param ({spec.name} has no challenger)")
                return start_canary(spec, version, gateway())

        plan = prepare()
        previous = plan
        seen = plan  # what the deploy last set: each traffic change is a compare-and-set against its revision
        plan_dict = spec.canary.model_dump()
        first = "step_1.shift"
        if shadow:
            with TaskGroup("shadow", tooltip="challenger mirrored, no user sees it") as group:
                watch = DeployWatchOperator(task_id="watch", model=spec.name, plan=plan_dict, stage="shadow",
                                            stage_started="{{ ti.xcom_pull(task_ids='prepare')['started'] }}")
                decided = judge_task("shadow", first)(plan, watch.output)
                decided >> rollback_task("shadow", "in shadow (no user exposed)")(plan, plan)
            previous >> group
            previous = decided
        last_verdict = None
        for i, percent in enumerate(steps, 1):
            stage = f"step {i} ({percent}%)"
            with TaskGroup(f"step_{i}", tooltip=f"challenger at {percent}%") as group:
                @task(task_id="shift")
                def shift(plan: dict[str, Any], seen: dict[str, Any], i: int = i, percent: int = percent,
                          **context: Any) -> dict[str, Any]:
                    from lifecycle.serving.deploy import set_step

                    with superseded_skips():
                        return set_step(spec, plan, i, percent, gateway(), context["run_id"], seen=seen)

                shifted = shift(plan, seen)
                watch = DeployWatchOperator(
                    task_id="watch", model=spec.name, plan=plan_dict, stage=stage,
                    stage_started=f"{{{{ ti.xcom_pull(task_ids='step_{i}.shift')['since'] }}}}")
                shifted >> watch
                decided = judge_task(f"step_{i}", f"step_{i + 1}.shift" if i < len(steps) else "promote")(
                    plan, watch.output)
                decided >> rollback_task(f"step_{i}", f"at step {i} ({percent}%)")(plan, shifted)
            previous >> group
            previous = decided
            seen = shifted
            last_verdict = watch.output

        @task
        def promote(plan: dict[str, Any], seen: dict[str, Any], verdict: dict[str, Any], **context: Any) -> str:
            """Every stage held: the challenger becomes champion, the old one stays as previous."""
            from lifecycle.serving.deploy import promote as do_promote

            with superseded_skips():
                reason = do_promote(spec, plan, gateway(), context["run_id"], seen=seen, verdict=verdict)
            print(f"promote: {reason}")
            return reason

        previous >> promote(plan, seen, last_verdict)

    return deploy_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__deploy"] = build_deploy(_spec)
