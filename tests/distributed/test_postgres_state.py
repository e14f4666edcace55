"""The ledger and the gateway's traffic state on PostgreSQL (``LIFECYCLE_DB_URL``): the same guarantees as on
SQLite (append-only, idempotent keys, whole-or-nothing weight changes), with writers on several processes."""
from __future__ import annotations

import concurrent.futures as cf
import os

import pytest

from lifecycle.ops.services import free_port
from lifecycle.paths import StatePaths

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    from lifecycle.ops import services, topology

    paths = StatePaths(tmp_path_factory.mktemp("pg") / "state")
    old = os.environ.get("LIFECYCLE_PG_PORT")
    os.environ["LIFECYCLE_PG_PORT"] = str(free_port())
    try:
        topo = topology.Topology.for_state(paths)
        paths.root.mkdir(parents=True, exist_ok=True)
        topo.save()
        topology.start_postgres(topo, paths, topology.ensure_packages())
        yield topo
    finally:
        services.stop_all(paths)
        topology.remove_cluster(paths)
        if old is None:
            os.environ.pop("LIFECYCLE_PG_PORT", None)
        else:
            os.environ["LIFECYCLE_PG_PORT"] = old


def _fresh_db(topo, name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(topo.pg_url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return topo.pg_url(name)


def test_ledger_on_postgres_is_append_only_and_idempotent(pg):
    import psycopg2

    from lifecycle.db import connect
    from lifecycle.ledger import Ledger

    url = _fresh_db(pg, "ledger_a")
    ledger = Ledger(url)
    assert ledger.record("m", "trained", "because", version=1, key="m:1") is True
    assert ledger.record("m", "trained", "again", version=1, key="m:1") is False
    ledger.record("m", "gate_passed", "ok", version=1)
    assert [(e.event, e.version) for e in ledger.events("m")] == [("trained", "1"), ("gate_passed", "1")]
    with connect(url) as conn:
        with pytest.raises(psycopg2.Error, match="append-only"):
            conn.execute("UPDATE events SET reason = 'rewritten'")
        with pytest.raises(psycopg2.Error, match="append-only"):
            conn.execute("DELETE FROM events")


def _record_many(url: str, worker: int) -> int:
    from lifecycle.ledger import Ledger

    ledger = Ledger(url)
    return sum(ledger.record("m", "canary_step", f"w{worker} step {i}", key=f"step-{i % 25}") for i in range(50))


def test_concurrent_writers_record_each_key_once(pg):
    url = _fresh_db(pg, "ledger_b")
    with cf.ProcessPoolExecutor(4) as pool:
        written = sum(pool.map(_record_many, [url] * 4, range(4)))
    from lifecycle.ledger import Ledger

    assert written == 25 and len(Ledger(url).events("m")) == 25


def test_traffic_weights_on_postgres_change_whole_or_not_at_all(pg):
    from lifecycle.serving.traffic import TrafficError, TrafficStore

    url = _fresh_db(pg, "traffic_a")
    store = TrafficStore(url)
    store.mark_loaded("m", "1", True)
    store.mark_loaded("m", "2", True)
    store.set_weights("m", {"1": 100}, "start")
    store.set_weights("m", {"1": 95, "2": 5}, "canary 5%")
    with pytest.raises(TrafficError, match="sum to 100"):
        store.set_weights("m", {"1": 90, "2": 5}, "bad")
    with pytest.raises(TrafficError, match="not loaded"):
        store.set_weights("m", {"1": 50, "3": 50}, "bad")
    with pytest.raises(TrafficError, match="still has weight 5"):
        store.mark_loaded("m", "2", False)
    assert store.weights("m") == {"1": 95, "2": 5}
    assert [h["reason"] for h in store.history("m")] == ["start", "canary 5%"]


def test_an_unreachable_postgres_is_named_in_the_error(pg):
    from lifecycle.db import DatabaseError
    from lifecycle.ledger import Ledger

    url = f"postgresql://lifecycle:wrong@127.0.0.1:{free_port()}/lifecycle"
    with pytest.raises(DatabaseError, match=r"lifecycle DB postgresql://lifecycle@127\.0\.0\.1:\d+/lifecycle is "
                                            r"unreachable"):
        Ledger(url)
