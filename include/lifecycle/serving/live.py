"""The gateway's live, in-memory state per model: recent predictions by request id (so a label that arrives later
finds what was predicted, and only the first label of a request counts), live stats per version in fixed time
buckets, the paired evidence of a shadow pair (:class:`PairedLive`) in the same buckets, and the per-client feedback
rate limit.

Everything here is used from the event loop only, so nothing takes a lock: an insert, a look-up or an eviction is
O(1) (O(loaded versions) at most). The one O(n) step, a stats summary's percentiles over the latencies in the window,
runs in a worker thread on a snapshot: :meth:`LiveStats.snapshot` (on the loop: references to the closed buckets,
which are never written again, and a copy of the open one) then :func:`summarize` (anywhere).
"""
from __future__ import annotations

import itertools
import math
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable
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
#: Estimated bytes an entry grows by when it gets its first label (the labels kept, one byte a row, so a second
#: label is known as a duplicate), and when the mirrored version's probabilities join it (8 bytes a row), besides
#: those bytes. Measured with tracemalloc in ``tests/unit/test_gateway_shadow.py``.
LABELS_BYTES = 64
MIRROR_BYTES = 136
#: Clients (addresses) the feedback rate limit remembers at most; past it, the idle ones are forgotten first.
MAX_CLIENTS = 10_000


# ---------------------------------------------------------------------------------------------- prediction index
class _Shelf:
    """One version's entries, oldest first: request id -> (probabilities as float64 bytes, unix time), or, once
    labelled or mirrored, (probabilities, unix time, labels as one byte a row or None, (mirrored version, its
    probabilities, evidence epoch) or None)."""

    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple] = OrderedDict()
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
        found = self.find(request_id, now)
        return None if found is None else (found[0], found[1][0])

    def find(self, request_id: str, now: float) -> tuple[str, tuple] | None:
        """(version, entry) of a prediction at most ``ttl`` seconds old, else None; the entry is ``(probabilities,
        ts)`` or ``(probabilities, ts, labels, mirror)`` (see :func:`entry_labels`, :func:`entry_mirror`)."""
        for version, shelf in self._shelves.items():
            entry = shelf.entries.get(request_id)
            if entry is not None:
                return (version, entry) if now - entry[1] <= self.ttl else None
        return None

    def _extend(self, version: str, request_id: str, labels: bytes | None,
                mirror: tuple[str, bytes, int] | None) -> tuple | None:
        """Give an entry its labels or its mirrored probabilities (whichever it lacks; a second one is ignored),
        counting the bytes it grows by."""
        shelf = self._shelves.get(version)
        entry = shelf.entries.get(request_id) if shelf is not None else None
        if entry is None:
            return None
        old_labels, old_mirror, grown = entry_labels(entry), entry_mirror(entry), 0
        if old_labels is None and labels is not None:
            grown += LABELS_BYTES + len(labels)
        else:
            labels = old_labels
        if old_mirror is None and mirror is not None:
            grown += MIRROR_BYTES + len(mirror[1])
        else:
            mirror = old_mirror
        if not grown:
            return entry
        entry = (entry[0], entry[1], labels, mirror)
        shelf.entries[request_id] = entry  # an update keeps the entry's place (its age)
        shelf.bytes += grown
        self.bytes += grown
        if self.bytes > self.max_bytes:
            self._evict_bytes()
        return entry

    def mark_labelled(self, version: str, request_id: str, labels: bytes) -> tuple | None:
        """Keep the first labels of ``version``'s prediction ``request_id`` (one byte a row), so that a later label
        is known as a duplicate; -> the entry, or None if it is gone. The entry's bytes grow accordingly."""
        return self._extend(version, request_id, labels, None)

    def add_mirror(self, version: str, request_id: str, mirrored: str, probabilities: bytes,
                   epoch: int = 0) -> tuple | None:
        """Join the probabilities the mirrored version ``mirrored`` gave for ``version``'s prediction ``request_id``
        to its entry (a label then judges both, in the evidence of ``epoch``: :attr:`PairedLive.epoch`); -> the
        entry (with any labels that came first), or None if it is gone. The entry's bytes grow accordingly."""
        return self._extend(version, request_id, None, (mirrored, probabilities, epoch))

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
        _, entry = shelf.entries.popitem(last=False)
        size = entry_bytes(entry)
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

    def drop(self, version: str) -> OrderedDict[str, tuple] | None:
        """Forget an unloaded version's entries; -> them (free them off the event loop: a large one takes a while)."""
        shelf = self._shelves.pop(version, None)
        if shelf is None:
            return None
        self.bytes -= shelf.bytes
        self.evicted["unload"] += len(shelf.entries)
        return shelf.entries


