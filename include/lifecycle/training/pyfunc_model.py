"""The MLflow pyfunc entry point; kept apart so that importing :mod:`lifecycle.training.packaging` needs no mlflow."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc

from lifecycle.training.packaging import load_model_dir


class TabularClassifier(mlflow.pyfunc.PythonModel):
    """DataFrame of features -> probability and 0/1 prediction per row."""

    def load_context(self, context: Any) -> None:
        self.model = load_model_dir(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        p = self.model.predict_proba(model_input)
        return pd.DataFrame({"probability": p, "prediction": (p >= self.model.threshold).astype("int64")})
