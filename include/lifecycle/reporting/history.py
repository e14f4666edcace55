"""Who held a model's ``champion`` alias, when, and why: rebuilt from the ledger alone.

MLflow's registry keeps no alias history (mlflow/mlflow#2169 has asked for it since 2019), so the ledger's
events are the record: ``promoted`` (the first model through the gate, or a deploy that passed every stage)
makes its version champion; a manual ``rolled_back`` (``details.manual``, or the reason
``manual rollback: vX -> vY`` of rows written before the details existed) gives the alias back to ``vY``. An
automatic rollback leaves the champion as it was (the challenger never held the alias), and is listed under the
tenure it happened in, as are shadow verdicts and superseded deploys: the decisions taken while that version served.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lifecycle.clock import parse_utc
from lifecycle.ledger import Event

_MANUAL = re.compile(r"manual rollback: v(\S+) -> v(\d+)")


@dataclass
class Tenure:
    """One stretch of a version as champion: from ``since`` to ``until`` (None: still champion)."""

    version: str
    since: str
    why: str
    run_id: str | None
    until: str | None = None
    ended_by: str | None = None
    decisions: list[Event] = field(default_factory=list)

    def days(self, now: str | None = None) -> float | None:
        end = self.until or now
        if end is None:
            return None
        return (parse_utc(end) - parse_utc(self.since)).total_seconds() / 86_400


def _new_champion(event: Event) -> str | None:
    if event.event == "promoted":
        return None if event.version is None else str(event.version)
    if event.event == "rolled_back":
        if event.details.get("manual"):
            return str(event.details["champion"])
        found = _MANUAL.search(event.reason)
        if found:
            return found.group(2)
    return None


def champion_history(events: list[Event]) -> list[Tenure]:
    """The tenures of ``champion``, oldest first, from one model's ledger events (in ledger order)."""
    tenures: list[Tenure] = []
    for event in events:
        version = _new_champion(event)
        if version is not None:
            if tenures and tenures[-1].until is None:
                tenures[-1].until, tenures[-1].ended_by = event.at, f"{event.event}: {event.reason}"
            tenures.append(Tenure(version, event.at, f"{event.event}: {event.reason}", event.run_id))
        elif tenures and event.event in ("rolled_back", "shadow_verdict", "retired", "restored"):
            tenures[-1].decisions.append(event)
    return tenures


def _duration(days: float) -> str:
    if days >= 1:
        return f"{days:.1f} days"
    hours = days * 24
    return f"{hours:.1f} hours" if hours >= 1 else f"{hours * 60:.0f} minutes"


def render(model: str, tenures: list[Tenure], now: str | None = None, width: int = 110) -> str:
    """Plain text for ``lifecycle history``: one block per tenure, the decisions taken during it indented."""
    if not tenures:
        return f"{model}: no version has been champion yet (no 'promoted' event in the ledger)"

    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."

    lines = [f"{model}: who held 'champion', from the ledger ({len(tenures)} tenure(s))"]
    for t in tenures:
        days = t.days(now)
        span = f"{t.since} .. {t.until or 'now'}" + (f" ({_duration(days)})" if days is not None else "")
        lines.append(f"v{t.version:<4} {span}")
        lines.append("       became champion: " + cut(t.why))
        for d in t.decisions:
            lines.append(f"       {d.at} {d.event} v{d.version}: " + cut(d.reason))
        if t.ended_by:
            lines.append("       ended: " + cut(t.ended_by))
    return "\n".join(lines)
