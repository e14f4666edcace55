"""Your own model: draft a spec from a sample batch (``lifecycle init``) and land real batches (``lifecycle land``).

Pure functions over pandas frames (no Airflow): :func:`draft_spec` reads a sample and proposes a spec,
:func:`render` writes it as commented YAML that :func:`lifecycle.spec.load_spec` loads, :func:`land_file` copies
a user's Parquet or CSV file into the landing zone under the contract the data gate reads.

How a draft reads the sample (the same rules are written as a comment at the top of every draft):

- **Names**: every character of a column name other than a letter, digit or ``_`` becomes ``_``, and a name
  starting with a digit gets a leading ``_`` (``mean radius`` -> ``mean_radius``); two columns that end up with
  the same name are refused. Landing renames a file's columns the same way.
- **Left out** (each with a comment in the draft saying why): columns all missing or more than 90% missing;
  constant columns (one distinct value); text unique per row (an id) or with distinct values for more than 50%
  of its rows or more than 200 of them (free text); text with more than 20 distinct values of which at least
  90% but not all are numbers (numbers with placeholders such as ``n/a``); numbers with infinite values; whole
  numbers unique per row that form a run of consecutive values
  (a row number, e.g. a saved index) or whose name says id (``id``, ``..._id``, ``...Id``); dates, times and
  other types.
- **Kinds**: text, booleans and pandas categoricals -> ``categorical``; whole numbers (integer columns, also
  floats whose values are all whole) with at most 20 distinct values that are at most 5% of the non-missing
  rows -> ``categorical`` (codes stored as numbers); other whole numbers -> ``integer``; the rest ->
  ``numeric``.
- **Ranges**: the observed min and max, widened on each side by 50% of the range and rounded outward (to whole
  numbers for whole-number columns, else to three significant digits of the range), the min clamped at 0 when
  no observed value is negative; and up to 3% of a batch's values may fall outside (``max_out_of_range``). A
  sample's extremes are not the population's: drawn from the scikit-learn breast-cancer and diabetes data, a
  quarter of the rows as the sample and each other quarter as a batch (20 shuffles, 120 batches), observed
  ranges widened by 10% quarantined 119 of the 120 batches (heavy-tailed measurements), widened by 50% with no
  tolerance 51; widened by 50% with 3% tolerated, none (rounding of the draft aside). A broken feed (a unit change, a sentinel such as -999 on more than 3% of
  the rows) still fails the gate.
- **Categories**: the observed values as text (:func:`category_strings`: codes stored as numbers as ``3``, not
  ``3.0``; booleans as ``True`` / ``False``), sorted (numerically when they are all numbers).
- **Missing share** (``max_missing``): 0 when the column is never missing in the sample (a missing value then
  quarantines the batch), else the observed share plus 0.05, rounded up to hundredths, at most 0.95.
- **Task** (when not given): 2 distinct target values -> ``binary``; a non-float target with at most 20
  distinct values -> ``multiclass``; else ``regression``. A multiclass draft lists the sample's target values as
  ``data.classes`` (sorted; whole numbers as numbers, anything else as text) and needs at least 3 of them.
- **Gate**: the task's default floors and largest regression (:data:`lifecycle.spec.TASK_GATE_DEFAULTS`).
- **Id column** (when not given): the one column that is text unique per row and never missing; none, or
  several: no id column (``id_column: null``), and training splits rows by a hash of their values
  (:func:`lifecycle.training.flow.row_keys`); pass ``--id`` to use one.
- **Everything else** (training, slices, schedules, serving, canary, monitoring): the platform's defaults,
  with one slice per categorical feature of at most 10 categories.

The landing contract (what :func:`land_file` writes, what the data gate reads): one Parquet file per model and
day, ``<state>/data/<model>/landing/<YYYY-MM-DD>.parquet``, written atomically (temp file in the same folder,
fsync, rename), holding the spec's id column, features and target (columns renamed as above, other columns
dropped), categorical features as text (:func:`category_strings`), the other columns as read.
"""
from __future__ import annotations

import datetime as dt
import io
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml

from lifecycle.data.frames import batch_name, category_label
from lifecycle.fileio import atomic_write
from lifecycle.paths import StatePaths
from lifecycle.spec import NAME_PATTERN, TASK_GATE_DEFAULTS, TASK_PERFORMANCE_DROP_DEFAULTS, ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

