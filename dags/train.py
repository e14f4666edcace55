"""
### Train: `<model>__train`

Nightly (the spec's `schedules.train`) and on demand: trains a candidate on the validated batches of the
training window ending the day before the run's data interval ends, evaluates it and the serving champion on
the same held-out rows (overall and per slice), applies the promotion gate and registers the candidate in the
MLflow registry with its lineage tags.

* first model to pass the gate: alias `champion`; a later one: alias `challenger`, and the deploy DAG is
  triggered to canary it.
* a rejected candidate is registered too, tagged `lifecycle.status=rejected` with the gate's reason.
* nothing new since the last training (same validated batches): the run skips, unless `force` is set.

**Params** (Trigger DAG w/ config): `reason`, `epochs` (override), `force`, `as_of` (last day of the window),
`overrides` (other `training` fields, e.g. `{"learning_rate": 0.001}`), `report` (the drift report behind a
monitor-triggered run).

Idempotent per run: clearing a task reuses the MLflow run and the registered version; a retried training task
resumes from its last checkpoint.

`train` goes to the Celery queue `training.queue` (default `gpu`); with a `training.kubernetes` section in the
spec it runs the same training code in a Kubernetes pod (`lifecycle train-task`) and returns the same result.
"""
from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import (
    challenger_asset,
    fail_fast,
    lifecycle_dag,
    load_specs,
)
from lifecycle_airflow.operators import TorchTrainOperator


def build_train(spec):
    asset = challenger_asset(spec)
    uses_gpu_pool = spec.training.gpu_pool is not None and spec.training.device != "cpu"

    @dag(
        **lifecycle_dag(spec, "train", f"Train, evaluate, gate and register {spec.name}",
                        __doc__, cron=spec.schedules.train, native=True),
        params={
            "reason": Param("scheduled retrain", type="string", description="Why this run trains (recorded)"),
            "epochs": Param(None, type=["null", "integer"], minimum=1, description="Override training.epochs"),
            "force": Param(False, type="boolean", description="Train even if no new validated batch arrived"),
            "as_of": Param(None, type=["null", "string"], format="date",
                           description="Last day of the training window (default: the day before the run)"),
            "overrides": Param({}, type="object", description="Other training fields to override"),
            "report": Param(None, type=["null", "string"],
                            description="Drift report that motivated this run (set by the monitor DAG)"),
        },
    )
    def train_dag():
        @task.short_circuit
        def plan(**context: Any) -> dict[str, Any] | bool:
            """Decide the window; fail (one line, no retry) when it cannot train; skip when the last training already
            used exactly these batches."""
            from lifecycle.ledger import Ledger
            from lifecycle.training.flow import effective_training, skip_reason, training_window, window_end
            from lifecycle.training.readiness import check_trainable

            params = context["params"]
            with fail_fast():
                cfg = effective_training(spec, params.get("epochs"), params.get("overrides"))  # bad overrides: now
                window = training_window(spec, window_end(params.get("as_of"), context.get("data_interval_end")))
                check_trainable(spec, cfg, window)  # a constant target, too few rows, unseen classes: one line now
            skip = skip_reason(Ledger().last(spec.name, "trained"), window, context["run_id"],
                               bool(params.get("force")))
            if skip:
                print(f"plan: skip: {skip}")
                return False
            if params.get("report"):
                print(f"plan: triggered by the drift report {params['report']}")
            print(f"plan: train on {len(window.days)} validated batches {window.days[0]}..{window.days[-1]}"
                  + (f"; excluded quarantined days {window.quarantined}" if window.quarantined else ""))
            return {"window_end": window.end, "days": window.days}

        where = {"task_id": "train", "retries": 2, "queue": spec.training.queue,
                 "pool": spec.training.gpu_pool if uses_gpu_pool else "default_pool"}
        if spec.training.kubernetes:  # a pod running the same training code (lifecycle train-task)
            from lifecycle_airflow.k8s_pod import training_pod

            train = training_pod(spec, **where)
        else:
            train = TorchTrainOperator(
                model=spec.name,
                window_end="{{ ti.xcom_pull(task_ids='plan')['window_end'] }}",
                epochs="{{ params.epochs }}",
                overrides="{{ params.overrides }}",
                reason="{{ params.reason }}",
                **where,
            )

        @task
        def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
            """Score candidate and champion on the same held-out rows, overall and per slice."""
            from lifecycle.training.flow import evaluate_candidate

            return evaluate_candidate(spec, trained)

        @task
        def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
            """The promotion gate: a pure function of the metrics and the spec's thresholds."""
            from lifecycle.training.flow import gate_candidate

            return gate_candidate(spec, evaluation)

        @task
        def register(trained: dict[str, Any], evaluation: dict[str, Any], decision: dict[str, Any],
                     **context: Any) -> dict[str, Any]:
            """Register the version with lineage and gate tags; set champion/challenger aliases."""
            from lifecycle.training.flow import register_candidate

            result = register_candidate(spec, trained, evaluation, decision, context["run_id"])
            print(f"register: {spec.model_name} v{result['version']} -> {result['status']}: {result['reason']}")
            return result

        @task.short_circuit
        def is_challenger(result: dict[str, Any]) -> bool:
            return result["status"] == "challenger"

        @task(outlets=[asset])
        def announce_challenger(result: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Update the challenger asset (lineage in the UI) and hand the version to the deploy DAG."""
            context["outlet_events"][asset].extra = {"version": result["version"]}
            return {"version": int(result["version"]), "reason": f"challenger from {context['run_id']}"}

        # An explicit trigger rather than an asset schedule: it also runs when the scheduler's time
        # schedules are off (the demo's simulated calendar), and the link shows in the UI.
        start_canary = TriggerDagRunOperator(
            task_id="start_canary",
            trigger_dag_id=f"{spec.name}__deploy",
            trigger_run_id="canary__{{ run_id }}",
            conf="{{ ti.xcom_pull(task_ids='announce_challenger') }}",
            wait_for_completion=False,
        )

        trained = train.output
        plan() >> train
        evaluation = evaluate(trained)
        result = register(trained, evaluation, gate(evaluation))
        is_challenger(result) >> announce_challenger(result) >> start_canary

    return train_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__train"] = build_train(_spec)
