from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lifecycle.data.synthetic import Scenario, land_batch
from lifecycle.data.validation import BatchNotFoundError, gate_batch, validated_batches
from lifecycle.ledger import Ledger

DAY = dt.date(2026, 1, 3)


def test_stable_batch_is_validated_and_published(spec, state):
    land_batch(spec, DAY, paths=state)
    outcome = gate_batch(spec, DAY, paths=state)
    assert outcome.passed and outcome.failed == 0
    assert Path(outcome.batch_path).parent == state.validated(spec.name)
    assert not (state.landing(spec.name) / f"{DAY}.parquet").exists()
    assert "PASSED" in Path(outcome.report_path).read_text()
    assert [e.event for e in Ledger(state.ledger_db).events()] == ["batch_validated"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("missing_column", "income: column is missing", id="missing_column"),
        pytest.param("wrong_type", "income: numeric feature: expected numbers (float or integer dtypes), found dtype "
                     "object", id="wrong_type"),
        pytest.param("out_of_range", "age: ", id="out_of_range"),
        pytest.param("nulls", "income: ", id="nulls"),
    ],
)
def test_broken_batch_is_quarantined_with_readable_report(spec, state, kind, expected):
    land_batch(spec, DAY, Scenario("broken", broken=kind), paths=state)
    outcome = gate_batch(spec, DAY, paths=state)
    assert not outcome.passed
    assert expected in outcome.reason
    qdir = state.quarantine(spec.name) / DAY.isoformat()
    assert (qdir / f"{DAY}.parquet").exists() and (qdir / "gx_result.json").exists()
    report = (qdir / "report.html").read_text()
    assert "QUARANTINED" in report and expected.split(":")[0] in report
    assert validated_batches(spec, DAY, DAY, state) == []
    [event] = Ledger(state.ledger_db).events()
    assert event.event == "batch_quarantined" and expected in event.reason


def test_category_codes_stored_as_numbers_are_quarantined_naming_field_types_and_the_way_out(spec, state):
    """A batch written by other means than `lifecycle land`, with a categorical feature as integer codes: the
    gate names the field, the expected and the found type, and the rule that lands codes as their labels."""
    from lifecycle.data.synthetic import generate_batch

    frame = generate_batch(spec, DAY)
    feature = next(f for f in spec.data.features if f.kind == "categorical")
    codes = {c: i for i, c in enumerate(feature.categories)}
    frame[feature.name] = frame[feature.name].map(codes).astype("int64")
    folder = state.landing(spec.name)
    folder.mkdir(parents=True)
    frame.to_parquet(folder / f"{DAY}.parquet", index=False)
    outcome = gate_batch(spec, DAY, paths=state)
    assert not outcome.passed
    assert (f"{feature.name}: categorical feature: expected text (object, string, str, category), found dtype int64; "
            "category codes stored as numbers: land the file with `lifecycle land MODEL DAY FILE`") in outcome.reason


def test_rerun_returns_the_recorded_decision(spec, state):
    land_batch(spec, DAY, Scenario("broken", broken="nulls"), paths=state)
    first = gate_batch(spec, DAY, paths=state)
    again = gate_batch(spec, DAY, paths=state)
    assert again.passed is False and again.reason == first.reason
    assert len(Ledger(state.ledger_db).events()) == 1


def test_unreadable_file_is_quarantined_not_crashed(spec, state):
    folder = state.landing(spec.name)
    folder.mkdir(parents=True)
    (folder / f"{DAY}.parquet").write_bytes(b"this is not parquet")
    outcome = gate_batch(spec, DAY, paths=state)
    assert not outcome.passed and "unreadable as Parquet" in outcome.reason
    assert json.loads((state.quarantine(spec.name) / DAY.isoformat() / "gate.json").read_text())["passed"] is False


def test_missing_batch_names_the_expected_file(spec, state):
    with pytest.raises(BatchNotFoundError, match=r"no batch landed for credit_default on 2026-01-03: expected .*landing"):
        gate_batch(spec, DAY, paths=state)


def test_a_validated_file_without_its_gate_record_does_not_count_for_any_reader(spec, state):
    """A crash between moving the batch and writing its gate record leaves the file alone in validated/: neither
    training's reader nor the monitor's (the retrain's end day) may count it."""
    from lifecycle.monitoring.run import latest_validated_day

    folder = state.validated(spec.name)
    folder.mkdir(parents=True)
    before = DAY - dt.timedelta(days=1)
    for day in (before, DAY):
        (folder / f"{day}.parquet").write_bytes(b"PAR1")
    (folder / f"{before}.gate.json").write_text("{}")  # DAY has no record: the crash case
    assert validated_batches(spec, before, DAY, state) == [folder / f"{before}.parquet"]
    assert latest_validated_day(spec, DAY, state) == before
    (folder / f"{DAY}.gate.json").write_text("{}")
    assert validated_batches(spec, before, DAY, state)[-1] == folder / f"{DAY}.parquet"
    assert latest_validated_day(spec, DAY, state) == DAY
    assert latest_validated_day(spec, before, state) == before


@pytest.mark.parametrize(("share", "passes"), [(0.02, True), (0.05, False)])
def test_a_range_tolerance_lets_a_few_tail_values_through_and_quarantines_more(spec, state, share, passes):
    """``max_out_of_range`` (drafted specs: 3%): a batch with 2% of ``age`` above the range passes, one with 5%
    is quarantined naming the share and the allowance."""
    from lifecycle.data.synthetic import generate_batch

    features = [f.model_copy(update={"max_out_of_range": 0.03}) if f.name == "age" else f
                for f in spec.data.features]
    tolerant = spec.model_copy(update={"data": spec.data.model_copy(update={"features": features})})
    frame = generate_batch(spec, DAY)
    frame.loc[frame.index[: int(len(frame) * share)], "age"] = 140
    folder = state.landing(spec.name)
    folder.mkdir(parents=True)
    frame.to_parquet(folder / f"{DAY}.parquet", index=False)
    outcome = gate_batch(tolerant, DAY, paths=state)
    assert outcome.passed is passes, outcome.reason
    if not passes:
        assert "age: 5.0% of values outside [18.0, 100.0] (allowed 3%)" in outcome.reason