#: Whole-number columns with at most this many distinct values ...
CATEGORY_MAX_DISTINCT = 20
#: ... that are also at most this share of the non-missing rows are categorical (codes stored as numbers).
CATEGORY_MAX_SHARE = 0.05
#: Text with distinct values for more than this share of its rows, or more than TEXT_MAX_CATEGORIES, is free text.
TEXT_MAX_DISTINCT_SHARE = 0.5
TEXT_MAX_CATEGORIES = 200
#: Text of which at least this share (but not all) parses as numbers: numbers with placeholders, left out.
MOSTLY_NUMBERS_SHARE = 0.9
#: Columns missing in more than this share of rows are left out.
MAX_MISSING_SHARE = 0.9
#: min/max are widened by this share of the observed range on each side ...
RANGE_MARGIN = 0.5
#: ... and this share of a batch's values may fall outside them (``max_out_of_range``).
OUT_OF_RANGE_SHARE = 0.03
#: Allowed missing share = observed share + this (when the sample has any), rounded up to hundredths ...
MISSING_MARGIN = 0.05
#: ... and at most this.
MISSING_CAP = 0.95
#: Categorical features with at most this many categories get a slice each.
SLICE_MAX_CATEGORIES = 10
#: A target with at most this many distinct values (and not float) is multiclass.
MULTICLASS_MAX_DISTINCT = 20

#: File suffixes read as CSV and as Parquet.
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")

_ID_NAME = re.compile(r"(^|[^A-Za-z])[iI][dD]$|[a-z](Id|ID)$")


class DraftError(ValueError):
    """A sample that cannot be drafted from, or a file that cannot be landed; the message names the file and the
    column (or option) and says what to do."""


# ------------------------------------------------------------------------------------------------ reading a file
def read_table(path: str | Path) -> pd.DataFrame:
    """A Parquet or CSV file as a DataFrame, by its suffix (:data:`PARQUET_SUFFIXES`, :data:`CSV_SUFFIXES`).

    Raises :class:`FileNotFoundError` when there is no such file and :class:`DraftError` (naming the file) when it
    cannot be parsed, has no rows, or has a suffix of neither kind. A CSV is read whole before types are inferred
    (``low_memory=False``), so a column gets one type, not one per chunk, and floats exactly as written.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        kind = "Parquet"
    elif name.endswith(CSV_SUFFIXES):
        kind = "CSV"
    else:
        raise DraftError(f"{path}: not a Parquet ({', '.join(PARQUET_SUFFIXES)}) or CSV ({', '.join(CSV_SUFFIXES)}) "
                         "file name")
    try:
        if kind == "Parquet":
            frame = pd.read_parquet(path)
        else:  # round_trip: a float written by to_csv reads back as the same float
            frame = pd.read_csv(path, low_memory=False, float_precision="round_trip")
    except Exception as err:  # noqa: BLE001  # every parser failure is the same answer: not readable as that format
        raise DraftError(f"{path}: cannot be read as {kind}: {type(err).__name__}: {err}") from None
    if len(frame.columns) == 1 and kind == "CSV" and any(sep in str(frame.columns[0]) for sep in (";", "\t", "|")):
        raise DraftError(f"{path}: one column named {str(frame.columns[0])[:80]!r}: the file looks separated by "
                         "something other than commas; save it comma-separated")
    if frame.empty:
        raise DraftError(f"{path}: has no rows")
    return frame


def spec_name(column: Any) -> str:
    """The spec name of a file's column: characters other than letters, digits and ``_`` become ``_``; a leading
    digit (or an empty name) gets a leading ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(column))
    return name if re.match(r"^[A-Za-z_]", name) else f"_{name}"


def spec_names(columns: list[Any], source: str | Path) -> dict[Any, str]:
    """Column -> spec name for every column; :class:`DraftError` when two columns get the same name."""
    names: dict[Any, str] = {}
    for col in columns:
        name = spec_name(col)
        clash = [c for c, n in names.items() if n == name]
        if clash:
            raise DraftError(f"{source}: columns {clash[0]!r} and {col!r} both become {name!r} (characters other "
                             "than letters, digits and _ become _): rename one of them")
        names[col] = name
    return names


