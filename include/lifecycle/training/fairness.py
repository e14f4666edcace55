"""The fairness audit of the promotion gate: how a model's decisions (or errors) differ between groups of held-out
rows, per sensitive attribute of the spec's ``fairness`` section (:class:`lifecycle.spec.FairnessConfig`), each
figure against its threshold.

fairlearn computes the figures: a ``MetricFrame`` the per-group ones (rows, selection rate, TPR, FPR; a regression
model's MAE and RMSE with scikit-learn's error metrics), ``fairlearn.metrics``' ``demographic_parity_difference``,
``demographic_parity_ratio`` and ``equalized_odds_difference`` the headline ones. fairlearn is imported when an
audit runs, never at import.

Groups. An attribute's groups are the values of a categorical column (as text:
:func:`lifecycle.data.frames.category_label`) or the bins of a numeric one, named like slices (``[18,25)``). A row
whose value is missing or outside the bins is in no group (``unassigned_rows``). Every group is reported; a group
with fewer than ``min_group_rows`` rows is listed under ``small_groups`` with that reason and left out of the
judged metrics.

Per task:

- ``binary``: the decisions are ``probability >= threshold`` (the model's own threshold);
- ``multiclass``: one-vs-rest per class: the decision "predicted class c" against the label "is class c", every
  metric computed per class (``per_class``), the worst class counting (``class`` names it);
- ``regression``: per-group MAE and RMSE; ``mae_gap`` / ``rmse_gap`` the largest group's minus the smallest's.

Undefined figures are ``None`` with a reason, never NaN (the audit travels as XCom and into the ledger): a group's
TPR needs a positive label in it, its FPR a negative one (fairlearn would report 0 there); such a group is left out
of that rate's gap and of equalized odds (which needs both), named under the metric's ``left_out``. A metric with
fewer than two judged groups where it is defined is ``None`` with its reason, and so is
``demographic_parity_ratio`` when no group gets a positive decision (0 / 0). An undefined metric is not judged
(``judged=False``, ``passed=True``); the gate (:func:`gate_findings`) says so in its check. The audit::

    {"task": "binary", "rows": 1200, "threshold": 0.31, "min_group_rows": 30, "attributes": {"age_band": {
        "column": "age", "bins": [18, 25, 40, 60, 101], "rows": 1200, "unassigned_rows": 0,
        "groups": {"[18,25)": {"rows": 180, "selection_rate": 0.21, "tpr": 0.41, "fpr": 0.12}, ...},
        "small_groups": {},
        "metrics": {"equalized_odds_difference": {
            "value": 0.19, "threshold": 0.1, "bound": "max", "judged": True, "passed": False,
            "groups": ["[18,25)", "[40,60)"], "gap": 0.19, "detail": "TPR 0.41 for [18,25) vs 0.60 for [40,60)"}}}}}

(a multiclass model's group figures are ``selection_rate.<class>``, ``tpr.<class>``, ``fpr.<class>``; a
regression model's ``mae``, ``rmse``; a group's undefined figures carry their reasons under ``undefined``, an
undefined metric its ``reason``). :func:`audit` always returns it in this form; ``json.dumps(audit,
allow_nan=False)`` holds.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.spec import FAIRNESS_FLOORS, FAIRNESS_METRICS

if TYPE_CHECKING:
    import pandas as pd

    from lifecycle.spec import FairnessConfig, Slice

#: The reserved key of a group's figures holding ``{figure: reason}`` for its undefined (``None``) figures.
UNDEFINED = "undefined"
#: How the gate check of each fairness metric is named: ``fairness.<attribute>.<metric>``.
CHECK_PREFIX = "fairness."
#: What each classifier metric compares across groups, as the detail of a check names it.
_RATE_NAMES = {"selection_rate": "selection rate", "tpr": "TPR", "fpr": "FPR", "mae": "MAE", "rmse": "RMSE"}


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _fmt(value: float) -> str:
    """A figure for a person: three significant digits (``0.412``, ``1.5``), whole units from 100 up (``1,234``)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def group_labels(frame: pd.DataFrame, attribute: Slice) -> np.ndarray:
    """Each row's group under ``attribute`` (an object array: the group's name, or None for a missing value or
    one outside the bins): the value as text for a categorical column, ``[lo,hi)`` for a binned one."""
    from lifecycle.data.frames import category_label

    col = frame[attribute.column]
    if attribute.bins is None:
        return np.array([category_label(v) for v in col], dtype=object)
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(len(values), None, dtype=object)
    for lo, hi in zip(attribute.bins[:-1], attribute.bins[1:], strict=True):
        out[(values >= lo) & (values < hi)] = f"[{_edge(lo)},{_edge(hi)})"
    return out


