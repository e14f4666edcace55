from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading

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


# ------------------------------------------------------------------------------------------------ the hash chain
def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as raw:
        return raw.execute("SELECT id, prev_hash, hash FROM events ORDER BY id").fetchall()


def _tamper(path, *statements: tuple) -> None:
    """Raw sqlite3 with the triggers dropped: what someone with the file can do behind the ledger's back."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            raw.execute(f"DROP TRIGGER {name}")
        for sql, *args in statements:
            raw.execute(sql, *args)
    finally:
        raw.close()


def _ten(tmp_path) -> Ledger:
    ledger = Ledger(tmp_path / "l.db")
    for i in range(10):
        ledger.record("m", "canary_step", f"step {i}", version=i % 3, details={"step": i, "w": [i, 0.5]},
                      run_id=f"r{i}", key=None if i % 2 else f"k{i}")
    return ledger


def test_chain_links_every_row_and_verifies(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    for i in range(60):
        ledger.record("m", "trained" if i % 2 else "gate_passed", f"reason {i}", version=i,
                      details={"i": i, "nested": {"b": 1, "a": [1.5, None]}}, key=f"k{i}" if i % 3 else None)
    rows = _rows(ledger.path)
    assert [r[0] for r in rows] == list(range(1, 61))
    assert rows[0][1] == "0" * 64
    assert all(cur[1] == before[2] for before, cur in itertools.pairwise(rows))
    result = ledger.verify()
    assert (result.ok, result.rows, result.first_bad_id, result.problem) == (True, 60, None, "")
    assert result.head == rows[-1][2]


def test_concurrent_writers_never_fork_the_chain(tmp_path):
    ledger = Ledger(tmp_path / "l.db")

    def write(worker: int) -> None:
        mine = Ledger(ledger.path)
        for i in range(25):
            assert mine.record("m", "canary_step", f"worker {worker} step {i}", key=f"{worker}:{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in _rows(ledger.path)] == list(range(1, 101))
    assert ledger.verify().ok and ledger.verify().rows == 100


def test_a_repeated_key_writes_nothing_and_keeps_the_chain(tmp_path):
    ledger = _ten(tmp_path)
    before = _rows(ledger.path)
    assert ledger.record("m", "canary_step", "again", key="k4") is False
    assert _rows(ledger.path) == before and ledger.verify().ok


@pytest.mark.parametrize(("statements", "first_bad", "problem"), [
    pytest.param([("UPDATE events SET reason = 'rewritten' WHERE id = 7",)], 7, "hash mismatch", id="altered"),
    pytest.param([("UPDATE events SET details = '{\"step\": 99}' WHERE id = 4",)], 4, "hash mismatch",
                 id="altered-details"),
    pytest.param([("DELETE FROM events WHERE id = 7",)], 8, "id gap: row 7 missing", id="removed"),
    pytest.param([("DELETE FROM events WHERE id IN (3, 4, 5)",)], 6, "id gap: rows 3..5 missing",
                 id="removed-three"),
    pytest.param([("DELETE FROM events WHERE id = 1",)], 2, "id gap: row 1 missing", id="removed-first"),
    pytest.param([("INSERT OR REPLACE INTO events SELECT id, model, version, event, at, 'forged', details, run_id, "
                   "key, prev_hash, hash FROM events WHERE id = 5",)], 5, "hash mismatch", id="replaced-in-place"),
    pytest.param([("INSERT INTO events (id, model, event, at, reason, details, prev_hash, hash) "
                   "SELECT 11, 'm', 'promoted', '2026-01-01T00:00:00Z', 'forged', '{}', hash, hash "
                   "FROM events WHERE id = 10",)], 11, "hash mismatch", id="forged-appended"),
])
def test_tampering_behind_the_triggers_is_detected(tmp_path, statements, first_bad, problem):
    ledger = _ten(tmp_path)
    assert ledger.verify().ok
    _tamper(ledger.path, *statements)
    result = ledger.verify()
    assert not result.ok and result.first_bad_id == first_bad and problem in result.problem, result
    assert result.rows == sum(row_id < first_bad for row_id, _, _ in _rows(ledger.path))


def test_a_forged_row_chained_from_the_wrong_place_is_detected(tmp_path):
    from lifecycle.ledger import row_hash

    ledger = _ten(tmp_path)
    prev = _rows(ledger.path)[2][2]  # row 3's hash: a fork
    row = (11, "m", "1", "promoted", "2026-01-01T00:00:00Z", "forged", "{}", None, None)
    _tamper(ledger.path, ("INSERT INTO events (id, model, version, event, at, reason, details, run_id, key, "
                          "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, prev, row_hash(prev, row))))
    result = ledger.verify()
    assert (result.ok, result.first_bad_id, result.rows) == (False, 11, 10)
    assert "prev_hash mismatch" in result.problem


@pytest.mark.parametrize("clash", ["id", "key"])
def test_insert_or_replace_cannot_silently_replace_a_row(tmp_path, clash):
    ledger = _ten(tmp_path)
    before = _rows(ledger.path)
    with sqlite3.connect(ledger.path) as raw:
        old = raw.execute("SELECT * FROM events WHERE id = 3").fetchone()
        values = (3, None) if clash == "id" else (999, "k2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("INSERT OR REPLACE INTO events (id, model, event, at, reason, details, key) "
                        "VALUES (?, 'm', 'promoted', '2026-01-01T00:00:00Z', 'replaced', '{}', ?)", values)
        assert raw.execute("SELECT * FROM events WHERE id = 3").fetchone() == old
    assert _rows(ledger.path) == before and ledger.verify().ok


# The DDL of the ledger before the chain: what existing state folders hold.
_OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT, event TEXT NOT NULL, at TEXT NOT NULL,
    reason TEXT NOT NULL, details TEXT NOT NULL DEFAULT '{}', run_id TEXT, key TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS events_model_event ON events (model, event, at);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the lifecycle ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the lifecycle ledger is append-only'); END;
"""