def category_strings(values: pd.Series) -> pd.Series:
    """The text form of category values (:func:`lifecycle.data.frames.category_label`, the rule drift uses too),
    shared by a draft's ``categories`` and a landed batch (``string`` dtype; missing stays missing): they match
    what the gateway accepts (categories are strings there too)."""
    import pandas as pd

    return pd.Series(pd.array([category_label(v) for v in values.astype(object)], dtype="string"),
                     index=values.index, name=values.name)


# --------------------------------------------------------------------------------------------------- inference
@dataclass(frozen=True)
class ColumnDraft:
    """What the draft made of one column of the sample: a feature (``feature`` set) or left out (``None``)."""

    column: str
    name: str
    #: The spec's feature entry (name, kind, min/max or categories, max_missing), or None when left out.
    feature: dict[str, Any] | None
    #: Why: the observation behind the kind (a feature), or the reason it was left out.
    note: str


@dataclass(frozen=True)
class Draft:
    """A drafted spec: the spec as plain data (what :func:`lifecycle.spec.load_spec` reads), how each column was
    read, and warnings for the person reviewing it."""

    model: str
    source: str
    rows: int
    id_column: str | None
    id_note: str
    target: str
    task: Task
    task_note: str
    columns: list[ColumnDraft]
    spec: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[ColumnDraft]:
        return [c for c in self.columns if c.feature is not None]

    @property
    def left_out(self) -> list[ColumnDraft]:
        return [c for c in self.columns if c.feature is None]


