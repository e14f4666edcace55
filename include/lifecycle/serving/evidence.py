"""The deploy judge: one anytime-valid test on paired evidence, pooled from the shadow stage to the last step.

Evidence. From the moment a deploy starts, the gateway has both versions score every request (the one that answers
and the one it mirrors to: in shadow the challenger is mirrored and no user sees it; during the ramp whichever
version is not answering is). It keeps only sums (:class:`PairedEvidence`): no per-row data travels and the
judge is O(1).

Tests. For each of accuracy, Brier score and error rate, a per-row (per-request for errors) difference ``d`` in
[-1, 1] is positive when the challenger did worse; H0: E[d] <= m (the SLO's margin), H1: E[d] > m. With
``xi = (d - m) / (1 + m) >= -1``, ``S = sum xi`` and ``V = sum xi^2`` (both from n, sum d, sum d^2, m),

    E_lambda = exp(lambda * S - psi_E(lambda) * V),   psi_E(l) = -log(1 - l) - l,   0 <= lambda < 1,

is a nonnegative supermartingale under H0: for x >= -1, exp(l x - psi_E(l) x^2) <= 1 + l x (Fan, Grama & Liu
2015, "Exponential inequalities for martingales with applications"), so each factor has conditional mean
<= 1 + l E[xi | past] <= 1 (Howard, Ramdas, McAuliffe & Sekhon 2021, Ann. Statist., "Time-uniform, nonparametric,
nonasymptotic confidence sequences": their empirical-Bernstein supermartingale with the constant (null)
predictor). tests/unit/test_evidence.py checks the inequality on a dense grid and every factor's mean at the
worst-case (two-point) H0 distributions. The scale ``1 + m`` is
the smallest that keeps xi >= -1 when d can be -1, and the smallest scale is the most powerful (psi_E(l)/l^2
grows with l). The e-value is the mean of E_lambda over :data:`LAMBDAS` (a mean of e-processes is one).

Latency: the challenger's answers over the latency limit of the moment, ``slow_x`` of ``served_x``; the limit is
a p99, so H0: P(slow) <= 0.01. d = 1[slow] is 0/1, so the same construction uses the exact (Bernoulli) bound
instead of Fan's: E[exp(l d)] <= 1 - m + m e^l for d in [0, 1] with E[d] <= m (convexity), hence
E_lambda = exp(l * k - n * log(1 - m + m e^l)), l >= 0, is a supermartingale under H0; it is growth-optimal for
0/1 data (Fan's bound with xi = (d - m)/m reaches the same rejection with 1.5-2.5x more requests at P(slow) of
2-5%). Mean over :data:`LATENCY_LAMBDAS`.

Guarantee. Ville's inequality: P(sup_t E_t >= 1/a) <= a under H0, whenever and however often the judge looks. The
spec's ``canary.slo.alpha`` is the whole deploy's false-rollback budget, split evenly (Bonferroni) over the four
tests: a challenger within every margin is rolled back by the tests with probability <= alpha over shadow and
the whole ramp. Assumption: given the past, each new observation's expected difference is <= m, i.e. the null
holds at every moment, not only on average over the deploy: rows from a stable mix, and labels whose delay does
not depend on the outcome (if, say, positives were labelled later than negatives, the late labelled pairs could
differ on average from the early ones and the guarantee would no longer hold as stated).

Grid. The best lambda when the evidence crosses 1/a after n observations of variance s^2 (in xi units) is about
sqrt(2 log(K/a) / (n s^2)) (K lambdas); with log(K/a) ~ 8 (K = 8, a = 0.0025) that is 0.8 at n s^2 ~ 25 and
0.0063 at n s^2 ~ 400,000. Labels from ~100 to ~100k at s^2 from ~0.01 (Brier, similar models) to ~1 (accuracy
with many disagreements) give n s^2 from ~1 to 10^5: the grid 0.8 / 2^k, k = 0..7, covers it, its factor-2
spacing keeps >= 83% of the best single lambda's exponent and the averaging costs log 8 = 2.1 nats. Above 0.8,
psi_E explodes (psi_E(0.9) = 1.4). Latency: the best l = log(p (1 - m) / (m (1 - p))) is 0.7 at P(slow) = 2%,
1.65 at 5%, 4.6 at 50%: :data:`LATENCY_LAMBDAS` = 0.25 * 2^k, k = 0..5.

Screens (shadow only, before labels can decide; :func:`screen`): invalid scores, constant scores, scores
inverted against the champion's stop the deploy; scores that moved (positive rate or mean) hold it in shadow for
more labels. Deterministic rules with a false-alarm rate of ~0 for equal models (see :func:`screen`).

Tasks (``PairedEvidence.task``; the gateway sums each task's own ``d``, :mod:`lifecycle.serving.live`):

- ``binary``: as above (correct: ``(p >= 0.5) == y``; Brier: ``(p - y)^2``).
- ``multiclass``: accuracy on ``d = 1[argmax p_c = y] - 1[argmax p_x = y]``; the Brier test on
  ``d = (B_x - B_c) / 2`` with ``B = sum_k (p_k - 1[k = y])^2`` in [0, 2] (half the multiclass Brier score, so
  ``d`` lies in [-1, 1] and the construction above holds as it is; ``brier_margin`` is in those halved units).
- ``regression``: no accuracy test (a value is not right or wrong: reported as not applicable, with no alpha; never
  "passed"). The loss test uses the normalised squared-error difference ``d = (e_x^2 - e_c^2) / (e_x^2 + e_c^2)``
  (``e`` = prediction - label, in target units; ``d = 0`` when both errors are 0), positive when the challenger
  did worse. H0: ``E[d] <= m`` (``brier_margin``): a scale-free statement that the challenger's squared error is
  not larger than the champion's more often, or by more, than it is smaller (``d`` is the same for errors of 1 and
  2 as for 100 and 200, and antisymmetric: ``E[d] = 0`` when the two errors are exchangeable, e.g. equal models).
  The raw difference ``e_x^2 - e_c^2`` is unbounded (in squared target units, and heavy-tailed), and the
  e-process needs ``d >= -1`` after scaling by a known constant: no such constant exists for it, and a
  data-driven one would void Ville's guarantee. Alpha is split over the tests that apply: ``alpha / 3`` each for
  regression, ``alpha / 4`` for the classifiers (statistics' ``alpha_per_test`` and ``correction`` say so).
  What this H0 is not: a statement about mean squared error. Every row weighs the same, so a challenger that is
  slightly worse on most rows and much better on a few (champion errors 1 on 95% of rows and 10 on 5%, MSE 5.95;
  challenger 1.2 and 2, MSE 1.57: E[d] ~ +0.125) is rolled back although its MSE is a quarter of the champion's,
  while the offline gate (on held-out RMSE / R^2) would have preferred it. The judge errs towards keeping the
  champion; a model whose value is in rare large errors should be judged offline, or with a margin that allows it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lifecycle.spec import CanaryPlan, CanarySLO, ShadowPlan

#: The e-process's mixing grid for differences in [-1, 1] (see the module docstring for why).
LAMBDAS: tuple[float, ...] = tuple(0.8 / 2**k for k in range(8))
#: The grid of the latency test's Bernoulli e-process.
LATENCY_LAMBDAS: tuple[float, ...] = tuple(0.25 * 2**k for k in range(6))
#: H0 of the latency test: the share of challenger answers over the limit (the limit is a p99).
LATENCY_NULL = 0.01
#: The four sequential tests, in the order they are reported; ``alpha`` is split evenly over those that apply to the
#: model's task (:func:`applicable_tests`).
TESTS = ("accuracy", "brier", "error_rate", "latency")


def applicable_tests(task: str) -> tuple[str, ...]:
    """The tests that apply to a model of ``task``: all four, but no accuracy for regression."""
    return tuple(t for t in TESTS if not (task == "regression" and t == "accuracy"))
#: Largest e-value reported (JSON has no infinity); the test compares logarithms, so the cap changes nothing.
#: 1e18, not more: a verdict travels through Airflow's metadata DB (a trigger event, an XCom), and PostgreSQL's
#: JSONB reads a float of 2^63 or more back as an integer, which Airflow's task channel (msgpack) cannot carry:
#: the task resuming from the trigger then dies before it starts. 1e18 is 40 decimal orders above any threshold.
E_CAP = 1e18
_LOG_E_CAP = math.log(E_CAP)
#: Sums and counts beyond this size (never real: no deploy gathers 1e300 observations) are clamped to it before
#: the e-values' arithmetic, so that no input can overflow it into infinity or NaN.
_HUGE = 1e300

Action = Literal["rollback", "pass", "wait"]

#: The largest magnitude :func:`jsonb_safe` lets a number keep (below 2^63: see :data:`E_CAP`).
JSONB_MAX = 9.0e18


def jsonb_safe(value: Any) -> Any:
    """``value`` (plain JSON) with every number beyond :data:`JSONB_MAX` in magnitude clamped to it (sign kept):
    what survives Airflow's metadata DB on PostgreSQL and its task channel. Only absurd sums reach it (a
    regression's squares of values over 3e9); a verdict's decisions are taken before, on the exact numbers."""
    if isinstance(value, float | int) and not isinstance(value, bool) and abs(value) > JSONB_MAX:
        return math.copysign(JSONB_MAX, value)
    if isinstance(value, dict):
        return {k: jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonb_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------- the evidence
_INT_FIELDS = ("pairs", "invalid", "pos_c", "pos_x", "labels", "requests", "served_c", "served_x", "slow_x",
               "class_c", "class_x")
_NONNEGATIVE = frozenset(_INT_FIELDS) | {"sum_pc", "sum_px", "sum_pc2", "sum_px2", "sum_pcpx", "sum_dacc2",
                                        "sum_dbrier2", "sum_derr2", "sum_pck", "sum_pxk", "sum_pcsq", "sum_pxsq"}


@dataclass
class PairedEvidence:
    """Sufficient statistics of one deploy's evidence (champion vs challenger), pooled since the deploy started;
    the gateway sums them (per row unless stated) and serves them as JSON (:meth:`to_dict` / :meth:`from_dict`,
    plain floats and ints). Every difference ``d`` is oriented so that positive = challenger worse. Rows with an
    invalid challenger score count in ``invalid`` only (not in ``pairs`` or any sum)."""

    champion: str
    challenger: str
    pairs: int = 0  # rows scored by both versions (one answered, the other mirrored)
    invalid: int = 0  # challenger scores that were NaN, infinite or outside [0, 1] (rows)
    sum_pc: float = 0.0  # over the pairs: champion / challenger probabilities, their squares, their product
    sum_px: float = 0.0
    sum_pc2: float = 0.0
    sum_px2: float = 0.0
    sum_pcpx: float = 0.0
    pos_c: int = 0  # pairs with p >= 0.5, champion / challenger
    pos_x: int = 0
    labels: int = 0  # labelled pairs (the first label per request id only)
    sum_dacc: float = 0.0  # d = 1[champion correct] - 1[challenger correct] (decision p >= 0.5)
    sum_dacc2: float = 0.0
    sum_dbrier: float = 0.0  # d = (p_x - y)^2 - (p_c - y)^2
    sum_dbrier2: float = 0.0
    requests: int = 0  # paired requests (both versions attempted)
    sum_derr: float = 0.0  # per paired request: d = 1[challenger failed] - 1[champion failed]
    sum_derr2: float = 0.0
    served_c: int = 0  # requests answered by the champion / the challenger (served_x: user exposure)
    served_x: int = 0
    slow_x: int = 0  # challenger-answered requests over the latency limit of the moment

    #: The model's task: a multiclass or regression pair's evidence is a :class:`MulticlassEvidence` or a
    #: :class:`RegressionEvidence` (the fields above mean what "Tasks" in the module docstring says for them).
    task: ClassVar[str] = "binary"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; a binary pair's as it always was, the others' with ``task`` (and their own fields)."""
        out = asdict(self)
        if self.task != "binary":
            out["task"] = self.task
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedEvidence:
        """Read the gateway's JSON; counts may come as floats (summed as such). A missing field counts 0 and an
        unknown key is ignored (a newer gateway may add some); a non-number, a non-finite number or a negative
        count or sum of squares is a ValueError. ``task`` (absent: binary) picks the class: a
        :class:`MulticlassEvidence`, whose lists must hold one number per class of ``classes`` (missing: zeros),
        or a :class:`RegressionEvidence`."""
        if "champion" not in d or "challenger" not in d:
            raise ValueError("paired evidence needs 'champion' and 'challenger'")
        values: dict[str, Any] = {"champion": str(d["champion"]), "challenger": str(d["challenger"])}
        task = d.get("task", "binary")
        kind = _KINDS.get(task) if isinstance(task, str) else None
        if kind is None:
            raise ValueError(f"paired evidence: task must be one of {list(_KINDS)}, got {task!r}")
        signed = _SIGNED_VALUES if task == "regression" else frozenset()  # values in target units: any sign
        for name in _SCALARS:
            values[name] = _number(name, d.get(name, 0), name not in signed)
        if kind is MulticlassEvidence:
            classes = d.get("classes")
            if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
                raise ValueError(f"paired evidence: a multiclass pair needs classes (a list of class texts), got "
                                 f"{classes!r}")
            values["classes"] = list(classes)
            for name in _VECTORS:
                raw = d.get(name)
                raw = [0] * len(classes) if raw is None else raw
                if not isinstance(raw, list) or len(raw) != len(classes):
                    raise ValueError(f"paired evidence: {name} must be a list of {len(classes)} numbers (one per "
                                     f"class), got {raw!r}")
                values[name] = [_number(name, x) for x in raw]
            for name in ("sum_pcsq", "sum_pxsq"):
                values[name] = _number(name, d.get(name, 0))
        return kind(**values)

    def __add__(self, other: PairedEvidence) -> PairedEvidence:
        if not isinstance(other, PairedEvidence):
            return NotImplemented
        if (self.champion, self.challenger) != (other.champion, other.challenger):
            raise ValueError(f"cannot add the evidence of v{other.challenger} vs v{other.champion} to that of "
                             f"v{self.challenger} vs v{self.champion}")
        if type(self) is not type(other) or getattr(self, "classes", None) != getattr(other, "classes", None):
            raise ValueError(f"cannot add {other.task} evidence (classes {getattr(other, 'classes', None)}) to "
                             f"{self.task} evidence (classes {getattr(self, 'classes', None)})")
        summed: dict[str, Any] = {}
        for f in fields(self)[2:]:
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "classes":
                summed[f.name] = list(a)
            elif isinstance(a, list):
                summed[f.name] = [x + y for x, y in zip(a, b, strict=True)]
            else:
                summed[f.name] = a + b
        return type(self)(self.champion, self.challenger, **summed)

    def merged(self, *others: PairedEvidence) -> PairedEvidence:
        """The sum of this evidence and ``others`` (e.g. several gateway workers' of the same pair)."""
        total = self
        for other in others:
            total = total + other
        return total

    def numbers(self) -> dict[str, float]:
        """Every number of the evidence by name (a list's as ``name[k]``): what :func:`decide` checks finite."""
        out: dict[str, float] = {}
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if f.name == "classes":
                continue
            if isinstance(value, list):
                out |= {f"{f.name}[{k}]": x for k, x in enumerate(value)}
            else:
                out[f.name] = value
        return out


