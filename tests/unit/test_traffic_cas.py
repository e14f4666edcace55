"""Traffic compare-and-set: concurrent operators (a deploy, a manual rollback, a retire's drain) never undo each other.

A real :class:`TrafficStore` on a temporary SQLite file; the gateway in process (Starlette's TestClient on
``create_app``, a stand-in model) behind the real :class:`GatewayClient`; the deploy functions against it with an
in-memory registry."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import CHALLENGER, CHAMPION, PREVIOUS
from lifecycle.serving import deploy
from lifecycle.serving.app import Gateway, create_app
from lifecycle.serving.client import GatewayClient, GatewayConflictError, GatewayError
from lifecycle.serving.traffic import TrafficConflictError, TrafficError, TrafficStore
from tests.conftest import ADMIN, TOKEN

MODEL = "credit_default"
TRAFFIC = f"/admin/models/{MODEL}/traffic"


# ----------------------------------------------------------------------------------------------- the store itself
@pytest.fixture
def store(tmp_path: Path) -> TrafficStore:
    store = TrafficStore(tmp_path / "lifecycle.db")
    for version in ("1", "2", "3"):
        store.mark_loaded("m", version, True)
    store.set_weights("m", {"1": 100}, "start")
    return store


def test_a_stale_revision_is_refused_and_changes_nothing(store):
    # Arrange
    seen = store.revision("m")
    store.set_weights("m", {"1": 50, "2": 50}, "another operator")
    before = (store.state("m"), len(store.history("m")))

    # Act
    with pytest.raises(TrafficConflictError) as caught:
        store.set_weights("m", {"1": 10, "2": 90}, "stale writer", expected_revision=seen)

    # Assert
    err = caught.value
    assert err.http_status == 409 and isinstance(err, TrafficError)
    assert err.revision == seen + 1 and err.expected == seen
    assert err.weights == {"1": 50, "2": 50, "3": 0}
    assert (store.state("m"), len(store.history("m"))) == before


def test_the_current_revision_is_accepted_and_raised_by_one(store):
    seen = store.revision("m")
    applied = store.set_weights("m", {"1": 95, "2": 5}, "canary", expected_revision=seen)
    assert applied.weights == {"1": 95, "2": 5} and applied.revision == seen + 1
    assert store.state("m") == ({"1": 95, "2": 5, "3": 0}, seen + 1)
    assert store.history("m")[-1] == {"at": store.history("m")[-1]["at"], "weights": {"1": 95, "2": 5},
                                      "reason": "canary", "revision": seen + 1}


def test_two_writers_racing_on_the_same_revision_exactly_one_wins(store):
    # Arrange
    seen = store.revision("m")
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def write(name: str, weights: dict[str, int]) -> None:
        barrier.wait()
        try:
            outcomes[name] = store.set_weights("m", weights, name, expected_revision=seen)
        except TrafficConflictError as err:
            outcomes[name] = err

    threads = [threading.Thread(target=write, args=("a", {"1": 80, "2": 20})),
               threading.Thread(target=write, args=("b", {"1": 0, "3": 100}))]

    # Act
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Assert
    won = [name for name, out in outcomes.items() if not isinstance(out, Exception)]
    lost = [out for out in outcomes.values() if isinstance(out, TrafficConflictError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    winner = outcomes[won[0]]
    assert winner.revision == seen + 1 and store.revision("m") == seen + 1
    assert lost[0].revision == seen + 1 and store.weights("m") == lost[0].weights
    assert {v: w for v, w in lost[0].weights.items() if w} == {v: w for v, w in winner.weights.items() if w}
    assert [h["reason"] for h in store.history("m")][-1] == won[0] and len(store.history("m")) == 2


def test_load_and_unload_raise_the_revision_but_a_repeated_load_does_not(store):
    r0 = store.revision("m")
    assert store.mark_loaded("m", "4", True) == r0 + 1
    assert store.mark_loaded("m", "4", True) == r0 + 1  # already so: a restarted gateway loading again
    assert store.mark_loaded("m", "4", False) == r0 + 2
    assert store.mark_loaded("m", "4", False) == r0 + 2
    assert store.revision("m") == r0 + 2
    assert store.revision("other") == 0


def test_a_refused_change_does_not_raise_the_revision(store):
    r0 = store.revision("m")
    with pytest.raises(TrafficError, match="sum to 100"):
        store.set_weights("m", {"1": 90}, "bad", expected_revision=r0)
    with pytest.raises(TrafficError, match="still has weight"):
        store.mark_loaded("m", "1", False)
    assert store.revision("m") == r0


@pytest.mark.parametrize("bad", [True, -1, "3", 1.0])
def test_expected_revision_must_be_a_non_negative_integer(store, bad):
    with pytest.raises(TrafficError, match="expected_revision must be a non-negative integer"):
        store.set_weights("m", {"1": 100}, "x", expected_revision=bad)


def test_a_db_from_before_revisions_is_upgraded_in_place(tmp_path):
    # Arrange: the old schema, with a change recorded
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE traffic (model TEXT NOT NULL, version TEXT NOT NULL, weight INTEGER NOT NULL,
                                  loaded INTEGER NOT NULL DEFAULT 1, updated_at TEXT NOT NULL,
                                  PRIMARY KEY (model, version));
            CREATE TABLE traffic_history (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL,
                                          at TEXT NOT NULL, weights TEXT NOT NULL, reason TEXT NOT NULL);
            INSERT INTO traffic VALUES ('m', '1', 100, 1, '2026-01-01T00:00:00Z');
            INSERT INTO traffic_history (model, at, weights, reason) VALUES ('m', '2026-01-01T00:00:00Z',
                                                                             '{"1": 100}', 'old');
        """)

    # Act
    store = TrafficStore(path)
    TrafficStore(path)  # a second opener finds the column there
    applied = store.set_weights("m", {"1": 100}, "new", expected_revision=0)

    # Assert
    assert applied.revision == 1
    assert [(h["reason"], h["revision"]) for h in store.history("m")] == [("old", None), ("new", 1)]


