"""The supervisor the distributed topology runs Airflow's components under: restarts on exit, stops on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_a_crashing_child_is_restarted_and_sigterm_stops_the_supervisor(tmp_path):
    marks = tmp_path / "starts"
    child = f"open({str(marks)!r}, 'a').write('x'); raise SystemExit(3)"
    sup = subprocess.Popen([sys.executable, "-m", "lifecycle.ops.supervise", "crasher", "--", sys.executable, "-c", child],
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(marks.read_text() if marks.exists() else "") < 2:
        time.sleep(0.1)
    assert len(marks.read_text()) >= 2  # started, exited with 3, restarted after 1 s
    os.killpg(sup.pid, signal.SIGTERM)
    # the last child's code (3, or 128 + SIGTERM when the signal caught it running): no restart after SIGTERM
    assert sup.wait(timeout=10) in (3, 128 + signal.SIGTERM)
    assert "supervise: crasher exited with code 3; restarting in 1s" in sup.stderr.read()


def test_usage_error_without_a_command():
    done = subprocess.run([sys.executable, "-m", "lifecycle.ops.supervise", "x"], capture_output=True, text=True)
    assert done.returncode == 1 and "usage: python -m lifecycle.ops.supervise" in done.stderr
