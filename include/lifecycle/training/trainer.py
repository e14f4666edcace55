"""PyTorch training for tabular models: seeded, early-stopped, checkpointed every epoch, resumable.

The head follows the task (:attr:`lifecycle.spec.ModelSpec.task`): a binary classifier has one output, a logit,
trained with binary cross-entropy on the 0/1 target; a multiclass one K outputs (one per class of
``data.classes``), trained with cross-entropy on class indices; a regression model one output trained with mean
squared error on the standardised target (:class:`lifecycle.training.preprocessing.TargetEncoding`). Early
stopping watches the same loss on the validation rows. A binary model's architecture dict is what it always was
(``width``, ``hidden``, ``dropout``); the others add ``task`` and ``outputs``, so a checkpoint of one task never
resumes a run of another.

Determinism: the shuffle order and dropout of epoch ``e`` depend only on (seed, e), so a run resumed from the
checkpoint of epoch ``k`` reproduces the uninterrupted run exactly. On CUDA the forward pass runs under bf16
autocast; on CPU in float32.
"""
from __future__ import annotations

import io
import logging
import math
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
    arch: dict[str, Any] = {"width": int(x_train.shape[1]), "hidden": list(hp.hidden_units), "dropout": hp.dropout}
    if task != "binary":  # a binary model's dict stays as it always was: its checkpoints keep resuming
        arch |= {"task": task, "outputs": outputs}
    loss_fn = _LOSSES[task]
    torch.manual_seed(hp.seed)
    net = TabularMLP(arch["width"], arch["hidden"], arch["dropout"], outputs).to(device)
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
        net.load_state_dict(state["model"])
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
    return TrainOutcome(cpu_state, arch, history, best_epoch, stopped_early, str(device), resumed_from, checkpoints)


def predict_proba(state_dict: dict[str, torch.Tensor], architecture: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The head's outputs for a feature matrix, on CPU (evaluation and serving), float64: a binary model's
    probabilities (rows), a multiclass model's class probabilities (rows x classes), a regression model's
    standardised values (rows; :meth:`TargetEncoding.to_target
    <lifecycle.training.preprocessing.TargetEncoding.to_target>` gives target units)."""
    model = build_model(state_dict, architecture)
    with torch.no_grad():
        return head_outputs(model(torch.from_numpy(x)), task_of(architecture)).numpy().astype(np.float64)


def build_model(state_dict: dict[str, torch.Tensor], architecture: dict[str, Any]) -> TabularMLP:
    model = TabularMLP(architecture["width"], architecture["hidden"], architecture["dropout"],
                       int(architecture.get("outputs", 1)))
    model.load_state_dict(state_dict)
    model.eval()
    return model