def _whole(values: pd.Series) -> bool:
    """An integer dtype, or floats (non-missing) that are all whole numbers."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(values.dtype):
        return True
    arr = values.dropna().to_numpy(dtype="float64")
    return bool(np.isfinite(arr).all() and (arr == np.floor(arr)).all())


def _widen(lo: float, hi: float, whole: bool) -> tuple[float | int, float | int]:
    """The observed [lo, hi] widened by :data:`RANGE_MARGIN` of its width each side, rounded outward, the low end
    clamped at 0 when ``lo >= 0``."""
    margin = RANGE_MARGIN * (hi - lo)
    low, high = lo - margin, hi + margin
    if lo >= 0:
        low = max(0.0, low)
    if whole:
        return math.floor(low), math.ceil(high)
    exponent = math.floor(math.log10(hi - lo)) - 2  # three significant digits of the range
    step, digits = 10.0 ** exponent, max(0, -exponent)
    return round(math.floor(low / step) * step, digits), round(math.ceil(high / step) * step, digits)


def _allowed_missing(share: float) -> float:
    if share == 0:
        return 0.0
    return min(math.ceil(round((share + MISSING_MARGIN) * 100, 6)) / 100, MISSING_CAP)


def _sorted_categories(cats: list[str]) -> list[str]:
    try:
        return sorted(cats, key=float)
    except ValueError:
        return sorted(cats)


def _examples(values: list[Any], n: int = 3, chars: int = 24) -> str:
    """The first ``n`` values for a message, each cut to ``chars`` characters."""
    return ", ".join(repr(v if len(str(v)) <= chars else f"{str(v)[:chars]}...") for v in values[:n])


def infer_column(column: Any, values: pd.Series) -> ColumnDraft:
    """Apply the module's rules to one column (not the id or target): a feature entry, or why it is left out."""
    import numpy as np
    import pandas as pd

    name = spec_name(column)
    rows = len(values)
    present = values.dropna()
    n = len(present)
    missing = 1 - n / rows if rows else 1.0

    def out(why: str) -> ColumnDraft:
        return ColumnDraft(str(column), name, None, why)

    if n == 0:
        return out("all missing")
    if missing > MAX_MISSING_SHARE:
        return out(f"{missing:.0%} missing (more than {MAX_MISSING_SHARE:.0%}): too little to learn from")
    dtype = values.dtype
    is_object = pd.api.types.is_object_dtype(dtype)
    is_bool = pd.api.types.is_bool_dtype(dtype) or bool(
        is_object and present.map(lambda v: isinstance(v, bool)).all())
    is_text = not is_bool and (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)
                               or is_object)
    if not (is_bool or is_text or pd.api.types.is_numeric_dtype(dtype)) or pd.api.types.is_timedelta64_dtype(dtype):
        return out(f"type {dtype} is not a feature kind (numeric, integer, categorical): derive one from it")
    base: dict[str, Any] = {"name": name}
    renamed = {"description": f"column {str(column)!r} in the file"} if name != str(column) else {}
    allowed = _allowed_missing(missing)

    def seen(distinct: int) -> str:
        return f"{distinct} distinct in {n} non-missing of {rows} rows" + (f", {missing:.1%} missing" if missing
                                                                             else "")

    if is_bool or is_text:
        text = category_strings(present)
        distinct = int(text.nunique())
        if distinct == 1:
            return out(f"constant ({text.iloc[0]!r} on every non-missing row): nothing to learn")
        if is_text and distinct == n:
            return out(f"text unique per row ({_examples(text.tolist())}, ...): an id or free text")
        numbers = pd.to_numeric(text.astype(object), errors="coerce")
        parsed = float(numbers.notna().mean())
        if is_text and distinct > CATEGORY_MAX_DISTINCT and MOSTLY_NUMBERS_SHARE <= parsed < 1:
            odd = text[numbers.isna()].unique().tolist()
            return out(f"{parsed:.0%} of values are numbers but not all (e.g. {_examples(odd)}): write those as "
                       "empty (missing) and draft again")
        if is_text and (distinct > TEXT_MAX_DISTINCT_SHARE * n or distinct > TEXT_MAX_CATEGORIES):
            return out(f"text with {distinct} distinct values in {n} rows (more than {TEXT_MAX_DISTINCT_SHARE:.0%} "
                       f"of them or more than {TEXT_MAX_CATEGORIES}): free text or an id")
        return ColumnDraft(str(column), name, {**base, "kind": "categorical",
                                               "categories": _sorted_categories(text.unique().tolist()),
                                               "max_missing": allowed, **renamed},
                           f"{'booleans' if is_bool else 'text'}; {seen(distinct)}")

    distinct = int(present.nunique())
    if distinct == 1:
        return out(f"constant ({present.iloc[0]!r} on every non-missing row): nothing to learn")
    if not np.isfinite(present.to_numpy(dtype="float64")).all():
        return out("has infinite values: write them as missing (or clip them) and draft again")
    whole = _whole(present)
    if whole and distinct == n:
        if _ID_NAME.search(str(column)):
            return out("whole numbers unique per row, named like an id: an id, not a feature")
        if int(present.max() - present.min()) == n - 1:
            return out("whole numbers unique per row and consecutive: a row number, not a feature")
    if whole and distinct <= CATEGORY_MAX_DISTINCT and distinct <= CATEGORY_MAX_SHARE * n:
        cats = _sorted_categories(category_strings(present).unique().tolist())
        return ColumnDraft(str(column), name, {**base, "kind": "categorical", "categories": cats,
                                               "max_missing": allowed, **renamed},
                           f"codes stored as numbers; {seen(distinct)} (at most {CATEGORY_MAX_DISTINCT} and "
                           f"{CATEGORY_MAX_SHARE:.0%} of rows)")
    lo, hi = float(present.min()), float(present.max())
    low, high = _widen(lo, hi, whole)
    return ColumnDraft(str(column), name, {**base, "kind": "integer" if whole else "numeric", "min": low,
                                           "max": high, "max_missing": allowed,
                                           "max_out_of_range": OUT_OF_RANGE_SHARE, **renamed},
                       f"{'whole numbers' if whole else 'numbers'}; {seen(distinct)}; observed [{lo:g}, {hi:g}]")


def guess_task(values: pd.Series) -> tuple[Task, str]:
    """The task a target suggests, and the observation behind it (the module's rule)."""
    import pandas as pd

    present = values.dropna()
    distinct = int(present.nunique())
    if distinct == 2:
        return "binary", "2 distinct target values"
    if not pd.api.types.is_float_dtype(present.dtype) and distinct <= MULTICLASS_MAX_DISTINCT:
        return "multiclass", f"{distinct} distinct target values, not floats"
    return "regression", f"{distinct} distinct target values" + (
        ", floats" if pd.api.types.is_float_dtype(present.dtype) else "")


def _plain(v: Any) -> Any:
    """A NumPy scalar as the plain Python value YAML writes."""
    return v.item() if hasattr(v, "item") else v


def _class_value(v: Any) -> str | int:
    """A target value as a class of ``data.classes``: whole numbers (also floats) as numbers, anything else as
    text (:func:`category_label`)."""
    if isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer():
        return int(v)
    return category_label(v) or ""


