from __future__ import annotations

import numpy as np
import pytest
import torch

from lifecycle.training.trainer import Hyper, TrainingError, latest_checkpoint, resolve_device, train


def data(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.5, size=n)) > 0.5).astype(np.int64)
    return x[:900], y[:900], x[900:], y[900:]


def hp(**kw) -> Hyper:
    base = dict(epochs=6, batch_size=64, learning_rate=3e-3, weight_decay=1e-4, hidden_units=[16],
                dropout=0.1, patience=10, seed=3, device="cpu")
    return Hyper(**{**base, **kw})


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    xt, yt, xv, yv = data()
    full = train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_after_3(epoch, metrics, ckpt):
        if epoch == 3:
            raise Crash

    with pytest.raises(Crash):
        train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed", on_epoch=crash_after_3)
    assert latest_checkpoint(tmp_path / "resumed").name == "epoch-0003.pt"
    resumed = train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed")
    assert resumed.resumed_from == 3
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0)


def test_early_stopping_keeps_the_best_epoch():
    xt, yt, xv, yv = data()
    out = train(hp(epochs=60, patience=2, learning_rate=0.05), xt, yt, xv, yv)
    assert out.stopped_early and len(out.history) < 60
    assert out.best_epoch == min(out.history, key=lambda h: h["val_loss"])["epoch"]


def test_nan_loss_is_a_precise_error():
    xt, yt, xv, yv = data()
    xt[5, 2] = np.inf
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch \d+: the run diverged; lower learning_rate"):
        train(hp(), xt, yt, xv, yv)


def test_empty_split_is_refused():
    xt, yt, xv, yv = data()
    with pytest.raises(TrainingError, match="empty split"):
        train(hp(), xt[:0], yt[:0], xv, yv)


def test_cuda_request_without_gpu_says_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(TrainingError, match="use 'auto' or 'cpu'"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