@dataclass
class MulticlassEvidence(PairedEvidence):
    """A multiclass pair's evidence: the binary fields (``sum_pc`` ... ``sum_pcpx`` over each version's probability
    of the champion's predicted class; ``pos_c`` / ``pos_x`` unused, 0) and the per-class sums, in the order of
    ``classes``."""

    classes: list[str] = field(default_factory=list)  # the class texts
    class_c: list[int] = field(default_factory=list)  # pairs predicted as each class, champion
    class_x: list[int] = field(default_factory=list)  # ... challenger
    sum_pck: list[float] = field(default_factory=list)  # summed probability of each class, champion
    sum_pxk: list[float] = field(default_factory=list)  # ... challenger
    sum_pcsq: float = 0.0  # sum over pairs of the champion's squared probability vector (sum_k p_k^2)
    sum_pxsq: float = 0.0  # ... the challenger's

    task: ClassVar[str] = "multiclass"


@dataclass
class RegressionEvidence(PairedEvidence):
    """A regression pair's evidence: the binary fields, ``sum_pc`` ... ``sum_pcpx`` over the values (any sign),
    ``pos_c`` / ``pos_x`` and the accuracy sums unused (0), ``sum_dbrier`` the normalised squared-error
    difference."""

    task: ClassVar[str] = "regression"