def entry_labels(entry: tuple) -> bytes | None:
    """The first labels an index entry received (one byte a row), or None."""
    return entry[2] if len(entry) > 2 else None


def entry_mirror(entry: tuple) -> tuple[str, bytes, int] | None:
    """(mirrored version, its probabilities, the :attr:`PairedLive.epoch` of the evidence it counted in) of an
    index entry, or None."""
    return entry[3] if len(entry) > 2 else None


def entry_bytes(entry: tuple) -> int:
    """What an entry counts against the index's budget."""
    size = ENTRY_BYTES + len(entry[0])
    if len(entry) > 2:
        labels, mirror = entry[2], entry[3]
        if labels is not None:
            size += LABELS_BYTES + len(labels)
        if mirror is not None:
            size += MIRROR_BYTES + len(mirror[1])
    return size


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
                 bucket_seconds: float = BUCKET_SECONDS, graded: bool = True) -> None:
        self.retention, self.window, self.width = retention, window, bucket_seconds
        #: Whether a labelled row is right or wrong (binary, multiclass); False for regression: no correctness,
        #: the summary's ``correct`` is None.
        self.graded = graded
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
        """A labelled row: whether the version's decision was right (False where there is no correctness:
        regression) and its loss in [0, 1] (``squared_error``: binary the squared error of the probability, as
        ever; multiclass half the squared distance of the probabilities to the one-hot label; regression
        e^2 / (e^2 + s^2), e the error and s the version's training target sd: see :func:`summarize`)."""
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
        return summarize(self.snapshot(since), since, self.graded)


def summarize(buckets: list[_Bucket], since: float, graded: bool = True) -> dict[str, Any]:
    """The live-stats summary of ``since`` onwards (the stats endpoint's per-version shape): whole buckets by
    their counts, the bucket ``since`` falls in by its raw columns; percentiles and the Brier score over the raw
    values (O(n) in numpy: run it off the event loop).

    ``brier`` is the mean per-row loss in [0, 1] of the labelled rows, per task: binary the Brier score (as ever),
    multiclass half the multiclass Brier score (sum over classes of (p_k - 1[k = y])^2, which lies in [0, 2]),
    regression the mean of e^2 / (e^2 + s^2) (e the error in target units, s the version's training target
    standard deviation: 0.5 for an error of one sd, scale-free and bounded). ``correct`` counts the right
    decisions (binary p >= 0.5 == label, multiclass the most probable class == label); None when not ``graded``
    (regression: no correctness)."""
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
        "correct": correct if graded else None,
        "brier": float(sq.mean()) if len(sq) else None,
        "brier_var": float(sq.var(ddof=1)) if len(sq) > 1 else None,
        "first_ts": first_ts,
    }


# ---------------------------------------------------------------------------------------- paired (shadow) evidence
#: What :class:`PairedLive` keeps per bucket and :func:`sum_evidence` returns: the fields of
#: ``lifecycle.serving.evidence.PairedEvidence`` besides ``champion`` and ``challenger``. "p": the positive-class
#: probability a version gave a row; a positive difference ``d`` means the challenger did worse. The comments
#: are the binary meanings; a multiclass or regression pair (:class:`MulticlassPairedLive`,
#: :class:`RegressionPairedLive`) gives some of them its own and adds fields (:data:`MULTICLASS_FIELDS`).
EVIDENCE_FIELDS = (
    "pairs",  # rows scored by both versions (both probabilities finite and in [0, 1])
    "invalid",  # rows the challenger scored NaN, infinite or outside [0, 1] (left out of the pairs)
    "sum_pc", "sum_px", "sum_pc2", "sum_px2", "sum_pcpx",  # over pairs: p_c, p_x, p_c^2, p_x^2, p_c * p_x
    "pos_c", "pos_x",  # pairs with p >= 0.5, per version
    "labels",  # labelled pairs (the first label of a request only)
    "sum_dacc", "sum_dacc2",  # d = 1[champion correct] - 1[challenger correct]; correct: (p >= 0.5) == label
    "sum_dbrier", "sum_dbrier2",  # d = (p_x - y)^2 - (p_c - y)^2
    "requests",  # paired requests: both versions attempted (the answering one, and the mirrored one)
    "sum_derr", "sum_derr2",  # per paired request: d = 1[challenger failed] - 1[champion failed]
    "served_c", "served_x",  # requests answered (routed) to the champion / the challenger: user exposure
    "slow_x",  # challenger-answered requests slower than the latency limit of the moment
)
#: Fields whose values are integers (counts, and sums of differences in {-1, 0, 1}).
INTEGER_FIELDS = frozenset({"pairs", "invalid", "pos_c", "pos_x", "labels", "sum_dacc", "sum_dacc2", "requests",
                            "sum_derr", "sum_derr2", "served_c", "served_x", "slow_x"})
