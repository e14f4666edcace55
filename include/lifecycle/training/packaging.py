"""The model as shipped: an MLflow pyfunc holding the network weights, the fitted preprocessing and the
decision threshold, with a signature, an input example and explicit pip requirements.

``LoadedModel`` is the plain in-process form used by evaluation and the serving gateway (no pyfunc overhead);
the pyfunc wrapper delegates to it, so every consumer computes the same numbers.

The model folder (:func:`save_model_dir`): ``weights.pt`` (state dict and architecture dict), ``preprocessor.json``
and ``model_meta.json``. A binary model's files are as they always were (``threshold``: the decision threshold;
no ``task``). A multiclass or regression model's metadata also records the target
(:meth:`~lifecycle.training.preprocessing.TargetEncoding.to_meta`): ``task``, and ``classes`` (in the order of the
network's outputs) or ``target_scaling`` (``mean`` and ``std`` of the training split's target); its ``threshold``
is null (a decision threshold is a binary notion).

What :meth:`LoadedModel.predict_frame` (and so the pyfunc's ``predict``) returns per row, by task:

- ``binary``: ``probability`` (float) and ``prediction`` (0/1: ``probability >= threshold``), as always;
- ``multiclass``: ``prediction`` (the most probable class, as written in ``data.classes``) and one column
  ``probability.<class>`` per class, in the order of ``classes``;
- ``regression``: ``prediction`` (the predicted value, in target units).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.training.preprocessing import Preprocessor, TargetEncoding

if TYPE_CHECKING:
    import pandas as pd

WEIGHTS = "weights.pt"
PREPROCESSOR = "preprocessor.json"
META = "model_meta.json"


#: Prefix of a multiclass model's probability columns: ``probability.<class>``.
PROBABILITY = "probability"


@dataclass
class LoadedModel:
    """A trained model ready to score rows: preprocessing + torch module + threshold (binary; None otherwise) +
    metadata (which holds the task and its target encoding; see the module docstring)."""

    preprocessor: Preprocessor
    module: Any  # torch.nn.Module, kept untyped so importing this file does not import torch
    threshold: float | None
    meta: dict[str, Any]

    @property
    def target(self) -> TargetEncoding:
        return TargetEncoding.from_meta(self.meta)

    @property
    def task(self) -> str:
        """``binary``, ``multiclass`` or ``regression`` (a model saved before the other tasks: binary)."""
        return self.meta.get("task", "binary")

    @property
    def classes(self) -> list[str | int] | None:
        """A multiclass model's classes, in the order of its probability columns; None for the other tasks."""
        return self.target.classes

    def _outputs(self, columns: Any) -> np.ndarray:
        import torch

        from lifecycle.training.trainer import head_outputs

        x = torch.from_numpy(self.preprocessor.transform(columns))
        with torch.inference_mode():
            return head_outputs(self.module(x), self.task).numpy().astype(np.float64)

    def predict_proba(self, columns: Any) -> np.ndarray:
        """Binary: the probability of class 1 per row (as always). Multiclass: rows x classes probabilities (each
        row sums to 1), columns in the order of :attr:`classes`. A regression model has none (ValueError)."""
        if self.task == "binary":
            import torch

            x = torch.from_numpy(self.preprocessor.transform(columns))
            with torch.inference_mode():
                return torch.sigmoid(self.module(x)).numpy().astype(np.float64)
        if self.task == "regression":
            raise ValueError("a regression model predicts values, not probabilities: use predict()")
        return self._outputs(columns)

    def predict(self, columns: Any) -> np.ndarray:
        """The prediction per row: binary 0/1 (``probability >= threshold``), multiclass the most probable class
        (as written in :attr:`classes`), regression the value in target units."""
        if self.task == "regression":
            return self.target.to_target(self._outputs(columns))
        p = self.predict_proba(columns)
        if self.task == "binary":
            return (p >= self.threshold).astype("int64")
        return _class_values(self.classes or [], p.argmax(axis=1))

    def scores(self, columns: Any) -> np.ndarray:
        """What the offline evaluation scores (:func:`lifecycle.training.evaluation.evaluate`): binary and
        multiclass the probabilities (:meth:`predict_proba`), regression the values (:meth:`predict`)."""
        return self.predict(columns) if self.task == "regression" else self.predict_proba(columns)

    def predict_frame(self, columns: Any) -> pd.DataFrame:
        """The pyfunc's output for these rows (the module docstring says its columns per task)."""
        import pandas as pd

        if self.task == "regression":
            return pd.DataFrame({"prediction": self.predict(columns)})
        p = self.predict_proba(columns)
        if self.task == "binary":
            return pd.DataFrame({"probability": p, "prediction": (p >= self.threshold).astype("int64")})
        classes = self.classes or []
        frame = pd.DataFrame({"prediction": _class_values(classes, p.argmax(axis=1))})
        for k, c in enumerate(classes):
            frame[f"{PROBABILITY}.{c}"] = p[:, k]
        return frame


def _class_values(classes: list[str | int], index: np.ndarray) -> np.ndarray:
    """The classes at ``index``: int64 when every class is a whole number, else objects (text as written)."""
    if all(isinstance(c, int) for c in classes):
        return np.asarray(classes, dtype=np.int64)[index]
    return np.asarray(classes, dtype=object)[index]



def save_model_dir(folder: Path, state_dict: dict[str, Any], architecture: dict[str, Any],
                   preprocessor: Preprocessor, threshold: float | None, meta: dict[str, Any]) -> Path:
    """Write the model's files (weights, preprocessing, metadata) to ``folder``. ``threshold``: a binary model's
    decision threshold, None for the other tasks; ``meta`` holds, for those, the target encoding
    (:meth:`~lifecycle.training.preprocessing.TargetEncoding.to_meta`)."""
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
    threshold = meta.get("threshold")
    return LoadedModel(Preprocessor.from_dict(json.loads((folder / PREPROCESSOR).read_text())),
                       build_model(blob["state_dict"], blob["architecture"]),
                       None if threshold is None else float(threshold), meta)


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs ~30 s): the pins this project runs with."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy", "pandas")]


def log_pyfunc(model_dir: Path, example: pd.DataFrame, name: str = "model"):
    """Log the model folder as an MLflow pyfunc in the active run; return mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    model = load_model_dir(model_dir)
    output = model.predict_frame(example)
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