def _find(frame_names: dict[Any, str], wanted: str, option: str, source: str | Path) -> Any:
    """The file's column for ``--target`` / ``--id`` given by its name in the file or its spec name."""
    for col in frame_names:
        if str(col) == wanted:
            return col
    for col, name in frame_names.items():
        if name == wanted:
            return col
    shown = ", ".join(repr(str(c)) for c in list(frame_names)[:20]) + (" ..." if len(frame_names) > 20 else "")
    raise DraftError(f"{source}: {option} {wanted!r}: no such column (columns: {shown})")


def draft_spec(model: str, frame: pd.DataFrame, target: str, *, id_column: str | None = None,
               task: Task | None = None, source: str | Path = "sample") -> Draft:
    """Draft a spec for ``model`` from a sample batch (the module's rules); :class:`DraftError` names the problem.

    ``target`` and ``id_column`` name columns of ``frame`` (as in the file, or by their spec names). Without
    ``id_column`` the one column that is text unique per row and never missing is used.
    """
    if not re.match(NAME_PATTERN, model):
        raise DraftError(f"model name {model!r}: use lower-case letters, digits and _, starting with a letter "
                         "(2 to 63 characters)")
    if task is not None and task not in get_args(Task):
        raise DraftError(f"task {task!r}: use one of {', '.join(get_args(Task))}")
    if frame.empty:
        raise DraftError(f"{source}: has no rows")
    names = spec_names(list(frame.columns), source)
    target_col = _find(names, target, "--target", source)
    warnings: list[str] = []
    if id_column is not None:
        id_col = _find(names, id_column, "--id", source)
        if id_col == target_col:
            raise DraftError(f"{source}: --id and --target name the same column {str(id_col)!r}")
        id_note = "given (--id)"
    else:
        candidates = [c for c in frame.columns if c != target_col and frame[c].notna().all()
                      and infer_column(c, frame[c]).note.startswith("text unique per row")]
        if len(candidates) == 1:
            id_col = candidates[0]
            id_note = "picked: the only column of text unique per row (no --id given)"
        else:
            id_col = None
            found = "none" if not candidates else ", ".join(repr(str(c)) for c in candidates)
            id_note = (f"none: no --id given and not exactly one column of text unique per row (found: {found}); "
                       "training splits rows by a hash of their values")
    id_unique = False
    if id_col is not None:
        ids = frame[id_col]
        if ids.isna().any():
            warnings.append(f"id column {str(id_col)!r} is missing on {int(ids.isna().sum())} rows of the sample: "
                            "the data gate requires it on every row")
        id_unique = bool(ids.dropna().is_unique)
        if not id_unique:
            warnings.append(f"id column {str(id_col)!r} is not unique in the sample: training splits rows by it, "
                            "so rows sharing an id always land in the same split")

    y = frame[target_col]
    if task is None:
        task, task_note = guess_task(y)
    else:
        task_note = "given (--task)"
    if y.isna().any():
        warnings.append(f"target {str(target_col)!r} is missing on {int(y.isna().sum())} rows of the sample: the "
                        "data gate quarantines a batch with any missing target")
    labels = sorted({_plain(v) for v in y.dropna().unique()}, key=lambda v: (str(type(v)), v))
    classes = None
    if task == "multiclass":
        classes = [_class_value(v) for v in labels]
        if len(classes) < 3:
            raise DraftError(f"{source}: target {str(target_col)!r} takes {len(classes)} distinct value(s) in the "
                             f"sample ({', '.join(str(c) for c in classes)}): a multiclass model needs at least 3 "
                             "(two values: task binary, mapped to 0/1)")
    if task == "binary" and set(labels) - {0, 1}:
        warnings.append(f"target {str(target_col)!r} takes the values {labels}: training reads a binary target as "
                        "0/1; map the two values to 0 and 1 in your batches")

    columns = [infer_column(c, frame[c]) for c in frame.columns if c not in (id_col, target_col)]
    features = [c.feature for c in columns if c.feature is not None]
    if not features:
        why = "; ".join(f"{c.column}: {c.note}" for c in columns) or "there is none"
        raise DraftError(f"{source}: no column besides the id and the target can be a feature ({why})")
    id_name, target_name = (names[id_col] if id_col is not None else None), names[target_col]

    expectations: list[dict[str, Any]] = []
    if task != "regression":
        expectations.append({"expectation": "expect_column_values_to_be_in_set",
                             "kwargs": {"column": target_name, "value_set": labels}})
    if id_unique:
        expectations.append({"expectation": "expect_column_values_to_be_unique",
                             "kwargs": {"column": id_name, "mostly": 0.99}})
    slices = [{"name": f["name"], "column": f["name"]} for f in features
              if f["kind"] == "categorical" and len(f["categories"]) <= SLICE_MAX_CATEGORIES]
    spec: dict[str, Any] = {
        "name": model,
        "description": f"Drafted by lifecycle init from {Path(source).name} ({len(frame)} rows): say what the "
                       "model predicts, for whom, and what it feeds.",
        "owner": "ml-platform",
        "tags": ["drafted"],
        "task": task,
        "data": {"id_column": id_name, "target": target_name, **({"classes": classes} if classes else {}),
                 "features": features},
        "expectations": expectations,
        "training": {"window_days": 7, "min_rows": 500, "epochs": 30, "batch_size": 256, "learning_rate": 0.003,
                     "hidden_units": [64, 32], "dropout": 0.1, "patience": 4, "seed": 42, "device": "auto",
                     "holdout_fraction": 0.2, "validation_fraction": 0.15},
        "gate": {**{k: dict(v) for k, v in TASK_GATE_DEFAULTS[task].items()}, "min_slice_rows": 100},
        "slices": slices,
        "schedules": {"data_gate": "@daily", "train": "0 2 * * *", "monitor": "@hourly"},
        "serving": {"max_batch_rows": 1000, "sticky_key": None, "out_of_spec": "flag",
                    "slo": {"max_error_rate": 0.02, "max_p99_ms": 50.0}},
        "canary": {"shadow": {"enabled": True, "min_labels": 300, "min_seconds": 30.0},
                   "steps": [5, 25, 50, 100], "min_requests": 200, "min_seconds": 60.0, "max_seconds": 3600.0,
                   "slo": {"max_error_rate_increase": 0.01, "max_p99_ms": 25.0, "alpha": 0.01}},
        "monitoring": {"num_method": "wasserstein", "cat_method": "jensenshannon", "feature_threshold": 0.1,
                       "drift_share": 0.5, "max_performance_drop": dict(TASK_PERFORMANCE_DROP_DEFAULTS[task]),
                       "min_rows": 1000,
                       "min_labels": 500, "cooldown_minutes": 360.0, "max_retrains_per_day": 2},
    }
    return Draft(model, str(source), len(frame), id_name, id_note, target_name, task, task_note, columns, spec,
                 warnings)


