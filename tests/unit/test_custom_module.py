"""``training.module: package.module:factory``: a user's ``torch.nn.Module`` trained, checkpointed, packaged and
loaded like the built-in MLP (the factories: ``tests/fixtures/custom_modules.py``)."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lifecycle.spec import ModelSpec, SpecError, load_spec
from lifecycle.training import flow as tf
from lifecycle.training.trainer import (
    Hyper,
    ModuleFactoryError,
    TrainingError,
    build_model,
    check_module,
    latest_checkpoint,
    predict_proba,
    train,
)
from tests.fixtures import custom_modules

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
RESIDUAL = "tests.fixtures.custom_modules:residual_mlp"
LINEAR = "tests.fixtures.custom_modules:linear"


def arrays(task: str = "binary", n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    signal = x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.5, size=n)
    y = (signal > 0.5).astype(np.int64) if task == "binary" else ((signal - signal.mean()) / signal.std())
    return x[:450], y[:450], x[450:], y[450:]


def hp(module: str | None = RESIDUAL, **kw) -> Hyper:
    base = dict(epochs=4, batch_size=64, learning_rate=3e-3, weight_decay=1e-4, hidden_units=[16], dropout=0.1,
                patience=10, seed=3, device="cpu", module=module, module_options={"hidden": 8} if module == RESIDUAL
                else {})
    return Hyper(**{**base, **kw})


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def with_module(spec: ModelSpec, epochs: int, **training) -> ModelSpec:
    """``spec`` with ``training`` fields changed, validated as a spec file's would be."""
    cfg = tf.effective_training(spec, epochs, training)
    return spec.model_copy(update={"training": cfg})


def fit(spec: ModelSpec, frame: pd.DataFrame, folder: Path):
    from lifecycle.training.packaging import load_model_dir

    data = tf.prepare_frame(spec, spec.training, frame)
    outcome = train(tf.hyper(spec.training), data.x_train, data.y_train, data.x_val, data.y_val,
                    checkpoint_dir=folder / "checkpoints", **data.target.head())
    model_dir = tf.write_model_dir(folder / "model_dir", outcome, data, tf.decision_threshold(data, outcome),
                                   {"model": spec.name})
    return data, outcome, model_dir, load_model_dir(model_dir)


@pytest.fixture(scope="module")
def loss_spec() -> ModelSpec:
    return with_module(load_spec(SPECS / "credit_loss.yaml"), 3, module=RESIDUAL, module_options={"hidden": 8})


@pytest.fixture(scope="module")
def loss_frame(loss_spec) -> pd.DataFrame:
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch

    return numpy_dtypes(generate_batch(loss_spec, dt.date(2026, 1, 1)))


@pytest.fixture(scope="module")
def loss_fit(loss_spec, loss_frame, tmp_path_factory):
    return fit(loss_spec, loss_frame, tmp_path_factory.mktemp("loss"))


# ------------------------------------------------------------------------------------------------------ the spec
def _spec_error(tmp_path: Path, training: dict) -> str:
    raw = yaml.safe_load((SPECS / "credit_loss.yaml").read_text())
    raw["training"].update(training)
    path = tmp_path / "credit_loss.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return one_line(err)


@pytest.mark.parametrize("training, line", [
    pytest.param({"module": "no colon"}, "training.module: expected 'package.module:factory'", id="form"),
    pytest.param({"module": "pkg.mod:"}, "training.module: expected 'package.module:factory'", id="no-attribute"),
    pytest.param({"module_options": {"hidden": 8}}, "training.module_options: only with module", id="no-module"),
    pytest.param({"module": RESIDUAL, "module_options": {"hidden": float("nan")}},
                 'training.module_options: expected JSON-plain values (text, finite numbers, booleans, null, lists, '
                 'mappings with text keys), found others at ["hidden"]', id="nan-option"),
])
def test_the_spec_checks_the_form_without_importing(tmp_path, training, line):
    assert line in _spec_error(tmp_path, training)


def test_a_spec_naming_a_module_that_does_not_exist_loads_the_import_is_checked_later(tmp_path):
    raw = yaml.safe_load((SPECS / "credit_loss.yaml").read_text())
    raw["training"] |= {"module": "no_such_package.nets:build", "module_options": {"width": [1, 2], "x": None}}
    path = tmp_path / "credit_loss.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).training.module == "no_such_package.nets:build"
    with pytest.raises(ModuleFactoryError) as err:
        check_module("no_such_package.nets:build")
    assert one_line(err) == ("training.module 'no_such_package.nets:build': cannot import no_such_package.nets: "
                             "ModuleNotFoundError: No module named 'no_such_package'")


