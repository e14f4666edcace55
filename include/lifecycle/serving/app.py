"""The serving gateway (ASGI, Starlette + uvicorn).

Public API::

    POST /v1/models/{model}/predict     one row (JSON object) or a batch (JSON array of objects)
    POST /v1/models/{model}/feedback    {"request_id": ..., "label": 0|1} or an array of them
    GET  /healthz   /readyz   /metrics

Admin API (``Authorization: Bearer <token>``)::

    GET    /admin/models/{model}/traffic                       weights, loaded versions, recent changes
    PUT    /admin/models/{model}/traffic                       {"weights": {"1": 95, "2": 5}, "reason": "..."}
    POST   /admin/models/{model}/versions/{version}/load       load + warm a registered version (weight 0)
    DELETE /admin/models/{model}/versions/{version}            unload (only at weight 0)
    GET    /admin/models/{model}/stats?since=<unix seconds>    live requests, errors, latency, feedback per version

Routing: each request goes to one version, drawn by weight; with a sticky key (``X-Routing-Key`` header, or
the spec's ``serving.sticky_key`` field of the first row) the same key reaches the same version while the
weights are unchanged. A version is added to the routing table only after it is loaded and warmed, and a
request keeps the version object it was routed to, so loads, unloads and weight changes drop nothing.

Errors: every refusal is a typed error of :mod:`lifecycle.errors` (the registry's and the traffic store's included),
answered as ``{"error": <message>}`` with the status :func:`error_status` maps its type to; anything untyped is a 500.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import random
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lifecycle.errors import (
    LifecycleError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from lifecycle.paths import StatePaths
from lifecycle.serving.predlog import LogWriter
from lifecycle.serving.scoring import FastScorer, RequestError, Schema
from lifecycle.serving.traffic import TrafficError, TrafficStore, WeightHeldError
from lifecycle.spec import ModelSpec

log = logging.getLogger("lifecycle.gateway")
MAX_BODY_BYTES = 4 * 1024 * 1024
RECENT_PREDICTIONS = 500_000
STATS_WINDOW = 400_000
BOOTSTRAP_EVERY = 5  # sync ticks between registry look-ups for models that serve nothing yet


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status)


class ScoringError(LifecycleError):
    """A loaded version failed to score a valid request (HTTP 500; counts against it in the canary)."""


def error_status(err: BaseException) -> int:
    """The gateway's one mapping from an exception to its HTTP status, by type, never by message.

    A :class:`~lifecycle.errors.LifecycleError` answers with its kind's ``http_status``, looked up along the MRO so
    the most specific kind wins (``WeightHeldError`` is a ``TrafficError``, 422, but a ``ConflictError`` first:
    409; ``RegistryNotFoundError``: 404; ``RegistryUnavailableError``: 503); anything else is a 500.
    """
    return err.http_status if isinstance(err, LifecycleError) else 500


@dataclass
class Version:
    version: str
    scorer: FastScorer
    loaded_at: float


@dataclass
class LiveStats:
    """Per-version rolling record of served requests and labelled feedback (for the canary judge)."""

    requests: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))  # (ts, latency_ms, error)
    feedback: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))  # (ts, correct, squared error)

    def summary(self, since: float) -> dict[str, Any]:
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


class ModelRuntime:
    """One model's loaded versions and routing table; replaced wholesale on change (copy-on-write)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.schema = Schema.from_spec(spec)
        self.versions: dict[str, Version] = {}
        self.weights: dict[str, int] = {}
        self.routes: tuple[tuple[float, Version], ...] = ()
        self.stats: dict[str, LiveStats] = {}

    def apply(self, weights: dict[str, int]) -> None:
        routes, upper = [], 0.0
        for version in sorted(weights, key=int):
            if weights[version] > 0:
                upper += weights[version]
                routes.append((upper, self.versions[version]))
        self.weights = {v: int(weights.get(v, 0)) for v in sorted(set(self.versions) | set(weights), key=int)}
        self.routes = tuple(routes)

    def route(self, key: str | None) -> Version | None:
        routes = self.routes
        if not routes:
            return None
        point = (zlib.crc32(key.encode()) % 10_000) / 100 if key is not None else random.random() * 100
        for upper, version in routes:
            if point < upper:
                return version
        return routes[-1][1]


