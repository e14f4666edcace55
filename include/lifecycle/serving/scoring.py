"""Request validation and fast scoring of JSON rows.

The gateway scores with NumPy, from the same weights and preprocessing the pyfunc carries (checked equal to the
torch forward pass in the tests): for a handful of rows, NumPy matrix products cost microseconds where a torch
call costs tens of them. A model whose network is not the built-in MLP (a user's own ``torch.nn.Module``) is
scored by torch itself (:class:`TorchScorer`); :func:`scorer_for` chooses, once per model load.

What a scorer gives per task (:meth:`FastScorer.scores`, as :meth:`~lifecycle.training.packaging.LoadedModel.scores`
does): ``binary`` the probability of class 1 per row (n,); ``multiclass`` the class probabilities (n, K), columns
in the order of the model's classes, each row summing to 1; ``regression`` the value per row (n,) in target units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import InvalidRequestError, MalformedRequestError, PayloadTooLargeError
from lifecycle.serving.limits import MAX_ID_CHARS, MAX_STRING_CHARS, cut, show, show_names

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec
    from lifecycle.training.packaging import LoadedModel


class RequestError(InvalidRequestError, ValueError):
    """A bad request: the message names the row, the field and the problem (HTTP 422).

    Requests that cannot be read at all raise :class:`~lifecycle.errors.MalformedRequestError` (400), oversized
    ones :class:`~lifecycle.errors.PayloadTooLargeError` (413): the status is the error's type."""


