"""The model as shipped: an MLflow pyfunc holding the network weights, the fitted preprocessing and the
decision threshold, with a signature, an input example and explicit pip requirements.

``LoadedModel`` is the plain in-process form used by evaluation and the serving gateway (no pyfunc overhead);
the pyfunc wrapper delegates to it, so every consumer computes the same numbers.

The model folder (:func:`save_model_dir`): ``weights.pt`` (state dict and architecture dict), ``preprocessor.json``
and ``model_meta.json``. The architecture dict says which network the state dict belongs to: the built-in MLP
(``width``, ``hidden``, ``dropout``; every model saved before ``training.module`` existed), or a factory's
(``module``: ``"package.module:factory"``, ``options``: its keyword arguments, ``width``, ``task``, ``outputs``):
loading imports the factory, builds its network and loads the state dict strictly
(:func:`lifecycle.training.trainer.build_model`; one-line :class:`~lifecycle.training.trainer.ModuleFactoryError`
when the factory does not import or the weights do not fit).

Where a factory's module comes from when the model is loaded: :func:`load_model_dir` (the gateway, evaluation)
imports it from the environment, as it imports torch: never code from the model's files, which are read as
tensors and plain values only. The MLflow pyfunc (:func:`log_pyfunc`) carries it: a module of the project (a source
file outside the interpreter's installed packages) travels in the model's ``code_paths`` (its file and the
``__init__.py`` of each package above it: a factory whose module imports other project modules needs those
installed where it is served), an installed distribution is pinned in the model's pip requirements. A binary model's files are as they always were (``threshold``: the decision threshold;
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
    #: The network's architecture dict (``weights.pt``): a factory's names ``module`` and ``options``.
    architecture: dict[str, Any] | None = None

    @property
    def factory(self) -> str | None:
        """``"package.module:factory"`` of a network built by ``training.module``; None for the built-in MLP."""
        return (self.architecture or {}).get("module")

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
    """Load from the files written by :func:`save_model_dir` (also the ``artifacts/`` of a logged pyfunc).

    A factory's network needs its module importable here (the module docstring); when it is not, or the weights do
    not fit what it builds, a one-line :class:`~lifecycle.training.trainer.ModuleFactoryError` names the folder.
    """
    import torch

    from lifecycle.training.trainer import ModuleFactoryError, build_model

    folder = Path(folder)
    for name in (WEIGHTS, PREPROCESSOR, META):
        if not (folder / name).exists():
            raise FileNotFoundError(f"model folder {folder} lacks {name}: not a lifecycle model")
    torch.set_num_threads(1)  # single-row scoring: threads cost more than they save
    blob = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    meta = json.loads((folder / META).read_text())
    threshold = meta.get("threshold")
    try:
        module = build_model(blob["state_dict"], blob["architecture"])
    except ModuleFactoryError as err:
        raise ModuleFactoryError(f"model folder {folder}: {err}") from err
    return LoadedModel(Preprocessor.from_dict(json.loads((folder / PREPROCESSOR).read_text())), module,
                       None if threshold is None else float(threshold), meta, blob["architecture"])


def _installed(origin: Path) -> bool:
    """Whether a module file belongs to the interpreter's installed packages (site-packages, the standard
    library), as opposed to a source folder on ``sys.path`` such as the project's."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return any(origin.is_relative_to(Path(r).resolve()) for r in roots if r)


def factory_code(architecture: dict[str, Any], dest: Path) -> tuple[list[str], list[str]]:
    """What makes a factory's module importable where the pyfunc is served: ``(code_paths, pip requirements)``.

    Nothing for the built-in MLP or a factory inside ``lifecycle`` (bundled whole anyway). A module of an installed
    distribution: that distribution, pinned to its version here. Any other (a project file): a copy under ``dest``
    of the module's file and of the ``__init__.py`` of each regular package above it (namespace packages stay
    namespaces), whose top folder (or file) is the code path.
    """
    import importlib.util
    import shutil
    from importlib.metadata import packages_distributions, version

    path = architecture.get("module")
    if path is None:
        return [], []
    name = path.partition(":")[0]
    parts = name.split(".")
    if parts[0] == "lifecycle":
        return [], []
    found = importlib.util.find_spec(name)
    if found is None or not found.origin or not Path(found.origin).is_file():
        return [], []  # a built-in module: nothing to carry
    origin = Path(found.origin).resolve()
    if _installed(origin):
        dists = sorted(set(packages_distributions().get(parts[0], [])))
        return [], [f"{d}=={version(d)}" for d in dists]
    for i in range(1, len(parts)):  # the packages above the module
        package = importlib.util.find_spec(".".join(parts[:i]))
        folder = dest.joinpath(*parts[:i])
        folder.mkdir(parents=True, exist_ok=True)
        if package is not None and package.origin and Path(package.origin).is_file():
            shutil.copyfile(package.origin, folder / "__init__.py")
    if origin.name == "__init__.py":  # the factory's module is a package itself
        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, dest.joinpath(*parts, "__init__.py"))
        return [str(dest / parts[0])], []
    target = dest.joinpath(*parts[:-1], parts[-1] + origin.suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(origin, target)
    return [str(dest / (parts[0] if len(parts) > 1 else parts[0] + origin.suffix))], []


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs ~30 s): the pins this project runs with."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy", "pandas")]


def log_pyfunc(model_dir: Path, example: pd.DataFrame, name: str = "model"):
    """Log the model folder as an MLflow pyfunc in the active run; return mlflow's ModelInfo.

    Also records the network in the run's params: ``model.network`` (a factory's ``"package.module:factory"``, or
    ``builtin_mlp``) and ``model.parameters`` (trainable parameters). A factory's module travels with the pyfunc
    (:func:`factory_code`).
    """
    import tempfile

    import mlflow
    from mlflow.models import infer_signature

    from lifecycle.training.trainer import parameter_count

    model = load_model_dir(model_dir)
    output = model.predict_frame(example)
    mlflow.log_params({"model.network": model.factory or "builtin_mlp",
                       "model.parameters": parameter_count(model.module)})
    code = Path(__file__).resolve().parents[1]  # the whole lifecycle package, bundled with the model
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore", UserWarning)  # cloudpickle and type-hint notices: expected for a PythonModel
        from lifecycle.training.pyfunc_model import TabularClassifier

        factory_paths, factory_requirements = factory_code(model.architecture or {}, Path(tmp) / "factory")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=TabularClassifier(),
            artifacts={"model_dir": str(model_dir)},
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=pip_requirements() + factory_requirements,
            code_paths=[str(code), *factory_paths],
        )
