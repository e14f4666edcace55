"""The training step as a Kubernetes pod: ``training_pod`` builds the ``KubernetesPodOperator`` the train DAG uses
when the spec has a ``training.kubernetes`` section.

The pod runs the same code as ``TorchTrainOperator`` (``python -m lifecycle.cli train-task``, which calls
``trainflow.run_training_task``: torchrun with ``training.processes`` > 1), and hands the same result dict to
``evaluate`` and ``register`` through the XCom sidecar (``/airflow/xcom/return.json``).

The provider is imported inside the function, so a DAG file whose specs have no such section never loads it.
(Not named ``kubernetes.py``: Airflow's plugin loader imports plugin files as top-level modules, and that name
would shadow the Kubernetes client if ``plugins/.airflowignore`` ever stopped excluding this package.)
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from lifecycle.spec import ModelSpec

#: Variables of the worker passed through to the pod when set: where MLflow, the lifecycle DB and state live.
PASSTHROUGH_ENV = ("LIFECYCLE_TRACKING_URI", "LIFECYCLE_DB_URL", "LIFECYCLE_HOME")
#: Where the XCom sidecar reads the task's return value.
XCOM_PATH = "/airflow/xcom/return.json"


def training_pod(spec: ModelSpec, *, window_end: str = "{{ ti.xcom_pull(task_ids='plan')['window_end'] }}",
                 epochs: str = "{{ params.epochs }}", overrides: str = "{{ params.overrides | tojson }}",
                 reason: str = "{{ params.reason }}", **kwargs: Any) -> KubernetesPodOperator:
    """A ``KubernetesPodOperator`` that trains ``spec``'s model like ``TorchTrainOperator`` does.

    ``window_end``, ``epochs``, ``overrides`` (JSON) and ``reason`` are Jinja templates, rendered into the
    container's arguments as ``--flag=value`` (so a DAG rendering native objects still passes strings; an epochs
    of ``None`` or an overrides of ``null`` mean none). ``kwargs`` go to the operator (``task_id``, ``queue``,
    ``pool``, ``retries``, ...) and may override any default set here (e.g. ``deferrable=False``).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    pod = spec.training.kubernetes
    if pod is None:
        raise ValueError(f"{spec.name}: training.kubernetes is not set; use TorchTrainOperator")
    resources: dict[str, str] = {}
    if pod.cpu:
        resources["cpu"] = pod.cpu
    if pod.memory:
        resources["memory"] = pod.memory
    if pod.gpus:
        resources["nvidia.com/gpu"] = str(pod.gpus)
    # Copied from the environment the DAG is parsed in; with env_from_secret the DB URL (and its password)
    # comes from the Secret instead of sitting in the pod spec.
    passthrough = [n for n in PASSTHROUGH_ENV if not (pod.env_from_secret and n == "LIFECYCLE_DB_URL")]
    env = {name: os.environ[name] for name in passthrough if os.environ.get(name)}
    env.update(pod.env)
    # Namespace, node selector, env and resources go in through full_pod_spec, which is not templated: the train
    # DAG renders templates as native objects, which would turn an env value "4" or a quantity "8" into an int
    # (refused by the Kubernetes API). The operator's own (empty) fields merge over it.
    base = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(namespace=pod.namespace),
        spec=k8s.V1PodSpec(node_selector=dict(pod.node_selector) or None, containers=[k8s.V1Container(
            name="base", env=[k8s.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())] or None,
            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=pod.env_from_secret))]
            if pod.env_from_secret else None,
            resources=k8s.V1ResourceRequirements(requests=dict(resources), limits=dict(resources))
            if resources else None)]))
    defaults: dict[str, Any] = {
        "task_id": "train",
        "name": f"{spec.name.replace('_', '-')}-train",
        "image": pod.image,
        "cmds": ["python", "-m", "lifecycle.cli"],
        # --flag=value: always a string, even where the value alone would render to an int or None.
        "arguments": ["train-task", f"--model={spec.name}", f"--window-end={window_end}",
                      "--run-id={{ run_id }}", f"--epochs={epochs}", f"--overrides={overrides}",
                      f"--reason={reason}", f"--xcom={XCOM_PATH}"],
        "full_pod_spec": base,
        "tolerations": [k8s.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
                        for t in pod.tolerations],
        "service_account_name": pod.service_account,
        "labels": {"lifecycle-model": spec.name, "lifecycle-stage": "train"},
        "startup_timeout_seconds": pod.startup_timeout_seconds,
        "do_xcom_push": True,
        "get_logs": True,
        "on_finish_action": "delete_succeeded_pod",
        "deferrable": True,
    }
    return KubernetesPodOperator(**{**defaults, **kwargs})
