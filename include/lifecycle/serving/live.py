"""The gateway's live, in-memory state per model: recent predictions by request id (so a label that arrives later
finds what was predicted), live stats per version in fixed time buckets, and the per-client feedback rate limit.

Everything here is used from the event loop only, so nothing takes a lock: an insert, a look-up or an eviction is
O(1) (O(loaded versions) at most). The one O(n) step, a stats summary's percentiles over the latencies in the window,
runs in a worker thread on a snapshot: :meth:`LiveStats.snapshot` (on the loop: references to the closed buckets,
which are never written again, and a copy of the open one) then :func:`summarize` (anywhere).
"""
from __future__ import annotations

import math
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Width of a live-stats bucket, in seconds.
BUCKET_SECONDS = 10.0
#: Requests (and, separately, labelled rows) kept per version at most: older buckets go first.
STATS_WINDOW = 400_000
#: Estimated bytes one prediction-index entry costs besides its probabilities (8 bytes a row): the request id,
#: the dictionary slot and the record. Measured with tracemalloc in ``tests/unit/test_gateway_memory.py``.
ENTRY_BYTES = 300
#: Clients (addresses) the feedback rate limit remembers at most; past it, the idle ones are forgotten first.
MAX_CLIENTS = 10_000


# ---------------------------------------------------------------------------------------------- prediction index
class _Shelf:
    """One version's entries, oldest first: request id -> (probabilities as float64 bytes, unix time)."""

    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.bytes = 0


class PredictionIndex:
    """One model's recent predictions by request id, bounded by bytes and by age.

    An entry costs :data:`ENTRY_BYTES` plus 8 bytes a row (an estimate, kept within the budget ``max_bytes``: past
    it the oldest entries of any version go first); an entry older than ``ttl`` seconds is never matched and is
    evicted by :meth:`expire` (the gateway's sync loop calls it every tick). Entries are kept per version so that
    :meth:`drop` forgets an unloaded version at once. ``evicted`` counts evictions by reason (age, bytes, unload).
    """

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes, self.ttl = int(max_bytes), float(ttl)
        self._shelves: dict[str, _Shelf] = {}
        self.bytes = 0
        self.evicted = {"age": 0, "bytes": 0, "unload": 0}

    def __len__(self) -> int:
        return sum(len(s.entries) for s in self._shelves.values())

    def add(self, version: str, request_id: str, probabilities: bytes, ts: float) -> None:
        shelf = self._shelves.get(version)
        if shelf is None:
            shelf = self._shelves[version] = _Shelf()
        shelf.entries[request_id] = (probabilities, ts)
        size = ENTRY_BYTES + len(probabilities)
        shelf.bytes += size
        self.bytes += size
        if self.bytes > self.max_bytes:
            self._evict_bytes()

    def get(self, request_id: str, now: float) -> tuple[str, bytes] | None:
        """(version, probabilities as float64 bytes) of a prediction at most ``ttl`` seconds old, else None."""
        for version, shelf in self._shelves.items():
            entry = shelf.entries.get(request_id)
            if entry is not None:
                return (version, entry[0]) if now - entry[1] <= self.ttl else None
        return None

    def _evict_bytes(self) -> None:
        shelves = self._shelves
        while self.bytes > self.max_bytes:
            if len(shelves) == 1:
                shelf: _Shelf | None = next(iter(shelves.values()))
            else:  # the oldest head of any version (a handful of versions at most)
                shelf, when = None, math.inf
                for candidate in shelves.values():
                    if candidate.entries:
                        head = next(iter(candidate.entries.values()))[1]
                        if head < when:
                            shelf, when = candidate, head
            if shelf is None or not shelf.entries:
                break
            self._pop(shelf, "bytes")

    def _pop(self, shelf: _Shelf, reason: str) -> None:
        _, (probabilities, _) = shelf.entries.popitem(last=False)
        size = ENTRY_BYTES + len(probabilities)
        shelf.bytes -= size
        self.bytes -= size
        self.evicted[reason] += 1

    def expire(self, now: float) -> int:
        """Evict every entry older than ``ttl``; -> how many (O(evicted + versions))."""
        cutoff, gone = now - self.ttl, 0
        for shelf in self._shelves.values():
            entries = shelf.entries
            while entries and next(iter(entries.values()))[1] < cutoff:
                self._pop(shelf, "age")
                gone += 1
        return gone

    def drop(self, version: str) -> OrderedDict[str, tuple[bytes, float]] | None:
        """Forget an unloaded version's entries; -> them (free them off the event loop: a large one takes a while)."""
        shelf = self._shelves.pop(version, None)
        if shelf is None:
            return None
        self.bytes -= shelf.bytes
        self.evicted["unload"] += len(shelf.entries)
        return shelf.entries


