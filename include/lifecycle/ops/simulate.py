"""A simulated client population for the gateway: customers with sticky ids sending loan applications at a
steady rate, and the true outcome (the label) reported back as feedback after a delay, as a lender's
back office would. Used by the demo and the deploy tests."""
from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec


class ClientPopulation:
    def __init__(self, spec: ModelSpec, gateway_url: str, *, rate: float = 100.0,
                 feedback_delay: tuple[float, float] = (0.5, 2.0), day: dt.date = dt.date(2026, 2, 1),
                 scenario: str = "stable", seed: int = 0, feedback_token: str | None = None) -> None:
        from lifecycle.paths import StatePaths

        self.spec, self.day, self.scenario = spec, day, scenario
        self.url = gateway_url.rstrip("/") + f"/v1/models/{spec.name}"
        # Posting labels needs the feedback token: the state folder's (or $LIFECYCLE_FEEDBACK_TOKEN), as the gateway's.
        token = feedback_token or StatePaths.current().feedback_token()
        self.feedback_headers = {"Authorization": f"Bearer {token}"}
        self.rate, self.delay = rate, feedback_delay
        self.rng = random.Random(seed)
        # Every request is a new applicant (a fresh row, never re-sent): re-sending a small pool would count the
        # same labels many times and make the canary's z-test see evidence that is not there.
        self.applicants: deque[tuple[dict[str, Any], Any, str]] = deque()  # row, outcome, routing key
        self.pending: deque[tuple[float, str, Any]] = deque()
        self.sent = self.ok = self.failed = self.feedback_sent = 0
        self.feedback_limited = 0  # feedback posts the gateway's rate limit refused (429): sent again later
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}  # transport errors by kind
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one refill at a time; a scenario switch never mixes populations
        self._refill()  # the first day synchronously, so requests start at once
        self._threads = [threading.Thread(target=self._produce, daemon=True, name="applicants"),
                         threading.Thread(target=self._requests, daemon=True, name="clients"),
                         threading.Thread(target=self._feedback, daemon=True, name="back-office")]

    def _refill(self) -> None:
        from lifecycle.data.frames import category_label, numpy_dtypes
        from lifecycle.data.synthetic import Scenario, generate_batch

        spec = self.spec
        with self._lock:
            frame = numpy_dtypes(generate_batch(spec, self.day, Scenario.parse(self.scenario)))
            self.day += dt.timedelta(days=1)
            feats = frame[spec.data.feature_names]
            rows = feats.astype(object).where(feats.notna(), None).to_dict("records")
            target = frame[spec.data.target]
            # the outcome as the gateway's feedback takes it: binary 0/1, multiclass the class's text, regression a number
            outcomes = (target.astype(int).tolist() if spec.task == "binary"
                        else [category_label(v) for v in target] if spec.task == "multiclass"
                        else target.astype(float).tolist())
            self.applicants.extend(zip(rows, outcomes, frame[spec.data.id_column].astype(str).tolist(), strict=True))

    def switch(self, scenario: str) -> None:
        """From now on, applicants come from ``scenario`` (e.g. ``covariate_drift:0.5``): the population moves."""
        from lifecycle.data.synthetic import Scenario

        Scenario.parse(scenario)  # a typo fails here, not in the producer thread
        with self._lock:
            self.scenario = scenario
            self.applicants.clear()
        self._refill()

    def _produce(self) -> None:
        while not self._stop.wait(0.2):
            if len(self.applicants) < self.rate * 20:
                self._refill()

    def _requests(self) -> None:
        with httpx.Client(timeout=10) as http:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    row, label, key = self.applicants.popleft()
                except IndexError:
                    self._stop.wait(0.05)
                    continue
                try:
                    resp = http.post(f"{self.url}/predict", json=row, headers={"X-Routing-Key": key})
                    self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
                    if resp.status_code == 200:
                        self.ok += 1
                        due = time.monotonic() + self.rng.uniform(*self.delay)
                        self.pending.append((due, resp.json()["request_id"], label))
                    else:
                        self.failed += 1
                except httpx.HTTPError as err:
                    self.failed += 1
                    kind = type(err).__name__
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                self.sent += 1
                next_at += 1 / self.rate
                pause = next_at - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
                else:
                    next_at = time.monotonic()

    def _feedback(self) -> None:
        with httpx.Client(timeout=10, headers=self.feedback_headers) as http:
            while not self._stop.wait(0.25):
                batch, held = [], []
                while self.pending and self.pending[0][0] <= time.monotonic():
                    item = self.pending.popleft()
                    held.append(item)
                    batch.append({"request_id": item[1], "label": item[2]})
                if batch:
                    try:
                        resp = http.post(f"{self.url}/feedback", json=batch)
                        if resp.status_code == 429:  # over the gateway's feedback rate: send them again later
                            self.feedback_limited += 1
                            self.pending.extendleft(reversed(held))
                            self._stop.wait(float(resp.headers.get("Retry-After", "1")))
                            continue
                        resp.raise_for_status()
                        self.feedback_sent += len(batch)
                    except httpx.HTTPError:
                        pass

    def start(self) -> ClientPopulation:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed, "feedback": self.feedback_sent,
                "statuses": dict(self.statuses), "errors": dict(self.errors)}