#: The evidence class of each task.
_KINDS: dict[str, type[PairedEvidence]] = {"binary": PairedEvidence, "multiclass": MulticlassEvidence,
                                           "regression": RegressionEvidence}
_VECTORS = ("class_c", "class_x", "sum_pck", "sum_pxk")
#: The numbers every pair has (the binary evidence, as it always was).
_SCALARS = tuple(f.name for f in fields(PairedEvidence)[2:])
#: A regression pair's sums of values (and of their products), which may be negative.
_SIGNED_VALUES = frozenset({"sum_pc", "sum_px", "sum_pcpx"})


def _number(name: str, raw: Any, check_sign: bool = True) -> float | int:
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"paired evidence: {name} is not a number: {raw!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"paired evidence: {name} is not finite: {raw!r}")
    if check_sign and name in _NONNEGATIVE and x < 0:
        raise ValueError(f"paired evidence: {name} is negative: {raw!r}")
    return round(x) if name in _INT_FIELDS else x


# ------------------------------------------------------------------------------------------------- the e-values
def psi_e(lam: float) -> float:
    """psi_E(lambda) = -log(1 - lambda) - lambda, for 0 <= lambda < 1."""
    return -math.log1p(-lam) - lam


def _clamp(x: float) -> float:
    return min(max(x, -_HUGE), _HUGE)


