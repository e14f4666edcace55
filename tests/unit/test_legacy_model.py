"""A model registered before the core was grouped by stage still loads and scores the same.

``tests/fixtures/legacy_model_e70ebac.tar.gz`` is a ``credit_default`` version as the registry hands it out
(``mlflow.artifacts.download_artifacts("models:/credit_default/1")``), trained and registered at commit e70ebac,
the last commit with the flat layout, together with 50 rows and the pyfunc's predictions on them at the time.
Its pickled ``python_model`` names ``lifecycle.pyfunc_model.TabularClassifier``, which now lives in
``lifecycle.training.pyfunc_model`` behind a re-export at the old path.
"""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "legacy_model_e70ebac.tar.gz"


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))  # mlflow prepends the model's bundled code folder
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def test_a_pyfunc_registered_before_the_move_loads_and_predicts_the_same(legacy: Path):
    import mlflow.pyfunc

    from lifecycle.training.pyfunc_model import TabularClassifier

    model = mlflow.pyfunc.load_model(str(legacy / "model"))
    assert type(model.unwrap_python_model()) is TabularClassifier  # the shim resolved to today's class
    rows = pd.read_parquet(legacy / "rows.parquet")
    expected = pd.read_parquet(legacy / "expected.parquet")
    got = model.predict(rows)
    np.testing.assert_allclose(got["probability"].to_numpy(), expected["probability"].to_numpy(), rtol=0, atol=1e-9)
    assert got["prediction"].tolist() == expected["prediction"].tolist()


def test_the_gateway_loader_reads_a_model_folder_written_before_the_move(legacy: Path):
    from lifecycle.training.packaging import load_model_dir

    model = load_model_dir(legacy / "model" / "artifacts" / "model_dir")
    expected = pd.read_parquet(legacy / "expected.parquet")
    np.testing.assert_allclose(model.predict_proba(pd.read_parquet(legacy / "rows.parquet")),
                               expected["probability"].to_numpy(), rtol=0, atol=1e-9)
