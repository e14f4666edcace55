"""
### Deploy: `<model>__deploy` (canary with automatic rollback)

Started by the train DAG when it registers a challenger (its `start_canary` task, conf `{"version": N}`), or
from the UI with a `version` param (default: the version holding the `challenger` alias). Traffic moves to the challenger step by step (the spec's `canary.steps`, e.g. 5% -> 25% ->
50% -> 100%) through the serving gateway's admin API. At every step a deferrable watch waits, without holding a
worker, until the challenger has served `min_requests` for `min_seconds` and enough labelled feedback arrived;
then the judge compares challenger and champion on live data: error rate, p99 latency, and accuracy on
feedback with a one-sided two-proportion z-test.

* every step held: alias `champion` moves to the new version, the old champion keeps `previous`; ledger `promoted`.
* a breach: weights go back to the champion at once, the version is tagged `rolled_back` with the reason
  (which SLO, by how much), ops are alerted; ledger `rolled_back`.

Every step records `canary_step` with its weights. Manual rollback to `previous`: the `<model>__rollback` DAG.

Concurrent operators never undo each other: every traffic change of a deploy is a compare-and-set against the
traffic revision it last saw. If another operator changed the weights meanwhile (a manual rollback, another deploy),
the deploy stops where it is without touching traffic or aliases again: ledger `rolled_back` with
"deploy superseded: ...", and the task that noticed is **skipped** with that message (the rest skip after it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from airflow.sdk import Param, TaskGroup, dag, task

from lifecycle_airflow.dagkit import fail_fast, lifecycle_dag, load_specs
from lifecycle_airflow.operators import CanaryWatchOperator


@contextlib.contextmanager
def superseded_skips() -> Iterator[None]:
    """Another operator took over the traffic: the deploy ends here, skipped (not failed) with the reason."""
    from airflow.sdk.exceptions import AirflowSkipException

    from lifecycle.serving.deploy import DeploySupersededError

    try:
        yield
    except DeploySupersededError as err:
        print(err)
        raise AirflowSkipException(str(err)) from err


def build_deploy(spec):
    steps = spec.canary.steps

    def gateway():
        from lifecycle_airflow.hooks import GatewayHook

        return GatewayHook().get_conn()

    @dag(
        **lifecycle_dag(spec, "deploy", f"Canary deployment of a {spec.name} challenger with automatic rollback",
                        __doc__, retries=1),
        params={"version": Param(None, type=["null", "integer"], minimum=1,
                                 description="Version to canary (default: the one the train DAG announced)")},
    )
    def deploy_dag():
        @task
        def prepare(**context: Any) -> dict[str, Any]:
            """Pick the challenger, check it may be deployed, load it in the gateway at weight 0."""
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
        judges = []
        for i, percent in enumerate(steps, 1):
            with TaskGroup(f"step_{i}", tooltip=f"challenger at {percent}%") as group:
                @task(task_id="shift")
                def shift(plan: dict[str, Any], seen: dict[str, Any], i: int = i, percent: int = percent,
                          **context: Any) -> dict[str, Any]:
                    from lifecycle.serving.deploy import set_step

                    with superseded_skips():
                        return set_step(spec, plan, i, percent, gateway(), context["run_id"], seen=seen)

                shifted = shift(plan, seen)
                watch = CanaryWatchOperator(
                    task_id="watch", model=spec.name, plan=spec.canary.model_dump(), version="prepare",
                    since=f"{{{{ ti.xcom_pull(task_ids='step_{i}.shift')['since'] }}}}")

                @task.branch(task_id="judge")
                def judge(plan: dict[str, Any], step: dict[str, Any], event: dict[str, Any], i: int = i,
                          **context: Any) -> str:
                    """Live SLOs of this step: go on, promote, or roll back."""
                    from lifecycle.serving.deploy import judge_step

                    decision = judge_step(spec, plan, step, gateway(), timed_out=bool(event.get("timed_out")))
                    context["ti"].xcom_push(key="decision", value=decision)
                    print(decision["reason"])
                    if not decision["passed"]:
                        return f"step_{i}.rollback"
                    return f"step_{i + 1}.shift" if i < len(steps) else "promote"

                @task(task_id="rollback")
                def rollback(plan: dict[str, Any], seen: dict[str, Any], i: int = i, **context: Any) -> str:
                    """Weights back to the champion, tag the version, tell ops."""
                    from lifecycle.alerts import Alert
                    from lifecycle.serving.deploy import rollback as do_rollback
                    from lifecycle_airflow.notifiers import send_alert

                    decision = context["ti"].xcom_pull(task_ids=f"step_{i}.judge", key="decision")
                    with superseded_skips():
                        reason = do_rollback(spec, plan, decision["reason"], gateway(), context["run_id"],
                                             seen=seen)
                    send_alert(Alert(model=spec.name, version=plan["version"], event="rolled_back", severity="error",
                                     summary=f"v{plan['version']} rolled back to v{plan['champion']} at step {i}",
                                     reason=reason), webhook_conn_id=spec.alerts.webhook_conn_id,
                               smtp_conn_id=spec.alerts.smtp_conn_id, email_to=list(spec.alerts.email_to),
                               key=f"{spec.name}:{context['run_id']}:rollback")
                    return reason

                decided = judge(plan, shifted, watch.output)
                shifted >> watch
                decided >> rollback(plan, shifted)
            previous >> group
            previous = decided
            seen = shifted
            judges.append(decided)

        @task
        def promote(plan: dict[str, Any], seen: dict[str, Any], **context: Any) -> str:
            """Every step held: the challenger becomes champion, the old one stays as previous."""
            from lifecycle.serving.deploy import promote as do_promote

            with superseded_skips():
                reason = do_promote(spec, plan, gateway(), context["run_id"], seen=seen)
            print(f"promote: {reason}")
            return reason

        judges[-1] >> promote(plan, seen)

    return deploy_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__deploy"] = build_deploy(_spec)
