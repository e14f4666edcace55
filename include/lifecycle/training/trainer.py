"""PyTorch training for tabular models: seeded, early-stopped, checkpointed every epoch, resumable.

The head follows the task (:attr:`lifecycle.spec.ModelSpec.task`): a binary classifier has one output, a logit,
trained with binary cross-entropy on the 0/1 target; a multiclass one K outputs (one per class of
``data.classes``), trained with cross-entropy on class indices; a regression model one output trained with mean
squared error on the standardised target (:class:`lifecycle.training.preprocessing.TargetEncoding`). Early
stopping watches the same loss on the validation rows. A binary model's architecture dict is what it always was
(``width``, ``hidden``, ``dropout``); the others add ``task`` and ``outputs``, so a checkpoint of one task never
resumes a run of another.

The network is the built-in :class:`TabularMLP` (``hidden_units``, ``dropout``) or, with ``training.module:
"package.module:factory"``, the ``torch.nn.Module`` that factory builds (:func:`load_factory` says its contract):
either one trains by the same loop (seeding, loss per task, early stopping, checkpoints, DDP). A factory's
architecture dict is ``width``, ``task``, ``outputs``, ``module`` (the factory's path) and ``options`` (its keyword
arguments); :func:`build_model` rebuilds either kind from its architecture dict and a state dict.

Determinism: the shuffle order and dropout of epoch ``e`` depend only on (seed, e), so a run resumed from the
checkpoint of epoch ``k`` reproduces the uninterrupted run exactly. On CUDA the forward pass runs under bf16
autocast; on CPU in float32.
"""
from __future__ import annotations

import io
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lifecycle.fileio import atomic_write

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot produce a usable model (NaN loss, no data, ...); the message says what to change."""


class ModuleFactoryError(TrainingError):
    """``training.module`` gives no usable network: its factory does not import, fails, returns something that is
    not a ``torch.nn.Module``, a network whose outputs have the wrong shape, or one the saved weights do not fit.
    One line naming the field, the factory and what went wrong."""


#: The tasks :func:`train` knows (the spec's :data:`lifecycle.spec.Task`).
TASKS = ("binary", "multiclass", "regression")


class TabularMLP(nn.Module):
    """ReLU layers, then a linear head of ``outputs`` units: one output comes out as a vector (rows), more as a
    matrix (rows x outputs)."""

    def __init__(self, width: int, hidden: list[int], dropout: float, outputs: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = width
        for units in hidden:
            layers += [nn.Linear(prev, units), nn.ReLU(), nn.Dropout(dropout)]
            prev = units
        layers.append(nn.Linear(prev, outputs))
        self.net = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.squeeze(-1) if self.outputs == 1 else out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def load_factory(path: str) -> Callable[..., nn.Module]:
    """Import ``training.module``'s factory from ``"package.module:attribute"`` (the attribute may be dotted).

    The factory's contract: ``factory(input_width: int, outputs: int, task: str, **module_options) ->
    torch.nn.Module``, where

    - ``input_width`` is the width of the preprocessed feature matrix (numeric columns plus one-hot categories:
      :class:`~lifecycle.training.preprocessing.Preprocessor`), not the spec's number of features;
    - ``outputs`` is 1 for ``binary`` (a logit) and ``regression`` (the standardised target), the number of classes
      for ``multiclass`` (one logit per class, in the order of ``data.classes``);
    - ``task`` is the spec's task; ``module_options`` are the spec's ``training.module_options`` (JSON-plain);
    - the module's ``forward`` takes a float32 ``(rows, input_width)`` tensor and returns raw outputs, without a
      sigmoid or softmax (the loss and :func:`head_outputs` apply them): ``(rows,)`` or ``(rows, 1)`` for one
      output (the second is squeezed), ``(rows, outputs)`` otherwise; on CUDA it runs under bf16 autocast;
    - it is built right after ``torch.manual_seed(seed)``: a network initialised from torch's generator gets the
      same weights from the same seed (other generators, numpy's or ``random``'s, are not seeded);
    - everything its output depends on is in its ``state_dict`` (parameters and buffers) or rebuilt by the
      factory from the same arguments: a saved model is the factory's path, its options and the state dict;
    - ``hidden_units`` and ``dropout`` are the built-in MLP's: a factory's network does not see them.

    The module must be importable in every process that trains (each ``torchrun`` rank) and wherever the model is
    loaded (:mod:`lifecycle.training.packaging` says how the pyfunc carries it). Raises :class:`ModuleFactoryError`
    (one line) when it does not import or is not a callable.
    """
    import importlib

    where = f"training.module {path!r}"
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ModuleFactoryError(f"{where}: expected 'package.module:factory'")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in ("torch", "builtins") or any(p.startswith("_") for p in
                                                                            attr.split(".")):
        # A model's weights.pt names its factory, and loading calls it: a tampered file must not be able to call
        # os.system or subprocess.run. A network comes from a package of its own, never the standard library.
        raise ModuleFactoryError(f"{where}: a factory from the standard library, torch itself or a private name "
                                 "is refused: name a function of your own package")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as err:  # an import runs arbitrary code: any failure is the factory's, reported as one line
        raise ModuleFactoryError(f"{where}: cannot import {module_name}: {_first_line(err)}") from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModuleFactoryError(f"{where}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModuleFactoryError(f"{where}: {attr} is a {type(target).__name__}, not a callable factory")
    return target


def _squeeze_last(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: a one-output network's ``(rows, 1)`` as the ``(rows,)`` the loss and the head expect."""
    return output.squeeze(-1)


