"""The Kubernetes variant of the training step: the spec section, the pod the train DAG would create (rendered
without a cluster) and the ``train-task`` command the pod runs."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from lifecycle.paths import PROJECT_ROOT, specs_dir
from lifecycle.spec import ModelSpec, SpecError, load_spec
from tests.conftest import DAYS, gate_days

K8S = {
    "image": "registry.example.com/lifecycle:1.2.3",
    "namespace": "ml-train",
    "gpus": 2,
    "cpu": 8,  # YAML integers are quantities too
    "memory": "32Gi",
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "gpu-count": "8"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "team", "operator": "Equal", "value": "risk-ml"}],
    "service_account": "lifecycle-trainer",
    "env": {"NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "4"},
}


def _data(**k8s) -> dict:
    data = yaml.safe_load((specs_dir() / "credit_default.yaml").read_text())
    data["training"]["kubernetes"] = {**K8S, **k8s}
    return data


def _train_module():
    spec = importlib.util.spec_from_file_location("dagfile_train_k8s_test", PROJECT_ROOT / "dags" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(op, params: dict) -> tuple:
    """Render the templates and build the pod as the operator would at run time (no cluster needed)."""
    ti = SimpleNamespace(dag_id=op.dag_id, task_id=op.task_id, map_index=-1, try_number=1,
                         xcom_pull=lambda task_ids, **_: {"window_end": "2026-01-04", "days": []})
    context = {"ti": ti, "run_id": "manual__2026-01-05T00:00:00+00:00", "params": params, "dag": op.dag}
    op.render_template_fields(context)
    return op.build_pod_request_obj(context, dry_run=True), context


@pytest.fixture
def pod_spec():
    return ModelSpec.model_validate(_data())


def test_the_train_dag_trains_in_a_pod_when_the_spec_says_so(pod_spec, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    monkeypatch.setenv("LIFECYCLE_TRACKING_URI", "http://mlflow.lifecycle:5000")
    monkeypatch.delenv("LIFECYCLE_DB_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    dag = _train_module().build_train(pod_spec)
    op = dag.get_task("train")
    assert isinstance(op, KubernetesPodOperator)
    assert op.queue == "gpu" and op.retries == 2 and op.pool == "gpu"
    assert op.do_xcom_push and op.deferrable and op.get_logs
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert op.startup_timeout_seconds == 600
    assert [t.task_id for t in dag.get_task("evaluate").upstream_list] == ["train"]

    pod, _ = _render(op, {"epochs": None, "overrides": {"learning_rate": 0.001}, "reason": "drift: 7 of 10"})
    assert pod.metadata.namespace == "ml-train"
    assert pod.metadata.labels["lifecycle-model"] == "credit_default"
    assert pod.metadata.labels["dag_id"] == "credit_default__train"
    base = pod.spec.containers[0]
    assert base.image == "registry.example.com/lifecycle:1.2.3"
    assert base.command == ["python", "-m", "lifecycle.cli"]
    assert base.args == ["train-task", "--model=credit_default", "--window-end=2026-01-04",
                         "--run-id=manual__2026-01-05T00:00:00+00:00", "--epochs=None",
                         '--overrides={"learning_rate": 0.001}', "--reason=drift: 7 of 10",
                         "--xcom=/airflow/xcom/return.json"]
    assert all(isinstance(a, str) for a in base.args)  # native rendering must not leak ints/None into args
    assert base.resources.limits == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    assert base.resources.requests == base.resources.limits
    env = {e.name: e.value for e in base.env}
    assert env["LIFECYCLE_TRACKING_URI"] == "http://mlflow.lifecycle:5000"
    assert env["LIFECYCLE_HOME"] == os.environ["LIFECYCLE_HOME"] and env["NCCL_DEBUG"] == "WARN"
    assert env["OMP_NUM_THREADS"] == "4"  # a string still: the API refuses numbers here
    assert "LIFECYCLE_DB_URL" not in env
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "gpu-count": "8"}
    assert [(t.key, t.operator, t.value, t.effect) for t in pod.spec.tolerations] == [
        ("nvidia.com/gpu", "Exists", None, "NoSchedule"), ("team", "Equal", "risk-ml", None)]
    assert pod.spec.service_account_name == "lifecycle-trainer"
    assert pod.spec.restart_policy == "Never"
    # The XCom sidecar reads what train-task writes to /airflow/xcom/return.json.
    assert [c.name for c in pod.spec.containers] == ["base", "airflow-xcom-sidecar"]
    assert any(m.mount_path == "/airflow/xcom" for m in base.volume_mounts)


def test_epochs_param_renders_as_a_string(pod_spec, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    op = _train_module().build_train(pod_spec).get_task("train")
    pod, _ = _render(op, {"epochs": 3, "overrides": {}, "reason": "1"})
    assert pod.spec.containers[0].args[4:7] == ["--epochs=3", "--overrides={}", "--reason=1"]


def test_without_the_section_training_stays_in_the_worker_on_the_gpu_queue(spec):
    from lifecycle_airflow.operators import TorchTrainOperator

    assert spec.training.kubernetes is None and spec.training.queue == "gpu"
    op = _train_module().build_train(spec).get_task("train")
    assert isinstance(op, TorchTrainOperator) and op.queue == "gpu" and op.pool == "gpu"


def test_no_gpus_no_resources_and_the_spec_env_wins(monkeypatch):
    from lifecycle_airflow.k8s_pod import training_pod

    monkeypatch.setenv("LIFECYCLE_TRACKING_URI", "http://worker-view:5000")
    spec = ModelSpec.model_validate(_data(gpus=0, cpu=None, memory=None, tolerations=[], node_selector={},
                                          env={"LIFECYCLE_TRACKING_URI": "http://pod-view:5000"}))
    op = training_pod(spec, task_id="train", deferrable=False)
    assert not op.deferrable and op.tolerations == []
    pod = op.full_pod_spec
    assert pod.spec.containers[0].resources is None and pod.spec.node_selector is None
    assert {e.name: e.value for e in pod.spec.containers[0].env}["LIFECYCLE_TRACKING_URI"] == "http://pod-view:5000"


def test_env_from_secret_keeps_the_db_password_out_of_the_pod_spec(monkeypatch):
    from lifecycle_airflow.k8s_pod import training_pod

    monkeypatch.setenv("LIFECYCLE_DB_URL", "postgresql://lifecycle:s3cret@db:5432/lifecycle")
    monkeypatch.setenv("LIFECYCLE_TRACKING_URI", "http://mlflow:5000")
    spec = ModelSpec.model_validate(_data(env_from_secret="lifecycle-db"))
    container = training_pod(spec, task_id="train").full_pod_spec.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    assert "LIFECYCLE_DB_URL" not in env and env["LIFECYCLE_TRACKING_URI"] == "http://mlflow:5000"
    assert [source.secret_ref.name for source in container.env_from] == ["lifecycle-db"]
    assert "s3cret" not in str(container)


@pytest.mark.parametrize(
    ("k8s", "field", "problem"),
    [
        pytest.param({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "true"}]},
                     "training.kubernetes.tolerations.0", "operator Exists takes no value", id="exists-with-value"),
        pytest.param({"tolerations": [{"operator": "Equal", "value": "x"}]}, "training.kubernetes.tolerations.0",
                     "toleration without a key must use operator Exists", id="equal-without-key"),
        pytest.param({"tolerations": [{"key": "gpu", "operator": "In"}]},
                     "training.kubernetes.tolerations.0.operator", "Input should be 'Equal' or 'Exists'",
                     id="bad-operator"),
        pytest.param({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoRun"}]},
                     "training.kubernetes.tolerations.0.effect", "Input should be", id="bad-effect"),
        pytest.param({"image": None}, "training.kubernetes.image", "Input should be a valid string", id="no-image"),
        pytest.param({"gpus": -1}, "training.kubernetes.gpus", "greater than or equal to 0", id="negative-gpus"),
        pytest.param({"memory": "32 GB"}, "training.kubernetes.memory", "is not a Kubernetes quantity",
                     id="bad-memory"),
        pytest.param({"namespace": "ML_Train"}, "training.kubernetes.namespace", "should match pattern",
                     id="bad-namespace"),
        pytest.param({"gpu": 1}, "training.kubernetes.gpu", "unknown field", id="typo"),
    ],
)
def test_a_bad_kubernetes_section_names_the_field_and_the_problem(tmp_path, k8s, field, problem):
    data = _data(**k8s)
    if data["training"]["kubernetes"].get("image") is None:
        del data["training"]["kubernetes"]["image"]
        problem = "required field is missing"
    path = tmp_path / "credit_default.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert f"{path}: {field}: " in str(err.value) and problem in str(err.value), str(err.value)


def test_more_ddp_processes_than_pod_gpus_is_refused(tmp_path):
    data = _data(gpus=2)
    data["training"]["processes"] = 4
    path = tmp_path / "credit_default.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"training: Value error, processes 4 > kubernetes.gpus 2: DDP on GPUs"):
        load_spec(path)


@pytest.mark.slow
def test_train_task_writes_the_result_for_the_xcom_sidecar(state, spec, tmp_path):
    gate_days(spec, state)
    xcom = tmp_path / "airflow" / "xcom" / "return.json"
    args = ["train-task", "--model=credit_default", f"--window-end={DAYS[3]}", "--run-id=manual__k8s_1",
            "--epochs=None", '--overrides={"epochs": 2}', "--reason=pod test", f"--xcom={xcom}"]
    done = subprocess.run([sys.executable, "-m", "lifecycle.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(xcom.read_text())
    assert result == json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dag_run_id"] == "manual__k8s_1" and result["reason"] == "pod test"
    assert result["training"]["epochs"] == 2 and result["epochs_run"] <= 2
    assert result["window"]["end"] == DAYS[3].isoformat() and result["model_uri"].startswith("models:/")


def test_train_task_refuses_bad_arguments(capsys):
    from lifecycle.cli import main

    with pytest.raises(SystemExit):
        main(["train-task", "--model=credit_default", "--window-end=2026-01-04", "--run-id=r", "--overrides=[1]"])
    assert "not a JSON object" in capsys.readouterr().err


def test_run_training_task_uses_torchrun_when_the_effective_processes_say_so(spec, monkeypatch):
    import datetime as dt

    from lifecycle.training import flow as tf

    calls = []
    monkeypatch.setattr(tf, "train_distributed", lambda *a, **k: calls.append(("ddp", a[1:], k)) or {"ddp": 1})
    monkeypatch.setattr(tf, "train_candidate", lambda *a, **k: calls.append(("one", a[1:], k)) or {"one": 1})
    assert tf.run_training_task(spec, "2026-01-04T00:00:00+00:00", "r1", "None", {"processes": 2}, "x") == {"ddp": 1}
    assert tf.run_training_task(spec, dt.date(2026, 1, 4), "r2", "3", "not a dict", "y") == {"one": 1}
    assert calls == [
        ("ddp", (dt.date(2026, 1, 4), "r1", 2), {"epochs": None, "overrides": {"processes": 2}, "reason": "x",
                                                  "paths": None}),
        ("one", (dt.date(2026, 1, 4), "r2"), {"epochs": 3, "overrides": None, "reason": "y", "paths": None}),
    ]
