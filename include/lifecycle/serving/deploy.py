"""Canary deployment, promotion and rollback: what the deploy and rollback DAGs do, as plain functions.

Every traffic change goes through the gateway's admin API; every registry change is an alias or a tag;
every transition is a ledger event. Rollback always means weights back to the champion first, bookkeeping after.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ConflictError
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import CHALLENGER, CHAMPION, PREVIOUS, TAG, Registry

if TYPE_CHECKING:
    from lifecycle.serving.client import GatewayClient
    from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)


class DeployError(ConflictError, RuntimeError):
    """A deployment that must not start or go on; the message says why (HTTP 409)."""


def start_canary(spec: ModelSpec, version: str | int, gateway: GatewayClient,
                 paths: StatePaths | None = None) -> dict[str, Any]:
    """Check the candidate may be canaried, and load it (and the champion) in the gateway at weight 0."""
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    mv = registry.version(name, version)
    status = mv.tags.get(f"{TAG}status")
    if status in ("rejected", "retired"):
        raise DeployError(f"{name} v{version} is {status} ({mv.tags.get(f'{TAG}gate_reason', 'no reason')}); "
                          "it cannot be deployed")
    champion = registry.by_alias(name, CHAMPION)
    if champion is None:
        raise DeployError(f"{name} has no champion to canary against; the first model is promoted by the gate")
    if str(champion.version) == version:
        raise DeployError(f"{name} v{version} is already the champion")
    gateway.load(spec.name, champion.version)
    gateway.load(spec.name, version)
    log.info("deploy: canary of %s v%s against champion v%s", name, version, champion.version)
    return {"version": version, "champion": str(champion.version), "started": time.time()}


def step_weights(plan: dict[str, Any], percent: int) -> dict[str, int]:
    if percent >= 100:
        return {plan["version"]: 100, plan["champion"]: 0}
    return {plan["champion"]: 100 - percent, plan["version"]: percent}


def set_step(spec: ModelSpec, plan: dict[str, Any], step: int, percent: int, gateway: GatewayClient,
             run_id: str, ledger: Ledger | None = None) -> dict[str, Any]:
    """Move the step's share of traffic to the challenger; record ``canary_step``."""
    weights = step_weights(plan, percent)
    gateway.set_weights(spec.name, weights, f"canary step {step}: v{plan['version']} at {percent}%")
    (ledger or Ledger()).record(spec.name, "canary_step", f"step {step}: v{plan['version']} at {percent}%, "
                                f"champion v{plan['champion']} at {100 - percent if percent < 100 else 0}%",
                                version=plan["version"], run_id=run_id, key=f"{spec.name}:{run_id}:step{step}",
                                details={"step": step, "weights": weights})
    return {"since": time.time(), "weights": weights, "step": step, "percent": percent}


def judge_step(spec: ModelSpec, plan: dict[str, Any], step: dict[str, Any], gateway: GatewayClient,
               timed_out: bool = False) -> dict[str, Any]:
    from lifecycle.serving.canary import judge

    stats = gateway.stats(spec.name, step["since"])["versions"]
    empty = {"requests": 0, "errors": 0, "feedback": 0, "correct": 0}
    decision = judge(stats.get(plan["champion"], empty), stats.get(plan["version"], empty), spec.canary,
                     step=step["step"], weight=step["percent"], version=plan["version"],
                     champion_version=plan["champion"], timed_out=timed_out)
    log.info("%s", decision.reason)
    return decision.to_dict() | {"stats": stats}


def promote(spec: ModelSpec, plan: dict[str, Any], gateway: GatewayClient, run_id: str,
            paths: StatePaths | None = None, ledger: Ledger | None = None) -> str:
    """All steps held: the challenger takes 100% and alias ``champion``; the old champion keeps ``previous``."""
    registry = Registry(paths)
    name, new, old = spec.model_name, plan["version"], plan["champion"]
    gateway.set_weights(spec.name, {new: 100, old: 0}, f"promote v{new}")
    registry.set_alias(name, PREVIOUS, old)
    registry.set_alias(name, CHAMPION, new)
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == new:
        registry.delete_alias(name, CHALLENGER)
    registry.set_tags(name, new, {f"{TAG}status": "champion", f"{TAG}promoted_by": run_id})
    registry.set_tags(name, old, {f"{TAG}status": "previous"})
    reason = f"v{new} passed every canary step ({', '.join(map(str, spec.canary.steps))}%); v{old} kept as previous"
    (ledger or Ledger(paths.ledger_db if paths else None)).record(
        spec.name, "promoted", reason, version=new, run_id=run_id, key=f"{spec.name}:{run_id}:promoted")
    return reason


def rollback(spec: ModelSpec, plan: dict[str, Any], reason: str, gateway: GatewayClient, run_id: str,
             paths: StatePaths | None = None, ledger: Ledger | None = None) -> str:
    """A breached step: traffic back to the champion at once, then tag the version and record why."""
    name, bad, champion = spec.model_name, plan["version"], plan["champion"]
    gateway.set_weights(spec.name, {champion: 100, bad: 0}, f"rollback v{bad}: {reason}"[:500])
    registry = Registry(paths)
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == bad:
        registry.delete_alias(name, CHALLENGER)
    registry.set_tags(name, bad, {f"{TAG}status": "rolled_back", f"{TAG}rollback_reason": reason[:5000]})
    (ledger or Ledger(paths.ledger_db if paths else None)).record(
        spec.name, "rolled_back", f"v{bad} rolled back to v{champion}: {reason}", version=bad, run_id=run_id,
        key=f"{spec.name}:{run_id}:rolled_back")
    return reason


def manual_rollback(spec: ModelSpec, reason: str, gateway: GatewayClient, run_id: str,
                    paths: StatePaths | None = None, ledger: Ledger | None = None) -> dict[str, str]:
    """Restore ``previous`` as champion with 100% of traffic (works whether or not a canary is running)."""
    registry = Registry(paths)
    name = spec.model_name
    previous, champion = registry.by_alias(name, PREVIOUS), registry.by_alias(name, CHAMPION)
    if previous is None:
        raise DeployError(f"{name} has no 'previous' version to roll back to")
    prev, cur = str(previous.version), str(champion.version) if champion else None
    gateway.load(spec.name, prev)
    weights = {prev: 100} | ({cur: 0} if cur and cur != prev else {})
    gateway.set_weights(spec.name, weights, f"manual rollback to v{prev}: {reason}"[:500])
    registry.set_alias(name, CHAMPION, prev)
    registry.delete_alias(name, PREVIOUS)
    registry.set_tags(name, prev, {f"{TAG}status": "champion"})
    if cur and cur != prev:
        registry.set_tags(name, cur, {f"{TAG}status": "rolled_back", f"{TAG}rollback_reason": reason[:5000]})
    (ledger or Ledger(paths.ledger_db if paths else None)).record(
        spec.name, "rolled_back", f"manual rollback: v{cur} -> v{prev}: {reason}", version=cur, run_id=run_id,
        key=f"{spec.name}:{run_id}:manual_rollback")
    return {"champion": prev, "demoted": cur or ""}
