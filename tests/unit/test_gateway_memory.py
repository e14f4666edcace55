"""The gateway's live state stays bounded and its failures stay local, in process (a stand-in model, no registry):
the prediction index keeps to its byte budget and its TTL and forgets an unloaded version; live stats are kept in
time buckets, equal the old all-entries summary, and are summarised off the event loop; the prediction log survives
a full disk (retries, a bounded queue, /readyz); a version that cannot load does not stop the others; posting
feedback needs its token and is rate-limited per client."""
from __future__ import annotations

import asyncio
import errno
import random
import threading
import time
import tracemalloc
import uuid
from collections import deque
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

import lifecycle.serving.app as app_module
from lifecycle.paths import StatePaths
from lifecycle.serving import predlog
from lifecycle.serving.app import Gateway, RateLimitedError, create_app
from lifecycle.serving.live import (
    BUCKET_SECONDS,
    ENTRY_BYTES,
    LABELS_BYTES,
    LiveStats,
    PredictionIndex,
    RateLimiter,
)
from lifecycle.serving.predlog import LogWriter, ReadStats, read_log
from tests.conftest import ADMIN, ROW, TOKEN
from tests.hostile_corpus import FEEDBACK, FEEDBACK_TOKEN, FEEDER, MODEL, PREDICT, RID, STATS

T0 = 1_800_000_000.0


class StandIn:
    """A model that scores every row 0.75 (no registry, no torch)."""

    threshold = 0.5

    def proba(self, rows):
        return np.full(len(rows), 0.75)


def gateway_for(spec, root: Path, loader=None, **serving) -> Gateway:
    """A gateway serving ``credit_default`` v1 (100%) and v2 (0%) with ``serving`` settings replaced."""
    if serving:
        spec = spec.model_copy(update={"serving": spec.serving.model_copy(update=serving)})
    gateway = Gateway([spec], StatePaths(root), token=TOKEN, loader=loader or (lambda s, v: StandIn()),
                      feedback_token=FEEDBACK_TOKEN)

    async def arrange():
        for version in ("1", "2"):
            await gateway.load(MODEL, version)
        await gateway.set_weights(MODEL, {"1": 100, "2": 0}, "test: arrange")

    asyncio.run(arrange())
    return gateway


@pytest.fixture
def closing():
    """Gateways to close after the test (their log writer threads)."""
    gateways: list[Gateway] = []
    yield gateways.append
    for gw in gateways:
        gw.logs.close()


def label(client, rid: str, value: int = 1, headers=FEEDER) -> dict:
    resp = client.post(FEEDBACK, json={"request_id": rid, "label": value}, headers=headers)
    assert resp.status_code == 202, resp.text
    return resp.json()


class Clock:
    """Stands in for the ``time`` module of :mod:`lifecycle.serving.app`: wall time set by the test."""

    perf_counter = staticmethod(time.perf_counter)
    monotonic = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------- 1. the prediction index
def test_the_index_keeps_to_its_byte_budget_evicting_the_oldest_and_counting(spec, tmp_path, closing):
    # Arrange: ~10 KB, room for ~33 one-row predictions
    gw = gateway_for(spec, tmp_path, index_max_mb=0.01)
    closing(gw)
    client = TestClient(create_app(gw))

    # Act
    rids = [client.post(PREDICT, json=ROW).json()["request_id"] for _ in range(100)]

    # Assert: within budget, the oldest gone (and counted), the newest still matched
    index = gw.models[MODEL].index
    kept = len(index)
    assert index.bytes <= index.max_bytes and index.bytes == kept * (ENTRY_BYTES + 8)
    assert 20 < kept < 100 and index.evicted["bytes"] == 100 - kept
    assert label(client, rids[0]) == {"accepted": 1, "matched": 0, "duplicates": 0}
    assert label(client, rids[-1]) == {"accepted": 1, "matched": 1, "duplicates": 0}
    # The labelled entry keeps its label (a second one is a duplicate): its bytes grow, within the budget still
    grown = ENTRY_BYTES + 8 + LABELS_BYTES + 1
    assert index.bytes <= index.max_bytes and index.bytes == (len(index) - 1) * (ENTRY_BYTES + 8) + grown
    assert len(index) in (kept, kept - 1) and index.evicted["bytes"] == 100 - len(index)
    metrics = client.get("/metrics").text
    assert f'gateway_index_evictions_total{{model="credit_default",reason="bytes"}} {100 - len(index)}.0' in metrics
    assert f'gateway_index_entries{{model="credit_default"}} {len(index)}.0' in metrics


