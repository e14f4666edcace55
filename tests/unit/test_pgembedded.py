"""The embedded default's PostgreSQL (lifecycle.ops.pgembedded): created, started, restarted after a kill,
unprivileged, password-protected, and removed without leaving its cluster behind."""
from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from lifecycle.ops import pgembedded, services
from lifecycle.paths import StatePaths


def _cluster(root):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.delenv("LIFECYCLE_AIRFLOW_PG_PORT", raising=False)
        cluster = pgembedded.AirflowPostgres(StatePaths.current())
        try:
            yield cluster
        finally:
            cluster.remove()


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    """One cluster for the module (initdb takes seconds); the tests leave it running."""
    yield from _cluster(tmp_path_factory.mktemp("pg"))


@pytest.fixture
def own_pg(tmp_path):
    yield from _cluster(tmp_path)


def _query(url: str, sql: str):
    import psycopg2

    with psycopg2.connect(url.replace("+psycopg2", ""), connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_ensure_creates_a_private_cluster_and_is_idempotent(pg):
    url = pg.ensure(log=lambda _m: None)
    assert url.startswith("postgresql+psycopg2://airflow:") and "@127.0.0.1:" in url
    assert _query(url, "SELECT current_user, current_database()") == ("airflow", "airflow")
    assert pg.ensure(log=lambda _m: None) == url  # running: nothing recreated
    assert stat.S_IMODE(pg.data.stat().st_mode) == 0o700
    assert (pg.paths.root / "postgres").exists()  # under the state folder (a link when its parents are closed)
    for name in ("airflow_db_password", "postgres_superuser_password"):
        assert stat.S_IMODE((pg.paths.secrets_dir / name).stat().st_mode) == 0o600
    assert _query(url, "SHOW fsync") == ("on",)
    assert not list(pg.data.glob(".s.PGSQL.*")) and not list(pg.cluster_dir().glob("*.pw"))  # TCP only


def test_a_wrong_password_is_refused(pg):
    import psycopg2

    url = pg.ensure(log=lambda _m: None)
    wrong = url.replace(pg.paths.secret("airflow_db_password"), "x" * 43)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _query(wrong, "SELECT 1")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as the caller when not root")
def test_as_root_the_server_runs_as_nobody_without_root_groups(pg):
    import psutil

    pg.ensure(log=lambda _m: None)
    pid = int((pg.paths.run_dir / f"{pgembedded.SERVICE}.pid").read_text().split()[0])
    proc = psutil.Process(pid)
    assert proc.username() == "nobody"
    groups = Path(f"/proc/{pid}/status").read_text().split("Groups:")[1].split("\n")[0].split()
    assert 0 not in proc.gids() and groups == []


def test_it_comes_back_after_being_killed_with_its_data(pg):
    url = pg.ensure(log=lambda _m: None)
    _query(url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7); SELECT 1")
    pid = int((pg.paths.run_dir / f"{pgembedded.SERVICE}.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pg.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg.ensure(log=lambda _m: None) == url  # crash recovery replays the WAL
    assert _query(url, "SELECT x FROM kept") == (7,)


@pytest.mark.slow
def test_remove_deletes_the_cluster_and_its_link(own_pg):
    own_pg.ensure(log=lambda _m: None)
    cluster = own_pg.cluster_dir()
    own_pg.remove()
    assert not cluster.exists() and not (own_pg.paths.root / "postgres").is_symlink()
    assert pgembedded.SERVICE not in services.running(own_pg.paths)


def test_reachable_needs_search_permission_on_every_parent(tmp_path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    assert not pgembedded.reachable(closed / "inner", nobody)
    closed.chmod(0o711)
    assert pgembedded.reachable(closed / "inner", nobody) == all(
        p.stat().st_mode & 0o001 for p in (closed / "inner").parents if p.exists())
    assert pgembedded.reachable(closed, None)
