"""The promotion gate: a pure function from metrics and policy to a decision with a one-line reason.

The first candidate (no champion) is judged on the absolute thresholds only and becomes champion when it passes.
A later candidate must also not regress against the champion, scored on the same held-out rows.

It reads metrics by name, whatever the task: the spec allows only its task's names (:data:`lifecycle.spec.TASK_METRICS`,
``recall.<class>`` for a multiclass model). For the lower-is-better ones (:data:`lifecycle.spec.LOWER_IS_BETTER`: log
loss, calibration error, RMSE, MAE) a threshold is a ceiling and a regression is a rise.

Undefined metrics (None in the evaluation, with a reason: see :mod:`lifecycle.training.evaluation`; a NaN, an
infinity or a missing metric of an older or hand-made evaluation counts the same) follow one rule each:

- a threshold on an undefined overall metric fails, its detail naming the reason;
- a regression check fails when the candidate's metric is undefined; when only the champion's is, there is
  nothing to regress from: the check is *not judged* (``judged=False``, ``passed=True``) and says why;
- a slice with fewer than ``min_slice_rows`` rows is skipped (no check), as ever; a slice metric undefined on a
  slice with enough rows (e.g. a single-class slice: no ROC AUC) is *not judged*: its check holds
  ``passed=True, judged=False`` and the detail ``slice NAME: METRIC not judged: REASON (N rows)``.

Not-judged checks never fail the gate and are never silent: a passing decision's reason counts them and quotes
the first. Every decision is plain JSON (:meth:`GateDecision.to_dict`: strings and booleans only).

With the candidate's fairness audit (the spec's ``fairness`` section: :mod:`lifecycle.training.fairness`), each
audited attribute and metric adds a check ``fairness.<attribute>.<metric>``: a breach fails it, its detail naming
the groups and the gap; a metric undefined on the held-out rows is not judged. Fairness is judged on the candidate
alone (the champion's figures are recorded, not compared).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lifecycle.spec import LOWER_IS_BETTER
from lifecycle.training.evaluation import metric_value, undefined_reason
from lifecycle.training.fairness import gate_findings

if TYPE_CHECKING:
    from lifecycle.spec import GatePolicy
    from lifecycle.training.evaluation import Evaluation


@dataclass(frozen=True)
class Check:
    """One check of the gate; ``judged=False`` when its metric is undefined and the rule is not to judge it (then
    ``passed`` is True and ``detail`` says why)."""

    name: str
    passed: bool
    detail: str
    judged: bool = True


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
    """True when ``value`` is on the wrong side of ``bound`` for this metric."""
    return value > bound if metric in LOWER_IS_BETTER else value < bound


def decide(candidate: Evaluation, champion: Evaluation | None, policy: GatePolicy,
           version: str | int | None = None, *, fairness: Mapping[str, Any] | None = None) -> GateDecision:
    """Judge a candidate. ``champion`` is the serving model scored on the same rows, or None for the first one;
    ``fairness`` the candidate's fairness audit (:func:`lifecycle.training.fairness.audit`), None for none.

    Undefined metrics follow the rules of the module docstring; nothing here raises on any evaluation.
    """
    checks: list[Check] = []
    for metric, floor in policy.thresholds.items():
        value = metric_value(candidate.overall, metric)
        op = "<=" if metric in LOWER_IS_BETTER else ">="
        if value is None:
            why = undefined_reason(candidate.overall, metric)
            checks.append(Check(f"threshold.{metric}", False,
                                f"{metric} undefined ({why}): threshold {op} {floor} not met"))
            continue
        ok = not _worse(metric, value, floor)
        checks.append(Check(f"threshold.{metric}", ok, f"{metric} {value:.4f} {op} {floor}" if ok
                            else f"{metric} {value:.4f} {'>' if op == '<=' else '<'} threshold {floor}"))
    if champion is not None:
        for metric, slack in policy.max_regression.items():
            value = metric_value(candidate.overall, metric)
            ref = metric_value(champion.overall, metric)
            sign = "+" if metric in LOWER_IS_BETTER else "-"
            if value is None:
                checks.append(Check(f"regression.{metric}", False, f"{metric} undefined "
                                    f"({undefined_reason(candidate.overall, metric)}): cannot show no regression "
                                    f"against the champion"))
                continue
            if ref is None:
                checks.append(Check(f"regression.{metric}", True, f"{metric} {value:.4f}: not judged against the "
                                    f"champion: its {metric} is undefined "
                                    f"({undefined_reason(champion.overall, metric)})", judged=False))
                continue
            bound = ref + slack if metric in LOWER_IS_BETTER else ref - slack
            ok = not _worse(metric, value, bound)
            checks.append(Check(
                f"regression.{metric}", ok,
                f"{metric} {value:.4f} vs champion {ref:.4f} (allowed {sign}{slack})" if ok else
                f"{metric} {value:.4f} {'>' if metric in LOWER_IS_BETTER else '<'} champion {ref:.4f} {sign} {slack}",
            ))
    for name, metrics in sorted(candidate.slices.items()):
        rows = int(metric_value(metrics, "rows") or 0)
        if rows < policy.min_slice_rows:
            continue
        for metric, floor in policy.slice_thresholds.items():
            value = metric_value(metrics, metric)
            if value is None:
                checks.append(Check(f"slice.{name}.{metric}", True, f"slice {name}: {metric} not judged: "
                                    f"{undefined_reason(metrics, metric)} ({rows} rows)", judged=False))
                continue
            ok = not _worse(metric, value, floor)
            checks.append(Check(f"slice.{name}.{metric}", ok,
                                f"slice {name}: {metric} {value:.4f} "
                                f"{'meets' if ok else 'misses'} floor {floor} ({rows} rows)"))
    checks += [Check(name, passed, detail, judged) for name, passed, detail, judged in gate_findings(fairness)]
    failed = [c for c in checks if not c.passed]
    who = f"v{version}" if version is not None else "candidate"
    if failed:
        more = f" (+{len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        return GateDecision(False, f"gate: rejected {who}: {failed[0].detail}{more}", champion is None, checks)
    unjudged = [c for c in checks if not c.judged]
    held = f"{len(checks) - len(unjudged)} checks held"
    if unjudged:
        more = f" (+{len(unjudged) - 1} more)" if len(unjudged) > 1 else ""
        held += f", {len(unjudged)} not judged: {unjudged[0].detail}{more}"
    fallback = "no check judged" if checks else "no checks configured"
    headline = next((c.detail for c in checks if c.name.startswith("regression.") and c.judged),
                    next((c.detail for c in checks if c.judged), fallback))
    first = " (first model: becomes champion)" if champion is None else ""
    return GateDecision(True, f"gate: passed {who}: {held}; {headline}{first}", champion is None, checks)
