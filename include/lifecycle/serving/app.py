"""The serving gateway (ASGI, Starlette + uvicorn).

Public API::

    POST /v1/models/{model}/predict     one row (JSON object) or a batch (JSON array of objects)
    POST /v1/models/{model}/feedback    {"request_id": ..., "label": 0|1} or an array of them (multiclass: a class
                                        of data.classes; regression: a finite number)
                                        (``Authorization: Bearer <feedback token or admin token>``; rate-limited
                                        per client address by the spec's ``serving.feedback_rate``/``_burst``);
                                        202 {"accepted", "matched", "duplicates"}: only the first label of a
                                        request id counts, later ones are ignored and counted as duplicates
    GET  /healthz   /readyz   /metrics

Admin API (``Authorization: Bearer <token>``)::

    GET    /admin/models/{model}/traffic                       weights, revision, loaded versions, recent changes
    PUT    /admin/models/{model}/traffic                       {"weights": {"1": 95, "2": 5}, "reason": "...",
                                                                "expected_revision": 7}  (optional: 409 if stale)
    POST   /admin/models/{model}/versions/{version}/load       load + warm a registered version (weight 0)
    DELETE /admin/models/{model}/versions/{version}            unload (only at weight 0, and not in the shadow pair)
    GET    /admin/models/{model}/stats?since=<unix seconds>    live requests, errors, latency, feedback per version
    GET    /admin/models/{model}/shadow                        the shadow pair, or {"shadow": null}
    PUT    /admin/models/{model}/shadow                        {"champion": "1", "challenger": "3", "sample": 1.0,
                                                                "expected_revision": 7}  (sample, revision optional)
    DELETE /admin/models/{model}/shadow                        stop mirroring
    GET    /admin/models/{model}/evidence?challenger=<version>&since=<unix seconds>
                                                               the shadow pair's paired evidence (sums)

Shadow (issue 11): with a shadow pair set, a request answered by either version of the pair is also scored by the
other one (for a share ``sample`` of requests, drawn from the request id), *after* the response is sent (a
Starlette background task on the event loop; it never delays or fails the user's request: a failure counts as the
mirrored version's error in the pair). The mirrored prediction is logged with the same request id and
``"shadow": true`` (the answered record is unchanged), and joins the request's prediction-index entry, so that the
first label of the request judges both versions on the same rows (:class:`~lifecycle.serving.live.PairedLive`).
Requests answered by a version outside the pair are not mirrored; with no pair, the predict path does nothing more
than read ``None``.

Tasks: a binary model answers ``{"probability", "label"}`` per row; a multiclass or regression model answers,
logs, keeps and judges per :mod:`lifecycle.serving.tasks` (its runtime's ``head``, chosen once from the spec).

Routing: each request goes to one version, drawn by weight; with a sticky key (``X-Routing-Key`` header, or
the spec's ``serving.sticky_key`` field of the first row) the same key reaches the same version while the
weights are unchanged. A version is added to the routing table only after it is loaded and warmed, and a
request keeps the version object it was routed to, so loads, unloads and weight changes drop nothing.

Errors: every refusal is a typed error of :mod:`lifecycle.errors` (the registry's and the traffic store's included),
answered as ``{"error": <message>}`` with the status :func:`error_status` maps its type to; anything untyped is a 500.

Hostile input (:mod:`lifecycle.serving.limits`) gets a 4xx, never a 500, and never costs unbounded memory: the body
is streamed and refused at ``MAX_BODY_BYTES`` (413, the connection closed, so the rest is never read); a body that
is not JSON, nests deeper than ``MAX_DEPTH`` or has the wrong shape is a 400 (a Content-Type other than JSON: 415);
rows are checked against the spec (types, finite numbers, lengths; ranges and categories: 422, or served and flagged,
per ``serving.out_of_spec``). Messages echo client values cut to ``ECHO_CHARS``; only a caller holding the admin
token learns which models are served.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import math
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lifecycle.errors import (
    InvalidRequestError,
    LifecycleError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from lifecycle.paths import StatePaths, check_token
from lifecycle.serving.limits import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_ERROR_CHARS,
    MAX_REASON_CHARS,
    MAX_REQUEST_ID_CHARS,
    PLAIN_NUMBER,
    VERSION_ID,
    cut,
    show,
    show_names,
    too_deep,
)
from lifecycle.serving.live import (
    LiveStats,
    PairedLive,
    PredictionIndex,
    RateLimiter,
    entry_labels,
    entry_mirror,
    summarize,
)
from lifecycle.serving.predlog import LogWriter
from lifecycle.serving.scoring import FastScorer, RequestError, Schema, TorchScorer, scorer_for
from lifecycle.serving.tasks import TaskHead, TaskMismatchError, head_for
from lifecycle.serving.traffic import (
    Applied,
    ShadowHeldError,
    ShadowPair,
    TrafficConflictError,
    TrafficError,
    TrafficStore,
    WeightHeldError,
    check_revision,
    check_shadow,
    check_weights,
)
from lifecycle.spec import ModelSpec

log = logging.getLogger("lifecycle.gateway")
BOOTSTRAP_EVERY = 5  # sync ticks between registry look-ups for models that serve nothing yet
#: /readyz answers 503 once the prediction log has failed to write for this long (or its writer thread died).
LOG_FAILING_SECONDS = 30.0
#: A version that failed to load is tried again by the sync loop after this long, doubling up to the second.
LOAD_RETRY_SECONDS = (30.0, 600.0)
#: The latency limit of the moment for a shadow pair's challenger (``slow_x``): max(spec.canary.slo.max_p99_ms,
#: max_p99_ratio x the champion's p99 over the last ``SHADOW_LIMIT_WINDOW`` seconds), recomputed by the sync loop
#: (off the event loop) at most every ``SHADOW_LIMIT_SECONDS``.
SHADOW_LIMIT_SECONDS = 5.0
SHADOW_LIMIT_WINDOW = 60.0
#: Paired evidence is kept this long at least; longer if the live stats are, or if a whole deploy at its time limits
#: (canary.shadow.max_seconds + steps x canary.max_seconds) takes longer.
EVIDENCE_RETENTION = 86_400.0
#: A mirrored version that fails to score is logged at most once per this many seconds (each failure is counted).
SHADOW_LOG_SECONDS = 60.0


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    response = _json({"error": cut(message, MAX_ERROR_CHARS), **extra}, status)
    if headers:
        response.headers.update(headers)
    return response


class ScoringError(LifecycleError):
    """A loaded version failed to score a valid request (HTTP 500; counts against it in the canary). ``mirror``:
    the request's mirrored scoring by the other version of the shadow pair, run after the error is answered."""

    mirror: Mirror | None = None


class UnknownModelError(NotFoundError):
    """A model the gateway does not serve (404); ``served`` is told only to callers holding the admin token."""

    def __init__(self, message: str, served: list[str]) -> None:
        super().__init__(message)
        self.served = served


class BodyTooLargeError(PayloadTooLargeError):
    """A body over ``MAX_BODY_BYTES`` (413): answered with ``Connection: close``, the rest never read."""


class UnsupportedMediaTypeError(MalformedRequestError):
    """A body declared as something other than JSON (415)."""

    http_status = 415


class UnauthorizedError(LifecycleError):
    """A call that needs a credential it did not carry (401)."""

    http_status = 401


class RateLimitedError(LifecycleError):
    """A client over its rate (429): answered with ``Retry-After`` (whole seconds, at least 1)."""

    http_status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


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
    scorer: FastScorer | TorchScorer
    loaded_at: float


class Shadow:
    """A model's shadow pair as its runtime applies it: which version mirrors which, the share of requests mirrored
    (``cut``: of the request id's first 32 bits), the pair's evidence (kept across changes of ``sample``), and
    the challenger's latency limit of the moment (``limit_ms``, refreshed by the sync loop)."""

    __slots__ = ("challenger", "champion", "cut", "evidence", "limit_due", "limit_ms", "sample", "updated_at")

    def __init__(self, pair: ShadowPair, evidence: PairedLive, limit_ms: float) -> None:
        self.champion, self.challenger, self.sample = pair.champion, pair.challenger, pair.sample
        self.updated_at = pair.updated_at
        self.cut = round(pair.sample * 2**32)
        self.evidence = evidence
        self.limit_ms = limit_ms
        self.limit_due = 0.0  # monotonic time the limit is next recomputed

    @property
    def key(self) -> tuple[str, str, float]:
        return (self.champion, self.challenger, self.sample)

    def partner(self, version: str) -> str | None:
        """The version that mirrors a request ``version`` answered; None when ``version`` is not in the pair."""
        if version == self.champion:
            return self.challenger
        if version == self.challenger:
            return self.champion
        return None

    def sampled(self, request_id: str | None) -> bool:
        if self.cut >= 2**32:
            return True
        return (int(request_id[:8], 16) if request_id else random.getrandbits(32)) < self.cut

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "challenger": self.challenger, "sample": self.sample,
                "updated_at": self.updated_at, "latency_limit_ms": self.limit_ms}


