"""Operators for the lifecycle: training runs here, so it can move to a GPU pool, torchrun or a pod."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class TorchTrainOperator(BaseOperator):
    """Train a model spec's PyTorch classifier on the validated batches of its training window.

    Logs params, per-epoch metrics, checkpoints and the pyfunc model to MLflow. Idempotent per DAG run: a rerun
    returns the finished MLflow run; a retry resumes from the last checkpoint of the unfinished one. With
    ``training.processes`` > 1 it runs ``torchrun`` with that many DDP processes (NCCL on GPUs, gloo on CPU).

    :param model: spec name (``include/models/<model>.yaml``).
    :param window_end: last day of the training window (``YYYY-MM-DD``), templated.
    :param epochs: optional override of ``training.epochs``.
    :param overrides: optional overrides of other ``training`` fields (validated by the spec schema).
    :param reason: why this run trains (recorded as an MLflow tag and in the ledger).
    """

    template_fields: Sequence[str] = ("window_end", "epochs", "overrides", "reason")
    ui_color = "#ee4c2c"

    def __init__(self, *, model: str, window_end: str, epochs: int | str | None = None,
                 overrides: dict[str, Any] | str | None = None, reason: str = "scheduled", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.window_end = window_end
        self.epochs = epochs
        self.overrides = overrides
        self.reason = reason

    def execute(self, context: Any) -> dict[str, Any]:
        from lifecycle.spec import get_spec
        from lifecycle.training.flow import run_training_task
        from lifecycle_airflow.dagkit import fail_fast

        with fail_fast():  # torchrun when training.processes > 1 (same code as `lifecycle train-task` in a pod)
            return run_training_task(get_spec(self.model), self.window_end, context["run_id"], self.epochs,
                                     self.overrides, str(self.reason))


class DeployWatchOperator(BaseOperator):
    """Defer until one deploy stage (``stage``: ``"shadow"`` or ``"step 2 (25%)"``) has a verdict; no worker waits.

    The plan comes from the ``prepare`` task's XCom (champion, challenger, when the deploy started);
    ``stage_started`` (templated) is when this stage began. Returns the verdict
    (:class:`lifecycle.serving.evidence.Verdict` as a dict, plus the pooled evidence): ``action`` ``rollback`` or
    ``pass``. The judge task that follows records it and branches.
    """

    template_fields: Sequence[str] = ("stage_started",)
    ui_color = "#f0c419"

    def __init__(self, *, model: str, plan: dict[str, Any], stage: str, stage_started: str,
                 prepare_task: str = "prepare", gateway_conn_id: str = "lifecycle_gateway", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.plan, self.stage, self.stage_started = model, plan, stage, stage_started
        self.prepare_task, self.gateway_conn_id = prepare_task, gateway_conn_id

    def execute(self, context: Any) -> None:
        from lifecycle_airflow.triggers import DeployEvidenceTrigger

        deploy = context["ti"].xcom_pull(task_ids=self.prepare_task)
        self.log.info("deploy watch: %s of v%s against v%s", self.stage, deploy["version"], deploy["champion"])
        self.defer(trigger=DeployEvidenceTrigger(
            model=self.model, champion=str(deploy["champion"]), challenger=str(deploy["version"]),
            deploy_started=float(deploy["started"]), stage=self.stage, stage_started=float(self.stage_started),
            plan=self.plan, gateway_conn_id=self.gateway_conn_id), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("deploy watch: %s: %s", event.get("action"), event.get("reason"))
        return event


class GatewaySLOSensor(BaseOperator):
    """Deferrable sensor on the gateway's live metrics: succeeds (returning the trigger's event, its
    ``breaches`` as ``lifecycle.serving.slo.Breach`` dicts) when a version of ``model`` breaches the serving SLO
    within ``watch_seconds``; skips when the window passes cleanly.

    Waits in the triggerer (:class:`GatewaySLOTrigger`), holding no worker slot.
    """

    template_fields: Sequence[str] = ("watch_seconds",)
    ui_color = "#e8f7e4"

    def __init__(self, *, model: str, slo: dict[str, Any], watch_seconds: float | str,
                 gateway_conn_id: str = "lifecycle_gateway", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.slo, self.watch_seconds = model, slo, watch_seconds
        self.gateway_conn_id = gateway_conn_id

    def execute(self, context: Any) -> None:
        import time

        from lifecycle_airflow.triggers import GatewaySLOTrigger

        until = time.time() + float(self.watch_seconds)
        self.log.info("slo watch: %s until %s: error rate <= %s, p99 <= %s ms over %ss windows", self.model,
                      dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="seconds"),
                      self.slo["max_error_rate"], self.slo["max_p99_ms"], self.slo["window_seconds"])
        self.defer(trigger=GatewaySLOTrigger(model=self.model, slo=self.slo, until=until,
                                             gateway_conn_id=self.gateway_conn_id), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from lifecycle.serving.slo import breaches_from_event

        if not event.get("breached"):
            raise AirflowSkipException(f"slo watch: no breach in {float(self.watch_seconds):.0f}s")
        self.log.warning("slo watch: BREACH: %s", "; ".join(map(str, breaches_from_event(event))))
        return event


class GatewayQuietSensor(BaseOperator):
    """Deferrable: wait until the gateway has served no request from the drained version for a quiet period."""

    template_fields: Sequence[str] = ("drained",)
    ui_color = "#f0c419"

    def __init__(self, *, model: str, quiet_seconds: float, max_seconds: float, drained: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.quiet_seconds, self.max_seconds, self.drained = model, quiet_seconds, max_seconds, drained

    def execute(self, context: Any) -> None:
        from lifecycle_airflow.triggers import GatewayQuietTrigger

        drained = self.drained
        at = float(drained["at"])
        # A version that had traffic until the drain waits a full quiet period from then; one that had none
        # only needs no request in the last quiet period (the gateway's own window says so).
        since = at if drained.get("had_weight") else at - self.quiet_seconds
        self.log.info("drain: waiting until v%s has served nothing for %ss", drained["version"], self.quiet_seconds)
        self.defer(trigger=GatewayQuietTrigger(model=self.model, version=str(drained["version"]),
                                               quiet_seconds=self.quiet_seconds, drained_at=since,
                                               until=at + self.max_seconds),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if not event.get("quiet"):
            raise RuntimeError(f"drain: the version never went quiet within {self.max_seconds:g}s: {event['why']}; "
                               "nothing was archived or changed")
        self.log.info("drain: quiet (%s)", event)
        return event
