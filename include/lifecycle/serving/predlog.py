"""Prediction and feedback logs: appended asynchronously in batches, partitioned by model and hour.

Layout (JSON lines, one file per process and hour so several gateway workers never share a file)::

    <state>/serving/predictions/<model>/date=2026-01-07/hour=13/<pid>.jsonl
    <state>/serving/feedback/<model>/date=2026-01-07/hour=13/<pid>.jsonl

The request handler serialises its record (a few microseconds with orjson) and puts the bytes on a queue; a
writer thread drains it every ``flush_seconds`` and appends whole batches, so file I/O never sits on the
request's critical path, and the thread never holds the GIL long enough to stall requests. Monitoring reads any data interval by
listing the hour folders it covers (:func:`read_log`).

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

import datetime as dt
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


def _partition(root: Path, kind: str, model: str, ts: float) -> Path:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return root / kind / model / f"date={t:%Y-%m-%d}" / f"hour={t:%H}" / f"{os.getpid()}.jsonl"


class LogWriter:
    def __init__(self, root: Path, flush_seconds: float = 0.05) -> None:
        self.root = root
        self.flush_seconds = flush_seconds
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def put(self, kind: str, model: str, ts: float, record: dict[str, Any]) -> None:
        self.queue.put((kind, model, ts, orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)))

    def _drain(self) -> None:
        groups: dict[Path, list[bytes]] = defaultdict(list)
        while True:
            try:
                kind, model, ts, line = self.queue.get_nowait()
            except queue.Empty:
                break
            groups[_partition(self.root, kind, model, ts)].append(line)
        for path, lines in groups.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as fh:
                fh.write(b"\n".join(lines) + b"\n")
            self.written += len(lines)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._drain()
        self._drain()

    def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        deadline = time.monotonic() + 5
        while not self.queue.empty() and time.monotonic() < deadline:
            self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