# ---------------------------------------------------------------------------------------------------- the YAML
_RULES = [
    "names: characters other than letters, digits and _ become _ (landing renames a file's columns the same way)",
    f"kinds: text, booleans, pandas categoricals -> categorical; whole numbers (also floats all whole) with at most "
    f"{CATEGORY_MAX_DISTINCT} distinct values that are at most {CATEGORY_MAX_SHARE:.0%} of the rows -> categorical "
    "(codes stored as numbers); other whole numbers -> integer; the rest -> numeric",
    f"min/max: observed, widened by {RANGE_MARGIN:.0%} of the range each side and rounded outward; min clamped at 0 "
    f"when no value is negative; up to {OUT_OF_RANGE_SHARE:.0%} of a batch's values may fall outside "
    "(max_out_of_range: a sample misses the tails)",
    "categories: the observed values as text (codes as 3, not 3.0; booleans as True/False)",
    f"max_missing: 0 when never missing in the sample, else the observed share + {MISSING_MARGIN}, rounded up to "
    f"hundredths, at most {MISSING_CAP}",
    f"left out: all or over {MAX_MISSING_SHARE:.0%} missing; constant; text unique per row or with distinct values "
    f"for over {TEXT_MAX_DISTINCT_SHARE:.0%} of its rows or over {TEXT_MAX_CATEGORIES} of them (ids, free text); text "
    f"with over {CATEGORY_MAX_DISTINCT} distinct values, at least {MOSTLY_NUMBERS_SHARE:.0%} but not all numbers; "
    "infinite numbers; whole numbers unique per row that are consecutive (row numbers) or named like an id; "
    "dates, times and other types",
    f"task: 2 distinct target values -> binary; a non-float target with at most {MULTICLASS_MAX_DISTINCT} distinct "
    "values -> multiclass (its values, at least 3, become data.classes); else regression",
]