# ------------------------------------------------------------------------------------------------- live stats
class _Bucket:
    """What one version served and learned in ``[start, end)``: raw columns (8 bytes a value, no objects), and
    running counts. Only the newest bucket is ever written; a late timestamp (a clock stepped back) lands in it."""

    __slots__ = ("correct", "end", "err_ts", "fb_ok", "fb_sq", "fb_ts", "lat", "start", "ts")

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.ts, self.lat, self.err_ts = array("d"), array("d"), array("d")  # requests: time, latency (ms); errors
        self.fb_ts, self.fb_ok, self.fb_sq = array("d"), array("b"), array("d")  # labelled rows
        self.correct = 0

    def copy(self) -> _Bucket:
        twin = _Bucket(self.start, self.end)
        twin.ts, twin.lat, twin.err_ts = self.ts[:], self.lat[:], self.err_ts[:]
        twin.fb_ts, twin.fb_ok, twin.fb_sq = self.fb_ts[:], self.fb_ok[:], self.fb_sq[:]
        twin.correct = self.correct
        return twin


_NEVER = _Bucket(-math.inf, -math.inf)  # before the first insert: any timestamp opens a bucket


class LiveStats:
    """One version's live record of served requests and labelled rows, in :data:`BUCKET_SECONDS` buckets.

    Recording is O(1) (appends to the newest bucket); at most ``retention`` seconds of buckets are kept, and at
    most :data:`STATS_WINDOW` requests and as many labelled rows (the oldest buckets go first), so the number of
    buckets is bounded by ``retention / BUCKET_SECONDS + 1``.
    """

    def __init__(self, retention: float = 3600.0, window: int = STATS_WINDOW,
                 bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.retention, self.window, self.width = retention, window, bucket_seconds
        self.buckets: deque[_Bucket] = deque()
        self._open = _NEVER

    @property
    def max_buckets(self) -> int:
        return math.ceil(self.retention / self.width) + 1

    def _roll(self, ts: float) -> _Bucket:
        start = math.floor(ts / self.width) * self.width
        bucket = self._open = _Bucket(start, start + self.width)
        buckets = self.buckets
        buckets.append(bucket)
        oldest = start - self.retention
        while len(buckets) > 1 and (buckets[0].end <= oldest or len(buckets) > self.max_buckets):
            buckets.popleft()
        if len(buckets) > 1:
            requests = sum(len(b.ts) for b in buckets)
            labelled = sum(len(b.fb_ts) for b in buckets)
            while len(buckets) > 1 and (requests > self.window or labelled > self.window):
                gone = buckets.popleft()
                requests -= len(gone.ts)
                labelled -= len(gone.fb_ts)
        return bucket

    def request(self, ts: float, latency_ms: float, error: bool = False) -> None:
        bucket = self._open
        if ts >= bucket.end:
            bucket = self._roll(ts)
        bucket.ts.append(ts)
        bucket.lat.append(latency_ms)
        if error:
            bucket.err_ts.append(ts)

    def label(self, ts: float, correct: bool, squared_error: float) -> None:
        bucket = self._open
        if ts >= bucket.end:
            bucket = self._roll(ts)
        bucket.fb_ts.append(ts)
        bucket.fb_ok.append(1 if correct else 0)
        bucket.fb_sq.append(squared_error)
        bucket.correct += 1 if correct else 0

    def snapshot(self, since: float) -> list[_Bucket]:
        """The buckets that may hold data at or after ``since`` (call on the event loop; O(buckets) plus a copy of
        the open bucket, the only one still written). Summarize it anywhere with :func:`summarize`."""
        out = [b for b in self.buckets if b.end > since]
        if out and out[-1] is self._open:
            out[-1] = self._open.copy()
        return out

    def summary(self, since: float) -> dict[str, Any]:
        return summarize(self.snapshot(since), since)


def summarize(buckets: list[_Bucket], since: float) -> dict[str, Any]:
    """The live-stats summary of ``since`` onwards (the stats endpoint's per-version shape): whole buckets by
    their counts, the bucket ``since`` falls in by its raw columns; percentiles and the Brier score over the raw
    values (O(n) in numpy: run it off the event loop)."""
    requests = errors = feedback = correct = 0
    first_ts: float | None = None
    lats: list[np.ndarray] = []
    sqs: list[np.ndarray] = []
    for b in buckets:
        ts, lat = np.frombuffer(b.ts), np.frombuffer(b.lat)
        fb_ts, fb_sq = np.frombuffer(b.fb_ts), np.frombuffer(b.fb_sq)
        if b.start >= since and (not len(ts) or ts.min() >= since) and (not len(fb_ts) or fb_ts.min() >= since):
            requests += len(ts)
            errors += len(b.err_ts)
            feedback += len(fb_ts)
            correct += b.correct
            lats.append(lat)
            sqs.append(fb_sq)
            if first_ts is None and len(ts):
                first_ts = float(ts[0])
            continue
        keep = ts >= since  # the bucket ``since`` falls in (or one a stepped-back clock wrote early times into)
        n = int(np.count_nonzero(keep))
        requests += n
        errors += int(np.count_nonzero(np.frombuffer(b.err_ts) >= since))
        lats.append(lat[keep])
        if first_ts is None and n:
            first_ts = float(ts[int(np.argmax(keep))])
        labelled = fb_ts >= since
        feedback += int(np.count_nonzero(labelled))
        correct += int(np.count_nonzero(np.frombuffer(b.fb_ok, dtype=np.int8)[labelled]))
        sqs.append(fb_sq[labelled])
    lat = np.concatenate(lats) if lats else np.array([])
    sq = np.concatenate(sqs) if sqs else np.array([])
    return {
        "requests": requests,
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "feedback": feedback,
        "correct": correct,
        "brier": float(sq.mean()) if len(sq) else None,
        "brier_var": float(sq.var(ddof=1)) if len(sq) > 1 else None,
        "first_ts": first_ts,
    }


# ------------------------------------------------------------------------------------------- feedback rate limit
@dataclass
class RateLimiter:
    """A token bucket per client: ``rate`` tokens a second up to ``burst``; a request costs its labels."""

    rate: float
    burst: float
    max_clients: int = MAX_CLIENTS

    def __post_init__(self) -> None:
        self._clients: dict[str, tuple[float, float]] = {}  # client -> (tokens, when they were counted)
        self.refused = 0

    def take(self, client: str, cost: float, now: float) -> float:
        """Take ``cost`` tokens from ``client``'s bucket; -> 0.0 if it had them, else the seconds until it will
        (and nothing is taken). ``now``: a monotonic clock."""
        held = self._clients.get(client)
        tokens = self.burst if held is None else min(self.burst, held[0] + (now - held[1]) * self.rate)
        if tokens < cost:
            self._clients[client] = (tokens, now)
            self.refused += 1
            return (cost - tokens) / self.rate
        self._clients[client] = (tokens - cost, now)
        if held is None and len(self._clients) > self.max_clients:
            self._forget(now)
        return 0.0

    def _forget(self, now: float) -> None:
        """Forget the clients whose bucket has refilled (as good as never seen); then, if still too many, the
        oldest half (they start again with a full burst: a bound on memory, not a leak of tokens)."""
        full = [c for c, (tokens, at) in self._clients.items() if tokens + (now - at) * self.rate >= self.burst]
        for c in full:
            del self._clients[c]
        if len(self._clients) > self.max_clients:
            for c in list(self._clients)[: len(self._clients) // 2]:
                del self._clients[c]
