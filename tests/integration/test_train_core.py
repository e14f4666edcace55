"""The train path's idempotency and failure modes, called as the DAG's tasks call it."""
from __future__ import annotations

import pytest

from lifecycle.ledger import Ledger
from lifecycle.registry.store import Registry, RegistryUnavailableError
from lifecycle.training import flow as tf
from tests.conftest import DAYS, gate_days, land_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def validated(spec, state):
    gate_days(spec, state)
    return state


def test_rerun_of_a_run_reuses_its_mlflow_run_and_version(spec, validated):
    kwargs = {"epochs": 3, "paths": validated}
    trained = tf.train_candidate(spec, DAYS[3], "run-a", **kwargs)
    again = tf.train_candidate(spec, DAYS[3], "run-a", **kwargs)
    assert again["run_id"] == trained["run_id"]
    evaluation = tf.evaluate_candidate(spec, trained, validated)
    decision = tf.gate_candidate(spec, evaluation)
    first = tf.register_candidate(spec, trained, evaluation, decision, "run-a", validated)
    second = tf.register_candidate(spec, trained, evaluation, decision, "run-a", validated)
    assert first["version"] == second["version"] == "1"
    assert len(Registry(validated).versions(spec.model_name)) == 1
    assert [e.event for e in Ledger(validated.ledger_db).events(event="trained")] == ["trained"]


def test_empty_window_names_the_days_and_the_quarantine(spec, state):
    from lifecycle.data.validation import gate_batch

    land_days(spec, state, {0: "broken:nulls"}, days=DAYS[:1])
    gate_batch(spec, DAYS[0], paths=state)
    with pytest.raises(tf.EmptyWindowError, match=r"no validated batches for credit_default between "
                                                  r"2025-12-26 and 2026-01-01 \(1 quarantined: 2026-01-01\)"):
        tf.train_candidate(spec, DAYS[0], "run-b", paths=state)


def test_unreachable_mlflow_fails_fast_and_registers_nothing(spec, validated, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(RegistryUnavailableError, match=r"MLflow at http://127.0.0.1:9 unreachable"):
        tf.train_candidate(spec, DAYS[3], "run-c", epochs=1, paths=validated.__class__.current())
    monkeypatch.delenv("LIFECYCLE_TRACKING_URI")
    assert not (validated.mlflow_db.exists() and Registry(validated).client.search_registered_models())


def test_bad_override_is_refused_before_training(spec):
    with pytest.raises(ValueError, match="learning_rate"):
        tf.effective_training(spec, overrides={"learning_rate": -1})