def test_check_module_summarises_the_network():
    assert check_module(RESIDUAL, {"hidden": 8}, task="multiclass", outputs=3, width=5) == (
        f"training.module {RESIDUAL!r}: a ResidualMLP with {6 * 8 + 2 * 9 * 8 + 9 * 3} parameters for input width 5, "
        "task multiclass, 3 output(s)")


# -------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("task, module", [pytest.param("binary", RESIDUAL, id="binary-residual"),
                                          pytest.param("regression", LINEAR, id="regression-linear")])
def test_a_custom_module_trains_for_binary_and_regression(task, module):
    xt, yt, xv, yv = arrays(task)
    out = train(hp(module, epochs=8, learning_rate=1e-2), xt, yt, xv, yv, task=task)
    assert out.architecture == {"width": 5, "task": task, "outputs": 1, "module": module,
                                "options": {"hidden": 8} if module == RESIDUAL else {}}
    assert "hidden" not in out.architecture and "dropout" not in out.architecture  # the MLP's knobs do not apply
    assert out.parameters == (6 * 8 + 2 * 9 * 8 + 9 if module == RESIDUAL else 6)
    losses = [h["val_loss"] for h in out.history]
    assert len(losses) == 8 and all(np.isfinite(losses)) and min(losses) < losses[0]
    scores = predict_proba(out.state_dict, out.architecture, xv)
    assert scores.shape == (len(xv),)  # the linear model's (rows, 1) comes back as a vector
    if task == "binary":
        assert float(np.mean((scores >= 0.5) == yv)) > 0.7
    else:
        assert float(np.mean((scores - yv) ** 2)) < float(np.var(yv))


def test_the_same_seed_gives_the_same_weights_another_seed_others():
    xt, yt, xv, yv = arrays()
    first, again, other = (train(hp(epochs=2, seed=s), xt, yt, xv, yv) for s in (3, 3, 4))
    for key, value in first.state_dict.items():
        torch.testing.assert_close(again.state_dict[key], value, rtol=0, atol=0)
    assert not torch.equal(other.state_dict["inp.weight"], first.state_dict["inp.weight"])


def test_a_resumed_run_reloads_the_custom_module_and_continues_exactly(tmp_path):
    xt, yt, xv, yv = arrays()
    full = train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_after_2(epoch, metrics, ckpt):
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed", on_epoch=crash_after_2)
    resumed = train(hp(), xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed")
    assert resumed.resumed_from == 2
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for key, value in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0)
    # another network (other options, or the MLP) never resumes from these checkpoints
    for other in (hp(module_options={"hidden": 4}), hp(None)):
        with pytest.raises(TrainingError, match="made for another architecture"):
            train(other, xt, yt, xv, yv, checkpoint_dir=tmp_path / "resumed")
    assert latest_checkpoint(tmp_path / "resumed").name == "epoch-0004.pt"


# ------------------------------------------------------------------------------------------ packaging, loading
def test_the_packaged_model_records_the_factory_and_predicts_the_same(loss_spec, loss_fit):
    data, outcome, model_dir, model = loss_fit
    blob = torch.load(model_dir / "weights.pt", weights_only=True)
    assert blob["architecture"] == {"width": data.x_train.shape[1], "task": "regression", "outputs": 1,
                                    "module": RESIDUAL, "options": {"hidden": 8}}
    assert model.factory == RESIDUAL and type(model.module).__name__ == "ResidualMLP"
    rows = loss_frame_rows(data)
    expected = data.target.to_target(predict_proba(outcome.state_dict, outcome.architecture,
                                                   data.pre.transform(rows)))
    np.testing.assert_allclose(model.predict(rows), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.scores(rows), expected, rtol=0, atol=1e-9)
    assert list(model.predict_frame(rows).columns) == ["prediction"]


def loss_frame_rows(data) -> pd.DataFrame:
    return data.val_df.head(20).reset_index(drop=True)


