"""Model lifecycle core: plain Python, no Airflow import, one subpackage per lifecycle stage.

The foundation sits at this level (``spec``, ``paths``, ``db``, ``ledger``, ``errors``, ``alerts``, ``cli``); the
stages are ``data`` -> ``registry`` -> ``training`` -> ``serving`` -> ``monitoring`` -> ``retirement``, each importing
only the foundation and the stages before it; ``reporting`` and ``ops`` sit on top. ``tests/unit/test_layering.py``
enforces that. Everything a DAG task does is a typed function here, so the same logic runs from the CLI and the
tests; errors are typed too (:mod:`lifecycle.errors`: each kind carries its HTTP status).
"""
from __future__ import annotations

import os

__version__ = "0.1.0"

# MLflow 3's usage telemetry is off in every process of the platform (set before mlflow is imported; an explicit
# setting wins): it would send usage records off the machine, and its client thread sets and unsets an
# environment variable while other threads iterate os.environ ("KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'" from
# inside an MLflow REST call failed a monitor task in the distributed topology).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
