"""Seeded generator of daily credit-default batches, with scenario knobs for every lifecycle stage.

Each day's batch depends only on (spec seed, date, scenario), so any day can be regenerated on its own.
The label follows a fixed, non-linear risk function of the features; scenarios bend either the features
(covariate drift), the risk function (concept drift) or the schema (broken batch), the way real feeds break.

One applicant population, one target per task: the spec's ``task`` picks what :func:`generate_batch` writes in
its target column. All three read the same risk, ``logit`` (:func:`default_logit`), and the same uniform draw per
row ``u``, so the features, ids and scenarios are the same whatever the task, and a binary batch is exactly what
it always was:

- ``binary``: default within 12 months, ``1`` when ``u < sigmoid(logit)`` (the latent ``logit - logit(u)`` is
  positive), else ``0``;
- ``multiclass``: a risk tier, ``data.classes[k]`` for the k-th of K bands of the latent ``z = logit - 0.5 logit(u)``
  (half the binary label's noise; :func:`tier_cuts`: the bands are equally likely in the stable population, so
  covariate and concept drift move the mix of tiers);
- ``regression``: a loss amount in USD, ``loan_amount * LOSS_GIVEN_DEFAULT * sigmoid(z)`` rounded to cents: the
  loss on the loan, with noise.

The tests' example specs of the other tasks (``tests/fixtures/specs/``) use this generator; ``include/models/``
holds only the binary ``credit_default`` (every spec there becomes DAGs).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lifecycle.data.frames import batch_name
from lifecycle.fileio import atomic_write
from lifecycle.paths import StatePaths

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import ModelSpec

ScenarioKind = Literal["stable", "broken", "covariate_drift", "concept_drift"]

BrokenKind = Literal["missing_column", "wrong_type", "out_of_range", "nulls"]

HOME = ["RENT", "OWN", "MORTGAGE", "OTHER"]

HOME_P = [0.38, 0.22, 0.37, 0.03]

PURPOSE = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical", "small_business", "other"]

PURPOSE_P = [0.42, 0.2, 0.1, 0.1, 0.06, 0.04, 0.08]

REGION = ["north", "south", "east", "west"]

REGION_P = [0.3, 0.25, 0.25, 0.2]


@dataclass(frozen=True)
class Scenario:
    """What a day's batch looks like. ``severity`` scales drift (0 = none, 1 = strong)."""

    kind: ScenarioKind = "stable"
    severity: float = 1.0
    broken: BrokenKind = "out_of_range"

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``stable``, ``broken[:kind]``, ``covariate_drift[:severity]``, ``concept_drift[:severity]``."""
        name, _, arg = text.partition(":")
        if name == "broken":
            return cls("broken", broken=arg or "out_of_range")  # type: ignore[arg-type]
        if name in ("covariate_drift", "concept_drift"):
            return cls(name, severity=float(arg) if arg else 1.0)  # type: ignore[arg-type]
        if name == "stable" and not arg:
            return cls()
        raise ValueError(
            f"unknown scenario {text!r}: use stable, broken[:missing_column|wrong_type|out_of_range|nulls], "
            "covariate_drift[:severity] or concept_drift[:severity]"
        )

    def __str__(self) -> str:
        if self.kind == "broken":
            return f"broken:{self.broken}"
        if self.kind in ("covariate_drift", "concept_drift"):
            return f"{self.kind}:{self.severity:g}"
        return "stable"


def day_seed(seed: int, day: dt.date, salt: str = "") -> int:
    digest = hashlib.sha256(f"{seed}:{day.isoformat()}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _features(rng: np.random.Generator, n: int, drift: float) -> dict[str, np.ndarray]:
    """Draw raw features; ``drift`` in [0, 1] shifts the population (poorer, more indebted, more renters)."""
    age = np.clip(np.round(rng.normal(42 - 6 * drift, 12, n)), 18, 90)
    income = np.exp(rng.normal(np.log(58_000) - 0.45 * drift, 0.55, n)).round(-2)
    dti = np.clip(rng.gamma(4.0, 0.08 + 0.05 * drift, n), 0, 2.5).round(3)
    util = np.clip(rng.beta(2 + 2.5 * drift, 4.5 - 1.5 * drift, n), 0, 1).round(3)
    accounts = np.clip(rng.poisson(5 + 2 * drift, n), 0, 40)
    employed = np.clip(np.round(rng.exponential(70 * (1 - 0.4 * drift), n)), 0, 600)
    loan = np.clip(np.exp(rng.normal(np.log(14_000) + 0.3 * drift, 0.6, n)), 500, 100_000).round(-1)
    home_p = np.array(HOME_P) + drift * np.array([0.2, -0.08, -0.12, 0.0])
    purpose_p = np.array(PURPOSE_P) + drift * np.array([0.1, 0.08, -0.06, -0.06, 0.0, 0.0, -0.06])
    region_p = np.array(REGION_P) + drift * np.array([-0.15, 0.2, -0.05, 0.0])
    return {
        "age": age,
        "income": income,
        "debt_to_income": dti,
        "credit_utilization": util,
        "num_open_accounts": accounts,
        "months_employed": employed,
        "loan_amount": loan,
        "home_ownership": rng.choice(HOME, n, p=home_p / home_p.sum()),
        "loan_purpose": rng.choice(PURPOSE, n, p=purpose_p / purpose_p.sum()),
        "region": rng.choice(REGION, n, p=region_p / region_p.sum()),
    }


INTERCEPT, SHARPNESS = -3.3, 1.7
#: Share of the loan lost when the applicant defaults (the regression target's scale).
LOSS_GIVEN_DEFAULT = 0.45


def default_logit(f: dict[str, np.ndarray], concept: float = 0.0) -> np.ndarray:
    """The true risk function. ``concept`` in [0, 1] moves it (the relation itself changes)."""
    loan_to_income = f["loan_amount"] / np.maximum(f["income"], 1)
    young = (f["age"] < 25).astype(float)
    risk = (
        2.6 * f["credit_utilization"] ** 2 * (1 - 1.4 * concept)
        + 1.4 * np.tanh(2 * (f["debt_to_income"] - 0.35)) * (1 + concept)
        + 1.8 * np.clip(loan_to_income, 0, 1.5)
        - 0.5 * np.log1p(f["months_employed"] / 12)
        + 0.6 * young
        + 0.08 * np.maximum(f["num_open_accounts"] - 8, 0)
        + np.select(
            [f["home_ownership"] == "RENT", f["home_ownership"] == "OWN"], [0.35, -0.3], 0.0
        )
        + np.select(
            [f["loan_purpose"] == "small_business", f["loan_purpose"] == "medical", f["loan_purpose"] == "car"],
            [0.7, 0.4, -0.3],
            0.0,
        )
        + np.where(f["region"] == "south", 0.2 + 1.2 * concept, 0.0)
    )
    return INTERCEPT + SHARPNESS * risk


def _logit_u(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return np.log(u) - np.log1p(-u)


@functools.lru_cache(maxsize=16)
def tier_cuts(k: int) -> tuple[float, ...]:
    """The k - 1 edges of the latent risk ``z`` between k equally likely risk tiers of the stable population
    (estimated once from 50,000 rows of a fixed seed)."""
    rng = np.random.default_rng(20260101)
    f = _features(rng, 50_000, 0.0)
    z = default_logit(f) - 0.5 * _logit_u(rng.random(50_000))
    return tuple(float(q) for q in np.quantile(z, np.arange(1, k) / k))


def _target(spec: ModelSpec, f: dict[str, np.ndarray], logit: np.ndarray, u: np.ndarray) -> Any:
    """The target column of the spec's task (the module docstring)."""
    import pandas as pd

    z = logit - 0.5 * _logit_u(u)
    if spec.task == "multiclass":
        classes = list(spec.data.classes or [])
        tier = np.searchsorted(np.array(tier_cuts(len(classes))), z, side="right")
        if all(isinstance(c, int) for c in classes):
            return np.asarray(classes, dtype="int64")[tier]
        return pd.array(np.asarray([str(c) for c in classes], dtype=object)[tier], dtype="string")
    if spec.task == "regression":
        return (f["loan_amount"] * LOSS_GIVEN_DEFAULT / (1 + np.exp(-z))).round(2)
    return (u < 1 / (1 + np.exp(-logit))).astype("int64")


