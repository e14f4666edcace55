"""The lifecycle ledger: an append-only, hash-chained table of every transition a model goes through.

SQLite by default (WAL, so the gateway, tasks and the demo can read while one writes), PostgreSQL when
``$LIFECYCLE_DB_URL`` is set (see :mod:`lifecycle.db`). Rows cannot be updated or deleted: triggers refuse it
(on PostgreSQL ``TRUNCATE`` too; on SQLite an ``INSERT OR REPLACE`` over an existing id or key, which would
replace a row without firing the delete trigger, is refused as well). A writer may pass an idempotency ``key``:
a rerun of the same task for the same data interval then records nothing new instead of a duplicate.

**Tamper evidence.** Each row carries ``prev_hash`` (the previous row's ``hash``; 64 zeros for the first row)
and ``hash = sha256(prev_hash + "\\n" + canonical JSON of id, model, version, event, at, reason, details, run_id,
key)``. :meth:`Ledger.record` reads the head and appends under one lock on the table, so concurrent writers
(threads, processes, hosts sharing the PostgreSQL DB) never fork the chain, and ids stay contiguous.
:meth:`Ledger.verify` (``lifecycle verify-ledger``) recomputes the chain and names the first row that does not
fit. What it guarantees: a row altered, removed or inserted in the middle of the ledger behind the triggers'
back (the triggers dropped, the file edited) is detected, at that row or the one after it.

What it does not guarantee: the chain has no secret. Whoever can write the DB with the rights to drop the
triggers (the SQLite file's owner, a PostgreSQL superuser or the table's owner) can rewrite the whole chain
from the altered row on, or cut rows off its end, and it verifies again. Catching that needs the head hash
(``VerifyResult.head``) anchored somewhere that writer cannot reach, e.g. printed into the demo summary or a
release note, and compared later; this module does not do that. Ledgers written before the chain existed are
chained once, as they are, when first opened by this code (so their old rows are only as trustworthy as they
were then), and their ids may have gaps (old inserts that lost the idempotency race burnt an id): a gap is a
problem only where the chain link across it is broken.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lifecycle import db
from lifecycle.clock import utcnow_iso  # defined there; still importable from here
from lifecycle.paths import StatePaths

EVENTS = (
    "batch_validated", "batch_quarantined", "trained", "gate_passed", "gate_rejected", "promoted",
    "canary_step", "rolled_back", "drift_detected", "retrain_triggered", "alert_sent",
    "retired", "archived", "restored", "shadow_verdict",
)

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""

_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    model     TEXT NOT NULL,
    version   TEXT,
    event     TEXT NOT NULL,
    at        TEXT NOT NULL,
    reason    TEXT NOT NULL,
    details   TEXT NOT NULL DEFAULT '{}',
    run_id    TEXT,
    key       TEXT UNIQUE,
    prev_hash TEXT,
    hash      TEXT
);
CREATE INDEX IF NOT EXISTS events_model_event ON events (model, event, at);
"""
_APPEND_ONLY = "SELECT RAISE(ABORT, 'the lifecycle ledger is append-only')"
_NO_UPDATE = f"CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events BEGIN {_APPEND_ONLY}; END;"
_SCHEMA = _TABLE + _NO_UPDATE + f"""
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events BEGIN {_APPEND_ONLY}; END;
CREATE TRIGGER IF NOT EXISTS events_no_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id)
  OR (NEW.key IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE key = NEW.key))
BEGIN {_APPEND_ONLY}; END;
"""
_PG_SCHEMA = _TABLE.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY") + """
CREATE OR REPLACE FUNCTION lifecycle_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the lifecycle ledger is append-only'; END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION lifecycle_ledger_append_only();
"""
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode  # json.dumps(sort_keys, compact)
_COLUMNS = "id, model, version, event, at, reason, details, run_id, key"
_BATCH = 1000

_chained: set[str] = set()  # PostgreSQL targets this process has upgraded (SQLite files: checked every time)
_chained_lock = threading.Lock()


@dataclass(frozen=True)
class Event:
    model: str
    version: str | None
    event: str
    at: str
    reason: str
    details: dict[str, Any]
    run_id: str | None = None

    def public(self) -> dict[str, Any]:
        """The summary.json shape: model, version, event, at (ISO 8601 UTC), reason."""
        return {"model": self.model, "version": self.version, "event": self.event, "at": self.at,
                "reason": self.reason}


@dataclass(frozen=True)
class VerifyResult:
    """``ok``: the whole chain recomputes. ``rows``: rows that verified (all of them when ok).
    ``first_bad_id``/``problem``: the first row that does not fit, and why. ``head``: the last good hash."""
    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str = ""
    head: str = GENESIS


def row_hash(prev_hash: str, row: tuple) -> str:
    """The chain hash of one row (``row``: the values of id, model, version, event, at, reason, details as
    stored (JSON text), run_id, key); raises ValueError when details is not JSON."""
    id_, model, version, event, at, reason, details, run_id, key = row
    canonical = _canonical({"id": id_, "model": model, "version": version, "event": event, "at": at,
                            "reason": reason, "details": json.loads(details), "run_id": run_id, "key": key})
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _head(conn: db.Conn) -> tuple[int, str | None] | None:
    """(id, hash) of the last row, or None for an empty ledger."""
    return conn.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()


def _chain_unhashed(conn: db.Conn) -> tuple[int, str] | None:
    """Chain the rows after the last hashed one (all of them in a ledger written before the chain existed, or
    rows an older writer appended since), in id order; return the new head. Runs inside the caller's
    transaction, which must serialise writers of the table; lifts the update trigger only for that."""
    anchor = conn.execute("SELECT id, hash FROM events WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = anchor or (0, GENESIS)
    if conn.execute("SELECT 1 FROM events WHERE id > ? LIMIT 1", (last_id,)).fetchone() is None:
        return anchor
    if conn.postgres:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
    else:
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    while rows := conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT {_BATCH}",
                               (last_id,)).fetchall():
        for row in rows:
            last_id = row[0]
            try:
                digest = row_hash(prev, row)
            except ValueError:  # details that are not JSON: leave the row unchained, verify() names it
                continue
            conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, last_id))
            prev = digest
    if conn.postgres:
        conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    else:
        conn.execute(_NO_UPDATE)
    return last_id, prev


def _needs_chaining(conn: db.Conn) -> bool:
    if conn.postgres:
        found = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                             "AND table_name = 'events' AND column_name IN ('prev_hash', 'hash')").fetchone()[0]
    else:
        found = sum(col[1] in ("prev_hash", "hash") for col in conn.execute("PRAGMA table_info(events)"))
    if found < 2:
        return True
    head = _head(conn)
    return head is not None and head[1] is None


def _ensure_chain(target: db.Target) -> None:
    """Upgrade a ledger written before the chain existed: add the hash columns and chain its rows, once.
    Concurrent upgraders take turns (SQLite ``BEGIN IMMEDIATE``; PostgreSQL the schema's advisory lock, then
    the table lock record() takes) and the second finds nothing left to do."""
    key = str(target)
    if key in _chained:
        return
    with _chained_lock:
        if key in _chained:
            return
        with db.connect(target) as conn:
            needed = _needs_chaining(conn)
        if needed:
            with db.transaction(target, lock=None if db.is_postgres(target) else "events") as conn:
                if conn.postgres:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", ("lifecycle-schema-ledger",))
                    conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
                    conn.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS prev_hash TEXT, "
                                 "ADD COLUMN IF NOT EXISTS hash TEXT")
                else:
                    have = {col[1] for col in conn.execute("PRAGMA table_info(events)")}
                    for column in ("prev_hash", "hash"):
                        if column not in have:
                            conn.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")
                _chain_unhashed(conn)
        if db.is_postgres(target):
            _chained.add(key)


class Ledger:
    def __init__(self, path: db.Target | None = None) -> None:
        """``path``: a SQLite file or a PostgreSQL URL (default: the state's ``ledger_db``)."""
        self.path = path or StatePaths.current().ledger_db
        db.ensure_schema(self.path, "ledger", _SCHEMA, _PG_SCHEMA)
        _ensure_chain(self.path)

    def _conn(self):
        return db.connect(self.path)

    def record(self, model: str, event: str, reason: str, *, version: str | int | None = None,
               details: dict[str, Any] | None = None, run_id: str | None = None,
               key: str | None = None) -> bool:
        """Append one event; return False when ``key`` was already recorded (an idempotent rerun)."""
        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}; known: {', '.join(EVENTS)}")
        if not reason:
            raise ValueError("a ledger event needs a reason")
        text = json.dumps(details or {}, default=str, sort_keys=True)
        with db.transaction(self.path, lock="events") as conn:
            if key is not None and conn.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone():
                return False
            head = _head(conn)
            if head is not None and head[1] is None:  # an older writer appended since this process upgraded
                head = _chain_unhashed(conn)
            last_id, prev = head or (0, GENESIS)
            row = (last_id + 1, model, None if version is None else str(version), event, utcnow_iso(), reason,
                   text, run_id, key)
            conn.execute(f"INSERT INTO events ({_COLUMNS}, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (*row, prev, row_hash(prev, row)))
        return True

    def events(self, model: str | None = None, event: str | None = None,
               version: str | int | None = None) -> list[Event]:
        sql, args = "SELECT model, version, event, at, reason, details, run_id FROM events WHERE 1=1", []
        for col, val in (("model", model), ("event", event), ("version", version)):
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(str(val))
        with self._conn() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [Event(m, v, e, a, r, json.loads(d), run) for m, v, e, a, r, d, run in rows]

    def last(self, model: str, event: str) -> Event | None:
        found = self.events(model, event)
        return found[-1] if found else None

    def _stream(self, conn: db.Conn) -> Iterator[tuple]:
        """Every row with its prev_hash and hash, in id order, ``_BATCH`` at a time (a server-side cursor on
        PostgreSQL); inside the caller's transaction, so one snapshot."""
        sql = f"SELECT {_COLUMNS}, prev_hash, hash FROM events ORDER BY id"
        if conn.postgres:
            conn.execute(f"DECLARE ledger_verify NO SCROLL CURSOR FOR {sql}")
            while rows := conn.execute(f"FETCH {_BATCH} FROM ledger_verify").fetchall():
                yield from rows
            conn.execute("CLOSE ledger_verify")
            return
        cur = conn.execute(sql)
        while rows := cur.fetchmany(_BATCH):
            yield from rows

    def verify(self) -> VerifyResult:
        """Recompute the chain in id order; the first row that does not fit, and why."""
        prev_id, prev, count = 0, GENESIS, 0
        with db.transaction(self.path) as conn:
            for *row, prev_hash, digest in self._stream(conn):
                row_id = row[0]
                problem = ""
                if digest is None or prev_hash is None:
                    problem = "no hash: the row was written around the ledger"
                elif prev_hash != prev and row_id != prev_id + 1:
                    missing = f"row {prev_id + 1}" if row_id == prev_id + 2 else f"rows {prev_id + 1}..{row_id - 1}"
                    problem = f"id gap: {missing} missing before it (a row was removed)"
                elif prev_hash != prev:
                    problem = "prev_hash mismatch: the row before it was removed, inserted or rewritten"
                else:
                    try:
                        if row_hash(prev, tuple(row)) != digest:
                            problem = "hash mismatch: a field was altered"
                    except ValueError:
                        problem = "hash mismatch: details is not JSON (a field was altered)"
                if problem:
                    return VerifyResult(False, count, row_id, problem, prev)
                prev_id, prev, count = row_id, digest, count + 1
        return VerifyResult(True, count, None, "", prev)