def write_traffic_log(spec: ModelSpec, root: Path, frame: Any, *, version: str, probability: Any,
                      threshold: float | None, start: dt.datetime, end: dt.datetime, labels: bool = True,
                      seed: int = 0) -> int:
    """Write ``frame``'s rows as the gateway logs them (one single-row request each, spread evenly over
    ``[start, end)``), with each outcome (``frame``'s target) reported 1-60 s later (still inside the interval when
    it fits).

    ``probability`` is the model's output per row as :meth:`~lifecycle.training.packaging.LoadedModel.scores` gives
    it, and the records follow the spec's task (the log contract, :mod:`lifecycle.monitoring.logs`):

    - ``binary``: the probability of class 1; logged as ``probability`` and ``label`` (``probability >=
      threshold``), the outcome as 0/1 (as always);
    - ``multiclass``: rows x classes probabilities (in the order of ``data.classes``; ``threshold`` unused); logged
      as ``label`` (the most probable class, as text), ``probability`` (its probability) and ``probabilities``,
      the outcome as the class's text;
    - ``regression``: the predicted values (``threshold`` unused); logged as ``value``, the outcome as a number.

    For backfills, tests and benchmarks of the monitor: the same files, in the same layout, as live traffic.
    """
    import uuid

    import numpy as np

    from lifecycle.data.frames import category_label
    from lifecycle.serving.predlog import LogWriter

    feats = frame[spec.data.feature_names]
    rows = feats.astype(object).where(feats.notna(), None).to_dict("records")
    n = len(rows)
    rng = np.random.default_rng(seed)
    lo, span = start.timestamp(), (end - start).total_seconds()
    ts = lo + (np.arange(n) + 0.5) / max(n, 1) * span
    probability = np.asarray(probability, dtype=float)
    classes = [str(c) for c in spec.data.classes or []]
    if spec.task == "multiclass" and probability.shape != (n, len(classes)):
        raise ValueError(f"probability: a multiclass model's scores are rows x classes ({n} x {len(classes)}), got "
                         f"shape {probability.shape}")
    writer = LogWriter(root / "serving", flush_seconds=3600)
    truth = frame[spec.data.target].to_numpy() if labels else None
    try:
        for i, row in enumerate(rows):
            rid = uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex
            record = {"request_id": rid, "ts": ts[i], "model": spec.name, "version": version, "rows": [row]}
            if spec.task == "multiclass":
                k = int(np.argmax(probability[i]))
                record |= {"label": [classes[k]], "probability": [float(probability[i, k])],
                           "probabilities": [[float(q) for q in probability[i]]]}
            elif spec.task == "regression":
                record |= {"value": [float(probability[i])]}
            else:
                p = float(probability[i])
                record |= {"probability": [p], "label": [int(p >= threshold)]}
            writer.put("predictions", spec.name, ts[i], record | {"latency_ms": 1.0})
            if truth is not None:
                at = min(ts[i] + rng.uniform(1, 60), end.timestamp() - 1e-3)
                outcome = category_label(truth[i]) if spec.task == "multiclass" else \
                    float(truth[i]) if spec.task == "regression" else int(truth[i])
                writer.put("feedback", spec.name, at, {"request_id": rid, "ts": at, "model": spec.name,
                                                       "label": [outcome], "version": version})
            if i % 50_000 == 0:
                writer.flush()
        writer.flush()
    finally:
        writer.close()
    return n
