"""Old import path of the MLflow pyfunc class, kept for models registered before the core was grouped by stage:
their pickled ``python_model`` names ``lifecycle.pyfunc_model.TabularClassifier``."""
from __future__ import annotations

from lifecycle.training.pyfunc_model import TabularClassifier

__all__ = ["TabularClassifier"]
