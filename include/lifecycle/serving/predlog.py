"""Prediction and feedback logs: appended asynchronously in batches, partitioned by model and hour.

Layout (JSON lines, one file per process and hour so several gateway workers never share a file)::

    <state>/serving/predictions/<model>/date=2026-01-07/hour=13/<pid>.jsonl
    <state>/serving/feedback/<model>/date=2026-01-07/hour=13/<pid>.jsonl

The request handler serialises its record (a few microseconds with orjson) and puts the bytes on a queue; a
writer thread drains it every ``flush_seconds`` and appends whole batches, so file I/O never sits on the
request's critical path, and the thread never holds the GIL long enough to stall requests. Monitoring reads any data interval by
listing the hour folders it covers (:func:`read_log`). A write that fails (a full disk) is retried with backoff; the
queue is bounded in bytes and what does not fit is dropped and counted (:class:`LogWriter`).

Reading (one rule for every reader: :func:`complete_lines` and :func:`parse_lines`, used by :func:`read_records` and
by monitoring's Arrow reader):

* A record is a line *with* its newline: the writer appends whole batches, each ending in ``\n``. Bytes after
  the last newline are a **torn line**, from a writer killed mid-append or one appending right now (monitoring
  reads live files). They are ignored, even when they happen to parse (a record whose newline has not landed
  yet is read complete next time), and counted in :attr:`ReadStats.torn`; no warning, a live log has them.
* A complete line that is not JSON is **skipped** with a warning naming the file and line, and counted in
  :attr:`ReadStats.damaged`; it is not an error. The writer itself can produce one: files are named by pid, so
  a gateway restarted after dying mid-append with the same pid (routine in a container, where pids restart
  from 1) appends after the torn line, which thereby ends up in the middle. Raising would make that hour
  unmonitorable for good over one lost record.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


def _partition(root: Path, kind: str, model: str, ts: float) -> Path:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return root / kind / model / f"date={t:%Y-%m-%d}" / f"hour={t:%H}" / f"{os.getpid()}.jsonl"


#: Most bytes of records waiting to be written (queued, or held by a writer retrying after an I/O error); a record
#: that would go past it is dropped and counted in :attr:`LogWriter.dropped`, so a full disk never costs memory.
MAX_QUEUE_BYTES = 256 * 1024 * 1024
#: Pause after a failed write, doubling from the first to the second up to it, until a write succeeds.
RETRY_SECONDS = (0.05, 5.0)


def _open(path: Path) -> Any:
    """The file a batch is appended to: unbuffered, so a failed write raises at once and nothing is left in a
    buffer to be written later behind the writer's back."""
    return path.open("ab", buffering=0)


