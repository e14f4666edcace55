"""What the gateway does differently for a multiclass or a regression model (a binary one takes the gateway's own
code paths, unchanged: its runtime has no head).

A :class:`TaskHead` is chosen once per model (:func:`head_for`, from the spec's ``task``) and answers, for every
request and label of that model: the response's predictions and the prediction log's fields, the bytes the
prediction index keeps per row, the feedback labels the model accepts, what a label adds to the live stats and
which paired evidence a shadow pair keeps (:mod:`lifecycle.serving.live`).

The contract (other components code against it):

- response ``predictions[i]``: multiclass ``{"label": <class as written in data.classes>, "probability": <p of
  that class>, "probabilities": {"<class as text>": p, ...}}`` (in the order of ``data.classes``); regression
  ``{"value": <float, target units>}``;
- prediction log record: multiclass ``"label": ["<class as text>", ...]``, ``"probability": [p of the predicted
  class, ...]``, ``"probabilities": [[p_1, ..., p_K], ...]``; regression ``"value": [v, ...]`` (no probability or
  label keys); every other key as for binary;
- feedback ``label`` / ``labels``: multiclass a class of ``data.classes`` matched by its text form (``2`` and
  ``"2"`` are class 2; a whole float such as ``2.0`` too, as the spec reads targets); regression a finite number
  (a bool, NaN or infinity refused); the feedback log's ``"label"``: multiclass the class texts, regression floats;
- the index keeps per row: multiclass the K probabilities (float64), regression the value (float64); the first
  labels of an entry: multiclass the class indices (int32), regression the values (float64).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import ConflictError
from lifecycle.serving.limits import show
from lifecycle.serving.live import (
    LiveStats,
    MulticlassPairedLive,
    PairedLive,
    RegressionPairedLive,
    half_brier,
)
from lifecycle.serving.scoring import RequestError

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec


class TaskMismatchError(ConflictError):
    """A version whose task (or classes) is not its spec's: it cannot be served under that spec (409)."""


