"""The serving gateway over real HTTP (uvicorn on a loopback port), serving versions from a real registry."""
from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lifecycle.registry.store import CHAMPION, Registry
from lifecycle.serving.app import Gateway
from lifecycle.training import flow as tf
from tests.conftest import ADMIN, DAYS, ROW, TOKEN, Server, gate_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]
@pytest.fixture(scope="module")
def registry_with_two_versions(tmp_path_factory, spec):
    """v1 (champion) and v2, trained briefly on four validated days."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(tmp_path_factory.mktemp("gateway") / "state"))
        from lifecycle.paths import StatePaths

        paths = StatePaths.current()
        gate_days(spec, paths)
        registry = Registry(paths)
        for seed, run in ((1, "r1"), (2, "r2")):
            trained = tf.train_candidate(spec, DAYS[3], run, epochs=2, overrides={"seed": seed}, paths=paths)
            registry.register(spec.model_name, trained["model_uri"], trained["run_id"],
                              {"lifecycle.dag_run_id": run}, model_id=trained["model_id"])
        registry.set_alias(spec.model_name, CHAMPION, "1")
        yield paths, mp


@pytest.fixture(scope="module")
def gateway(registry_with_two_versions, spec):
    paths, _ = registry_with_two_versions
    gw = Gateway([spec], paths, token=TOKEN, sync_seconds=0.2)
    with Server(gw) as server:
        server.gateway = gw
        yield server


@pytest.fixture
def client(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c


def set_weights(client, weights):
    return client.put("/admin/models/credit_default/traffic", json={"weights": weights, "reason": "test"},
                      headers=ADMIN)


def test_champion_serves_one_row_and_a_batch(client):
    set_weights(client, {"1": 100})
    one = client.post("/v1/models/credit_default/predict", json=ROW)
    assert one.status_code == 200
    body = one.json()
    assert body["version"] == "1" and len(body["request_id"]) == 32
    assert 0 <= body["predictions"][0]["probability"] <= 1 and body["predictions"][0]["label"] in (0, 1)
    batch = client.post("/v1/models/credit_default/predict", json=[ROW] * 100)
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 100


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        pytest.param(b'{"age": 41,', 400, "malformed JSON", id="malformed-json"),
        pytest.param({k: v for k, v in ROW.items() if k != "income"}, 422, "missing feature(s) ['income']",
                     id="missing-feature"),
        pytest.param({**ROW, "zodiac": "leo"}, 422, "unknown field(s) ['zodiac']", id="extra-feature"),
        pytest.param({**ROW, "age": "forty"}, 422, "age must be a number, got str 'forty'", id="wrong-type"),
        pytest.param({**ROW, "region": 3}, 422, "region must be a string", id="wrong-type-categorical"),
        pytest.param({**ROW, "age": True}, 422, "age must be a number, got bool", id="bool-is-not-a-number"),
        pytest.param(b'{"age": NaN}', 400, "NaN and Infinity are not valid", id="nan"),
        pytest.param({**ROW, "age": None}, 422, "age must not be null", id="null-not-allowed"),
        pytest.param([ROW] * 1001, 413, "exceeds the limit of 1000", id="oversized-batch"),
        pytest.param([], 400, "empty batch", id="empty-batch"),
        pytest.param("hello", 400, "body must be a JSON object", id="not-an-object"),
        pytest.param([ROW, [1, 2]], 422, "row 1: must be an object", id="row-not-an-object"),
    ],
)
def test_bad_requests_get_a_precise_4xx_and_the_server_lives_on(client, body, status, fragment):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    resp = client.post("/v1/models/credit_default/predict", **kwargs)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_nullable_feature_accepts_null(client):
    assert client.post("/v1/models/credit_default/predict", json={**ROW, "income": None}).status_code == 200


def test_unknown_model_is_404_naming_the_served_ones_only_to_the_admin(client):
    anonymous = client.post("/v1/models/nope/predict", json=ROW)
    assert anonymous.status_code == 404 and "served" not in anonymous.json()["error"]
    admin = client.post("/v1/models/nope/predict", json=ROW, headers=ADMIN)
    assert admin.status_code == 404 and "served: ['credit_default']" in admin.json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
                         ids=["none", "wrong", "no-scheme"])
def test_admin_api_needs_the_token(client, headers):
    resp = client.put("/admin/models/credit_default/traffic", json={"weights": {"1": 100}}, headers=headers)
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        pytest.param({"1": 60, "2": 30}, "must sum to 100", id="sum"),
        pytest.param({"1": 50, "9": 50}, "['9'] not loaded", id="unknown-version"),
        pytest.param({"1": 101}, "must be between 0 and 100", id="range"),
        pytest.param({"1": 50.5, "2": 49.5}, "must be an integer", id="float"),
    ],
)
def test_bad_weights_are_refused_and_change_nothing(client, weights, fragment):
    assert client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN).status_code == 200
    set_weights(client, {"1": 100})
    resp = set_weights(client, weights)
    assert resp.status_code == 422 and fragment in resp.json()["error"]
    assert client.get("/admin/models/credit_default/traffic", headers=ADMIN).json()["weights"] == {"1": 100, "2": 0}


def test_loading_an_unregistered_version_is_404(client):
    resp = client.post("/admin/models/credit_default/versions/42/load", headers=ADMIN)
    assert resp.status_code == 404 and "not in the registry" in resp.json()["error"]


def test_routing_follows_weights_within_statistical_tolerance(client):
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    assert set_weights(client, {"1": 70, "2": 30}).status_code == 200
    n = 1500
    served = [client.post("/v1/models/credit_default/predict", json=ROW).json()["version"] for _ in range(n)]
    share = served.count("2") / n
    sigma = (0.3 * 0.7 / n) ** 0.5
    assert abs(share - 0.3) < 4 * sigma, share


def test_sticky_key_keeps_a_customer_on_one_version(client):
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    set_weights(client, {"1": 50, "2": 50})
    by_key = {}
    for key in (f"C{i:07d}" for i in range(40)):
        seen = {client.post("/v1/models/credit_default/predict", json=ROW,
                            headers={"X-Routing-Key": key}).json()["version"] for _ in range(5)}
        assert len(seen) == 1, key
        by_key[key] = seen.pop()
    assert set(by_key.values()) == {"1", "2"}


def test_hot_swap_under_load_drops_no_request(gateway, client):
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    set_weights(client, {"1": 100})
    stop = threading.Event()
    statuses: list[int] = []

    def hammer():
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            while not stop.is_set():
                statuses.append(c.post("/v1/models/credit_default/predict", json=ROW).status_code)

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(hammer)
        for weights in ({"1": 50, "2": 50}, {"2": 100}, {"1": 100}):
            time.sleep(0.3)
            assert set_weights(client, weights).status_code == 200
        assert client.delete("/admin/models/credit_default/versions/2", headers=ADMIN).status_code == 200
        time.sleep(0.3)
        assert client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN).status_code == 200
        time.sleep(0.3)
        stop.set()
    assert len(statuses) > 50 and set(statuses) == {200}


def test_unloading_a_version_with_traffic_is_refused(client):
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    set_weights(client, {"1": 50, "2": 50})
    resp = client.delete("/admin/models/credit_default/versions/2", headers=ADMIN)
    assert resp.status_code == 409 and "still has weight 50" in resp.json()["error"]


def test_feedback_joins_by_request_id_and_feeds_live_stats(gateway, client):
    set_weights(client, {"1": 100})
    feeder = {"Authorization": f"Bearer {gateway.gateway.feedback_token}"}
    since = time.time()
    rid = client.post("/v1/models/credit_default/predict", json=ROW).json()["request_id"]
    anonymous = client.post("/v1/models/credit_default/feedback", json={"request_id": rid, "label": 1})
    assert anonymous.status_code == 401
    resp = client.post("/v1/models/credit_default/feedback", json={"request_id": rid, "label": 1}, headers=feeder)
    assert resp.status_code == 202 and resp.json() == {"accepted": 1, "matched": 1, "duplicates": 0}
    stats = client.get(f"/admin/models/credit_default/stats?since={since}", headers=ADMIN).json()
    assert stats["versions"]["1"]["requests"] >= 1 and stats["versions"]["1"]["feedback"] == 1
    bad = client.post("/v1/models/credit_default/feedback", json={"request_id": rid, "label": 7}, headers=feeder)
    assert bad.status_code == 422 and "label must be 0 or 1" in bad.json()["error"]


def test_shadow_mirrors_under_load_with_no_failed_request(gateway, client, registry_with_two_versions):
    """Shadow, then a 50/50 ramp, under four hammering clients: every answer a 200 from the version routed to,
    every request scored by both versions (after its response), both predictions logged under its request id."""
    from lifecycle.serving.predlog import read_log

    paths, _ = registry_with_two_versions
    shadow, evidence = "/admin/models/credit_default/shadow", "/admin/models/credit_default/evidence"
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    set_weights(client, {"1": 100})
    start, since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1), time.time()
    stop = threading.Event()
    answers: list[tuple[int, str | None, str | None]] = []

    def hammer():
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/models/credit_default/predict", json=ROW)
                body = r.json() if r.status_code == 200 else {}
                answers.append((r.status_code, body.get("version"), body.get("request_id")))

    try:
        set_shadow = client.put(shadow, json={"champion": "1", "challenger": "2"}, headers=ADMIN)
        assert set_shadow.status_code == 200, set_shadow.text
        with ThreadPoolExecutor(4) as pool:
            try:
                for _ in range(4):
                    pool.submit(hammer)
                time.sleep(0.8)  # shadow: the champion answers, the challenger is mirrored
                assert set_weights(client, {"1": 50, "2": 50}).status_code == 200  # the ramp: mirrored both ways
                time.sleep(0.8)
            finally:
                stop.set()
        n = len(answers)
        deadline, ev = time.monotonic() + 10, {}
        while time.monotonic() < deadline:  # the last mirrored scorings run just after their responses
            ev = client.get(f"{evidence}?challenger=2&since={since}", headers=ADMIN).json()["evidence"]
            if ev["requests"] == n:
                break
            time.sleep(0.05)
        rids = [rid for _, _, rid in answers]
        feeder = {"Authorization": f"Bearer {gateway.gateway.feedback_token}"}
        labelled = client.post("/v1/models/credit_default/feedback", headers=feeder,
                               json=[{"request_id": rid, "label": 1} for rid in rids[:50]] * 2).json()
        labels = client.get(f"{evidence}?challenger=2&since={since}", headers=ADMIN).json()["evidence"]["labels"]
        gateway.gateway.logs.flush()
        logged = read_log(paths.root / "serving", "predictions", "credit_default", start,
                          dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    finally:
        stop.set()
        client.delete(shadow, headers=ADMIN)
        set_weights(client, {"1": 100})

    assert n > 50 and {status for status, _, _ in answers} == {200}
    served = [v for _, v, _ in answers]
    assert ev["requests"] == ev["pairs"] == n and ev["invalid"] == 0 and ev["sum_derr2"] == 0
    assert (ev["served_c"], ev["served_x"]) == (served.count("1"), served.count("2")) and ev["served_x"] > 0
    assert labelled == {"accepted": 100, "matched": 50, "duplicates": 50} and labels == 50
    by_rid: dict[str, list[dict]] = {}
    for record in logged:
        by_rid.setdefault(record["request_id"], []).append(record)
    for rid, version in zip(rids, served, strict=True):
        records = sorted(by_rid[rid], key=lambda r: bool(r.get("shadow")))
        assert [(r["version"], r.get("shadow", False)) for r in records] == [(version, False),
                                                                              ({"1": "2", "2": "1"}[version], True)]


def test_predictions_and_feedback_are_logged_by_model_and_hour(gateway, client, registry_with_two_versions):
    from lifecycle.serving.predlog import read_log

    paths, _ = registry_with_two_versions
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rid = client.post("/v1/models/credit_default/predict", json=ROW).json()["request_id"]
    client.post("/v1/models/credit_default/feedback", json={"request_id": rid, "label": 0},
                headers={"Authorization": f"Bearer {gateway.gateway.feedback_token}"})
    gateway.gateway.logs.flush()
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    preds = read_log(paths.root / "serving", "predictions", "credit_default", start, end)
    [logged] = [p for p in preds if p["request_id"] == rid]
    assert logged["rows"] == [ROW] and logged["version"] in ("1", "2") and logged["latency_ms"] > 0
    feedback = read_log(paths.root / "serving", "feedback", "credit_default", start, end)
    assert any(f["request_id"] == rid and f["label"] == [0] for f in feedback)
    hour = dt.datetime.now(dt.UTC)
    assert (paths.root / "serving" / "predictions" / "credit_default" / f"date={hour:%Y-%m-%d}").exists()


def test_metrics_and_readiness(client):
    client.post("/v1/models/credit_default/predict", json=ROW)
    text = client.get("/metrics").text
    assert 'gateway_requests_total{model="credit_default",status="ok",version="' in text
    assert "gateway_latency_seconds_bucket" in text
    assert client.get("/readyz").json() == {"ready": True, "problems": [], "degraded": []}


def test_a_restarted_gateway_comes_back_with_the_same_weights(client, registry_with_two_versions, spec):
    paths, _ = registry_with_two_versions
    client.post("/admin/models/credit_default/versions/2/load", headers=ADMIN)
    assert set_weights(client, {"1": 80, "2": 20}).status_code == 200
    with Server(Gateway([spec], paths, token=TOKEN)) as again, httpx.Client(base_url=again.url) as c:
        assert c.get("/admin/models/credit_default/traffic", headers=ADMIN).json()["weights"] == {"1": 80, "2": 20}
        assert c.get("/readyz").status_code == 200


def test_a_version_that_fails_to_score_counts_as_errors(spec, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "state"))
    from lifecycle.paths import StatePaths

    class Broken:
        threshold = 0.5
        calls = 0

        def proba(self, rows):
            Broken.calls += 1
            if Broken.calls > 1:  # the warm-up passes; real traffic breaks
                raise ValueError("boom")
            return np.array([0.5])

    with Server(Gateway([spec], StatePaths.current(), token=TOKEN, loader=lambda s, v: Broken())) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.post("/admin/models/credit_default/versions/1/load", headers=ADMIN).status_code == 200
        assert set_weights(c, {"1": 100}).status_code == 200
        resp = c.post("/v1/models/credit_default/predict", json=ROW)
        assert resp.status_code == 500 and "v1 failed to score: ValueError" in resp.json()["error"]
        stats = c.get("/admin/models/credit_default/stats?since=0", headers=ADMIN).json()["versions"]["1"]
        assert stats["errors"] == 1 and stats["requests"] == 1
        assert c.get("/healthz").status_code == 200