def scaled_sums(n: int, sum_d: float, sum_d2: float, margin: float) -> tuple[float, float]:
    """S = sum xi and V = sum xi^2 for xi = (d - m) / (1 + m), from n, sum d and sum d^2 (V clipped at 0; both
    clamped to +-1e300, which only absurd inputs reach, so that ``lambda * S - psi_E(lambda) * V`` is finite)."""
    c = 1.0 + margin
    n, sum_d, sum_d2 = _clamp(n), _clamp(sum_d), _clamp(sum_d2)
    s = (sum_d - n * margin) / c
    v = (sum_d2 - 2.0 * margin * sum_d + n * margin * margin) / (c * c)
    return _clamp(s), _clamp(max(v, 0.0))


def _log_mean_exp(xs: list[float]) -> float:
    top = max(xs)
    if math.isinf(top):  # every term -inf, or one +inf: the log of the mean is that
        return top
    return top + math.log(sum(math.exp(x - top) for x in xs) / len(xs))


def bounded_log_e(n: int, sum_d: float, sum_d2: float, margin: float,
                  lambdas: tuple[float, ...] = LAMBDAS) -> float:
    """log of the e-process of H0: E[d] <= margin for d in [-1, 1] after n observations (0 when n = 0)."""
    if n <= 0:
        return 0.0
    s, v = scaled_sums(n, sum_d, sum_d2, margin)
    return _log_mean_exp([lam * s - psi_e(lam) * v for lam in lambdas])


def binary_log_e(n: int, k: int, null: float, lambdas: tuple[float, ...] = LATENCY_LAMBDAS) -> float:
    """log of the e-process of H0: P(d = 1) <= null for 0/1 (or [0, 1]) observations, k ones in n."""
    if n <= 0:
        return 0.0
    n, k = _clamp(n), _clamp(k)
    return _log_mean_exp([lam * k - n * math.log1p(null * math.expm1(lam)) for lam in lambdas])


@dataclass(frozen=True)
class TestResult:
    """One sequential test at one look: reject when ``e_value >= threshold`` (= 1 / alpha)."""

    name: str
    e_value: float
    threshold: float
    p_anytime: float  # min(1, 1 / e_value): valid at any look, like the e-value
    n: int  # observations used: labelled pairs (accuracy, Brier), paired requests (errors), answers (latency)
    estimate: float | None  # mean d (latency: the share of slow answers); None when n = 0 (see note)
    margin: float  # H0: E[d] <= margin
    alpha: float
    rejected: bool
    note: str = ""
    applicable: bool = True  # False: the test does not apply to the task (no alpha, never rejects, never "passed")

    __test__ = False  # not a pytest class

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "e_value": self.e_value, "threshold": self.threshold, "p_anytime": self.p_anytime,
               "n": self.n, "estimate": self.estimate, "margin": self.margin, "alpha": self.alpha,
               "rejected": self.rejected, "note": self.note}
        if not self.applicable:
            out["applicable"] = False
        return out


def _result(name: str, log_e: float, n: int, total: float, margin: float, alpha: float) -> TestResult:
    threshold = 1.0 / alpha
    return TestResult(
        name=name, e_value=math.exp(log_e) if log_e < _LOG_E_CAP else E_CAP, threshold=threshold,
        p_anytime=math.exp(-log_e) if log_e > 0 else 1.0, n=n, estimate=total / n if n else None,
        margin=margin, alpha=alpha, rejected=log_e >= math.log(threshold),
        note="" if n else "no observations yet")


def evaluate(ev: PairedEvidence, slo: CanarySLO) -> dict[str, TestResult]:
    """The four tests on the pooled evidence, each at alpha / 4; for regression, accuracy is not applicable and the
    other three run at alpha / 3 (module docstring, "Tasks")."""
    a = slo.alpha / len(applicable_tests(ev.task))
    accuracy = (_result("accuracy", bounded_log_e(ev.labels, ev.sum_dacc, ev.sum_dacc2, slo.accuracy_margin),
                        ev.labels, ev.sum_dacc, slo.accuracy_margin, a) if ev.task != "regression" else
                TestResult(name="accuracy", e_value=1.0, threshold=1.0 / a, p_anytime=1.0, n=0, estimate=None,
                           margin=slo.accuracy_margin, alpha=0.0, rejected=False, applicable=False,
                           note="not applicable: a regression model's values are not right or wrong (its alpha "
                                "goes to the other three tests)"))
    return {
        "accuracy": accuracy,
        "brier": _result("brier", bounded_log_e(ev.labels, ev.sum_dbrier, ev.sum_dbrier2, slo.brier_margin),
                         ev.labels, ev.sum_dbrier, slo.brier_margin, a),
        "error_rate": _result("error_rate", bounded_log_e(ev.requests, ev.sum_derr, ev.sum_derr2,
                                                          slo.max_error_rate_increase),
                              ev.requests, ev.sum_derr, slo.max_error_rate_increase, a),
        "latency": _result("latency", binary_log_e(ev.served_x, ev.slow_x, LATENCY_NULL), ev.served_x, ev.slow_x,
                           LATENCY_NULL, a),
    }


# ------------------------------------------------------------------------------------------------- the screen
@dataclass(frozen=True)
class Screen:
    """What the scores alone say (no label): ``stop`` = roll back now; ``hold`` = shadow needs
    ``min_labels_when_moved`` labels instead of ``min_labels``."""

    stop: bool
    hold: bool
    reason: str
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"stop": self.stop, "hold": self.hold, "reason": self.reason, "figures": dict(self.figures)}


