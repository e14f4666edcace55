"""Keep one service running: ``python -m lifecycle.ops.supervise <name> -- <argv...>``.

What systemd's ``Restart=always`` or compose's ``restart: unless-stopped`` do for a deployment, for the services
the distributed topology starts on one machine: Airflow's scheduler, DAG processor and triggerer exit when
their database goes away (a PostgreSQL restart), and a team's supervisor brings them back. The child is
restarted whenever it exits, after 1 s, doubling to at most 30 s while it keeps failing within a minute of its
start. SIGTERM/SIGINT stop the supervisor without a restart (``services.stop`` signals the whole process group,
so the child gets the signal too).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time


def supervise(name: str, argv: list[str], max_delay: float = 30.0) -> int:
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - wait() is restarted by Python (PEP 475)
                continue
        if stopping:
            return 128 - code if code < 0 else code  # a child killed by the stop signal: the shell's 128 + signal
        if time.monotonic() - started > 60:
            delay = 1.0
        print(f"supervise: {name} exited with code {code}; restarting in {delay:.0f}s", file=sys.stderr, flush=True)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not stopping:
            time.sleep(0.2)
        if stopping:
            return code
        delay = min(delay * 2, max_delay)


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m lifecycle.ops.supervise <name> -- <command> [args...]")
    sys.exit(supervise(args[0], args[2:]))


if __name__ == "__main__":
    main()