def generate_batch(spec: ModelSpec, day: dt.date, scenario: Scenario | None = None) -> pd.DataFrame:
    """One day's batch as a DataFrame with the spec's id, features and target (and scenario damage); the target
    follows the spec's task (the module docstring)."""
    import pandas as pd

    scenario = scenario or Scenario()
    gen = spec.data.generator
    if gen is None:
        raise ValueError(f"spec {spec.name!r} has no data.generator section; it reads real batches only")
    rng = np.random.default_rng(day_seed(gen.seed, day))
    n = gen.rows_per_day
    drift = scenario.severity if scenario.kind == "covariate_drift" else 0.0
    concept = scenario.severity if scenario.kind == "concept_drift" else 0.0
    f = _features(rng, n, drift)
    logit = default_logit(f, concept)
    u = rng.random(n)  # the draw that decides the target (a binary batch: default when u < sigmoid(logit))
    ids = rng.integers(0, 10_000_000, n)
    frame = pd.DataFrame({spec.data.id_column: [f"C{i:07d}" for i in ids]})
    for feat in spec.data.features:
        if feat.name not in f:
            raise ValueError(f"generator {gen.kind!r} does not produce feature {feat.name!r}")
        values = f[feat.name]
        if feat.kind == "integer":
            col = pd.array(values.astype("int64"), dtype="Int64")
        elif feat.kind == "numeric":
            col = values.astype("float64")
        else:
            col = pd.array(values, dtype="string")
        frame[feat.name] = col
        if feat.max_missing > 0:  # realistic missingness: a fraction of the allowed share
            mask = rng.random(n) < feat.max_missing * 0.4
            frame.loc[mask, feat.name] = None
    frame[spec.data.target] = _target(spec, f, logit, u)
    if scenario.kind == "broken":
        frame = _break(frame, spec, scenario.broken, rng)
    return frame


def _break(frame: pd.DataFrame, spec: ModelSpec, kind: BrokenKind, rng: np.random.Generator) -> pd.DataFrame:
    """Damage a batch the way upstream feeds do."""
    numeric = [f for f in spec.data.features if f.kind != "categorical"]
    victim = numeric[1 % len(numeric)].name
    if kind == "missing_column":
        return frame.drop(columns=[victim])
    if kind == "wrong_type":
        frame[victim] = frame[victim].astype("string")
        frame.loc[frame.index[:25], victim] = "n/a"
        return frame
    if kind == "nulls":
        frame.loc[rng.random(len(frame)) < 0.4, victim] = None
        return frame
    # out_of_range: a unit change upstream (e.g. a sign flip) on a slice of rows
    first = numeric[0]
    bad = rng.random(len(frame)) < 0.15
    frame.loc[bad, first.name] = -frame.loc[bad, first.name]
    return frame


def land_batch(spec: ModelSpec, day: dt.date, scenario: Scenario | None = None,
               paths: StatePaths | None = None) -> Path:
    """Write the day's batch to the landing zone (atomically: a reader never sees half a file)."""
    paths = paths or StatePaths.current()
    frame = generate_batch(spec, day, scenario)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write(paths.landing(spec.name) / batch_name(day), buffer.getvalue())
