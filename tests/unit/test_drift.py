"""Drift computation: the quantile sketch agrees with Evidently's full computation (detection quality over 10
generator seeds: test_drift_quality.py, a module of its own so that the two slow halves run on different xdist
workers)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from lifecycle.data.frames import numpy_dtypes
from lifecycle.data.synthetic import Scenario, generate_batch
from lifecycle.monitoring.drift import compute_drift, feature_kinds, full_scores
from lifecycle.monitoring.sketch import sketch
from lifecycle.spec import get_spec

SPEC = get_spec("credit_default")
REF_DAY = dt.date(2026, 1, 1)


def spec_with(seed: int | None = None, rows: int | None = None):
    gen = SPEC.data.generator.model_copy(update={k: v for k, v in (("seed", seed), ("rows_per_day", rows))
                                                 if v is not None})
    return SPEC.model_copy(update={"data": SPEC.data.model_copy(update={"generator": gen})})


def batch(spec, day: dt.date, scenario: str = "stable") -> pd.DataFrame:
    return numpy_dtypes(generate_batch(spec, day, Scenario.parse(scenario)))


def reference(spec) -> pd.DataFrame:
    """What training stores: a 10,000-row sample of a week of stable batches."""
    frames = [batch(spec, REF_DAY + dt.timedelta(days=i)) for i in range(4)]
    return pd.concat(frames, ignore_index=True).sample(10_000, random_state=0).reset_index(drop=True)


def test_sketch_keeps_missing_and_category_shares():
    frame = batch(spec_with(rows=50_000), dt.date(2026, 2, 1))
    numeric, categorical = feature_kinds(SPEC)
    small = sketch(frame, numeric, categorical, 1000)
    assert len(small) == 1000
    for c in numeric:
        assert small[c].isna().mean() == pytest.approx(frame[c].isna().mean(), abs=1e-3)
        assert small[c].median() == pytest.approx(frame[c].median(), rel=0.01)
    for c in categorical:
        shares = frame[c].value_counts(normalize=True)
        assert (small[c].value_counts(normalize=True).reindex(shares.index) - shares).abs().max() <= 1e-3
    assert sketch(frame.head(500), numeric, categorical, 1000).shape == (500, len(numeric + categorical))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11, 29])
def test_sketched_decisions_agree_with_evidentlys_full_computation(seed):
    """Evidently's default DataDriftPreset on every row is the full computation; ours runs on the sketch."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    spec = spec_with(seed=seed, rows=100_000)
    ref = reference(spec_with(seed=seed))
    numeric, categorical = feature_kinds(SPEC)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    for scenario in ("stable", "covariate_drift:0.12", "covariate_drift:0.3"):
        current = batch(spec, dt.date(2026, 2, 1), scenario)
        ours = compute_drift(SPEC, ref, current, prediction=False, sketch_rows=20_000, summary=False)
        assert ours.sketch_rows == 20_000 and ours.current_rows == 100_000
        snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(current[numeric + categorical],
                                                                   data_definition=definition),
                                               Dataset.from_pandas(ref[numeric + categorical],
                                                                   data_definition=definition))
        full = {m["config"]["column"]: m["value"] for m in snap.dict()["metrics"]
                if m["config"]["type"] == "evidently:metric_v2:ValueDrift"}
        for c in numeric + categorical:
            assert abs(ours.scores[c] - full[c]) <= ours.bounds[c] + 1e-9, (scenario, c)
            if c not in ours.uncertain:
                assert (ours.scores[c] >= 0.1) == (full[c] >= 0.1), (scenario, c)
        full_share = sum(v >= 0.1 for v in full.values()) / len(full)
        assert (ours.share >= SPEC.monitoring.drift_share) == (full_share >= SPEC.monitoring.drift_share)
        assert max(ours.bounds.values()) < 0.005
        direct = full_scores(SPEC, ref, current)
        assert all(abs(direct[c] - full[c]) < 1e-9 for c in full)  # the benchmark's reference is Evidently's
