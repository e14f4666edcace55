"""What every lifecycle DAG shares: default args, schedules, assets, and the spec list. Cheap to import."""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable
from pydantic import ValidationError

from lifecycle.spec import load_specs
from lifecycle_airflow.notifiers import LifecycleAlertNotifier

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec

__all__ = ["challenger_asset", "default_args", "fail_fast", "interval_day", "lifecycle_dag", "load_specs",
           "schedule", "start_date", "validated_asset"]


def default_args(spec: ModelSpec, retries: int = 2) -> dict[str, Any]:
    return {
        "owner": spec.owner,
        "retries": retries,
        "retry_delay": dt.timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "on_failure_callback": [LifecycleAlertNotifier(model=spec.name,
                                                       webhook_conn_id=spec.alerts.webhook_conn_id,
                                                       smtp_conn_id=spec.alerts.smtp_conn_id,
                                                       email_to=list(spec.alerts.email_to))],
    }


def lifecycle_dag(spec: ModelSpec, stage: str, description: str, doc: str | None, *, cron: str | None = None,
                  retries: int = 2, max_active_runs: int = 1, native: bool = False, tag: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The ``@dag`` arguments every lifecycle DAG shares: id ``<model>__<stage>``, docs, a cron with real data
    intervals (None: triggered only), no catchup, the model's owner, retries and failure alerts, and tags.
    ``native`` renders templates to Python objects (XCom dicts stay dicts)."""
    return {"dag_id": f"{spec.name}__{stage}", "description": description, "doc_md": doc,
            "schedule": schedule(cron) if cron else None, "start_date": start_date(spec), "catchup": False,
            "max_active_runs": max_active_runs, "render_template_as_native_obj": native,
            "default_args": default_args(spec, retries), "tags": ["lifecycle", tag or stage, spec.name, *spec.tags],
            **extra}


def schedule(cron: str) -> CronDataIntervalTimetable:
    """Cron with real data intervals, so backfills and reruns recompute exactly their own interval."""
    return CronDataIntervalTimetable(cron, timezone="UTC")


def start_date(spec: ModelSpec) -> pendulum.DateTime:
    d = spec.schedules.start_date
    return pendulum.datetime(d.year, d.month, d.day, tz="UTC")


def validated_asset(spec: ModelSpec) -> Asset:
    """Updated each time a batch of ``spec`` passes the data gate."""
    return Asset(name=f"{spec.name}.validated_batches", uri=f"lifecycle://{spec.name}/validated", group="data")


def challenger_asset(spec: ModelSpec) -> Asset:
    """Updated each time the train DAG registers a challenger (the deploy DAG listens to it)."""
    return Asset(name=f"{spec.name}.challenger", uri=f"lifecycle://{spec.name}/challenger", group="model")


def interval_day(context: dict[str, Any], override: str | None = None) -> dt.date:
    """The day a run works on: an explicit override (UI param), else the last day its data interval covers.

    A scheduled ``@daily`` run over [D, D+1) works on D. A manual run has the interval that ends at its logical
    date, so "trigger at 2026-01-05" works on 2026-01-04, the last complete day.
    """
    if override:
        return dt.date.fromisoformat(str(override)[:10])
    end = context.get("data_interval_end") or context.get("logical_date")
    if end is None:
        raise ValueError("this run has no data interval; pass the 'day' param")
    return (end - dt.timedelta(microseconds=1)).date()


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Errors a retry cannot fix (bad spec or override, empty window, diverged training, a version that may not
    be deployed or retired, a tampered archive) fail the task at once,
    with the same message, instead of burning retries; transient errors (I/O, an unreachable MLflow) retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from lifecycle.retirement.archive import ChecksumMismatchError
    from lifecycle.retirement.retire import RetireRefusedError
    from lifecycle.serving.deploy import DeployError
    from lifecycle.spec import SpecError
    from lifecycle.training.flow import EmptyWindowError
    from lifecycle.training.trainer import TrainingError

    try:
        yield
    except (SpecError, EmptyWindowError, TrainingError, ValidationError, DeployError, RetireRefusedError,
            ChecksumMismatchError) as err:
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err


@contextlib.contextmanager
def superseded_skips() -> Iterator[None]:
    """Another operator took over a deploy's traffic: the deploy ends here, skipped (not failed) with the reason."""
    from airflow.sdk.exceptions import AirflowSkipException

    from lifecycle.serving.deploy import DeploySupersededError

    try:
        yield
    except DeploySupersededError as err:
        print(err)
        raise AirflowSkipException(str(err)) from err