_F = {name: i for i, name in enumerate(EVIDENCE_FIELDS)}
_PAIRS, _INVALID, _SUM_PC, _SUM_PX, _SUM_PC2, _SUM_PX2, _SUM_PCPX, _POS_C, _POS_X = (_F[n] for n in EVIDENCE_FIELDS[:9])
_LABELS, _SUM_DACC, _SUM_DACC2, _SUM_DBRIER, _SUM_DBRIER2 = (_F[n] for n in EVIDENCE_FIELDS[9:14])
_REQUESTS, _SUM_DERR, _SUM_DERR2, _SERVED_C, _SERVED_X, _SLOW_X = (_F[n] for n in EVIDENCE_FIELDS[14:])
_ZEROS = array("d", [0.0] * len(EVIDENCE_FIELDS))


class _PairBucket:
    """The evidence sums of ``[start, end)``: one float per field of :data:`EVIDENCE_FIELDS` (no per-row data)."""

    __slots__ = ("end", "start", "v")

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.v = _ZEROS[:]


_NEVER_PAIR = _PairBucket(-math.inf, -math.inf)
_EPOCHS = itertools.count(1)


def _valid(p: np.ndarray) -> np.ndarray:
    return np.isfinite(p) & (p >= 0.0) & (p <= 1.0)


