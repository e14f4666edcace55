"""The deploy judge (lifecycle.serving.evidence): the e-process bound, its error rate and power by seeded
simulation, the shadow screens, decide's actions and reasons, the evidence's JSON.

Statistical tests are seeded (deterministic); each docstring states the probability that it would fail for an
unlucky seed if the code were right (<= 1e-3), from a binomial tail.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy.stats import binom

from lifecycle.serving.evidence import (
    LAMBDAS,
    LATENCY_LAMBDAS,
    LATENCY_NULL,
    PairedEvidence,
    binary_log_e,
    bounded_log_e,
    decide,
    evaluate,
    psi_e,
    screen,
    unreachable_verdict,
)
from lifecycle.spec import CanaryPlan, CanarySLO, ShadowPlan, load_specs

PLAN = CanaryPlan()
STEP = "step 2 (25%)"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


MU, SPREAD, NOISE = -2.62, 1.4, 0.5  # the bench's score model: 12% positives, accuracy ~0.88, Brier ~0.09


def paired_rows(rng: np.random.Generator, n: int, shift: float = 0.0, identical: bool = False):
    """n labelled rows scored by a champion and a challenger (an equally good model with its own noise, its logit
    shifted by ``shift``; or the champion itself)."""
    z = MU + SPREAD * rng.standard_normal(n)
    y = (rng.random(n) < sigmoid(z)).astype(float)
    pc = sigmoid(z + NOISE * rng.standard_normal(n))
    px = pc if identical else sigmoid(z + NOISE * rng.standard_normal(n) + shift)
    return pc, px, y


def evidence_from(pc: np.ndarray, px: np.ndarray, y: np.ndarray | None = None, **extra) -> PairedEvidence:
    """What the gateway would sum for these rows (all labelled when ``y`` is given)."""
    n = len(pc)
    ev = {"pairs": n, "sum_pc": float(pc.sum()), "sum_px": float(px.sum()), "sum_pc2": float(pc @ pc),
          "sum_px2": float(px @ px), "sum_pcpx": float(pc @ px), "pos_c": int((pc >= 0.5).sum()),
          "pos_x": int((px >= 0.5).sum()), "requests": n, "served_c": n}
    if y is not None:
        dacc = ((pc >= 0.5) == y).astype(float) - ((px >= 0.5) == y)
        dbrier = (px - y) ** 2 - (pc - y) ** 2
        ev |= {"labels": n, "sum_dacc": float(dacc.sum()), "sum_dacc2": float(dacc @ dacc),
               "sum_dbrier": float(dbrier.sum()), "sum_dbrier2": float(dbrier @ dbrier)}
    return PairedEvidence("1", "2", **(ev | extra))


def looks(pc, px, y, every: int):
    """The cumulative evidence at every ``every`` labels (a poll sees a prefix of the label stream)."""
    ok_c, ok_x = (pc >= 0.5) == y, (px >= 0.5) == y
    dacc = ok_c.astype(float) - ok_x
    dbrier = (px - y) ** 2 - (pc - y) ** 2
    cums = [np.cumsum(a) for a in (dacc, dacc * dacc, dbrier, dbrier * dbrier, pc, px, pc * pc, px * px, pc * px,
                                   pc >= 0.5, px >= 0.5)]
    for n in range(every, len(y) + 1, every):
        i = n - 1
        yield PairedEvidence("1", "2", pairs=n, labels=n, requests=n, served_c=n, sum_dacc=cums[0][i],
                             sum_dacc2=cums[1][i], sum_dbrier=cums[2][i], sum_dbrier2=cums[3][i],
                             sum_pc=cums[4][i], sum_px=cums[5][i], sum_pc2=cums[6][i], sum_px2=cums[7][i],
                             sum_pcpx=cums[8][i], pos_c=int(cums[9][i]), pos_x=int(cums[10][i]))


def ever_rolled_back(plan: CanaryPlan, pc, px, y, every: int) -> bool:
    return any(decide(ev, plan, stage=STEP, stage_elapsed=1.0, stage_exposure=0).action == "rollback"
               for ev in looks(pc, px, y, every))


# --------------------------------------------------------------------------------------------- the bound itself
def test_fan_inequality_on_a_dense_grid() -> None:
    """exp(l x - psi_E(l) x^2) <= 1 + l x for every x >= -1 and 0 <= l < 1 (what makes each factor's mean <= 1)."""
    lams = np.concatenate([np.array(LAMBDAS), np.linspace(1e-4, 0.999, 400)])[:, None]
    x = np.concatenate([np.linspace(-1, 1, 4001), np.linspace(1, 200, 2000)])[None, :]
    psi = -np.log1p(-lams) - lams
    lhs = np.exp(lams * x - psi * x * x)
    assert np.all(lhs <= (1 + lams * x) * (1 + 1e-12) + 1e-15)
    assert all(math.isclose(psi_e(lam), sum(lam**k / k for k in range(2, 400)), rel_tol=1e-12)  # its series
               for lam in LAMBDAS)


@pytest.mark.parametrize("margin", [0.0, 0.005, 0.01, 0.2])
def test_every_factor_has_mean_at_most_one_at_the_worst_null(margin: float) -> None:
    """The extreme H0 distributions of d in [-1, 1] with E[d] = m are two-point (a < m < b): on a grid of all of
    them, E[exp(l xi - psi_E(l) xi^2)] <= 1 for every l of the grid, xi = (d - m) / (1 + m)."""
    grid = np.linspace(-1, 1, 401)
    a, b = np.meshgrid(grid[grid < margin], grid[grid > margin], indexing="ij")
    p_b = (margin - a) / (b - a)  # mass on b for mean exactly m
    for lam in LAMBDAS:
        def f(d, lam=lam):
            xi = (d - margin) / (1 + margin)
            return np.exp(lam * xi - psi_e(lam) * xi * xi)
        mean = (1 - p_b) * f(a) + p_b * f(b)
        assert mean.max() <= 1 + 1e-12, (lam, mean.max())


def test_latency_factor_mean_at_most_one_at_the_worst_null() -> None:
    """Latency: d in [0, 1] with E[d] = 0.01 (two-point, on a grid, incl. the Bernoulli(0.01) itself):
    E[exp(l d - log(1 - m + m e^l))] <= 1 for every l of its grid (= 1 for the Bernoulli)."""
    m = LATENCY_NULL
    grid = np.linspace(0, 1, 1001)
    a, b = np.meshgrid(grid[grid < m], grid[grid > m], indexing="ij")
    p_b = (m - a) / (b - a)
    for lam in LATENCY_LAMBDAS:
        norm = math.log1p(m * math.expm1(lam))
        mean = (1 - p_b) * np.exp(lam * a - norm) + p_b * np.exp(lam * b - norm)
        assert mean.max() <= 1 + 1e-12
        assert math.isclose((1 - m) * math.exp(-norm) + m * math.exp(lam - norm), 1.0, rel_tol=1e-12)


def test_log_e_matches_the_formula_and_reports_consistently() -> None:
    n, sd, sd2, m = 1000, 40.0, 120.0, 0.01
    s = (sd - n * m) / (1 + m)
    v = (sd2 - 2 * m * sd + n * m * m) / (1 + m) ** 2
    want = math.log(sum(math.exp(lam * s - psi_e(lam) * v) for lam in LAMBDAS) / len(LAMBDAS))
    assert math.isclose(bounded_log_e(n, sd, sd2, m), want, rel_tol=1e-12)
    assert bounded_log_e(0, 0, 0, m) == 0.0 and binary_log_e(0, 0, 0.01) == 0.0
    ev = PairedEvidence("1", "2", labels=n, sum_dacc=sd, sum_dacc2=sd2, served_x=500, slow_x=20)
    tests = evaluate(ev, CanarySLO(accuracy_margin=m))
    t = tests["accuracy"]
    assert math.isclose(t.e_value, math.exp(want)) and math.isclose(t.p_anytime, min(1.0, 1 / t.e_value))
    assert t.threshold == 4 / 0.01 and t.alpha == 0.0025 and t.n == n and t.estimate == sd / n
    assert t.rejected == (t.e_value >= t.threshold)
    lat = tests["latency"]
    assert lat.n == 500 and lat.estimate == 20 / 500 and lat.rejected  # 4% slow of 500 against a 1% null


def test_ville_under_the_worst_null_by_simulation() -> None:
    """sup over 3,000 looks of the mixture e-value crosses 1/a in at most a of the runs (Ville), for the ±1 coin
    at the boundary and for a 3-valued accuracy-like d. Checked at a = 0.1 (sharp: 1,000 runs; measured 3.0% and
    1.6%: the bound is conservative). False-failure probability if the code is right: P(Bin(1000, 0.1) > limit)
    < 1e-3."""
    rng = np.random.default_rng(11)
    runs, steps, a = 1000, 3000, 0.1
    limit = int(binom.isf(1e-3, runs, a))
    for values, probs in (([-1.0, 1.0], [0.5, 0.5]), ([-1.0, 0.0, 1.0], [0.05, 0.9, 0.05])):
        d = rng.choice(values, size=(runs, steps), p=probs)
        s, v = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
        total = np.zeros_like(s)
        for lam in LAMBDAS:  # under H0 the exponents stay small: no overflow
            total += np.exp(lam * s - psi_e(lam) * v)
        mix = np.log(total / len(LAMBDAS))
        crossed = int((mix.max(axis=1) >= math.log(1 / a)).sum())
        assert crossed <= limit, (values, crossed, limit)
        i, t = 7, 1234  # the vectorised copy is the module's formula
        assert math.isclose(mix[i, t], bounded_log_e(t + 1, s[i, t], v[i, t], 0.0), rel_tol=1e-9, abs_tol=1e-9)


# --------------------------------------------------------------------------------------------- error rate, power
def test_equal_models_are_rarely_rolled_back_at_any_look() -> None:
    """Two equally good models (the bench's score model, independent noise: E[d] = 0 = the margin, the H0
    boundary), 20,000 labelled pairs each run, decide() at every 250 labels (80 looks), alpha = 0.2 (a large
    alpha makes a broken bound visible with few runs; the threshold per test is 20). Ville + Bonferroni: rollback
    rate <= 0.2 (measured: 0.3% over 600 seeds; 0 of 600 at the default alpha 0.01). False-failure probability:
    P(Bin(150, 0.2) > limit) < 1e-3."""
    plan = CanaryPlan(slo=CanarySLO(alpha=0.2, accuracy_margin=0.0, brier_margin=0.0))
    rng = np.random.default_rng(5)
    runs = 150
    limit = int(binom.isf(1e-3, runs, 0.2))
    rolled = sum(ever_rolled_back(plan, *paired_rows(rng, 20_000), every=250) for _ in range(runs))
    assert rolled <= limit, (rolled, limit)


def test_power_on_a_five_point_drop() -> None:
    """A challenger 5 accuracy points worse (logit shifted up by 1.17; Brier +0.03) against the default SLO
    (alpha 0.01): rolled back within 3,000 labelled pairs (looked at every 100) in >= 95 of 100 runs. Measured
    over 1,000 seeds (looks every 50): median 1,000 labels, 99th percentile 1,750, max 2,250, so the miss rate
    within 3,000 is < 0.3% (95% upper bound). False-failure probability: P(Bin(100, 0.003) > 5) < 1e-6."""
    rng = np.random.default_rng(9)
    pc, px, y = paired_rows(np.random.default_rng(0), 200_000, shift=1.17)
    assert 0.045 < ((pc >= 0.5) == y).mean() - ((px >= 0.5) == y).mean() < 0.055
    missed = sum(not ever_rolled_back(PLAN, *paired_rows(rng, 3000, shift=1.17), every=100) for _ in range(100))
    assert missed <= 5


def test_identical_models_never_rejected() -> None:
    """The same model on both sides: every d is 0, so no e-value exceeds 1 (deterministic)."""
    pc, px, y = paired_rows(np.random.default_rng(1), 50_000, identical=True)
    ev = evidence_from(pc, px, y)
    assert all(t.e_value <= 1.0 for t in evaluate(ev, PLAN.slo).values())
    v = decide(ev, PLAN, stage="shadow", stage_elapsed=60, stage_exposure=0)
    assert v.action == "pass" and v.statistics["screen"]["figures"]["correlation"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------- the screen
def test_screen_stops_constant_inverted_and_invalid() -> None:
    rng = np.random.default_rng(2)
    pc, _, _ = paired_rows(rng, 400)
    constant = screen(evidence_from(pc, np.full(400, 0.12)), PLAN.shadow)
    assert constant.stop and "constant" in constant.reason
    inverted = screen(evidence_from(pc, 1 - pc), PLAN.shadow)
    assert inverted.stop and "inverted" in inverted.reason and inverted.figures["correlation"] < -0.99
    nan = screen(PairedEvidence("1", "2", invalid=1), PLAN.shadow)  # at once, before any pair
    assert nan.stop and "invalid" in nan.reason
    few = screen(evidence_from(pc[:199], np.full(199, 0.12)), PLAN.shadow)  # below min_pairs: no judgement
    assert not few.stop and not few.hold and "199/200" in few.reason


def test_screen_holds_a_moved_challenger_for_more_labels() -> None:
    rng = np.random.default_rng(3)
    pc, px, _ = paired_rows(rng, 800, shift=4.0)  # many more positives: the scores moved
    sc = screen(evidence_from(pc, px), PLAN.shadow)
    assert sc.hold and not sc.stop and "moved" in sc.reason
    held = PairedEvidence.from_dict(evidence_from(pc, px).to_dict() | {"labels": 500})
    v = decide(held, PLAN, stage="shadow", stage_elapsed=60, stage_exposure=0)
    assert v.action == "wait" and "500/1000 labelled pairs (held: scores moved)" in v.reason
    assert v.statistics["requirements"]["held"] is True


def test_screen_false_alarms_for_equal_models() -> None:
    """Two equally good models (correlation ~0.86, below the 0.97 of the real trainer's two seeds) at exactly
    min_pairs = 200 pairs, 2,000 seeds: no stop, no hold. Every figure sits >= 12 sampling sd from its threshold
    (see ``screen``'s docstring): a true rate < 1e-9, so the false-failure probability is < 2e-6."""
    rng = np.random.default_rng(4)
    alarms = 0
    for _ in range(2000):
        pc, px, _ = paired_rows(rng, 200)
        sc = screen(evidence_from(pc, px), PLAN.shadow)
        alarms += sc.stop or sc.hold
    assert alarms == 0


@pytest.mark.slow
def test_screen_on_two_models_from_the_real_trainer() -> None:
    """Two models from the project's generator and trainer (two seeds, short training): correlation far above
    -0.5, spread far above 1e-3, positive rates and means within 0.15: no stop and no hold on any window of 200
    pairs (false alarms for equal models: 0)."""
    import datetime as dt

    import pandas as pd

    from lifecycle.data.synthetic import generate_batch
    from lifecycle.spec import get_spec
    from lifecycle.training.flow import hyper
    from lifecycle.training.preprocessing import Preprocessor
    from lifecycle.training.trainer import Hyper, predict_proba, train

    spec = get_spec("credit_default")
    days = [generate_batch(spec, dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(4)]
    tr, va, te = pd.concat(days[:2]), days[2], days[3]
    pre = Preprocessor.fit(spec.data, tr)
    target = spec.data.target
    hp = hyper(spec.training)
    scores = []
    for seed in (1, 2):
        h = Hyper(8, hp.batch_size, hp.learning_rate, hp.weight_decay, hp.hidden_units, hp.dropout, hp.patience,
                  seed, "cpu")
        out = train(h, pre.transform(tr), tr[target].to_numpy(), pre.transform(va), va[target].to_numpy())
        scores.append(predict_proba(out.state_dict, out.architecture, pre.transform(te)))
    pc, px = scores
    assert np.corrcoef(pc, px)[0, 1] > 0.8
    for start in range(0, len(pc) - 200 + 1, 200):
        sc = screen(evidence_from(pc[start:start + 200], px[start:start + 200]), PLAN.shadow)
        assert not sc.stop and not sc.hold, sc.reason


# --------------------------------------------------------------------------------------------- decide
def good(n: int = 2000, **extra) -> PairedEvidence:
    return evidence_from(*paired_rows(np.random.default_rng(6), n), **extra)


def test_decide_waits_then_passes_shadow() -> None:
    v = decide(good(1000), PLAN, stage="shadow", stage_elapsed=10, stage_exposure=0)
    assert v.action == "wait" and "10/30s" in v.reason and v.stage == "shadow"
    v = decide(good(250), PLAN, stage="shadow", stage_elapsed=40, stage_exposure=0)
    assert v.action == "wait" and "250/300 labelled pairs" in v.reason
    v = decide(good(1000), PLAN, stage="shadow", stage_elapsed=40, stage_exposure=0)
    assert v.action == "pass" and "holds against v1" in v.reason and v.statistics["decided_by"] is None


def test_decide_steps_need_exposure_and_time() -> None:
    ev = good(3000, served_x=150)
    v = decide(ev, PLAN, stage=STEP, stage_elapsed=70, stage_exposure=150)
    assert v.action == "wait" and "150/200 challenger requests" in v.reason
    v = decide(ev, PLAN, stage=STEP, stage_elapsed=30, stage_exposure=250)
    assert v.action == "wait" and "30/60s" in v.reason
    v = decide(ev, PLAN, stage=STEP, stage_elapsed=61, stage_exposure=250)
    assert v.action == "pass" and v.reason.startswith(STEP)


def test_decide_rolls_back_on_a_rejection_naming_the_test() -> None:
    ev = evidence_from(*paired_rows(np.random.default_rng(7), 3000, shift=1.17), served_x=321)
    v = decide(ev, PLAN, stage=STEP, stage_elapsed=5, stage_exposure=10)
    assert v.action == "rollback"
    by = v.statistics["decided_by"]
    t = v.statistics["tests"][by]
    assert by in ("accuracy", "brier") and t["rejected"] and t["e_value"] >= t["threshold"] == 400
    for part in (by, "e-value", ">= threshold 400", "3000 labelled pairs",
                 "challenger exposure 321 requests"):
        assert part in v.reason.lower(), part


def test_decide_error_and_latency_tests() -> None:
    errors = PairedEvidence("1", "2", requests=500, sum_derr=100, sum_derr2=100)  # 20% more failures
    v = decide(errors, PLAN, stage="shadow", stage_elapsed=5, stage_exposure=0)
    assert v.action == "rollback" and v.statistics["decided_by"] == "error_rate" and "error rate" in v.reason
    slow = PairedEvidence("1", "2", served_x=400, slow_x=40)  # 10% slow against a p99 limit
    v = decide(slow, PLAN, stage=STEP, stage_elapsed=5, stage_exposure=400)
    assert v.action == "rollback" and v.statistics["decided_by"] == "latency"
    ok = PairedEvidence("1", "2", served_x=100_000, slow_x=900)  # 0.9%: within the p99
    assert not evaluate(ok, PLAN.slo)["latency"].rejected


def test_decide_screen_stop_is_a_rollback_before_any_label() -> None:
    pc, _, _ = paired_rows(np.random.default_rng(8), 500)
    v = decide(evidence_from(pc, np.full(500, 0.12)), PLAN, stage="shadow", stage_elapsed=5, stage_exposure=0)
    assert v.action == "rollback" and "before any label" in v.reason and "constant" in v.reason
    assert v.statistics["decided_by"] == "screen" and v.statistics["exposure"] == 0
    v = decide(PairedEvidence("1", "2", invalid=3), PLAN, stage="shadow", stage_elapsed=1, stage_exposure=0)
    assert v.action == "rollback" and "3 invalid" in v.reason and "before any label" in v.reason
    v = decide(good(500, invalid=1), PLAN, stage=STEP, stage_elapsed=100, stage_exposure=500)
    assert v.action == "rollback" and v.statistics["decided_by"] == "invalid"


def test_decide_times_out_without_evidence() -> None:
    v = decide(good(100), PLAN, stage="shadow", stage_elapsed=1900, stage_exposure=0, timed_out=True)
    assert v.action == "rollback" and "breached evidence" in v.reason and "100/300 labelled pairs" in v.reason
    v = decide(good(100), PLAN, stage=STEP, stage_elapsed=3601, stage_exposure=5)  # past max_seconds
    assert v.action == "rollback" and "breached evidence" in v.reason
    v = decide(good(1000), PLAN, stage="shadow", stage_elapsed=1900, stage_exposure=0, timed_out=True)
    assert v.action == "pass"  # enough evidence: timing out changes nothing
    u = unreachable_verdict("step 1 (5%)", "connection refused", 3600)
    assert u.action == "rollback" and "breached evidence" in u.reason
    json.dumps(u.to_dict(), allow_nan=False)


def test_statistics_hold_everything_on_record_and_are_plain_json() -> None:
    cases = [PairedEvidence("1", "2"), good(50), good(3000, served_x=77),
             PairedEvidence("1", "2", labels=10**7, sum_dacc=10**7, sum_dacc2=10**7, pairs=10**7,
                            sum_pc=5e6, sum_px=5e6, sum_pc2=5e6, sum_px2=5e6, sum_pcpx=0.0)]  # e-value capped
    for ev in cases:
        for stage in ("shadow", STEP):
            v = decide(ev, PLAN, stage=stage, stage_elapsed=10, stage_exposure=ev.served_x)
            d = v.to_dict()
            text = json.dumps(d, allow_nan=False)
            assert json.loads(text) == d
            s = d["statistics"]
            assert s["alpha"] == 0.01 and s["alpha_per_test"] == 0.0025
            assert set(s["tests"]) == {"accuracy", "brier", "error_rate", "latency"}
            for t in s["tests"].values():
                assert {"e_value", "threshold", "p_anytime", "n", "estimate", "alpha"} <= set(t)
                assert 0 <= t["p_anytime"] <= 1 and t["e_value"] <= 1e300
                assert (t["estimate"] is None) == (t["n"] == 0) and (t["note"] != "") == (t["n"] == 0)
            assert {"pairs", "labels", "exposure", "stage_elapsed", "stage_exposure"} <= set(s)
    empty = decide(PairedEvidence("1", "2"), PLAN, stage="shadow", stage_elapsed=1, stage_exposure=0)
    assert empty.statistics["screen"]["figures"]["correlation"] is None


def test_decide_is_fast() -> None:
    ev = good(3000, served_x=500, slow_x=2)
    t0 = time.perf_counter()
    for _ in range(2000):
        decide(ev, PLAN, stage="shadow", stage_elapsed=10, stage_exposure=0)
    assert (time.perf_counter() - t0) / 2000 < 2e-3  # ~50 us on an idle core; generous for a loaded machine


# --------------------------------------------------------------------------------------------- the evidence
def test_evidence_round_trip_add_and_validation() -> None:
    ev = good(300, served_x=12, slow_x=1, invalid=0)
    d = ev.to_dict()
    assert PairedEvidence.from_dict(json.loads(json.dumps(d))) == ev
    floaty = d | {"pairs": 300.0, "labels": "300", "new_field_from_a_newer_gateway": 1}
    back = PairedEvidence.from_dict(floaty)
    assert back == ev and isinstance(back.pairs, int) and isinstance(back.labels, int)
    assert PairedEvidence.from_dict({"champion": 1, "challenger": 2}) == PairedEvidence("1", "2")
    total = ev + ev
    assert total.pairs == 600 and total.sum_dbrier == pytest.approx(2 * ev.sum_dbrier)
    assert ev.merged(ev, ev).labels == 900 and ev.merged() == ev
    with pytest.raises(ValueError, match="cannot add"):
        ev + PairedEvidence("1", "3")
    for bad in ({"pairs": -1}, {"sum_pc": float("nan")}, {"sum_dbrier": "inf"}, {"labels": "x"}):
        with pytest.raises(ValueError):
            PairedEvidence.from_dict(d | bad)
    with pytest.raises(ValueError, match="champion"):
        PairedEvidence.from_dict({"challenger": "2"})
    assert PairedEvidence.from_dict(d | {"sum_dacc": -5}).sum_dacc == -5  # differences may be negative


# --------------------------------------------------------------------------------------------- the spec
def test_spec_shadow_defaults_and_existing_specs_validate() -> None:
    sp = CanaryPlan().shadow
    assert (sp.enabled, sp.sample, sp.min_labels, sp.min_labels_when_moved, sp.min_seconds, sp.max_seconds,
            sp.min_pairs, sp.constant_std, sp.inverted_correlation, sp.moved_positive_rate) == (
        True, 1.0, 300, 1000, 30.0, 1800.0, 200, 1e-3, -0.5, 0.15)
    assert load_specs()  # include/models/*.yaml still validate
    assert CanaryPlan.model_validate(CanaryPlan().model_dump()) == CanaryPlan()
    with pytest.raises(ValueError, match="min_labels_when_moved"):
        ShadowPlan(min_labels=500, min_labels_when_moved=100)
    with pytest.raises(ValueError):
        ShadowPlan(sample=0)


def test_a_verdict_survives_postgres_jsonb_and_airflows_task_channel():
    """PostgreSQL's JSONB reads a float of 2^63 or more back as an int, which Airflow's msgpack channel refuses
    (a deploy's watch task then died resuming from its trigger, with a rollback verdict in hand). E-values are
    capped at 1e18 and :func:`jsonb_safe` clamps any other number past 9e18."""
    import json

    from lifecycle.serving.evidence import E_CAP, JSONB_MAX, jsonb_safe

    assert E_CAP < 2**63 and JSONB_MAX < 2**63
    payload = {"statistics": {"tests": {"brier": {"e_value": 8.4e22}}}, "evidence": {"sum_px2": -3e25, "n": 5},
               "flags": [True, 1e300], "reason": "x"}
    safe = jsonb_safe(payload)
    assert safe == {"statistics": {"tests": {"brier": {"e_value": JSONB_MAX}}},
                    "evidence": {"sum_px2": -JSONB_MAX, "n": 5}, "flags": [True, JSONB_MAX], "reason": "x"}
    # what JSONB does to a large integral float: its digits come back as an int, within msgpack's int64 now
    back = json.loads(str(int(safe["statistics"]["tests"]["brier"]["e_value"])))
    assert isinstance(back, int) and back < 2**63
