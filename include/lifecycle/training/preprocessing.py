"""Feature preprocessing fitted on the training split only and shipped inside the model as JSON.

Numeric columns: median imputation, a missing-value indicator where the spec allows missing values, a
signed log for heavy-tailed columns, then standardisation. Categorical columns: one-hot over the spec's
categories plus an "unknown" slot, so a new category at serving time is absorbed, not a crash.

The target, by task (:class:`TargetEncoding`, shipped in the model's metadata): a binary target as it is (0/1); a
multiclass one as the index of its class in ``data.classes``; a regression one standardised with the training
split's mean and standard deviation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from lifecycle.spec import DataSpec


@dataclass
class NumericColumn:
    name: str
    median: float
    mean: float
    std: float
    log: bool
    indicator: bool


@dataclass
class CategoricalColumn:
    name: str
    categories: list[str]

    @cached_property
    def index(self) -> dict[str, int]:
        """category -> its one-hot slot (not a field: not in :meth:`Preprocessor.to_dict`)."""
        return {v: i for i, v in enumerate(self.categories)}


@dataclass
class Preprocessor:
    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)

    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @cached_property
    def width(self) -> int:
        return (sum(1 + c.indicator for c in self.numeric)
                + sum(len(c.categories) + 1 for c in self.categorical))

    @property
    def output_names(self) -> list[str]:
        names = []
        for c in self.numeric:
            names.append(c.name)
            if c.indicator:
                names.append(f"{c.name}__missing")
        for c in self.categorical:
            names += [f"{c.name}={v}" for v in c.categories] + [f"{c.name}=__unknown__"]
        return names

    @classmethod
    def fit(cls, data: DataSpec, columns: Mapping[str, Sequence[Any]]) -> Preprocessor:
        """Learn statistics from training rows only (``columns``: column name -> values)."""
        numeric, categorical = [], []
        for f in data.features:
            if f.kind == "categorical":
                categorical.append(CategoricalColumn(f.name, list(f.categories or [])))
                continue
            raw = _as_float(columns[f.name])
            observed = raw[~np.isnan(raw)]
            if observed.size == 0:
                raise ValueError(f"feature {f.name!r} has no observed values in the training split")
            median = float(np.median(observed))
            # Heavy right tail on a non-negative column (incomes, amounts): model the log.
            log = bool(observed.min() >= 0 and np.percentile(observed, 99) > 20 * max(median, 1e-9))
            filled = np.where(np.isnan(raw), median, raw)
            if log:
                filled = np.log1p(filled)
            std = float(filled.std())
            numeric.append(NumericColumn(f.name, median, float(filled.mean()), std if std > 1e-12 else 1.0,
                                         log, f.max_missing > 0))
        return cls(numeric, categorical)

    @cached_property
    def _plan(self) -> _NumericPlan:
        """The numeric columns' statistics as arrays and their slots in the output (computed once per model)."""
        slots, indicator_slots, j = [], [], 0
        for c in self.numeric:
            slots.append(j)
            j += 1
            if c.indicator:
                indicator_slots.append(j)
                j += 1
        return _NumericPlan(
            names=[c.name for c in self.numeric],
            median=np.array([c.median for c in self.numeric], dtype=np.float64),
            mean=np.array([c.mean for c in self.numeric], dtype=np.float64),
            std=np.array([c.std for c in self.numeric], dtype=np.float64),
            log=np.array([i for i, c in enumerate(self.numeric) if c.log], dtype=np.intp),
            slots=np.array(slots, dtype=np.intp),
            indicator=np.array([i for i, c in enumerate(self.numeric) if c.indicator], dtype=np.intp),
            indicator_slots=np.array(indicator_slots, dtype=np.intp), end=j)

    def transform(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Columns -> float32 matrix (rows x width). Works on a DataFrame or a dict of lists.

        Every value is computed in float64 and rounded once to float32 as it is stored. A fixed handful of array
        operations per call, whatever the number of columns: the serving gateway runs this for every request
        (through :meth:`transform_rows`).
        """
        names = self.input_columns
        n = len(columns[names[0]]) if names else 0
        raw = np.empty((n, len(self.numeric)), dtype=np.float64)
        for i, c in enumerate(self.numeric):
            raw[:, i] = _as_float(columns[c.name])
        return self._assemble(raw, [columns[c.name] for c in self.categorical])

    def transform_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """JSON rows (dicts of feature values, ``None`` for a missing one) -> the float32 matrix :meth:`transform`
        gives for the same values as columns, by the same arithmetic: the serving gateway's path (no pandas).

        Extra keys are ignored; a missing key is a ``KeyError`` (the gateway validates rows first).
        """
        if len(rows) == 1:
            return self._one_row(rows[0])
        names = self._plan.names
        raw = np.array([[row[name] for name in names] for row in rows], dtype=np.float64)  # None -> NaN
        return self._assemble(raw.reshape(len(rows), len(names)),
                              [[row[c.name] for row in rows] for c in self.categorical])

    def _one_row(self, row: Mapping[str, Any]) -> np.ndarray:
        """One JSON row (the gateway's usual request): the arithmetic of :meth:`_assemble` on Python floats (IEEE
        doubles, as NumPy's float64), one array at the end; log1p stays NumPy's (one call for every log column),
        so the result is the batch path's bit for bit (``tests/unit/test_preprocessing_and_eval.py``)."""
        out = [0.0] * self.width
        logged = self._plan.log.size
        values = []
        missing = []
        for c in self.numeric:
            value = row[c.name]
            gone = value is None or value != value  # None, or a NaN (JSON has none; a caller's float may)
            missing.append(gone)
            values.append(c.median if gone else float(value))
        if logged:
            logs = np.log1p(np.maximum(np.array([values[i] for i in self._plan.log], dtype=np.float64), 0))
            for i, x in zip(self._plan.log.tolist(), logs.tolist(), strict=True):
                values[i] = x
        j = 0
        for c, x, gone in zip(self.numeric, values, missing, strict=True):
            out[j] = (x - c.mean) / c.std
            j += 1
            if c.indicator:
                out[j] = 1.0 if gone else 0.0
                j += 1
        for c in self.categorical:
            slot = c.index.get(row[c.name])
            out[j + (len(c.categories) if slot is None else slot)] = 1.0
            j += len(c.categories) + 1
        return np.array([out], dtype=np.float32)

    def _assemble(self, raw: np.ndarray, categorical: list[Sequence[Any]]) -> np.ndarray:
        """The numeric block (``raw``: rows x numeric columns, float64, NaN for missing) and the categorical
        columns' values -> the float32 matrix."""
        plan, width = self._plan, self.width
        out = np.zeros((raw.shape[0], width), dtype=np.float32)
        missing = np.isnan(raw)
        filled = np.where(missing, plan.median, raw)
        if plan.log.size:
            filled[:, plan.log] = np.log1p(np.maximum(filled[:, plan.log], 0))
        out[:, plan.slots] = (filled - plan.mean) / plan.std
        if plan.indicator.size:
            out[:, plan.indicator_slots] = missing[:, plan.indicator]
        ones: list[int] = []  # the flat positions in ``out`` of every one-hot 1
        j = plan.end
        for c, column in zip(self.categorical, categorical, strict=True):
            values = column if isinstance(column, list) else np.asarray(column, dtype=object)
            index, unknown = c.index, j + len(c.categories)  # the last slot: unknown (or missing) category
            ones += [i * width + (j + index[v] if v in index else unknown) for i, v in enumerate(values)]
            j = unknown + 1
        if ones:
            np.put(out, ones, 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": [asdict(c) for c in self.numeric],
                "categorical": [asdict(c) for c in self.categorical]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessor:
        return cls([NumericColumn(**c) for c in data["numeric"]],
                   [CategoricalColumn(**c) for c in data["categorical"]])


@dataclass(frozen=True)
class _NumericPlan:
    names: list[str]
    median: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    log: np.ndarray  # indices (among the numeric columns) of the log-transformed ones
    slots: np.ndarray  # each numeric column's slot in the output
    indicator: np.ndarray  # indices of the columns with a missing-value indicator ...
    indicator_slots: np.ndarray  # ... and the indicators' slots
    end: int  # the first categorical slot


def _as_float(values: Sequence[Any]) -> np.ndarray:
    """Values -> float64 with NaN for missing (None, pd.NA, NaN)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    if hasattr(values, "to_numpy"):  # pandas Series, including nullable extension dtypes
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(values, list):  # JSON rows: NumPy reads None as NaN itself
        return np.array(values, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# ------------------------------------------------------------------------------------------------------- the target
def class_indices(values: Sequence[Any], classes: Sequence[str | int], where: str) -> np.ndarray:
    """Each value's index in ``classes`` (int64): a value is a class when their text forms match
    (:func:`lifecycle.data.frames.category_label`: ``2``, ``2.0`` and ``"2"`` are class ``2``). A ValueError naming
    ``where`` when a value (a missing one too) is none of them."""
    import pandas as pd

    from lifecycle.data.frames import category_label

    index = {str(c): i for i, c in enumerate(classes)}
    raw = values.to_numpy() if hasattr(values, "to_numpy") else values
    codes, uniques = pd.factorize(pd.Series(np.asarray(raw, dtype=object)))  # missing values: code -1
    lookup = np.array([index.get(category_label(u) or "", -1) for u in uniques] + [-1], dtype=np.int64)
    out = lookup[codes]
    bad = out < 0
    if bad.any():
        first = codes[int(np.argmax(bad))]
        shown = "a missing value" if first < 0 else repr(uniques[first].item() if hasattr(uniques[first], "item")
                                                         else uniques[first])
        raise ValueError(f"{where}: {int(bad.sum())} of {len(out)} values are not one of data.classes "
                         f"{[str(c) for c in classes]} (e.g. {shown})")
    return out


def target_numbers(values: Sequence[Any], where: str) -> np.ndarray:
    """A regression target as float64; a ValueError naming ``where`` when a value is missing, not a number or not
    finite."""
    import pandas as pd

    raw = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values, dtype=object)
    if raw.dtype.kind in "fiu":
        numbers = raw.astype(np.float64)
    else:
        numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(dtype=np.float64,
                                                                                         na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        first = raw[int(np.argmax(bad))]
        shown = "a missing value" if first is None or first is pd.NA or (isinstance(first, float) and first != first) \
            else repr(first.item() if hasattr(first, "item") else first)
        raise ValueError(f"{where}: {int(bad.sum())} of {len(numbers)} values are not finite numbers (e.g. {shown}); "
                         "a regression target must be a number on every row")
    return numbers


@dataclass
class TargetEncoding:
    """What the network learns from the target, fitted on the training split and shipped with the model.

    - ``binary``: the 0/1 target as it is; nothing is recorded (a binary model's files are as they always were);
    - ``multiclass``: the index of the row's class in ``classes`` (the spec's ``data.classes``, in order; see
      :func:`class_indices`); the model's output k is the probability of ``classes[k]``;
    - ``regression``: the number standardised with the training split's ``mean`` and ``std``; the model's output
      comes back in target units as ``output * std + mean`` (:meth:`to_target`).

    A target the task cannot learn from (a value outside ``classes``, a regression value that is not a finite
    number, a constant target) is a :class:`~lifecycle.training.trainer.TrainingError` at :meth:`fit` /
    :meth:`encode`, one line naming the target, the rows and the problem. A binary target is taken as it is, as
    always (the trainer reads it as 0/1).
    """

    task: str = "binary"
    classes: list[str | int] | None = None
    mean: float | None = None
    std: float | None = None

    @classmethod
    def fit(cls, task: str, target: str, values: Sequence[Any], classes: Sequence[str | int] | None = None,
            rows: str = "training rows") -> TargetEncoding:
        """The encoding of ``task`` for the training split's target ``values`` (column ``target``)."""
        if task == "binary":
            return cls()
        where = f"target {target!r} in the {len(values)} {rows}"
        if task == "multiclass":
            if not classes:
                _fail(f"{where}: a multiclass model needs data.classes")
            enc = cls("multiclass", classes=list(classes))
            seen = np.unique(enc.encode(values, target, rows))
            if len(seen) < 2:
                _fail(f"{where}: every row is class {str(enc.classes[int(seen[0])])!r} (the target is constant): "
                      "nothing to learn; train on a window with at least two classes")
            return enc
        if task == "regression":
            numbers = _checked(target_numbers, values, where)
            std = float(numbers.std())
            if not std > 0 or not math.isfinite(std):
                _fail(f"{where}: the target is constant ({float(numbers[0])!r} on every row): nothing to learn")
            return cls("regression", mean=float(numbers.mean()), std=std)
        raise ValueError(f"unknown task {task!r}")

    def encode(self, values: Sequence[Any], target: str, rows: str = "rows") -> np.ndarray:
        """The target as the network learns it: binary as it is, multiclass class indices (int64), regression
        standardised float32."""
        where = f"target {target!r} in the {len(values)} {rows}"
        if self.task == "multiclass":
            return _checked(class_indices, values, where, self.classes)
        if self.task == "regression":
            return ((_checked(target_numbers, values, where) - self.mean) / self.std).astype(np.float32)
        return values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)

    def to_target(self, outputs: np.ndarray) -> np.ndarray:
        """A regression model's standardised outputs in target units (float64)."""
        return np.asarray(outputs, dtype=np.float64) * self.std + self.mean

    def head(self) -> dict[str, Any]:
        """The network's head for :func:`lifecycle.training.trainer.train` (keyword arguments; none for binary, so
        a binary run is the call it always was)."""
        if self.task == "binary":
            return {}
        return {"task": self.task, "outputs": len(self.classes or []) if self.task == "multiclass" else 1}

    def to_meta(self) -> dict[str, Any]:
        """What the model's metadata records (nothing for binary)."""
        if self.task == "multiclass":
            return {"task": "multiclass", "classes": list(self.classes or [])}
        if self.task == "regression":
            return {"task": "regression", "target_scaling": {"mean": self.mean, "std": self.std}}
        return {}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TargetEncoding:
        """Read :meth:`to_meta`'s form back; metadata without ``task`` (every model before the other tasks) is
        binary."""
        task = meta.get("task", "binary")
        if task == "multiclass":
            return cls("multiclass", classes=list(meta["classes"]))
        if task == "regression":
            scaling = meta["target_scaling"]
            return cls("regression", mean=float(scaling["mean"]), std=float(scaling["std"]))
        return cls()


def _fail(message: str) -> NoReturn:
    from lifecycle.training.trainer import TrainingError

    raise TrainingError(message)


def _checked(check: Any, values: Sequence[Any], where: str, *args: Any) -> np.ndarray:
    """``check(values, *args, where)`` with its ValueError as a TrainingError (one line)."""
    try:
        return check(values, *args, where) if args else check(values, where)
    except ValueError as err:
        _fail(str(err))
