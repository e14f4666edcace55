"""The MLflow pyfunc entry point; kept apart so that importing :mod:`lifecycle.training.packaging` needs no mlflow."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc

from lifecycle.training.packaging import load_model_dir


class TabularClassifier(mlflow.pyfunc.PythonModel):
    """DataFrame of features -> a DataFrame per row, by the model's task (see :mod:`lifecycle.training.packaging`):
    binary ``probability`` and 0/1 ``prediction``; multiclass ``prediction`` (the class) and ``probability.<class>``
    per class; regression ``prediction`` (the value). The name stays: models registered so far pickled it.

    Any network loads: the built-in MLP, or a ``training.module`` factory's, whose module MLflow puts on
    ``sys.path`` from the model's ``code_paths`` (or installs from its pip requirements) before ``load_context``
    runs (:func:`lifecycle.training.packaging.factory_code`)."""

    def load_context(self, context: Any) -> None:
        self.model = load_model_dir(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict_frame(model_input)
