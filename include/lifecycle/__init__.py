"""Model lifecycle core: plain Python, no Airflow import.

Everything a DAG task does is a typed function here, so the same logic runs from the CLI and the tests.
"""
from __future__ import annotations

__version__ = "0.1.0"
