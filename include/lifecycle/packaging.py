"""Old import path of the model package format (what :mod:`lifecycle.pyfunc_model` loaded before the core was
grouped by stage); kept so that code bundled with models registered before the move still resolves."""
from __future__ import annotations

from lifecycle.training.packaging import LoadedModel, load_model_dir, save_model_dir

__all__ = ["LoadedModel", "load_model_dir", "save_model_dir"]
