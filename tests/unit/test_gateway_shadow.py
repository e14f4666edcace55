"""The shadow stage in the gateway (issue 11), in process (stand-in models, no registry): the shadow pair's admin API
(validation, persistence, revision, unload refused), mirroring after the response (the answer is the champion's
and unchanged, the mirrored prediction logged under the same request id, a failing mirrored version never fails a
request), the paired evidence equal to a direct computation, and each label counting once."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from lifecycle.paths import StatePaths
from lifecycle.serving.app import Gateway, create_app
from lifecycle.serving.live import (
    EVIDENCE_FIELDS,
    INTEGER_FIELDS,
    LABELS_BYTES,
    MIRROR_BYTES,
    PairedLive,
    PredictionIndex,
    entry_bytes,
)
from lifecycle.serving.predlog import read_log
from lifecycle.serving.traffic import ShadowHeldError, TrafficStore
from tests.conftest import ADMIN, ROW, TOKEN
from tests.hostile_corpus import FEEDBACK, FEEDBACK_TOKEN, FEEDER, MODEL, PREDICT, TRAFFIC

SHADOW = f"/admin/models/{MODEL}/shadow"
EVIDENCE = f"/admin/models/{MODEL}/evidence"
NAN_AGE = 77  # the challenger scores a row of this age NaN (an invalid score)


def champion_p(row) -> float:
    return row["age"] / 100


def challenger_p(row) -> float:
    return math.nan if row["age"] == NAN_AGE else 1 - row["age"] / 100


class Scorer:
    """A stand-in model: ``f(row)`` per row; ``fail``: every call after the warm-up raises."""

    threshold = 0.5

    def __init__(self, f, fail: bool = False) -> None:
        self.f, self.fail, self.calls = f, fail, 0

    def proba(self, rows):
        self.calls += 1
        if self.fail and self.calls > 1:
            raise RuntimeError("the challenger broke")
        return np.array([self.f(r) for r in rows], dtype=np.float64)


def gateway_for(root: Path, spec, weights=None, scorers=None) -> Gateway:
    """v1 (the champion), v2 (another version) and v3 (the challenger) loaded; weights default to v1 100%."""
    scorers = scorers or {"1": Scorer(champion_p), "2": Scorer(champion_p), "3": Scorer(challenger_p)}
    gateway = Gateway([spec], StatePaths(root), token=TOKEN, loader=lambda s, v: scorers[v],
                      feedback_token=FEEDBACK_TOKEN)

    async def arrange():
        for version in scorers:
            await gateway.load(MODEL, version)
        await gateway.set_weights(MODEL, weights or {"1": 100}, "test: arrange")

    asyncio.run(arrange())
    return gateway


@pytest.fixture
def served(spec, tmp_path):
    """(gateway, client) factory; closes the gateways' log writers after the test."""
    made: list[Gateway] = []

    def make(weights=None, scorers=None, root: Path | None = None):
        gw = gateway_for(root or tmp_path / f"state{len(made)}", spec, weights, scorers)
        made.append(gw)
        return gw, TestClient(create_app(gw))  # no `with`: no lifespan, no registry sync

    yield make
    for gw in made:
        gw.logs.close()


def put_shadow(client, champion="1", challenger="3", **extra):
    return client.put(SHADOW, json={"champion": champion, "challenger": challenger, **extra}, headers=ADMIN)


def row(age: int) -> dict:
    return {**ROW, "age": age}


def label(client, rid: str, labels: list[int]) -> dict:
    resp = client.post(FEEDBACK, json={"request_id": rid, "labels": labels}, headers=FEEDER)
    assert resp.status_code == 202, resp.text
    return resp.json()