def _edge(x: float) -> str:
    """A bin edge as the group's name shows it: whole numbers as digits, others their shortest repr (never
    rounded: two close edges must not give two groups one name)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _by_group(metrics: dict[str, Callable[..., Any]], y: np.ndarray, pred: np.ndarray,
              groups: np.ndarray) -> dict[str, dict[str, float]]:
    """fairlearn's ``MetricFrame`` of ``metrics`` per group, as ``{group: {metric: float}}``."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    with warnings.catch_warnings():  # a rate with a zero denominator: we decide its definedness ourselves
        warnings.simplefilter("ignore")
        frame = MetricFrame(metrics=metrics, y_true=y, y_pred=pred,
                            sensitive_features=pd.Series(groups, name="group", dtype=object)).by_group
    return {str(g): {m: float(frame.loc[g, m]) for m in metrics} for g in frame.index}


def _fairlearn(name: str, y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> float:
    """One of fairlearn's between-group metrics on these rows."""
    from fairlearn import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(metrics, name)(y, pred, sensitive_features=groups))


def _gap(figures: Mapping[str, Mapping[str, Any]], figure: str, groups: list[str]) -> tuple[float, str, str]:
    """The largest minus the smallest ``figure`` over ``groups`` (at least two, each defined there): (gap, lowest,
    highest), two different groups even when they tie."""
    ranked = sorted(groups, key=lambda g: figures[g][figure])
    low, high = ranked[0], ranked[-1]
    return figures[high][figure] - figures[low][figure], low, high


def _versus(figures: Mapping[str, Mapping[str, Any]], figure: str, low: str, high: str, label: str) -> str:
    return (f"{label} {_fmt(figures[low][figure])} for {low} vs {_fmt(figures[high][figure])} for {high}")


def _undefined(reason: str) -> dict[str, Any]:
    return {"value": None, "reason": reason}


