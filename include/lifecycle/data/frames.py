"""Frame helpers shared by every stage that reads batches: dtype groups, NumPy dtypes for Arrow-backed frames,
and the name of a day's batch file."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import Feature, ModelSpec


INT_TYPES = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64", "uint8", "uint16", "uint32",
             "uint64", "UInt8", "UInt16", "UInt32", "UInt64"]

FLOAT_TYPES = ["float32", "float64", "Float32", "Float64", *INT_TYPES]

TEXT_TYPES = ["object", "string", "str", "category"]


def category_label(value: Any) -> str | None:
    """The text form of a category value, one rule for every stage (drafted specs, landed batches, drift): None
    for a missing value; booleans ``True`` / ``False``; whole numbers, also when stored as floats, their digits
    (``3``, not ``3.0``: a code column with a gap reads from CSV as floats); other floats their shortest repr;
    anything else ``str()``. So the same codes give the same categories whatever the file format or dtype."""
    import numpy as np
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain NumPy dtypes: nullable ints become int64 (or float64 with NaN), strings become object.

    GX 1.x mis-reports pandas extension dtypes (an ``Int64`` column is observed as ``int64`` and then fails
    a type list that names ``int64``), so the gate validates what training will see: NumPy columns.
    """
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(dtype, pd.CategoricalDtype):
            if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
                out[col] = out[col].astype("float64" if out[col].isna().any() else dtype.numpy_dtype)
            elif pd.api.types.is_bool_dtype(dtype):
                out[col] = out[col].astype("object")
            else:
                out[col] = out[col].astype("object").where(out[col].notna(), None)
    return out


def declared_columns(spec: ModelSpec) -> list[Feature]:
    """Every column a batch's values are declared for, in the data gate's order: the features, then the sensitive
    columns the fairness audit reads that are kept out of the features (``fairness.columns``)."""
    return [*spec.data.features, *(spec.fairness.columns if spec.fairness is not None else [])]


def batch_columns(spec: ModelSpec) -> list[str]:
    """The columns a batch must hold: the id column (when the spec has one), the declared columns
    (:func:`declared_columns`) and the target."""
    return [*([spec.data.id_column] if spec.data.id_column else []), *(c.name for c in declared_columns(spec)),
            spec.data.target]


def batch_name(day: dt.date) -> str:
    return f"{day.isoformat()}.parquet"
