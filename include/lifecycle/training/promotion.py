"""The promotion gate: a pure function from metrics and policy to a decision with a one-line reason.

The first candidate (no champion) is judged on the absolute thresholds only and becomes champion when it passes.
A later candidate must also not regress against the champion, scored on the same held-out rows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lifecycle.spec import LOWER_IS_BETTER

if TYPE_CHECKING:
    from lifecycle.spec import GatePolicy
    from lifecycle.training.evaluation import Evaluation


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    first_model: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "rejected"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worse(metric: str, value: float, bound: float) -> bool:
    """True when ``value`` is on the wrong side of ``bound`` for this metric (NaN is always wrong)."""
    if math.isnan(value):
        return True
    return value > bound if metric in LOWER_IS_BETTER else value < bound


def decide(candidate: Evaluation, champion: Evaluation | None, policy: GatePolicy,
           version: str | int | None = None) -> GateDecision:
    """Judge a candidate. ``champion`` is the serving model scored on the same rows, or None for the first one."""
    checks: list[Check] = []
    for metric, floor in policy.thresholds.items():
        value = candidate.overall.get(metric, float("nan"))
        op = "<=" if metric in LOWER_IS_BETTER else ">="
        checks.append(Check(f"threshold.{metric}", not _worse(metric, value, floor),
                            f"{metric} {value:.4f} {op} {floor}" if not _worse(metric, value, floor)
                            else f"{metric} {value:.4f} {'>' if op == '<=' else '<'} threshold {floor}"))
    if champion is not None:
        for metric, slack in policy.max_regression.items():
            value = candidate.overall.get(metric, float("nan"))
            ref = champion.overall.get(metric, float("nan"))
            bound = ref + slack if metric in LOWER_IS_BETTER else ref - slack
            sign = "+" if metric in LOWER_IS_BETTER else "-"
            ok = not _worse(metric, value, bound)
            checks.append(Check(
                f"regression.{metric}", ok,
                f"{metric} {value:.4f} vs champion {ref:.4f} (allowed {sign}{slack})" if ok else
                f"{metric} {value:.4f} {'>' if metric in LOWER_IS_BETTER else '<'} champion {ref:.4f} {sign} {slack}",
            ))
    for name, metrics in sorted(candidate.slices.items()):
        if metrics.get("rows", 0) < policy.min_slice_rows:
            continue
        for metric, floor in policy.slice_thresholds.items():
            value = metrics.get(metric, float("nan"))
            ok = not _worse(metric, value, floor)
            checks.append(Check(f"slice.{name}.{metric}", ok,
                                f"slice {name}: {metric} {value:.4f} "
                                f"{'meets' if ok else 'misses'} floor {floor} ({int(metrics['rows'])} rows)"))
    failed = [c for c in checks if not c.passed]
    who = f"v{version}" if version is not None else "candidate"
    if failed:
        more = f" (+{len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        return GateDecision(False, f"gate: rejected {who}: {failed[0].detail}{more}", champion is None, checks)
    headline = next((c.detail for c in checks if c.name.startswith("regression.")),
                    next((c.detail for c in checks), "no checks configured"))
    first = " (first model: becomes champion)" if champion is None else ""
    return GateDecision(True, f"gate: passed {who}: {len(checks)} checks held; {headline}{first}",
                        champion is None, checks)
