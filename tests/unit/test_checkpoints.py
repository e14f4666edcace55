"""Checkpoints: loaded with ``weights_only=True`` (a pickled object is refused, its code never runs), and each
training run restores and trains into a folder of its own."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lifecycle.paths import StatePaths
from lifecycle.training.trainer import Hyper, TrainingError, latest_checkpoint, load_checkpoint, train


def _ran(marker: str) -> str:
    Path(marker).write_text("ran")
    return "ran"


class Payload:
    """Unpickling this calls ``_ran``: what a malicious checkpoint would do with ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return _ran, (self.marker,)


def _evil(path: Path, marker: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": Payload(marker), **extra}, path)
    return path


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return x[:200], y[:200], x[200:], y[200:]


def _hp(epochs=2) -> Hyper:
    return Hyper(epochs=epochs, batch_size=64, learning_rate=3e-3, weight_decay=0.0, hidden_units=[8], dropout=0.0,
                 patience=5, seed=1, device="cpu")


def test_the_crafted_file_is_a_real_payload(tmp_path):
    marker = tmp_path / "marker"
    torch.load(_evil(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"  # what weights_only=False would let through


def test_a_checkpoint_holding_a_pickled_object_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "marker"
    path = _evil(tmp_path / "ckpt" / "epoch-0001.pt", marker)
    with pytest.raises(TrainingError, match="holds objects other than tensors and plain values; refused"):
        load_checkpoint(path)
    xt, yt, xv, yv = _data()
    with pytest.raises(TrainingError, match="refused"):  # resume reads it through the same loader
        train(_hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "ckpt")
    assert not marker.exists()


def test_a_model_folder_with_pickled_weights_is_refused(tmp_path):
    import pickle

    from lifecycle.training.packaging import META, PREPROCESSOR, WEIGHTS, load_model_dir

    marker = tmp_path / "marker"
    folder = tmp_path / "model_dir"
    _evil(folder / WEIGHTS, marker)
    (folder / PREPROCESSOR).write_text(json.dumps({"numeric": [], "categorical": []}))
    (folder / META).write_text(json.dumps({"threshold": 0.5}))
    with pytest.raises(pickle.UnpicklingError):
        load_model_dir(folder)
    assert not marker.exists()


def test_a_real_checkpoint_loads_with_weights_only(tmp_path):
    xt, yt, xv, yv = _data()
    out = train(_hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path)
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["epoch"] == 2 and state["architecture"] == out.architecture and state["stopped"] is True


def test_two_runs_get_two_folders_and_never_mix(tmp_path):
    paths = StatePaths(tmp_path)
    a, b = paths.checkpoint_dir("m", "run_a"), paths.checkpoint_dir("m", "run_b")
    assert a != b and a.parent == b.parent == paths.checkpoints / "m"
    xt, yt, xv, yv = _data()
    train(_hp(epochs=1), xt, yt, xv, yv, checkpoint_dir=a)
    second = train(_hp(epochs=2), xt, yt, xv, yv, checkpoint_dir=b)
    assert second.resumed_from is None  # b did not resume from a's checkpoint
    assert sorted(p.name for p in a.iterdir()) == ["epoch-0001.pt"]
    assert sorted(p.name for p in b.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(ValueError, match="not a safe folder name"):
            paths.checkpoint_dir("m", bad)


def test_a_restored_checkpoint_lands_only_in_its_runs_folder(tmp_path, monkeypatch):
    import mlflow

    from lifecycle.training import flow

    class Artifact:
        def __init__(self, path):
            self.path = path

    class FakeClient:
        """Two runs' artifacts; downloads write where they are told (like mlflow), then we check where."""

        def list_artifacts(self, run_id, path):
            return [Artifact(f"checkpoints/epoch-000{i}.pt") for i in (1, 2)]

        def download_artifacts(self, run_id, path, dst_path):
            out = Path(dst_path) / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(f"{run_id}:{path}")
            return str(out)

    monkeypatch.setattr(mlflow, "MlflowClient", FakeClient)
    paths = StatePaths(tmp_path)
    for run in ("run_a", "run_b"):
        flow._restore_checkpoint(run, paths.checkpoint_dir("m", run))
    for run in ("run_a", "run_b"):
        folder = paths.checkpoint_dir("m", run)
        assert [p.name for p in folder.iterdir()] == ["epoch-0002.pt"]  # the temp download folder is gone
        assert (folder / "epoch-0002.pt").read_text() == f"{run}:checkpoints/epoch-0002.pt"
    assert sorted(p.name for p in (paths.checkpoints / "m").iterdir()) == ["run_a", "run_b"]  # nothing shared