def test_a_binary_custom_model_round_trips_with_its_threshold(spec, tmp_path):
    from lifecycle.data.frames import numpy_dtypes
    from lifecycle.data.synthetic import generate_batch

    binary = with_module(spec, 3, module=LINEAR, min_rows=100)
    frame = numpy_dtypes(generate_batch(binary, dt.date(2026, 1, 1))).head(1500)
    data, outcome, _, model = fit(binary, frame, tmp_path)
    rows = data.val_df.head(50).reset_index(drop=True)
    p = predict_proba(outcome.state_dict, outcome.architecture, data.pre.transform(rows))
    np.testing.assert_allclose(model.predict_proba(rows), p, rtol=0, atol=1e-9)
    assert model.predict(rows).tolist() == (p >= model.threshold).astype(int).tolist()
    assert model.predict_frame(rows)["probability"].between(0, 1).all()


def _rewrite_architecture(model_dir: Path, **changes) -> None:
    blob = torch.load(model_dir / "weights.pt", weights_only=True)
    blob["architecture"] = {**blob["architecture"], **changes}
    torch.save(blob, model_dir / "weights.pt")


def test_loading_fails_in_one_line_when_the_factory_is_gone_or_the_weights_do_not_fit(loss_fit, tmp_path):
    import shutil

    from lifecycle.training.packaging import load_model_dir

    folder = Path(shutil.copytree(loss_fit[2], tmp_path / "model_dir"))
    _rewrite_architecture(folder, module="tests.fixtures.moved_away:residual_mlp")
    with pytest.raises(ModuleFactoryError) as err:
        load_model_dir(folder)
    assert one_line(err) == (f"model folder {folder}: training.module 'tests.fixtures.moved_away:residual_mlp': "
                             "cannot import tests.fixtures.moved_away: ModuleNotFoundError: No module named "
                             "'tests.fixtures.moved_away'")
    _rewrite_architecture(folder, module=RESIDUAL, options={"hidden": 4})
    with pytest.raises(ModuleFactoryError) as err:
        load_model_dir(folder)
    width = loss_fit[0].x_train.shape[1]
    assert one_line(err).startswith(
        f"model folder {folder}: training.module {RESIDUAL!r} with options {{'hidden': 4}}: the saved weights do "
        f"not fit the network it builds (input width {width}, outputs 1): shapes differ: inp.weight saved (8, "
        f"{width}), built (4, {width}), inp.bias saved (8,), built (4,)")
    _rewrite_architecture(folder, module=LINEAR, options={})
    with pytest.raises(ModuleFactoryError, match=r"missing weight, bias; unexpected inp\.weight, inp\.bias"):
        load_model_dir(folder)


def test_a_model_without_a_factory_still_builds_the_builtin_mlp():
    from lifecycle.training.trainer import TabularMLP

    xt, yt, xv, yv = arrays()
    out = train(hp(None, epochs=1), xt, yt, xv, yv)
    assert out.architecture == {"width": 5, "hidden": [16], "dropout": 0.1}  # as every model saved so far
    assert type(build_model(out.state_dict, out.architecture)) is TabularMLP


# ------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("path, line", [
    pytest.param("tests.fixtures.custom_modules:missing", "tests.fixtures.custom_modules has no attribute 'missing'",
                 id="no-attribute"),
    pytest.param("tests.fixtures.custom_modules:NOT_A_FACTORY", "NOT_A_FACTORY is a int, not a callable factory",
                 id="not-callable"),
    pytest.param("tests.fixtures.custom_modules:not_a_module",
                 "the factory returned a dict, not a torch.nn.Module", id="not-a-module"),
    pytest.param("tests.fixtures.custom_modules:too_many_outputs",
                 "its Linear returns shape (2, 2) for 2 rows; a binary model with 1 output(s) needs (rows,) or "
                 "(rows, 1)", id="output-shape"),
    pytest.param("tests.fixtures.custom_modules:refuses",
                 "the factory failed for input_width 5, outputs 1, task binary, options {}: ValueError: this factory "
                 "builds no binary network", id="factory-raises"),
])
def test_a_factory_that_breaks_the_contract_is_one_line_at_the_start_of_training(path, line):
    xt, yt, xv, yv = arrays()
    with pytest.raises(ModuleFactoryError) as err:
        train(hp(path), xt, yt, xv, yv)
    assert one_line(err) == f"training.module {path!r}: {line}"