class PairedLive:
    """The paired evidence of one shadow pair (champion ``champion``, challenger ``challenger``), as running sums in
    :data:`BUCKET_SECONDS` buckets: every update is O(1) per request (O(rows) in NumPy for its rows), a sum over
    buckets O(buckets). At most ``retention`` seconds of buckets are kept (``retention / BUCKET_SECONDS + 1``
    buckets of ~250 bytes). Used from the event loop only; summed anywhere on a :meth:`snapshot`."""

    def __init__(self, champion: str, challenger: str, retention: float = 86_400.0,
                 bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.champion, self.challenger = champion, challenger
        #: Tells this evidence from an earlier one of the same pair (an index entry names the one it counted in, so
        #: a label after the pair was set anew does not land in the new evidence without its pair).
        self.epoch = next(_EPOCHS)
        self.retention, self.width = retention, bucket_seconds
        self.buckets: deque[_PairBucket] = deque()
        self._open = _NEVER_PAIR

    @property
    def max_buckets(self) -> int:
        return math.ceil(self.retention / self.width) + 1

    def _at(self, ts: float) -> array:
        bucket = self._open
        if ts >= bucket.end:
            start = math.floor(ts / self.width) * self.width
            bucket = self._open = _PairBucket(start, start + self.width)
            buckets = self.buckets
            buckets.append(bucket)
            oldest = start - self.retention
            while len(buckets) > 1 and (buckets[0].end <= oldest or len(buckets) > self.max_buckets):
                buckets.popleft()
        return bucket.v

    def served(self, ts: float, by_challenger: bool, slow: bool = False) -> None:
        """A request answered (routed) to a version of the pair; ``slow``: a challenger's answer slower than the
        latency limit of the moment."""
        v = self._at(ts)
        if by_challenger:
            v[_SERVED_X] += 1
            if slow:
                v[_SLOW_X] += 1
        else:
            v[_SERVED_C] += 1

    def mirrored(self, ts: float, champion_failed: bool, challenger_failed: bool,
                 p_c: np.ndarray | None = None, p_x: np.ndarray | None = None) -> None:
        """A paired request: both versions attempted it. When both scored, ``p_c`` and ``p_x`` are their
        probabilities for the same rows."""
        v = self._at(ts)
        d = int(challenger_failed) - int(champion_failed)
        v[_REQUESTS] += 1
        v[_SUM_DERR] += d
        v[_SUM_DERR2] += d * d
        if champion_failed or challenger_failed or p_c is None or p_x is None:
            return
        if len(p_x) == 1 == len(p_c):  # a one-row request, the usual kind: the same sums in plain floats
            c, x = float(p_c[0]), float(p_x[0])
            if not 0.0 <= x <= 1.0:  # False for NaN and infinities too
                v[_INVALID] += 1
            elif 0.0 <= c <= 1.0:
                v[_PAIRS] += 1
                v[_SUM_PC] += c
                v[_SUM_PX] += x
                v[_SUM_PC2] += c * c
                v[_SUM_PX2] += x * x
                v[_SUM_PCPX] += c * x
                v[_POS_C] += c >= 0.5
                v[_POS_X] += x >= 0.5
            return
        ok_x = _valid(p_x)
        ok = ok_x & _valid(p_c)
        v[_INVALID] += len(p_x) - int(np.count_nonzero(ok_x))
        if not ok.all():
            p_c, p_x = p_c[ok], p_x[ok]
        v[_PAIRS] += len(p_c)
        v[_SUM_PC] += float(p_c.sum())
        v[_SUM_PX] += float(p_x.sum())
        v[_SUM_PC2] += float(np.dot(p_c, p_c))
        v[_SUM_PX2] += float(np.dot(p_x, p_x))
        v[_SUM_PCPX] += float(np.dot(p_c, p_x))
        v[_POS_C] += int(np.count_nonzero(p_c >= 0.5))
        v[_POS_X] += int(np.count_nonzero(p_x >= 0.5))

    def _valid_pairs(self, ts: float, champion_failed: bool, challenger_failed: bool, p_c: np.ndarray | None,
                     p_x: np.ndarray | None, valid: Callable[[np.ndarray], np.ndarray]
                     ) -> tuple[array, np.ndarray, np.ndarray] | None:
        """A task pair's :meth:`mirrored` up to its own sums: the request and its error difference counted, the
        challenger's rows ``valid`` rejects counted as invalid; -> (bucket, the rows both scored validly) or None
        when a version failed. The binary :meth:`mirrored` does the same inline (its hot path)."""
        v = self._at(ts)
        d = int(challenger_failed) - int(champion_failed)
        v[_REQUESTS] += 1
        v[_SUM_DERR] += d
        v[_SUM_DERR2] += d * d
        if champion_failed or challenger_failed or p_c is None or p_x is None:
            return None
        ok_x = valid(p_x)
        ok = ok_x & valid(p_c)
        v[_INVALID] += len(p_x) - int(np.count_nonzero(ok_x))
        if not ok.all():
            p_c, p_x = p_c[ok], p_x[ok]
        return v, p_c, p_x

    def labelled(self, ts: float, p_c: np.ndarray, p_x: np.ndarray, y: np.ndarray) -> None:
        """The first labels ``y`` (0/1) of rows both versions scored (``p_c``, ``p_x``); invalid rows left out."""
        if len(y) == 1 == len(p_c) == len(p_x):  # one row: the same sums in plain floats
            c, x, label = float(p_c[0]), float(p_x[0]), float(y[0])
            if 0.0 <= c <= 1.0 and 0.0 <= x <= 1.0:
                dacc = float((c >= 0.5) == label) - float((x >= 0.5) == label)
                dbrier = (x - label) * (x - label) - (c - label) * (c - label)
                v = self._at(ts)
                v[_LABELS] += 1
                v[_SUM_DACC] += dacc
                v[_SUM_DACC2] += dacc * dacc
                v[_SUM_DBRIER] += dbrier
                v[_SUM_DBRIER2] += dbrier * dbrier
            return
        ok = _valid(p_c) & _valid(p_x)
        if not ok.all():
            p_c, p_x, y = p_c[ok], p_x[ok], y[ok]
        y = y.astype(np.float64)
        dacc = ((p_c >= 0.5) == y).astype(np.float64) - ((p_x >= 0.5) == y)
        dbrier = (p_x - y) ** 2 - (p_c - y) ** 2
        v = self._at(ts)
        v[_LABELS] += len(y)
        v[_SUM_DACC] += float(dacc.sum())
        v[_SUM_DACC2] += float(np.dot(dacc, dacc))
        v[_SUM_DBRIER] += float(dbrier.sum())
        v[_SUM_DBRIER2] += float(np.dot(dbrier, dbrier))

    def snapshot(self, since: float) -> list[array]:
        """The sums of the buckets that end after ``since`` (the bucket ``since`` falls in counts whole: evidence
        has bucket resolution); call on the event loop (O(buckets), a copy of the open bucket only)."""
        out = [b.v for b in self.buckets if b.end > since]
        if out and out[-1] is self._open.v:
            out[-1] = out[-1][:]
        return out

    def first_start(self, since: float) -> float | None:
        """Start of the oldest bucket a :meth:`snapshot` of ``since`` covers (None: no evidence yet)."""
        return next((b.start for b in self.buckets if b.end > since), None)

    def summary(self, since: float) -> dict[str, Any]:
        return self.total(self.snapshot(since))

    def total(self, sums: list[array]) -> dict[str, Any]:
        """The ``PairedEvidence`` fields of a :meth:`snapshot` (anywhere; O(buckets))."""
        return sum_evidence(self.champion, self.challenger, sums)


def sum_evidence(champion: str, challenger: str, sums: list[array], task: str = "binary",
                 classes: list[str] | None = None) -> dict[str, Any]:
    """The ``PairedEvidence`` fields summed over bucket sums (a :meth:`PairedLive.snapshot`); O(buckets). A
    binary pair's are :data:`EVIDENCE_FIELDS` (as ever); a multiclass or regression pair's also ``task``, and a
    multiclass pair's ``classes`` (as text) and the per-class lists of :data:`MULTICLASS_FIELDS`."""
    k = len(classes or ()) if task == "multiclass" else 0
    n = len(EVIDENCE_FIELDS) + len(MULTICLASS_FIELDS) * k + len(MULTICLASS_SCALARS) * (k > 0)
    total = np.frombuffer(b"".join(v.tobytes() for v in sums), dtype=np.float64).reshape(-1, n).sum(axis=0) \
        if sums else np.zeros(n)
    values = total.tolist()
    out: dict[str, Any] = {"champion": champion, "challenger": challenger}
    for name, value in zip(EVIDENCE_FIELDS, values, strict=False):
        out[name] = round(value) if name in INTEGER_FIELDS else value
    if task == "binary":
        return out
    out["task"] = task
    if k:
        at = len(EVIDENCE_FIELDS)
        out["classes"] = list(classes or ())
        for name in MULTICLASS_FIELDS:
            part = values[at:at + k]
            out[name] = [round(x) for x in part] if name in ("class_c", "class_x") else part
            at += k
        for name in MULTICLASS_SCALARS:
            out[name] = values[at]
            at += 1
    return out


#: A multiclass pair's per-class sums (lists of K, in the order of ``classes``), after :data:`EVIDENCE_FIELDS`:
#: the rows each version predicted as each class, and each version's summed probability of each class.
MULTICLASS_FIELDS = ("class_c", "class_x", "sum_pck", "sum_pxk")
#: ... then the sums over rows of each version's squared probability vector (sum over classes of p_k^2): with
#: ``sum_pck`` / ``sum_pxk``, the total variance of each version's probabilities (the constant-scores screen).
MULTICLASS_SCALARS = ("sum_pcsq", "sum_pxsq")
#: A multiclass probability row is valid when finite, in [0, 1] and summing to 1 within this.
SUM_TOLERANCE = 1e-6


def _valid_rows(p: np.ndarray) -> np.ndarray:
    """Per row of a rows x classes matrix: every probability finite and in [0, 1], the row summing to 1 within
    :data:`SUM_TOLERANCE`."""
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(p) & (p >= 0.0) & (p <= 1.0)).all(axis=1)
        return inside & (np.abs(p.sum(axis=1) - 1.0) <= SUM_TOLERANCE)


