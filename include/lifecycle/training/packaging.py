"""The model as shipped: an MLflow pyfunc holding the network weights, the fitted preprocessing and the
decision threshold, with a signature, an input example and explicit pip requirements.

``LoadedModel`` is the plain in-process form used by evaluation and the serving gateway (no pyfunc overhead);
the pyfunc wrapper delegates to it, so every consumer computes the same numbers.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.training.preprocessing import Preprocessor

if TYPE_CHECKING:
    import pandas as pd

WEIGHTS = "weights.pt"
PREPROCESSOR = "preprocessor.json"
META = "model_meta.json"


@dataclass
class LoadedModel:
    """A trained classifier ready to score rows: preprocessing + torch module + threshold."""

    preprocessor: Preprocessor
    module: Any  # torch.nn.Module, kept untyped so importing this file does not import torch
    threshold: float
    meta: dict[str, Any]

    def predict_proba(self, columns: Any) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.preprocessor.transform(columns))
        with torch.inference_mode():
            return torch.sigmoid(self.module(x)).numpy().astype(np.float64)



def save_model_dir(folder: Path, state_dict: dict[str, Any], architecture: dict[str, Any],
                   preprocessor: Preprocessor, threshold: float, meta: dict[str, Any]) -> Path:
    """Write the model's files (weights, preprocessing, metadata) to ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "architecture": architecture}, folder / WEIGHTS)
    (folder / PREPROCESSOR).write_text(json.dumps(preprocessor.to_dict(), indent=1))
    (folder / META).write_text(json.dumps({**meta, "threshold": threshold}, indent=1, default=str))
    return folder


def load_model_dir(folder: Path) -> LoadedModel:
    """Load from the files written by :func:`save_model_dir` (also the ``artifacts/`` of a logged pyfunc)."""
    import torch

    from lifecycle.training.trainer import build_model

    folder = Path(folder)
    for name in (WEIGHTS, PREPROCESSOR, META):
        if not (folder / name).exists():
            raise FileNotFoundError(f"model folder {folder} lacks {name}: not a lifecycle model")
    torch.set_num_threads(1)  # single-row scoring: threads cost more than they save
    blob = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    meta = json.loads((folder / META).read_text())
    return LoadedModel(Preprocessor.from_dict(json.loads((folder / PREPROCESSOR).read_text())),
                       build_model(blob["state_dict"], blob["architecture"]), float(meta["threshold"]), meta)


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs ~30 s): the pins this project runs with."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy", "pandas")]


def log_pyfunc(model_dir: Path, example: pd.DataFrame, name: str = "model"):
    """Log the model folder as an MLflow pyfunc in the active run; return mlflow's ModelInfo."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    model = load_model_dir(model_dir)
    p = model.predict_proba(example)
    output = pd.DataFrame({"probability": p, "prediction": (p >= model.threshold).astype("int64")})
    code = Path(__file__).resolve().parents[1]  # the whole lifecycle package, bundled with the model
    with warnings.catch_warnings():  # cloudpickle and type-hint notices: expected for a PythonModel instance
        warnings.simplefilter("ignore", UserWarning)
        from lifecycle.training.pyfunc_model import TabularClassifier

        return mlflow.pyfunc.log_model(
            name=name,
            python_model=TabularClassifier(),
            artifacts={"model_dir": str(model_dir)},
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=pip_requirements(),
            code_paths=[str(code)],
        )