def _describe_network(architecture: dict[str, Any]) -> str:
    if "module" in architecture:
        options = f" with options {architecture.get('options')}" if architecture.get("options") else ""
        return f"training.module {architecture['module']!r}{options}"
    return f"the built-in MLP (hidden {architecture['hidden']})"


def build_network(architecture: dict[str, Any]) -> nn.Module:
    """A fresh, untrained network for an architecture dict, on CPU, in training mode: the built-in MLP, or the
    factory's module (no ``module`` key: the MLP). Seed torch before calling it for reproducible weights.

    A factory's network is checked on a 2-row zero batch (eval mode, no gradients): the output must be a floating
    tensor of ``(rows,)`` or ``(rows, 1)`` for one output (the latter gets a squeezing forward hook), ``(rows,
    outputs)`` for more, and the network must have trainable parameters; else :class:`ModuleFactoryError`.
    """
    outputs = int(architecture.get("outputs", 1))
    if "module" not in architecture:
        return TabularMLP(architecture["width"], architecture["hidden"], architecture["dropout"], outputs)
    width, task = int(architecture["width"]), task_of(architecture)
    where = f"training.module {architecture['module']!r}"
    factory = load_factory(architecture["module"])
    options = dict(architecture.get("options") or {})
    try:
        net = factory(width, outputs, task, **options)
    except Exception as err:
        raise ModuleFactoryError(f"{where}: the factory failed for input_width {width}, outputs {outputs}, task "
                                 f"{task}, options {options}: {_first_line(err)}") from err
    if not isinstance(net, nn.Module):
        raise ModuleFactoryError(f"{where}: the factory returned a {type(net).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in net.parameters()):
        raise ModuleFactoryError(f"{where}: the factory's {type(net).__name__} has no trainable parameters")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, width))
    except Exception as err:
        raise ModuleFactoryError(f"{where}: its {type(net).__name__} fails on a float32 batch of 2 rows x {width} "
                                 f"columns: {_first_line(err)}") from err
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        found = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModuleFactoryError(f"{where}: its {type(net).__name__} returns {found}; expected a floating tensor")
    shape = tuple(out.shape)
    if outputs == 1 and shape == (2, 1):
        net.register_forward_hook(_squeeze_last)
    elif shape != ((2,) if outputs == 1 else (2, outputs)):
        want = "(rows,) or (rows, 1)" if outputs == 1 else f"(rows, {outputs})"
        raise ModuleFactoryError(f"{where}: its {type(net).__name__} returns shape {shape} for 2 rows; a {task} "
                                 f"model with {outputs} output(s) needs {want}")
    return net