def test_options_the_factory_cannot_take_are_one_line_before_any_training():
    with pytest.raises(ModuleFactoryError) as err:
        check_module(RESIDUAL, {"hidden": 8, "blocks": "two"})
    assert one_line(err).startswith(f"training.module {RESIDUAL!r}: the factory failed for input_width 4, outputs 1,"
                                    " task binary, options {'hidden': 8, 'blocks': 'two'}: TypeError: ")


# -------------------------------------------------------------------------------------- the pyfunc, elsewhere
def test_the_factorys_module_file_travels_as_code(tmp_path):
    from lifecycle.training.packaging import factory_code

    paths, requirements = factory_code({"module": RESIDUAL}, tmp_path / "code")
    assert paths == [str(tmp_path / "code" / "tests")] and requirements == []
    copied = sorted(str(p.relative_to(tmp_path / "code")) for p in (tmp_path / "code").rglob("*") if p.is_file())
    assert copied == ["tests/__init__.py", "tests/fixtures/custom_modules.py"]  # tests.fixtures: a namespace
    assert (tmp_path / "code/tests/fixtures/custom_modules.py").read_text() == Path(custom_modules.__file__).read_text()
    assert factory_code({"module": "numpy.linalg:norm"}, tmp_path / "installed") == ([], [
        f"numpy=={np.__version__}"])
    assert factory_code({"width": 5, "hidden": [8], "dropout": 0.0}, tmp_path / "mlp") == ([], [])


@pytest.mark.slow
def test_the_logged_pyfunc_loads_in_a_fresh_process_outside_the_project(loss_spec, loss_fit, tmp_path, monkeypatch):
    """The served pyfunc imports the factory from its bundled code: the child runs outside the repository, with
    no ``PYTHONPATH``, so ``tests.fixtures`` can only come from the model's ``code/``."""
    import mlflow

    from lifecycle.training.packaging import log_pyfunc

    data, _, model_dir, model = loss_fit
    rows = loss_frame_rows(data)[loss_spec.data.feature_names]
    for f in loss_spec.data.features:
        if f.kind != "categorical":
            rows[f.name] = rows[f.name].astype("float64")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a throwaway store for this test
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    try:
        with mlflow.start_run() as run:
            info = log_pyfunc(model_dir, rows.head(3))
        params = mlflow.get_run(run.info.run_id).data.params
        local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model"))
    finally:
        mlflow.set_tracking_uri(None)
    assert params["model.network"] == RESIDUAL
    assert int(params["model.parameters"]) == sum(p.numel() for p in model.module.parameters())
    assert sorted(str(p.relative_to(local)) for p in Path(local, "code").rglob("*.py") if "lifecycle" not in p.parts
                  ) == ["code/tests/__init__.py", "code/tests/fixtures/custom_modules.py"]
    rows.to_parquet(tmp_path / "rows.parquet")
    script = ("import sys, json, pandas as pd, mlflow.pyfunc\n"
              "import importlib.util\nassert importlib.util.find_spec('tests') is None, 'the repository is on sys.path'\n"
              f"m = mlflow.pyfunc.load_model({local!r})\n"
              f"print(json.dumps(m.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))"
              "['prediction'].tolist()))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got, model.predict(rows), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------------- DDP
def _ddp_rank(rank: int, world: int, port: int, folder: str) -> None:
    import os

    import torch.distributed as dist

    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        xt, yt, xv, yv = arrays()
        out = train(hp(epochs=3), xt, yt, xv, yv, checkpoint_dir=Path(folder) / "ckpt")
        torch.save(out.state_dict, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_builds_the_factory_in_every_process_and_matches_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    xt, yt, xv, yv = arrays()
    one = train(hp(epochs=3), xt, yt, xv, yv)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in one.state_dict.items():
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)  # one model across ranks
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-5)  # the global batch of one process
    assert latest_checkpoint(tmp_path / "ckpt").name == "epoch-0003.pt"


@pytest.mark.parametrize("path", ["os:system", "subprocess:run", "builtins:eval", "torch.serialization:load",
                                  "tests.fixtures.custom_modules:_private"])
def test_a_factory_from_the_standard_library_or_a_private_name_is_refused_before_import(path):
    """A model's weights.pt names the factory that loading calls: a tampered file cannot reach os.system."""
    from lifecycle.training.trainer import ModuleFactoryError, load_factory

    with pytest.raises(ModuleFactoryError, match="is refused"):
        load_factory(path)