@dataclass(frozen=True)
class Schema:
    """What a valid row looks like, from the spec; everything a check needs is computed once, per model load.

    A row is an object holding every feature (and optionally the id column, a string of at most
    ``MAX_ID_CHARS`` or an integer); numeric features are finite numbers (JSON ``null`` where the spec allows
    missing values) inside the spec's ``[min, max]``; categorical ones are strings (at most ``MAX_STRING_CHARS``)
    among the spec's categories. A wrong type, a non-finite number or an overlong string is always refused (422);
    a value outside the spec's range or categories is refused too, unless the spec's ``serving.out_of_spec`` is
    ``flag``: then the row is served and reported as flagged (see :meth:`validate`), its out-of-range numbers
    clipped to the range first, so the model never scores a value it was not built for (``1e300`` would overflow
    the network's float32 inputs to a NaN probability). The flag records which fields were clipped.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    nullable: frozenset[str]
    allowed_extra: frozenset[str]
    max_rows: int
    id_column: str | None = None
    #: (name, lowest, highest, nullable) per numeric feature; a missing bound is the largest finite double, so
    #: one chained comparison also refuses infinities.
    bounds: tuple[tuple[str, float, float, bool], ...] = ()
    #: (name, categories, nullable) per categorical feature.
    categories: tuple[tuple[str, frozenset[str], bool], ...] = ()
    flag: bool = False
    names: frozenset[str] = frozenset()
    names_with_extra: frozenset[str] = frozenset()

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Schema:
        feats = spec.data.features
        nullable = frozenset(f.name for f in feats if f.max_missing > 0)
        numeric = tuple(f.name for f in feats if f.kind != "categorical")
        categorical = tuple(f.name for f in feats if f.kind == "categorical")
        extra = frozenset({spec.data.id_column} - {None})
        return cls(
            numeric, categorical, nullable, extra, spec.serving.max_batch_rows, spec.data.id_column,
            tuple((f.name, -_FLOAT_MAX if f.min is None else float(f.min),
                   _FLOAT_MAX if f.max is None else float(f.max), f.name in nullable)
                  for f in feats if f.kind != "categorical"),
            tuple((f.name, frozenset(f.categories or ()), f.name in nullable)
                  for f in feats if f.kind == "categorical"),
            spec.serving.out_of_spec == "flag", frozenset(numeric + categorical),
            frozenset(numeric + categorical) | extra)

    def check(self, body: Any) -> list[dict[str, Any]]:
        """A JSON object (one row) or array (a batch) -> list of valid rows; else raise naming the field
        (``RequestError``, or ``MalformedRequestError`` / ``PayloadTooLargeError`` for the body as a whole)."""
        return self.validate(body)[0]

    def validate(self, body: Any) -> tuple[list[dict[str, Any]], list[tuple[int, list[str]]]]:
        """:meth:`check`, and the rows served although out of spec (``flag`` mode): ``[(row index, fields)]``."""
        rows = [body] if isinstance(body, dict) else body
        if not isinstance(rows, list):
            raise MalformedRequestError(f"body must be a JSON object (one row) or an array of objects, got "
                                        f"{type(body).__name__}")
        if not rows:
            raise MalformedRequestError("empty batch: send at least one row")
        if len(rows) > self.max_rows:
            raise PayloadTooLargeError(f"batch of {len(rows)} rows exceeds the limit of {self.max_rows}")
        names, bounds, categories = self.names, self.bounds, self.categories
        flagged: list[tuple[int, list[str]]] = []
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(f"{self._where(i, body)}: must be an object of feature values, got "
                                   f"{type(row).__name__}")
            if row.keys() != names:
                self._check_fields(i, body, row)
            bad: list[str] | None = None
            for name, lo, hi, nullable in bounds:
                value = row[name]
                if (type(value) is float or type(value) is int) and lo <= value <= hi:
                    continue
                if value is None and nullable:
                    continue
                self._check_number(i, body, name, value, lo, hi)
                (bad := bad if bad is not None else []).append(name)
            for name, allowed, nullable in categories:
                value = row[name]
                if type(value) is str and value in allowed:
                    continue
                if value is None and nullable:
                    continue
                self._check_category(i, body, name, value, allowed)
                (bad := bad if bad is not None else []).append(name)
            if bad is not None:
                flagged.append((i, bad))
                clipped = {name: min(max(row[name], lo), hi) for name, lo, hi, _ in bounds
                           if name in bad and type(row[name]) in (int, float)}
                if clipped:
                    rows[i] = {**row, **clipped}
        return rows, flagged

    # ---- the slow paths: a value the fast path did not accept. Each raises, or returns when the value is only
    # out of the spec's range or categories and the spec flags such rows.
    @staticmethod
    def _where(i: int, body: Any) -> str:
        return "row" if isinstance(body, dict) else f"row {i}"

    def _check_fields(self, i: int, body: Any, row: dict[str, Any]) -> None:
        keys = row.keys()
        if keys != self.names_with_extra:
            where = self._where(i, body)
            missing = self.names - keys
            if missing:
                raise RequestError(f"{where}: missing feature(s) {sorted(missing)}")
            extra = [k for k in keys if k not in self.names_with_extra]
            if extra:
                raise RequestError(f"{where}: unknown field(s) {show_names(extra)}; expected {sorted(self.names)}")
        if self.id_column is not None and self.id_column in row:
            value = row[self.id_column]
            if type(value) is str:
                if len(value) > MAX_ID_CHARS:
                    raise RequestError(f"{self._where(i, body)}: {self.id_column} must be at most {MAX_ID_CHARS} "
                                       f"characters, got {len(value)}")
            elif type(value) is not int:
                raise RequestError(f"{self._where(i, body)}: {self.id_column} must be a string or an integer, got "
                                   f"{type(value).__name__} {show(value)}")

    def _check_number(self, i: int, body: Any, name: str, value: Any, lo: float, hi: float) -> None:
        where = self._where(i, body)
        if value is None:
            raise RequestError(f"{where}: {name} must not be null")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"{where}: {name} must be a number, got {type(value).__name__} {show(value)}")
        if not math.isfinite(value):
            raise RequestError(f"{where}: {name} must be finite, got {value}")
        if not self.flag:
            raise RequestError(f"{where}: {name} {show(value)} is out of spec: outside [{_bound(lo)}, {_bound(hi)}]")

    def _check_category(self, i: int, body: Any, name: str, value: Any, allowed: frozenset[str]) -> None:
        where = self._where(i, body)
        if value is None:
            raise RequestError(f"{where}: {name} must not be null")
        if not isinstance(value, str):
            raise RequestError(f"{where}: {name} must be a string, got {type(value).__name__} {show(value)}")
        if len(value) > MAX_STRING_CHARS:
            raise RequestError(f"{where}: {name} must be at most {MAX_STRING_CHARS} characters, got {len(value)}")
        if not self.flag:
            raise RequestError(f"{where}: {name} {show(value)} is out of spec: not one of "
                               f"{cut(str(sorted(allowed)), 300)}")


_FLOAT_MAX = float(np.finfo(np.float32).max)  # no bound: the largest value the network's inputs can hold


def _bound(x: float) -> str:
    if abs(x) == _FLOAT_MAX:
        return f"{x:.3g} (float32)"
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


class FastScorer:
    """NumPy forward pass of a :class:`~lifecycle.training.packaging.LoadedModel` over a list of JSON rows.

    The features come from the model's own :class:`~lifecycle.training.preprocessing.Preprocessor`
    (:meth:`~lifecycle.training.preprocessing.Preprocessor.transform_rows`: the code training and the pyfunc use,
    the same float32 matrix); only the forward pass is NumPy's, in float64 over the float32 weights, and
    ``tests/unit/test_scoring_parity.py`` (binary) and ``tests/unit/test_serving_tasks.py`` (every task) hold it
    equal to the pyfunc to 1e-6.

    ``task``, ``classes`` (multiclass: in the order of the outputs) and ``target`` (the
    :class:`~lifecycle.training.preprocessing.TargetEncoding`) are the model's. :meth:`scores` is the per-task
    output (module docstring), bound once here: for a binary model it *is* :meth:`proba`, whose code and cost are
    what they always were. Only the built-in MLP (``model.module.net``: a Sequential of Linear, ReLU and Dropout)
    can be scored here; anything else is a ValueError (use :func:`scorer_for`).
    """

    def __init__(self, model: LoadedModel) -> None:
        self.preprocessor = model.preprocessor
        self.threshold = model.threshold
        self.width = model.preprocessor.width
        self.task = model.task
        self.target = model.target
        self.classes = model.classes
        net = getattr(model.module, "net", None)
        kinds = [m.__class__.__name__ for m in net] if net is not None else None
        if not kinds or any(k not in MLP_LAYERS for k in kinds):
            raise ValueError(f"FastScorer scores the built-in MLP only (a Sequential of {sorted(MLP_LAYERS)}), got "
                             f"{type(model.module).__name__} with layers {kinds}: use scorer_for()")
        linears = [m for m in net if m.__class__.__name__ == "Linear"]
        self.layers = [(m.weight.detach().numpy().T.astype(np.float64).copy(),
                        m.bias.detach().numpy().astype(np.float64).copy()) for m in linears]
        self.scores = {"binary": self.proba, "multiclass": self._softmax, "regression": self._values}[self.task]
        if self.task != "binary":  # the instance's proba: the binary code below is never reached
            self.proba = self._softmax if self.task == "multiclass" else _no_proba

    def features(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The model's input matrix (float32), exactly as the pyfunc computes it."""
        return self.preprocessor.transform_rows(rows)

    def proba(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Binary: the probability of class 1 per row. (A multiclass model's instance binds its rows x classes
        probabilities here instead, a regression model's a ValueError: see ``__init__``.)"""
        h = self._forward(rows)
        # 1 / (1 + exp(-z)) in place. exp(700) is finite: a hugely negative logit gives ~0, as torch's sigmoid
        # does, with no overflow warning.
        z = h[:, 0]
        np.maximum(z, -700.0, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1.0
        return np.divide(1.0, z, out=z)

    def _forward(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The network's raw outputs (rows x outputs, float64)."""
        h = self.features(rows).astype(np.float64)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if i < last:
                np.maximum(h, 0, out=h)
        return h

    def _softmax(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Multiclass: the softmax over the outputs, stable (the row's largest output subtracted first)."""
        z = self._forward(rows)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def _values(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Regression: the output in target units (the model's TargetEncoding: ``output * std + mean``)."""
        return self.target.to_target(self._forward(rows)[:, 0])


#: The layers of the built-in MLP (:class:`lifecycle.training.trainer.TabularMLP`'s ``net``).
MLP_LAYERS = frozenset({"Linear", "ReLU", "Dropout"})


def _no_proba(rows: Any = None) -> np.ndarray:
    raise ValueError("a regression model predicts values, not probabilities: use scores()")


class TorchScorer:
    """Scores any torch module (a user's own ``training.module``) as
    :class:`~lifecycle.training.packaging.LoadedModel` does: the module under ``torch.inference_mode`` on
    :meth:`~lifecycle.training.preprocessing.Preprocessor.transform_rows`, then
    :func:`~lifecycle.training.trainer.head_outputs` for the task and, for regression, the TargetEncoding back to
    target units. Slower than :class:`FastScorer` (a torch call per request), the same outputs (same shapes as
    :meth:`FastScorer.scores`: a binary or regression module's (n, 1) output is read as (n,))."""

    def __init__(self, model: LoadedModel) -> None:
        import torch

        from lifecycle.training.trainer import head_outputs

        self._torch, self._head = torch, head_outputs
        self.module = model.module
        self.preprocessor = model.preprocessor
        self.threshold = model.threshold
        self.width = model.preprocessor.width
        self.task = model.task
        self.target = model.target
        self.classes = model.classes

    def features(self, rows: list[dict[str, Any]]) -> np.ndarray:
        return self.preprocessor.transform_rows(rows)

    def scores(self, rows: list[dict[str, Any]]) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(self.features(rows)))
        with torch.inference_mode():
            out = self._head(self.module(x), self.task).numpy().astype(np.float64)
        if self.task != "multiclass" and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return self.target.to_target(out) if self.task == "regression" else out

    def proba(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """As :meth:`FastScorer.proba`."""
        return self.scores(rows) if self.task != "regression" else _no_proba(rows)


def scorer_for(model: LoadedModel) -> FastScorer | TorchScorer:
    """The gateway's scorer of a loaded model: NumPy (:class:`FastScorer`) for the built-in MLP, torch
    (:class:`TorchScorer`) for any other module: a user's network (``training.module``) always runs its own
    ``forward``, even when it holds a ``.net`` of linear layers (its forward may add a skip, a head, a scale)."""
    if getattr(model, "factory", None) is not None:
        return TorchScorer(model)
    net = getattr(model.module, "net", None)
    try:
        fast = net is not None and len(net) > 0 and all(m.__class__.__name__ in MLP_LAYERS for m in net)
    except TypeError:  # a .net that is not a sequence of layers
        fast = False
    return FastScorer(model) if fast else TorchScorer(model)
