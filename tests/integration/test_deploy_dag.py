"""The deploy and rollback DAGs with `dag.test()` against a running gateway with live simulated traffic."""
from __future__ import annotations

import re
import time

import pytest

from lifecycle.ledger import Ledger
from lifecycle.registry.store import CHAMPION, PREVIOUS, Registry
from tests.conftest import live_lifecycle, set_traffic, states, traffic_of

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.clock]
FAST_CANARY = {"steps": [20, 100], "min_requests": 40, "min_seconds": 1, "max_seconds": 90, "poll_seconds": 0.5,
               "shadow": {"min_labels": 150, "min_labels_when_moved": 300, "min_seconds": 2, "max_seconds": 90,
                          "min_pairs": 100},
               # v3 is far worse; v2 must not flake: alpha 0.001 is the whole deploy's false-rollback probability
               "slo": {"alpha": 0.001, "max_p99_ms": 250}}
INVERTED = "4"  # served with its scores inverted (1 - p): a broken model the shadow stage stops before any label


class Inverted:
    """A scorer whose probabilities are 1 - p of the real model's (a sign error in a model's packaging)."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def proba(self, rows):
        return 1.0 - self.scorer.proba(rows)


def loader(paths):
    from lifecycle.serving.app import default_loader

    load = default_loader(paths)
    return lambda spec, version: Inverted(load(spec, version)) if version == INVERTED else load(spec, version)


@pytest.fixture(scope="module")
def live(tmp_path_factory, airflow_db):
    """Registry with v1 (champion), v2 (good), v3 (under-trained), v4 (good, served inverted); a gateway; 200 req/s
    of clients."""
    runs = {"v1": {"epochs": 8}, "v2": {"epochs": 8, "overrides": {"seed": 7}},
            "v3": {"epochs": 1, "overrides": {"learning_rate": 0.00005}}, "v4": {"epochs": 8, "overrides": {"seed": 3}}}
    with live_lifecycle(tmp_path_factory.mktemp("deploy"), runs, spec_sections={"canary": FAST_CANARY},
                        client_rate=200, feedback_delay=(0.2, 1.0), loader=loader) as live:
        yield live


def arrange(live, *, champion: str, previous: str | None, weights: dict[str, int],
            statuses: dict[str, str]) -> int:
    """Put registry aliases, version statuses and gateway weights where this test starts from, whatever ran
    before it; return the ledger's length (the test reads the events after it)."""
    registry = Registry(live["paths"])
    registry.set_alias("credit_default", CHAMPION, champion)
    if previous:
        registry.set_alias("credit_default", PREVIOUS, previous)
    else:
        registry.delete_alias("credit_default", PREVIOUS)
    for version, status in statuses.items():
        registry.set_tags("credit_default", version, {"lifecycle.status": status})
    set_traffic(live["server"].url, weights)
    return len(Ledger(live["paths"].ledger_db).events("credit_default"))


def shadow_of(live) -> dict | None:
    """The gateway's shadow pair of the model (None when nothing is mirrored)."""
    from lifecycle.serving.client import GatewayClient
    from tests.conftest import TOKEN

    return GatewayClient(live["server"].url, TOKEN).shadow("credit_default").get("shadow")


def weights(live) -> dict[str, int]:
    return traffic_of(live["server"].url)["weights"]


def test_good_challenger_is_canaried_and_promoted(live):
    seen = arrange(live, champion="1", previous=None, weights={"1": 100}, statuses={"1": "champion", "2": "challenger"})
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 2})
    assert str(run.state) == "success", states(run)
    s = states(run)
    assert s["shadow.judge"] == s["step_1.judge"] == s["step_2.judge"] == s["promote"] == "success"
    assert s["shadow.rollback"] == s["step_1.rollback"] == s["step_2.rollback"] == "skipped"
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "2"
    assert str(registry.by_alias("credit_default", PREVIOUS).version) == "1"
    assert weights(live) == {"1": 0, "2": 100}
    events = Ledger(live["paths"].ledger_db).events("credit_default")[seen:]
    steps = [e for e in events if e.event == "canary_step" and e.version == "2" and "weights" in e.details]
    assert [e.details["weights"] for e in steps] == [{"1": 80, "2": 20}, {"2": 100, "1": 0}]
    shadow = [e for e in events if e.event == "shadow_verdict"]
    assert len(shadow) == 1 and shadow[0].details["action"] == "pass" and "passed shadow" in shadow[0].reason
    assert events[-1].event == "promoted" and events[-1].version == "2"
    evidence = events[-1].details["evidence"]
    assert evidence["labels"] >= 150 and evidence["served_x"] > 0  # pooled over shadow and both steps
    assert not shadow_of(live), "mirroring stops once the deploy is decided"


def test_bad_challenger_is_stopped_in_shadow_by_the_labels_before_any_user_meets_it(live):
    arrange(live, champion="2", previous="1", weights={"1": 0, "2": 100},
            statuses={"1": "previous", "2": "champion", "3": "challenger"})
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 3})
    s = states(run)
    assert s["shadow.rollback"] == "success" and s["step_1.shift"] == s["promote"] == "skipped", s
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "2"
    v3 = registry.version("credit_default", 3)
    assert v3.tags["lifecycle.status"] == "rolled_back"
    assert re.search(r"accuracy|brier", v3.tags["lifecycle.rollback_reason"], re.I)
    assert weights(live) == {"1": 0, "2": 100, "3": 0}
    rolled = Ledger(live["paths"].ledger_db).last("credit_default", "rolled_back")
    assert rolled.version == "3" and rolled.details["evidence"]["served_x"] == 0  # no user request answered by v3
    assert rolled.details["evidence"]["labels"] > 0 and rolled.details["verdict"]["statistics"]
    assert not shadow_of(live)