@dataclass(slots=True)
class Mirror:
    """A request to score again with the other version of the shadow pair, after the response: the rows, what the
    answering version gave (``p``: float64 probabilities, or the task's outputs; None when it failed), and the
    pair as it was then."""

    model: str
    rt: ModelRuntime
    shadow: Shadow
    served: str
    version: Version
    rows: list[dict[str, Any]]
    request_id: str | None
    ts: float
    p: np.ndarray | None
    flagged: list[tuple[int, list[str]]] | None = None


@dataclass
class LoadFailure:
    """A version the traffic store says is loaded that this gateway could not load (missing or corrupt artifact,
    unreachable registry): the others serve; the sync loop tries it again at ``retry_at`` (monotonic)."""

    error: str
    attempts: int
    retry_at: float


class ModelRuntime:
    """One model's loaded versions and routing table; replaced wholesale on change (copy-on-write). Also its live
    state: recent predictions by request id (``index``), live stats per version, the feedback rate limit."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.schema = Schema.from_spec(spec)
        #: Multiclass and regression: what the model's task does differently; None for binary (the gateway's own
        #: code paths, as they always were).
        self.head: TaskHead | None = head_for(spec)
        self.versions: dict[str, Version] = {}
        self.weights: dict[str, int] = {}
        self.routes: tuple[tuple[float, Version], ...] = ()
        self.stats: dict[str, LiveStats] = {}
        serving = spec.serving
        self.index = PredictionIndex(int(serving.index_max_mb * 2**20), serving.feedback_ttl_seconds)
        self.limiter = RateLimiter(serving.feedback_rate, serving.feedback_burst)
        # Live stats cover the longest window anyone asks for: a canary step, or the SLO watcher's window.
        self.stats_retention = max(spec.canary.max_seconds, serving.slo.window_seconds)
        # The shadow pair (None: no mirroring), and the paired evidence of each pair since it was last set, kept
        # after the pair is cleared (its last evidence stays readable) until one of its versions is unloaded. Kept
        # long enough for a whole deploy: the shadow stage and every step at their time limits.
        self.shadow: Shadow | None = None
        self.shadow_stored: ShadowPair | None = None  # the pair the traffic store had at the last sync
        self.evidence: dict[tuple[str, str], PairedLive] = {}
        plan = getattr(spec.canary, "shadow", None)
        deploy = float(getattr(plan, "max_seconds", 0.0) or 0.0) + len(spec.canary.steps) * spec.canary.max_seconds
        self.evidence_retention = max(self.stats_retention, EVIDENCE_RETENTION, deploy + 600.0)
        self.feedback_duplicates = 0  # labels for a request id that already had its label (ignored)
        self.shadow_errors = 0  # mirrored scorings that failed
        self.shadow_logged_at = -math.inf  # monotonic time a failed mirrored scoring was last logged

    def new_stats(self) -> LiveStats:
        return LiveStats(retention=self.stats_retention, graded=self.head is None or self.head.graded)

    def apply_shadow(self, pair: ShadowPair | None) -> None:
        """Mirror between ``pair``'s versions from now on (None, or a version not loaded here: no mirroring). A
        pair that is not the current one starts afresh (a new deploy: its evidence from zero); the current pair's
        evidence carries on when only ``sample`` changes."""
        if pair is None or pair.champion not in self.versions or pair.challenger not in self.versions:
            self.shadow = None
            return
        key = (pair.champion, pair.challenger)
        old = self.shadow
        evidence = self.evidence.get(key)
        if evidence is None or old is None or (old.champion, old.challenger) != key:
            self.evidence.pop(key, None)  # inserted last: the evidence read for a challenger is its newest
            evidence = self.evidence[key] = (PairedLive(*key, retention=self.evidence_retention) if self.head is None
                                             else self.head.paired(*key, self.evidence_retention))
        slo = self.spec.canary.slo
        shadow = Shadow(pair, evidence, slo.max_p99_ms)
        if old is not None and old.champion == pair.champion:
            shadow.limit_ms, shadow.limit_due = old.limit_ms, old.limit_due
        self.shadow = shadow

    def shadow_key(self, pair: ShadowPair | None) -> tuple[str, str, float] | None:
        """What :meth:`apply_shadow` would make of ``pair`` here (to tell whether the runtime must change)."""
        if pair is None or pair.champion not in self.versions or pair.challenger not in self.versions:
            return None
        return (pair.champion, pair.challenger, pair.sample)

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


class RequestIds:
    """Request ids: 128 random bits each (32 hex digits, as a uuid4's), from the OS's CSPRNG read 4 KiB at a time:
    one ``getrandom`` call per 256 ids instead of one per request (~20 us each in a VM). Refilled after a fork,
    so two processes never hand out the same ids."""

    def __init__(self) -> None:
        self._buffer, self._at, self._pid = b"", 0, -1

    def next(self) -> str:
        if self._at >= len(self._buffer) or self._pid != os.getpid():
            self._buffer, self._at, self._pid = os.urandom(4096), 0, os.getpid()
        at = self._at
        self._at = at + 16
        return self._buffer[at:at + 16].hex()


def default_loader(paths: StatePaths) -> Callable[[ModelSpec, str], FastScorer | TorchScorer]:
    """Load a registered version from the MLflow registry into its scorer (:func:`scoring.scorer_for`: NumPy for
    the built-in MLP, torch for a module of the user's own)."""

    def load(spec: ModelSpec, version: str) -> FastScorer | TorchScorer:
        import tempfile

        from lifecycle.registry.store import Registry
        from lifecycle.training.packaging import load_model_dir

        with tempfile.TemporaryDirectory() as tmp:
            return scorer_for(load_model_dir(Registry(paths).download_model(spec.model_name, version, Path(tmp))))

    return load


def gateway_token(paths: StatePaths) -> str:
    """``$LIFECYCLE_GATEWAY_TOKEN``, else a random token kept in the state folder (never in the repo); at least
    32 characters (:func:`lifecycle.paths.check_token`)."""
    return paths.gateway_token()


class Gateway:
    def __init__(self, specs: list[ModelSpec], paths: StatePaths | None = None, *, token: str | None = None,
                 loader: Callable[[ModelSpec, str], FastScorer | TorchScorer] | None = None, sync_seconds: float = 1.0,
                 feedback_token: str | None = None) -> None:
        self.paths = paths or StatePaths.current()
        self.models = {s.name: ModelRuntime(s) for s in specs}
        self.store = TrafficStore(self.paths.ledger_db)
        self.token = check_token(token, "Gateway(token=...)") if token else gateway_token(self.paths)
        # Posting labels needs this (or the admin token): $LIFECYCLE_FEEDBACK_TOKEN, else secrets/feedback_token.
        self.feedback_token = (check_token(feedback_token, "Gateway(feedback_token=...)") if feedback_token
                               else self.paths.feedback_token())
        self.loader = loader or default_loader(self.paths)
        self.logs = LogWriter(self.paths.root / "serving")
        self.sync_seconds = sync_seconds
        self.load_failures: dict[tuple[str, str], LoadFailure] = {}  # (model, version) -> why, until it loads
        self.load_failed_total: dict[str, int] = dict.fromkeys(self.models, 0)
        self.sync_errors: dict[str, str] = {}  # model -> why its last sync failed, until one succeeds
        self._lock = asyncio.Lock()
        self._sync_task: asyncio.Task | None = None
        self._metrics = _Metrics()
        self._metrics.registry.register(_StateCollector(self))
        self._ids = RequestIds()

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        for name in self.models:  # a model (or version) that cannot be served now never stops the others
            await self._sync_safely(name, bootstrap=True)
        self._sync_task = asyncio.create_task(self._sync_loop())
        _freeze_heap()

    async def _sync_safely(self, name: str, bootstrap: bool) -> None:
        try:
            await self._sync_model(name, bootstrap=bootstrap)
        except Exception as err:  # noqa: BLE001 - keep serving with the state we have
            if name not in self.sync_errors:
                log.warning("gateway: sync of %s failed: %s", name, err)
            self.sync_errors[name] = f"{type(err).__name__}: {cut(str(err), 200)}"
        else:
            self.sync_errors.pop(name, None)

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
            now = time.time()
            for name, rt in self.models.items():
                rt.index.expire(now)  # labels older than serving.feedback_ttl_seconds match nothing anyway
                # A model with no traffic yet starts serving its champion once the registry has one.
                await self._sync_safely(name, bootstrap=tick % BOOTSTRAP_EVERY == 0)
                shadow = rt.shadow
                if shadow is not None and time.monotonic() >= shadow.limit_due:
                    try:
                        await self.refresh_shadow_limit(name)
                    except Exception:  # the previous limit stays; serving goes on
                        log.exception("gateway: cannot recompute the shadow latency limit of %s", name)

    async def _sync_model(self, name: str, bootstrap: bool = False) -> None:
        """Make the runtime match the traffic store (another worker or a restart may have changed it)."""
        rt = self.models[name]
        stored = await asyncio.to_thread(self.store.versions, name)
        if not stored and bootstrap:
            champion = await asyncio.to_thread(self._champion, rt.spec)
            if champion is None:
                log.debug("gateway: %s has no champion yet; not serving it", name)
                return
            if await self._load_stored(name, champion):
                await self.set_weights(name, {champion: 100}, "bootstrap: serve the registry's champion")
            return
        for version, (_, loaded) in stored.items():
            if loaded and version not in rt.versions:
                await self._load_stored(name, version)
            elif not loaded and version in rt.versions and rt.weights.get(version, 0) == 0:
                self._drop(name, version)
        for model, version in [k for k in self.load_failures if k[0] == name]:
            if stored and not stored.get(version, (0, False))[1]:  # unloaded meanwhile: nothing to retry
                self.load_failures.pop((model, version), None)
        async with self._lock:  # re-read under the lock: a concurrent admin change must not be undone
            stored = await asyncio.to_thread(self.store.versions, name)
            weights = {v: w for v, (w, loaded) in stored.items() if loaded and v in rt.versions}
            # A version that failed to load is left out: its share goes to the others (the last route takes the
            # remainder) rather than the model serving nothing.
            failed = sum(w for v, (w, loaded) in stored.items() if loaded and (name, v) in self.load_failures)
            if weights != rt.weights and (sum(weights.values()) == 100
                                          or (failed and sum(weights.values()) + failed == 100
                                              and any(weights.values()))):
                rt.apply(weights)
            # The shadow pair another worker (or a previous run) set: mirrored once both versions load here.
            pair = rt.shadow_stored = await asyncio.to_thread(self.store.shadow, name)
            have = rt.shadow.key if rt.shadow is not None else None
            if rt.shadow_key(pair) != have:
                rt.apply_shadow(pair)

    async def _load_stored(self, name: str, version: str) -> bool:
        """Load a version the traffic store (or the registry's champion alias) says to serve; -> whether it is
        loaded. A failure is never raised: it is logged, kept in ``load_failures`` (``/readyz``, ``/metrics``)
        and tried again after a backoff (:data:`LOAD_RETRY_SECONDS`) while the other versions serve."""
        key = (name, version)
        failed = self.load_failures.get(key)
        if failed is not None and time.monotonic() < failed.retry_at:
            return False
        try:
            await self.load(name, version)
        except Exception as err:  # noqa: BLE001 - a missing or corrupt artifact must not stop the gateway
            attempts = failed.attempts + 1 if failed else 1
            pause = min(LOAD_RETRY_SECONDS[0] * 2 ** (attempts - 1), LOAD_RETRY_SECONDS[1])
            self.load_failures[key] = LoadFailure(f"{type(err).__name__}: {cut(str(err), 200)}", attempts,
                                                  time.monotonic() + pause)
            self.load_failed_total[name] = self.load_failed_total.get(name, 0) + 1
            log.error("gateway: cannot load %s v%s (attempt %d, next in %.0f s); serving the others: %s", name,
                      version, attempts, pause, self.load_failures[key].error)
            return False
        return True

    def _champion(self, spec: ModelSpec) -> str | None:
        from lifecycle.registry.store import CHAMPION, Registry

        mv = Registry(self.paths).by_alias(spec.model_name, CHAMPION)
        return str(mv.version) if mv else None

    # ---- admin operations ------------------------------------------------------------------------
    def runtime(self, model: str) -> ModelRuntime:
        rt = self.models.get(model)
        if rt is None:
            raise UnknownModelError(f"unknown model {show(model)}", sorted(self.models))
        return rt

    async def load(self, model: str, version: str) -> Version:
        rt = self.runtime(model)
        if version in rt.versions:
            return rt.versions[version]
        scorer = await asyncio.to_thread(self.loader, rt.spec, version)
        head = rt.head
        if head is not None:
            head.check(scorer, model, version)
        elif getattr(scorer, "task", "binary") != "binary":
            raise TaskMismatchError(f"{model} v{version} is a {scorer.task} model but the spec's task is binary: it "
                                    "cannot be served under this spec")
        warm = [dict.fromkeys(rt.schema.numeric, 0.0) | dict.fromkeys(rt.schema.categorical, "")]
        # warm-up before it can be routed to
        await asyncio.to_thread(scorer.proba if head is None else lambda rows: head.outputs(scorer, rows), warm)
        loaded = Version(version, scorer, time.time())
        async with self._lock:
            rt.versions = {**rt.versions, version: loaded}
            rt.weights = {**rt.weights, version: rt.weights.get(version, 0)}
            rt.stats.setdefault(version, rt.new_stats())
        self.load_failures.pop((model, version), None)
        await asyncio.to_thread(self.store.mark_loaded, model, version, True)
        _freeze_heap()
        log.info("gateway: loaded %s v%s", model, version)
        return loaded

    def _drop(self, model: str, version: str) -> None:
        rt = self.models[model]
        rt.versions = {k: v for k, v in rt.versions.items() if k != version}
        rt.weights = {k: w for k, w in rt.weights.items() if k != version}
        rt.stats.pop(version, None)  # its live state goes with it: a reload starts afresh
        if rt.shadow is not None and rt.shadow.partner(version) is not None:
            rt.shadow = None
        rt.evidence = {pair: ev for pair, ev in rt.evidence.items() if version not in pair}
        entries = rt.index.drop(version)
        if entries and len(entries) > 10_000:  # freeing a large one takes a while: not on the event loop
            threading.Thread(target=entries.clear, name="index-drop", daemon=True).start()

    async def unload(self, model: str, version: str) -> None:
        rt = self.runtime(model)
        if version not in rt.versions:
            raise NotFoundError(f"version {version} of {model} is not loaded (loaded: {sorted(rt.versions)})")
        if rt.weights.get(version, 0) > 0:
            raise WeightHeldError(f"version {version} still has weight {rt.weights[version]}; move its traffic "
                                  "first")
        shadow = rt.shadow
        if shadow is not None and shadow.partner(version) is not None:
            raise ShadowHeldError(f"version {version} is in the shadow pair (champion {shadow.champion}, challenger "
                                  f"{shadow.challenger}); clear the shadow first (DELETE /admin/models/{model}/shadow)")
        await asyncio.to_thread(self.store.mark_loaded, model, version, False)
        async with self._lock:
            self._drop(model, version)
        log.info("gateway: unloaded %s v%s", model, version)

    async def set_weights(self, model: str, weights: dict[str, int], reason: str,
                          expected_revision: int | None = None) -> Applied:
        """Set the weights (versions not named get 0); returns the runtime's weights after the change (every loaded
        version) and the model's new traffic revision. ``expected_revision``: a compare-and-set
        (:meth:`TrafficStore.set_weights`): if the traffic changed since, :class:`TrafficConflictError` (409) and
        nothing changes; a stale writer hears of the conflict before any refusal of its weights."""
        rt = self.runtime(model)
        weights = check_weights({str(k): v for k, v in weights.items()})
        if expected_revision is not None:
            check_revision(expected_revision)
        async with self._lock:
            missing = sorted(set(weights) - set(rt.versions), key=int)
            if missing:
                if expected_revision is not None:
                    await asyncio.to_thread(self.store.expect, model, expected_revision)
                raise TrafficError(f"version(s) {show_names(missing)} not loaded in the gateway (loaded: "
                                   f"{sorted(rt.versions, key=int)})")
            applied = await asyncio.to_thread(self.store.set_weights, model, weights, reason, expected_revision)
            rt.apply(applied.weights)
            result = Applied(rt.weights, applied.revision)
        log.info("gateway: %s weights %s (%s; revision %d)", model, applied.weights, reason, applied.revision)
        return result

    async def set_shadow(self, model: str, champion: str, challenger: str, sample: float = 1.0,
                         expected_revision: int | None = None) -> tuple[ShadowPair, int]:
        """Mirror requests between ``champion`` and ``challenger`` (both loaded, distinct), for a share ``sample``
        in (0, 1] of them; persisted (other workers and a restart pick it up) and raising the traffic revision.
        ``expected_revision``: a compare-and-set, as for :meth:`set_weights`. -> (the pair, the new revision)."""
        rt = self.runtime(model)
        champion, challenger, sample = check_shadow(champion, challenger, sample)
        if expected_revision is not None:
            check_revision(expected_revision)
        async with self._lock:
            missing = [v for v in (champion, challenger) if v not in rt.versions]
            if missing:
                if expected_revision is not None:
                    await asyncio.to_thread(self.store.expect, model, expected_revision)
                raise TrafficError(f"version(s) {show_names(missing)} not loaded in the gateway (loaded: "
                                   f"{sorted(rt.versions, key=int)}); load them first")
            pair, revision = await asyncio.to_thread(self.store.set_shadow, model, champion, challenger, sample,
                                                     expected_revision)
            rt.apply_shadow(pair)
            rt.shadow_stored = pair
        log.info("gateway: %s shadow: v%s mirrors v%s and back (sample %g; revision %d)", model, challenger,
                 champion, sample, revision)
        return pair, revision

    async def clear_shadow(self, model: str, expected_revision: int | None = None) -> int:
        """Stop mirroring (the pair's evidence stays readable); -> the revision (raised if a pair was set)."""
        rt = self.runtime(model)
        if expected_revision is not None:
            check_revision(expected_revision)
        async with self._lock:
            revision = await asyncio.to_thread(self.store.clear_shadow, model, expected_revision)
            had = rt.shadow is not None
            rt.apply_shadow(None)
            rt.shadow_stored = None
        if had:
            log.info("gateway: %s shadow cleared (revision %d)", model, revision)
        return revision

    async def refresh_shadow_limit(self, model: str) -> float | None:
        """Recompute the shadow challenger's latency limit of the moment: max(canary.slo.max_p99_ms,
        max_p99_ratio x the champion's p99 over the last ``SHADOW_LIMIT_WINDOW`` seconds), the p99 in a worker
        thread; -> the limit (None: no shadow pair)."""
        rt = self.runtime(model)
        shadow = rt.shadow
        if shadow is None:
            return None
        shadow.limit_due = time.monotonic() + SHADOW_LIMIT_SECONDS
        since = time.time() - SHADOW_LIMIT_WINDOW
        stats = rt.stats.get(shadow.champion)
        snapshot = stats.snapshot(since) if stats is not None else []
        p99 = (await asyncio.to_thread(summarize, snapshot, since))["p99_ms"] if snapshot else None
        slo = rt.spec.canary.slo
        shadow.limit_ms = max(slo.max_p99_ms, (p99 or 0.0) * slo.max_p99_ratio)
        return shadow.limit_ms

    # ---- serving -----------------------------------------------------------------------------------
    def predict(self, model: str, body: bytes, key: str | None) -> dict[str, Any]:
        """Score a request and answer it (in process: a mirrored scoring, with a shadow pair, runs here once the
        answer is built; the HTTP endpoint runs it after the response is sent: :meth:`predict_deferred`)."""
        try:
            answer, job = self.predict_deferred(model, body, key)
        except ScoringError as err:
            if err.mirror is not None:
                self.mirror(err.mirror)
            raise
        if job is not None:
            self.mirror(job)
        return answer

    def predict_deferred(self, model: str, body: bytes, key: str | None) -> tuple[dict[str, Any], Mirror | None]:
        """-> (the answer, the mirrored scoring to run after it is sent, or None). A version that fails to score
        raises :class:`ScoringError`, carrying its mirrored scoring (``mirror``) if any."""
        start = time.perf_counter()
        rt = self.runtime(model)
        rows, flagged = _load(body, rt.schema.validate)
        if key is None and rt.spec.serving.sticky_key:
            key = rows[0].get(rt.spec.serving.sticky_key)
            key = None if key is None else str(key)
        version = rt.route(key)
        if version is None:
            raise UnavailableError(f"no version of {model} has traffic")
        head = rt.head
        try:
            p = version.scorer.proba(rows) if head is None else head.outputs(version.scorer, rows)
        except Exception as err:  # a version that cannot score counts against it in the canary's error rate
            now = time.time()
            latency_ms = (time.perf_counter() - start) * 1000
            stats = rt.stats.get(version.version)
            if stats is not None:
                stats.request(now, latency_ms, True)
            self._metrics.observe(model, version.version, "error", None)
            log.exception("gateway: %s v%s failed to score", model, version.version)
            failure = ScoringError(f"{model} v{version.version} failed to score: {type(err).__name__}")
            shadow = rt.shadow
            if shadow is not None:  # the other version of the pair still scores it: a paired failure
                failure.mirror = self._shadowed(model, rt, shadow, version.version, rows, None, now, None,
                                                latency_ms, flagged)
            raise failure from err
        if head is not None:
            return self._answer_task(model, rt, head, version, rows, flagged, p, start)
        labels = tuple((p >= version.scorer.threshold).astype(int).tolist())  # a tuple: untracked by the GC
        request_id = self._ids.next()
        now = time.time()
        latency_ms = (time.perf_counter() - start) * 1000
        stats = rt.stats.get(version.version)
        if stats is not None:
            stats.request(now, latency_ms)
        # Kept for the labels to come (bounded by serving.index_max_mb and feedback_ttl_seconds): the
        # probabilities, 8 bytes a row; feedback derives the decision it judges from them (see feedback).
        p64 = np.ascontiguousarray(p, dtype=np.float64)
        rt.index.add(version.version, request_id, p64.tobytes(), now)
        record = {"request_id": request_id, "ts": now, "model": model, "version": version.version, "rows": rows,
                  "probability": p, "label": labels, "latency_ms": latency_ms}
        predictions = [{"probability": float(pi), "label": li} for pi, li in zip(p, labels, strict=True)]
        if flagged:  # served although out of the spec's ranges or categories (serving.out_of_spec: flag)
            record["out_of_spec"] = [{"row": i, "fields": fields} for i, fields in flagged]
            for i, fields in flagged:
                predictions[i]["out_of_spec"] = fields
            self._metrics.out_of_spec(model, flagged)
        self.logs.put("predictions", model, now, record)
        self._metrics.observe(model, version.version, "ok", latency_ms / 1000)
        shadow = rt.shadow
        job = None if shadow is None else self._shadowed(model, rt, shadow, version.version, rows, request_id, now,
                                                         p64, latency_ms, flagged)
        return {"request_id": request_id, "model": model, "version": version.version, "predictions": predictions}, job

    def _answer_task(self, model: str, rt: ModelRuntime, head: TaskHead, version: Version,
                     rows: list[dict[str, Any]], flagged: list[tuple[int, list[str]]], out: np.ndarray,
                     start: float) -> tuple[dict[str, Any], Mirror | None]:
        """:meth:`predict_deferred`'s answer for a multiclass or regression model (``out``: its outputs): the
        predictions, the log record and the index entry as :mod:`lifecycle.serving.tasks` says."""
        request_id = self._ids.next()
        now = time.time()
        latency_ms = (time.perf_counter() - start) * 1000
        stats = rt.stats.get(version.version)
        if stats is not None:
            stats.request(now, latency_ms)
        rt.index.add(version.version, request_id, out.tobytes(), now)
        predictions, fields = head.answer(out)
        record = {"request_id": request_id, "ts": now, "model": model, "version": version.version, "rows": rows,
                  **fields, "latency_ms": latency_ms}
        if flagged:
            record["out_of_spec"] = [{"row": i, "fields": names} for i, names in flagged]
            for i, names in flagged:
                predictions[i]["out_of_spec"] = names
            self._metrics.out_of_spec(model, flagged)
        self.logs.put("predictions", model, now, record)
        self._metrics.observe(model, version.version, "ok", latency_ms / 1000)
        shadow = rt.shadow
        job = None if shadow is None else self._shadowed(model, rt, shadow, version.version, rows, request_id, now,
                                                         out, latency_ms, flagged)
        return {"request_id": request_id, "model": model, "version": version.version, "predictions": predictions}, job

    def _shadowed(self, model: str, rt: ModelRuntime, shadow: Shadow, served: str, rows: list[dict[str, Any]],
                  request_id: str | None, now: float, p: np.ndarray | None, latency_ms: float,
                  flagged: list[tuple[int, list[str]]] | None) -> Mirror | None:
        """Count a request answered by a version of the shadow pair (exposure; a slow challenger answer), and
        -> its mirrored scoring if sampled (None: not in the pair, not sampled, or the other version gone)."""
        partner = shadow.partner(served)
        if partner is None:
            return None
        by_challenger = served == shadow.challenger
        shadow.evidence.served(now, by_challenger, by_challenger and latency_ms > shadow.limit_ms)
        if not shadow.sampled(request_id):
            return None
        other = rt.versions.get(partner)
        if other is None:
            return None
        return Mirror(model, rt, shadow, served, other, rows, request_id, now, p, flagged or None)

    def mirror(self, job: Mirror) -> None:
        """Score a request again with the other version of the shadow pair, log that prediction (same request id,
        ``"shadow": true``), join it to the request's index entry and record the pair's evidence. Never raises: a
        scoring failure is the mirrored version's error in the pair; anything else is logged."""
        try:
            self._mirror(job)
        except Exception:  # the user has had the answer; nothing here may reach them
            log.exception("gateway: shadow scoring of a %s request failed unexpectedly", job.model)

    def _mirror(self, job: Mirror) -> None:
        rt, shadow, version = job.rt, job.shadow, job.version
        mirrored = version.version
        start = time.perf_counter()
        p: np.ndarray | None
        head = rt.head
        try:
            if head is None:
                p = np.ascontiguousarray(version.scorer.proba(job.rows), dtype=np.float64).reshape(-1)
                if len(p) != len(job.rows):
                    raise ValueError(f"{len(p)} probabilities for {len(job.rows)} rows")
            else:
                p = head.outputs(version.scorer, job.rows)
        except Exception as err:  # noqa: BLE001 - the mirrored version's error, in the pair only
            p = None
            rt.shadow_errors += 1
            self._metrics.shadow(job.model, mirrored, "error")
            if time.monotonic() - rt.shadow_logged_at >= SHADOW_LOG_SECONDS:
                rt.shadow_logged_at = time.monotonic()
                log.warning("gateway: shadow v%s of %s failed to score (%d failures so far; logged at most every "
                            "%.0f s): %s: %s", mirrored, job.model, rt.shadow_errors, SHADOW_LOG_SECONDS,
                            type(err).__name__, cut(str(err), 200))
        else:
            self._metrics.shadow(job.model, mirrored, "ok")
        latency_ms = (time.perf_counter() - start) * 1000
        to_challenger = mirrored == shadow.challenger
        p_c, p_x = (job.p, p) if to_challenger else (p, job.p)
        shadow.evidence.mirrored(job.ts, p_c is None, p_x is None, p_c, p_x)
        if p is None or job.p is None or job.request_id is None:
            return  # nothing to pair: no answer, or no mirrored prediction
        if head is None:
            labels = tuple((p >= version.scorer.threshold).astype(int).tolist())
            record = {"request_id": job.request_id, "ts": job.ts, "model": job.model, "version": mirrored,
                      "rows": job.rows, "probability": p, "label": labels, "latency_ms": latency_ms, "shadow": True,
                      "served_by": job.served}
        else:
            record = {"request_id": job.request_id, "ts": job.ts, "model": job.model, "version": mirrored,
                      "rows": job.rows, **head.answer(p)[1], "latency_ms": latency_ms, "shadow": True,
                      "served_by": job.served}
        if job.flagged:
            record["out_of_spec"] = [{"row": i, "fields": fields} for i, fields in job.flagged]
        self.logs.put("predictions", job.model, job.ts, record)
        entry = rt.index.add_mirror(job.served, job.request_id, mirrored, p.tobytes(), shadow.evidence.epoch)
        first = entry_labels(entry) if entry is not None else None
        if first is not None:  # the request's label came before its mirrored scoring: it judges both now
            y = np.frombuffer(first, dtype=np.int8) if head is None else head.decode_labels(first)
            shadow.evidence.labelled(time.time(), p_c, p_x, y)

    def feedback(self, model: str, body: bytes, client: str | None = None) -> dict[str, Any]:
        """Match labels to recent predictions (live stats) and log them. ``client`` (the caller's address): charged
        its labels against the per-client rate limit (serving.feedback_rate/_burst): over it, 429 and nothing done.

        Only the first label of a request id counts (live stats, paired evidence); a later one is logged with
        ``"duplicate": true``, answered in ``duplicates`` (not an error: a client may retry) and counted in
        ``gateway_feedback_duplicates_total``. ``matched``: labels that found their prediction and counted. A label
        counts for the versions that scored the request: the one that answered it (live stats, and the pair's
        evidence) and, with a shadow pair, the one it was mirrored to (the pair's evidence)."""
        rt = self.runtime(model)
        head = rt.head
        clean = _load(body, lambda data: _feedback_items(data, rt.schema.max_rows, head))
        if client is not None:
            # labels per item: a list (binary), or the task head's (logged, encoded) pair
            self._charge(rt, client, sum(len(labels) if head is None else len(labels[0]) for _, labels in clean))
        now = time.time()
        matched = duplicates = 0
        if head is not None:
            return self._feedback_task(model, rt, head, clean, now)
        for rid, labels in clean:
            found = rt.index.find(rid, now)
            record = {"request_id": rid, "ts": now, "model": model, "label": labels}
            if found is not None:
                version, entry = found
                record["version"] = version
                probs = entry[0]
                if entry_labels(entry) is not None:
                    duplicates += 1
                    record["duplicate"] = True
                elif len(probs) == 8 * len(labels):
                    rt.index.mark_labelled(version, rid, bytes(labels))
                    stats = rt.stats.get(version)
                    if stats is not None:
                        # Live accuracy is judged on the calibrated decision (p >= 0.5), not on each version's
                        # F1-tuned threshold: thresholds trade accuracy for recall differently per version, which
                        # would make accuracy compare thresholds rather than models. Calibration is gated offline.
                        for prob, truth in zip(np.frombuffer(probs).tolist(), labels, strict=True):
                            stats.label(now, (prob >= 0.5) == truth, (prob - truth) ** 2)
                    mirror = entry_mirror(entry)
                    if mirror is not None:
                        self._pair_label(rt, version, probs, mirror, labels, now)
                    matched += 1
                else:
                    matched += 1
            self.logs.put("feedback", model, now, record)
        rt.feedback_duplicates += duplicates
        return {"accepted": len(clean), "matched": matched, "duplicates": duplicates}

    def _feedback_task(self, model: str, rt: ModelRuntime, head: TaskHead, clean: list[tuple[str, Any]],
                       now: float) -> dict[str, Any]:
        """:meth:`feedback` for a multiclass or regression model: ``clean`` holds (request id, (labels as logged,
        labels as the index keeps them)); the same rules (the first label of a request counts, in the live stats
        of the version that answered and in its pair's evidence)."""
        matched = duplicates = 0
        for rid, (logged, encoded) in clean:
            found = rt.index.find(rid, now)
            record = {"request_id": rid, "ts": now, "model": model, "label": logged}
            if found is not None:
                version, entry = found
                record["version"] = version
                outputs = entry[0]
                if entry_labels(entry) is not None:
                    duplicates += 1
                    record["duplicate"] = True
                elif len(outputs) == head.row_bytes * len(logged):
                    rt.index.mark_labelled(version, rid, encoded)
                    stats, loaded = rt.stats.get(version), rt.versions.get(version)
                    y = head.decode_labels(encoded)
                    if stats is not None:
                        head.live(stats, now, head.decode(outputs), y, loaded.scorer if loaded else None)
                    mirror = entry_mirror(entry)
                    if mirror is not None:
                        self._pair_label(rt, version, outputs, mirror, y, now)
                    matched += 1
                else:
                    matched += 1
            self.logs.put("feedback", model, now, record)
        rt.feedback_duplicates += duplicates
        return {"accepted": len(clean), "matched": matched, "duplicates": duplicates}

    @staticmethod
    def _pair_label(rt: ModelRuntime, served: str, probs: bytes, mirror: tuple[str, bytes, int],
                    labels: list[int] | np.ndarray, now: float) -> None:
        """The first label of a mirrored request, in the evidence its pair counted in (none if that evidence is
        gone: a version of the pair unloaded, or the pair set anew since). ``labels``: binary 0/1, else as
        :meth:`TaskHead.decode_labels` gives them."""
        mirrored, mirrored_probs, epoch = mirror
        head = rt.head
        if head is None:
            p_served, p_mirrored = np.frombuffer(probs), np.frombuffer(mirrored_probs)
        else:
            p_served, p_mirrored = head.decode(probs), head.decode(mirrored_probs)
        evidence = rt.evidence.get((served, mirrored))
        if evidence is not None:
            p_c, p_x = p_served, p_mirrored
        else:
            evidence = rt.evidence.get((mirrored, served))
            p_c, p_x = p_mirrored, p_served
        if evidence is not None and evidence.epoch == epoch:
            evidence.labelled(now, p_c, p_x, np.asarray(labels, dtype=np.int8) if head is None else labels)

    def _charge(self, rt: ModelRuntime, client: str, labels: int) -> None:
        limiter = rt.limiter
        if labels > limiter.burst:
            raise PayloadTooLargeError(f"{labels} labels in one request exceed serving.feedback_burst "
                                       f"({limiter.burst:g}): send them in smaller requests")
        wait = limiter.take(client, labels, time.monotonic())
        if wait:
            raise RateLimitedError(f"feedback rate limit of {limiter.rate:g} labels/s per client (burst "
                                   f"{limiter.burst:g}) reached; retry in {max(1, math.ceil(wait))} s", wait)

    def stats(self, model: str, since: float) -> dict[str, Any]:
        """Live stats per version since ``since`` (computed here; the endpoint uses :meth:`stats_async`)."""
        rt = self.runtime(model)
        return {"model": model, "since": since, "weights": rt.weights,
                "versions": {v: s.summary(since) for v, s in rt.stats.items()}}

    async def stats_async(self, model: str, since: float) -> dict[str, Any]:
        """:meth:`stats` without stalling the event loop: a snapshot of the buckets here (O(buckets)), the O(n)
        summary (latency percentiles, Brier score) in a worker thread."""
        rt = self.runtime(model)
        weights = rt.weights
        snapshots = {v: s.snapshot(since) for v, s in rt.stats.items()}
        versions = await asyncio.to_thread(_summaries, snapshots, since, rt.head is None or rt.head.graded)
        return {"model": model, "since": since, "weights": weights, "versions": versions}

    def _evidence_of(self, model: str, challenger: str) -> tuple[ModelRuntime, PairedLive, bool]:
        rt = self.runtime(model)
        shadow = rt.shadow
        if shadow is not None and shadow.challenger == challenger:
            return rt, shadow.evidence, True
        kept = [ev for (_, x), ev in rt.evidence.items() if x == challenger]
        if not kept:
            raise NotFoundError(f"no paired evidence for v{challenger} of {model}: it has not been a shadow "
                                f"challenger since it was loaded (shadow pair: "
                                f"{shadow.to_dict() if shadow is not None else None})")
        return rt, kept[-1], False

    def evidence(self, model: str, challenger: str, since: float) -> dict[str, Any]:
        """The paired evidence of ``challenger`` against its shadow champion since ``since`` (computed here; the
        endpoint uses :meth:`evidence_async`)."""
        _, ev, active = self._evidence_of(model, challenger)
        return {"model": model, "since": since, "from": ev.first_start(since), "active": active,
                "evidence": ev.summary(since)}

    async def evidence_async(self, model: str, challenger: str, since: float) -> dict[str, Any]:
        """:meth:`evidence` with the bucket snapshot taken here (O(buckets)) and summed in a worker thread.

        -> ``{"model", "since", "from", "active", "evidence"}``: ``evidence`` holds the ``PairedEvidence`` fields
        (``champion``, ``challenger`` and the sums of :data:`~lifecycle.serving.live.EVIDENCE_FIELDS`; a
        multiclass or regression pair's also ``task`` and its own fields: see
        :func:`~lifecycle.serving.live.sum_evidence`) summed over
        the 10 s buckets that end after ``since`` (bucket resolution: the one ``since`` falls in counts whole);
        ``from``: the start of the oldest such bucket (None: none yet); ``active``: whether the pair is the current
        shadow pair (its evidence stays readable after the pair is cleared, until a version of it is unloaded)."""
        _, ev, active = self._evidence_of(model, challenger)
        snapshot, first = ev.snapshot(since), ev.first_start(since)
        fields = await asyncio.to_thread(ev.total, snapshot)
        return {"model": model, "since": since, "from": first, "active": active, "evidence": fields}

    def ready(self) -> tuple[bool, list[str]]:
        """Not ready (503): a weight on a version that is not loaded, a model whose every version with traffic
        failed to load, or a prediction log that cannot write (its thread dead, or failing for longer than
        :data:`LOG_FAILING_SECONDS`). Versions that failed to load while others serve: :meth:`degraded`."""
        problems = [f"{name} v{v} has weight {w} but is not loaded" for name, rt in self.models.items()
                    for v, w in rt.weights.items() if w > 0 and v not in rt.versions]
        for name in sorted({model for model, _ in self.load_failures}):
            if not self.models[name].routes:
                problems.append(f"{name} serves nothing: every version with traffic failed to load")
        for name, err in sorted(self.sync_errors.items()):
            if not self.models[name].routes:
                problems.append(f"{name} serves nothing: its traffic state could not be read ({err})")
        trouble = self.logs.problem(LOG_FAILING_SECONDS)
        if trouble:
            problems.append(trouble)
        return not problems, problems

    def degraded(self) -> list[str]:
        """What does not stop serving but needs a look: versions that failed to load, models whose sync failed."""
        out = [f"{name} v{version} failed to load ({f.attempts} attempt{'s' if f.attempts > 1 else ''}): {f.error}"
               for (name, version), f in sorted(self.load_failures.items())]
        for name, rt in sorted(self.models.items()):
            pair = rt.shadow_stored
            if pair is not None and rt.shadow is None:
                out.append(f"{name}: shadow pair v{pair.champion}/v{pair.challenger} set but not loaded here: "
                           "not mirroring")
        return out + [f"{name}: last sync failed: {err}" for name, err in sorted(self.sync_errors.items())]

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.token.encode())

    def may_post_feedback(self, request: Request) -> bool:
        """``Authorization: Bearer <feedback token>`` (or the admin token); both compared in constant time."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.encode()
        feeder = hmac.compare_digest(given, self.feedback_token.encode())
        admin = hmac.compare_digest(given, self.token.encode())
        return scheme.lower() == "bearer" and (feeder or admin)


def _summaries(snapshots: dict[str, list], since: float, graded: bool = True) -> dict[str, dict[str, Any]]:
    if graded:  # binary and multiclass: the call it always was
        return {version: summarize(buckets, since) for version, buckets in snapshots.items()}
    return {version: summarize(buckets, since, graded) for version, buckets in snapshots.items()}


def _shadow_body(data: Any) -> tuple[str, str, float, int | None]:
    """The admin shadow PUT body ``{"champion": "1", "challenger": "3", "sample": 1.0, "expected_revision": 7}``
    -> (champion, challenger, sample, expected_revision). Not an object, a field missing or unknown: 400; bad
    values (version ids not in plain ASCII digits, the same version twice, sample outside (0, 1]): 422."""
    shape = ('body must be {"champion": version, "challenger": version, "sample": number in (0, 1] (optional), '
             '"expected_revision": int (optional)}')
    if not isinstance(data, dict):
        raise MalformedRequestError(f"{shape}, got {type(data).__name__ if data is not None else 'null'}")
    missing = [k for k in ("champion", "challenger") if k not in data]
    if missing:
        raise MalformedRequestError(f"{shape}: {' and '.join(missing)} missing")
    extra = [k for k in data if k not in ("champion", "challenger", "sample", "expected_revision")]
    if extra:
        raise MalformedRequestError(f"{shape}: unknown field(s) {show_names(extra)}")
    expected = data.get("expected_revision")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise MalformedRequestError(f"expected_revision must be a non-negative integer (the revision a GET "
                                    f"returned), got {show(expected)}")
    champion, challenger, sample = check_shadow(data["champion"], data["challenger"], data.get("sample", 1.0))
    return champion, challenger, sample, None if expected is None else check_revision(expected)


def _freeze_heap() -> None:
    """Move everything alive now (mlflow, torch, the loaded models: millions of objects) out of the cyclic
    GC's reach. Without it every full collection walks them all and stalls requests for ~100 ms (p99)."""
    gc.collect()
    gc.freeze()


#: A body refused by orjson for a number that overflows a double (``1e309``) is parsed again, up to this size,
#: by the standard library (which reads it as infinity) so the refusal can name the row and field.
LOCATE_BYTES = 256 * 1024


def _load(body: bytes, check: Callable[[Any], Any]) -> Any:
    """``check(JSON of body)``, or a 4xx: 400 for a body that is not JSON or nests deeper than ``MAX_DEPTH``,
    422 for a number that overflows to infinity, else whatever ``check`` raises.

    Depth costs nothing on the way to a valid request: every check refuses a container where a value belongs, so
    a valid body is at most three levels deep; only a refused one is measured (iteratively), and refused as too
    deep when it is.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise _unparsable(body, str(err), check) from None
    return _checked(data, check)


def _checked(data: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(data)
    except InvalidRequestError:
        if too_deep(data):
            raise MalformedRequestError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        raise


def _unparsable(body: bytes, reason: str, check: Callable[[Any], Any]) -> InvalidRequestError:
    if "depth limit" in reason:  # orjson's own limit (1024 levels)
        return MalformedRequestError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if "infinity" in reason:  # a number such as 1e309: valid JSON, but not a finite double
        if len(body) <= LOCATE_BYTES:
            try:
                data = json.loads(body, parse_constant=_no_constant, parse_int=_bounded_int)
            except (ValueError, RecursionError):
                pass
            else:
                try:
                    _checked(data, check)
                except InvalidRequestError as err:
                    return err
        return RequestError(f"numbers must be finite: one overflows a double ({cut(reason, 120)})")
    if any(tok in body for tok in (b"NaN", b"Infinity")):
        return MalformedRequestError("NaN and Infinity are not valid feature values; send null for a missing value")
    return MalformedRequestError(f"malformed JSON: {cut(reason, 200)}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int | float:
    """As orjson reads integers: beyond 64 bits, a float (and no 4,300-digit conversion limit to hit)."""
    return int(text) if len(text) <= 18 else float(text)


def _feedback_items(data: Any, max_labels: int, head: TaskHead | None = None) -> list[tuple[str, Any]]:
    """``{"request_id": str, "label": 0|1}`` (or ``"labels": [0|1, ...]``), or an array of them -> (id, labels).
    With a ``head`` (multiclass, regression) the labels are the task's (:meth:`TaskHead.labels`) and each item
    gives (id, (labels as logged, labels as the index keeps them))."""
    items = data if isinstance(data, list) else [data]
    clean = []
    for i, item in enumerate(items):
        where = f"item {i}" if isinstance(data, list) else "feedback"
        if not isinstance(item, dict) or set(item) - {"request_id", "label", "labels"}:
            raise RequestError(f"{where}: expected {{\"request_id\": str, \"label\": "
                               f"{'0|1' if head is None else head.expects}}}")
        rid = item.get("request_id")
        labels = item.get("labels", [item.get("label")])
        if not isinstance(rid, str) or not rid:
            raise RequestError(f"{where}: request_id must be a non-empty string")
        if len(rid) > MAX_REQUEST_ID_CHARS:
            raise RequestError(f"{where}: request_id must be at most {MAX_REQUEST_ID_CHARS} characters")
        if head is not None:
            if not isinstance(labels, list) or not labels:
                raise RequestError(f"{where}: give \"label\" (one row) or \"labels\" (a non-empty list, one per row "
                                   f"of the request), got {show(labels)}")
            if len(labels) > max_labels:
                raise RequestError(f"{where}: at most {max_labels} labels (a request's rows)")
            clean.append((rid, head.labels(where, "labels" if "labels" in item else "label", labels)))
            continue
        if not isinstance(labels, list) or not labels or \
                any(type(x) is not int or x not in (0, 1) for x in labels):
            raise RequestError(f"{where}: label must be 0 or 1 (labels: a non-empty list of them)")
        if len(labels) > max_labels:
            raise RequestError(f"{where}: at most {max_labels} labels (a request's rows)")
        clean.append((rid, labels))
    return clean


def _traffic_body(data: Any) -> tuple[dict[str, int], str, int | None]:
    """The admin traffic PUT body ``{"weights": {version: percent}, "reason": str, "expected_revision": int}``
    -> (weights, reason, expected_revision). ``expected_revision`` is optional (absent or null: no check); not an
    integer (a bool included): 400; negative: 422."""
    shape = 'body must be {"weights": {version: percent}, "reason": str, "expected_revision": int (optional)}'
    if not isinstance(data, dict):
        raise MalformedRequestError(f"{shape}, got {type(data).__name__ if data is not None else 'null'}")
    if "weights" not in data:
        raise MalformedRequestError(f"{shape}: weights missing")
    extra = [k for k in data if k not in ("weights", "reason", "expected_revision")]
    if extra:
        raise MalformedRequestError(f"{shape}: unknown field(s) {show_names(extra)}")
    weights = data["weights"]
    if not isinstance(weights, dict):
        raise MalformedRequestError(f"weights must be an object {{version: percent}}, got {type(weights).__name__}")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise RequestError(f"reason must be a string, got {type(reason).__name__}")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise RequestError(f"reason must be at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    expected = data.get("expected_revision")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise MalformedRequestError(f"expected_revision must be a non-negative integer (the revision a GET of the "
                                    f"traffic returned), got {show(expected)}")
    return check_weights(weights), reason or "admin API", None if expected is None else check_revision(expected)


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
        self.out_of_spec_rows = Counter("gateway_out_of_spec_rows", "Rows served although out of the spec's "
                                        "ranges or categories (serving.out_of_spec: flag), by field",
                                        ["model", "field"], registry=self.registry)
        self.shadow_scored = Counter("gateway_shadow_scored", "Mirrored scorings by the other version of a shadow "
                                     "pair, after the response (status: ok or error)", ["model", "version", "status"],
                                     registry=self.registry)
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._flag_children: dict[tuple[str, str], Any] = {}
        self._shadow_children: dict[tuple[str, str, str], Any] = {}
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

    def shadow(self, model: str, version: str, status: str) -> None:
        key = (model, version, status)
        child = self._shadow_children.get(key)
        if child is None:
            with self._lock:
                child = self._shadow_children[key] = self.shadow_scored.labels(model, version, status)
        child.inc()

    def out_of_spec(self, model: str, flagged: list[tuple[int, list[str]]]) -> None:
        for _, fields in flagged:
            for name in fields:  # spec feature names only: the label set is bounded by the spec
                child = self._flag_children.get((model, name))
                if child is None:
                    with self._lock:
                        child = self._flag_children[(model, name)] = self.out_of_spec_rows.labels(model, name)
                child.inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _StateCollector:
    """Metrics read from the gateway's state when scraped (nothing on the request path): the prediction index,
    the prediction log, versions that failed to load, feedback refused by the rate limit."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gw = self.gateway
        size = GaugeMetricFamily("gateway_index_bytes", "Estimated bytes of the recent-predictions index "
                                 "(serving.index_max_mb)", labels=["model"])
        entries = GaugeMetricFamily("gateway_index_entries", "Predictions kept for their labels", labels=["model"])
        evicted = CounterMetricFamily("gateway_index_evictions", "Predictions evicted from the index before a label "
                                      "came: age (serving.feedback_ttl_seconds), bytes (serving.index_max_mb), "
                                      "unload", labels=["model", "reason"])
        limited = CounterMetricFamily("gateway_feedback_rate_limited", "Feedback requests refused by the per-client "
                                      "rate limit (429)", labels=["model"])
        duplicates = CounterMetricFamily("gateway_feedback_duplicates", "Labels ignored because their request id "
                                         "already had one (only the first label counts)", labels=["model"])
        failed = GaugeMetricFamily("gateway_version_load_failed", "1 for each version the traffic store serves that "
                                   "this gateway could not load", labels=["model", "version"])
        failures = CounterMetricFamily("gateway_version_load_failures", "Failed attempts to load a served version",
                                       labels=["model"])
        for name, rt in gw.models.items():
            size.add_metric([name], rt.index.bytes)
            entries.add_metric([name], len(rt.index))
            for reason, n in rt.index.evicted.items():
                evicted.add_metric([name, reason], n)
            limited.add_metric([name], rt.limiter.refused)
            duplicates.add_metric([name], rt.feedback_duplicates)
            failures.add_metric([name], gw.load_failed_total.get(name, 0))
        for (name, version) in sorted(gw.load_failures):
            failed.add_metric([name, version], 1)
        logs = gw.logs
        yield from (size, entries, evicted, limited, duplicates, failed, failures)
        yield CounterMetricFamily("gateway_log_dropped", "Prediction and feedback log records dropped (the queue "
                                  "full while writes failed)", value=logs.dropped)
        yield CounterMetricFamily("gateway_log_write_errors", "Failed attempts to append to the prediction log",
                                  value=logs.write_errors)
        yield GaugeMetricFamily("gateway_log_backlog_bytes", "Log bytes waiting to be written",
                                value=logs.backlog_bytes)
        yield GaugeMetricFamily("gateway_log_healthy", "1 while the prediction log writes (see /readyz)",
                                value=0 if logs.problem(LOG_FAILING_SECONDS) else 1)


def create_app(gateway: Gateway) -> Starlette:
    async def read_body(request: Request) -> bytes:
        """The body, streamed and refused once past ``MAX_BODY_BYTES`` (a chunked upload without a length is
        never read whole); one copy at most (none for a body that arrives in one piece)."""
        ctype = request.headers.get("content-type")
        if ctype:
            media = ctype.partition(";")[0].strip().lower()
            if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
                raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {show(media)}")
        length = request.headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise MalformedRequestError(f"Content-Length must be a number of bytes, got {show(length)}")
            if len(length) > 18 or int(length) > MAX_BODY_BYTES:  # 18 digits: int() never meets its digit limit
                raise BodyTooLargeError(f"body of {cut(length, 24)} bytes exceeds the limit of {MAX_BODY_BYTES}")
        # ASGI's receive() directly (what Request.stream() does, without an async generator per request).
        receive = request.receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise MalformedRequestError("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLargeError(f"body exceeds the limit of {MAX_BODY_BYTES} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

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
                message = str(err)
                if isinstance(err, UnknownModelError) and (admin or gateway.authorized(request)):
                    message += f"; served: {err.served}"
                # The rest of an oversized body is never read: close the connection rather than drain it.
                headers = {"Connection": "close"} if isinstance(err, BodyTooLargeError) else None
                if isinstance(err, RateLimitedError):
                    headers = {"Retry-After": str(err.retry_after)}
                response = _error(status, message, headers)
                if isinstance(err, ScoringError) and err.mirror is not None:  # the pair's other version, after
                    response.background = BackgroundTask(run_mirror, err.mirror)
                return response
            except Exception as err:
                log.exception("gateway: unexpected error on %s", request.url.path)
                return _error(500, f"internal error: {type(err).__name__}")
        return endpoint

    async def run_mirror(job: Mirror) -> None:
        gateway.mirror(job)  # on the event loop, once the response is sent (NumPy scoring: microseconds)

    async def predict(request: Request) -> Response:
        body = await read_body(request)
        answer, job = gateway.predict_deferred(request.path_params["model"], body, request.headers.get("x-routing-key"))
        response = _json(answer)
        if job is not None:  # shadow: the other version of the pair scores it after the response is sent
            response.background = BackgroundTask(run_mirror, job)
        return response

    async def feedback(request: Request) -> Response:
        if not gateway.may_post_feedback(request):  # before reading a byte of the body
            raise UnauthorizedError("feedback needs 'Authorization: Bearer <token>' with the feedback token (or the "
                                    "gateway's admin token)")
        client = request.client.host if request.client else "-"
        return _json(gateway.feedback(request.path_params["model"], await read_body(request), client), 202)

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, problems = gateway.ready()
        return _json({"ready": ok, "problems": problems, "degraded": gateway.degraded()}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(gateway._metrics.render(), media_type="text/plain; version=0.0.4")

    async def traffic(request: Request) -> Response:
        """GET: ``{"model", "weights", "revision", "loaded", "history"}``; ``weights`` and ``revision`` are one
        consistent view (read under the gateway's lock), each history row carries the revision it made.

        PUT ``{"weights": {...}, "reason": str, "expected_revision": int}`` answers the same shape after the change.
        ``expected_revision`` (optional, in the body; no ``If-Match`` header) makes it a compare-and-set: pass the
        ``revision`` the GET (or the last PUT) returned, and if any weight change, load or unload happened since,
        nothing changes and the answer is 409 ``{"error", "revision", "weights"}`` with the current revision and
        weights. Not an integer (a bool included): 400; negative: 422."""
        model = request.path_params["model"]
        rt = gateway.runtime(model)
        if request.method == "PUT":
            weights, reason, expected = _load(await read_body(request), _traffic_body)
            try:
                current, revision = await gateway.set_weights(model, weights, reason, expected_revision=expected)
            except TrafficConflictError as err:
                gateway._metrics.observe(model, "-", "409", None)
                return _error(409, str(err), revision=err.revision, weights=err.weights)
        else:
            async with gateway._lock:  # a change through this gateway writes the store and applies under it
                current = rt.weights
                revision = await asyncio.to_thread(gateway.store.revision, model)
        return _json({"model": model, "weights": current, "revision": revision, "loaded": sorted(rt.versions, key=int),
                      "history": gateway.store.history(model)[-20:]})

    async def version(request: Request) -> Response:
        model, v = request.path_params["model"], request.path_params["version"]
        if not VERSION_ID.fullmatch(v):
            raise MalformedRequestError(f"version must be a positive integer in plain ASCII digits (no sign, "
                                        f"leading zero or decimal point), got {show(v)}")
        if request.method == "DELETE":
            await gateway.unload(model, v)
            return _json({"model": model, "version": v, "loaded": False})
        gateway.runtime(model)
        try:
            await gateway.load(model, v)
        except NotFoundError as err:  # the registry's RegistryNotFoundError
            raise NotFoundError(f"{model} v{v} is not in the registry") from err
        return _json({"model": model, "version": v, "loaded": True})

    def since_of(request: Request) -> float:
        text = request.query_params.get("since", "0")
        since = float(text) if PLAIN_NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(since):
            raise MalformedRequestError(f"since must be a unix timestamp in seconds (a finite decimal number), got "
                                        f"{show(text)}")
        return since

    async def stats(request: Request) -> Response:
        return _json(await gateway.stats_async(request.path_params["model"], since_of(request)))

    async def shadow(request: Request) -> Response:
        """GET: ``{"model", "shadow": {"champion", "challenger", "sample", "updated_at", "latency_limit_ms"} or
        null, "revision"}``. PUT ``{"champion": "1", "challenger": "3", "sample": 1.0, "expected_revision": 7}``
        (``sample``: default 1.0; ``expected_revision``: optional compare-and-set, 409 if stale) answers the same
        shape after the change; both versions must be loaded (else 422) and distinct. DELETE: mirroring off (the
        pair's evidence stays readable). A change raises the traffic revision."""
        model = request.path_params["model"]
        rt = gateway.runtime(model)
        if request.method == "PUT":
            champion, challenger, sample, expected = _load(await read_body(request), _shadow_body)
            try:
                _, revision = await gateway.set_shadow(model, champion, challenger, sample, expected)
            except TrafficConflictError as err:
                gateway._metrics.observe(model, "-", "409", None)
                return _error(409, str(err), revision=err.revision, weights=err.weights)
        elif request.method == "DELETE":
            revision = await gateway.clear_shadow(model)
        else:
            async with gateway._lock:
                current = rt.shadow
                revision = await asyncio.to_thread(gateway.store.revision, model)
            return _json({"model": model, "shadow": current.to_dict() if current is not None else None,
                          "revision": revision})
        current = rt.shadow
        return _json({"model": model, "shadow": current.to_dict() if current is not None else None,
                      "revision": revision})

    async def evidence(request: Request) -> Response:
        """``?challenger=<version>&since=<unix seconds>`` -> :meth:`Gateway.evidence_async`."""
        challenger = request.query_params.get("challenger")
        if challenger is None or not VERSION_ID.fullmatch(challenger):
            raise MalformedRequestError(f"challenger must be a version id (a positive integer in plain ASCII digits), "
                                        f"got {show(challenger)}")
        since = since_of(request)
        return _json(await gateway.evidence_async(request.path_params["model"], challenger, since))

    async def http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own refusals (no such route: 404, method not allowed: 405) answer like the gateway's.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return _error(status, str(detail), dict(exc.headers or {}) if isinstance(exc, HTTPException) else None)

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
        Route("/admin/models/{model}/shadow", guarded(shadow, admin=True), methods=["GET", "PUT", "DELETE"]),
        Route("/admin/models/{model}/evidence", guarded(evidence, admin=True)),
    ], exception_handlers={HTTPException: http_error}, lifespan=lifespan)
