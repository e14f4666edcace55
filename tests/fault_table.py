"""The fault -> outcome table of docs/faults.md, from the tests that inject each fault.

    python -m tests.fault_table > docs/faults.md

``tests/unit/test_crash_recovery.py`` (``FAULTS``: a crash at each step boundary of the data gate, archive,
finalize and restore, then a retry) and the fault tests of the running services listed here; a unit test keeps
the document current.
"""
from __future__ import annotations

#: Faults injected into running services: (fault, outcome, test).
SERVICE_FAULTS: list[tuple[str, str, str]] = [
    ("a Celery worker killed (SIGKILL) mid-training",
     "the task is failed after 60 s without heartbeat and retried on the replacement worker, which resumes from "
     "the last checkpoint epoch; one registered version",
     "tests/distributed/test_faults.py::test_a_worker_killed_mid_training_is_replaced_and_training_resumes"),
    ("PostgreSQL (Airflow, MLflow, ledger) restarted mid-run",
     "Airflow's components exit and their supervisor restarts them; the run completes",
     "tests/distributed/test_faults.py::test_postgres_restarted_mid_run_the_run_still_completes"),
    ("the MLflow server down during registration (stopped 15 s, ~30 s more to answer)",
     "registration retries until it is back; exactly one version (duplicates of a re-sent request removed)",
     "tests/distributed/test_faults.py::test_mlflow_server_down_during_registration_retries_without_duplicates"),
    ("the S3 server stopped mid-archive",
     "no manifest, the version untouched; the retry uploads only what was missing",
     "tests/integration/test_archive.py"),
    ("20 REST triggers and a CLI backfill at once while the scheduler and a DAG run are busy",
     "every run created and finished; zero lock errors, zero HTTP 5xx (Airflow on the embedded PostgreSQL)",
     "tests/integration/test_airflow_db_load.py"),
    ("Airflow's PostgreSQL killed with SIGKILL",
     "the next start replays its WAL: committed data kept",
     "tests/unit/test_pgembedded.py::test_it_comes_back_after_being_killed_with_its_data"),
    ("a stale traffic revision (another operator changed the weights)",
     "409 with the current revision and weights, nothing changed; a running deploy stops without touching traffic",
     "tests/unit/test_traffic_cas.py, tests/integration/test_deploy_dag.py"),
    ("a ledger row altered, removed or inserted behind the triggers",
     "`lifecycle verify-ledger` exits 1 naming the first bad row",
     "tests/unit/test_ledger.py"),
]


def markdown() -> str:
    from tests.unit.test_crash_recovery import FAULTS

    lines = ["| crash point (step boundary) | what the retry does |", "| --- | --- |"]
    lines += [f"| `{name}` | {outcome} |" for name, outcome in FAULTS]
    lines += ["", "| fault | outcome | test |", "| --- | --- | --- |"]
    lines += [f"| {fault} | {outcome} | `{test}` |" for fault, outcome, test in SERVICE_FAULTS]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.fault_table > docs/faults.md
    print("# Faults, and what happens\n\nGenerated from `tests/fault_table.py` (`python -m tests.fault_table`). The "
          "first table: a crash injected at each step boundary (`lifecycle.fileio.crash_point`), then the same "
          "operation run again; every test asserts the final state equals a crash-free run and every ledger row "
          "exists exactly once (`tests/unit/test_crash_recovery.py`). The second: faults injected into running "
          "services.\n")
    print(markdown())