def evidence(client, challenger="3", since=0) -> dict:
    resp = client.get(f"{EVIDENCE}?challenger={challenger}&since={since}", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return resp.json()


# ------------------------------------------------------------------------------------- 1. the admin API
@pytest.mark.parametrize(("body", "status", "fragment"), [
    pytest.param([1, 3], 400, "body must be", id="not-an-object"),
    pytest.param({"champion": "1"}, 400, "challenger missing", id="challenger-missing"),
    pytest.param({"champion": "1", "challenger": "3", "force": True}, 400, "unknown field(s) ['force']",
                 id="unknown-field"),
    pytest.param({"champion": "1", "challenger": "1"}, 422, "two different versions", id="same-version"),
    pytest.param({"champion": "1", "challenger": "03"}, 422, "plain ASCII digits", id="leading-zero"),
    pytest.param({"champion": 1, "challenger": "3"}, 422, "champion must be a version id", id="integer-id"),
    pytest.param({"champion": "1", "challenger": "٣"}, 422, "plain ASCII digits", id="arabic-indic-digit"),
    pytest.param({"champion": "1", "challenger": "9"}, 422, "not loaded", id="not-loaded"),
    pytest.param({"champion": "1", "challenger": "3", "sample": 0}, 422, "sample must be", id="sample-0"),
    pytest.param({"champion": "1", "challenger": "3", "sample": 1.5}, 422, "sample must be", id="sample-1.5"),
    pytest.param({"champion": "1", "challenger": "3", "sample": -0.5}, 422, "sample must be", id="sample-negative"),
    pytest.param({"champion": "1", "challenger": "3", "sample": "1"}, 422, "sample must be", id="sample-string"),
    pytest.param({"champion": "1", "challenger": "3", "sample": True}, 422, "sample must be", id="sample-bool"),
    pytest.param({"champion": "1", "challenger": "3", "sample": 10**30}, 422, "sample must be", id="sample-huge"),
    pytest.param({"champion": "1", "challenger": "3", "expected_revision": "7"}, 400, "expected_revision",
                 id="revision-string"),
    pytest.param({"champion": "1", "challenger": "3", "expected_revision": 0}, 409, "changed since revision 0",
                 id="revision-stale"),
])
def test_a_bad_shadow_configuration_is_refused_and_changes_nothing(served, body, status, fragment):
    # Arrange
    gw, client = served()
    revision = client.get(SHADOW, headers=ADMIN).json()["revision"]

    # Act
    resp = client.put(SHADOW, json=body, headers=ADMIN)

    # Assert
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["error"]
    assert client.get(SHADOW, headers=ADMIN).json() == {"model": MODEL, "shadow": None, "revision": revision}
    assert TrafficStore(gw.paths.ledger_db).shadow(MODEL) is None and gw.models[MODEL].shadow is None


def test_the_shadow_pair_is_persisted_raises_the_revision_and_a_restarted_gateway_picks_it_up(served, spec, tmp_path):
    # Arrange
    gw, client = served(root=tmp_path / "state")
    before = client.get(SHADOW, headers=ADMIN).json()
    assert before["shadow"] is None

    # Act
    resp = put_shadow(client, sample=0.5, expected_revision=before["revision"])
    again = put_shadow(client, sample=0.5)  # the same pair again: nothing changes

    # Assert: answered, stored, revision raised once
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["revision"] == before["revision"] + 1 and again.json()["revision"] == body["revision"]
    assert {k: body["shadow"][k] for k in ("champion", "challenger", "sample")} == \
        {"champion": "1", "challenger": "3", "sample": 0.5}
    assert body["shadow"]["latency_limit_ms"] == spec.canary.slo.max_p99_ms
    assert client.get(TRAFFIC, headers=ADMIN).json()["revision"] == body["revision"]
    stored = TrafficStore(gw.paths.ledger_db).shadow(MODEL)
    assert stored is not None and stored[:3] == ("1", "3", 0.5)

    # Act: a second gateway on the same state (a restart, or another worker) syncs from the store
    scorers = {"1": Scorer(champion_p), "2": Scorer(champion_p), "3": Scorer(challenger_p)}
    other = Gateway([spec], StatePaths(tmp_path / "state"), token=TOKEN, loader=lambda s, v: scorers[v],
                    feedback_token=FEEDBACK_TOKEN)
    try:
        asyncio.run(other._sync_model(MODEL))
        picked = other.models[MODEL].shadow

        # Act: cleared here; the other one follows at its next sync
        cleared = client.delete(SHADOW, headers=ADMIN)
        asyncio.run(other._sync_model(MODEL))
        gone = other.models[MODEL].shadow
    finally:
        other.logs.close()

    # Assert
    assert picked is not None and picked.key == ("1", "3", 0.5)
    assert cleared.status_code == 200 and cleared.json() == {"model": MODEL, "shadow": None,
                                                             "revision": body["revision"] + 1}
    assert gone is None and TrafficStore(gw.paths.ledger_db).shadow(MODEL) is None
    assert client.delete(SHADOW, headers=ADMIN).json()["revision"] == body["revision"] + 1  # idempotent


def test_a_worker_that_cannot_load_a_version_of_the_pair_serves_without_mirroring_and_says_so(served, spec,
                                                                                               tmp_path):
    # Arrange: the pair set through one gateway; another on the same state cannot load the challenger
    _, client = served(root=tmp_path / "state")
    assert put_shadow(client).status_code == 200

    def loader(spec_, version):
        if version == "3":
            raise FileNotFoundError("artifact of v3 is missing")
        return Scorer(champion_p)

    other = Gateway([spec], StatePaths(tmp_path / "state"), token=TOKEN, loader=loader,
                    feedback_token=FEEDBACK_TOKEN)
    try:
        # Act
        asyncio.run(other._sync_model(MODEL))
        answered = other.predict(MODEL, orjson.dumps(ROW), None)
        degraded = other.degraded()
    finally:
        other.logs.close()

    # Assert
    assert answered["version"] == "1" and other.models[MODEL].shadow is None
    assert any("shadow pair v1/v3 set but not loaded here: not mirroring" in d for d in degraded)


def test_a_version_in_the_shadow_pair_cannot_be_unloaded(served):
    # Arrange
    gw, client = served()
    assert put_shadow(client).status_code == 200
    client.post(PREDICT, json=ROW)

    # Act
    refused = client.delete(f"/admin/models/{MODEL}/versions/3", headers=ADMIN)
    with pytest.raises(ShadowHeldError):  # the store refuses it too (another worker's unload)
        TrafficStore(gw.paths.ledger_db).mark_loaded(MODEL, "3", False)
    other = client.delete(f"/admin/models/{MODEL}/versions/2", headers=ADMIN)  # not in the pair
    client.delete(SHADOW, headers=ADMIN)
    kept = evidence(client)  # the pair's evidence outlives the pair ...
    allowed = client.delete(f"/admin/models/{MODEL}/versions/3", headers=ADMIN)
    after = client.get(f"{EVIDENCE}?challenger=3", headers=ADMIN)  # ... until one of its versions is unloaded

    # Assert
    assert refused.status_code == 409 and "shadow pair" in refused.json()["error"]
    assert other.status_code == 200 and allowed.status_code == 200
    assert kept["active"] is False and kept["evidence"]["requests"] == 1
    assert after.status_code == 404 and "no paired evidence" in after.json()["error"]
    assert gw.models[MODEL].evidence == {}


# ------------------------------------------------------------------------------------------ 2. mirroring
def test_the_answer_is_the_champions_and_the_same_with_shadow_on_and_off(served):
    # Arrange
    _, client = served()
    batch = [row(a) for a in (20, 41, NAN_AGE, 90)]

    def answers():
        out = []
        for body in (ROW, batch):
            resp = client.post(PREDICT, json=body)
            assert resp.status_code == 200, resp.text
            out.append({k: v for k, v in resp.json().items() if k != "request_id"})
        return out

    # Act
    off = answers()
    assert put_shadow(client).status_code == 200
    on = answers()

    # Assert
    assert on == off
    assert [p["probability"] for p in on[1]["predictions"]] == [0.2, 0.41, 0.77, 0.9]
    assert {a["version"] for a in on} == {"1"}


def test_the_mirrored_prediction_is_logged_with_the_same_request_id(served):
    # Arrange
    gw, client = served()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert put_shadow(client).status_code == 200

    # Act
    rid = client.post(PREDICT, json=[row(30), row(60)]).json()["request_id"]
    gw.logs.flush()
    logged = [r for r in read_log(gw.paths.root / "serving", "predictions", MODEL, start,
                                  dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) if r["request_id"] == rid]

    # Assert: the answered record as before (no shadow field), the mirrored one flagged, same rows
    by_version = {r["version"]: r for r in logged}
    assert sorted(by_version) == ["1", "3"] and len(logged) == 2
    assert "shadow" not in by_version["1"]
    assert by_version["3"]["shadow"] is True and by_version["3"]["served_by"] == "1"
    assert by_version["3"]["probability"] == pytest.approx([0.7, 0.4])
    assert by_version["3"]["label"] == [1, 0] and by_version["3"]["rows"] == by_version["1"]["rows"]


def test_requests_answered_by_a_version_outside_the_pair_are_not_mirrored(served):
    gw, client = served(weights={"2": 100})
    assert put_shadow(client).status_code == 200
    for _ in range(5):
        assert client.post(PREDICT, json=ROW).json()["version"] == "2"
    ev = evidence(client)["evidence"]
    assert ev["requests"] == ev["served_c"] == ev["served_x"] == 0
    assert gw.models[MODEL].stats["3"].summary(0)["requests"] == 0


def test_a_challenger_that_raises_never_fails_a_request_and_counts_as_its_error(served):
    # Arrange: v3 fails every scoring after its warm-up
    scorers = {"1": Scorer(champion_p), "3": Scorer(challenger_p, fail=True)}
    gw, client = served(scorers=scorers)
    assert put_shadow(client).status_code == 200

    # Act
    statuses = [client.post(PREDICT, json=ROW).status_code for _ in range(20)]

    # Assert: every user answered; each a paired request the challenger failed
    assert statuses == [200] * 20
    ev = evidence(client)["evidence"]
    assert (ev["requests"], ev["sum_derr"], ev["sum_derr2"], ev["pairs"], ev["served_c"]) == (20, 20, 20, 0, 20)
    assert gw.models[MODEL].shadow_errors == 20
    metrics = client.get("/metrics").text
    assert 'gateway_shadow_scored_total{model="credit_default",status="error",version="3"} 20.0' in metrics
    assert client.get("/readyz").status_code == 200


def test_a_challenger_answer_that_fails_is_still_paired_with_the_champion(served):
    # Arrange: the challenger answers everything (the end of a ramp) and fails; the champion mirrors
    scorers = {"1": Scorer(champion_p), "3": Scorer(challenger_p, fail=True)}
    _, client = served(weights={"3": 100}, scorers=scorers)
    assert put_shadow(client).status_code == 200

    # Act
    statuses = [client.post(PREDICT, json=ROW).status_code for _ in range(5)]

    # Assert: the user got the challenger's error; the pair saw the champion succeed where it failed
    assert statuses == [500] * 5
    ev = evidence(client)["evidence"]
    assert (ev["requests"], ev["sum_derr"], ev["served_x"], ev["served_c"]) == (5, 5, 5, 0)


def test_the_response_is_sent_before_the_mirrored_scoring_starts(served):
    # Arrange: the challenger notes how much of the response had gone out when it was asked to score
    gw, _ = served()
    sent: list[dict] = []
    seen: list[list[str]] = []

    class Watching(Scorer):
        def proba(self, rows):
            seen.append([m["type"] for m in sent])
            return super().proba(rows)

    asyncio.run(gw.set_shadow(MODEL, "1", "3"))
    gw.models[MODEL].versions["3"].scorer = Watching(challenger_p)
    body = orjson.dumps(ROW)
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PREDICT, "raw_path": PREDICT.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}

    # Act
    asyncio.run(create_app(gw)(scope, receive, send))

    # Assert: by then the whole response had been sent
    assert seen == [["http.response.start", "http.response.body"]]
    assert orjson.loads(sent[1]["body"])["version"] == "1"