def _add_scores(v: array, s_c: np.ndarray, s_x: np.ndarray) -> None:
    """Add the score sums of :data:`EVIDENCE_FIELDS` (pairs, sums, squares, cross product) of paired scores
    ``s_c`` / ``s_x`` (one number per row) to bucket ``v``."""
    v[_PAIRS] += len(s_c)
    v[_SUM_PC] += float(s_c.sum())
    v[_SUM_PX] += float(s_x.sum())
    v[_SUM_PC2] += float(np.dot(s_c, s_c))
    v[_SUM_PX2] += float(np.dot(s_x, s_x))
    v[_SUM_PCPX] += float(np.dot(s_c, s_x))


class MulticlassPairedLive(PairedLive):
    """A multiclass shadow pair's evidence (``classes``: the class texts, in the order of the outputs).

    Per paired row (``p_c``, ``p_x``: rows x classes probabilities): ``k*`` the champion's predicted class; the
    score sums of :data:`EVIDENCE_FIELDS` (``sum_pc`` ... ``sum_pcpx``) are over ``s_c = p_c[k*]`` and
    ``s_x = p_x[k*]`` (each version's probability of the champion's predicted class: the inverted screen's
    correlation); ``pos_c`` / ``pos_x`` stay 0 (a binary notion); :data:`MULTICLASS_FIELDS` and
    :data:`MULTICLASS_SCALARS` hold the per-class sums. ``invalid``: challenger rows with a probability NaN or
    outside [0, 1], or not summing to 1 within :data:`SUM_TOLERANCE`. Per labelled row (label: the class index):
    ``dacc = 1[argmax p_c = y] - 1[argmax p_x = y]``, ``dbrier = (B_x - B_c) / 2`` with
    ``B = sum_k (p_k - 1[k = y])^2`` in [0, 2], so ``dbrier`` lies in [-1, 1] as the judge needs."""

    task = "multiclass"

    def __init__(self, champion: str, challenger: str, classes: list[str], retention: float = 86_400.0,
                 bucket_seconds: float = BUCKET_SECONDS) -> None:
        super().__init__(champion, challenger, retention, bucket_seconds)
        self.classes = list(classes)
        k = len(self.classes)
        self._k = k
        self._zeros = array("d", [0.0] * (len(EVIDENCE_FIELDS) + len(MULTICLASS_FIELDS) * k
                                          + len(MULTICLASS_SCALARS)))

    def _at(self, ts: float) -> array:
        if ts >= self._open.end:
            super()._at(ts)
            self._open.v = self._zeros[:]  # a fresh bucket: widened to this pair's fields
        return self._open.v

    def mirrored(self, ts: float, champion_failed: bool, challenger_failed: bool,
                 p_c: np.ndarray | None = None, p_x: np.ndarray | None = None) -> None:
        scored = self._valid_pairs(ts, champion_failed, challenger_failed, p_c, p_x, _valid_rows)
        if scored is None:
            return
        v, p_c, p_x = scored
        n, k = len(p_c), self._k
        if not n:
            return
        top = p_c.argmax(axis=1)
        rows = np.arange(n)
        _add_scores(v, p_c[rows, top], p_x[rows, top])
        at = len(EVIDENCE_FIELDS)
        extra = np.concatenate([np.bincount(top, minlength=k), np.bincount(p_x.argmax(axis=1), minlength=k),
                                p_c.sum(axis=0), p_x.sum(axis=0),
                                [float((p_c * p_c).sum()), float((p_x * p_x).sum())]])
        for i, x in enumerate(extra.tolist()):
            v[at + i] += x

    def labelled(self, ts: float, p_c: np.ndarray, p_x: np.ndarray, y: np.ndarray) -> None:
        """The first labels ``y`` (class indices) of rows both versions scored; invalid rows left out."""
        ok = _valid_rows(p_c) & _valid_rows(p_x)
        if not ok.all():
            p_c, p_x, y = p_c[ok], p_x[ok], y[ok]
        if not len(y):
            return
        y = y.astype(np.int64)
        dacc = (p_c.argmax(axis=1) == y).astype(np.float64) - (p_x.argmax(axis=1) == y)
        dbrier = (half_brier(p_x, y) - half_brier(p_c, y))
        v = self._at(ts)
        v[_LABELS] += len(y)
        v[_SUM_DACC] += float(dacc.sum())
        v[_SUM_DACC2] += float(np.dot(dacc, dacc))
        v[_SUM_DBRIER] += float(dbrier.sum())
        v[_SUM_DBRIER2] += float(np.dot(dbrier, dbrier))

    def total(self, sums: list[array]) -> dict[str, Any]:
        return sum_evidence(self.champion, self.challenger, sums, "multiclass", self.classes)