def default_loader(paths: StatePaths) -> Callable[[ModelSpec, str], FastScorer]:
    """Load a registered version from the MLflow registry into a FastScorer."""

    def load(spec: ModelSpec, version: str) -> FastScorer:
        import tempfile

        from lifecycle.registry.store import Registry
        from lifecycle.training.packaging import load_model_dir

        with tempfile.TemporaryDirectory() as tmp:
            return FastScorer(load_model_dir(Registry(paths).download_model(spec.model_name, version, Path(tmp))))

    return load


def gateway_token(paths: StatePaths) -> str:
    """``$LIFECYCLE_GATEWAY_TOKEN``, else a random token kept in the state folder (never in the repo)."""
    return os.environ.get("LIFECYCLE_GATEWAY_TOKEN") or paths.secret("gateway_token")


class Gateway:
    def __init__(self, specs: list[ModelSpec], paths: StatePaths | None = None, *, token: str | None = None,
                 loader: Callable[[ModelSpec, str], FastScorer] | None = None, sync_seconds: float = 1.0) -> None:
        self.paths = paths or StatePaths.current()
        self.models = {s.name: ModelRuntime(s) for s in specs}
        self.store = TrafficStore(self.paths.ledger_db)
        self.token = token or gateway_token(self.paths)
        self.loader = loader or default_loader(self.paths)
        self.logs = LogWriter(self.paths.root / "serving")
        self.recent: OrderedDict[str, tuple[str, str, tuple[int, ...], tuple[float, ...], float]] = OrderedDict()
        self.sync_seconds = sync_seconds
        self._lock = asyncio.Lock()
        self._sync_task: asyncio.Task | None = None
        self._metrics = _Metrics()

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        for name in self.models:
            await self._sync_model(name, bootstrap=True)
        self._sync_task = asyncio.create_task(self._sync_loop())
        _freeze_heap()

    async def stop(self) -> None:
        if self._sync_task:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        self.logs.close()

    async def _sync_loop(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.sync_seconds)
            tick += 1
            for name in self.models:
                try:
                    # A model with no traffic yet starts serving its champion once the registry has one.
                    await self._sync_model(name, bootstrap=tick % BOOTSTRAP_EVERY == 0)
                except Exception as err:  # noqa: BLE001 - keep serving with the state we have
                    log.warning("gateway: sync of %s failed: %s", name, err)

    async def _sync_model(self, name: str, bootstrap: bool = False) -> None:
        """Make the runtime match the traffic store (another worker or a restart may have changed it)."""
        rt = self.models[name]
        stored = await asyncio.to_thread(self.store.versions, name)
        if not stored and bootstrap:
            champion = await asyncio.to_thread(self._champion, rt.spec)
            if champion is None:
                log.debug("gateway: %s has no champion yet; not serving it", name)
                return
            await self.load(name, champion)
            await self.set_weights(name, {champion: 100}, "bootstrap: serve the registry's champion")
            return
        for version, (_, loaded) in stored.items():
            if loaded and version not in rt.versions:
                await self.load(name, version)
            elif not loaded and version in rt.versions and rt.weights.get(version, 0) == 0:
                self._drop(name, version)
        async with self._lock:  # re-read under the lock: a concurrent admin change must not be undone
            stored = await asyncio.to_thread(self.store.versions, name)
            weights = {v: w for v, (w, loaded) in stored.items() if loaded and v in rt.versions}
            if weights != rt.weights and sum(weights.values()) == 100:
                rt.apply(weights)

    def _champion(self, spec: ModelSpec) -> str | None:
        from lifecycle.registry.store import CHAMPION, Registry

        mv = Registry(self.paths).by_alias(spec.model_name, CHAMPION)
        return str(mv.version) if mv else None

    # ---- admin operations ------------------------------------------------------------------------
    def runtime(self, model: str) -> ModelRuntime:
        rt = self.models.get(model)
        if rt is None:
            raise NotFoundError(f"unknown model {model!r}; served: {sorted(self.models)}")
        return rt

    async def load(self, model: str, version: str) -> Version:
        rt = self.runtime(model)
        if version in rt.versions:
            return rt.versions[version]
        scorer = await asyncio.to_thread(self.loader, rt.spec, version)
        warm = [dict.fromkeys(rt.schema.numeric, 0.0) | dict.fromkeys(rt.schema.categorical, "")]
        await asyncio.to_thread(scorer.proba, warm)  # warm-up before it can be routed to
        loaded = Version(version, scorer, time.time())
        async with self._lock:
            rt.versions = {**rt.versions, version: loaded}
            rt.weights = {**rt.weights, version: rt.weights.get(version, 0)}
            rt.stats.setdefault(version, LiveStats())
        await asyncio.to_thread(self.store.mark_loaded, model, version, True)
        _freeze_heap()
        log.info("gateway: loaded %s v%s", model, version)
        return loaded

    def _drop(self, model: str, version: str) -> None:
        rt = self.models[model]
        rt.versions = {k: v for k, v in rt.versions.items() if k != version}
        rt.weights = {k: w for k, w in rt.weights.items() if k != version}

    async def unload(self, model: str, version: str) -> None:
        rt = self.runtime(model)
        if version not in rt.versions:
            raise NotFoundError(f"version {version} of {model} is not loaded (loaded: {sorted(rt.versions)})")
        if rt.weights.get(version, 0) > 0:
            raise WeightHeldError(f"version {version} still has weight {rt.weights[version]}; move its traffic "
                                  "first")
        await asyncio.to_thread(self.store.mark_loaded, model, version, False)
        async with self._lock:
            self._drop(model, version)
        log.info("gateway: unloaded %s v%s", model, version)

    async def set_weights(self, model: str, weights: dict[str, int], reason: str) -> dict[str, int]:
        rt = self.runtime(model)
        weights = {str(k): v for k, v in weights.items()}
        missing = sorted(set(weights) - set(rt.versions))
        if missing:
            raise TrafficError(f"version(s) {missing} not loaded in the gateway (loaded: {sorted(rt.versions)})")
        async with self._lock:
            clean = await asyncio.to_thread(self.store.set_weights, model, weights, reason)
            rt.apply(clean)
        log.info("gateway: %s weights %s (%s)", model, clean, reason)
        return clean

    # ---- serving -----------------------------------------------------------------------------------
    def predict(self, model: str, body: bytes, key: str | None) -> dict[str, Any]:
        start = time.perf_counter()
        rt = self.runtime(model)
        rows = rt.schema.check(_parse(body))
        if key is None and rt.spec.serving.sticky_key:
            key = rows[0].get(rt.spec.serving.sticky_key)
            key = None if key is None else str(key)
        version = rt.route(key)
        if version is None:
            raise UnavailableError(f"no version of {model} has traffic")
        try:
            p = version.scorer.proba(rows)
        except Exception as err:  # a version that cannot score counts against it in the canary's error rate
            rt.stats[version.version].requests.append((time.time(), (time.perf_counter() - start) * 1000, True))
            self._metrics.observe(model, version.version, "error", None)
            log.exception("gateway: %s v%s failed to score", model, version.version)
            raise ScoringError(f"{model} v{version.version} failed to score: {type(err).__name__}") from err
        labels = tuple((p >= version.scorer.threshold).astype(int).tolist())  # a tuple: untracked by the GC
        request_id = uuid.uuid4().hex
        now = time.time()
        latency_ms = (time.perf_counter() - start) * 1000
        rt.stats[version.version].requests.append((now, latency_ms, False))
        # Live accuracy is judged on the calibrated decision (p >= 0.5), not on each version's F1-tuned threshold:
        # thresholds trade accuracy for recall differently per version, which would make accuracy compare
        # thresholds rather than models. Calibration itself is gated offline (calibration_error).
        decisions = labels if version.scorer.threshold == 0.5 else tuple((p >= 0.5).astype(int).tolist())
        self.recent[request_id] = (model, version.version, decisions, tuple(p.tolist()), now)
        if len(self.recent) > RECENT_PREDICTIONS:
            self.recent.popitem(last=False)
        self.logs.put("predictions", model, now, {"request_id": request_id, "ts": now, "model": model,
                                                  "version": version.version, "rows": rows,
                                                  "probability": p, "label": labels, "latency_ms": latency_ms})
        self._metrics.observe(model, version.version, "ok", latency_ms / 1000)
        return {"request_id": request_id, "model": model, "version": version.version,
                "predictions": [{"probability": float(pi), "label": li} for pi, li in zip(p, labels, strict=True)]}

    def feedback(self, model: str, body: bytes) -> dict[str, Any]:
        self.runtime(model)
        data = _parse(body)
        items = data if isinstance(data, list) else [data]
        clean = []
        for i, item in enumerate(items):
            where = f"item {i}" if isinstance(data, list) else "feedback"
            if not isinstance(item, dict) or set(item) - {"request_id", "label", "labels"}:
                raise RequestError(f"{where}: expected {{\"request_id\": str, \"label\": 0|1}}")
            rid = item.get("request_id")
            labels = item.get("labels", [item.get("label")])
            if not isinstance(rid, str) or not rid:
                raise RequestError(f"{where}: request_id must be a non-empty string")
            if not isinstance(labels, list) or any(x not in (0, 1) or isinstance(x, bool) for x in labels):
                raise RequestError(f"{where}: label must be 0 or 1 (labels: a list of them)")
            clean.append((rid, labels))
        now = time.time()
        matched = 0
        for rid, labels in clean:
            seen = self.recent.get(rid)
            record = {"request_id": rid, "ts": now, "model": model, "label": labels}
            if seen is not None and seen[0] == model:
                _, version, predicted, probs, _ = seen
                record["version"] = version
                stats = self.models[model].stats.get(version)
                if stats is not None and len(predicted) == len(labels):
                    for pred, prob, truth in zip(predicted, probs, labels, strict=True):
                        stats.feedback.append((now, pred == truth, (prob - truth) ** 2))
                matched += 1
            self.logs.put("feedback", model, now, record)
        return {"accepted": len(clean), "matched": matched}

    def stats(self, model: str, since: float) -> dict[str, Any]:
        rt = self.runtime(model)
        return {"model": model, "since": since, "weights": rt.weights,
                "versions": {v: s.summary(since) for v, s in rt.stats.items()}}

    def ready(self) -> tuple[bool, list[str]]:
        problems = [f"{name} v{v} has weight {w} but is not loaded" for name, rt in self.models.items()
                    for v, w in rt.weights.items() if w > 0 and v not in rt.versions]
        return not problems, problems

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.token.encode())