def test_the_sample_decides_by_request_id(served):
    _, client = served()
    assert put_shadow(client, sample=0.5).status_code == 200
    rids = [client.post(PREDICT, json=ROW).json()["request_id"] for _ in range(200)]
    want = sum(int(r[:8], 16) < 2**31 for r in rids)
    ev = evidence(client)["evidence"]
    assert ev["requests"] == want and 60 < want < 140
    assert ev["served_c"] == 200  # exposure counts every answered request, sampled or not


# ------------------------------------------------------------------------------------ 3. paired evidence
def direct_evidence(requests, first_labels, limit_slow: bool) -> dict:
    """The PairedEvidence fields computed directly from (version answered, rows) per request and the first labels."""
    out = dict.fromkeys(EVIDENCE_FIELDS, 0.0)
    for rid, (version, rows) in requests.items():
        out["served_x" if version == "3" else "served_c"] += 1
        out["slow_x"] += version == "3" and limit_slow
        out["requests"] += 1
        ys = first_labels.get(rid)
        for i, r in enumerate(rows):
            pc, px = champion_p(r), challenger_p(r)
            if math.isnan(px):
                out["invalid"] += 1
                continue
            out["pairs"] += 1
            out["sum_pc"] += pc
            out["sum_px"] += px
            out["sum_pc2"] += pc * pc
            out["sum_px2"] += px * px
            out["sum_pcpx"] += pc * px
            out["pos_c"] += pc >= 0.5
            out["pos_x"] += px >= 0.5
            if ys is not None:
                y = ys[i]
                dacc = int((pc >= 0.5) == y) - int((px >= 0.5) == y)
                dbrier = (px - y) ** 2 - (pc - y) ** 2
                out["labels"] += 1
                out["sum_dacc"] += dacc
                out["sum_dacc2"] += dacc * dacc
                out["sum_dbrier"] += dbrier
                out["sum_dbrier2"] += dbrier * dbrier
    return out