def _moments(ev: PairedEvidence) -> dict[str, Any]:
    n = ev.pairs
    if n == 0:
        return {"pairs": 0, "invalid": ev.invalid, "mean_c": None, "mean_x": None, "std_c": None, "std_x": None,
                "correlation": None, "positive_rate_c": None, "positive_rate_x": None, "note": "no scored pairs yet"}
    mc, mx = ev.sum_pc / n, ev.sum_px / n
    vc, vx = max(ev.sum_pc2 / n - mc * mc, 0.0), max(ev.sum_px2 / n - mx * mx, 0.0)
    cov = ev.sum_pcpx / n - mc * mx
    corr = max(-1.0, min(1.0, cov / math.sqrt(vc * vx))) if vc > 1e-12 and vx > 1e-12 else None
    out = {"pairs": n, "invalid": ev.invalid, "mean_c": mc, "mean_x": mx, "std_c": math.sqrt(vc),
           "std_x": math.sqrt(vx), "correlation": corr, "positive_rate_c": ev.pos_c / n,
           "positive_rate_x": ev.pos_x / n}
    if corr is None:
        constant = " and ".join(who for who, var in (("the champion's", vc), ("the challenger's", vx))
                                if var <= 1e-12)
        out["correlation_note"] = f"undefined: {constant} scores are constant"
    return out


def screen(ev: PairedEvidence, shadow: ShadowPlan) -> Screen:
    """Screen the challenger's scores against the champion's before labels can decide.

    STOP (roll back before any label): any invalid score (NaN, infinite, outside [0, 1]: at once, whatever the
    number of pairs: a version that emits one is broken, and invalid rows are left out of ``pairs``); then, once
    ``pairs >= min_pairs``: the challenger's score standard deviation below ``constant_std`` (constant), or the
    Pearson correlation of p_c and p_x below ``inverted_correlation`` (inverted). HOLD: the positive rate
    (p >= 0.5) or the mean score differs by more than ``moved_positive_rate``; a held challenger needs
    ``min_labels_when_moved`` labelled pairs to leave shadow.

    False alarms for equal models. The same model: correlation 1, identical rates and means: never (exactly 0).
    Two independently trained good models: the project's trainer on its generator, two seeds (credit_default,
    18,000 training rows, 3,000 rows scored) gave correlation 0.973, positive rates 4.0% vs 3.5%, mean scores 0.106
    vs 0.095, score sds 0.15 and 0.14. A noisier simulated pair (the bench's score model, correlation 0.86) at
    exactly 200 pairs over 20,000 seeds: correlation sd 0.029 (min 0.70; -0.5 is 47 sd away), positive-rate gap
    sd 0.0125 (max 0.06; a hold needs > 0.15, i.e. > 30 net disagreements in 200 rows where ~6 rows disagree on
    average), mean gap sd 0.006 (max 0.024), score sd >= 0.096 (against 1e-3). The false-alarm rate is ~0
    (< 1e-9); tests/unit/test_evidence.py checks 0 alarms in 2,000 seeded screens of that pair at 200 pairs, and
    (marked slow) on two models from the real trainer.

    A multiclass or regression pair is screened by its own rules: :func:`screen_multiclass`,
    :func:`screen_regression`.
    """
    if ev.task == "multiclass":
        return screen_multiclass(ev, shadow)
    if ev.task == "regression":
        return screen_regression(ev, shadow)
    figures = _moments(ev)
    if ev.invalid > 0:
        return Screen(True, False, f"{ev.invalid} invalid challenger scores (NaN, infinite or outside [0, 1])",
                      figures)
    n = ev.pairs
    if n < shadow.min_pairs:
        return Screen(False, False, f"screen waits for {n}/{shadow.min_pairs} scored pairs", figures)
    std_x, corr = figures["std_x"], figures["correlation"]
    if std_x < shadow.constant_std:
        return Screen(True, False, f"challenger scores are constant: std {std_x:.2g} < {shadow.constant_std:g} "
                                   f"over {n} pairs (mean {figures['mean_x']:.4f})", figures)
    if corr is not None and corr < shadow.inverted_correlation:
        return Screen(True, False, f"challenger scores are inverted: correlation with the champion's {corr:+.3f} "
                                   f"< {shadow.inverted_correlation:+.2f} over {n} pairs", figures)
    d_pos = figures["positive_rate_x"] - figures["positive_rate_c"]
    d_mean = figures["mean_x"] - figures["mean_c"]
    shape = (f"positive rate {figures['positive_rate_x']:.1%} vs {figures['positive_rate_c']:.1%}, mean score "
             f"{figures['mean_x']:.3f} vs {figures['mean_c']:.3f}")
    if abs(d_pos) > shadow.moved_positive_rate or abs(d_mean) > shadow.moved_positive_rate:
        return Screen(False, True, f"challenger scores moved ({shape}: more than {shadow.moved_positive_rate:g} "
                                   f"apart): held for {shadow.min_labels_when_moved} labels", figures)
    return Screen(False, False, f"scores plausible over {n} pairs: {shape}, std {std_x:.3f}, correlation "
                                + (f"{corr:+.3f}" if corr is not None else "undefined"), figures)


def _score_moments(ev: PairedEvidence) -> tuple[float, float, float, float, float | None]:
    """(mean_c, mean_x, var_c, var_x, correlation or None) of the paired scores' sums (``pairs`` > 0)."""
    n = ev.pairs
    mc, mx = ev.sum_pc / n, ev.sum_px / n
    vc, vx = max(ev.sum_pc2 / n - mc * mc, 0.0), max(ev.sum_px2 / n - mx * mx, 0.0)
    cov = ev.sum_pcpx / n - mc * mx
    # Relative to the scale (regression values are in target units): a variance that is rounding noise is 0.
    tiny = 1e-12 * max(1.0, mc * mc, mx * mx)
    corr = max(-1.0, min(1.0, cov / math.sqrt(vc * vx))) if vc > tiny and vx > tiny else None
    return mc, mx, vc if vc > tiny else 0.0, vx if vx > tiny else 0.0, corr


