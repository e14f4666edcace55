"""Airflow local settings for the lifecycle project (linked into ``$AIRFLOW_HOME/config`` by the setup).

Warm task start: LocalExecutor forks every task process from the scheduler's workers, so modules the scheduler
imported before its workers fork are already in memory in every task. Our tasks pay 6-10 s of cold imports
each (GX, MLflow, pandas, scikit-learn) otherwise. Only the scheduler (and a Celery worker, whose pool forks the same way) preloads: other Airflow
commands stay fast.
``LIFECYCLE_PRELOAD``: ``default``, ``none``, or a comma-separated module list. Only import-time-safe modules
(no threads or sockets opened on import) belong here; torch is left out on purpose.
"""
from __future__ import annotations

import importlib
import os
import sys
import time

DEFAULT_PRELOAD = ("pandas", "pyarrow.parquet", "sklearn.metrics", "great_expectations", "great_expectations.expectations",
                   "mlflow", "mlflow.pyfunc", "lifecycle.data.validation", "lifecycle.training.flow",
                   "evidently", "evidently.presets", "evidently.metrics", "lifecycle.monitoring.run")


def _preload() -> None:
    choice = os.environ.get("LIFECYCLE_PRELOAD", "default").strip()
    # LocalExecutor forks tasks from the scheduler; a Celery worker forks them from its pool processes.
    local = "LocalExecutor" in os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    if choice == "none" or not ((local and sys.argv[1:2] == ["scheduler"]) or sys.argv[1:3] == ["celery", "worker"]):
        return
    modules = DEFAULT_PRELOAD if choice == "default" else tuple(m for m in choice.split(",") if m)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    start = time.monotonic()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001
            print(f"lifecycle: preload of {name} failed: {err}", file=sys.stderr)
    print(f"lifecycle: preloaded {len(modules)} modules for warm task starts in {time.monotonic() - start:.1f}s",
          file=sys.stderr)


_preload()
