"""Feature preprocessing fitted on the training split only and shipped inside the model as JSON.

Numeric columns: median imputation, a missing-value indicator where the spec allows missing values, a
signed log for heavy-tailed columns, then standardisation. Categorical columns: one-hot over the spec's
categories plus an "unknown" slot, so a new category at serving time is absorbed, not a crash.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

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

    @property
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

    def transform(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Columns -> float32 matrix (rows x width). Works on a DataFrame or a dict of lists.

        Every value is computed in float64 and rounded once to float32 as it is stored. Few array operations per
        call: the serving gateway runs this for every request (through :meth:`transform_rows`).
        """
        names = self.input_columns
        n = len(columns[names[0]]) if names else 0
        width = self.width
        out = np.zeros((n, width), dtype=np.float32)
        j = 0
        for c in self.numeric:
            raw = _as_float(columns[c.name])
            missing = np.isnan(raw)
            filled = raw.copy()  # raw may be the caller's own array
            filled[missing] = c.median
            if c.log:
                filled = np.log1p(np.maximum(filled, 0))
            out[:, j] = (filled - c.mean) / c.std
            j += 1
            if c.indicator:
                out[:, j] = missing
                j += 1
        ones: list[int] = []  # the flat positions in ``out`` of every one-hot 1
        for c in self.categorical:
            column = columns[c.name]
            values = column if isinstance(column, list) else np.asarray(column, dtype=object)
            index, unknown = c.index, j + len(c.categories)  # the last slot: unknown (or missing) category
            ones += [i * width + (j + index[v] if v in index else unknown) for i, v in enumerate(values)]
            j = unknown + 1
        if ones:
            np.put(out, ones, 1.0)
        return out

    def transform_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """JSON rows (dicts of feature values, ``None`` for a missing one) -> the float32 matrix :meth:`transform`
        gives for the same values as columns, by that same code: the serving gateway's path (no pandas).

        Extra keys are ignored; a missing key is a ``KeyError`` (the gateway validates rows first).
        """
        return self.transform({name: [row[name] for row in rows] for name in self.input_columns})

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": [asdict(c) for c in self.numeric],
                "categorical": [asdict(c) for c in self.categorical]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessor:
        return cls([NumericColumn(**c) for c in data["numeric"]],
                   [CategoricalColumn(**c) for c in data["categorical"]])


def _as_float(values: Sequence[Any]) -> np.ndarray:
    """Values -> float64 with NaN for missing (None, pd.NA, NaN)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    if hasattr(values, "to_numpy"):  # pandas Series, including nullable extension dtypes
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(values, list):  # JSON rows: NumPy reads None as NaN itself
        return np.array(values, dtype=np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