def _classifier_metrics(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, judged: list[str], where: str,
                        label: str | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """One 0/1 decision against one 0/1 label (``label``: the class it stands for, one-vs-rest; None for a binary
    model): the per-group figures (``rows``, ``selection_rate``, ``tpr``, ``fpr``) and the five classifier metrics
    over the ``judged`` groups, each ``{"value", "groups", "gap", "detail"}`` or ``{"value": None, "reason"}``."""
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate

    raw = _by_group({"rows": count, "selection_rate": selection_rate, "tpr": true_positive_rate,
                     "fpr": false_positive_rate}, y, pred, groups)
    figures: dict[str, dict[str, Any]] = {}
    for g, m in raw.items():
        in_group = groups == g
        positives = int(y[in_group].sum())
        n = int(in_group.sum())
        fig: dict[str, Any] = {"selection_rate": m["selection_rate"], "tpr": m["tpr"] if positives else None,
                               "fpr": m["fpr"] if positives < n else None}
        why = {}
        if not positives:
            why["tpr"] = (f"no {'positive label' if label is None else f'row of class {label}'} in the {_rows(n)} "
                          f"of {where} {g}")
        if positives == n:
            why["fpr"] = (f"no {'negative label' if label is None else f'row of a class other than {label}'} in the "
                          f"{_rows(n)} of {where} {g}")
        figures[g] = {"rows": n, **fig, **({UNDEFINED: why} if why else {})}
    out: dict[str, dict[str, Any]] = {}
    few = f"fewer than 2 groups of {where} with enough rows ({len(judged)} judged)"
    if len(judged) < 2:
        out = {m: _undefined(few) for m in FAIRNESS_METRICS["binary"]}
        return figures, out
    rows = np.isin(groups, judged)
    gap, low, high = _gap(figures, "selection_rate", judged)
    detail = _versus(figures, "selection_rate", low, high, "selection rate")
    out["demographic_parity_difference"] = {
        "value": _fairlearn("demographic_parity_difference", y[rows], pred[rows], groups[rows]),
        "groups": [low, high], "gap": gap, "detail": detail}
    if figures[high]["selection_rate"] > 0:
        out["demographic_parity_ratio"] = {
            "value": _fairlearn("demographic_parity_ratio", y[rows], pred[rows], groups[rows]),
            "groups": [low, high], "gap": gap, "detail": detail}
    else:
        out["demographic_parity_ratio"] = _undefined(f"no positive decision in any judged group of {where}: the "
                                                     "ratio of selection rates is 0 / 0")
    for rate in ("tpr", "fpr"):
        defined = [g for g in judged if figures[g][rate] is not None]
        left_out = {g: figures[g][UNDEFINED][rate] for g in judged if figures[g][rate] is None}
        if len(defined) < 2:
            out[f"{rate}_gap"] = _undefined(f"{_RATE_NAMES[rate]} is defined in {len(defined)} judged group(s) of "
                                            f"{where}, fewer than 2" + (f": {next(iter(left_out.values()))}"
                                                                        if left_out else ""))
            continue
        gap, low, high = _gap(figures, rate, defined)
        out[f"{rate}_gap"] = {"value": gap, "groups": [low, high], "gap": gap,
                              "detail": _versus(figures, rate, low, high, _RATE_NAMES[rate]),
                              **({"left_out": left_out} if left_out else {})}
    both = [g for g in judged if figures[g]["tpr"] is not None and figures[g]["fpr"] is not None]
    left_out = {g: next(iter(figures[g][UNDEFINED].values())) for g in judged if g not in both}
    if len(both) < 2:
        out["equalized_odds_difference"] = _undefined(
            f"TPR and FPR are both defined in {len(both)} judged group(s) of {where}, fewer than 2"
            + (f": {next(iter(left_out.values()))}" if left_out else ""))
    else:
        rows = np.isin(groups, both)
        value = _fairlearn("equalized_odds_difference", y[rows], pred[rows], groups[rows])
        tpr, fpr = _gap(figures, "tpr", both), _gap(figures, "fpr", both)
        rate, (gap, low, high) = ("tpr", tpr) if tpr[0] >= fpr[0] else ("fpr", fpr)
        out["equalized_odds_difference"] = {"value": value, "groups": [low, high], "gap": gap,
                                            "detail": _versus(figures, rate, low, high, _RATE_NAMES[rate]),
                                            **({"left_out": left_out} if left_out else {})}
    return figures, out


def _worst_class(per_class: dict[str, dict[str, dict[str, Any]]], metric: str) -> dict[str, Any]:
    """A multiclass metric: the worst class's (highest, or lowest for a floor), naming it; None with the first
    class's reason when no class has it."""
    defined = {c: m[metric] for c, m in per_class.items() if m[metric]["value"] is not None}
    values = {c: m[metric]["value"] for c, m in per_class.items()}
    if not defined:
        first = next(iter(per_class.items()))
        return _undefined(f"no class has it: class {first[0]}: {first[1][metric]['reason']}") | {"per_class": values}
    pick = min if metric in FAIRNESS_FLOORS else max
    worst = pick(defined, key=lambda c: defined[c]["value"])
    found = defined[worst]
    return {**found, "class": worst, "detail": f"class {worst}: {found['detail']}", "per_class": values}


def _regression_metrics(y: np.ndarray, v: np.ndarray, groups: np.ndarray, judged: list[str],
                        where: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per-group MAE and RMSE (scikit-learn's, through a ``MetricFrame``) and their gaps over ``judged``."""
    from fairlearn.metrics import count
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    with np.errstate(over="ignore", invalid="ignore"):
        raw = _by_group({"rows": count, "mae": mean_absolute_error, "rmse": root_mean_squared_error}, y, v, groups)
    figures: dict[str, dict[str, Any]] = {}
    for g, m in raw.items():
        fig: dict[str, Any] = {"rows": int(m["rows"])}
        why = {}
        for name in ("mae", "rmse"):
            fig[name] = m[name] if math.isfinite(m[name]) else None
            if fig[name] is None:
                why[name] = f"not a finite number ({m[name]!r}) on the rows of {where} {g}"
        figures[g] = fig | ({UNDEFINED: why} if why else {})
    out: dict[str, dict[str, Any]] = {}
    for name in ("mae", "rmse"):
        defined = [g for g in judged if figures[g][name] is not None]
        if len(defined) < 2:
            out[f"{name}_gap"] = _undefined(f"{_RATE_NAMES[name]} is defined in {len(defined)} judged group(s) of "
                                            f"{where}, fewer than 2")
            continue
        gap, low, high = _gap(figures, name, defined)
        out[f"{name}_gap"] = {"value": gap, "groups": [high, low], "gap": gap,
                              "detail": _versus(figures, name, high, low, _RATE_NAMES[name])}
    return figures, out


def _judge(metric: str, found: dict[str, Any], threshold: float) -> dict[str, Any]:
    floor = metric in FAIRNESS_FLOORS
    out = {**found, "threshold": float(threshold), "bound": "min" if floor else "max"}
    value = found["value"]
    if value is None or not math.isfinite(value):
        why = found.get("reason") or f"not a finite number ({value!r})"
        return out | {"value": None, "reason": why, "judged": False, "passed": True}
    out["value"] = float(value)
    return out | {"judged": True, "passed": bool(value >= threshold if floor else value <= threshold)}


def audit(frame: pd.DataFrame, target: str, outputs: Any, config: FairnessConfig, *, task: str = "binary",
          threshold: float = 0.5, classes: list[str | int] | None = None) -> dict[str, Any]:
    """The fairness audit of one model's ``outputs`` on the rows of ``frame`` (the module docstring gives its form).

    ``outputs`` as the offline evaluation takes them (:func:`lifecycle.training.evaluation.evaluate`): a binary
    model's probabilities (decided at ``threshold``), a multiclass model's rows x ``classes`` probabilities (the
    most probable class is the decision), a regression model's values. Any frame works, from 0 rows up; a target
    the task cannot read or outputs that are not one per row (or NaN) are a ValueError, as in the evaluation.
    """
    from lifecycle.training.evaluation import _class_probabilities, _labels, _predictions, _probabilities
    from lifecycle.training.preprocessing import class_indices, target_numbers

    if task == "binary":
        y = _labels(frame[target].to_numpy(), f"target {target!r}")
        decided = (_probabilities(outputs, len(y), "the fairness audit") >= threshold).astype(np.int64)
    elif task == "multiclass":
        if not classes:
            raise ValueError("a multiclass fairness audit needs the model's classes")
        y = class_indices(frame[target], classes, f"target {target!r}")
        decided = _class_probabilities(outputs, len(y), len(classes), "the fairness audit").argmax(axis=1)
    elif task == "regression":
        y = target_numbers(frame[target], f"target {target!r}")
        decided = _predictions(outputs, len(y), "the fairness audit")
    else:
        raise ValueError(f"unknown task {task!r}: use binary, multiclass or regression")
    result: dict[str, Any] = {"task": task, "rows": len(y), "threshold": float(threshold) if task == "binary" else None,
                              "min_group_rows": config.min_group_rows, "attributes": {}}
    for attribute in config.attributes:
        result["attributes"][attribute.name] = _audit_attribute(frame, y, decided, attribute, config, task, classes)
    return result


def _audit_attribute(frame: pd.DataFrame, y: np.ndarray, decided: np.ndarray, attribute: Slice,
                     config: FairnessConfig, task: str, classes: list[str | int] | None) -> dict[str, Any]:
    where = f"attribute {attribute.name}"
    head: dict[str, Any] = {"column": attribute.column, "bins": attribute.bins, "rows": len(y)}
    if attribute.column not in frame:
        why = f"column {attribute.column!r} is not in the {_rows(len(y))} audited"
        return head | {"unassigned_rows": len(y), "groups": {}, "small_groups": {},
                       "metrics": {m: _judge(m, _undefined(why), t) for m, t in config.thresholds.items()}}
    labels = group_labels(frame, attribute)
    assigned = np.array([g is not None for g in labels], dtype=bool)
    groups, y_in, d_in = labels[assigned], y[assigned], decided[assigned]
    head["unassigned_rows"] = int((~assigned).sum())
    counts = {str(g): int((groups == g).sum()) for g in sorted(set(groups))}
    judged = [g for g, n in counts.items() if n >= config.min_group_rows]
    small = {g: f"{_rows(n)} < min_group_rows {config.min_group_rows}: reported, not judged"
             for g, n in counts.items() if n < config.min_group_rows}
    found: dict[str, dict[str, Any]]
    if not counts:
        figures: dict[str, dict[str, Any]] = {}
        found = {m: _undefined(f"no audited row is in a group of {where}") for m in config.thresholds}
    elif task == "regression":
        figures, found = _regression_metrics(y_in, d_in, groups, judged, where)
    elif task == "binary":
        figures, found = _classifier_metrics(y_in, d_in, groups, judged, where)
    else:
        figures = {g: {"rows": n} for g, n in counts.items()}
        per_class: dict[str, dict[str, dict[str, Any]]] = {}
        for k, c in enumerate(classes or []):  # one-vs-rest: "is class c" against "predicted class c"
            by_group, per_class[str(c)] = _classifier_metrics((y_in == k).astype(np.int64),
                                                              (d_in == k).astype(np.int64), groups, judged, where,
                                                              label=str(c))
            for g, f in by_group.items():
                for name in ("selection_rate", "tpr", "fpr"):
                    figures[g][f"{name}.{c}"] = f[name]
                for name, why in f.get(UNDEFINED, {}).items():
                    figures[g].setdefault(UNDEFINED, {})[f"{name}.{c}"] = why
        found = {m: _worst_class(per_class, m) for m in FAIRNESS_METRICS["multiclass"]}
    metrics = {m: _judge(m, found.get(m) or _undefined(f"{m} is not a {task} fairness metric"), t)
               for m, t in config.thresholds.items()}
    return head | {"groups": {g: figures[g] for g in counts}, "small_groups": small, "metrics": metrics}


def gate_findings(fairness: Mapping[str, Any] | None) -> list[tuple[str, bool, str, bool]]:
    """The gate's checks from a candidate's audit, as ``(name, passed, detail, judged)``: one per attribute and
    metric, named ``fairness.<attribute>.<metric>``; the detail of a breach names the groups and the gap
    (``fairness.age_band.equalized_odds_difference 0.19 > 0.10: TPR 0.41 for [18,25) vs 0.60 for [40,60)``), a
    metric undefined on the rows is not judged and says why. No audit (None): no checks."""
    out: list[tuple[str, bool, str, bool]] = []
    for attribute, audited in sorted(((fairness or {}).get("attributes") or {}).items()):
        for metric, m in sorted((audited.get("metrics") or {}).items()):
            name = f"{CHECK_PREFIX}{attribute}.{metric}"
            if not m.get("judged"):
                out.append((name, True, f"{name} not judged: {m.get('reason') or 'undefined'}", False))
                continue
            floor = m.get("bound") == "min"
            ok = bool(m.get("passed"))
            op = (">=" if floor else "<=") if ok else ("<" if floor else ">")
            detail = m.get("detail") or ""
            out.append((name, ok, f"{name} {_fmt(m['value'])} {op} {m['threshold']:g}" + (f": {detail}" if detail
                                                                                          else ""), True))
    return out


def flat_metrics(fairness: Mapping[str, Any] | None, prefix: str = "fairness.") -> dict[str, float]:
    """The audit's judged figures as MLflow metric names (``fairness.age_band.equalized_odds_difference``): the
    defined metric values only (the groups' figures and the reasons are in the evaluation's JSON artifact).
    Characters MLflow refuses become ``_``."""
    def key(name: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)

    out = {}
    for attribute, audited in ((fairness or {}).get("attributes") or {}).items():
        for metric, m in (audited.get("metrics") or {}).items():
            if isinstance(m.get("value"), int | float) and math.isfinite(m["value"]):
                out[f"{prefix}{key(attribute)}.{key(metric)}"] = float(m["value"])
    return out


def _cell(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) else "n/a"


def audit_tables(fairness: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """What the model card and the HTML report show of an audit, as text, one entry per attribute::

        {"attribute": "age_band", "column": "age", "header": ["group", "rows", "selection_rate", "tpr", "fpr"],
         "rows": [["[18,25)", "213", "0.047", "0.237", "0.006"], ...],
         "metrics": ["equalized_odds_difference 0.189 <= 0.4: passed (TPR 0.222 for [60,101) vs 0.411 for ...)"],
         "notes": ["[60,101): 12 rows < min_group_rows 150: reported, not judged"]}

    Undefined figures read ``n/a`` (their reasons are in ``notes``); an audit that could not run (a champion of
    another task: ``{"unavailable": REASON}``) is one entry with no table and the reason as its note. Reads any
    stored audit without raising (missing keys read as absent)."""
    if not fairness:
        return []
    if fairness.get("unavailable"):
        return [{"attribute": "", "column": "", "header": [], "rows": [], "metrics": [],
                 "notes": [str(fairness["unavailable"])]}]
    out = []
    for name, audited in (fairness.get("attributes") or {}).items():
        groups = audited.get("groups") or {}
        figures = [k for g in groups.values() for k in g if k not in ("rows", UNDEFINED)]
        header = ["group", "rows", *dict.fromkeys(figures)]
        rows = [[str(g), str(f.get("rows", "")), *(_cell(f.get(k)) for k in header[2:])] for g, f in groups.items()]
        notes = [f"{g}: {why}" for g, why in (audited.get("small_groups") or {}).items()]
        notes += [f"{g}: {k} n/a: {why}" for g, f in groups.items() for k, why in (f.get(UNDEFINED) or {}).items()]
        if audited.get("unassigned_rows"):
            notes.append(f"{audited['unassigned_rows']} rows in no group (value missing or outside the bins)")
        lines = []
        for metric, m in (audited.get("metrics") or {}).items():
            bound = "<=" if m.get("bound", "max") == "max" else ">="
            if not m.get("judged"):
                lines.append(f"{metric}: not judged ({m.get('reason') or 'undefined'}); threshold {bound} "
                             f"{m.get('threshold')}")
                continue
            verdict = "passed" if m.get("passed") else "BREACH"
            lines.append(f"{metric} {_cell(m.get('value'))} (threshold {bound} {m.get('threshold')}): {verdict}"
                         + (f" ({m['detail']})" if m.get("detail") else ""))
        out.append({"attribute": str(name), "column": str(audited.get("column", "")), "header": header,
                    "rows": rows, "metrics": lines, "notes": notes})
    return out


def candidate_audit(evaluation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The candidate's fairness audit in an evaluation (:func:`lifecycle.training.flow.evaluate_candidate`'s, or its
    run's ``evaluation.json``), None without one (no ``fairness`` in the spec, or an evaluation from before the
    audit existed)."""
    fairness = evaluation.get("fairness") if isinstance(evaluation, Mapping) else None
    found = fairness.get("candidate") if isinstance(fairness, Mapping) else None
    return dict(found) if isinstance(found, Mapping) and "attributes" in found else None