def load_weights(net: nn.Module, state_dict: dict[str, torch.Tensor], architecture: dict[str, Any]) -> None:
    """``net.load_state_dict(state_dict)`` (strict), with a one-line error naming the network and the keys or
    shapes that do not fit (:class:`ModuleFactoryError` for a factory's network, else :class:`TrainingError`)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} saved {tuple(state_dict[k].shape)}, built {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = [f"{label} {', '.join(keys[:3])}{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("shapes differ:", shapes))
                if keys]
    if problems:
        error = ModuleFactoryError if "module" in architecture else TrainingError
        raise error(f"{_describe_network(architecture)}: the saved weights do not fit the network it builds "
                    f"(input width {architecture.get('width')}, outputs {architecture.get('outputs', 1)}): "
                    + "; ".join(problems))
    net.load_state_dict(state_dict)


def parameter_count(net: nn.Module) -> int:
    """Trainable parameters (what MLflow records as ``model.parameters``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def check_module(path: str, options: dict[str, Any] | None = None, *, task: str = "binary", outputs: int = 1,
                 width: int = 4) -> str:
    """What a ``lifecycle check``-style call asks before any training: does ``training.module`` import, build a
    ``torch.nn.Module`` and answer a batch in the shape the task needs? ``width`` stands in for the preprocessed
    width (training checks again with the real one). Returns a one-line summary; raises
    :class:`ModuleFactoryError` (one line) when not."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        net = build_network({"width": width, "task": task, "outputs": outputs, "module": path,
                             "options": dict(options or {})})
    return (f"training.module {path!r}: a {type(net).__name__} with {parameter_count(net)} parameters for input "
            f"width {width}, task {task}, {outputs} output(s)")


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingError("spec asks for device 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass
class Hyper:
    """The knobs of one training run (from the spec's training section, possibly overridden per run)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    hidden_units: list[int]
    dropout: float
    patience: int
    seed: int
    device: str = "auto"
    #: ``training.module``: the factory's ``"package.module:attribute"``; None for the built-in MLP.
    module: str | None = None
    #: ``training.module_options``: the factory's keyword arguments (JSON-plain).
    module_options: dict[str, Any] = field(default_factory=dict)

    def architecture(self, width: int, task: str = "binary", outputs: int = 1) -> dict[str, Any]:
        """The architecture dict of this run's network (the module docstring): the checkpoint's and the saved
        model's, so a checkpoint resumes only a run of the same network."""
        if self.module is not None:
            return {"width": width, "task": task, "outputs": outputs, "module": self.module,
                    "options": dict(self.module_options)}
        arch: dict[str, Any] = {"width": width, "hidden": list(self.hidden_units), "dropout": self.dropout}
        if task != "binary":  # a binary model's dict stays as it always was: its checkpoints keep resuming
            arch |= {"task": task, "outputs": outputs}
        return arch


@dataclass
class TrainOutcome:
    state_dict: dict[str, torch.Tensor]
    architecture: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    device: str
    resumed_from: int | None = None
    checkpoints: list[Path] = field(default_factory=list)
    #: Trainable parameters of the network.
    parameters: int = 0


def _bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), y)


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.float(), y)


def _mse(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs.float(), y)


_LOSSES = {"binary": _bce, "multiclass": _cross_entropy, "regression": _mse}


def task_of(architecture: dict[str, Any]) -> str:
    """The task a model was trained for, from its architecture dict (binary when it does not say)."""
    return architecture.get("task", "binary")


def head_outputs(raw: torch.Tensor, task: str) -> torch.Tensor:
    """The network's raw outputs as the task reads them: binary the probability (sigmoid), multiclass the class
    probabilities (softmax over the outputs), regression the (standardised) value as it is."""
    if task == "multiclass":
        return torch.softmax(raw.float(), dim=-1)
    if task == "regression":
        return raw
    return torch.sigmoid(raw)


