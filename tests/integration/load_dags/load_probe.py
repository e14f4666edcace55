"""A DAG for the metadata-DB load test: one short task per run, a few runs at a time."""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task


@dag(dag_id="load_probe", schedule="@daily", start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False,
     max_active_runs=4, tags=["test"])
def load_probe():
    @task
    def work() -> None:
        import time

        time.sleep(2)

    work()


load_probe()