def _old_ledger(path, n: int = 6):
    """A ledger written by the code before the chain, with the id gap an idempotent rerun burnt there."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(_OLD_SCHEMA)
    for i in range(n):
        for _ in range(2 if i == 2 else 1):  # the rerun of i=2 burns id 4
            raw.execute("INSERT INTO events (model, version, event, at, reason, details, run_id, key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        ("m", str(i), "trained", f"2026-01-0{i + 1}T00:00:00Z", f"old {i}",
                         json.dumps({"i": i}, sort_keys=True), None, f"old:{i}"))
    raw.close()


def test_a_ledger_from_before_the_chain_is_upgraded_once_and_verifies(tmp_path):
    from lifecycle.ledger import VerifyResult

    path = tmp_path / "old.db"
    _old_ledger(path)
    ids = [r[0] for r in sqlite3.connect(path).execute("SELECT id FROM events ORDER BY id")]
    assert ids == [1, 2, 3, 5, 6, 7]
    ledger = Ledger(path)
    assert [e.reason for e in ledger.events("m")] == [f"old {i}" for i in range(6)]
    chained = _rows(path)
    assert all(h is not None for _, _, h in chained)
    assert ledger.verify() == VerifyResult(True, 6, None, "", chained[-1][2])
    assert Ledger(path) and _rows(path) == chained  # once: a second open changes nothing
    assert ledger.record("m", "promoted", "new", version=5) and ledger.record("m", "trained", "old 0",
                                                                             key="old:0") is False
    assert ledger.verify().ok and ledger.verify().rows == 7 and _rows(path)[-1][0] == 8
    with connect(path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET reason = 'rewritten'")  # the update trigger is back after the upgrade
    _tamper(path, ("UPDATE events SET reason = 'rewritten' WHERE id = 3",))
    assert ledger.verify().first_bad_id == 3


def test_concurrent_upgrades_of_an_old_ledger_chain_it_once(tmp_path):
    path = tmp_path / "old.db"
    _old_ledger(path, n=300)
    code = ("import sys; from lifecycle.ledger import Ledger; "
            "l = Ledger(sys.argv[1]); l.record('m', 'promoted', 'after upgrade ' + sys.argv[2])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(i)]) for i in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    result = Ledger(path).verify()
    assert (result.ok, result.rows) == (True, 303), result
    assert [r[0] for r in _rows(path)][-3:] == [302, 303, 304]


# -------------------------------------------------------------------------------------------------------- the CLI
def test_cli_verify_ledger_reports_an_intact_chain(state, capsys):
    from lifecycle.cli import main

    ledger = Ledger(state.ledger_db)
    for i in range(3):
        ledger.record("m", "trained", f"r{i}")
    assert main(["verify-ledger"]) == 0
    head = _rows(state.ledger_db)[-1][2]
    assert capsys.readouterr().out.strip() == f"ledger OK: 3 rows, chain intact (head {head[:12]})"


def test_cli_verify_ledger_names_the_tampered_row_and_exits_1(tmp_path, capsys):
    from lifecycle.cli import main

    ledger = _ten(tmp_path)
    _tamper(ledger.path, ("UPDATE events SET at = '2020-01-01T00:00:00Z' WHERE id = 6",))
    assert main(["verify-ledger", "--db", str(ledger.path)]) == 1
    assert capsys.readouterr().out.strip() == "ledger TAMPERED at row 6: hash mismatch: a field was altered"


def test_cli_verify_ledger_runs_as_a_module(tmp_path):
    home = tmp_path / "home"
    Ledger(home / "lifecycle.db").record("m", "trained", "r")
    env = {**os.environ, "LIFECYCLE_HOME": str(home)}
    env.pop("LIFECYCLE_DB_URL", None)
    done = subprocess.run([sys.executable, "-m", "lifecycle.cli", "verify-ledger"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ledger OK: 1 rows, chain intact"), done.stderr
    missing = subprocess.run([sys.executable, "-m", "lifecycle.cli", "verify-ledger", "--db",
                              str(tmp_path / "nothing.db")], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "no lifecycle ledger" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()
