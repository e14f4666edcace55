"""`lifecycle history`: the champion alias's tenures rebuilt from the ledger alone."""
from __future__ import annotations

from lifecycle.ledger import Event, Ledger
from lifecycle.reporting.history import champion_history, render


def ev(event: str, version: str | None, at: str, reason: str, **details) -> Event:
    return Event("m", version, event, at, reason, details)


EVENTS = [
    ev("promoted", "1", "2026-01-01T00:00:00Z", "v1 is the first model to pass the gate: alias champion"),
    ev("shadow_verdict", "2", "2026-01-08T00:00:00Z", "v2 failed shadow against v1: accuracy e=400"),
    ev("rolled_back", "2", "2026-01-08T00:01:00Z", "v2 rolled back to v1: accuracy"),
    ev("promoted", "3", "2026-01-15T00:00:00Z", "v3 passed every stage"),
    ev("rolled_back", "3", "2026-01-16T00:00:00Z", "manual rollback: v3 -> v1: ops", champion="1", demoted="3",
       manual=True),
    ev("rolled_back", "1", "2026-01-17T00:00:00Z", "manual rollback: v1 -> v3: changed our mind"),  # old row shape
]


def test_tenures_follow_promotions_and_manual_rollbacks_only():
    tenures = champion_history(EVENTS)
    assert [(t.version, t.since, t.until) for t in tenures] == [
        ("1", "2026-01-01T00:00:00Z", "2026-01-15T00:00:00Z"),
        ("3", "2026-01-15T00:00:00Z", "2026-01-16T00:00:00Z"),
        ("1", "2026-01-16T00:00:00Z", "2026-01-17T00:00:00Z"),
        ("3", "2026-01-17T00:00:00Z", None),
    ]
    # the automatic rollback of v2 and its shadow verdict happened while v1 served: listed under v1's tenure
    assert [d.event for d in tenures[0].decisions] == ["shadow_verdict", "rolled_back"]
    assert tenures[0].days() == 14.0


def test_render_names_each_tenure_and_why():
    text = render("m", champion_history(EVENTS), now="2026-01-20T00:00:00Z")
    assert "v1    2026-01-01T00:00:00Z .. 2026-01-15T00:00:00Z (14.0 days)" in text
    assert "became champion: promoted: v1 is the first model" in text
    assert "v3    2026-01-17T00:00:00Z .. now (3.0 days)" in text
    assert render("m", []).startswith("m: no version has been champion yet")
    assert "(1.5 hours)" in render("m", champion_history(EVENTS[:1]), now="2026-01-01T01:30:00Z")
    assert "(20 minutes)" in render("m", champion_history(EVENTS[:1]), now="2026-01-01T00:20:00Z")


def test_history_cli_reads_the_ledger(state, capsys):
    from lifecycle.cli import main

    ledger = Ledger(state.ledger_db)
    ledger.record("credit_default", "promoted", "v1 is the first model to pass the gate", version=1)
    assert main(["history", "credit_default"]) == 0
    out = capsys.readouterr().out
    assert "credit_default: who held 'champion'" in out and "v1 " in out
