"""What the monitor does about one judged interval, as pure functions.

:func:`lifecycle.monitoring.policy.decide` says whether an interval drifted and whether to retrain; :func:`respond`
turns that and the interval's measurements into the actions: the ``drift_detected`` ledger event, the ops alert,
and the train DAG's conf when it retrains. The monitor DAG's ``decide`` task only carries them out (ledger, alert,
trigger); :func:`lifecycle.monitoring.run.judge_interval` gathers the inputs (ledger history, last validated day).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifecycle.monitoring.policy import PolicyDecision


@dataclass(frozen=True)
class DriftResponse:
    """The monitor's actions for one interval; :meth:`as_dict` survives ``json.dumps``.

    ``drift``: record ``drift_detected`` (``reason``, ``details``, idempotent by ``key``) and, when that record is
    new, alert ops (``alert`` as the summary, ``links``, idempotent by ``alert_key``). ``conf``: trigger the train
    DAG with it; None when the policy does not retrain.
    """

    drift: bool
    retrain: bool
    reason: str
    version: str | None = None
    interval: str = ""
    key: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    alert: str = ""
    alert_key: str = ""
    links: dict[str, str] = field(default_factory=dict)
    conf: dict[str, Any] | None = None

    def describe(self) -> str:
        """One line: ``RETRAIN``, ``drift, no retrain`` or ``ok``, then the policy's reason."""
        return f"{'RETRAIN' if self.retrain else 'drift, no retrain' if self.drift else 'ok'}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def respond(model: str, measured: Mapping[str, Any], decision: PolicyDecision, *, drift_share: float,
            as_of: dt.date | None) -> DriftResponse:
    """The actions for ``decision`` about the interval ``measured`` (``lifecycle.monitoring.run.measure``'s dict).

    ``drift_share`` is the policy's threshold (recorded with the event); ``as_of`` the newest validated day up to
    the interval's end, the last day a drift-triggered retrain trains on (None: the train DAG's default).
    """
    if not decision.drift:
        return DriftResponse(False, False, decision.reason)
    version = measured["champion_version"]
    interval = f"{measured['interval'][0]}/{measured['interval'][1]}"
    key = f"{model}:drift:{interval}"
    details = {"drift_share": measured["drift_share"], "threshold": drift_share, "drifted": measured["drifted"],
               "scores": measured["scores"], "report": measured["report"], "interval": interval,
               "performance": measured["performance"], "retrain": decision.retrain}
    alert = f"drift in {interval}: share {measured['drift_share']:.2f}" + \
        ("; retraining" if decision.retrain else "; no retrain")
    conf = None
    if decision.retrain:
        conf = {"reason": f"drift: {decision.reason}"[:500], "report": measured["report"],
                "as_of": as_of.isoformat() if as_of else None, "force": False}
    return DriftResponse(True, decision.retrain, decision.reason, version=version, interval=interval, key=key,
                         details=details, alert=alert, alert_key=f"{key}:alert",
                         links={"report": measured["report"] or ""}, conf=conf)


def is_backfill(run_type: object, run_id: str) -> bool:
    """Whether a monitor run recomputes a past interval (``airflow backfill``): report only, never retrain."""
    return str(run_type).lower().endswith("backfill_job") or run_id.startswith("backfill__")
