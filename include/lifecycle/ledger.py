"""The lifecycle ledger: an append-only table of every transition a model goes through.

SQLite by default (WAL, so the gateway, tasks and the demo can read while one writes), PostgreSQL when
``$LIFECYCLE_DB_URL`` is set (see :mod:`lifecycle.db`). Rows cannot be updated or deleted: triggers refuse it. A writer may pass an idempotency ``key``: a rerun of the same task for the same
data interval then records nothing new instead of a duplicate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lifecycle import db
from lifecycle.clock import utcnow_iso  # defined there; still importable from here
from lifecycle.paths import StatePaths

EVENTS = (
    "batch_validated", "batch_quarantined", "trained", "gate_passed", "gate_rejected", "promoted",
    "canary_step", "rolled_back", "drift_detected", "retrain_triggered", "alert_sent",
    "retired", "archived", "restored",
)

_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    model    TEXT NOT NULL,
    version  TEXT,
    event    TEXT NOT NULL,
    at       TEXT NOT NULL,
    reason   TEXT NOT NULL,
    details  TEXT NOT NULL DEFAULT '{}',
    run_id   TEXT,
    key      TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS events_model_event ON events (model, event, at);
"""
_SCHEMA = _TABLE + """
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the lifecycle ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the lifecycle ledger is append-only'); END;
"""
_PG_SCHEMA = _TABLE.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY") + """
CREATE OR REPLACE FUNCTION lifecycle_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the lifecycle ledger is append-only'; END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH STATEMENT EXECUTE FUNCTION lifecycle_ledger_append_only();
"""


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


class Ledger:
    def __init__(self, path: db.Target | None = None) -> None:
        """``path``: a SQLite file or a PostgreSQL URL (default: the state's ``ledger_db``)."""
        self.path = path or StatePaths.current().ledger_db
        db.ensure_schema(self.path, "ledger", _SCHEMA, _PG_SCHEMA)

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
        with self._conn() as conn:
            cur = conn.execute(
                "INSERT INTO events (model, version, event, at, reason, details, run_id, key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (model, None if version is None else str(version), event, utcnow_iso(), reason,
                 json.dumps(details or {}, default=str, sort_keys=True), run_id, key),
            )
            return cur.rowcount == 1

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

