"""Triggers that wait on the gateway without holding a worker slot: a deploy stage's evidence, the serving SLO,
a drained version going quiet. They only poll; what counts as a verdict or a breach is the core's
(:mod:`lifecycle.serving.evidence`, :mod:`lifecycle.serving.slo`)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class DeployEvidenceTrigger(BaseTrigger):
    """Watches one stage of a deploy (the shadow stage or a traffic step) until the decision is not "wait".

    Every ``poll_seconds`` it reads the deploy's paired evidence from the gateway, pooled since the deploy started
    (and, for the stage's own exposure, since the stage started), and asks :func:`lifecycle.serving.evidence.decide`.
    The evidence is sufficient statistics and the test is anytime-valid, so deciding at every poll spends no extra
    error. The event is the verdict (``action``: ``rollback`` or ``pass``, ``reason``, ``statistics``) and the
    pooled evidence; an unreachable gateway past the stage's time limit is a rollback verdict.
    """

    def __init__(self, *, model: str, champion: str, challenger: str, deploy_started: float, stage: str,
                 stage_started: float, plan: dict[str, Any], gateway_conn_id: str = "lifecycle_gateway") -> None:
        super().__init__()
        self.model, self.champion, self.challenger = model, champion, challenger
        self.deploy_started, self.stage, self.stage_started = deploy_started, stage, stage_started
        self.plan, self.gateway_conn_id = plan, gateway_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"model": self.model, "champion": self.champion, "challenger": self.challenger,
                 "deploy_started": self.deploy_started, "stage": self.stage, "stage_started": self.stage_started,
                 "plan": self.plan, "gateway_conn_id": self.gateway_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from lifecycle.serving.evidence import PairedEvidence, decide, jsonb_safe, unreachable_verdict
        from lifecycle.spec import CanaryPlan
        from lifecycle_airflow.hooks import GatewayHook

        plan = CanaryPlan.model_validate(self.plan)
        limit = plan.shadow.max_seconds if self.stage == "shadow" else plan.max_seconds
        url, headers = await GatewayHook.aevidence_endpoint(self.gateway_conn_id, self.model)
        last = "no answer from the gateway yet"
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:

            async def evidence(since: float) -> PairedEvidence:
                resp = await client.get(url, params={"challenger": self.challenger, "since": since})
                resp.raise_for_status()
                return PairedEvidence.from_dict(resp.json()["evidence"])

            while True:
                elapsed = time.time() - self.stage_started
                try:
                    pooled = await evidence(self.deploy_started)
                    exposure = pooled.served_x if self.stage == "shadow" else (
                        await evidence(self.stage_started)).served_x
                    verdict = decide(pooled, plan, stage=self.stage, stage_elapsed=elapsed, stage_exposure=exposure,
                                     timed_out=elapsed > limit)
                    if verdict.action != "wait":
                        yield TriggerEvent(jsonb_safe(verdict.to_dict() | {"elapsed": elapsed,
                                                                            "evidence": pooled.to_dict()}))
                        return
                    last = verdict.reason
                except (httpx.HTTPError, ValueError) as err:  # ValueError: evidence the judge cannot read
                    last = (f"gateway unreachable: {err}" if isinstance(err, httpx.HTTPError)
                            else f"gateway evidence unreadable: {err}")
                    self.log.warning("deploy watch: %s", last)
                    if elapsed > limit:
                        yield TriggerEvent(unreachable_verdict(self.stage, last, limit).to_dict()
                                           | {"elapsed": elapsed, "evidence": None})
                        return
                self.log.info("deploy watch (%s): v%s: %s", self.stage, self.challenger, last)
                await asyncio.sleep(plan.poll_seconds)


UNREACHABLE_POLLS = 3


class GatewaySLOTrigger(BaseTrigger):
    """Polls the gateway's live metrics for one model until a version breaches the SLO, or ``until`` passes.

    The judgement is :func:`lifecycle.serving.slo.slo_breaches`; the event carries the breaches as dicts
    (``Breach.as_dict``; read back with ``breaches_from_event``) so it stays JSON.
    """

    def __init__(self, *, model: str, slo: dict[str, Any], until: float,
                 gateway_conn_id: str = "lifecycle_gateway") -> None:
        super().__init__()
        self.model, self.slo, self.until = model, slo, until
        self.gateway_conn_id = gateway_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"model": self.model, "slo": self.slo, "until": self.until, "gateway_conn_id": self.gateway_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from lifecycle.serving.slo import slo_breaches, unreachable_breach
        from lifecycle_airflow.hooks import GatewayHook

        url, headers = await GatewayHook.astats_endpoint(self.gateway_conn_id, self.model)
        unreachable = 0
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                now = time.time()
                try:
                    resp = await client.get(url, params={"since": now - self.slo["window_seconds"]}, headers=headers)
                    resp.raise_for_status()
                    stats = resp.json()
                    unreachable = 0
                    breaches = slo_breaches(stats, self.slo)
                    if breaches:
                        yield TriggerEvent({"breached": True, "breaches": [b.as_dict() for b in breaches],
                                            "stats": stats, "at": now})
                        return
                except httpx.HTTPError as err:
                    unreachable += 1
                    self.log.warning("slo watch: gateway unreachable (%s), %d polls in a row", err, unreachable)
                    if unreachable >= UNREACHABLE_POLLS:  # a gateway that does not answer fails every request
                        breach = unreachable_breach(unreachable, UNREACHABLE_POLLS, err)
                        yield TriggerEvent({"breached": True, "at": now, "stats": {},
                                            "breaches": [breach.as_dict()]})
                        return
                if now >= self.until:
                    yield TriggerEvent({"breached": False, "at": now, "unreachable_polls": unreachable})
                    return
                await asyncio.sleep(min(self.slo["poll_seconds"], max(self.until - now, 0.1)))


class GatewayQuietTrigger(BaseTrigger):
    """Waits until a drained version has served no request for ``quiet_seconds`` (in-flight requests done).

    A version the gateway does not have loaded is quiet at once. Gives up at ``until``.
    """

    def __init__(self, *, model: str, version: str, quiet_seconds: float, drained_at: float, until: float,
                 poll_seconds: float = 2.0, gateway_conn_id: str = "lifecycle_gateway") -> None:
        super().__init__()
        self.model, self.version, self.quiet_seconds = model, version, quiet_seconds
        self.drained_at, self.until, self.poll_seconds = drained_at, until, poll_seconds
        self.gateway_conn_id = gateway_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"model": self.model, "version": self.version, "quiet_seconds": self.quiet_seconds,
                 "drained_at": self.drained_at, "until": self.until, "poll_seconds": self.poll_seconds,
                 "gateway_conn_id": self.gateway_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from lifecycle_airflow.hooks import GatewayHook

        url, headers = await GatewayHook.astats_endpoint(self.gateway_conn_id, self.model)
        last = "no answer from the gateway yet"
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                now = time.time()
                try:
                    resp = await client.get(url, params={"since": now - self.quiet_seconds}, headers=headers)
                    resp.raise_for_status()
                    body = resp.json()
                    weight = int(body.get("weights", {}).get(self.version, 0))
                    served = int(body.get("versions", {}).get(self.version, {}).get("requests") or 0)
                    loaded = self.version in body.get("versions", {}) or self.version in body.get("weights", {})
                    if not loaded or (weight == 0 and served == 0 and now - self.drained_at >= self.quiet_seconds):
                        yield TriggerEvent({"quiet": True, "loaded": loaded, "waited": now - self.drained_at})
                        return
                    last = f"weight {weight}, {served} requests in the last {self.quiet_seconds:g}s"
                except httpx.HTTPError as err:
                    last = f"gateway unreachable: {err}"
                if now >= self.until:
                    yield TriggerEvent({"quiet": False, "why": last})
                    return
                self.log.info("drain: v%s not quiet yet: %s", self.version, last)
                await asyncio.sleep(self.poll_seconds)
