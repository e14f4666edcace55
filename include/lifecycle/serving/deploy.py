"""Canary deployment, promotion and rollback: what the deploy and rollback DAGs do, as plain functions.

Every traffic change goes through the gateway's admin API; every registry change is an alias or a tag;
every transition is a ledger event. Rollback always means weights back to the champion first, bookkeeping after.

A deploy never undoes another operator: the plan records the traffic revision it starts from, and every later
change (:func:`set_step`, :func:`rollback`, :func:`promote`) is a compare-and-set against the revision the deploy
last saw. If someone else changed the weights in between (a manual rollback, another deploy), the deploy ends
there without touching traffic or aliases again: it records ``rolled_back`` with "deploy superseded: ..." and
raises :class:`DeploySupersededError` (the DAG marks the task skipped with that message). A conflict that left
the weights as the deploy set them (a version loaded or unloaded meanwhile) is not a supersede: the change is
retried against the new revision.
"""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ConflictError
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import CHALLENGER, CHAMPION, PREVIOUS, TAG, Registry
from lifecycle.serving.traffic import TrafficConflictError

if TYPE_CHECKING:
    from lifecycle.serving.client import GatewayClient
    from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)
CAS_ATTEMPTS = 3  # compare-and-set tries when only loads/unloads moved the revision


class DeployError(ConflictError, RuntimeError):
    """A deployment that must not start or go on; the message says why (HTTP 409)."""


