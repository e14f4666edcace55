"""Deploy decisions under simulated traffic: the new shadow + anytime-valid judge vs today's per-step judge.

Monte Carlo over the real decision code: :func:`lifecycle.serving.evidence.decide` (new) and
``bench/baseline_canary.py`` (today's ``enough_evidence`` + ``judge``, verbatim), with the default spec plan
(``CanaryPlan()``: steps 5, 25, 50, 100%, ``min_requests`` 200 and ``min_seconds`` 60 per step, a poll every 5 s,
alpha 0.01, accuracy margin 0, Brier margin 0.005, error margin 0.01; shadow defaults: 300 labels, 30 s, screens
on 200 pairs).

Traffic (the demo's rates): single-row requests, Poisson at 200/s; every request is labelled 0.5-3 s later
(uniform), so a request's label is seen at the poll after it or the one after that (P = E[lag] / 5 s = 0.35).
Rows: a latent risk logit z ~ N(mu, 1.4^2) with mu set for a 12% positive rate, y ~ Bernoulli(sigmoid(z)); the
champion scores sigmoid(z + 0.5 e_c), e_c ~ N(0, 1) (accuracy 0.884, Brier 0.089). Failures: 0.1% of requests per
version, independently (a request both versions fail, probability 1e-6, is counted as two one-sided failures).
Latency is not simulated (no challenger answer is slow; the old judge gets no p99, so its latency check is
skipped): neither policy's latency test is exercised here (tests/unit/test_evidence.py covers it). Challengers:

* ``identical``: the champion's own model (p_x = p_c on every row).
* ``equal_independent``: an equally good model with its own noise, sigmoid(z + 0.5 e_x) (score correlation ~0.86;
  two seeds of the project's real trainer give 0.97, so this is the harder case for the screen).
* ``worse_1pt`` / ``worse_2pt`` / ``worse_5pt`` / ``worse_10pt``: that model with its logit shifted up by b, b
  solved for an accuracy 1 / 2 / 5 / 10 points below the champion's (more false positives; the Brier score worsens
  too). (1 point: beyond the brief's list, to show the test on a small effect.)
* ``miscalibrated``: that model at temperature t < 1 (logit times t: the same decisions, so the same accuracy),
  t solved for a Brier score 0.03 above the champion's.
* ``constant``: p_x = 0.12 on every row (accuracy 0.88, as good as the champion's; Brier +0.017).
* ``inverted``: 1 - sigmoid(z + 0.5 e_x).

Policies (one simulated request stream per run, common to both):

* ``new``: shadow first (users get the champion's answer only; the challenger is mirrored), then the ramp; both
  versions score every request throughout (the gateway mirrors to whichever is not answering), and the evidence
  pools from the start of the deploy. At every poll: ``decide(pooled evidence, plan, stage=..., stage_elapsed,
  stage_exposure)``; ``pass`` -> next stage at once (promote after 100%), ``rollback`` -> done.
* ``old``: no shadow; step 1 serves 5% from t = 0. Exactly what HEAD's deploy DAG does (``CanaryStepTrigger``
  polls the gateway's stats since the step started every ``poll_seconds`` until ``enough_evidence`` holds for
  the challenger -- 200 requests, 60 s, 100 labels (``slo.min_feedback``) -- then the ``judge`` task runs
  ``judge`` ONCE on the stats since the step started: one look per step, four in all; a pass shifts to the next
  step). Stats are unpaired (each version's own requests); labels count in the step in which they arrive (as the
  gateway's live stats do). Task-scheduling latency between polls, judge and shift is not simulated (0 s).

Measured per scenario and policy: rollback rate, user exposure at the decision (requests answered by the
challenger since the deploy started; the whole ramp for a promotion), labels used (new: labelled pairs pooled;
old: the challenger's labelled rows in the deciding step), time to decision, the stage decided at, the test that
decided. ``identical`` and ``equal_independent`` run ``BENCH_REPS`` (default 2000) replications, the others a
quarter of that (at least 100).

Prints a table, then one JSON object as the last line.

    make bench-decisions            BENCH_REPS=200 make bench-decisions
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import baseline_canary  # noqa: E402  (bench/, next to this file)

from lifecycle.serving.evidence import PairedEvidence, decide  # noqa: E402
from lifecycle.spec import CanaryPlan  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "2000"))
SEED = int(os.environ.get("BENCH_SEED", "20261130"))
RATE = 200.0  # requests per second
LAG = (0.5, 3.0)  # label delay, uniform (seconds)
BASE_RATE = 0.12
SPREAD, NOISE = 1.4, 0.5  # latent logit sd; each model's own noise on it
ERROR_RATE = 0.001
CHUNK = 250  # runs simulated together
MAX_SECONDS = 4 * 3600.0  # safety stop of a run (never reached with the default plan)
PLAN = CanaryPlan()
POLL = PLAN.poll_seconds
STEPS = PLAN.steps
CARRY = (LAG[0] + LAG[1]) / 2 / POLL  # P(a request's label arrives after the next poll)
assert LAG[1] < POLL  # a label is seen at the poll after its request's or the next one


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def solve_mu() -> float:
    from scipy.optimize import brentq

    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    return brentq(lambda m: float(weights @ sigmoid(m + SPREAD * nodes)) - BASE_RATE, -8, 0)


MU = solve_mu()


# ------------------------------------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    kind: str  # identical | independent | shift | temperature | constant | inverted
    param: float = 0.0
    reps: int = 0
    acc_delta: float = 0.0  # challenger minus champion, on the calibration sample
    brier_delta: float = 0.0

    def challenger(self, z: np.ndarray, e_x: np.ndarray, pc: np.ndarray) -> np.ndarray:
        if self.kind == "identical":
            return pc
        if self.kind == "constant":
            return np.full_like(pc, BASE_RATE)
        logit = z + NOISE * e_x
        if self.kind == "independent":
            return sigmoid(logit)
        if self.kind == "shift":
            return sigmoid(logit + self.param)
        if self.kind == "temperature":
            return sigmoid(self.param * logit)
        if self.kind == "inverted":
            return 1.0 - sigmoid(logit)
        raise ValueError(self.kind)


def calibrate() -> tuple[list[Scenario], dict[str, float]]:
    """Solve the scenarios' parameters on a fixed 400,000-row sample; measure their true deltas."""
    from scipy.optimize import brentq

    rng = np.random.default_rng(1)
    n = 400_000
    z = MU + SPREAD * rng.standard_normal(n)
    y = rng.random(n) < sigmoid(z)
    pc = sigmoid(z + NOISE * rng.standard_normal(n))
    e_x = rng.standard_normal(n)

    def acc(p: np.ndarray) -> float:
        return float(np.mean((p >= 0.5) == y))

    def brier(p: np.ndarray) -> float:
        return float(np.mean((p - y) ** 2))

    champion = {"accuracy": acc(pc), "brier": brier(pc), "positive_rate": float(y.mean())}
    probe = Scenario("probe", "shift")

    def shifted_acc(b: float) -> float:
        probe.param = b
        return acc(probe.challenger(z, e_x, pc))

    scenarios = [Scenario("identical", "identical"), Scenario("equal_independent", "independent")]
    for pts in (1, 2, 5, 10):
        b = brentq(lambda b, pts=pts: shifted_acc(b) - (champion["accuracy"] - pts / 100), 0.0, 8.0, xtol=1e-4)
        scenarios.append(Scenario(f"worse_{pts}pt", "shift", b))
    probe.kind = "temperature"

    def tempered_brier(t: float) -> float:
        probe.param = t
        return brier(probe.challenger(z, e_x, pc))

    t = brentq(lambda t: tempered_brier(t) - (champion["brier"] + 0.03), 0.02, 1.0, xtol=1e-5)
    scenarios += [Scenario("miscalibrated", "temperature", t), Scenario("constant", "constant"),
                  Scenario("inverted", "inverted")]
    for sc in scenarios:
        px = sc.challenger(z, e_x, pc)
        sc.acc_delta, sc.brier_delta = acc(px) - champion["accuracy"], brier(px) - champion["brier"]
        sc.reps = REPS if sc.kind in ("identical", "independent") else max(REPS // 4, 100)
    return scenarios, champion


# ------------------------------------------------------------------------------------------------- simulation
NEW_FIELDS = ("pairs", "sum_pc", "sum_px", "sum_pc2", "sum_px2", "sum_pcpx", "pos_c", "pos_x", "labels",
              "sum_dacc", "sum_dacc2", "sum_dbrier", "sum_dbrier2", "requests", "sum_derr", "sum_derr2",
              "served_c", "served_x")
INT_FIELDS = {"pairs", "pos_c", "pos_x", "labels", "requests", "served_c", "served_x"}


class Outcomes:
    def __init__(self, n: int) -> None:
        self.action = np.full(n, "", dtype=object)
        self.t = np.full(n, np.nan)
        self.exposure = np.zeros(n)
        self.labels = np.zeros(n)
        self.stage = np.zeros(n, dtype=int)  # new: 0 shadow, i step i; old: i step i
        self.by = np.full(n, "", dtype=object)


class NewPolicy:
    """Shadow, then the ramp, judged at every poll by ``decide`` on the pooled paired evidence."""

    def __init__(self, n: int, out: Outcomes, offset: int) -> None:
        self.s = {f: np.zeros(n) for f in NEW_FIELDS}
        self.carry = {f: np.zeros(n) for f in ("labels", "sum_dacc", "sum_dacc2", "sum_dbrier", "sum_dbrier2")}
        self.stage = np.zeros(n, dtype=int) if PLAN.shadow.enabled else np.ones(n, dtype=int)
        self.stage_start = np.zeros(n)
        self.stage_base = np.zeros(n)  # served_x when the stage started
        self.done = np.zeros(n, dtype=bool)
        self.out, self.offset = out, offset

    def share(self, idx: np.ndarray) -> np.ndarray:
        pct = np.array([0, *STEPS], dtype=float) / 100
        return pct[self.stage[idx]]

    def update(self, idx: np.ndarray, r: dict[str, Any], rng: np.random.Generator) -> None:
        s, c = self.s, self.carry
        n = r["n"]
        for f, v in r["pair_sums"].items():
            s[f][idx] += v
        for f in c:
            s[f][idx] += c[f][idx] + r["label_now"][f]
            c[f][idx] = r["label_next"][f]
        s["pairs"][idx] += n
        s["requests"][idx] += n
        fc, fx = rng.binomial(n, ERROR_RATE), rng.binomial(n, ERROR_RATE)
        s["sum_derr"][idx] += fx - fc
        s["sum_derr2"][idx] += fx + fc
        served_x = rng.binomial(n, self.share(idx))
        s["served_x"][idx] += served_x
        s["served_c"][idx] += n - served_x

    def evidence(self, i: int) -> PairedEvidence:
        s = self.s
        return PairedEvidence("1", "2", **{f: (int(s[f][i]) if f in INT_FIELDS else float(s[f][i]))
                                           for f in NEW_FIELDS})

    def decide(self, idx: np.ndarray, now: float) -> None:
        for i in idx:
            if self.done[i]:
                continue
            st = int(self.stage[i])
            name = "shadow" if st == 0 else f"step {st} ({STEPS[st - 1]}%)"
            ev = self.evidence(i)
            v = decide(ev, PLAN, stage=name, stage_elapsed=now - self.stage_start[i],
                       stage_exposure=int(ev.served_x - self.stage_base[i]))
            if v.action == "wait":
                continue
            if v.action == "pass" and st < len(STEPS):
                self.stage[i] += 1
                self.stage_start[i] = now
                self.stage_base[i] = ev.served_x
                continue
            self.done[i] = True
            o, j = self.out, self.offset + i
            o.action[j] = "rollback" if v.action == "rollback" else "promote"
            o.t[j], o.exposure[j], o.labels[j], o.stage[j] = now, ev.served_x, ev.labels, st
            o.by[j] = v.statistics.get("decided_by") or ""


class OldPolicy:
    """Today's: per step, wait for ``enough_evidence`` on the step's stats, then ``judge`` once."""

    KEYS = ("requests", "errors", "feedback", "correct", "sq", "sq2")

    def __init__(self, n: int, out: Outcomes, offset: int) -> None:
        self.w = {v: {k: np.zeros(n) for k in self.KEYS} for v in ("c", "x")}  # the step's window
        self.carry = {v: {k: np.zeros(n) for k in ("feedback", "correct", "sq", "sq2")} for v in ("c", "x")}
        self.step = np.ones(n, dtype=int)
        self.step_start = np.zeros(n)
        self.exposure = np.zeros(n)
        self.done = np.zeros(n, dtype=bool)
        self.out, self.offset = out, offset

    def share(self, idx: np.ndarray) -> np.ndarray:
        return np.array([0, *STEPS], dtype=float)[self.step[idx]] / 100

    def update(self, idx: np.ndarray, r: dict[str, Any], rng: np.random.Generator, k: np.ndarray) -> None:
        n = r["n"]
        for v, served in (("x", k), ("c", n - k)):
            w, c = self.w[v], self.carry[v]
            w["requests"][idx] += served
            w["errors"][idx] += rng.binomial(served, ERROR_RATE)
            for f in c:
                w[f][idx] += c[f][idx] + r[f"{v}_now"][f]
                c[f][idx] = r[f"{v}_next"][f]
        self.exposure[idx] += k

    def stats(self, v: str, i: int) -> dict[str, Any]:
        w = self.w[v]
        fb = int(w["feedback"][i])
        out = {"requests": int(w["requests"][i]), "errors": int(w["errors"][i]), "feedback": fb,
               "correct": int(w["correct"][i]), "p99_ms": None}
        if fb:
            mean = w["sq"][i] / fb
            out["brier"] = mean
            out["brier_var"] = max(w["sq2"][i] - fb * mean * mean, 0.0) / (fb - 1) if fb > 1 else None
        return out

    def decide(self, idx: np.ndarray, now: float) -> None:
        for i in idx:
            if self.done[i]:
                continue
            elapsed = now - self.step_start[i]
            st = int(self.step[i])
            x = self.stats("x", i)
            ok, _ = baseline_canary.enough_evidence(x, PLAN, elapsed)
            timed_out = not ok and elapsed > PLAN.max_seconds
            if not ok and not timed_out:
                continue
            d = baseline_canary.judge(self.stats("c", i), x, PLAN, step=st, weight=STEPS[st - 1], version="2",
                                      champion_version="1", timed_out=timed_out)
            if d.passed and st < len(STEPS):
                self.step[i] += 1
                self.step_start[i] = now
                for v in ("c", "x"):
                    for a in self.w[v].values():
                        a[i] = 0.0
                continue
            self.done[i] = True
            o, j = self.out, self.offset + i
            o.action[j] = "promote" if d.passed else "rollback"
            o.t[j], o.exposure[j], o.labels[j], o.stage[j] = now, self.exposure[i], x["feedback"], st
            failed = [c["name"] for c in d.checks if not c["passed"]]
            o.by[j] = failed[0] if failed else ""


def rows(sc: Scenario, m: int, rng: np.random.Generator, share_old: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """One poll interval of requests for ``m`` runs: the new policy's paired sums, and the old policy's
    per-version sums (its first k rows of each run answered by the challenger; rows are exchangeable)."""
    n = rng.poisson(RATE * POLL, m)
    width = int(n.max())
    col = np.arange(width)
    valid = col < n[:, None]
    z = MU + SPREAD * rng.standard_normal((m, width))
    y = rng.random((m, width)) < sigmoid(z)
    pc = sigmoid(z + NOISE * rng.standard_normal((m, width)))
    px = sc.challenger(z, rng.standard_normal((m, width)), pc)
    late = rng.random((m, width)) < CARRY
    now, nxt = valid & ~late, valid & late
    yf = y.astype(float)
    ok_c, ok_x = (pc >= 0.5) == y, (px >= 0.5) == y
    dacc = ok_c.astype(float) - ok_x
    sq_c, sq_x = (pc - yf) ** 2, (px - yf) ** 2
    dbrier = sq_x - sq_c
    vf = valid.astype(float)
    r: dict[str, Any] = {"n": n, "pair_sums": {
        "sum_pc": (pc * vf).sum(1), "sum_px": (px * vf).sum(1), "sum_pc2": (pc * pc * vf).sum(1),
        "sum_px2": (px * px * vf).sum(1), "sum_pcpx": (pc * px * vf).sum(1),
        "pos_c": ((pc >= 0.5) & valid).sum(1), "pos_x": ((px >= 0.5) & valid).sum(1)}}
    for key, mask in (("label_now", now), ("label_next", nxt)):
        mf = mask.astype(float)
        r[key] = {"labels": mf.sum(1), "sum_dacc": (dacc * mf).sum(1), "sum_dacc2": (dacc * dacc * mf).sum(1),
                  "sum_dbrier": (dbrier * mf).sum(1), "sum_dbrier2": (dbrier * dbrier * mf).sum(1)}
    k = rng.binomial(n, share_old)
    to_x = col < k[:, None]
    for v, mine, ok, sq in (("x", to_x, ok_x, sq_x), ("c", ~to_x, ok_c, sq_c)):
        for key, mask in ((f"{v}_now", now & mine), (f"{v}_next", nxt & mine)):
            mf = mask.astype(float)
            r[key] = {"feedback": mf.sum(1), "correct": (ok & mask).sum(1), "sq": (sq * mf).sum(1),
                      "sq2": (sq * sq * mf).sum(1)}
    return r, k


def run(sc: Scenario, rng: np.random.Generator) -> tuple[Outcomes, Outcomes]:
    new_out, old_out = Outcomes(sc.reps), Outcomes(sc.reps)
    for offset in range(0, sc.reps, CHUNK):
        m = min(CHUNK, sc.reps - offset)
        new, old = NewPolicy(m, new_out, offset), OldPolicy(m, old_out, offset)
        t = 0.0
        while t < MAX_SECONDS:
            live = np.flatnonzero(~new.done | ~old.done)
            if not len(live):
                break
            t += POLL
            r, k = rows(sc, len(live), rng, old.share(live))
            new.update(live, r, rng)
            old.update(live, r, rng, k)
            new.decide(live, t)
            old.decide(live, t)
    return new_out, old_out


# ------------------------------------------------------------------------------------------------- report
def summary(o: Outcomes) -> dict[str, Any]:
    n = len(o.action)
    rolled = o.action == "rollback"
    decided = o.action != ""
    return {
        "runs": n, "rollback_rate": float(rolled.mean()), "undecided": int((~decided).sum()),
        "exposure_median": float(np.median(o.exposure)), "exposure_p90": float(np.percentile(o.exposure, 90)),
        "labels_median": float(np.median(o.labels)), "time_median_s": float(np.nanmedian(o.t)),
        "time_p90_s": float(np.nanpercentile(o.t, 90)),
        "stage": dict(sorted(Counter(int(s) for s in o.stage).items())),
        "decided_by": dict(Counter(str(b) for b in o.by[rolled]).most_common()),
        "rolled_at_zero_exposure": float((rolled & (o.exposure == 0)).mean()),
    }


def upper95(k: int, n: int) -> float:
    """Clopper-Pearson one-sided 95% upper bound of a rate seen k times in n."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def main() -> None:
    t0 = time.perf_counter()
    scenarios, champion = calibrate()
    print(f"decision benchmark: {RATE:.0f} requests/s, labels {LAG[0]}-{LAG[1]} s later, positive rate "
          f"{champion['positive_rate']:.3f}; champion accuracy {champion['accuracy']:.4f}, Brier "
          f"{champion['brier']:.4f}; plan: shadow {PLAN.shadow.min_labels} labels/{PLAN.shadow.min_seconds:.0f} s, "
          f"steps {STEPS}% x ({PLAN.min_requests} requests, {PLAN.min_seconds:.0f} s), poll {POLL:.0f} s, "
          f"alpha {PLAN.slo.alpha}; seed {SEED}")
    rng = np.random.default_rng(SEED)
    results: dict[str, dict[str, Any]] = {}
    head = (f"{'scenario':<18} {'d_acc':>6} {'d_brier':>7} {'policy':<4} {'runs':>5} {'rollback':>8} "
            f"{'exp_med':>8} {'exp_p90':>8} {'labels':>7} {'t_med':>6} {'t_p90':>6} {'stage(n)':<28} decided by")
    print(head)
    print("-" * len(head))
    for sc in scenarios:
        ts = time.perf_counter()
        new_out, old_out = run(sc, rng)
        res = {"new": summary(new_out), "old": summary(old_out), "acc_delta": sc.acc_delta,
               "brier_delta": sc.brier_delta, "param": sc.param, "seconds": time.perf_counter() - ts}
        res["new"]["reached_25pct"] = float((new_out.stage >= 2).mean())
        res["old"]["reached_25pct"] = float((old_out.stage >= 2).mean())
        res["new"]["stopped_by_screen"] = float(np.isin(new_out.by, ["screen", "invalid"]).mean())
        results[sc.name] = res
        for pol in ("new", "old"):
            s = res[pol]
            stages = " ".join(f"{'sh' if k == 0 and pol == 'new' else k}:{v}" for k, v in s["stage"].items())
            by = " ".join(f"{k}:{v}" for k, v in s["decided_by"].items())
            first = pol == "new"
            print(f"{sc.name if first else '':<18} {f'{sc.acc_delta:+.3f}' if first else '':>6} "
                  f"{f'{sc.brier_delta:+.4f}' if first else '':>7} {pol:<4} {s['runs']:>5} {s['rollback_rate']:>8.2%} "
                  f"{s['exposure_median']:>8.0f} {s['exposure_p90']:>8.0f} {s['labels_median']:>7.0f} "
                  f"{s['time_median_s']:>6.0f} {s['time_p90_s']:>6.0f} {stages:<28} {by}")
        n, o = res["new"], res["old"]
        ratio = n["exposure_median"] / o["exposure_median"] if o["exposure_median"] else None
        tratio = n["time_median_s"] / o["time_median_s"] if o["time_median_s"] else None
        print(f"{'':<18} {'':>6} {'':>7} new/old: rollback {n['rollback_rate']:.2%} vs {o['rollback_rate']:.2%}, "
              f"median exposure x{ratio:.3f}, median time x{tratio:.2f}  ({res['seconds']:.1f} s)"
              if ratio is not None and tratio is not None else "")
    eq, ident = results["equal_independent"], results["identical"]
    w5, w10 = results["worse_5pt"], results["worse_10pt"]
    broken = [results["constant"], results["inverted"]]
    false_k = round(eq["new"]["rollback_rate"] * eq["new"]["runs"])
    out = {
        "false_rollback_rate": eq["new"]["rollback_rate"],
        "false_rollback_rate_upper95": upper95(false_k, eq["new"]["runs"]),
        "false_rollback_rate_identical": ident["new"]["rollback_rate"],
        "baseline_false_rollback_rate": eq["old"]["rollback_rate"],
        "baseline_false_rollback_rate_identical": ident["old"]["rollback_rate"],
        "detect_rate_1pt": results["worse_1pt"]["new"]["rollback_rate"],
        "baseline_detect_rate_1pt": results["worse_1pt"]["old"]["rollback_rate"],
        "detect_rate_2pt": results["worse_2pt"]["new"]["rollback_rate"],
        "baseline_detect_rate_2pt": results["worse_2pt"]["old"]["rollback_rate"],
        "detect_rate_5pt": w5["new"]["rollback_rate"],
        "baseline_detect_rate_5pt": w5["old"]["rollback_rate"],
        "median_exposure_5pt": w5["new"]["exposure_median"],
        "baseline_median_exposure_5pt": w5["old"]["exposure_median"],
        "p90_exposure_5pt": w5["new"]["exposure_p90"],
        "baseline_p90_exposure_5pt": w5["old"]["exposure_p90"],
        "detect_rate_10pt": w10["new"]["rollback_rate"],
        "reached_25pct_rate_10pt": w10["new"]["reached_25pct"],
        "baseline_reached_25pct_rate_10pt": w10["old"]["reached_25pct"],
        "detect_rate_miscalibrated": results["miscalibrated"]["new"]["rollback_rate"],
        "baseline_detect_rate_miscalibrated": results["miscalibrated"]["old"]["rollback_rate"],
        "stopped_before_label_rate_broken": float(np.mean([b["new"]["stopped_by_screen"] for b in broken])),
        "baseline_median_exposure_broken": float(np.mean([b["old"]["exposure_median"] for b in broken])),
        "median_promotion_time_s": eq["new"]["time_median_s"],
        "baseline_median_promotion_time_s": eq["old"]["time_median_s"],
        "reps_equal": eq["new"]["runs"], "reps_other": w5["new"]["runs"], "seed": SEED,
        "seconds": round(time.perf_counter() - t0, 1),
        "scenarios": {k: {"acc_delta": round(v["acc_delta"], 4), "brier_delta": round(v["brier_delta"], 4),
                          "new": {kk: v["new"][kk] for kk in ("rollback_rate", "exposure_median", "exposure_p90",
                                                              "labels_median", "time_median_s")},
                          "old": {kk: v["old"][kk] for kk in ("rollback_rate", "exposure_median", "exposure_p90",
                                                              "labels_median", "time_median_s")}}
                      for k, v in results.items()},
    }
    targets = [
        ("equal models rolled back <= 1% (shadow + whole ramp)", out["false_rollback_rate"] <= 0.01),
        ("5-pt drop caught >= 95%", out["detect_rate_5pt"] >= 0.95),
        ("5-pt median exposure <= 10% of baseline's",
         out["median_exposure_5pt"] <= 0.1 * out["baseline_median_exposure_5pt"]),
        ("constant and inverted stopped before any label: 100%", out["stopped_before_label_rate_broken"] == 1.0),
        ("10-pt drop never reaches the 25% step", out["reached_25pct_rate_10pt"] == 0.0),
    ]
    for what, ok in targets:
        print(f"target: {what}: {'met' if ok else 'MISSED'}")
    out["targets_met"] = all(ok for _, ok in targets)
    print(f"total {out['seconds']:.0f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