def test_late_labels_match_within_the_ttl_and_older_entries_are_evicted(spec, tmp_path, closing, monkeypatch):
    # Arrange
    gw = gateway_for(spec, tmp_path, feedback_ttl_seconds=3600)
    closing(gw)
    clock = Clock()
    monkeypatch.setattr(app_module, "time", clock)
    client = TestClient(create_app(gw))
    early, late = (client.post(PREDICT, json=ROW).json()["request_id"] for _ in range(2))
    rt = gw.models[MODEL]

    # Act / Assert: a label an hour late still matches (and counts in the live stats); a second later, no more
    clock.now += 3599
    assert rt.index.expire(clock.now) == 0
    assert label(client, early) == {"accepted": 1, "matched": 1, "duplicates": 0}
    clock.now += 2
    assert label(client, late) == {"accepted": 1, "matched": 0, "duplicates": 0}
    assert rt.index.expire(clock.now) == 2 and len(rt.index) == 0 and rt.index.bytes == 0
    assert rt.index.evicted == {"age": 2, "bytes": 0, "unload": 0}
    assert rt.stats["1"].summary(0)["feedback"] == 1 and rt.stats["1"].summary(0)["correct"] == 1


def test_unloading_a_version_drops_its_index_entries_and_live_stats(spec, tmp_path, closing):
    # Arrange: five predictions by v2, then its traffic moved back to v1
    gw = gateway_for(spec, tmp_path)
    closing(gw)
    client = TestClient(create_app(gw))
    asyncio.run(gw.set_weights(MODEL, {"1": 0, "2": 100}, "test"))
    rids = [client.post(PREDICT, json=ROW).json()["request_id"] for _ in range(5)]
    asyncio.run(gw.set_weights(MODEL, {"1": 100, "2": 0}, "test"))
    rt = gw.models[MODEL]
    assert rt.stats["2"].summary(0)["requests"] == 5 and len(rt.index) == 5

    # Act
    asyncio.run(gw.unload(MODEL, "2"))

    # Assert
    assert "2" not in rt.stats and len(rt.index) == 0 and rt.index.bytes == 0
    assert rt.index.evicted["unload"] == 5
    assert label(client, rids[0]) == {"accepted": 1, "matched": 0, "duplicates": 0}


def test_the_index_estimate_of_an_entry_covers_its_measured_memory():
    for rows in (1, 100):
        index = PredictionIndex(10**12, 3600)
        probabilities = np.full(rows, 0.25)
        tracemalloc.start()
        for _ in range(20_000):
            index.add("1", uuid.uuid4().hex, probabilities.tobytes(), time.time())
        measured, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        estimate = index.bytes
        assert 0.7 * estimate <= measured <= estimate, (rows, measured / 20_000, estimate / 20_000)


def test_the_index_evicts_the_oldest_entry_of_any_version():
    index = PredictionIndex(max_bytes=3 * (ENTRY_BYTES + 8), ttl=60)
    for i, version in enumerate(["1", "2", "1", "2"]):
        index.add(version, f"r{i}", np.zeros(1).tobytes(), T0 + i)
    assert index.get("r0", T0 + 4) is None and index.get("r1", T0 + 4)[0] == "2"
    assert index.evicted["bytes"] == 1 and len(index) == 3
    assert index.get("r3", T0 + 63) == ("2", np.zeros(1).tobytes()) and index.get("r3", T0 + 64) is None


