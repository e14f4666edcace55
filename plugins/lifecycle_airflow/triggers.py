"""Trigger that watches a canary step on the gateway without holding a worker slot."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class CanaryStepTrigger(BaseTrigger):
    """Polls the gateway's live stats until the challenger's step has enough evidence, or time runs out."""

    def __init__(self, *, model: str, version: str, since: float, plan: dict[str, Any],
                 gateway_conn_id: str = "lifecycle_gateway") -> None:
        super().__init__()
        self.model, self.version, self.since = model, version, since
        self.plan = plan
        self.gateway_conn_id = gateway_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"model": self.model, "version": self.version, "since": self.since, "plan": self.plan,
                 "gateway_conn_id": self.gateway_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        from lifecycle.canary import enough_evidence
        from lifecycle.spec import CanaryPlan
        from lifecycle_airflow.hooks import GatewayHook

        plan = CanaryPlan.model_validate(self.plan)
        conn = await GatewayHook.aget_connection(self.gateway_conn_id)
        url = f"{GatewayHook.base_url(conn)}/admin/models/{self.model}/stats"
        headers = {"Authorization": f"Bearer {conn.password}"}
        missing = "no answer from the gateway yet"
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                elapsed = time.time() - self.since
                try:
                    resp = await client.get(url, params={"since": self.since}, headers=headers)
                    resp.raise_for_status()
                    stats = resp.json()["versions"].get(self.version, {})
                    ok, missing = enough_evidence(stats, plan, elapsed)
                    if ok:
                        yield TriggerEvent({"timed_out": False, "elapsed": elapsed})
                        return
                except httpx.HTTPError as err:
                    missing = f"gateway unreachable: {err}"
                    self.log.warning("canary watch: %s", missing)
                if elapsed > plan.max_seconds:
                    yield TriggerEvent({"timed_out": True, "elapsed": elapsed, "missing": missing})
                    return
                self.log.info("canary watch: v%s waiting for %s", self.version, missing)
                await asyncio.sleep(plan.poll_seconds)