class DeploySupersededError(DeployError):
    """Another operator changed the traffic (or the champion) while this deploy ran; the deploy stopped without
    touching either again and recorded why (``rolled_back``). ``revision``/``expected``/``weights``: the traffic
    revision found, the one the deploy last saw, the weights found (None when the champion alias moved)."""

    def __init__(self, message: str, revision: int | None = None, expected: int | None = None,
                 weights: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.revision, self.expected, self.weights = revision, expected, weights


def serving(weights: dict[str, Any]) -> dict[str, int]:
    """The versions with traffic (weight > 0): two weight maps route alike iff these are equal."""
    return {str(v): int(w) for v, w in weights.items() if int(w) > 0}


def _seen(plan: dict[str, Any], seen: dict[str, Any] | None) -> tuple[int | None, dict[str, int]]:
    """The revision and weights the deploy last saw: ``seen`` (the last step's result) or the plan's."""
    last = seen if seen is not None else plan
    revision = last.get("revision")
    return (None if revision is None else int(revision)), dict(last.get("weights") or {})


def _superseded(spec: ModelSpec, plan: dict[str, Any], what: str, run_id: str, ledger: Ledger,
                revision: int | None, expected: int | None, weights: dict[str, int] | None,
                cause: str | None = None) -> DeploySupersededError:
    """Record (once per run) that another operator took over, and the error that ends the deploy."""
    cause = cause or f"traffic changed by another operator (revision {revision}, expected {expected})"
    reason = (f"deploy superseded: {cause}; v{plan['version']} {what} not applied, the deploy stops here"
              + (f" (traffic left at {serving(weights)})" if weights is not None else ""))
    ledger.record(spec.name, "rolled_back", reason, version=plan["version"], run_id=run_id,
                  key=f"{spec.name}:{run_id}:superseded",
                  details={"superseded": True, "at": what, "revision": revision, "expected": expected,
                           "weights": weights, "champion": plan["champion"]})
    log.warning("deploy: %s", reason)
    return DeploySupersededError(reason, revision, expected, weights)


def _apply(spec: ModelSpec, plan: dict[str, Any], weights: dict[str, int], reason: str, what: str,
           gateway: GatewayClient, run_id: str, ledger: Ledger, seen: dict[str, Any] | None) -> int | None:
    """Set ``weights`` as a compare-and-set against what the deploy last saw; return the new revision.

    A conflict whose current weights are already ``weights`` (a retried task whose first try got through) is done;
    one whose weights are still what the deploy last saw (a load or unload moved the revision) is retried; any
    other is another operator's change: :func:`_superseded`. A plan without a revision (started before
    revisions) sets the weights unconditionally."""
    expected, last = _seen(plan, seen)
    if expected is None:
        return gateway.set_weights(spec.name, weights, reason).get("revision")
    first = expected
    for attempt in range(1, CAS_ATTEMPTS + 1):
        try:
            return int(gateway.set_weights(spec.name, weights, reason, expected_revision=expected)["revision"])
        except TrafficConflictError as err:
            if serving(err.weights) == serving(weights):
                log.info("deploy: %s already in place at revision %s", what, err.revision)
                return err.revision
            if serving(err.weights) != serving(last) or attempt == CAS_ATTEMPTS:
                raise _superseded(spec, plan, what, run_id, ledger, err.revision, first, err.weights) from err
            log.info("deploy: revision %s -> %s without a weight change; %s again", expected, err.revision, what)
            expected = err.revision
    raise AssertionError("unreachable")  # the last attempt returns or raises


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
    shadow = spec.canary.shadow
    # Mirrored from now on, whether or not the shadow stage runs: the evidence is paired, in shadow and during the
    # ramp (the gateway scores every request of the pair with both versions; only the answering one is seen).
    gateway.set_shadow(spec.name, str(champion.version), version, shadow.sample)
    traffic = gateway.traffic(spec.name)  # every later step is a compare-and-set against this revision
    log.info("deploy: canary of %s v%s against champion v%s (traffic revision %s: %s)", name, version,
             champion.version, traffic.get("revision"), traffic.get("weights"))
    return {"version": version, "champion": str(champion.version), "started": time.time(),
            "revision": traffic.get("revision"), "weights": traffic.get("weights", {}), "shadow": shadow.enabled,
            "mirrored": True}


def _compact(verdict: dict[str, Any]) -> dict[str, Any]:
    """What goes on record of a verdict: stage, action, the statistics (e-values, thresholds, labels, exposure)."""
    return {"stage": verdict.get("stage"), "action": verdict.get("action"),
            "statistics": verdict.get("statistics") or {}}


def record_verdict(spec: ModelSpec, plan: dict[str, Any], verdict: dict[str, Any], run_id: str,
                   paths: StatePaths | None = None, ledger: Ledger | None = None) -> str:
    """Put a stage's verdict on record, with its evidence: the shadow stage's as ``shadow_verdict``, a step that
    held as ``canary_step``; on the version as tags ``lifecycle.last_verdict`` and ``lifecycle.evidence`` (JSON).
    A rollback verdict's own record is :func:`rollback`'s ``rolled_back``. Returns the reason."""
    ledger = ledger or Ledger(paths.ledger_db if paths else None)
    stage, action, reason = verdict["stage"], verdict["action"], verdict["reason"]
    details = _compact(verdict) | {"evidence": verdict.get("evidence")}
    slug = "".join(ch if ch.isalnum() else "_" for ch in stage).strip("_")
    if stage == "shadow":
        ledger.record(spec.name, "shadow_verdict",
                      f"v{plan['version']} {'passed' if action == 'pass' else 'failed'} shadow against "
                      f"v{plan['champion']}: {reason}", version=plan["version"], run_id=run_id,
                      key=f"{spec.name}:{run_id}:shadow_verdict", details=details)
    elif action == "pass":
        ledger.record(spec.name, "canary_step", f"{stage} held: {reason}", version=plan["version"], run_id=run_id,
                      key=f"{spec.name}:{run_id}:{slug}:verdict", details=details)
    Registry(paths).set_tags(spec.model_name, plan["version"], {
        f"{TAG}last_verdict": f"{stage}: {action}: {reason}"[:5000],
        f"{TAG}evidence": json.dumps(_compact(verdict), sort_keys=True, default=str)[:5000]})
    log.info("deploy: %s: %s: %s", stage, action, reason)
    return reason


def step_weights(plan: dict[str, Any], percent: int) -> dict[str, int]:
    if percent >= 100:
        return {plan["version"]: 100, plan["champion"]: 0}
    return {plan["champion"]: 100 - percent, plan["version"]: percent}


def set_step(spec: ModelSpec, plan: dict[str, Any], step: int, percent: int, gateway: GatewayClient,
             run_id: str, ledger: Ledger | None = None, seen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move the step's share of traffic to the challenger (a compare-and-set against ``seen``, the previous step's
    result, or the plan for the first step); record ``canary_step``. Raises :class:`DeploySupersededError` if
    another operator changed the traffic since."""
    ledger = ledger or Ledger()
    weights = step_weights(plan, percent)
    revision = _apply(spec, plan, weights, f"canary step {step}: v{plan['version']} at {percent}%",
                      f"step {step} ({percent}%)", gateway, run_id, ledger, seen)
    ledger.record(spec.name, "canary_step", f"step {step}: v{plan['version']} at {percent}%, "
                  f"champion v{plan['champion']} at {100 - percent if percent < 100 else 0}%",
                  version=plan["version"], run_id=run_id, key=f"{spec.name}:{run_id}:step{step}",
                  details={"step": step, "weights": weights, "revision": revision})
    return {"since": time.time(), "weights": weights, "step": step, "percent": percent, "revision": revision}


def _end_shadow(spec: ModelSpec, plan: dict[str, Any], gateway: GatewayClient) -> None:
    """The deploy is decided: stop mirroring (the evidence stays on record)."""
    if plan.get("mirrored") or plan.get("shadow"):
        gateway.clear_shadow(spec.name)


def promote(spec: ModelSpec, plan: dict[str, Any], gateway: GatewayClient, run_id: str,
            paths: StatePaths | None = None, ledger: Ledger | None = None,
            seen: dict[str, Any] | None = None, verdict: dict[str, Any] | None = None) -> str:
    """All steps held: the challenger takes 100% and alias ``champion``; the old champion keeps ``previous``.

    Only if nobody else took over: the champion alias must still be the plan's, the 100% is a compare-and-set
    against ``seen`` (the last step's result), and the revision is read again before the alias moves; otherwise
    :class:`DeploySupersededError` and neither traffic nor aliases are touched again."""
    registry = Registry(paths)
    ledger = ledger or Ledger(paths.ledger_db if paths else None)
    name, new, old = spec.model_name, plan["version"], plan["champion"]

    def champion_still_old() -> None:
        current = registry.by_alias(name, CHAMPION)
        if current is None or str(current.version) != old:
            raise _superseded(spec, plan, "promotion", run_id, ledger, None, None, None,
                              cause=f"champion alias changed by another operator (now "
                                    f"{'v' + str(current.version) if current else 'none'}, expected v{old})")

    champion_still_old()
    target = {new: 100, old: 0}
    revision = _apply(spec, plan, target, f"promote v{new}", "promotion", gateway, run_id, ledger, seen)
    if revision is not None:  # the alias moves only while the traffic is still what this deploy set
        now = gateway.traffic(spec.name)
        if now.get("revision") != revision and serving(now.get("weights", {})) != serving(target):
            raise _superseded(spec, plan, "promotion (alias)", run_id, ledger, now.get("revision"), revision,
                              now.get("weights", {}))
    champion_still_old()
    _end_shadow(spec, plan, gateway)
    registry.set_alias(name, PREVIOUS, old)
    registry.set_alias(name, CHAMPION, new)
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == new:
        registry.delete_alias(name, CHALLENGER)
    registry.set_tags(name, new, {f"{TAG}status": "champion", f"{TAG}promoted_by": run_id})
    registry.set_tags(name, old, {f"{TAG}status": "previous"})
    stages = ("shadow, " if plan.get("shadow") else "") + ", ".join(map(str, spec.canary.steps)) + "%"
    reason = f"v{new} passed every stage ({stages}); v{old} kept as previous"
    if verdict:
        reason += f"; evidence at the last step: {verdict['reason']}"
    ledger.record(spec.name, "promoted", reason, version=new, run_id=run_id, key=f"{spec.name}:{run_id}:promoted",
                  details={"revision": revision} | ({"verdict": _compact(verdict), "evidence": verdict.get("evidence")}
                                                    if verdict else {}))
    return reason


def rollback(spec: ModelSpec, plan: dict[str, Any], reason: str, gateway: GatewayClient, run_id: str,
             paths: StatePaths | None = None, ledger: Ledger | None = None,
             seen: dict[str, Any] | None = None, verdict: dict[str, Any] | None = None) -> str:
    """A breached step: traffic back to the champion at once, then tag the version and record why. A
    compare-and-set against ``seen`` (the step's result): if another operator changed the traffic since, it is
    theirs: :class:`DeploySupersededError`, nothing touched."""
    ledger = ledger or Ledger(paths.ledger_db if paths else None)
    name, bad, champion = spec.model_name, plan["version"], plan["champion"]
    _apply(spec, plan, {champion: 100, bad: 0}, f"rollback v{bad}: {reason}"[:500], "rollback", gateway, run_id,
           ledger, seen)
    _end_shadow(spec, plan, gateway)
    registry = Registry(paths)
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == bad:
        registry.delete_alias(name, CHALLENGER)
    registry.set_tags(name, bad, {f"{TAG}status": "rolled_back", f"{TAG}rollback_reason": reason[:5000]})
    ledger.record(spec.name, "rolled_back", f"v{bad} rolled back to v{champion}: {reason}", version=bad,
                  run_id=run_id, key=f"{spec.name}:{run_id}:rolled_back",
                  details=({"verdict": _compact(verdict), "evidence": verdict.get("evidence")} if verdict else {}))
    return reason


def manual_rollback(spec: ModelSpec, reason: str, gateway: GatewayClient, run_id: str,
                    paths: StatePaths | None = None, ledger: Ledger | None = None) -> dict[str, str]:
    """Restore ``previous`` as champion with 100% of traffic (works whether or not a canary is running).

    An operator's override: the weights are set unconditionally, which raises the traffic revision, so a running
    deploy's next compare-and-set fails and that deploy stops (:class:`DeploySupersededError`)."""
    registry = Registry(paths)
    name = spec.model_name
    previous, champion = registry.by_alias(name, PREVIOUS), registry.by_alias(name, CHAMPION)
    if previous is None:
        raise DeployError(f"{name} has no 'previous' version to roll back to")
    prev, cur = str(previous.version), str(champion.version) if champion else None
    gateway.load(spec.name, prev)
    weights = {prev: 100} | ({cur: 0} if cur and cur != prev else {})
    gateway.set_weights(spec.name, weights, f"manual rollback to v{prev}: {reason}"[:500])
    gateway.clear_shadow(spec.name)  # a deploy it supersedes stops without clearing its mirroring
    registry.set_alias(name, CHAMPION, prev)
    registry.delete_alias(name, PREVIOUS)
    registry.set_tags(name, prev, {f"{TAG}status": "champion"})
    if cur and cur != prev:
        registry.set_tags(name, cur, {f"{TAG}status": "rolled_back", f"{TAG}rollback_reason": reason[:5000]})
    (ledger or Ledger(paths.ledger_db if paths else None)).record(
        spec.name, "rolled_back", f"manual rollback: v{cur} -> v{prev}: {reason}", version=cur, run_id=run_id,
        key=f"{spec.name}:{run_id}:manual_rollback", details={"champion": prev, "demoted": cur, "manual": True})
    return {"champion": prev, "demoted": cur or ""}
