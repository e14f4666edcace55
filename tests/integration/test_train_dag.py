"""Whole DAG runs with ``dag.test()``: data gate over a week with a broken day, then the train DAG."""
from __future__ import annotations

import datetime as dt

import pytest

from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import Registry
from tests.conftest import DAYS, land_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BROKEN = 2  # index of the broken day in DAYS


def _utc(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, dagbag, spec):
    """A week of batches through the data gate, then one train run; shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(tmp_path_factory.mktemp("train_dag") / "state"))
        paths = StatePaths.current()
        land_days(spec, paths, {BROKEN: "broken:out_of_range"})
        gate = dagbag.get_dag("credit_default__data_gate")
        gate_runs = [gate.test(logical_date=_utc(day + dt.timedelta(days=1))) for day in DAYS]
        train = dagbag.get_dag("credit_default__train")
        first = train.test(logical_date=_utc(DAYS[-1] + dt.timedelta(days=1), 2),
                           run_conf={"reason": "first model"})
        yield {"paths": paths, "gate_runs": gate_runs, "first": first, "train": train, "mp": mp}


def test_data_gate_validates_good_days_and_quarantines_the_broken_one(lifecycle):
    for i, run in enumerate(lifecycle["gate_runs"]):
        expected = {"validate": "success", "route": "success",
                    "publish": "skipped" if i == BROKEN else "success",
                    "alert_quarantine": "success" if i == BROKEN else "skipped"}
        assert str(run.state) == "success" and states(run) == expected, i


def test_first_run_yields_champion_v1_with_lineage_tags(lifecycle, spec):
    run = lifecycle["first"]
    assert str(run.state) == "success"
    assert states(run) == {"plan": "success", "train": "success", "evaluate": "success", "gate": "success",
                           "register": "success", "is_challenger": "success", "announce_challenger": "skipped",
                           "start_canary": "skipped"}
    registry = Registry(lifecycle["paths"])
    champion = registry.by_alias(spec.model_name, "champion")
    assert champion is not None and str(champion.version) == "1"
    tags = champion.tags
    assert tags["lifecycle.status"] == "champion"
    assert tags["lifecycle.dag_run_id"] == run.run_id
    assert tags["lifecycle.code_version"]
    assert tags["lifecycle.gate_decision"] == "passed" and tags["lifecycle.gate_reason"].startswith("gate: passed v1")


def test_quarantined_batch_is_never_trained_on(lifecycle, spec):
    champion = Registry(lifecycle["paths"]).by_alias(spec.model_name, "champion")
    used = champion.tags["lifecycle.data_batches"].split(",")
    assert DAYS[BROKEN].isoformat() not in used
    assert used == [d.isoformat() for i, d in enumerate(DAYS) if i != BROKEN]


def test_ledger_tells_the_story(lifecycle):
    events = [(e.event, e.version) for e in Ledger(lifecycle["paths"].ledger_db).events()]
    assert events.count(("batch_validated", None)) == len(DAYS) - 1
    assert events.count(("batch_quarantined", None)) == 1
    assert [e for e in events if e[1] == "1"] == [("trained", "1"), ("gate_passed", "1"), ("promoted", "1")]


def test_no_new_data_skips_training_unless_forced(lifecycle):
    run = lifecycle["train"].test(logical_date=_utc(DAYS[-1] + dt.timedelta(days=2), 2))
    assert str(run.state) == "success"
    assert states(run)["plan"] == "success" and states(run)["train"] == "skipped"


def test_deliberately_worse_config_is_rejected_with_a_reason(lifecycle, spec):
    run = lifecycle["train"].test(
        logical_date=_utc(DAYS[-1] + dt.timedelta(days=3), 2),
        run_conf={"force": True, "epochs": 1, "overrides": {"learning_rate": 0.00005}, "reason": "worse"})
    assert str(run.state) == "success"
    registry = Registry(lifecycle["paths"])
    v2 = registry.version(spec.model_name, 2)
    assert v2.tags["lifecycle.status"] == "rejected"
    assert v2.tags["lifecycle.gate_reason"].startswith("gate: rejected v2: ")
    assert {k: str(v) for k, v in registry.aliases(spec.model_name).items()} == {"champion": "1"}
    rejected = Ledger(lifecycle["paths"].ledger_db).last(spec.name, "gate_rejected")
    assert rejected.version == "2" and "rejected v2" in rejected.reason