def class_text(value: Any) -> str | None:
    """The text form a label is matched by: text as it is, a whole number its digits (``2``, ``2.0`` -> ``"2"``);
    None for anything else (a bool, a fraction, a non-number)."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


class TaskHead:
    """The per-task behaviour of one model's gateway runtime (the module docstring has the contract)."""

    task: str = ""
    #: Whether a label makes a prediction right or wrong (live stats' ``correct``; the judge's accuracy test).
    graded: bool = True
    #: Bytes the prediction index keeps per row of outputs.
    row_bytes: int = 8
    classes: list[Any] | None = None
    #: What a feedback label must be, for messages.
    expects: str = ""

    def check(self, scorer: Any, name: str, version: str) -> None:
        """Refuse (:class:`TaskMismatchError`) a version that is not a model of this task (and classes)."""
        task = getattr(scorer, "task", "binary")
        if task != self.task:
            raise TaskMismatchError(f"{name} v{version} is a {task} model but the spec's task is {self.task}: it "
                                    "cannot be served under this spec")

    def outputs(self, scorer: Any, rows: list[dict[str, Any]]) -> np.ndarray:
        """The version's per-task outputs for ``rows`` (float64, C-contiguous); a ValueError for a wrong shape."""
        raise NotImplementedError

    def answer(self, out: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """-> (the response's predictions, the prediction log record's task fields)."""
        raise NotImplementedError

    def labels(self, where: str, field: str, raw: list[Any]) -> tuple[list[Any], bytes]:
        """Feedback labels -> (as logged, as the index keeps them); a :class:`RequestError` (422) naming the
        item, the field, what was expected and what was found."""
        raise NotImplementedError

    def decode(self, blob: bytes) -> np.ndarray:
        """Outputs as the index kept them -> the array :meth:`outputs` gave."""
        return np.frombuffer(blob)

    def decode_labels(self, blob: bytes) -> np.ndarray:
        raise NotImplementedError

    def live(self, stats: LiveStats, now: float, out: np.ndarray, y: np.ndarray, scorer: Any) -> None:
        """Record labelled rows in a version's live stats (correctness, and the loss in [0, 1])."""
        raise NotImplementedError

    def paired(self, champion: str, challenger: str, retention: float) -> PairedLive:
        """A shadow pair's paired evidence for this task."""
        raise NotImplementedError


class MulticlassHead(TaskHead):
    """A classifier of ``data.classes`` (K >= 3): the most probable class, its probability and all of them."""

    task = "multiclass"

    def __init__(self, classes: list[Any]) -> None:
        self.classes = list(classes)
        self.texts = [str(c) for c in self.classes]
        self.index = {t: k for k, t in enumerate(self.texts)}
        self.k = len(self.classes)
        self.row_bytes = 8 * self.k
        self.expects = f"one of {self.texts}"

    def check(self, scorer: Any, name: str, version: str) -> None:
        super().check(scorer, name, version)
        theirs = getattr(scorer, "classes", None)
        if theirs is not None and [str(c) for c in theirs] != self.texts:
            raise TaskMismatchError(f"{name} v{version} predicts the classes {[str(c) for c in theirs]} but the "
                                    f"spec's data.classes are {self.texts} (same classes, same order needed)")

    def outputs(self, scorer: Any, rows: list[dict[str, Any]]) -> np.ndarray:
        scores = getattr(scorer, "scores", None) or scorer.proba
        out = np.ascontiguousarray(scores(rows), dtype=np.float64)
        if out.shape != (len(rows), self.k):
            raise ValueError(f"{out.shape} probabilities for {len(rows)} rows of {self.k} classes")
        return out

    def answer(self, out: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        top = out.argmax(axis=1).tolist()
        rows = out.tolist()
        classes, texts = self.classes, self.texts
        chosen = [row[k] for row, k in zip(rows, top, strict=True)]
        predictions = [{"label": classes[k], "probability": p, "probabilities": dict(zip(texts, row, strict=True))}
                       for k, p, row in zip(top, chosen, rows, strict=True)]
        return predictions, {"label": [texts[k] for k in top], "probability": chosen, "probabilities": rows}

    def labels(self, where: str, field: str, raw: list[Any]) -> tuple[list[Any], bytes]:
        index, logged, codes = self.index, [], []
        for j, value in enumerate(raw):
            text = class_text(value)
            k = index.get(text) if text is not None else None
            if k is None:
                at = field if field == "label" else f"{field}[{j}]"
                raise RequestError(f"{where}: {at} must be one of the classes {self.texts}, got "
                                   f"{type(value).__name__} {show(value)}")
            logged.append(self.texts[k])
            codes.append(k)
        return logged, np.asarray(codes, dtype=np.int32).tobytes()

    def decode(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob).reshape(-1, self.k)

    def decode_labels(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.int32)

    def live(self, stats: LiveStats, now: float, out: np.ndarray, y: np.ndarray, scorer: Any) -> None:
        y = y.astype(np.int64)
        correct = (out.argmax(axis=1) == y).tolist()
        loss = half_brier(out, y)
        loss = np.where(np.isfinite(loss), np.clip(loss, 0.0, 1.0), 1.0)  # a broken row: the worst loss, no NaN
        for ok, value in zip(correct, loss.tolist(), strict=True):
            stats.label(now, ok, value)

    def paired(self, champion: str, challenger: str, retention: float) -> PairedLive:
        return MulticlassPairedLive(champion, challenger, self.texts, retention=retention)


class RegressionHead(TaskHead):
    """A model of a number: the value in target units."""

    task = "regression"
    graded = False
    expects = "a finite number"

    def outputs(self, scorer: Any, rows: list[dict[str, Any]]) -> np.ndarray:
        scores = getattr(scorer, "scores", None) or scorer.proba
        out = np.ascontiguousarray(scores(rows), dtype=np.float64).reshape(-1)
        if len(out) != len(rows):
            raise ValueError(f"{len(out)} values for {len(rows)} rows")
        return out

    def answer(self, out: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        values = out.tolist()
        return [{"value": v} for v in values], {"value": values}

    def labels(self, where: str, field: str, raw: list[Any]) -> tuple[list[Any], bytes]:
        logged = []
        for j, value in enumerate(raw):
            if type(value) not in (int, float) or not math.isfinite(value):
                at = field if field == "label" else f"{field}[{j}]"
                raise RequestError(f"{where}: {at} must be a finite number (the target, in its units), got "
                                   f"{type(value).__name__} {show(value)}")
            logged.append(float(value))
        return logged, np.asarray(logged, dtype=np.float64).tobytes()

    def decode_labels(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob)

    def live(self, stats: LiveStats, now: float, out: np.ndarray, y: np.ndarray, scorer: Any) -> None:
        """The loss e^2 / (e^2 + s^2), s the version's training target sd (1 when the scorer has none)."""
        target = getattr(scorer, "target", None)
        scale = float(getattr(target, "std", None) or 1.0)
        e2 = (out - y) ** 2
        with np.errstate(invalid="ignore", over="ignore"):
            loss = e2 / (e2 + scale * scale)
        loss = np.where(np.isnan(loss), 1.0, loss)  # an infinite error: the worst loss
        for value in loss.tolist():
            stats.label(now, False, value)

    def paired(self, champion: str, challenger: str, retention: float) -> PairedLive:
        return RegressionPairedLive(champion, challenger, retention=retention)


def head_for(spec: ModelSpec) -> TaskHead | None:
    """The head of a model of ``spec.task``: None for binary (the gateway's own code paths)."""
    if spec.task == "multiclass":
        return MulticlassHead(list(spec.data.classes or ()))
    if spec.task == "regression":
        return RegressionHead()
    return None
