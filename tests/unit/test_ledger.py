from __future__ import annotations

import sqlite3

import pytest

from lifecycle.db import connect
from lifecycle.ledger import Ledger


def test_events_are_recorded_in_order_with_utc_times(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    ledger.record("m", "trained", "because", version=1)
    ledger.record("m", "gate_passed", "ok", version=1)
    events = ledger.events("m")
    assert [e.event for e in events] == ["trained", "gate_passed"]
    assert events[0].at.endswith("Z") and events[0].version == "1"


def test_ledger_is_append_only(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    ledger.record("m", "trained", "because")
    with connect(ledger.path) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET reason = 'rewritten'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")


def test_idempotency_key_makes_reruns_record_once(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.record("m", "batch_validated", "ok", key="m:2026-01-01") is True
    assert ledger.record("m", "batch_validated", "ok again", key="m:2026-01-01") is False
    assert len(ledger.events("m")) == 1


@pytest.mark.parametrize(("event", "reason"), [("made_up", "x"), ("trained", "")])
def test_unknown_event_or_empty_reason_is_refused(tmp_path, event, reason):
    with pytest.raises(ValueError):
        Ledger(tmp_path / "l.db").record("m", event, reason)
