"""airflow_settings.yaml: the GPU pool gets one slot per visible GPU."""
from __future__ import annotations

import subprocess

import yaml

from lifecycle.ops import stack
from lifecycle.ops.airflow_client import AirflowClient
from lifecycle.paths import PROJECT_ROOT


def test_gpu_pool_is_sized_from_the_machine():
    pools = yaml.safe_load((PROJECT_ROOT / "airflow_settings.yaml").read_text())["airflow"]["pools"]
    assert [p["pool_slot"] for p in pools if p["pool_name"] == "gpu"] == ["gpus"]


def test_gpu_count(monkeypatch):
    def fake_smi(argv, **kw):
        return subprocess.CompletedProcess(argv, 0, "GPU 0: NVIDIA H100 (UUID: a)\nGPU 1: NVIDIA H100 (UUID: b)\n", "")

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(stack.subprocess, "run", fake_smi)
    assert stack.gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert stack.gpu_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert stack.gpu_count() == 0

    def no_driver(argv, **kw):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(stack.subprocess, "run", no_driver)
    assert stack.gpu_count() == 0


class _Client(AirflowClient):
    """The real upsert methods over a fake transport: every object is new, every call is recorded."""

    def __init__(self):
        self.calls = []
        self.http = self

    def get(self, path):
        return type("R", (), {"status_code": 404})()

    def _req(self, method, path, json=None):
        self.calls.append((method, path, json))


def test_apply_settings_creates_the_pool_with_one_slot_per_gpu(monkeypatch):
    monkeypatch.setattr(stack, "gpu_count", lambda: 4)
    client = _Client()
    stack.apply_settings(client)
    [(method, _path, body)] = [c for c in client.calls if c[1] == "/pools"]
    assert method == "POST" and body["name"] == "gpu" and body["slots"] == 4
    monkeypatch.setattr(stack, "gpu_count", lambda: 0)
    client = _Client()
    stack.apply_settings(client)
    assert [c[2]["slots"] for c in client.calls if c[1] == "/pools"] == [1]


def test_client_upserts_patch_what_exists_and_post_what_does_not_and_list_runs():
    import httpx

    existing = {"/api/v2/pools/gpu", "/api/v2/variables/v"}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params)))
        if request.method == "GET" and request.url.path.endswith("/dagRuns"):
            return httpx.Response(200, json={"dag_runs": [{"dag_run_id": "r1"}], "total_entries": 1})
        if request.method == "GET":
            return httpx.Response(200 if request.url.path in existing else 404, json={})
        return httpx.Response(200, json={})

    client = AirflowClient.__new__(AirflowClient)  # no login: the transport is fake
    client.http = httpx.Client(base_url="http://airflow", transport=httpx.MockTransport(handler))
    client.upsert_pool({"name": "gpu", "slots": 2})
    client.upsert_connection({"connection_id": "db", "conn_type": "postgres"})
    client.upsert_variable("v", "1")
    assert [(m, p) for m, p, _ in seen if m != "GET"] == [
        ("PATCH", "/api/v2/pools/gpu"), ("POST", "/api/v2/connections"), ("PATCH", "/api/v2/variables/v")]
    assert client.dag_runs("deploy", order_by="-run_after", limit=5) == [{"dag_run_id": "r1"}]
    assert seen[-1] == ("GET", "/api/v2/dags/deploy/dagRuns", {"order_by": "-run_after", "limit": "5"})
