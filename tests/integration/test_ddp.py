"""Training at scale: `torchrun` with 2 CPU processes (DDP over gloo) reaches the metrics of one process; a rerun
returns the finished run; a failing worker fails the group with its message."""
from __future__ import annotations

import datetime as dt

import pytest

from lifecycle.training import flow as tf
from tests.conftest import DAYS, gate_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, spec):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(tmp_path_factory.mktemp("ddp") / "state"))
        from lifecycle.paths import StatePaths

        paths = StatePaths.current()
        gate_days(spec, paths)
        yield paths


def test_two_processes_reach_the_single_process_metrics(paths, spec):
    one = tf.train_candidate(spec, DAYS[3], "ddp_1", epochs=8, paths=paths)
    two = tf.train_distributed(spec, DAYS[3], "ddp_2", 2, epochs=8, paths=paths)
    assert two["processes"] == 2 and two["model_uri"] != one["model_uri"]
    auc = {}
    for name, trained in (("one", one), ("two", two)):
        evaluation = tf.evaluate_candidate(spec, trained, paths)
        auc[name] = evaluation["candidate"]["overall"]["roc_auc"]
    assert auc["two"] == pytest.approx(auc["one"], abs=0.02), auc
    assert auc["two"] > 0.75, auc
    # same MLflow run layout as one process: per-epoch checkpoints and the rerun returns the finished run
    again = tf.train_distributed(spec, DAYS[3], "ddp_2", 2, epochs=8, paths=paths)
    assert again["run_id"] == two["run_id"]


def test_a_failed_group_raises_with_the_workers_output(paths, spec):
    with pytest.raises(RuntimeError, match="torchrun with 2 processes failed") as err:
        tf.train_distributed(spec, dt.date(2030, 1, 1), "ddp_empty", 2, paths=paths)  # no data in that window
    assert "no validated batches" in str(err.value)


def test_an_interrupted_distributed_run_resumes_from_its_checkpoint(paths, spec):
    import mlflow

    from lifecycle.registry.store import configure_mlflow

    configure_mlflow(paths)
    first = tf.train_distributed(spec, DAYS[3], "ddp_resume", 2, epochs=4, paths=paths)
    # Make it look like the group died after epoch 2: run not finished, later checkpoints never written.
    client = mlflow.MlflowClient()
    client.set_terminated(first["run_id"], "FAILED")
    client.delete_tag(first["run_id"], "lifecycle.model_uri")
    for ckpt in sorted((paths.checkpoints / spec.name / first["run_id"]).glob("epoch-*.pt"))[2:]:
        ckpt.unlink()
    resumed = tf.train_distributed(spec, DAYS[3], "ddp_resume", 2, epochs=4, paths=paths)
    assert resumed["run_id"] == first["run_id"] and resumed["resumed_from_epoch"] == 2
    assert resumed["epochs_run"] == first["epochs_run"]