def screen_multiclass(ev: PairedEvidence, shadow: ShadowPlan) -> Screen:
    """The screens for a multiclass pair (per row: ``p_c``, ``p_x`` the two probability vectors, ``k*`` the
    champion's predicted class).

    STOP: any invalid challenger row (a probability NaN or outside [0, 1], or the row not summing to 1 within
    1e-6), at once; then, once ``pairs >= min_pairs``: constant, the spread of the challenger's probability vectors
    (the root of the summed per-class variances) below ``constant_std`` while the champion's is not; inverted, the
    Pearson correlation of ``p_c[k*]`` and ``p_x[k*]`` (each version's probability of the champion's predicted
    class) below ``inverted_correlation``. HOLD: the predicted-class distributions differ by more than
    ``moved_positive_rate`` in total variation (half the summed absolute differences of the class shares), or a
    class's mean probability does.

    False alarms for equal models. The same model: spreads equal, correlation 1, shift 0: never. Two noisy equal
    models (``tests/unit/test_serving_tasks.py``: three classes, a shared latent signal, each version's logits
    with its own noise; they disagree on 21% of the rows, far more than two trained models do) at exactly 200
    pairs over 1,000 seeds: total variation mean 0.031, sd 0.017, max 0.095 (a hold needs 0.15, 7 sd away);
    largest mean-probability gap max 0.038; correlation of ``p[k*]`` min 0.54 (against -0.5); spread >= 0.46
    (against 1e-3). The false-alarm rate is ~0 (< 1e-6); the test checks 0 stops and 0 holds in 1,000 seeded
    screens.
    """
    n = ev.pairs
    figures: dict[str, Any] = {"pairs": n, "invalid": ev.invalid, "classes": list(ev.classes)}
    if n == 0:
        figures |= {"mean_c": None, "mean_x": None, "std_c": None, "std_x": None, "correlation": None,
                    "class_rate_c": None, "class_rate_x": None, "class_shift": None, "mean_gap": None,
                    "note": "no scored pairs yet"}
    else:
        mc, mx, _, _, corr = _score_moments(ev)
        spread_c = math.sqrt(max(ev.sum_pcsq / n - sum((x / n) ** 2 for x in ev.sum_pck), 0.0))
        spread_x = math.sqrt(max(ev.sum_pxsq / n - sum((x / n) ** 2 for x in ev.sum_pxk), 0.0))
        rate_c = [c / n for c in ev.class_c]
        rate_x = [c / n for c in ev.class_x]
        figures |= {
            "mean_c": mc, "mean_x": mx, "std_c": spread_c, "std_x": spread_x, "correlation": corr,
            "class_rate_c": dict(zip(ev.classes, rate_c, strict=True)),
            "class_rate_x": dict(zip(ev.classes, rate_x, strict=True)),
            "class_shift": 0.5 * sum(abs(a - b) for a, b in zip(rate_c, rate_x, strict=True)),
            "mean_gap": max(abs(a - b) / n for a, b in zip(ev.sum_pck, ev.sum_pxk, strict=True)),
        }
        if corr is None:
            figures["correlation_note"] = "undefined: a version's probability of the champion's class is constant"
    if ev.invalid > 0:
        return Screen(True, False, f"{ev.invalid} invalid challenger probability rows (NaN, outside [0, 1] or not "
                                   "summing to 1)", figures)
    if n < shadow.min_pairs:
        return Screen(False, False, f"screen waits for {n}/{shadow.min_pairs} scored pairs", figures)
    std_c, std_x, corr = figures["std_c"], figures["std_x"], figures["correlation"]
    if std_x < shadow.constant_std <= std_c:
        return Screen(True, False, f"challenger probabilities are constant: spread {std_x:.2g} < "
                                   f"{shadow.constant_std:g} over {n} pairs while the champion's is {std_c:.3f}",
                      figures)
    if corr is not None and corr < shadow.inverted_correlation:
        return Screen(True, False, f"challenger probabilities are inverted: its probability of the champion's "
                                   f"predicted class correlates {corr:+.3f} with the champion's (< "
                                   f"{shadow.inverted_correlation:+.2f}) over {n} pairs", figures)
    rates = ", ".join(f"{c} {figures['class_rate_x'][c]:.1%} vs {figures['class_rate_c'][c]:.1%}"
                      for c in ev.classes)
    shape = f"predicted classes {rates} (total variation {figures['class_shift']:.3f})"
    if figures["class_shift"] > shadow.moved_positive_rate or figures["mean_gap"] > shadow.moved_positive_rate:
        return Screen(False, True, f"challenger predictions moved ({shape}, largest mean-probability gap "
                                   f"{figures['mean_gap']:.3f}: more than {shadow.moved_positive_rate:g}): held for "
                                   f"{shadow.min_labels_when_moved} labels", figures)
    return Screen(False, False, f"probabilities plausible over {n} pairs: {shape}, spread {std_x:.3f}, correlation "
                                + (f"{corr:+.3f}" if corr is not None else "undefined"), figures)


