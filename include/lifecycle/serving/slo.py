"""The serving SLO as pure functions: which versions breach it in a window of the gateway's live stats, and the
ops alert a breach becomes.

The ``slo_watch`` DAG's trigger (:class:`lifecycle_airflow.triggers.GatewaySLOTrigger`) polls the gateway and calls
:func:`slo_breaches`; a breach crosses the trigger boundary as ``dataclasses.asdict`` (trigger events must be
JSON), and :func:`breaches_from_event` and :func:`alert_payload` turn it back into the ``<model>__ops_alert`` conf.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: ``Breach.metric`` values.
ERROR_RATE, P99_MS, UNREACHABLE = "error_rate", "p99_ms", "unreachable"


@dataclass(frozen=True)
class Breach:
    """One SLO breach: ``metric`` measured ``value`` against ``limit``.

    ``version`` is None when the gateway itself failed (``unreachable``: ``value`` is the polls in a row without an
    answer, ``detail`` the last error); ``requests`` is the version's requests in the window.
    """

    metric: str
    value: float
    limit: float
    version: str | None = None
    requests: int = 0
    detail: str = ""

    def describe(self) -> str:
        """One line for logs, the ledger and the alert (the text the watch has always used)."""
        if self.metric == ERROR_RATE:
            return (f"v{self.version} error rate {self.value:.3f} > {self.limit:.3f} over {self.requests} "
                    "requests")
        if self.metric == P99_MS:
            return f"v{self.version} p99 {self.value:.1f} ms > {self.limit:.1f} ms over {self.requests} requests"
        if self.metric == UNREACHABLE:
            return f"gateway unreachable for {self.value:g} polls: {self.detail}"
        return f"v{self.version} {self.metric} {self.value:g} > {self.limit:g}"

    __str__ = describe

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (for trigger events and XCom); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breach:
        return cls(**data)


def slo_breaches(stats: Mapping[str, Any], slo: Mapping[str, Any]) -> list[Breach]:
    """Breaches of the serving SLO in one window of ``/admin/models/<model>/stats`` (empty: all within it).

    ``slo`` is ``ServingSLO.model_dump()``. A version with fewer than ``min_requests`` in the window is not judged;
    versions in sorted (string) order, error rate before p99 for each.
    """
    out = []
    for version, s in sorted(stats.get("versions", {}).items()):
        n = int(s.get("requests") or 0)
        if n < slo["min_requests"]:
            continue
        rate = (s.get("errors") or 0) / n
        if rate > slo["max_error_rate"]:
            out.append(Breach(ERROR_RATE, rate, float(slo["max_error_rate"]), str(version), n))
        if s.get("p99_ms") is not None and s["p99_ms"] > slo["max_p99_ms"]:
            out.append(Breach(P99_MS, float(s["p99_ms"]), float(slo["max_p99_ms"]), str(version), n))
    return out


def unreachable_breach(polls: int, limit: int, error: object) -> Breach:
    """The breach of a gateway that did not answer ``polls`` polls in a row (``limit``: how many it may miss)."""
    return Breach(UNREACHABLE, float(polls), float(limit), None, 0, str(error))


def breaches_from_event(event: Mapping[str, Any]) -> list[Breach]:
    """The breaches of a ``GatewaySLOTrigger`` event (serialised with ``as_dict``)."""
    return [Breach.from_dict(b) for b in event.get("breaches", [])]


def breached_version(breaches: Iterable[Breach]) -> str | None:
    """The one version the breaches are about; None when they name several, or none (the gateway failed)."""
    versions = sorted({b.version for b in breaches if b.version is not None})
    return versions[0] if len(versions) == 1 else None


def alert_payload(breaches: list[Breach], watch_run_id: str) -> dict[str, Any]:
    """The ``<model>__ops_alert`` conf for a breach: the first breach as summary, all of them as the reason."""
    return {"event": "slo_breach", "version": breached_version(breaches),
            "summary": f"serving SLO breached: {breaches[0]}", "reason": "; ".join(map(str, breaches)),
            "links": {"watch_run": watch_run_id}, "severity": "error"}

