"""Typed errors: each error kind carries its HTTP status, and the gateway maps exceptions to statuses in one
place (``lifecycle.serving.app.error_status``), by type: the most specific kind wins, the message never matters."""
from __future__ import annotations

import pytest

from lifecycle.errors import (
    ConflictError,
    InvalidRequestError,
    LifecycleError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from lifecycle.registry.store import RegistryNotFoundError, RegistryUnavailableError
from lifecycle.retirement.retire import RetireRefusedError
from lifecycle.serving.app import ScoringError, error_status
from lifecycle.serving.deploy import DeployError
from lifecycle.serving.scoring import RequestError
from lifecycle.serving.traffic import TrafficError, WeightHeldError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(MalformedRequestError("malformed JSON"), 400, id="malformed-400"),
        pytest.param(NotFoundError("unknown model"), 404, id="not-found-404"),
        pytest.param(ConflictError("refused"), 409, id="conflict-409"),
        pytest.param(PayloadTooLargeError("batch of 1001 rows"), 413, id="too-large-413"),
        pytest.param(InvalidRequestError("bad value"), 422, id="invalid-422"),
        pytest.param(UnavailableError("no version has traffic"), 503, id="unavailable-503"),
        pytest.param(LifecycleError("typed, unexpected"), 500, id="lifecycle-500"),
        pytest.param(RequestError("row: age must be a number"), 422, id="request-error-422"),
        pytest.param(TrafficError("weights must sum to 100"), 422, id="traffic-422"),
        pytest.param(WeightHeldError("version 2 still has weight 50"), 409, id="weight-held-409-beats-traffic-422"),
        pytest.param(RegistryNotFoundError("Model Version not found"), 404, id="registry-not-found-404"),
        pytest.param(RegistryUnavailableError("MLflow unreachable"), 503, id="registry-unavailable-503"),
        pytest.param(DeployError("already the champion"), 409, id="deploy-409"),
        pytest.param(RetireRefusedError("is the champion"), 409, id="retire-refused-409"),
        pytest.param(ScoringError("v1 failed to score: ValueError"), 500, id="scoring-500"),
        pytest.param(ValueError("still has weight 50; not found; RESOURCE_DOES_NOT_EXIST"), 500,
                     id="untyped-500-whatever-it-says"),
    ],
)
def test_error_status_maps_types_not_messages(error, status):
    assert error_status(error) == status


@pytest.mark.parametrize(
    ("error", "old_base"),
    [
        pytest.param(TrafficError("x"), ValueError, id="traffic-is-a-ValueError"),
        pytest.param(WeightHeldError("x"), TrafficError, id="weight-held-is-a-TrafficError"),
        pytest.param(RequestError("x"), ValueError, id="request-is-a-ValueError"),
        pytest.param(RegistryUnavailableError("x"), RuntimeError, id="registry-unavailable-is-a-RuntimeError"),
        pytest.param(RegistryNotFoundError("x"), LookupError, id="registry-not-found-is-a-LookupError"),
        pytest.param(DeployError("x"), RuntimeError, id="deploy-is-a-RuntimeError"),
        pytest.param(RetireRefusedError("x"), ValueError, id="retire-refused-is-a-ValueError"),
    ],
)
def test_existing_except_clauses_still_catch(error, old_base):
    assert isinstance(error, old_base) and isinstance(error, LifecycleError)


def test_the_registry_turns_mlflow_resource_does_not_exist_into_not_found(tmp_path, monkeypatch):
    # Arrange
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "state"))
    from lifecycle.paths import StatePaths
    from lifecycle.registry.store import Registry

    registry = Registry(StatePaths.current())

    # Act
    with pytest.raises(RegistryNotFoundError) as caught:
        registry.version("credit_default", 42)

    # Assert
    assert error_status(caught.value) == 404 and caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert registry.by_alias("credit_default", "champion") is None
    registry.delete_alias("credit_default", "champion")  # nothing to delete: no error
