"""DAG integrity: every file imports, every DAG is documented, tagged and retried, and loading a DAG file is
cheap (no database query, no connection or variable look-up, no heavy ML library)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lifecycle.paths import PROJECT_ROOT

DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY = ["torch", "mlflow", "great_expectations", "evidently", "pandas", "sklearn"]


def test_every_dag_file_imports_without_error(dagbag):
    assert dagbag.import_errors == {}
    assert {f"credit_default__{stage}" for stage in ("data_gate", "train", "deploy", "rollback", "monitor",
                                                     "slo_watch", "ops_alert", "retire", "restore")} <= set(dagbag.dag_ids)


def test_every_dag_has_docs_tags_owner_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "lifecycle" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.owner != "airflow", f"{dag_id}.{task.task_id} has the default owner"
            assert task.on_failure_callback, f"{dag_id}.{task.task_id} alerts nobody on failure"


def test_training_runs_in_the_gpu_pool_the_spec_names(dagbag, spec):
    assert dagbag.dags["credit_default__train"].get_task("train").pool == spec.training.gpu_pool


PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    import airflow.sdk
    from airflow.sdk import BaseHook, Variable

    def refuse(*a, **k):
        raise AssertionError("DAG file looked up a connection or variable at import")

    BaseHook.get_connection = classmethod(refuse)
    Variable.get = staticmethod(refuse)
    import sqlalchemy.engine

    def no_db(*a, **k):
        raise AssertionError("DAG file queried the database at import")

    sqlalchemy.engine.Engine.connect = no_db
    before = set(sys.modules)
    for path in sys.argv[1:]:
        spec = importlib.util.spec_from_file_location("dagfile_" + path.rsplit("/", 1)[-1][:-3], path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(%s))
    print(json.dumps({"heavy": heavy}))
""")


def test_loading_dag_files_is_cheap():
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/dir/airflow.db"}
    done = subprocess.run([sys.executable, "-c", PROBE % json.dumps(HEAVY), *map(str, DAG_FILES)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"heavy": []}


def test_a_bad_spec_is_an_import_error_naming_file_and_field(tmp_path, airflow_db):
    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data["training"]["epochs"] = -1
    (tmp_path / "credit_default.yaml").write_text(yaml.safe_dump(data))
    code = ("from airflow.dag_processing.dagbag import DagBag; import json; "
            f"b = DagBag(dag_folder={str(PROJECT_ROOT / 'dags')!r}); print(json.dumps(b.import_errors))")
    env = {**os.environ, "LIFECYCLE_SPECS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert errors, done.stderr[-2000:]
    for trace in errors.values():
        assert "credit_default.yaml: training.epochs: Input should be greater than 0" in trace


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_are_thin(path: Path):
    assert len(path.read_text().splitlines()) < 160, f"{path.name}: keep logic in include/lifecycle"