def half_brier(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row: half the multiclass Brier score, sum_k (p_k - 1[k = y])^2 / 2, in [0, 1]."""
    sq = (p * p).sum(axis=1)
    rows = np.arange(len(y))
    return (sq - 2.0 * p[rows, y] + 1.0) / 2.0


def normalised_sq_diff(e_c: np.ndarray, e_x: np.ndarray) -> np.ndarray:
    """Per row: (e_x^2 - e_c^2) / (e_x^2 + e_c^2) in [-1, 1], 0 where both errors are 0 (the regression judge's
    loss difference: see :mod:`lifecycle.serving.evidence`)."""
    sc, sx = e_c * e_c, e_x * e_x
    den = sc + sx
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(den > 0, (sx - sc) / np.where(den > 0, den, 1.0), 0.0)
    # An error so large its square overflows: inf / inf; the larger error did worse.
    return np.where(np.isnan(d), np.sign(np.abs(e_x) - np.abs(e_c)), d)


#: A regression value beyond this magnitude counts as invalid (as NaN does): no model's prediction is that large,
#: and the evidence's sums of squares over many rows must stay finite (1e100 squared is 1e200, far from overflow).
MAX_REGRESSION_VALUE = 1e100


def _sane(values: np.ndarray) -> np.ndarray:
    """Finite values of at most :data:`MAX_REGRESSION_VALUE` in magnitude (NaN compares false: not sane)."""
    return np.abs(values) <= MAX_REGRESSION_VALUE


class RegressionPairedLive(PairedLive):
    """A regression shadow pair's evidence. Per paired row (``p_c``, ``p_x``: the values in target units): the
    score sums of :data:`EVIDENCE_FIELDS` are over the values (``sum_pc`` = sum of the champion's values, ...);
    ``pos_c`` / ``pos_x`` stay 0; ``invalid``: challenger values that are NaN, infinite or beyond
    :data:`MAX_REGRESSION_VALUE` (left out of the sums, so they stay finite). Per labelled row (the
    label a number): no correctness (``sum_dacc`` stays 0), and ``dbrier`` is the normalised squared-error
    difference ``(e_x^2 - e_c^2) / (e_x^2 + e_c^2)`` (0 when both are 0) in [-1, 1]."""

    task = "regression"

    def mirrored(self, ts: float, champion_failed: bool, challenger_failed: bool,
                 p_c: np.ndarray | None = None, p_x: np.ndarray | None = None) -> None:
        scored = self._valid_pairs(ts, champion_failed, challenger_failed, p_c, p_x, _sane)
        if scored is not None:
            _add_scores(*scored)

    def labelled(self, ts: float, p_c: np.ndarray, p_x: np.ndarray, y: np.ndarray) -> None:
        """The first labels ``y`` (numbers) of rows both versions scored; values or labels that are not finite or
        beyond :data:`MAX_REGRESSION_VALUE` left out."""
        ok = _sane(p_c) & _sane(p_x) & _sane(y)
        if not ok.all():
            p_c, p_x, y = p_c[ok], p_x[ok], y[ok]
        if not len(y):
            return
        d = normalised_sq_diff(p_c - y, p_x - y)
        v = self._at(ts)
        v[_LABELS] += len(y)
        v[_SUM_DBRIER] += float(d.sum())
        v[_SUM_DBRIER2] += float(np.dot(d, d))

    def total(self, sums: list[array]) -> dict[str, Any]:
        return sum_evidence(self.champion, self.challenger, sums, "regression")


def paired_live(champion: str, challenger: str, task: str = "binary", classes: list[str] | None = None,
                retention: float = 86_400.0) -> PairedLive:
    """The paired evidence of a shadow pair of a model of ``task`` (``classes``: a multiclass model's, as text)."""
    if task == "multiclass":
        return MulticlassPairedLive(champion, challenger, list(classes or ()), retention=retention)
    if task == "regression":
        return RegressionPairedLive(champion, challenger, retention=retention)
    return PairedLive(champion, challenger, retention=retention)


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
