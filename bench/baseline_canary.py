"""Today's per-step canary judge, kept verbatim as the baseline of ``bench/decisions.py``.

Copied unchanged (below this docstring) from ``include/lifecycle/serving/canary.py`` at commit 0a5399a, which the
deploy DAG still imports until it is rewired to :mod:`lifecycle.serving.evidence`; the copy lets the benchmark
compare against the old policy after that module is deleted. Not used by the product.

How the old deploy DAG used it (HEAD's ``dags/deploy.py``, ``plugins/lifecycle_airflow/triggers.py``
``CanaryStepTrigger``, ``operators.py`` ``CanaryWatchOperator``, ``serving/deploy.py`` ``judge_step``): per step,
the trigger polls the gateway's live stats since the step started every ``poll_seconds`` until
:func:`enough_evidence` holds for the challenger (or ``max_seconds`` passes: ``timed_out``); then :func:`judge`
runs ONCE on the stats since the step started, and the step passes or rolls back.

--- original module docstring ---
The canary judge: a pure function from live per-version statistics and the spec's SLOs to a decision.

Accuracy on labelled feedback is compared with a one-sided two-proportion z-test, not a raw difference: with
30 labels a 5-point gap is noise; with 3,000 it is not.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifecycle.spec import CanaryPlan


@dataclass(frozen=True)
class CanaryDecision:
    passed: bool
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def one_sided_worse_pvalue(correct_a: int, n_a: int, correct_b: int, n_b: int, margin: float = 0.0) -> float:
    """P-value of H1: accuracy(b) < accuracy(a) - margin (two-proportion z-test, pooled variance)."""
    if n_a == 0 or n_b == 0:
        return 1.0
    pa, pb = correct_a / n_a, correct_b / n_b
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n_a + 1 / n_b), 1e-12))
    z = (pb - (pa - margin)) / se
    return 0.5 * math.erfc(-z / math.sqrt(2))  # P(Z <= z)


def one_sided_higher_pvalue(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
                            margin: float = 0.0) -> float:
    """P-value of H1: mean(b) > mean(a) + margin (Welch z-test; the samples here number in the hundreds)."""
    if n_a < 2 or n_b < 2:
        return 1.0
    se = math.sqrt(max(var_a / n_a + var_b / n_b, 1e-12))
    z = (mean_b - mean_a - margin) / se
    return 0.5 * math.erfc(z / math.sqrt(2))  # P(Z >= z)


def enough_evidence(stats: dict[str, Any], plan: CanaryPlan, elapsed: float) -> tuple[bool, str]:
    """Has the challenger's step gathered what the judge needs? (used by the watching trigger)"""
    missing = []
    if stats.get("requests", 0) < plan.min_requests:
        missing.append(f"{stats.get('requests', 0)}/{plan.min_requests} requests")
    if elapsed < plan.min_seconds:
        missing.append(f"{elapsed:.0f}/{plan.min_seconds:.0f}s")
    if plan.slo.min_feedback and stats.get("feedback", 0) < plan.slo.min_feedback:
        missing.append(f"{stats.get('feedback', 0)}/{plan.slo.min_feedback} labels")
    return not missing, ", ".join(missing)


def judge(champion: dict[str, Any], challenger: dict[str, Any], plan: CanaryPlan, *, step: int, weight: int,
          version: str, champion_version: str, timed_out: bool = False) -> CanaryDecision:
    """Judge one step. ``champion``/``challenger``: the gateway's live stats for the step's time range."""
    slo = plan.slo
    where = f"canary step {step} ({weight}%)"
    checks: list[dict[str, Any]] = []
    if timed_out:
        ok, missing = enough_evidence(challenger, plan, plan.max_seconds)
        return CanaryDecision(False, f"{where}: v{version} breached evidence: after {plan.max_seconds:.0f}s "
                              f"still missing {missing}", [{"name": "evidence", "passed": False}])
    n_c, n_x = champion.get("requests", 0), challenger.get("requests", 0)
    rate_c = champion.get("errors", 0) / n_c if n_c else 0.0
    rate_x = challenger.get("errors", 0) / n_x if n_x else 0.0
    ok = rate_x - rate_c <= slo.max_error_rate_increase
    checks.append({"name": "error_rate", "passed": ok,
                   "detail": f"error rate {rate_x:.2%} vs champion {rate_c:.2%} "
                             f"(allowed +{slo.max_error_rate_increase:.2%})"})
    p99_c, p99_x = champion.get("p99_ms"), challenger.get("p99_ms")
    if p99_x is not None:
        limit = max(slo.max_p99_ms, (p99_c or 0) * slo.max_p99_ratio)
        checks.append({"name": "p99_latency", "passed": p99_x <= limit,
                       "detail": f"p99 {p99_x:.2f} ms vs limit {limit:.2f} ms (champion {p99_c or 0:.2f} ms)"})
    fb_c, fb_x = champion.get("feedback", 0), challenger.get("feedback", 0)
    if fb_c >= slo.min_feedback and fb_x >= slo.min_feedback and fb_c and fb_x:
        acc_c, acc_x = champion["correct"] / fb_c, challenger["correct"] / fb_x
        p = one_sided_worse_pvalue(champion["correct"], fb_c, challenger["correct"], fb_x, slo.accuracy_margin)
        checks.append({"name": "accuracy", "passed": p >= slo.alpha,
                       "detail": f"accuracy {acc_x:.3f} (n={fb_x}) vs champion {acc_c:.3f} (n={fb_c}), "
                                 f"one-sided p={p:.2g} (alpha {slo.alpha})"})
        if champion.get("brier") is not None and challenger.get("brier") is not None:
            pb = one_sided_higher_pvalue(champion["brier"], champion.get("brier_var") or 0.0, fb_c,
                                         challenger["brier"], challenger.get("brier_var") or 0.0, fb_x,
                                         slo.brier_margin)
            checks.append({"name": "brier", "passed": pb >= slo.alpha,
                           "detail": f"Brier score {challenger['brier']:.4f} vs champion {champion['brier']:.4f}, "
                                     f"one-sided p={pb:.2g} (alpha {slo.alpha})"})
    else:
        checks.append({"name": "accuracy", "passed": True,
                       "detail": f"not judged: {fb_x} / {fb_c} labels (need {slo.min_feedback} each)"})
    failed = [c for c in checks if not c["passed"]]
    if failed:
        return CanaryDecision(False, f"{where}: v{version} breached {failed[0]['name']}: {failed[0]['detail']}",
                              checks)
    return CanaryDecision(True, f"{where}: v{version} holds against v{champion_version}: "
                          + "; ".join(c["detail"] for c in checks), checks)