# ------------------------------------------------------------------------------------------ the gateway over HTTP
class StandIn:
    threshold = 0.5

    def proba(self, rows):
        return np.full(len(rows), 0.25)


@pytest.fixture
def gateway(spec, tmp_path: Path) -> Gateway:
    gateway = Gateway([spec], StatePaths(tmp_path / "state"), token=TOKEN, loader=lambda s, v: StandIn())

    async def arrange():
        for version in ("1", "2", "3"):
            await gateway.load(MODEL, version)
        await gateway.set_weights(MODEL, {"1": 100}, "test: arrange")

    asyncio.run(arrange())
    yield gateway
    gateway.logs.close()


@pytest.fixture
def http(gateway) -> TestClient:
    return TestClient(create_app(gateway))  # no `with`: no lifespan, no registry sync


@pytest.fixture
def client(gateway) -> GatewayClient:
    """The real admin client, its HTTP transport the in-process app."""
    client = GatewayClient("http://gateway", TOKEN)
    client.http = TestClient(create_app(gateway), base_url="http://gateway", headers=ADMIN)
    return client


def test_get_traffic_returns_the_revision_with_the_weights(http, gateway):
    body = http.get(TRAFFIC, headers=ADMIN).json()
    assert body["weights"] == {"1": 100, "2": 0, "3": 0}
    assert body["revision"] == gateway.store.revision(MODEL) == 4  # three loads and a weight change
    assert body["history"][-1]["revision"] == 4


def test_put_with_the_current_revision_applies_and_answers_the_new_one(http):
    seen = http.get(TRAFFIC, headers=ADMIN).json()["revision"]
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 90, "2": 10}, "reason": "canary",
                                                  "expected_revision": seen})
    assert resp.status_code == 200, resp.text
    assert resp.json()["revision"] == seen + 1 and resp.json()["weights"] == {"1": 90, "2": 10, "3": 0}