#: Comment lines are wrapped at this width.
_WIDTH = 116

_SECTION_COMMENTS = {
    "task": "Guessed from the target ({note}). Every stage follows it: the network's head and loss, the gate's "
            "metrics, the gateway's answers and labels, the deploy judge's evidence and the monitor's drift and "
            "performance.",
    "data": "The batch schema the data gate checks (columns, types, ranges, categories, missing shares) and "
            "training reads. Id column: {id_note}.",
    "expectations": "Checks beyond the schema (Great Expectations, by name): the target values seen in the sample "
                    "and a unique row id.",
    "training": "The platform's defaults: an MLP trained on the validated batches of the last window_days days "
                "(no training with fewer than min_rows rows), early stopping on a validation split.",
    "gate": "Promotion gate (defaults; set floors that fit the problem): absolute floors and the largest "
            "regression against the champion on the same held-out rows.",
    "slices": f"One slice per categorical feature with at most {SLICE_MAX_CATEGORIES} categories: metrics per "
              "value are reported; gate.slice_thresholds makes them gate.",
    "schedules": "When the DAGs run: the data gate checks the day's landed batch (lifecycle land), training "
                 "nightly, drift monitoring hourly.",
    "serving": "Gateway: rows per request, routing key (clients send X-Routing-Key); a row outside the drafted "
               "ranges or categories is served, clipped to the range and counted (out_of_spec: flag; set reject, "
               "a 422, once the ranges are the population's); the SLO is watched at all times.",
    "canary": "Deployment: shadow first (no user sees the challenger), then a traffic ramp, judged throughout by "
              "sequential tests against the champion.",
    "monitoring": "Drift (Evidently) per feature and the retraining it triggers, with a cooldown and a daily cap "
                  "(defaults).",
}


def _flow(value: Any) -> str:
    """One value in YAML flow style, on one line (strings quoted only when YAML needs it)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=2**31 - 1, allow_unicode=True, sort_keys=False)
    return text.strip()[1:-1]


def _block(mapping: dict[str, Any], indent: int) -> list[str]:
    """A mapping in block style: nested mappings of mappings as blocks, small ones of scalars in flow style."""
    pad, lines = " " * indent, []
    for key, value in mapping.items():
        nested = isinstance(value, dict) and (len(value) > 3 or any(isinstance(v, dict) for v in value.values()))
        if nested:
            lines += [f"{pad}{key}:", *_block(value, indent + 2)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += [f"{pad}{key}:", *(f"{pad}  - {_flow(v)}" for v in value)]
        else:
            lines.append(f"{pad}{key}: {_flow(value)}")
    return lines


def _one_line(text: str) -> str:
    """Text safe inside a YAML comment: a line break in a column name would end the comment."""
    return re.sub(r"[\r\n\x85\u2028\u2029]", " ", text)


def _comment(text: str, pad: str = "", indent: str = "") -> list[str]:
    """``text`` as comment lines wrapped at :data:`_WIDTH` (``indent``: of continuation lines); blank lines kept."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        wrapped = textwrap.wrap(_one_line(paragraph), _WIDTH - len(pad) - 2, subsequent_indent=indent,
                                break_on_hyphens=False) or [""]
        lines += [f"{pad}# {line}".rstrip() for line in wrapped]
    return lines


