"""Model specs: one YAML file per model under ``include/models/``, validated by a typed schema.

A spec says everything the lifecycle needs to know about a model: its data and schema, the extra data
expectations, the training config, the promotion gate, the slices to check, the schedules and where alerts go.
Adding a model is adding a file; the DAG factories make one set of DAGs per spec.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lifecycle.paths import specs_dir

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
#: The metrics the gate may name, per task (:mod:`lifecycle.training.evaluation` computes them): a binary classifier
#: (as ever), a multiclass classifier (``macro_f1``: the mean F1 over the classes present in the rows or predicted;
#: plus ``recall.<class>`` for each class of ``data.classes``: :data:`CLASS_RECALL`) and a regression model (``rmse``
#: and ``mae`` in target units).
BINARY_METRICS = ("roc_auc", "f1", "precision", "recall", "log_loss", "calibration_error", "accuracy")
MULTICLASS_METRICS = ("accuracy", "macro_f1", "log_loss", "rows")
REGRESSION_METRICS = ("rmse", "mae", "r2", "rows")
#: Prefix of a multiclass model's per-class recall: ``recall.<class>`` (the class as text: ``recall.2``).
CLASS_RECALL = "recall."
#: The binary metrics (the name this tuple had before the other tasks existed).
METRICS = BINARY_METRICS
#: Metrics where lower is better; the gate flips its comparisons for these.
LOWER_IS_BETTER = frozenset({"log_loss", "calibration_error", "rmse", "mae"})

#: What the target is. See :attr:`ModelSpec.task`.
Task = Literal["binary", "multiclass", "regression"]
TASK_METRICS: dict[str, tuple[str, ...]] = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS,
                                            "regression": REGRESSION_METRICS}
#: The gate a spec gets for each of ``gate.thresholds`` and ``gate.max_regression`` it leaves out, per task.
#: Binary: :class:`GatePolicy`'s own defaults (as they have always been). Multiclass: macro F1 at least 0.5 and at
#: most 0.01 below the champion's. Regression: R^2 at least 0 (the model does no worse than predicting the mean of
#: the held-out target) and at most 0.01 below the champion's. The regression slack is on R^2, not on rmse: a slack
#: on rmse would be in target units, which no default can know, and the gate's slack is absolute; an R^2 drop of
#: 0.01 is the candidate's squared error exceeding the champion's by 1% of the target's variance on the same rows.
TASK_GATE_DEFAULTS: dict[str, dict[str, dict[str, float]]] = {
    "binary": {"thresholds": {"roc_auc": 0.7}, "max_regression": {"roc_auc": 0.005}},
    "multiclass": {"thresholds": {"macro_f1": 0.5}, "max_regression": {"macro_f1": 0.01}},
    "regression": {"thresholds": {"r2": 0.0}, "max_regression": {"r2": 0.01}},
}
_ANY_METRIC = frozenset(BINARY_METRICS + MULTICLASS_METRICS + REGRESSION_METRICS)
_METRIC_HELP = ("Input should be a metric: binary: " + ", ".join(BINARY_METRICS) + "; multiclass: "
                + ", ".join(MULTICLASS_METRICS) + f", {CLASS_RECALL}<class>; regression: "
                + ", ".join(REGRESSION_METRICS))


def _known_metric(name: str) -> str:
    """A metric of some task (whether of the spec's own task is checked by :class:`ModelSpec`, which knows it)."""
    if name in _ANY_METRIC or (name.startswith(CLASS_RECALL) and len(name) > len(CLASS_RECALL)):
        return name
    raise PydanticCustomError("metric_name", _METRIC_HELP)


#: A metric name in a gate: one of a task's metrics (:data:`TASK_METRICS`) or ``recall.<class>``.
Metric = Annotated[str, AfterValidator(_known_metric)]


def task_metrics(task: str, classes: list[str | int] | None = None) -> list[str]:
    """The metric names a model of ``task`` has (a multiclass one: also ``recall.<class>`` per class)."""
    names = list(TASK_METRICS[task])
    if task == "multiclass":
        names += [f"{CLASS_RECALL}{c}" for c in classes or []]
    return names


def metric_problem(task: str, metric: str, classes: list[str | int] | None = None) -> str | None:
    """Why ``metric`` cannot be gated on for a model of ``task`` (None when it can). ``classes`` (a multiclass
    spec's ``data.classes``; None when unknown) must hold the class a ``recall.<class>`` names."""
    if metric in TASK_METRICS[task]:
        return None
    if task == "multiclass" and metric.startswith(CLASS_RECALL) and len(metric) > len(CLASS_RECALL):
        name = metric[len(CLASS_RECALL):]
        if classes is None or name in {str(c) for c in classes}:
            return None
        return f"{name!r} is not one of data.classes {[str(c) for c in classes]}"
    names = list(TASK_METRICS[task]) + ([f"{CLASS_RECALL}<class>"] if task == "multiclass" else [])
    return f"not a {task} metric ({', '.join(names)})"


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file, the field and the problem."""


class FieldProblems(ValueError):
    """Problems a validator of a parent model finds below the field it validates (``problems``: (location below
    that field, message) pairs). :func:`load_spec` reports each at its own field, one line each
    (``gate.thresholds.roc_auc: not a regression metric (...)``); elsewhere the message lists them."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" for loc, msg in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One input column and what a valid value looks like.

    The checks between fields are field validators, so an error is reported at the field itself
    (``data.features.3.max``, ``data.features.7.categories``), not at the feature as a whole.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    kind: Literal["numeric", "integer", "categorical"]
    description: str = ""
    min: float | None = None
    max: float | None = None
    #: Required (non-empty) for a categorical feature, refused for the others (validated even when absent).
    categories: Annotated[list[str] | None, Field(validate_default=True)] = None
    #: Largest share of missing values a valid batch may have in this column (0 = never missing).
    max_missing: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: Largest share of a batch's values (of a numeric or integer feature) that may fall outside ``[min, max]``
    #: and the batch still pass the data gate (0 = none may; ``lifecycle init`` drafts 0.03: ranges read from a
    #: sample miss the population's tails). Serving judges each row on its own (``serving.out_of_spec``).
    max_out_of_range: Annotated[float, Field(ge=0, le=0.5)] = 0.0

    @field_validator("min", "max")
    @classmethod
    def _check_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        name = info.data.get("name", "?")
        if value is None:
            return value
        if info.data.get("kind") == "categorical":
            raise ValueError(f"categorical feature {name!r} cannot have 'min'/'max'")
        low = info.data.get("min")
        if info.field_name == "max" and low is not None and low > value:
            raise ValueError(f"feature {name!r}: min {low} > max {value}")
        return value

    @field_validator("categories")
    @classmethod
    def _check_categories(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        name, kind = info.data.get("name", "?"), info.data.get("kind")
        if kind == "categorical" and not value:
            raise ValueError(f"categorical feature {name!r} needs a non-empty 'categories' list")
        if kind is not None and kind != "categorical" and value is not None:
            raise ValueError(f"{kind} feature {name!r} cannot have 'categories'")
        return value

    @field_validator("max_out_of_range")
    @classmethod
    def _range_tolerance_needs_a_range(cls, value: float, info: ValidationInfo) -> float:
        name, kind = info.data.get("name", "?"), info.data.get("kind")
        if value and kind == "categorical":
            raise ValueError(f"categorical feature {name!r} has no range: max_out_of_range applies to numbers")
        return value


class GeneratorConfig(_Strict):
    """Knobs of the synthetic batch generator (demo and tests); production specs read real batches. The target it
    writes follows the spec's task (:func:`lifecycle.data.synthetic.generate_batch`)."""

    kind: Literal["credit_default"] = "credit_default"
    seed: int = 7
    rows_per_day: Annotated[int, Field(gt=0)] = 4000


class DataSpec(_Strict):
    #: Row id (optional): the data gate requires it on every row when set, and training splits train / validation
    #: / held-out rows by a hash of it. Without one, the split hashes each row's values (features and target):
    #: stable across runs, and identical rows always land on the same side (no leakage between train and test).
    id_column: str | None = None
    target: str
    #: The target's class values as they appear in the data, text or whole numbers: required for a multiclass
    #: model (at least 3, distinct as text), refused for the other tasks. Their order is the model's: its output k
    #: is the probability of ``classes[k]``. A target value is a class when their text forms match
    #: (:func:`lifecycle.data.frames.category_label`: ``2``, ``2.0`` and ``"2"`` are all class ``2``).
    classes: list[str | int] | None = None
    features: Annotated[list[Feature], Field(min_length=1)]
    #: The synthetic demo generator; absent for a model fed real batches (``lifecycle land MODEL DAY FILE``).
    generator: GeneratorConfig | None = None

    @field_validator("classes", mode="before")
    @classmethod
    def _class_values(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, c in enumerate(value):
                if isinstance(c, bool) or not isinstance(c, str | int):
                    raise ValueError(f"class {i} ({c!r}) must be text or a whole number, as the target holds it")
                if isinstance(c, str) and not c.strip():
                    raise ValueError(f"class {i} is empty text")
        return value

    @field_validator("classes")
    @classmethod
    def _three_distinct_classes(cls, value: list[str | int] | None) -> list[str | int] | None:
        if value is None:
            return value
        text = [str(c) for c in value]
        dupes = sorted({t for t in text if text.count(t) > 1})
        if dupes:
            raise ValueError(f"classes must be distinct (as text): {dupes} appear more than once")
        if len(value) < 3:
            raise ValueError(f"a multiclass model needs at least 3 classes, got {len(value)} {text}: a target of two "
                             "values is task binary (0/1)")
        return value

    @field_validator("features")
    @classmethod
    def _unique_names(cls, features: list[Feature], info: ValidationInfo) -> list[Feature]:
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        for col in (info.data.get("id_column"), info.data.get("target")):
            if col is not None and col in names:
                raise ValueError(f"{col!r} is the id or target column and cannot also be a feature")
        return features

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


class Expectation(_Strict):
    """An extra GX expectation, by its snake_case class name, e.g. ``expect_column_mean_to_be_between``."""

    expectation: Annotated[str, Field(pattern=r"^expect_[a-z0-9_]+$")]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


#: A Kubernetes resource quantity: ``2``, ``500m``, ``0.5``, ``8Gi``, ``512M``, ``1e3``.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: ``training.module``: ``dotted.module:attribute`` (the attribute may be dotted too: ``pkg.mod:Class.build``).
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", re.ASCII)


class Toleration(_Strict):
    """A Kubernetes toleration of the training pod (see the Kubernetes docs on taints and tolerations)."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    #: None tolerates every effect of the matching taint.
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _check_operator(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(f"toleration {self.key!r}: operator Exists takes no value (drop 'value', or use "
                             "operator Equal)")
        if self.operator == "Equal" and not self.key:
            raise ValueError("toleration without a key must use operator Exists (it then tolerates every taint)")
        return self


class KubernetesTraining(_Strict):
    """Run the training task as a Kubernetes pod (``KubernetesPodOperator``) instead of in the worker.

    The pod runs ``python -m lifecycle.cli train-task`` in ``image`` (which must hold this project and its
    pinned requirements) and returns the same result as ``TorchTrainOperator`` through the XCom sidecar.
    """

    image: Annotated[str, Field(min_length=1)]
    namespace: Annotated[str, Field(pattern=_DNS_LABEL)] = "default"
    #: ``nvidia.com/gpu`` requested (and limited) for the pod; 0: none.
    gpus: Annotated[int, Field(ge=0)] = 0
    #: CPU and memory quantities, used as both request and limit (e.g. ``"4"``, ``"500m"``, ``"16Gi"``).
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    service_account: str | None = None
    #: Extra environment of the training container (wins over the variables passed through from the worker).
    env: dict[str, str] = Field(default_factory=dict)
    #: A Kubernetes Secret whose keys become the container's environment (``envFrom``), e.g. holding
    #: ``LIFECYCLE_DB_URL`` with its password; the worker's ``LIFECYCLE_DB_URL`` is then not copied into the pod.
    env_from_secret: Annotated[str, Field(pattern=_DNS_LABEL)] | None = None
    #: How long the pod may take to be scheduled and start (image pulls included) before the task fails.
    startup_timeout_seconds: Annotated[int, Field(gt=0)] = 600

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be a Kubernetes quantity such as '2', '500m' or '8Gi'")
        if isinstance(value, int | float):  # YAML `cpu: 2`
            value = str(value)
        if isinstance(value, str) and not _QUANTITY.match(value):
            raise ValueError(f"{info.field_name} {value!r} is not a Kubernetes quantity (e.g. '2', '500m', "
                             "'8Gi')")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in env if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", k))
        if bad:
            raise ValueError(f"invalid environment variable names: {bad}")
        return env


class TrainingConfig(_Strict):
    window_days: Annotated[int, Field(gt=0)] = 7
    min_rows: Annotated[int, Field(gt=0)] = 500
    epochs: Annotated[int, Field(gt=0, le=1000)] = 30
    batch_size: Annotated[int, Field(gt=0)] = 256
    learning_rate: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    hidden_units: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)] = [64, 32]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    patience: Annotated[int, Field(gt=0)] = 4
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Airflow pool the training task runs in when it may use a GPU (one slot per GPU).
    gpu_pool: str | None = "gpu"
    #: Share of the window held out for evaluation (champion and candidate are scored on the same rows).
    holdout_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    #: Share of the remaining rows used for early stopping.
    validation_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.15
    #: Processes per node (``torchrun --nproc-per-node``); 1 trains in the task process.
    processes: Annotated[int, Field(gt=0)] = 1
    #: Airflow queue of the training task: the CeleryExecutor routes it to the workers serving this queue
    #: (``airflow celery worker --queues gpu``); the LocalExecutor ignores it.
    queue: Annotated[str, Field(min_length=1)] = "gpu"
    #: Train in a Kubernetes pod instead of the worker process (see :class:`KubernetesTraining`).
    kubernetes: KubernetesTraining | None = None
    #: The network, as ``"package.module:factory"``: ``factory(input_width, outputs, task, **module_options)``
    #: returns the ``torch.nn.Module`` to train (:func:`lifecycle.training.trainer.load_factory` says the
    #: contract). Unset: the built-in MLP, shaped by ``hidden_units`` and ``dropout``, which a factory's network
    #: ignores (its shape is the factory's and ``module_options``' business). Only the form is checked here (DAG
    #: parsing imports no torch); whether it imports and builds a network is checked where training starts
    #: (:func:`lifecycle.training.trainer.check_module`).
    module: str | None = None
    #: Keyword arguments of the factory: JSON-plain values (text, numbers, booleans, null, lists, mappings),
    #: recorded with the model (its ``weights.pt``) and in the MLflow run's params. Only with ``module``.
    module_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("module")
    @classmethod
    def _module_path(cls, value: str | None) -> str | None:
        if value is not None and not _MODULE_PATH.match(value):
            raise PydanticCustomError("module_path", "expected 'package.module:factory' (a dotted module path, a "
                                      "colon, an attribute name), found {found}", {"found": repr(value)})
        return value

    @field_validator("module_options")
    @classmethod
    def _json_plain(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json
        import math

        def plain(v: Any) -> bool:
            if isinstance(v, dict):
                return all(isinstance(k, str) and plain(x) for k, x in v.items())
            if isinstance(v, list):
                return all(plain(x) for x in v)
            return v is None or isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v))

        bad = sorted(k for k, v in value.items() if not plain(v))
        if bad:
            raise PydanticCustomError("module_options", "expected JSON-plain values (text, finite numbers, "
                                      "booleans, null, lists, mappings with text keys), found others at {keys}",
                                      {"keys": json.dumps(bad)})
        return value

    @model_validator(mode="after")
    def _options_need_a_module(self) -> TrainingConfig:
        if self.module_options and self.module is None:
            raise FieldProblems([(("module_options",), "only with module: these are the keyword arguments of "
                                  "training.module's factory; set module, or drop module_options (the built-in MLP "
                                  "takes hidden_units and dropout)")])
        return self

    @model_validator(mode="after")
    def _one_gpu_per_process(self) -> TrainingConfig:
        k8s = self.kubernetes
        if k8s is not None and k8s.gpus and self.processes > k8s.gpus:  # ddp.py: NCCL whenever CUDA is there
            raise ValueError(f"processes {self.processes} > kubernetes.gpus {k8s.gpus}: DDP on GPUs needs one "
                             "GPU per process")
        return self


class Slice(_Strict):
    """A data slice the gate checks: one slice per category value, or per numeric bin."""

    name: str
    column: str
    bins: list[float] | None = None

    @field_validator("bins")
    @classmethod
    def _sorted(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and (len(bins) < 2 or sorted(bins) != bins):
            raise ValueError("bins must be at least two increasing edges")
        return bins


class GatePolicy(_Strict):
    """Promotion thresholds. A candidate passes when every check holds."""

    #: Absolute floors (for lower-is-better metrics: ceilings), e.g. ``roc_auc: 0.7``, ``log_loss: 0.45``. Every
    #: metric named here, in ``max_regression`` and in ``slice_thresholds`` must be one of the spec's task
    #: (:data:`TASK_METRICS`); the defaults are the binary task's, a multiclass or regression spec that leaves
    #: ``thresholds`` or ``max_regression`` out gets its task's (:data:`TASK_GATE_DEFAULTS`).
    thresholds: dict[Metric, float] = Field(default_factory=lambda: dict(TASK_GATE_DEFAULTS["binary"]["thresholds"]))
    #: Largest allowed regression against the champion on the same held-out rows.
    max_regression: dict[Metric, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(TASK_GATE_DEFAULTS["binary"]["max_regression"])
    )
    #: Floors every slice with enough rows must meet.
    slice_thresholds: dict[Metric, float] = Field(default_factory=dict)
    min_slice_rows: Annotated[int, Field(gt=0)] = 100


#: The fairness metrics a spec's ``fairness.thresholds`` may name, per task (:mod:`lifecycle.training.fairness`
#: computes them). Classifiers: demographic parity (difference of the groups' selection rates, or the ratio of the
#: lowest to the highest), equalized odds (the larger of the TPR and FPR differences) and the TPR / FPR gaps alone
#: (a multiclass model: each one-vs-rest per class, the worst class counting). Regression: the gap between the
#: groups' largest and smallest MAE or RMSE, in target units.
FAIRNESS_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference", "tpr_gap",
               "fpr_gap"),
    "multiclass": ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
                   "tpr_gap", "fpr_gap"),
    "regression": ("mae_gap", "rmse_gap"),
}
#: Fairness metrics whose threshold is a floor (the figure must reach it); every other one's is a ceiling.
FAIRNESS_FLOORS = frozenset({"demographic_parity_ratio"})
#: Fairness metrics that are rates or ratios of rates: their thresholds lie in [0, 1].
FAIRNESS_RATES = frozenset(FAIRNESS_METRICS["binary"])


def fairness_metric_problem(task: str, metric: str, threshold: float) -> str | None:
    """Why ``metric: threshold`` cannot be a fairness threshold of a model of ``task`` (None when it can)."""
    if metric not in FAIRNESS_METRICS[task]:
        return f"not a {task} fairness metric ({', '.join(FAIRNESS_METRICS[task])})"
    if metric in FAIRNESS_RATES and threshold > 1:
        return f"{threshold} is above 1: {metric} compares rates, so its threshold lies in [0, 1]"
    return None


class FairnessConfig(_Strict):
    """The fairness audit of the promotion gate (:mod:`lifecycle.training.fairness`): per sensitive attribute, the
    candidate's figures on the held-out rows, each metric against its threshold; a breach rejects the candidate.

    An attribute is a column, a feature or one of :attr:`columns` (sensitive columns kept out of the model's
    inputs), in groups: one per value of a categorical column, one per bin of a numeric one (``bins`` as a
    slice's). Groups with fewer than :attr:`min_group_rows` held-out rows are reported, not judged.
    """

    #: Sensitive columns of the batches that are *not* features, declared like features (kind, categories or range,
    #: ``max_missing``): the data gate checks them, training never feeds them to the model.
    columns: list[Feature] = Field(default_factory=list)
    attributes: Annotated[list[Slice], Field(min_length=1)]
    #: ``metric: threshold``, the metrics of the spec's task (:data:`FAIRNESS_METRICS`): a ceiling on a difference
    #: or gap, a floor on ``demographic_parity_ratio`` (:data:`FAIRNESS_FLOORS`).
    thresholds: Annotated[dict[str, Annotated[float, Field(ge=0)]], Field(min_length=1)]
    min_group_rows: Annotated[int, Field(gt=0)] = 30

    @field_validator("attributes")
    @classmethod
    def _unique_attribute_names(cls, attributes: list[Slice]) -> list[Slice]:
        names = [a.name for a in attributes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate attribute names: {dupes} (each names its gate checks: "
                             "fairness.<attribute>.<metric>)")
        return attributes


class ServingSLO(_Strict):
    """What the gateway must deliver for a model at all times (watched by the ``slo_watch`` DAG)."""

    #: Largest share of requests a version may fail (scoring errors, HTTP 5xx) over the window.
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
    max_p99_ms: Annotated[float, Field(gt=0)] = 50.0
    #: Trailing window the rates are computed over, and requests needed in it before judging.
    window_seconds: Annotated[float, Field(gt=0)] = 300.0
    min_requests: Annotated[int, Field(gt=0)] = 100
    poll_seconds: Annotated[float, Field(gt=0)] = 15.0


class ServingConfig(_Strict):
    """How the gateway serves the model."""

    #: Largest batch one predict request may carry (larger: HTTP 413).
    max_batch_rows: Annotated[int, Field(gt=0, le=100_000)] = 1000
    #: Row field used as the sticky routing key when the request has no ``X-Routing-Key`` header.
    sticky_key: str | None = None
    #: A live row outside the spec's ranges or categories: ``reject`` answers 422 naming the field (and row);
    #: ``flag`` serves it, marks it in the prediction log (``out_of_spec``, which monitoring leaves out of its
    #: drift statistics) and counts it in ``gateway_out_of_spec_rows_total``. Non-finite numbers: always 422.
    out_of_spec: Literal["reject", "flag"] = "reject"
    #: Recent predictions are kept by request id so a label posted later (feedback) is matched to what was
    #: predicted: at most this many MiB per model (an estimate of the gateway's memory; the oldest go first) ...
    index_max_mb: Annotated[float, Field(gt=0, le=65_536)] = 64.0
    #: ... and none older than this: a label arriving later is logged but matches nothing (live stats).
    feedback_ttl_seconds: Annotated[float, Field(gt=0, le=30 * 86_400)] = 86_400.0
    #: Labels per second one client (address) may post as feedback, and how many it may post at once (a request
    #: costs its labels; beyond the rate: HTTP 429 with Retry-After; more labels than the burst in one request:
    #: 413). The burst must hold one predict request's labels (``max_batch_rows``).
    feedback_rate: Annotated[float, Field(gt=0, le=1_000_000)] = 1000.0
    feedback_burst: Annotated[int, Field(gt=0, le=10_000_000)] = 10_000
    slo: ServingSLO = ServingSLO()

    @model_validator(mode="after")
    def _burst_holds_a_batch(self) -> ServingConfig:
        if self.feedback_burst < self.max_batch_rows:
            raise ValueError(f"feedback_burst ({self.feedback_burst}) must be at least max_batch_rows "
                             f"({self.max_batch_rows}): the labels of one predict request must fit in a burst")
        return self


class CanarySLO(_Strict):
    """What the challenger must hold against the champion, judged live from the shadow stage to the last step.

    The judge (:func:`lifecycle.serving.evidence.decide`) runs four one-sided anytime-valid tests (e-processes) on
    the paired evidence pooled since the deploy started (shadow and every step): accuracy, Brier score, error rate
    and latency. Each may be re-checked at every poll without inflating its error rate.
    """

    #: Error rate: breach when the challenger fails more often than the champion on the same requests by more
    #: than this (H0: error rate difference <= this).
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.01
    #: Latency: the gateway counts challenger-answered requests slower than max(max_p99_ms, champion p99 x
    #: max_p99_ratio) at the time; breach when more than 1% of them are (H0: the challenger's p99 is within limit).
    max_p99_ms: Annotated[float, Field(gt=0)] = 25.0
    max_p99_ratio: Annotated[float, Field(gt=0)] = 2.0
    #: Accuracy on labelled feedback, paired (both versions score every request): breach when the challenger is
    #: shown worse than the champion by more than ``accuracy_margin`` (H0: accuracy drop <= margin).
    accuracy_margin: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: Brier score (mean squared error of the probability) on the same labelled pairs: breach when the
    #: challenger's is shown worse by more than ``brier_margin``. Threshold-free, so it sees bad probabilities that
    #: accuracy on an imbalanced label misses. Multiclass: half the multiclass Brier score per row; regression: the
    #: normalised squared-error difference (e_x^2 - e_c^2) / (e_x^2 + e_c^2), and no accuracy test (see
    #: :mod:`lifecycle.serving.evidence`, "Tasks").
    brier_margin: Annotated[float, Field(ge=0, le=1)] = 0.005
    #: The whole deploy's false-rollback budget: the probability that a challenger no worse than the margins on
    #: any of the four checks is ever rolled back by them, over the shadow stage and every step, however often
    #: the judge looks. Split evenly over the sequential tests that apply (Bonferroni: alpha / 4 each; a
    #: regression model has no accuracy test: alpha / 3).
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    #: Unused by the sequential judge (it needs no minimum sample: its thresholds hold at every look); kept so
    #: existing specs validate; only the retired per-step judge (``bench/baseline_canary.py``) reads it.
    min_feedback: Annotated[int, Field(ge=0)] = 100


class ShadowPlan(_Strict):
    """The stage before any user sees the challenger: the gateway mirrors requests to it and logs both predictions;
    users only ever get the champion's answer. Cheap screens stop a broken challenger before any label arrives;
    labels then feed the same tests as the steps."""

    #: Run the shadow stage before the first step (False: the ramp starts at once, evidence pools from there).
    enabled: bool = True
    #: Share of requests mirrored to the challenger during shadow (every one by default).
    sample: Annotated[float, Field(gt=0, le=1)] = 1.0
    #: Labelled pairs needed before shadow may pass (and at least ``min_seconds`` in shadow) ...
    min_labels: Annotated[int, Field(ge=0)] = 300
    #: ... or this many when the screen held the challenger (its scores moved: see ``moved_positive_rate``).
    min_labels_when_moved: Annotated[int, Field(ge=0)] = 1000
    min_seconds: Annotated[float, Field(ge=0)] = 30.0
    #: Roll back ("breached evidence") when shadow has not gathered enough after this long.
    max_seconds: Annotated[float, Field(gt=0)] = 1800.0
    #: Scored pairs needed before the screens below judge the challenger's scores.
    min_pairs: Annotated[int, Field(gt=0)] = 200
    #: Stop (roll back before any label): challenger scores with a standard deviation below this (constant) ...
    constant_std: Annotated[float, Field(ge=0)] = 1e-3
    #: ... or correlated with the champion's below this (inverted). Any invalid score (NaN, infinite, outside
    #: [0, 1]) stops it too.
    inverted_correlation: Annotated[float, Field(ge=-1, le=1)] = -0.5
    #: Hold (stay in shadow until ``min_labels_when_moved`` labels decide): the share of positive decisions or the
    #: mean score differs from the champion's by more than this (multiclass: the predicted-class distribution, in
    #: total variation, or a class's mean probability).
    moved_positive_rate: Annotated[float, Field(gt=0, le=1)] = 0.15
    #: Regression: hold when the challenger's mean value moved by more than this many of the champion's standard
    #: deviations (its constant screen is scale-free too: a spread at most ``constant_std`` times the champion's).
    moved_mean_sds: Annotated[float, Field(gt=0)] = 0.5

    @model_validator(mode="after")
    def _consistent(self) -> ShadowPlan:
        if self.min_labels_when_moved < self.min_labels:
            raise ValueError(f"min_labels_when_moved ({self.min_labels_when_moved}) must be at least min_labels "
                             f"({self.min_labels}): a moved challenger needs more evidence, not less")
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) must be at least min_seconds ({self.min_seconds})")
        return self


class CanaryPlan(_Strict):
    """Shadow, then a stepwise traffic shift for a challenger, watched live throughout by one sequential test."""

    steps: Annotated[list[Annotated[int, Field(gt=0, le=100)]], Field(min_length=1)] = [5, 25, 50, 100]
    #: A step passes once the challenger answered this many requests in it for at least ``min_seconds`` (and no
    #: test rejected it).
    min_requests: Annotated[int, Field(gt=0)] = 200
    min_seconds: Annotated[float, Field(ge=0)] = 60.0
    #: Give up (and roll back) when a step has not gathered enough evidence after this long.
    max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    poll_seconds: Annotated[float, Field(gt=0)] = 5.0
    slo: CanarySLO = CanarySLO()
    shadow: ShadowPlan = ShadowPlan()

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if steps != sorted(set(steps)) or steps[-1] != 100:
            raise ValueError("steps must be strictly increasing percentages ending at 100")
        return steps


#: The live metrics ``monitoring.max_performance_drop`` may name, per task: :mod:`lifecycle.monitoring.performance`
#: measures them on an interval's labelled feedback and compares each with the champion's offline test metric of the
#: same name. Each is higher-is-better, so a drop is offline - live, and each lies in [0, 1] for any model worth
#: serving, so an absolute drop in (0, 1] means the same for every model of the task. A regression model is watched on
#: R^2, not rmse or mae: those are in target units, which no bound in (0, 1] (nor a default) can know; a drop of R^2
#: by 0.05 is the live squared error exceeding the offline one by 5% of the target's variance, whatever its units.
MONITORED_METRICS: dict[str, tuple[str, ...]] = {"binary": ("roc_auc", "accuracy"),
                                                 "multiclass": ("accuracy", "macro_f1"), "regression": ("r2",)}
#: The ``monitoring.max_performance_drop`` a spec that leaves it out gets, per task (binary: as it always was).
TASK_PERFORMANCE_DROP_DEFAULTS: dict[str, dict[str, float]] = {
    "binary": {"roc_auc": 0.05}, "multiclass": {"macro_f1": 0.05}, "regression": {"r2": 0.05}}
_MONITORED_HELP = ("Input should be a monitored metric: " + "; ".join(f"{task}: {', '.join(names)}" for task, names
                                                                      in MONITORED_METRICS.items()))


def _monitored_metric(name: str) -> str:
    """A monitored metric of some task (whether of the spec's own task is checked by :class:`ModelSpec`)."""
    if any(name in names for names in MONITORED_METRICS.values()):
        return name
    raise PydanticCustomError("monitored_metric", _MONITORED_HELP)


class MonitoringPolicy(_Strict):
    """Drift monitoring and the retraining policy it drives.

    Per-feature drift uses Evidently's own large-sample methods: normed Wasserstein distance for numeric columns
    and Jensen-Shannon distance for categorical ones, both effect sizes (a p-value test on 10^6 rows flags
    shifts nobody cares about). A feature drifts when its score reaches its threshold; the interval drifts when
    the share of drifted features reaches ``drift_share``.
    """

    num_method: Literal["wasserstein", "jensenshannon", "psi", "hellinger", "kl_div"] = "wasserstein"
    cat_method: Literal["jensenshannon", "psi", "hellinger", "kl_div"] = "jensenshannon"
    #: Score at which one feature counts as drifted (Evidently's default for both methods is 0.1).
    feature_threshold: Annotated[float, Field(gt=0)] = 0.1
    #: Per-feature overrides of ``feature_threshold``.
    feature_thresholds: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    #: Share of features that must drift for the interval to count as drifted.
    drift_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: Drift score of the champion's predictions (binary: the probability; multiclass: the predicted class;
    #: regression: the value), reported; counted by ``prediction_triggers``.
    prediction_threshold: Annotated[float, Field(gt=0)] = 0.1
    prediction_triggers: bool = False
    #: Largest drop of a live metric (on labelled feedback) below the champion's offline test metric, per metric of
    #: the spec's task (:data:`MONITORED_METRICS`: binary roc_auc, accuracy; multiclass accuracy, macro_f1; regression
    #: r2, an absolute drop of R^2: not rmse, whose drop would be in target units). Left out: the task's
    #: (:data:`TASK_PERFORMANCE_DROP_DEFAULTS`; binary ``{roc_auc: 0.05}``, as always).
    max_performance_drop: dict[Annotated[str, AfterValidator(_monitored_metric)],
                               Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: dict(TASK_PERFORMANCE_DROP_DEFAULTS["binary"]))
    #: Rows (and labelled rows, for performance) an interval needs before it is judged at all.
    min_rows: Annotated[int, Field(gt=0)] = 1000
    min_labels: Annotated[int, Field(gt=0)] = 500
    #: No retrain within this long of the last retrain trigger or promotion.
    cooldown_minutes: Annotated[float, Field(ge=0)] = 360.0
    max_retrains_per_day: Annotated[int, Field(ge=0)] = 2
    #: Intervals that ended longer ago than this are history: reports are (re)computed, retraining never fires.
    stale_after_hours: Annotated[float, Field(gt=0)] = 24.0
    #: Rows of the training data kept as the drift reference with every trained version.
    reference_rows: Annotated[int, Field(ge=1000)] = 10_000
    #: Each current column is compressed to this many quantiles before Evidently runs (see ``monitoring``).
    sketch_rows: Annotated[int, Field(ge=1000)] = 20_000

    def threshold(self, feature: str) -> float:
        return self.feature_thresholds.get(feature, self.feature_threshold)


class RetirementPolicy(_Strict):
    """Where archives go and when versions retire on their own."""

    #: ``s3://bucket/prefix`` (through the Airflow ``aws`` connection ``aws_conn_id``, so any S3-compatible
    #: store works) or a local folder; default: ``<state>/archive``.
    archive_uri: str | None = None
    aws_conn_id: str = "lifecycle_archive"
    #: The scheduled retire run retires versions with no champion/challenger/previous alias and no traffic for
    #: this many days (0: only manual retirement).
    retain_days: Annotated[float, Field(ge=0)] = 30.0
    #: Drain: after its weight reaches 0 the version must serve no request for this long before it is archived.
    quiet_seconds: Annotated[float, Field(ge=0)] = 30.0
    max_drain_seconds: Annotated[float, Field(gt=0)] = 900.0
    #: Delete the version's local checkpoints and staging copy once its archive is verified.
    delete_local_artifacts: bool = True

    @field_validator("archive_uri")
    @classmethod
    def _uri(cls, uri: str | None) -> str | None:
        if uri and "://" in uri and not uri.startswith(("s3://", "file://")):
            raise ValueError("archive_uri must be s3://bucket/prefix or a local folder")
        if uri and uri.startswith("s3://") and not uri[5:].split("/")[0]:
            raise ValueError("archive_uri s3://... names no bucket")
        return uri


class Schedules(_Strict):
    """Cron expressions (or Airflow presets) for each lifecycle DAG."""

    data_gate: str = "@daily"
    train: str = "0 2 * * *"
    monitor: str = "@hourly"
    #: Retention sweep: retires the versions ``retirement.retain_days`` allows.
    retire: str = "0 4 * * 0"
    #: Each watch run waits (deferred) for an SLO breach for up to one period of this schedule.
    slo_watch: str = "*/30 * * * *"
    #: First data interval the DAGs know about (backfills can reach back to it).
    start_date: dt.date = dt.date(2026, 1, 1)


class AlertConfig(_Strict):
    #: Airflow connection of the ops webhook (an ``http`` connection); missing connection = log only.
    webhook_conn_id: str = "lifecycle_alerts"
    #: Optional second channel: an ``smtp`` connection id and recipients.
    smtp_conn_id: str | None = None
    email_to: list[str] = Field(default_factory=list)


def _with_defaults(raw: dict[str, Any], section: str, model: type[BaseModel],
                   defaults: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``raw`` with each field of ``defaults`` its ``section`` leaves out filled in (a copy; ``raw`` untouched):
    the section as a mapping or as an instance of ``model`` (its fields set explicitly are kept). Anything else
    is left for ``section``'s own validation to report."""
    value = raw.get(section, {})
    if isinstance(value, dict):
        missing = {k: dict(v) for k, v in defaults.items() if k not in value}
        return {**raw, section: {**value, **missing}} if missing else raw
    if isinstance(value, model):
        missing = {k: dict(v) for k, v in defaults.items() if k not in value.model_fields_set}
        return {**raw, section: value.model_copy(update=missing)} if missing else raw
    return raw


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str
    owner: str = "ml-platform"
    #: Registered model name in MLflow; defaults to ``name``.
    registered_model: str | None = None
    #: What the target is (``lifecycle init`` guesses it from the data): ``binary`` (a 0/1 target, the default),
    #: ``multiclass`` (one of ``data.classes``) or ``regression`` (a number). Training (the network's head and
    #: loss), the offline evaluation's metrics and the promotion gate (the gate's metric names must be the task's:
    #: :data:`TASK_METRICS`), the fairness audit, the gateway's answers and labels (a probability and 0/1; a class
    #: with its probabilities; a value), the deploy judge's paired evidence (correctness and Brier score for
    #: classes, a normalised squared-error difference for values) and monitoring (prediction drift, live
    #: performance: :data:`MONITORED_METRICS`) all follow it.
    task: Task = "binary"
    data: DataSpec
    expectations: list[Expectation] = Field(default_factory=list)
    training: TrainingConfig = TrainingConfig()
    gate: GatePolicy = GatePolicy()
    slices: list[Slice] = Field(default_factory=list)
    #: The fairness audit of the gate (:class:`FairnessConfig`); absent: none. Its metrics must be the task's
    #: (:data:`FAIRNESS_METRICS`), its attributes name features or its own declared columns.
    fairness: FairnessConfig | None = None
    schedules: Schedules = Schedules()
    serving: ServingConfig = ServingConfig()
    canary: CanaryPlan = CanaryPlan()
    monitoring: MonitoringPolicy = MonitoringPolicy()
    retirement: RetirementPolicy = RetirementPolicy()
    alerts: AlertConfig = AlertConfig()
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: Any) -> Any:
        """A multiclass or regression spec gets its task's ``gate.thresholds`` / ``gate.max_regression``
        (:data:`TASK_GATE_DEFAULTS`) and ``monitoring.max_performance_drop``
        (:data:`TASK_PERFORMANCE_DROP_DEFAULTS`) for each it leaves out; a binary one keeps :class:`GatePolicy`'s
        and :class:`MonitoringPolicy`'s (the same)."""
        if not isinstance(raw, dict) or raw.get("task") not in ("multiclass", "regression"):
            return raw
        task = raw["task"]
        raw = _with_defaults(raw, "gate", GatePolicy, TASK_GATE_DEFAULTS[task])
        return _with_defaults(raw, "monitoring", MonitoringPolicy,
                              {"max_performance_drop": TASK_PERFORMANCE_DROP_DEFAULTS[task]})

    @field_validator("data")
    @classmethod
    def _classes_fit_the_task(cls, data: DataSpec, info: ValidationInfo) -> DataSpec:
        task = info.data.get("task")
        if task == "multiclass" and data.classes is None:
            raise FieldProblems([(("classes",), "required for task multiclass: list the target's class values as "
                                               "they appear in the data (at least 3)")])
        if task in ("binary", "regression") and data.classes is not None:
            raise FieldProblems([(("classes",), f"only a multiclass model has classes (this spec's task is {task}): "
                                               "remove data.classes")])
        return data

    @field_validator("gate")
    @classmethod
    def _gate_metrics_fit_the_task(cls, gate: GatePolicy, info: ValidationInfo) -> GatePolicy:
        task: str | None = info.data.get("task")
        if task is None:  # reported at task already
            return gate
        data: DataSpec | None = info.data.get("data")
        classes = data.classes if data is not None else None
        problems = []
        for part in ("thresholds", "max_regression", "slice_thresholds"):
            for metric in getattr(gate, part):
                why = metric_problem(task, metric, classes)
                if why is not None:
                    problems.append(((part, metric), why))
        if problems:
            raise FieldProblems(problems)
        return gate

    @field_validator("slices")
    @classmethod
    def _slices_name_columns(cls, slices: list[Slice], info: ValidationInfo) -> list[Slice]:
        data: DataSpec | None = info.data.get("data")
        if data is None:  # reported at data already
            return slices
        names = set(data.feature_names)
        for s in slices:
            if s.column not in names:
                raise ValueError(f"slice {s.name!r} uses column {s.column!r}, which is not a feature")
            kind = data.feature(s.column).kind
            if kind == "categorical" and s.bins is not None:
                raise ValueError(f"slice {s.name!r}: categorical column {s.column!r} takes no bins")
            if kind != "categorical" and s.bins is None:
                raise ValueError(f"slice {s.name!r}: numeric column {s.column!r} needs bins")
        return slices

    @field_validator("fairness")
    @classmethod
    def _fairness_fits_the_spec(cls, fairness: FairnessConfig | None, info: ValidationInfo) -> FairnessConfig | None:
        """Thresholds on the task's fairness metrics; declared columns that are not already the id, the target or a
        feature; each attribute on a feature or a declared column, binned exactly when that column is numeric."""
        if fairness is None:
            return fairness
        task: str | None = info.data.get("task")
        data: DataSpec | None = info.data.get("data")
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for metric, threshold in fairness.thresholds.items() if task is not None else ():
            why = fairness_metric_problem(task, metric, threshold)
            if why is not None:
                problems.append((("thresholds", metric), why))
        if data is not None:  # else reported at data already
            problems += _fairness_column_problems(fairness, data)
        if problems:
            raise FieldProblems(problems)
        return fairness

    @field_validator("monitoring")
    @classmethod
    def _thresholds_name_features(cls, monitoring: MonitoringPolicy, info: ValidationInfo) -> MonitoringPolicy:
        data: DataSpec | None = info.data.get("data")
        unknown = sorted(set(monitoring.feature_thresholds) - set(data.feature_names if data else ()))
        if data is not None and unknown:
            raise ValueError(f"feature_thresholds names unknown features: {unknown}")
        return monitoring

    @field_validator("monitoring")
    @classmethod
    def _performance_drop_fits_the_task(cls, monitoring: MonitoringPolicy, info: ValidationInfo) -> MonitoringPolicy:
        task: str | None = info.data.get("task")
        if task is None:  # reported at task already
            return monitoring
        names = MONITORED_METRICS[task]
        problems = [(("max_performance_drop", metric), f"not a {task} monitored metric ({', '.join(names)})")
                    for metric in monitoring.max_performance_drop if metric not in names]
        if problems:
            raise FieldProblems(problems)
        return monitoring

    @property
    def model_name(self) -> str:
        return self.registered_model or self.name


def _fairness_column_problems(fairness: FairnessConfig, data: DataSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Declared sensitive columns that are already the id, the target or a feature (or declared twice); attributes
    on a column that is neither a feature nor declared, or binned when it is categorical, or not when numeric."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    taken = {data.target, data.id_column, *data.feature_names}
    kinds = {f.name: f.kind for f in data.features}
    for i, col in enumerate(fairness.columns):
        if col.name in taken:
            problems.append((("columns", i, "name"), f"{col.name!r} is already the id, the target or a feature: "
                             "list here only sensitive columns kept out of the features"))
        elif col.name in kinds:
            problems.append((("columns", i, "name"), f"{col.name!r} is declared twice"))
        kinds.setdefault(col.name, col.kind)
    for i, a in enumerate(fairness.attributes):
        kind = kinds.get(a.column)
        if kind is None:
            problems.append((("attributes", i, "column"), f"{a.column!r} is neither a feature nor declared in "
                             "fairness.columns (declare a sensitive column kept out of the features there, with "
                             "its kind)"))
        elif kind == "categorical" and a.bins is not None:
            problems.append((("attributes", i, "bins"), f"categorical column {a.column!r} takes no bins"))
        elif kind != "categorical" and a.bins is None:
            problems.append((("attributes", i, "bins"), f"numeric column {a.column!r} needs bins (increasing "
                             "edges, as a slice's)"))
    return problems


def _describe(err: ValidationError, path: Path) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        found = (e.get("ctx") or {}).get("error")
        if isinstance(found, FieldProblems):  # each problem at its own field
            lines += [f"{path}: {'.'.join(str(p) for p in (*e['loc'], *loc))}: {msg}" for loc, msg in found.problems]
            continue
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; extra fields are refused)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{path}: {where}: {msg}")
    return "\n".join(lines)


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec; raise :class:`SpecError` naming the file, the field and the problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SpecError(f"{path}: cannot read spec: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a mapping at the top level, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_describe(err, path)) from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: {spec.name!r} must match the file name {path.stem!r}")
    return spec


def spec_files(folder: str | Path | None = None) -> list[Path]:
    folder = Path(folder) if folder else specs_dir()
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def load_specs(folder: str | Path | None = None) -> list[ModelSpec]:
    """Every spec in the folder, sorted by name; the first invalid file raises."""
    return [load_spec(p) for p in spec_files(folder)]


def get_spec(name: str, folder: str | Path | None = None) -> ModelSpec:
    if not re.match(NAME_PATTERN, name):
        raise SpecError(f"invalid model name {name!r}")
    folder = Path(folder) if folder else specs_dir()
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in spec_files(folder)) or "none"
        raise SpecError(f"no spec for model {name!r} in {folder} (known: {known})")
    return load_spec(path)