def test_put_with_a_stale_revision_is_a_409_with_the_current_state_and_changes_nothing(http, gateway):
    # Arrange
    seen = http.get(TRAFFIC, headers=ADMIN).json()["revision"]
    http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 50, "3": 50}, "reason": "another operator"})
    before = http.get(TRAFFIC, headers=ADMIN).json()

    # Act
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 0, "2": 100}, "reason": "stale",
                                                  "expected_revision": seen})

    # Assert
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["revision"] == seen + 1 and body["weights"] == {"1": 50, "2": 0, "3": 50}
    assert f"changed since revision {seen}" in body["error"]
    after = http.get(TRAFFIC, headers=ADMIN).json()
    assert (after["weights"], after["revision"], after["history"]) == (before["weights"], before["revision"],
                                                                      before["history"])
    assert gateway.models[MODEL].weights == {"1": 50, "2": 0, "3": 50}


def test_a_stale_revision_is_a_409_even_for_weights_that_would_be_refused(http):
    seen = http.get(TRAFFIC, headers=ADMIN).json()["revision"]
    http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 100}, "reason": "another operator"})
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 50, "9": 50}, "expected_revision": seen})
    assert resp.status_code == 409 and resp.json()["revision"] == seen + 1


@pytest.mark.parametrize(("bad", "status"), [
    pytest.param("4", 400, id="string"), pytest.param(True, 400, id="bool"), pytest.param(4.0, 400, id="float"),
    pytest.param([4], 400, id="list"), pytest.param({"r": 4}, 400, id="object"),
    pytest.param(1e300, 400, id="huge-float"), pytest.param(-1, 422, id="negative"),
])
def test_a_bad_expected_revision_is_a_4xx_and_changes_nothing(http, bad, status):
    before = http.get(TRAFFIC, headers=ADMIN).json()
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 0, "2": 100}, "expected_revision": bad})
    assert resp.status_code == status, resp.text
    assert "expected_revision must be a non-negative integer" in resp.json()["error"]
    after = http.get(TRAFFIC, headers=ADMIN).json()
    assert (after["weights"], after["revision"]) == (before["weights"], before["revision"])


def test_a_null_expected_revision_means_no_check(http):
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 100}, "expected_revision": None})
    assert resp.status_code == 200, resp.text


def test_an_unloaded_version_still_gets_422_without_expected_revision(http):
    resp = http.put(TRAFFIC, headers=ADMIN, json={"weights": {"1": 50, "9": 50}})
    assert resp.status_code == 422 and "not loaded" in resp.json()["error"]


def test_the_client_raises_a_typed_conflict_and_exposes_the_revision(client):
    seen = client.revision(MODEL)
    assert client.set_weights(MODEL, {"1": 70, "2": 30}, "a", expected_revision=seen)["revision"] == seen + 1
    with pytest.raises(GatewayConflictError) as caught:
        client.set_weights(MODEL, {"1": 0, "2": 100}, "b", expected_revision=seen)
    err = caught.value
    assert isinstance(err, TrafficConflictError) and isinstance(err, GatewayError)
    assert (err.status, err.revision, err.expected, err.weights) == (409, seen + 1, seen, {"1": 70, "2": 30, "3": 0})
    with pytest.raises(GatewayError) as refused:  # other refusals stay plain GatewayErrors
        client.unload(MODEL, "1")
    assert refused.value.status == 409 and not isinstance(refused.value, TrafficConflictError)


# ------------------------------------------------------------------------------------------------- the deploy
@dataclass
class FakeVersion:
    version: str
    tags: dict[str, str] = field(default_factory=dict)