def render(draft: Draft) -> str:
    """The draft as YAML text with comments: the rules, one comment per section, one per feature and per column
    left out. ``yaml.safe_load(render(d)) == d.spec`` (tested)."""
    spec = draft.spec
    lines = [*_comment(f"Drafted by `lifecycle init {draft.model}` from {Path(draft.source).name} ({draft.rows} "
                       "rows): review every line before you rely on it. Check it with `lifecycle check FILE`; land "
                       f"a day's batch with `lifecycle land {draft.model} YYYY-MM-DD FILE`.\n\n"
                       "How the draft read the sample (the rules of lifecycle.data.draft):"),
             *(line for rule in _RULES for line in _comment(f"- {rule}", indent="  ")), ""]
    for key in ("name", "description", "owner", "tags"):
        lines.append(f"{key}: {_flow(spec[key])}")
    for warning in draft.warnings:
        lines += _comment(f"WARNING: {warning}", indent="  ")
    lines += ["", *_comment(_SECTION_COMMENTS["task"].format(note=draft.task_note)), f"task: {_flow(spec['task'])}"]
    data = spec["data"]
    lines += ["", *_comment(_SECTION_COMMENTS["data"].format(id_note=draft.id_note)), "data:",
              f"  id_column: {_flow(data['id_column'])}", f"  target: {_flow(data['target'])}",
              *([f"  classes: {_flow(data['classes'])}"] if "classes" in data else []), "  features:"]
    for col in draft.features:
        lines += [*_comment(col.note, "    "), f"    - {_flow(col.feature)}"]
    if draft.left_out:
        lines.append("  # Left out:")
        lines += [line for col in draft.left_out for line in _comment(f"  {col.column}: {col.note}", "  ",
                                                                            indent="    ")]
    for key in ("expectations", "training", "gate", "slices", "schedules", "serving", "canary", "monitoring"):
        value = spec[key]
        lines += ["", *_comment(_SECTION_COMMENTS[key])]
        if isinstance(value, dict):
            lines += [f"{key}:", *_block(value, 2)]
        else:
            lines += [f"{key}: []"] if value == [] else _block({key: value}, 0)
    return "\n".join(lines) + "\n"


def write_draft(draft: Draft, path: str | Path, *, force: bool = False) -> Path:
    """Render the draft, check that it loads as a spec, and write it to ``path`` atomically.

    Refuses (:class:`FileExistsError`) an existing file unless ``force``, and (:class:`DraftError`) a file name
    other than ``<model>.yaml`` (a spec's name must match its file).
    """
    path = Path(path)
    if path.name != f"{draft.model}.yaml":
        raise DraftError(f"{path}: a spec's file name must be its model name: {draft.model}.yaml")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists: pass --force to overwrite it")
    text = render(draft)
    ModelSpec.model_validate(yaml.safe_load(text))  # a draft that does not load is a bug here, not the user's
    return atomic_write(path, text, replace=force)


# ------------------------------------------------------------------------------------------------------ landing
def landing_frame(spec: ModelSpec, frame: pd.DataFrame, source: str | Path = "batch") -> pd.DataFrame:
    """A user's batch in the landing contract's shape: columns renamed (:func:`spec_name`), the spec's id column,
    features, sensitive columns kept out of the features (``fairness.columns``) and target in that order (other
    columns dropped), categorical columns as text
    (:func:`category_strings`), the others as read (the data gate judges their types and values).

    Raises :class:`DraftError` naming the columns the spec needs and the file lacks.
    """
    from lifecycle.data.frames import batch_columns, declared_columns

    renamed = frame.rename(columns=spec_names(list(frame.columns), source))
    need = batch_columns(spec)
    lacking = [c for c in need if c not in renamed.columns]
    if lacking:
        raise DraftError(f"{source}: lacks the column(s) {lacking} that spec {spec.name!r} needs (id "
                         f"{spec.data.id_column!r}, target {spec.data.target!r}, {len(spec.data.features)} features)")
    out = renamed[need].copy()
    for f in declared_columns(spec):
        if f.kind == "categorical":
            out[f.name] = category_strings(out[f.name])
    return out.reset_index(drop=True)


def land_file(spec: ModelSpec, day: dt.date, source: str | Path, paths: StatePaths | None = None) -> Path:
    """Land a user's Parquet or CSV file as the model's batch for ``day``; returns the landed path.

    The contract (the data gate reads exactly this): ``<state>/data/<model>/landing/<YYYY-MM-DD>.parquet``, one
    Parquet file per day in :func:`landing_frame`'s shape, written atomically (:func:`lifecycle.fileio.atomic_write`:
    a temp file in the same folder, fsynced, renamed), so the gate never sees half a file; a batch landed again
    for the same day replaces the earlier one. A file that does not exist (:class:`FileNotFoundError`), cannot be
    parsed, or lacks the spec's id, target or feature columns (:class:`DraftError`) is refused before anything is
    written.
    """
    paths = paths or StatePaths.current()
    frame = landing_frame(spec, read_table(source), source)
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except (ValueError, TypeError) as err:  # pyarrow: a column of mixed Python types
        raise DraftError(f"{source}: cannot be written as Parquet: {type(err).__name__}: {err}") from None
    return atomic_write(paths.landing(spec.name) / batch_name(day), buffer.getvalue())