def _world() -> tuple[int, int]:
    """(rank, world size) under ``torchrun`` with an initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def latest_checkpoint(folder: Path | None) -> Path | None:
    if folder is None or not folder.exists():
        return None
    found = sorted(folder.glob("epoch-*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`train`, read with ``weights_only=True``: tensors and plain values only.

    A file holding any other pickled object (which unpickling would run code to build) is refused with a
    :class:`TrainingError`, before anything in it is executed.
    """
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise TrainingError(f"checkpoint {path} holds objects other than tensors and plain values; refused "
                            f"(weights_only): {str(err).splitlines()[0][:300]}") from err


def train(hp: Hyper, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
          checkpoint_dir: Path | None = None,
          on_epoch: Callable[[int, dict[str, float], Path | None], None] | None = None,
          task: str = "binary", outputs: int = 1) -> TrainOutcome:
    """Train with early stopping on validation loss; resume from the newest checkpoint in ``checkpoint_dir``.

    ``on_epoch(epoch, metrics, checkpoint_path)`` is called after each epoch (metrics logging, artifact upload).

    ``task`` picks the head and the loss (the module docstring): ``binary`` (``y`` 0/1, one output),
    ``multiclass`` (``y`` class indices in ``[0, outputs)``, ``outputs`` at least 2) or ``regression`` (``y`` the
    standardised target, one output). :meth:`TargetEncoding.head
    <lifecycle.training.preprocessing.TargetEncoding.head>` gives these arguments for a spec's target.

    Under ``torchrun`` (an initialised process group) this is DDP: every rank holds the same rows, takes an equal
    shard of each epoch's permutation with ``batch_size / world`` rows per step (so the global batch, and thus
    the optimisation, matches one process), gradients are averaged, every rank computes the same validation
    loss (same weights) and so takes the same early-stopping decision; only rank 0 writes checkpoints and calls
    ``on_epoch``. All ranks resume from the same newest checkpoint.
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise TrainingError(f"empty split: {len(x_train)} training rows, {len(x_val)} validation rows")
    if task not in TASKS:
        raise TrainingError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    if task == "multiclass":
        if outputs < 2:
            raise TrainingError(f"a multiclass model needs at least 2 outputs (one per class), got {outputs}")
        for name, y in (("training", y_train), ("validation", y_val)):
            if len(y) and (int(np.min(y)) < 0 or int(np.max(y)) >= outputs):
                raise TrainingError(f"{name} labels must be class indices in [0, {outputs}), got values in "
                                    f"[{int(np.min(y))}, {int(np.max(y))}]")
    elif outputs != 1:
        raise TrainingError(f"a {task} model has 1 output, not {outputs}")
    rank, world = _world()
    device = resolve_device(hp.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
    use_bf16 = device.type == "cuda"
    arch = hp.architecture(int(x_train.shape[1]), task, outputs)
    loss_fn = _LOSSES[task]
    torch.manual_seed(hp.seed)  # before the network is built: the same seed gives the same initial weights
    net = build_network(arch).to(device)
    parameters = parameter_count(net)
    if hp.module is not None:
        log.info("training: network from %s: %s with %d parameters", _describe_network(arch), type(net).__name__,
                 parameters)
    opt = torch.optim.AdamW(net.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    y_type = np.int64 if task == "multiclass" else np.float32
    xt = torch.from_numpy(x_train).to(device)
    yt = torch.from_numpy(np.asarray(y_train).astype(y_type)).to(device)
    xv = torch.from_numpy(x_val).to(device)
    yv = torch.from_numpy(np.asarray(y_val).astype(y_type)).to(device)

    start, best_loss, best_epoch, bad, history = 1, math.inf, 0, 0, []
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    resumed_from = None
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0 may have just fetched the newest checkpoint from the MLflow run
    ckpt = latest_checkpoint(checkpoint_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt, device)
        if state["architecture"] != arch:
            raise TrainingError(f"checkpoint {ckpt} was made for another architecture {state['architecture']}; "
                                f"this run wants {arch}; clear the checkpoint folder to start over")
        load_weights(net, state["model"], arch)
        opt.load_state_dict(state["optimizer"])
        best_state, best_loss, best_epoch = state["best_state"], state["best_loss"], state["best_epoch"]
        bad, history = state["bad_epochs"], state["history"]
        start = state["epoch"] + 1
        resumed_from = state["epoch"]
        log.info("training: resuming from %s (epoch %d done, best val loss %.4f at epoch %d)",
                 ckpt.name, state["epoch"], best_loss, best_epoch)
        if state.get("stopped"):
            start = hp.epochs + 1  # the run had already finished; only the final steps remain
    model: nn.Module = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    step = max(hp.batch_size // world, 1)
    checkpoints: list[Path] = []
    stopped_early = False
    for epoch in range(start, hp.epochs + 1):
        model.train()
        gen = torch.Generator().manual_seed(hp.seed * 1000 + epoch)
        # dropout masks: reproducible per epoch (and rank), so resume is exact
        torch.manual_seed(hp.seed * 1000 + epoch + 7919 * rank)
        order = torch.randperm(len(xt), generator=gen)
        order = order[: len(order) // world * world][rank::world].to(device)  # equal shards: equal step counts
        total, seen = 0.0, 0
        for i in range(0, len(order), step):
            idx = order[i:i + step]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(xt[idx])
            loss = loss_fn(logits, yt[idx])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch}, batch {i // hp.batch_size}: the run diverged; "
                    f"lower learning_rate (now {hp.learning_rate}) or check the features for extreme values"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        if world > 1:  # the logged training loss is the mean over every rank's rows
            import torch.distributed as dist

            sums = torch.tensor([total, float(seen)], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        net.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            val_logits = net(xv)
        val_loss = loss_fn(val_logits, yv).item()
        if not math.isfinite(val_loss):
            raise TrainingError(f"validation loss became {val_loss} at epoch {epoch}; lower learning_rate")
        metrics = {"epoch": float(epoch), "train_loss": total / seen, "val_loss": val_loss}
        history.append(metrics)
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        stopped_early = bad >= hp.patience
        path = None
        if checkpoint_dir is not None and rank == 0:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path = checkpoint_dir / f"epoch-{epoch:04d}.pt"
            buffer = io.BytesIO()
            torch.save({"epoch": epoch, "architecture": arch, "model": net.state_dict(),
                        "optimizer": opt.state_dict(), "best_state": best_state, "best_loss": best_loss,
                        "best_epoch": best_epoch, "bad_epochs": bad, "history": history,
                        "stopped": stopped_early or epoch == hp.epochs}, buffer)
            atomic_write(path, buffer.getvalue())  # a crash mid-save never leaves a truncated "latest" checkpoint
            checkpoints.append(path)
        if on_epoch and rank == 0:
            on_epoch(epoch, metrics, path)
        if stopped_early:
            log.info("training: early stop at epoch %d (no val improvement for %d epochs; best epoch %d)",
                     epoch, hp.patience, best_epoch)
            break
    if best_epoch == 0:
        raise TrainingError("no epoch produced a finite validation loss")
    cpu_state = {k: v.detach().cpu() for k, v in best_state.items()}
    return TrainOutcome(cpu_state, arch, history, best_epoch, stopped_early, str(device), resumed_from, checkpoints,
                        parameters)


def predict_proba(state_dict: dict[str, torch.Tensor], architecture: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The head's outputs for a feature matrix, on CPU (evaluation and serving), float64, for either network
    (:func:`build_model`): a binary model's
    probabilities (rows), a multiclass model's class probabilities (rows x classes), a regression model's
    standardised values (rows; :meth:`TargetEncoding.to_target
    <lifecycle.training.preprocessing.TargetEncoding.to_target>` gives target units)."""
    model = build_model(state_dict, architecture)
    with torch.no_grad():
        return head_outputs(model(torch.from_numpy(x)), task_of(architecture)).numpy().astype(np.float64)


def build_model(state_dict: dict[str, torch.Tensor], architecture: dict[str, Any]) -> nn.Module:
    """The trained network, in eval mode: :func:`build_network` for the architecture dict (the built-in MLP when
    it names no ``module``, as every model saved before factories existed), then the state dict, strictly
    (:func:`load_weights`). A factory that does not import or no longer fits the weights is a one-line
    :class:`ModuleFactoryError`."""
    model = build_network(architecture)
    load_weights(model, state_dict, architecture)
    model.eval()
    return model