# ------------------------------------------------------------------------------------------------ 2. live stats
class OldLiveStats:
    """The summary before buckets (every entry scanned on the event loop): the reference the buckets must equal."""

    def __init__(self) -> None:
        self.requests: deque = deque(maxlen=400_000)
        self.feedback: deque = deque(maxlen=400_000)

    def summary(self, since: float) -> dict:
        reqs = [r for r in self.requests if r[0] >= since]
        lat = np.array([r[1] for r in reqs]) if reqs else np.array([])
        fb = [f for f in self.feedback if f[0] >= since]
        sq = np.array([f[2] for f in fb]) if fb else np.array([])
        return {
            "requests": len(reqs),
            "errors": sum(1 for r in reqs if r[2]),
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
            "feedback": len(fb),
            "correct": sum(1 for f in fb if f[1]),
            "brier": float(sq.mean()) if len(sq) else None,
            "brier_var": float(sq.var(ddof=1)) if len(sq) > 1 else None,
            "first_ts": reqs[0][0] if reqs else None,
        }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bucketed_summary_equals_the_old_computation_on_random_data(seed):
    # Arrange: ten minutes of requests (5% errors) and labels at random times
    rng = random.Random(seed)
    old, new = OldLiveStats(), LiveStats(retention=3600)
    ts = T0 + rng.random() * 10
    for _ in range(20_000):
        ts += rng.expovariate(1 / 0.03)
        if rng.random() < 0.7:
            entry = (ts, rng.lognormvariate(0, 1), rng.random() < 0.05)
            old.requests.append(entry)
            new.request(*entry)
        else:
            prob, truth = rng.random(), rng.randint(0, 1)
            old.feedback.append((ts, (prob >= 0.5) == truth, (prob - truth) ** 2))
            new.label(ts, (prob >= 0.5) == truth, (prob - truth) ** 2)
    end = ts
    edges = [T0 + BUCKET_SECONDS * k for k in (3, 17)]
    sinces = [0.0, T0, *edges, *(T0 + rng.random() * (end - T0) for _ in range(20)), end, end + 1]

    for since in sinces:
        # Act
        got, want = new.summary(since), old.summary(since)

        # Assert
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), \
                (since, key)


def test_live_stats_keep_a_bounded_number_of_buckets_and_entries():
    stats = LiveStats(retention=600, window=5_000)
    for i in range(7200):  # two hours at 1 request a second
        stats.request(T0 + i, 1.0)
    assert len(stats.buckets) <= stats.max_buckets == 61
    assert stats.summary(0)["requests"] <= 610
    dense = LiveStats(retention=3600, window=5_000)
    for i in range(50_000):  # 100 requests a second: the count bound comes first
        dense.request(T0 + i / 100, 1.0)
    assert 5_000 - 1_000 <= dense.summary(0)["requests"] <= 5_000 + 1_000


def test_a_stats_call_is_summarised_in_a_worker_thread_while_predictions_are_served(spec, tmp_path, closing,
                                                                                  monkeypatch):
    # Arrange: 400,000 requests in the last five minutes; the summary held in its thread until a predict is done
    gw = gateway_for(spec, tmp_path)
    closing(gw)
    stats = gw.models[MODEL].stats["1"]
    start = time.time() - 300
    for i in range(400_000):
        stats.request(start + i * 0.00075, 1.0 + (i % 100) / 10)
    entered, release, threads = threading.Event(), threading.Event(), []
    real = app_module.summarize

    def held(buckets, since):
        threads.append(threading.current_thread())
        entered.set()
        assert release.wait(30), "the predict never came: the event loop was blocked"
        return real(buckets, since)

    monkeypatch.setattr(app_module, "summarize", held)

    async def scenario():
        transport = httpx.ASGITransport(app=create_app(gw))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            pending = asyncio.create_task(http.get(f"{STATS}?since=0", headers=ADMIN))
            while not entered.is_set():
                await asyncio.sleep(0.001)
            predicted = await http.post(PREDICT, json=ROW)  # served while the summary is still being computed
            still_running = not pending.done()
            release.set()
            return predicted, still_running, await pending

    # Act
    predicted, still_running, summary = asyncio.run(scenario())

    # Assert
    assert predicted.status_code == 200 and still_running
    assert threads and all(t is not threading.main_thread() for t in threads)
    body = summary.json()
    assert summary.status_code == 200 and body["weights"] == {"1": 100, "2": 0}
    assert body["versions"]["1"]["requests"] == 400_000 and body["versions"]["2"]["requests"] == 0
    assert len(stats.buckets) <= stats.max_buckets