def screen_regression(ev: PairedEvidence, shadow: ShadowPlan) -> Screen:
    """The screens for a regression pair (the values, in target units).

    STOP: any non-finite challenger value, at once; then, once ``pairs >= min_pairs``: constant, the challenger's
    values' standard deviation at most ``constant_std`` times the champion's (scale-free; only while the champion's
    vary); inverted, the Pearson correlation of the two versions' values below ``inverted_correlation``. HOLD: the
    mean moved by more than ``moved_mean_sds`` (0.5) champion standard deviations.

    False alarms for equal models. The same model: equal spreads, correlation 1, shift 0: never. Two noisy equal
    models (``tests/unit/test_serving_tasks.py``: a shared signal plus each version's own noise, correlation 0.80,
    sd 0.025) at exactly 200 pairs over 1,000 seeds: mean shift sd 0.045 champion sds (max 0.15; a hold needs
    0.5, 11 sd away), spread ratio ~1 against 1e-3, correlation min 0.70 against -0.5. The false-alarm rate is ~0
    (< 1e-9); the test checks 0 stops and 0 holds in 1,000 seeded screens.
    """
    n = ev.pairs
    figures: dict[str, Any] = {"pairs": n, "invalid": ev.invalid}
    if n == 0:
        figures |= {"mean_c": None, "mean_x": None, "std_c": None, "std_x": None, "correlation": None,
                    "mean_shift_sd": None, "note": "no scored pairs yet"}
    else:
        mc, mx, vc, vx, corr = _score_moments(ev)
        std_c, std_x = math.sqrt(vc), math.sqrt(vx)
        figures |= {"mean_c": mc, "mean_x": mx, "std_c": std_c, "std_x": std_x, "correlation": corr,
                    "mean_shift_sd": (mx - mc) / std_c if std_c > 0 else None}
        if corr is None:
            figures["correlation_note"] = "undefined: a version's values are constant"
        if std_c == 0:
            figures["mean_shift_note"] = "undefined: the champion's values are constant"
    if ev.invalid > 0:
        return Screen(True, False, f"{ev.invalid} invalid challenger values (NaN or infinite)", figures)
    if n < shadow.min_pairs:
        return Screen(False, False, f"screen waits for {n}/{shadow.min_pairs} scored pairs", figures)
    std_c, std_x, corr, shift = figures["std_c"], figures["std_x"], figures["correlation"], figures["mean_shift_sd"]
    if std_c > 0 and std_x <= shadow.constant_std * std_c:
        return Screen(True, False, f"challenger values are constant: std {std_x:.3g} <= {shadow.constant_std:g} x the "
                                   f"champion's {std_c:.3g} over {n} pairs (mean {figures['mean_x']:.4g})", figures)
    if corr is not None and corr < shadow.inverted_correlation:
        return Screen(True, False, f"challenger values are inverted: correlation with the champion's {corr:+.3f} "
                                   f"< {shadow.inverted_correlation:+.2f} over {n} pairs", figures)
    shape = (f"mean {figures['mean_x']:.4g} vs {figures['mean_c']:.4g}"
             + (f" ({shift:+.3f} champion sds)" if shift is not None else ""))
    if shift is not None and abs(shift) > shadow.moved_mean_sds:
        return Screen(False, True, f"challenger values moved ({shape}: more than {shadow.moved_mean_sds:g} sds): "
                                   f"held for {shadow.min_labels_when_moved} labels", figures)
    return Screen(False, False, f"values plausible over {n} pairs: {shape}, std {std_x:.4g} vs {std_c:.4g}, "
                                "correlation " + (f"{corr:+.3f}" if corr is not None else "undefined"), figures)