def test_a_broken_challenger_is_stopped_in_shadow_before_any_label(live):
    arrange(live, champion="2", previous="1", weights={"1": 0, "2": 100},
            statuses={"1": "previous", "2": "champion", INVERTED: "challenger"})
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": int(INVERTED)})
    s = states(run)
    assert s["shadow.rollback"] == "success" and s["step_1.shift"] == "skipped", s
    rolled = Ledger(live["paths"].ledger_db).last("credit_default", "rolled_back")
    assert rolled.version == INVERTED and rolled.details["evidence"]["served_x"] == 0
    assert "inverted" in rolled.reason and "before any label" in rolled.reason
    assert weights(live)[INVERTED] == 0


def test_rejected_version_cannot_be_deployed(live):
    Registry(live["paths"]).set_tags("credit_default", 3, {"lifecycle.status": "rejected"})
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 3})
    assert states(run)["prepare"] == "failed"
    Registry(live["paths"]).set_tags("credit_default", 3, {"lifecycle.status": "rolled_back"})


def test_manual_rollback_restores_previous(live):
    arrange(live, champion="2", previous="1", weights={"1": 0, "2": 100}, statuses={"1": "previous", "2": "champion"})
    run = live["bag"].get_dag("credit_default__rollback").test(run_conf={"reason": "test: bad news from risk"})
    assert str(run.state) == "success", states(run)
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "1"
    assert registry.by_alias("credit_default", PREVIOUS) is None
    assert registry.version("credit_default", 2).tags["lifecycle.status"] == "rolled_back"
    assert weights(live)["1"] == 100


def test_a_manual_rollback_during_a_deploy_run_is_not_undone(live, monkeypatch):
    """The runs really overlap: the deploy run is in progress (step 1 live and judged) when an operator's manual
    rollback lands, right before the deploy's next step (injected there, so the order is deterministic). The deploy
    stops, skipped with the reason, and touches neither traffic nor aliases again."""
    from lifecycle.serving import deploy
    from lifecycle.serving.client import GatewayClient
    from tests.conftest import TOKEN

    # Arrange: v3 is champion, v1 previous, v2 (good) the challenger
    seen = arrange(live, champion="3", previous="1", weights={"1": 0, "3": 100},
                   statuses={"1": "previous", "2": "challenger", "3": "champion"})
    real_set_step, rolled = deploy.set_step, {}

    def set_step_after_an_operator_rolls_back(spec, plan, step, percent, gateway, run_id, *args, **kwargs):
        if step == 2 and not rolled:  # the operator's rollback, as the rollback DAG runs it, from another client
            rolled.update(deploy.manual_rollback(spec, "test: risk says no", GatewayClient(live["server"].url, TOKEN),
                                                 "manual__overlap", live["paths"]))
            rolled["traffic"] = traffic_of(live["server"].url)
        return real_set_step(spec, plan, step, percent, gateway, run_id, *args, **kwargs)

    monkeypatch.setattr(deploy, "set_step", set_step_after_an_operator_rolls_back)

    # Act
    run = live["bag"].get_dag("credit_default__deploy").test(run_conf={"version": 2})

    # Assert: the run ends cleanly, the step that found the traffic changed skipped, nothing after it ran
    s = states(run)
    assert str(run.state) == "success", s
    assert rolled["champion"] == "1" and rolled["demoted"] == "3"
    assert s["step_1.shift"] == s["step_1.judge"] == "success"
    assert s["step_2.shift"] == s["step_2.judge"] == s["step_2.rollback"] == s["promote"] == "skipped", s
    # the traffic is the rollback's, the champion alias where the rollback put it
    now = traffic_of(live["server"].url)
    assert now["weights"] == rolled["traffic"]["weights"]
    assert {v: w for v, w in now["weights"].items() if w} == {"1": 100}
    assert now["revision"] == rolled["traffic"]["revision"]
    registry = Registry(live["paths"])
    assert str(registry.by_alias("credit_default", CHAMPION).version) == "1"
    assert registry.by_alias("credit_default", PREVIOUS) is None
    assert registry.version("credit_default", 2).tags["lifecycle.status"] == "challenger"
    events = Ledger(live["paths"].ledger_db).events("credit_default")[seen:]
    shifts = [e.details["step"] for e in events if e.event == "canary_step" and "weights" in e.details]
    assert shifts == [1]
    stopped = [e for e in events if e.event == "rolled_back" and e.details.get("superseded")]
    assert len(stopped) == 1 and stopped[0].version == "2" and stopped[0].run_id == run.run_id
    assert stopped[0].reason.startswith(f"deploy superseded: traffic changed by another operator (revision "
                                        f"{now['revision']}, expected ")
    assert not [e for e in events if e.event == "promoted"]


def test_clients_never_saw_an_error(live):
    clients = live["clients"]
    deadline = time.monotonic() + 30
    while clients.ok <= 500 and time.monotonic() < deadline:  # run alone, the clients have only just started
        time.sleep(0.5)
    assert clients.failed == 0 and clients.ok > 500