# ------------------------------------------------------------------------------------------- 3. the log writer
class FullDisk:
    """Stands in for ``predlog._open``: the first ``fails`` writes put half their bytes down, then raise ENOSPC."""

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def __call__(self, path: Path):
        disk, fh = self, path.open("ab", buffering=0)

        class Handle:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def fileno(self):
                return fh.fileno()

            def truncate(self, size):
                return fh.truncate(size)

            def write(self, data):
                if disk.fails > 0:
                    disk.fails -= 1
                    fh.write(bytes(data[: len(data) // 2]))
                    raise OSError(errno.ENOSPC, "No space left on device")
                return fh.write(data)

        return Handle()


def test_the_log_writer_retries_a_full_disk_and_writes_each_record_once(tmp_path, monkeypatch):
    # Arrange
    monkeypatch.setattr(predlog, "_open", FullDisk(fails=3))
    monkeypatch.setattr(predlog, "RETRY_SECONDS", (0.01, 0.02))
    writer = LogWriter(tmp_path, flush_seconds=0.01)
    now = time.time()

    # Act
    try:
        for i in range(50):
            writer.put("predictions", "m", now, {"i": i, "ts": now})
        assert writer.flush(timeout=20)
    finally:
        writer.close()

    # Assert: every record once, no torn or damaged line; the errors counted, the writer healthy again
    import datetime as dt

    read = ReadStats()
    records = read_log(tmp_path, "predictions", "m", dt.datetime.fromtimestamp(now - 60, dt.UTC),
                       dt.datetime.fromtimestamp(now + 60, dt.UTC), read)
    assert sorted(r["i"] for r in records) == list(range(50))
    assert (read.torn, read.damaged) == (0, 0)
    assert writer.write_errors == 3 and writer.failing_since is None and writer.dropped == 0
    assert writer.problem(0.0) is None


def test_while_the_log_cannot_be_written_the_queue_is_bounded_and_readyz_answers_503(spec, tmp_path, closing,
                                                                                     monkeypatch):
    # Arrange: a folder the writer may not write to; a 20 KB queue
    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    real_open = predlog._open
    gw = gateway_for(spec, tmp_path)
    closing(gw)
    monkeypatch.setattr(predlog, "_open", refuse)
    monkeypatch.setattr(predlog, "RETRY_SECONDS", (0.01, 0.02))
    monkeypatch.setattr(app_module, "LOG_FAILING_SECONDS", 0.0)
    gw.logs.close()
    gw.logs = LogWriter(tmp_path / "serving", flush_seconds=0.01, max_queue_bytes=20_000)
    client = TestClient(create_app(gw))

    # Act: predictions go on regardless
    served = [client.post(PREDICT, json=ROW).status_code for _ in range(100)]
    deadline = time.monotonic() + 10
    while gw.logs.write_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    ready = client.get("/readyz")
    metrics = client.get("/metrics").text

    # Assert
    assert served == [200] * 100
    assert gw.logs.dropped > 0 and gw.logs.backlog_bytes <= 20_000
    assert ready.status_code == 503
    assert any("prediction log has failed to write" in p and "PermissionError" in p for p in ready.json()["problems"])
    assert f"gateway_log_dropped_total {float(gw.logs.dropped)}" in metrics
    assert "gateway_log_healthy 0.0" in metrics

    # Act / Assert: the disk is back; what was queued is written and the gateway is ready again
    monkeypatch.setattr(predlog, "_open", real_open)
    assert gw.logs.flush(timeout=20)
    assert client.get("/readyz").status_code == 200
    assert gw.logs.written == 100 - gw.logs.dropped


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_readyz_answers_503_while_the_log_writer_thread_is_dead(spec, tmp_path, closing):
    gw = gateway_for(spec, tmp_path)
    closing(gw)
    client = TestClient(create_app(gw))
    assert client.get("/readyz").status_code == 200

    def die():
        raise SystemExit  # not an Exception: it ends the thread, as an unforeseen failure would

    gw.logs._drain = die
    gw.logs._wake.set()
    gw.logs._thread.join(timeout=10)

    ready = client.get("/readyz")
    assert ready.status_code == 503 and any("thread is dead" in p for p in ready.json()["problems"])


# ------------------------------------------------------------------------------ 4. a version that cannot load
def served_versions(paths: StatePaths, weights: dict[str, int]) -> None:
    from lifecycle.serving.traffic import TrafficStore

    store = TrafficStore(paths.ledger_db)
    for version in weights:
        store.mark_loaded(MODEL, version, True)
    store.set_weights(MODEL, weights, "test: arrange")


def test_a_version_that_cannot_load_does_not_stop_the_gateway_and_is_reported(spec, tmp_path):
    # Arrange: the store serves v1 and v2; v2's artifact is missing
    paths = StatePaths(tmp_path / "state")
    served_versions(paths, {"1": 50, "2": 50})
    broken = {"2"}

    def loader(spec_, version):
        if version in broken:
            raise FileNotFoundError(f"artifact of v{version} is missing")
        return StandIn()

    gw = Gateway([spec], paths, token=TOKEN, loader=loader, sync_seconds=0.05, feedback_token=FEEDBACK_TOKEN)

    # Act: start (the lifespan) loads the served versions
    with TestClient(create_app(gw)) as client:
        answers = [client.post(PREDICT, json=ROW) for _ in range(20)]
        ready = client.get("/readyz")
        metrics = client.get("/metrics").text
        attempts = gw.load_failures[(MODEL, "2")].attempts

        # Act: the artifact is back; the sync loop loads it at its next try
        broken.clear()
        gw.load_failures[(MODEL, "2")].retry_at = 0.0
        rt, deadline = gw.models[MODEL], time.monotonic() + 10
        while rt.weights.get("2") != 50:
            assert time.monotonic() < deadline, "v2 was never loaded again"
            time.sleep(0.02)
        healed = client.get("/readyz").json()

    # Assert: v1 served everything; v2 reported, not retried on every tick
    assert [a.status_code for a in answers] == [200] * 20 and {a.json()["version"] for a in answers} == {"1"}
    assert ready.status_code == 200 and ready.json()["problems"] == []
    assert any("v2 failed to load" in d and "artifact of v2 is missing" in d for d in ready.json()["degraded"])
    assert 'gateway_version_load_failed{model="credit_default",version="2"} 1.0' in metrics
    assert 'gateway_version_load_failures_total{model="credit_default"} 1.0' in metrics
    assert attempts == 1
    assert healed == {"ready": True, "problems": [], "degraded": []}


def test_a_model_whose_only_version_cannot_load_is_not_ready_and_the_gateway_still_starts(spec, tmp_path):
    paths = StatePaths(tmp_path / "state")
    served_versions(paths, {"1": 100})

    def loader(spec_, version):
        raise ValueError("corrupt artifact")

    gw = Gateway([spec], paths, token=TOKEN, loader=loader, feedback_token=FEEDBACK_TOKEN)
    with TestClient(create_app(gw)) as client:
        ready = client.get("/readyz")
        predicted = client.post(PREDICT, json=ROW)
    assert ready.status_code == 503
    assert ready.json()["problems"] == ["credit_default serves nothing: every version with traffic failed to load"]
    assert predicted.status_code == 503


# ---------------------------------------------------------------------- 5. the feedback credential, rate limit
@pytest.mark.parametrize(("headers", "status"), [
    pytest.param({}, 401, id="none"),
    pytest.param(FEEDER, 202, id="feedback-token"),
    pytest.param(ADMIN, 202, id="admin-token"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401, id="admin-token-cut"),
    pytest.param({"Authorization": f"bearer {FEEDBACK_TOKEN}"}, 202, id="scheme-any-case"),
])
def test_feedback_takes_the_feedback_token_or_the_admin_token(spec, tmp_path, closing, headers, status):
    gw = gateway_for(spec, tmp_path)
    closing(gw)
    client = TestClient(create_app(gw))
    rid = client.post(PREDICT, json=ROW).json()["request_id"]
    resp = client.post(FEEDBACK, json={"request_id": rid, "label": 1}, headers=headers)
    assert resp.status_code == status, resp.text
    assert gw.models[MODEL].stats["1"].summary(0)["feedback"] == (1 if status == 202 else 0)


def test_the_feedback_rate_limit_is_per_client_and_answers_429_with_retry_after(spec, tmp_path, closing):
    # Arrange: 10 labels/s, bursts of 1000
    gw = gateway_for(spec, tmp_path, feedback_rate=10.0, feedback_burst=1000)
    closing(gw)
    thousand = orjson.dumps([{"request_id": RID, "labels": [1] * 500}] * 2)
    one = orjson.dumps({"request_id": RID, "label": 1})

    # Act / Assert: a client spends its burst; the next label waits a tenth of a second (Retry-After: 1)
    assert gw.feedback(MODEL, thousand, "10.0.0.1") == {"accepted": 2, "matched": 0, "duplicates": 0}
    with pytest.raises(RateLimitedError) as refused:
        gw.feedback(MODEL, one, "10.0.0.1")
    assert refused.value.retry_after == 1
    assert gw.feedback(MODEL, thousand, "10.0.0.2")["accepted"] == 2  # another client: its own budget
    assert gw.feedback(MODEL, one)["accepted"] == 1  # in-process callers (no client) are not limited

    # Over HTTP: the burst, then 429 for as long as the labels take to earn (100 s)
    client = TestClient(create_app(gw))
    assert client.post(FEEDBACK, content=thousand, headers=FEEDER).status_code == 202
    limited = client.post(FEEDBACK, content=thousand, headers=FEEDER)
    assert limited.status_code == 429 and "rate limit" in limited.json()["error"]
    assert 99 <= int(limited.headers["retry-after"]) <= 100
    assert 'gateway_feedback_rate_limited_total{model="credit_default"} 2.0' in client.get("/metrics").text


def test_the_rate_limiter_refills_and_forgets_idle_clients():
    limiter = RateLimiter(rate=10.0, burst=20.0, max_clients=3)
    assert limiter.take("a", 20, 0.0) == 0.0
    assert limiter.take("a", 1, 0.0) == pytest.approx(0.1)
    assert limiter.take("a", 5, 0.5) == 0.0  # half a second earned five
    for i in range(100):
        limiter.take(f"client-{i}", 1, 1.0 + i)
        assert len(limiter._clients) <= 3


def test_serving_settings_have_defaults_and_clear_errors(tmp_path):
    from lifecycle.spec import ServingConfig, SpecError, load_spec
    from tests.conftest import write_spec

    serving = ServingConfig()
    assert (serving.index_max_mb, serving.feedback_ttl_seconds, serving.feedback_rate, serving.feedback_burst) == \
        (64.0, 86_400.0, 1000.0, 10_000)
    bad = {
        "index_max_mb": (0, "serving.index_max_mb: Input should be greater than 0"),
        "feedback_ttl_seconds": ("6h", "serving.feedback_ttl_seconds: Input should be a valid number"),
        "feedback_rate": (-1, "serving.feedback_rate: Input should be greater than 0"),
        "feedback_burst": (10, "feedback_burst (10) must be at least max_batch_rows (1000)"),
    }
    for i, (field, (value, message)) in enumerate(bad.items()):
        folder = write_spec(tmp_path / str(i), serving={"max_batch_rows": 1000, field: value})
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_spec(folder / "credit_default.yaml")


def test_the_feedback_token_comes_from_the_environment_or_the_secrets_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFECYCLE_FEEDBACK_TOKEN", raising=False)
    monkeypatch.delenv("LIFECYCLE_GATEWAY_TOKEN", raising=False)
    paths = StatePaths(tmp_path)
    generated = paths.feedback_token()
    assert len(generated) >= 32 and paths.feedback_token() == generated and generated != paths.gateway_token()
    assert (tmp_path / "secrets" / "feedback_token").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("LIFECYCLE_FEEDBACK_TOKEN", "f" * 40)
    assert paths.feedback_token() == "f" * 40
    monkeypatch.setenv("LIFECYCLE_FEEDBACK_TOKEN", "short")
    with pytest.raises(ValueError, match=r"\$LIFECYCLE_FEEDBACK_TOKEN is too short"):
        paths.feedback_token()


def test_the_simulated_back_office_posts_labels_with_the_feedback_token(spec, tmp_path, monkeypatch):
    from lifecycle.ops.simulate import ClientPopulation
    from tests.conftest import Server

    # Arrange: gateway and clients find the token in the same state folder, configured nowhere
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("LIFECYCLE_FEEDBACK_TOKEN", raising=False)
    paths = StatePaths.current()
    gw = Gateway([spec], paths, token=TOKEN, loader=lambda s, v: StandIn())

    async def arrange():
        await gw.load(MODEL, "1")
        await gw.set_weights(MODEL, {"1": 100}, "test: arrange")

    asyncio.run(arrange())

    # Act
    with Server(gw) as server:
        clients = ClientPopulation(spec, server.url, rate=50, feedback_delay=(0.05, 0.1)).start()
        try:
            deadline = time.monotonic() + 30
            while gw.models[MODEL].stats["1"].summary(0)["feedback"] < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            result = clients.stop()

    # Assert
    assert clients.feedback_headers == {"Authorization": f"Bearer {paths.feedback_token()}"}
    assert result["feedback"] >= 10 and clients.feedback_limited == 0
    assert gw.models[MODEL].stats["1"].summary(0)["feedback"] >= 10