# ------------------------------------------------------------------------------------------------- the decision
@dataclass(frozen=True)
class Verdict:
    """``rollback``, ``pass`` (the stage held: next stage or promote) or ``wait`` (poll again), with the reason
    and every statistic (e-values, thresholds, anytime p-values, n, estimates, pairs, labels, exposure, alpha)."""

    action: Action
    reason: str
    stage: str
    statistics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no NaN or infinity: undefined figures are None with a note)."""
        return {"action": self.action, "reason": self.reason, "stage": self.stage,
                "statistics": copy.deepcopy(self.statistics)}


_WHAT = {"accuracy": "labelled pairs", "brier": "labelled pairs", "error_rate": "paired requests",
         "latency": "challenger answers"}


def _describe(t: TestResult, champion: str, task: str = "binary") -> str:
    est = t.estimate if t.estimate is not None else 0.0
    if t.name == "accuracy":
        return f"accuracy {est * 100:.2f} points below v{champion}'s (margin {t.margin * 100:g})"
    if t.name == "brier" and task == "multiclass":
        return f"half Brier score {est:+.4f} above v{champion}'s (margin {t.margin:g})"
    if t.name == "brier" and task == "regression":
        return (f"squared error above v{champion}'s: normalised difference (e_x^2 - e_c^2) / (e_x^2 + e_c^2) "
                f"{est:+.4f} on average (margin {t.margin:g})")
    if t.name == "brier":
        return f"Brier score {est:+.4f} above v{champion}'s (margin {t.margin:g})"
    if t.name == "error_rate":
        return f"error rate {est * 100:+.2f} points above v{champion}'s on the same requests " \
               f"(margin {t.margin * 100:g})"
    return f"{est:.2%} of its answers over the latency limit (H0: at most {t.margin:.0%})"


def decide(ev: PairedEvidence, plan: CanaryPlan, *, stage: str, stage_elapsed: float, stage_exposure: int,
           timed_out: bool = False) -> Verdict:
    """The verdict on one deploy stage at one look (pure; microseconds).

    ``ev``: the evidence pooled since the deploy started; ``stage``: ``"shadow"`` or a step such as
    ``"step 2 (25%)"``; ``stage_elapsed``: seconds in the stage; ``stage_exposure``: requests the challenger
    answered in the stage; ``timed_out``: the stage ran past its limit (also assumed when ``stage_elapsed``
    exceeds ``shadow.max_seconds`` / ``max_seconds``).

    In order: any invalid challenger score -> rollback (any stage); in shadow, a screen stop -> rollback before any
    label; any test's e-value >= its threshold (alpha / 4 each; regression alpha / 3, accuracy not applying) ->
    rollback; the stage's requirements met (shadow:
    ``pairs >= min_pairs``, labels >= ``min_labels`` (``min_labels_when_moved`` if held) and ``min_seconds``;
    a step: ``min_requests`` answered by the challenger in the step and ``min_seconds``) -> pass; timed out ->
    rollback (breached evidence); otherwise wait (the reason says what is missing).

    The verdict is plain JSON for any evidence (:meth:`Verdict.to_dict`): figures undefined on it (no
    observation yet, constant scores) are None with a note. A ValueError when a number of ``ev`` or
    ``stage_elapsed`` is NaN or infinite (:meth:`PairedEvidence.from_dict` never builds such evidence).
    """
    bad = [name for name, value in ev.numbers().items() if not _finite(value)]
    bad += [] if _finite(stage_elapsed) else ["stage_elapsed"]
    if bad:
        raise ValueError(f"decide: NaN, infinite or not a number: {', '.join(bad)}")
    slo = plan.slo
    shadow = stage == "shadow"
    c, x = ev.champion, ev.challenger
    tests = evaluate(ev, slo)
    applicable = applicable_tests(ev.task)
    stats: dict[str, Any] = {
        "stage": stage, "champion": c, "challenger": x, "alpha": slo.alpha,
        "alpha_per_test": slo.alpha / len(applicable),
        "correction": f"Bonferroni over {len(applicable)} anytime-valid tests"
                      + ("" if len(applicable) == len(TESTS) else
                         f" ({', '.join(t for t in TESTS if t not in applicable)} not applicable to a {ev.task} "
                         "model)"),
        "tests": {name: t.to_dict() for name, t in tests.items()},
        "pairs": ev.pairs, "labels": ev.labels, "requests": ev.requests, "invalid": ev.invalid,
        "exposure": ev.served_x, "served_champion": ev.served_c,
        "stage_elapsed": float(stage_elapsed), "stage_exposure": int(stage_exposure), "decided_by": None,
    }
    exposure = f"challenger exposure {ev.served_x} requests"

    def verdict(action: Action, reason: str, by: str | None = None) -> Verdict:
        stats["decided_by"] = by
        return Verdict(action, f"{stage}: {reason}", stage, stats)

    if ev.task != "binary":
        stats["task"] = ev.task
    if ev.invalid > 0:
        what = {"binary": "scores (NaN, infinite or outside [0, 1])",
                "multiclass": "probability rows (NaN, outside [0, 1] or not summing to 1)",
                "regression": "values (NaN or infinite)"}[ev.task]
        return verdict("rollback", f"v{x} rolled back{' before any label' if shadow else ''}: {ev.invalid} invalid "
                                   f"challenger {what}; {exposure}", "invalid")
    held = False
    if shadow:
        sc = screen(ev, plan.shadow)
        stats["screen"] = sc.to_dict()
        if sc.stop:
            return verdict("rollback", f"v{x} stopped before any label: {sc.reason}; {exposure}", "screen")
        held = sc.hold
    rejected = [t for t in tests.values() if t.rejected]
    if rejected:
        t = max(rejected, key=lambda r: r.e_value / r.threshold)
        return verdict("rollback", f"v{x} rolled back: {_describe(t, c, ev.task)}; e-value {t.e_value:.3g} >= threshold "
                                   f"{t.threshold:g} (anytime p {t.p_anytime:.2g}, alpha {t.alpha:g} of {slo.alpha:g}) "
                                   f"on {t.n} {_WHAT[t.name]}"
                                   + ("" if _WHAT[t.name] == "labelled pairs" else f", {ev.labels} labelled pairs")
                                   + f"; {exposure}", t.name)
    missing = []
    if shadow:
        sp = plan.shadow
        need = sp.min_labels_when_moved if held else sp.min_labels
        limit = sp.max_seconds
        if ev.pairs < sp.min_pairs:
            missing.append(f"{ev.pairs}/{sp.min_pairs} scored pairs")
        if ev.labels < need:
            missing.append(f"{ev.labels}/{need} labelled pairs" + (" (held: scores moved)" if held else ""))
        if stage_elapsed < sp.min_seconds:
            missing.append(f"{int(stage_elapsed)}/{sp.min_seconds:.0f}s")
        stats["requirements"] = {"pairs": sp.min_pairs, "labels": need, "seconds": sp.min_seconds, "held": held}
    else:
        limit = plan.max_seconds
        if stage_exposure < plan.min_requests:
            missing.append(f"{stage_exposure}/{plan.min_requests} challenger requests")
        if stage_elapsed < plan.min_seconds:
            missing.append(f"{int(stage_elapsed)}/{plan.min_seconds:.0f}s")
        stats["requirements"] = {"requests": plan.min_requests, "seconds": plan.min_seconds}
    summary = ("; ".join(f"{t.name} {_estimate(t)}" for t in tests.values())
               + f" (threshold {tests['brier'].threshold:g} each); {ev.labels} labelled pairs, {exposure}")
    if not missing:
        return verdict("pass", f"v{x} holds against v{c}: no test rejects: {summary}")
    if timed_out or stage_elapsed > limit:
        return verdict("rollback", f"v{x} breached evidence: after {stage_elapsed:.0f}s still missing "
                                   f"{', '.join(missing)}; {summary}", "evidence")
    return verdict("wait", f"waiting for {', '.join(missing)}; {summary}")


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def _estimate(t: TestResult) -> str:
    if not t.applicable:
        return "not applicable"
    if t.estimate is None:
        return "n=0"
    est = f"{t.estimate:+.4f}" if t.name != "latency" else f"{t.estimate:.2%} slow"
    return f"{est} (n={t.n}, e-value {t.e_value:.3g})"


def unreachable_verdict(stage: str, detail: str, limit: float) -> Verdict:
    """The stage ran past its time limit without the gateway's evidence: roll back (breached evidence)."""
    return Verdict("rollback", f"{stage}: breached evidence: no evidence from the gateway after {limit:.0f}s "
                               f"({detail})", stage,
                   {"stage": stage, "decided_by": "evidence", "tests": None, "unreachable": detail,
                    "limit_seconds": float(limit)})