class FakeRegistry:
    """The registry calls the deploy makes, in memory."""

    def __init__(self) -> None:
        self.mv = {v: FakeVersion(v, {"lifecycle.status": "challenger"}) for v in ("1", "2", "3")}
        self.alias: dict[str, str] = {}

    def version(self, name, version):
        return self.mv[str(version)]

    def by_alias(self, name, alias):
        return self.mv[self.alias[alias]] if alias in self.alias else None

    def set_alias(self, name, alias, version):
        self.alias[alias] = str(version)

    def delete_alias(self, name, alias):
        self.alias.pop(alias, None)

    def set_tags(self, name, version, tags):
        self.mv[str(version)].tags.update(tags)


@pytest.fixture
def registry(monkeypatch) -> FakeRegistry:
    registry = FakeRegistry()
    registry.alias = {CHAMPION: "1", PREVIOUS: "3", CHALLENGER: "2"}
    monkeypatch.setattr(deploy, "Registry", lambda paths=None: registry)
    return registry


@pytest.fixture
def ledger(gateway) -> Ledger:
    return Ledger(gateway.paths.ledger_db)


def superseded(ledger: Ledger, run_id: str) -> list:
    return [e for e in ledger.events(MODEL, "rolled_back") if e.run_id == run_id and e.details.get("superseded")]


def test_a_deploy_without_interference_steps_and_promotes(spec, client, registry, ledger, gateway):
    plan = deploy.start_canary(spec, 2, client, gateway.paths)
    assert plan["revision"] == client.revision(MODEL)
    seen = plan
    for i, percent in enumerate((5, 100), 1):
        seen = deploy.set_step(spec, plan, i, percent, client, "run", ledger, seen=seen)
        assert seen["revision"] == client.revision(MODEL)
    deploy.promote(spec, plan, client, "run", gateway.paths, ledger, seen=seen)
    assert registry.alias[CHAMPION] == "2" and registry.alias[PREVIOUS] == "1"
    assert client.traffic(MODEL)["weights"] == {"1": 0, "2": 100, "3": 0}
    assert not superseded(ledger, "run")


def test_a_manual_rollback_between_steps_stops_the_deploy_without_touching_traffic(spec, client, registry, ledger,
                                                                                    gateway):
    # Arrange: step 1 is live, then an operator rolls back to `previous` (v3)
    plan = deploy.start_canary(spec, 2, client, gateway.paths)
    step1 = deploy.set_step(spec, plan, 1, 20, client, "deploy-run", ledger, seen=plan)
    deploy.manual_rollback(spec, "risk says no", client, "manual-run", gateway.paths, ledger)
    after_rollback = client.traffic(MODEL)
    assert after_rollback["weights"] == {"1": 0, "2": 0, "3": 100} and registry.alias[CHAMPION] == "3"

    # Act: the deploy's next step, its promotion and its rollback all find the traffic changed
    with pytest.raises(deploy.DeploySupersededError) as caught:
        deploy.set_step(spec, plan, 2, 100, client, "deploy-run", ledger, seen=step1)
    with pytest.raises(deploy.DeploySupersededError):
        deploy.promote(spec, plan, client, "deploy-run", gateway.paths, ledger, seen=step1)
    with pytest.raises(deploy.DeploySupersededError):
        deploy.rollback(spec, plan, "judge: breach", client, "deploy-run", gateway.paths, ledger, seen=step1)

    # Assert: traffic and aliases are the rollback's; one ledger row says why
    now = client.traffic(MODEL)
    assert (now["weights"], now["revision"]) == (after_rollback["weights"], after_rollback["revision"])
    assert registry.alias[CHAMPION] == "3" and PREVIOUS not in registry.alias
    assert registry.mv["2"].tags["lifecycle.status"] == "challenger"
    err = caught.value
    assert err.revision == after_rollback["revision"] and err.expected == step1["revision"]
    rows = superseded(ledger, "deploy-run")
    assert len(rows) == 1 and rows[0].version == "2"
    assert rows[0].reason.startswith(f"deploy superseded: traffic changed by another operator (revision "
                                     f"{after_rollback['revision']}, expected {step1['revision']})")
    assert not [e for e in ledger.events(MODEL, "canary_step") if e.details["step"] == 2]