class LogWriter:
    """Appends records in batches from a background thread; survives I/O errors.

    :meth:`put` (the request path: one serialisation, one append to a deque) never blocks and never raises for
    I/O: the writer thread drains the queue every ``flush_seconds``. A batch whose write fails (a full disk, a
    vanished mount) is kept and retried with backoff (:data:`RETRY_SECONDS`), after truncating away whatever part
    of it reached the file (a record is never written twice, nor torn); while it fails, records queue up to
    ``max_queue_bytes`` and the ones beyond are dropped and counted (``dropped``). :meth:`problem` says when the
    writer is dead or has been failing for too long (the gateway's ``/readyz``).

    One producer thread at a time (the gateway's event loop): the queue's byte count is kept without a lock.
    """

    def __init__(self, root: Path, flush_seconds: float = 0.05, max_queue_bytes: int = MAX_QUEUE_BYTES) -> None:
        self.root = root
        self.flush_seconds = flush_seconds
        self.max_queue_bytes = max_queue_bytes
        self.queue: deque[tuple[str, str, float, bytes]] = deque()
        self.written = 0  # records written
        self.dropped = 0  # records dropped: queue full, or still unwritten at close while the disk failed
        self.write_errors = 0  # failed write attempts
        self.failing_since: float | None = None  # monotonic time of the first failure of the current streak
        self.last_error: str | None = None
        self._put_bytes = 0  # bytes ever queued (the producer's count)
        self._done_bytes = 0  # bytes written or dropped by the writer (the writer's count)
        self._pending: dict[Path, list[bytes]] = {}  # drained from the queue, not yet written (the writer's)
        self._paths: dict[tuple[str, str, int], Path] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued or held for a retry."""
        return self._put_bytes - self._done_bytes

    def put(self, kind: str, model: str, ts: float, record: dict[str, Any]) -> None:
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
        if self._put_bytes - self._done_bytes + len(line) > self.max_queue_bytes:
            self.dropped += 1
            return
        self._put_bytes += len(line)
        self.queue.append((kind, model, ts, line))

    def _path(self, kind: str, model: str, ts: float) -> Path:
        key = (kind, model, int(ts // 3600))
        path = self._paths.get(key)
        if path is None:
            if len(self._paths) > 1024:
                self._paths.clear()
            path = self._paths[key] = _partition(self.root, kind, model, ts)
        return path

    def _drain(self) -> None:
        """Move everything queued into the pending batches, then write them one file at a time; raises the
        first write's error, leaving that batch and the ones after it pending."""
        pending, queue = self._pending, self.queue
        while queue:
            kind, model, ts, line = queue.popleft()
            batch = pending.get(path := self._path(kind, model, ts))
            if batch is None:
                pending[path] = [line]
            else:
                batch.append(line)
        for path in list(pending):
            lines = pending[path]
            _append(path, b"\n".join(lines) + b"\n")
            del pending[path]
            self.written += len(lines)
            self._done_bytes += sum(map(len, lines))

    def _run(self) -> None:
        pause = RETRY_SECONDS[0]
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    self._drain()
                except Exception as err:  # noqa: BLE001 - an I/O error (disk full...): keep the batch, retry
                    self.write_errors += 1
                    self.last_error = f"{type(err).__name__}: {err}"
                    if self.failing_since is None:
                        self.failing_since = time.monotonic()
                        log.error("prediction log: cannot write under %s (%s); retrying with backoff, records "
                                  "queue up to %d bytes", self.root, self.last_error, self.max_queue_bytes)
                    if stopping:
                        self._give_up()
                        return
                    self._stop.wait(pause)
                    pause = min(pause * 2, RETRY_SECONDS[1])
                    continue
                if self.failing_since is not None:
                    log.warning("prediction log: writing again after %.1f s of errors (%d records dropped so far)",
                                time.monotonic() - self.failing_since, self.dropped)
                    self.failing_since = None
                pause = RETRY_SECONDS[0]
                if stopping:
                    return
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
        finally:
            if not self._closed:
                log.error("prediction log: the writer thread stopped unexpectedly")

    def _give_up(self) -> None:
        lost = [line for lines in self._pending.values() for line in lines]
        lost += [item[3] for item in self.queue]
        self._pending.clear()
        self.queue.clear()
        self.dropped += len(lost)
        self._done_bytes += sum(map(len, lost))
        if lost:
            log.error("prediction log: %d records could not be written before shutdown (%s)", len(lost),
                      self.last_error)

    def problem(self, max_failing_seconds: float) -> str | None:
        """Why the log is unhealthy, or None: the writer thread is dead, or has failed to write for longer than
        ``max_failing_seconds``."""
        if not self._thread.is_alive() and not self._closed:
            return "the prediction log writer thread is dead; records are not being written"
        since = self.failing_since
        if since is not None and time.monotonic() - since > max_failing_seconds:
            return (f"the prediction log has failed to write for {time.monotonic() - since:.0f} s "
                    f"({self.last_error}); {self.dropped} records dropped")
        return None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown); -> whether it was."""
        if not self._thread.is_alive():  # closed (or dead): write here
            with contextlib.suppress(Exception):
                self._drain()
            return self.backlog_bytes == 0
        deadline = time.monotonic() + timeout
        while self.backlog_bytes > 0 and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.002)
        return self.backlog_bytes == 0

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` whole, or raise having left the file as it was (a partial write is cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path) as fh:
        start = os.fstat(fh.fileno()).st_size
        view = memoryview(data)
        try:
            while view:
                n = fh.write(view)
                if not n:
                    raise OSError(f"no progress appending to {path}")
                view = view[n:]
        except BaseException:
            with contextlib.suppress(OSError):
                fh.truncate(start)
            raise


def log_files(root: Path, kind: str, model: str, start: dt.datetime, end: dt.datetime) -> list[Path]:
    """The files that may hold records of ``kind`` for ``model`` in ``[start, end)``: one folder per hour."""
    out: list[Path] = []
    hour = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        folder = root / kind / model / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        if folder.exists():
            out += sorted(folder.glob("*.jsonl"))
        hour += dt.timedelta(hours=1)
    return out


@dataclass
class ReadStats:
    """What reading log files left out (see the module's reading rule)."""

    torn: int = 0  # files ending in a torn line: ignored
    damaged: int = 0  # complete lines that are not JSON: skipped, with a warning


def complete_lines(path: Path, stats: ReadStats | None = None) -> bytes:
    """The file's complete lines: its bytes up to and including the last newline. What follows is a torn line:
    ignored and counted in ``stats.torn`` (the module's reading rule)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        if stats is not None:
            stats.torn += 1
        log.debug("log: ignoring a torn last line (%d bytes) of %s", len(data) - end, path)
    return data[:end]


def parse_lines(path: Path, data: bytes, stats: ReadStats | None = None) -> list[dict[str, Any]]:
    """Parse complete lines of ``path`` one by one; a line that is not JSON is skipped with a warning naming the
    file and line, and counted in ``stats.damaged`` (the module's reading rule). Blank lines are nothing."""
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as err:
            if stats is not None:
                stats.damaged += 1
            log.warning("log: skipping damaged line %s:%d: %s", path, number, err)
    return records


def read_file(path: Path, stats: ReadStats | None = None) -> list[dict[str, Any]]:
    """The records of one log file. The complete lines are parsed in one call (joined into a JSON array, about
    3x faster than line by line); only a file with a damaged line is read again line by line."""
    data = complete_lines(path, stats)
    if not data.strip():
        return []
    try:
        return orjson.loads(b"[" + data[:-1].replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return parse_lines(path, data, stats)


def read_records(root: Path, kind: str, model: str, start: dt.datetime, end: dt.datetime,
                 stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Records of ``kind`` for ``model`` with ``start <= ts < end`` (UTC), reading only the hours covered.

    Torn and damaged lines follow the module's reading rule; pass ``stats`` to learn how many there were.
    """
    lo, hi = start.timestamp(), end.timestamp()
    for path in log_files(root, kind, model, start, end):
        for rec in read_file(path, stats):
            if lo <= rec["ts"] < hi:
                yield rec


def read_log(root: Path, kind: str, model: str, start: dt.datetime, end: dt.datetime,
             stats: ReadStats | None = None) -> list[dict[str, Any]]:
    """Records of ``kind`` for ``model`` with ``start <= ts < end`` (UTC), as a list."""
    return list(read_records(root, kind, model, start, end, stats))