def _freeze_heap() -> None:
    """Move everything alive now (mlflow, torch, the loaded models: millions of objects) out of the cyclic
    GC's reach. Without it every full collection walks them all and stalls requests for ~100 ms (p99)."""
    gc.collect()
    gc.freeze()


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        if any(tok in body for tok in (b"NaN", b"Infinity")):
            raise MalformedRequestError("NaN and Infinity are not valid feature values; send null for a missing "
                                        "value") from None
        raise MalformedRequestError(f"malformed JSON: {err}") from None


class _Metrics:
    """Prometheus metrics; label children cached so a request costs two dictionary look-ups."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("gateway_requests", "Predict requests", ["model", "version", "status"],
                                registry=self.registry)
        self.latency = Histogram("gateway_latency_seconds", "Predict latency (server side)", ["model", "version"],
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                                 registry=self.registry)
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, version: str, status: str, seconds: float | None) -> None:
        key = (model, version, status)
        pair = self._children.get(key)
        if pair is None:
            with self._lock:
                pair = (self.requests.labels(model, version, status), self.latency.labels(model, version))
                self._children[key] = pair
        pair[0].inc()
        if seconds is not None:
            pair[1].observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def create_app(gateway: Gateway) -> Starlette:
    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and int(length) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        return body

    def guarded(handler, admin: bool = False):
        async def endpoint(request: Request) -> Response:
            model = request.path_params.get("model", "")
            if admin and not gateway.authorized(request):
                return _error(401, "admin API needs 'Authorization: Bearer <token>' with the gateway token")
            try:
                return await handler(request)
            except LifecycleError as err:
                status = error_status(err)
                if admin and isinstance(err, UnavailableError):  # e.g. the registry, on a load (rare, unlike predict)
                    log.warning("gateway: %s on %s: %s", status, request.url.path, err)
                if model in gateway.models:
                    gateway._metrics.observe(model, "-", f"{status}", None)
                return _error(status, str(err))
            except Exception as err:
                log.exception("gateway: unexpected error on %s", request.url.path)
                return _error(500, f"internal error: {type(err).__name__}")
        return endpoint

    async def predict(request: Request) -> Response:
        body = await read_body(request)
        return _json(gateway.predict(request.path_params["model"], body, request.headers.get("x-routing-key")))

    async def feedback(request: Request) -> Response:
        return _json(gateway.feedback(request.path_params["model"], await read_body(request)), 202)

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, problems = gateway.ready()
        return _json({"ready": ok, "problems": problems}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(gateway._metrics.render(), media_type="text/plain; version=0.0.4")

    async def traffic(request: Request) -> Response:
        model = request.path_params["model"]
        rt = gateway.runtime(model)
        if request.method == "PUT":
            data = _parse(await read_body(request))
            if not isinstance(data, dict) or "weights" not in data or set(data) - {"weights", "reason"}:
                raise RequestError("body must be {\"weights\": {version: percent}, \"reason\": str}")
            reason = str(data.get("reason") or "admin API")
            await gateway.set_weights(model, data["weights"], reason)
        return _json({"model": model, "weights": rt.weights, "loaded": sorted(rt.versions, key=int),
                      "history": gateway.store.history(model)[-20:]})

    async def version(request: Request) -> Response:
        model, v = request.path_params["model"], request.path_params["version"]
        if not v.isdigit():
            raise MalformedRequestError(f"version must be a number, got {v!r}")
        if request.method == "DELETE":
            await gateway.unload(model, v)
            return _json({"model": model, "version": v, "loaded": False})
        gateway.runtime(model)
        try:
            await gateway.load(model, v)
        except NotFoundError as err:  # the registry's RegistryNotFoundError
            raise NotFoundError(f"{model} v{v} is not in the registry") from err
        return _json({"model": model, "version": v, "loaded": True})

    async def stats(request: Request) -> Response:
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            raise MalformedRequestError("since must be a unix timestamp in seconds") from None
        return _json(gateway.stats(request.path_params["model"], since))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        yield
        await gateway.stop()

    return Starlette(routes=[
        Route("/v1/models/{model}/predict", guarded(predict), methods=["POST"]),
        Route("/v1/models/{model}/feedback", guarded(feedback), methods=["POST"]),
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
        Route("/admin/models/{model}/traffic", guarded(traffic, admin=True), methods=["GET", "PUT"]),
        Route("/admin/models/{model}/versions/{version}", guarded(version, admin=True),
              methods=["POST", "DELETE"]),
        Route("/admin/models/{model}/versions/{version}/load", guarded(version, admin=True), methods=["POST"]),
        Route("/admin/models/{model}/stats", guarded(stats, admin=True)),
    ], lifespan=lifespan)
