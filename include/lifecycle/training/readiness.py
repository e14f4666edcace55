"""Can this window train at all? Answered at the train DAG's ``plan`` step, before a worker, a GPU slot or an
MLflow run is spent on it.

The checks read only the target column of the window's validated batches (Parquet reads one column; no features,
no torch), and each failure is one line naming the model, the window, the target and the way out:

- too few rows: fewer than ``training.min_rows`` in the window (train reaches the same verdict after loading
  every column; here it costs a column read);
- binary: a target that is not 0/1 (a class label such as ``"yes"``, or three values: task multiclass), or a
  constant one (every row is the same class: nothing to learn and no ROC AUC to gate on);
- multiclass: a value outside ``data.classes`` (a class the spec does not list: add it, or the batch is wrong),
  or a single class on every row;
- regression: a value that is not a finite number, or a constant target;
- a user's network (``training.module``) that does not import, build or answer in the task's shape.

The multiclass and regression rules are :class:`~lifecycle.training.preprocessing.TargetEncoding`'s own (the
ones training applies to its split), applied here to the whole window.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lifecycle.training.trainer import TrainingError

if TYPE_CHECKING:
    from lifecycle.spec import ModelSpec, TrainingConfig
    from lifecycle.training.flow import Window


def _target(spec: ModelSpec, window: Window):
    import pandas as pd

    return pd.concat([pd.read_parquet(p, columns=[spec.data.target])[spec.data.target] for p in window.batches],
                     ignore_index=True)


def check_trainable(spec: ModelSpec, cfg: TrainingConfig, window: Window) -> int:
    """The window's row count when it can train; else a :class:`TrainingError` of one line (see the module)."""
    import pandas as pd

    from lifecycle.data.frames import category_label
    from lifecycle.training.preprocessing import TargetEncoding

    if cfg.module:  # a user's network that does not import or build fails here, not after the data is loaded
        from lifecycle.training.trainer import check_module

        check_module(cfg.module, cfg.module_options, task=spec.task,
                     outputs=len(spec.data.classes or []) if spec.task == "multiclass" else 1)
    target = _target(spec, window)
    where = f"{spec.name}: window {window.start}..{window.end} ({len(window.days)} validated batches)"
    if len(target) < cfg.min_rows:
        raise TrainingError(f"{where} holds {len(target)} rows, fewer than training.min_rows {cfg.min_rows}: "
                            "land more days, widen training.window_days or lower training.min_rows")
    if spec.task == "binary":
        values = pd.to_numeric(target, errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            seen = sorted({str(v) for v in target[bad].head(1000)})[:5]
            raise TrainingError(f"{where}: task binary needs target {spec.data.target!r} to be 0 or 1 on every row; "
                                f"{int(bad.sum())} of {len(target)} rows are not (e.g. {', '.join(seen)}): map the "
                                "target to 0/1, or use task multiclass with data.classes")
        if values.nunique() < 2:
            raise TrainingError(f"{where}: target {spec.data.target!r} is {int(values.iloc[0])} on every row (the "
                                "target is constant): nothing to learn; train on a window with both classes")
        return len(target)
    TargetEncoding.fit(spec.task, spec.data.target, target, spec.data.classes, rows=f"rows of {where}")
    if spec.task == "multiclass":  # fit checked every value is a class and at least two occur
        present = {category_label(v) for v in target.unique()}
        missing = [str(c) for c in spec.data.classes or [] if str(c) not in present]
        if missing:  # trainable: the model still gets a probability for them, learnt from no example
            import logging

            logging.getLogger(__name__).warning("%s: class(es) %s of data.classes occur in no row of the window",
                                                where, missing)
    return len(target)