def test_the_evidence_equals_a_direct_computation_on_known_rows_and_labels(served):
    # Arrange: a ramp at 50/50 (mirrored both ways); batches with a row the challenger scores NaN
    gw, client = served(weights={"1": 50, "3": 50})
    since = time.time()
    assert put_shadow(client).status_code == 200
    gw.models[MODEL].shadow.limit_ms = -1.0  # every challenger answer counts as slow
    rng = np.random.default_rng(7)
    requests: dict[str, tuple[str, list[dict]]] = {}
    for i in range(60):
        rows = [row(int(a)) for a in rng.integers(18, 100, size=1 + i % 4)]
        if i % 10 == 0:
            rows.append(row(NAN_AGE))
        body = client.post(PREDICT, json=rows if len(rows) > 1 else rows[0]).json()
        requests[body["request_id"]] = (body["version"], rows)

    # Act: label two thirds of the requests; some twice, with another label (ignored)
    first: dict[str, list[int]] = {}
    duplicates = 0
    for k, (rid, (_, rows)) in enumerate(requests.items()):
        if k % 3 == 2:
            continue
        first[rid] = [int(v) for v in rng.integers(0, 2, size=len(rows))]
        label(client, rid, first[rid])
        if k % 5 == 0:
            assert label(client, rid, [1 - y for y in first[rid]])["duplicates"] == 1
            duplicates += 1
    got = evidence(client, since=since)

    # Assert
    assert {k: v for k, v in got.items() if k != "evidence"} == {
        "model": MODEL, "since": since, "from": got["from"], "active": True}
    assert got["from"] <= since
    ev = got["evidence"]
    assert (ev["champion"], ev["challenger"]) == ("1", "3")
    want = direct_evidence(requests, first, limit_slow=True)
    assert {"1", "3"} == {v for v, _ in requests.values()}  # both directions exercised
    assert ev["invalid"] >= 6 and ev["labels"] > 0 and duplicates > 0
    for name in EVIDENCE_FIELDS:
        if name in INTEGER_FIELDS:
            assert ev[name] == want[name] and isinstance(ev[name], int), name
        else:
            assert ev[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name
    assert gw.evidence(MODEL, "3", since)["evidence"] == ev  # in process, the same sums
    paired = pytest.importorskip("lifecycle.serving.evidence").PairedEvidence.from_dict(ev)
    assert paired.to_dict() == pytest.approx(ev)  # the deploy judge reads it as is


def test_a_label_that_comes_before_the_mirrored_scoring_still_judges_both(served):
    # Arrange: the answer built, its mirrored scoring not run yet
    gw, _ = served()
    asyncio.run(gw.set_shadow(MODEL, "1", "3"))
    answer, job = gw.predict_deferred(MODEL, orjson.dumps([row(30), row(80)]), None)

    # Act
    gw.feedback(MODEL, orjson.dumps({"request_id": answer["request_id"], "labels": [1, 1]}))
    gw.mirror(job)

    # Assert: (0.3, 0.7) and (0.8, 0.2), both labelled 1
    ev = gw.evidence(MODEL, "3", 0)["evidence"]
    assert (ev["pairs"], ev["labels"], ev["sum_dacc"]) == (2, 2, 0)
    assert ev["sum_dbrier"] == pytest.approx((0.3**2 - 0.7**2) + (0.8**2 - 0.2**2))


def test_the_latency_limit_of_the_moment_follows_the_champions_p99(served, spec):
    gw, client = served()
    assert put_shadow(client).status_code == 200
    stats, now = gw.models[MODEL].stats["1"], time.time()
    for i in range(1000):
        stats.request(now - 30 + i * 0.01, 100.0 if i % 10 == 0 else 1.0)  # p99: 100 ms
    stats.request(now - 120, 10_000.0)  # older than the window: not counted
    limit = asyncio.run(gw.refresh_shadow_limit(MODEL))
    slo = spec.canary.slo
    assert limit == max(slo.max_p99_ms, 100.0 * slo.max_p99_ratio)
    assert client.get(SHADOW, headers=ADMIN).json()["shadow"]["latency_limit_ms"] == limit


def test_a_new_pair_starts_its_evidence_afresh_and_a_new_sample_keeps_it(served):
    # Arrange
    gw, client = served()
    assert put_shadow(client).status_code == 200
    for _ in range(3):
        client.post(PREDICT, json=ROW)

    # Act / Assert: the sample changes, the evidence carries on
    assert put_shadow(client, sample=0.9).status_code == 200
    assert evidence(client)["evidence"]["served_c"] == 3

    # Act / Assert: the pair is cleared (its evidence readable), then set again: a new deploy starts from zero
    assert client.delete(SHADOW, headers=ADMIN).status_code == 200
    assert evidence(client)["evidence"]["served_c"] == 3 and evidence(client)["active"] is False
    assert put_shadow(client).status_code == 200
    assert evidence(client)["evidence"]["served_c"] == 0 and evidence(client)["active"] is True
    assert list(gw.models[MODEL].evidence) == [("1", "3")]


def test_a_label_for_a_request_of_an_earlier_deploy_stays_out_of_the_new_evidence(served):
    # Arrange: a request mirrored under the pair, then the pair set anew (a new deploy)
    _, client = served()
    assert put_shadow(client).status_code == 200
    rid = client.post(PREDICT, json=ROW).json()["request_id"]
    assert client.delete(SHADOW, headers=ADMIN).status_code == 200
    assert put_shadow(client).status_code == 200

    # Act
    answered = label(client, rid, [1])

    # Assert: the label counts (live stats) but not in evidence that never saw its pair
    assert answered["matched"] == 1
    ev = evidence(client)["evidence"]
    assert (ev["pairs"], ev["labels"]) == (0, 0)


def test_with_no_shadow_pair_predict_schedules_nothing(served):
    gw, _ = served()
    answer, job = gw.predict_deferred(MODEL, orjson.dumps(ROW), None)
    assert job is None and answer["version"] == "1"
    assert gw.models[MODEL].shadow is None and gw.models[MODEL].evidence == {}


def test_evidence_refusals(served):
    _, client = served()
    assert client.get(f"{EVIDENCE}?since=0", headers=ADMIN).status_code == 400
    assert client.get(f"{EVIDENCE}?challenger=03", headers=ADMIN).status_code == 400
    assert client.get(f"{EVIDENCE}?challenger=3&since=nan", headers=ADMIN).status_code == 400
    missing = client.get(f"{EVIDENCE}?challenger=3", headers=ADMIN)
    assert missing.status_code == 404 and "no paired evidence" in missing.json()["error"]
    assert client.get(f"{EVIDENCE}?challenger=3").status_code == 401


def test_the_evidence_fields_are_the_paired_evidence_dataclass_fields():
    evidence_module = pytest.importorskip("lifecycle.serving.evidence")
    from dataclasses import fields

    names = [f.name for f in fields(evidence_module.PairedEvidence)]
    assert set(names) == {"champion", "challenger", *EVIDENCE_FIELDS}


def test_paired_live_keeps_bounded_buckets_and_sums_since():
    ev = PairedLive("1", "3", retention=100.0)
    for i in range(1000):
        ev.served(1_800_000_000.0 + i, by_challenger=i % 2 == 1)
    assert len(ev.buckets) <= ev.max_buckets == 11
    total = ev.summary(0)
    assert total["served_c"] + total["served_x"] <= 110
    assert ev.summary(1_800_000_000.0 + 995)["served_c"] + ev.summary(1_800_000_000.0 + 995)["served_x"] == 10


# --------------------------------------------------------------------------------- 4. each label counts once
def test_a_second_label_for_a_request_is_a_counted_duplicate_and_changes_nothing(served):
    # Arrange
    gw, client = served()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rid = client.post(PREDICT, json=ROW).json()["request_id"]

    # Act
    first = label(client, rid, [1])
    again = label(client, rid, [0])
    batch = client.post(FEEDBACK, json=[{"request_id": rid, "label": 1}] * 3, headers=FEEDER).json()
    gw.logs.flush()

    # Assert: live stats hold the first label only; the rest answered and counted as duplicates
    assert first == {"accepted": 1, "matched": 1, "duplicates": 0}
    assert again == {"accepted": 1, "matched": 0, "duplicates": 1}
    assert batch == {"accepted": 3, "matched": 0, "duplicates": 3}
    summary = gw.models[MODEL].stats["1"].summary(0)
    assert summary["feedback"] == 1 and summary["correct"] == 0  # p = 0.41 -> 0, labelled 1 first
    assert 'gateway_feedback_duplicates_total{model="credit_default"} 4.0' in client.get("/metrics").text
    logged = read_log(gw.paths.root / "serving", "feedback", MODEL, start,
                      dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    assert [r.get("duplicate", False) for r in logged if r["request_id"] == rid] == [False, True, True, True, True]


def test_a_label_counts_for_the_versions_that_scored_the_request_only(served):
    # Arrange: v2 answers (outside the pair), then v1 answers (mirrored to v3)
    gw, client = served(weights={"2": 100})
    assert put_shadow(client).status_code == 200
    outside = client.post(PREDICT, json=ROW).json()["request_id"]
    asyncio.run(gw.set_weights(MODEL, {"1": 100}, "test"))
    inside = client.post(PREDICT, json=ROW).json()["request_id"]

    # Act
    label(client, outside, [1])
    label(client, inside, [1])

    # Assert: v2's label in v2's stats only; v1's in v1's stats and the pair's evidence; v3's own stats untouched
    stats = gw.models[MODEL].stats
    assert [stats[v].summary(0)["feedback"] for v in ("1", "2", "3")] == [1, 1, 0]
    assert evidence(client)["evidence"]["labels"] == 1


# ------------------------------------------------------------------------------------ 5. the index's bytes
def test_the_index_counts_the_bytes_of_labels_and_mirrored_probabilities(served):
    gw, client = served(weights={"1": 50, "3": 50})
    assert put_shadow(client).status_code == 200
    rids = [client.post(PREDICT, json=[ROW] * (1 + i % 3)).json()["request_id"] for i in range(30)]
    for rid in rids[::2]:
        n = len(gw.models[MODEL].index.get(rid, time.time())[1]) // 8
        label(client, rid, [1] * n)
    index = gw.models[MODEL].index
    entries = [e for shelf in index._shelves.values() for e in shelf.entries.values()]
    assert index.bytes == sum(entry_bytes(e) for e in entries)
    assert all(len(e) == 4 and e[3] is not None for e in entries)  # every one mirrored


def test_the_estimates_of_labels_and_mirrored_probabilities_cover_their_measured_memory():
    for rows in (1, 100):
        index = PredictionIndex(10**12, 3600)
        rids = [uuid.uuid4().hex for _ in range(20_000)]
        tracemalloc.start()  # before the entries are made: the old entries freed when they grow are counted
        for rid in rids:
            index.add("1", rid, np.full(rows, 0.25).tobytes(), time.time())
        base, (before, _) = index.bytes, tracemalloc.get_traced_memory()
        for rid in rids:
            index.add_mirror("1", rid, "3", np.full(rows, 0.75).tobytes(), 12345)
            index.mark_labelled("1", rid, bytes(rows))
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        measured, estimate = after - before, index.bytes - base
        assert estimate == 20_000 * (MIRROR_BYTES + LABELS_BYTES + 9 * rows)
        assert 0.6 * estimate <= measured <= estimate, (rows, measured / 20_000, estimate / 20_000)


def test_one_row_updates_give_the_sums_of_the_array_path():
    """Requests of one row (the plain-float fast path) and the same rows in one batch (the NumPy path) give the
    same evidence: counts exactly, sums to rounding; invalid probabilities (NaN, infinite, outside [0, 1]) are
    counted and left out either way."""
    from lifecycle.serving.live import EVIDENCE_FIELDS, INTEGER_FIELDS, PairedLive

    rng = np.random.default_rng(3)
    p_c, p_x = rng.random(400), rng.random(400)
    p_x[:12] = [np.nan, np.inf, -np.inf, -0.1, 1.5, np.nan, 0.0, 1.0, 0.5, 2.0, -3.0, np.nan]
    p_c[20:26] = [np.nan, 1.2, -0.5, 0.0, 1.0, 0.5]
    y = rng.integers(0, 2, 400).astype(np.int8)
    rows, batch = PairedLive("1", "2"), PairedLive("1", "2")
    for i in range(400):
        rows.mirrored(100.0, False, False, p_c[i:i + 1], p_x[i:i + 1])
        rows.labelled(100.0, p_c[i:i + 1], p_x[i:i + 1], y[i:i + 1])
    batch.mirrored(100.0, False, False, p_c, p_x)
    batch.labelled(100.0, p_c, p_x, y)
    one, whole = rows.summary(0.0), batch.summary(0.0)
    # 9 of the challenger's and 3 of the champion's probabilities are invalid (0.0, 1.0 and 0.5 are valid)
    assert one["pairs"] == whole["pairs"] == 400 - 9 - 3 and one["invalid"] == whole["invalid"] == 9
    assert (one["requests"], whole["requests"]) == (400, 1)  # paired requests: 400 of one row, 1 of 400
    for name in EVIDENCE_FIELDS:
        if name == "requests":
            continue
        if name in INTEGER_FIELDS:
            assert one[name] == whole[name], name
        else:
            assert one[name] == pytest.approx(whole[name], rel=1e-12, abs=1e-12), name