def test_promote_leaves_the_champion_alone_when_it_moved_even_if_weights_did_not(spec, client, registry, ledger,
                                                                                  gateway):
    plan = deploy.start_canary(spec, 2, client, gateway.paths)
    last = deploy.set_step(spec, plan, 1, 100, client, "run", ledger, seen=plan)
    registry.set_alias(MODEL, CHAMPION, "3")  # someone re-pointed the champion by hand
    with pytest.raises(deploy.DeploySupersededError, match="champion alias changed by another operator"):
        deploy.promote(spec, plan, client, "run", gateway.paths, ledger, seen=last)
    assert registry.alias[CHAMPION] == "3" and registry.alias[PREVIOUS] == "3"
    assert client.revision(MODEL) == last["revision"]


def test_a_load_between_steps_is_not_a_supersede(spec, client, registry, ledger, gateway):
    plan = deploy.start_canary(spec, 2, client, gateway.paths)
    step1 = deploy.set_step(spec, plan, 1, 20, client, "run", ledger, seen=plan)
    client.unload(MODEL, "3")  # raises the revision, changes no weight
    step2 = deploy.set_step(spec, plan, 2, 50, client, "run", ledger, seen=step1)
    assert step2["revision"] == step1["revision"] + 2
    assert client.traffic(MODEL)["weights"] == {"1": 50, "2": 50}


def test_a_retried_step_whose_first_try_got_through_is_done(spec, client, registry, ledger, gateway):
    plan = deploy.start_canary(spec, 2, client, gateway.paths)
    first = deploy.set_step(spec, plan, 1, 20, client, "run", ledger, seen=plan)
    again = deploy.set_step(spec, plan, 1, 20, client, "run", ledger, seen=plan)  # Airflow's retry, same input
    assert again["revision"] == first["revision"] == client.revision(MODEL)
    assert not superseded(ledger, "run")


# ------------------------------------------------------------------------------------------------- retire's drain
class Interfering:
    """A GatewayClient whose traffic another operator changes right after each read, ``times`` times."""

    def __init__(self, client: GatewayClient, times: int) -> None:
        self.client, self.times, self.reads = client, times, 0

    def traffic(self, model):
        state = self.client.traffic(model)
        self.reads += 1
        if self.reads <= self.times:
            self.client.set_weights(model, {"1": 60 - self.reads, "2": 40 + self.reads}, "another operator")
        return state

    def set_weights(self, *args, **kwargs):
        return self.client.set_weights(*args, **kwargs)


def test_drain_retries_on_a_conflict_and_keeps_the_other_change(client):
    from lifecycle.retirement.retire import drain

    client.set_weights(MODEL, {"1": 70, "2": 30}, "arrange")
    done = drain(MODEL, "2", "1", Interfering(client, times=1))
    assert done["had_weight"] == 41  # the weight after the other operator's change, not the stale 30
    assert client.traffic(MODEL)["weights"] == {"1": 100, "2": 0, "3": 0}


def test_drain_gives_up_after_three_conflicts_without_overwriting(client):
    from lifecycle.retirement.retire import DrainConflictError, drain

    client.set_weights(MODEL, {"1": 70, "2": 30}, "arrange")
    with pytest.raises(DrainConflictError, match="3 compare-and-set attempts"):
        drain(MODEL, "2", "1", Interfering(client, times=10))
    assert client.traffic(MODEL)["weights"] == {"1": 57, "2": 43, "3": 0}  # the third interference, untouched


def test_drain_of_a_version_without_weight_writes_nothing(client):
    from lifecycle.retirement.retire import drain

    seen = client.revision(MODEL)
    assert drain(MODEL, "3", "1", client)["had_weight"] == 0
    assert client.revision(MODEL) == seen


def test_history_rows_survive_json(store):
    assert json.loads(json.dumps(store.history("m")))[-1]["revision"] == store.revision("m")
