"""Decisions the DAGs used to make inline, now pure functions of the core: the monitor's response to a judged
interval, the train DAG's "same batches, skip", and the retire DAG's manifest digest check."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from lifecycle.ledger import Event
from lifecycle.monitoring.policy import PolicyDecision
from lifecycle.monitoring.response import DriftResponse, is_backfill, respond
from lifecycle.retirement.archive import ChecksumMismatchError, LocalStore, write_archive
from lifecycle.retirement.retire import check_manifest_digest, verify
from lifecycle.training.flow import EmptyWindowError, Window, skip_reason, window_end

# ------------------------------------------------------------------------------------------ monitor: respond

MEASURED = {"model": "credit_default", "interval": ["2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+00:00"],
            "champion_version": "3", "rows": 5000, "drift_share": 0.4, "drifted": ["age", "income"],
            "scores": {"age": 0.2, "income": 0.3}, "report": "/state/reports/drift_report.html",
            "performance": {"labels": 0}}
INTERVAL = "2026-03-01T10:00:00+00:00/2026-03-01T11:00:00+00:00"


def test_no_drift_means_nothing_to_do():
    # Act
    todo = respond("credit_default", MEASURED, PolicyDecision(False, False, "no drift: share 0.10 < 0.30"),
                   drift_share=0.3, as_of=None)

    # Assert
    assert (todo.drift, todo.retrain, todo.conf) == (False, False, None)
    assert todo.describe() == "ok: no drift: share 0.10 < 0.30"


def test_drift_with_retrain_records_alerts_and_gives_the_train_conf():
    # Arrange
    decision = PolicyDecision(True, True, "drift share 0.40 >= 0.30 (2/10 features drifted: age, income)")

    # Act
    todo = respond("credit_default", MEASURED, decision, drift_share=0.3, as_of=dt.date(2026, 2, 28))

    # Assert
    assert todo.describe() == f"RETRAIN: {decision.reason}"
    assert (todo.version, todo.interval, todo.key) == ("3", INTERVAL, f"credit_default:drift:{INTERVAL}")
    assert todo.details == {"drift_share": 0.4, "threshold": 0.3, "drifted": ["age", "income"],
                            "scores": {"age": 0.2, "income": 0.3}, "report": MEASURED["report"],
                            "interval": INTERVAL, "performance": {"labels": 0}, "retrain": True}
    assert todo.alert == f"drift in {INTERVAL}: share 0.40; retraining"
    assert todo.alert_key == f"credit_default:drift:{INTERVAL}:alert"
    assert todo.links == {"report": MEASURED["report"]}
    assert todo.conf == {"reason": f"drift: {decision.reason}", "report": MEASURED["report"],
                         "as_of": "2026-02-28", "force": False}


@pytest.mark.parametrize(
    ("as_of", "report", "expected_as_of", "expected_link"),
    [
        pytest.param(None, MEASURED["report"], None, MEASURED["report"], id="no-validated-day"),
        pytest.param(dt.date(2026, 3, 1), None, "2026-03-01", "", id="no-report"),
    ],
)
def test_retrain_conf_edges(as_of, report, expected_as_of, expected_link):
    # Arrange
    measured = {**MEASURED, "report": report}

    # Act
    todo = respond("credit_default", measured, PolicyDecision(True, True, "x" * 600), drift_share=0.3, as_of=as_of)

    # Assert
    assert todo.conf["as_of"] == expected_as_of and todo.links == {"report": expected_link}
    assert len(todo.conf["reason"]) == 500 and todo.conf["reason"].startswith("drift: x")


def test_drift_without_retrain_alerts_but_triggers_nothing():
    # Act
    todo = respond("credit_default", MEASURED, PolicyDecision(True, False, "drift share 0.40 >= 0.30; cooldown"),
                   drift_share=0.3, as_of=dt.date(2026, 2, 28))

    # Assert
    assert todo.drift and not todo.retrain and todo.conf is None
    assert todo.alert.endswith("; no retrain") and todo.details["retrain"] is False
    assert todo.describe().startswith("drift, no retrain: ")


def test_the_response_survives_json():
    # Arrange
    todo = respond("credit_default", MEASURED, PolicyDecision(True, True, "drift"), drift_share=0.3,
                   as_of=dt.date(2026, 2, 28))

    # Act
    back = DriftResponse(**json.loads(json.dumps(todo.as_dict())))

    # Assert
    assert back == todo


def test_judge_interval_reads_the_cooldown_from_the_ledger(spec, state):
    # Arrange
    from lifecycle.ledger import Ledger
    from lifecycle.monitoring.run import judge_interval

    ledger = Ledger(state.ledger_db)
    now = dt.datetime.now(dt.UTC)
    drifted = {**MEASURED, "rows": spec.monitoring.min_rows, "drift_share": 1.0, "features": 2}

    # Act
    before = judge_interval(spec, drifted, ledger, now=now, interval_end=now, paths=state)
    ledger.record(spec.name, "retrain_triggered", "drift", version="3", key="k")
    after = judge_interval(spec, drifted, ledger, now=now, interval_end=now, paths=state)

    # Assert
    assert before.retrain and before.conf["as_of"] is None  # no validated batch in this state folder
    assert after.drift and not after.retrain and "cooldown" in after.reason and after.conf is None


@pytest.mark.parametrize(
    ("run_type", "run_id", "expected"),
    [
        pytest.param("DagRunType.BACKFILL_JOB", "backfill__2026-03-01T10:00:00+00:00", True, id="backfill-type"),
        pytest.param("backfill_job", "manual__x", True, id="plain-string"),
        pytest.param("scheduled", "backfill__2026-03-01", True, id="backfill-run-id"),
        pytest.param("DagRunType.SCHEDULED", "scheduled__2026-03-01T10:00:00+00:00", False, id="scheduled"),
        pytest.param("manual", "manual__2026-03-01", False, id="manual"),
    ],
)
def test_backfill_runs_are_recognised(run_type, run_id, expected):
    assert is_backfill(run_type, run_id) is expected


# ------------------------------------------------------------------------------- train: window and skip

WINDOW = Window("2026-02-22", "2026-02-28", ["2026-02-26", "2026-02-27", "2026-02-28"], [], [])


def trained(run_id="scheduled__a", batches=WINDOW.days) -> Event:
    return Event("credit_default", "2", "trained", "2026-02-28T00:00:00.000Z", "trained", {"batches": list(batches)},
                 run_id)


@pytest.mark.parametrize(
    ("last", "run_id", "force", "skips"),
    [
        pytest.param(trained(), "scheduled__b", False, True, id="same-batches-skip"),
        pytest.param(None, "scheduled__b", False, False, id="first-training"),
        pytest.param(trained(batches=WINDOW.days[:2]), "scheduled__b", False, False, id="new-batch"),
        pytest.param(trained(), "scheduled__b", True, False, id="forced"),
        pytest.param(trained(), "scheduled__a", False, False, id="rerun-of-the-same-run"),
    ],
)
def test_skip_only_when_another_run_trained_on_the_same_batches(last, run_id, force, skips):
    # Act
    reason = skip_reason(last, WINDOW, run_id, force)

    # Assert
    assert (reason is not None) is skips
    if skips:
        assert reason == ("v2 was already trained on the same 3 validated batches (2026-02-22..2026-02-28); "
                          "trigger with force=true to retrain")


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        pytest.param(None, dt.date(2026, 2, 28), id="day-before-interval-end"),
        pytest.param("", dt.date(2026, 2, 28), id="empty-param"),
        pytest.param("2026-01-15", dt.date(2026, 1, 15), id="as-of-string"),
        pytest.param(dt.date(2026, 1, 15), dt.date(2026, 1, 15), id="as-of-date"),
    ],
)
def test_window_end(as_of, expected):
    assert window_end(as_of, dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)) == expected


# ------------------------------------------------------------------------------- retire: manifest digest


def test_the_manifest_digest_must_match_what_the_archive_step_wrote():
    check_manifest_digest("ab" * 32, "ab" * 32)  # no error
    with pytest.raises(ChecksumMismatchError, match=r"manifest.json: changed since it was written \(cdcdcdcd"):
        check_manifest_digest("cd" * 32, "ab" * 32)


def test_verify_reads_every_file_and_checks_the_manifest_digest(tmp_path):
    # Arrange
    staged = tmp_path / "staged"
    (staged / "model").mkdir(parents=True)
    (staged / "model" / "weights.pt").write_bytes(b"weights")
    store = LocalStore(tmp_path / "archive")
    result = write_archive(store, "credit_default", "2", staged, meta={"reason": "test"})

    # Act
    manifest, digest = verify(store, "credit_default", "2", result.manifest_sha256)

    # Assert
    assert digest == result.manifest_sha256 and [f["path"] for f in manifest["files"]] == ["model/weights.pt"]
    with pytest.raises(ChecksumMismatchError, match="changed since it was written"):
        verify(store, "credit_default", "2", "0" * 64)


def test_window_end_of_a_manual_run_uses_as_of_and_needs_it():
    """A run triggered without a data interval (REST, CLI) has no ``data_interval_end`` in its context."""
    assert window_end("2026-02-03", None) == dt.date(2026, 2, 3)
    with pytest.raises(EmptyWindowError, match="as_of"):
        window_end(None, None)
