"""Start and stop the processes of the embedded default (Airflow components, alert receiver, gateway).

Each service runs in its own process group with a PID file under ``.lifecycle/run/``. Stopping walks the
service's process tree and signals every process group in it: Airflow's API server starts children in
groups of their own, so killing by name or by the parent's group alone would leave orphans.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lifecycle.paths import StatePaths


class ServiceError(RuntimeError):
    pass


def venv_bin() -> Path:
    return Path(sys.executable).parent


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, argv: list[str], env: dict[str, str], paths: StatePaths | None = None, *,
          user: str | None = None, stop_signal: str = "SIGTERM", supervised: bool = False) -> int:
    """Start ``argv`` detached in a new process group; log to ``run/<name>.log``; return the PID.

    ``user``: run as that account (PostgreSQL refuses to run as root); ``stop_signal``: what ``stop`` sends
    first (PostgreSQL's fast shutdown is SIGINT: SIGTERM would wait for every client to disconnect);
    ``supervised``: restart it whenever it exits (``lifecycle.ops.supervise``) until it is stopped.
    """
    if supervised:
        argv = [sys.executable, "-m", "lifecycle.ops.supervise", name, "--", *argv]
    paths = paths or StatePaths.current()
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = paths.run_dir / f"{name}.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text().split()[0])):
        raise ServiceError(f"{name} is already running (pid {pid_file.read_text().split()[0]}); `make down` first")
    full_env = {**os.environ, **env, "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (paths.run_dir / f"{name}.log").open("ab")
    drop: dict = {}
    if user and os.geteuid() == 0:  # that account's own group only: none of root's groups come along
        import pwd

        drop = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": [], "umask": 0o077}
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd="/" if user else str(paths.root), **drop)
    pid_file.write_text(f"{proc.pid} {stop_signal}\n")
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    return True


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [pid] + [c.pid for c in root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(name: str, paths: StatePaths | None = None, timeout: float = 20.0) -> bool:
    """Stop a service and everything it started; return False if it was not running."""
    paths = paths or StatePaths.current()
    pid_file = paths.run_dir / f"{name}.pid"
    if not pid_file.exists():
        return False
    pid, *rest = pid_file.read_text().split()
    pids = _tree(int(pid))
    first = getattr(signal, rest[0]) if rest else signal.SIGTERM
    groups = set()
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(p))
    for sig in (first, signal.SIGKILL):
        for g in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
        deadline = time.monotonic() + (timeout if sig != signal.SIGKILL else 5)
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        if not any(_alive(p) for p in pids):
            break
    pid_file.unlink(missing_ok=True)
    return True


def running(paths: StatePaths | None = None) -> list[str]:
    paths = paths or StatePaths.current()
    if not paths.run_dir.exists():
        return []
    return sorted(p.stem for p in paths.run_dir.glob("*.pid") if _alive(int(p.read_text().split()[0])))


def stop_all(paths: StatePaths | None = None) -> list[str]:
    """Stop every service of the state folder, in three waves: Airflow's scheduler first (so it starts no new
    task process while the rest goes down); then every other client of the backends at once (each stop waits
    up to its timeout for its process tree: in parallel, the slowest sets the pace, not their sum); then the
    backends of the distributed topology (MLflow, S3, Redis), and PostgreSQL last, after all of its clients."""
    from concurrent.futures import ThreadPoolExecutor

    paths = paths or StatePaths.current()
    if not paths.run_dir.exists():
        return []
    backends = ("mlflow-server", "s3", "redis")
    databases = ("postgres", "airflow-postgres")
    names = sorted(p.stem for p in paths.run_dir.glob("*.pid"))
    waves = [[n for n in names if n == "airflow-scheduler"],
             [n for n in names if n != "airflow-scheduler" and n not in backends + databases],
             [n for n in names if n in backends], [n for n in names if n in databases]]
    stopped = []
    with ThreadPoolExecutor(max(len(names), 1)) as pool:
        for wave in waves:
            stopped += [name for name, done in zip(wave, pool.map(lambda n: stop(n, paths), wave), strict=True)
                        if done]
    return stopped


def wait_http(url: str, timeout: float = 120.0, what: str = "service", log: Path | None = None) -> None:
    """Wait until ``url`` answers below 500; raise with the tail of the service log if it never does."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=3).status_code < 500:
                return
        except httpx.HTTPError as err:
            last = type(err).__name__
        time.sleep(1)
    tail = ""
    if log and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    raise ServiceError(f"{what} did not answer at {url} within {timeout:.0f}s ({last}){tail}")
