"""The train DAG's plan refuses a window that cannot train, in one line (issue 14: a spec that cannot train)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lifecycle.spec import load_spec
from lifecycle.training.flow import Window
from lifecycle.training.readiness import check_trainable
from lifecycle.training.trainer import TrainingError
from tests.conftest import PROJECT_ROOT

SPECS = PROJECT_ROOT / "tests" / "fixtures" / "specs"


def window(tmp_path: Path, target: str, *days: list) -> Window:
    batches = []
    for i, values in enumerate(days):
        path = tmp_path / f"2026-01-0{i + 1}.parquet"
        pd.DataFrame({target: values, "x": range(len(values))}).to_parquet(path)
        batches.append(str(path))
    names = [f"2026-01-0{i + 1}" for i in range(len(days))]
    return Window(names[0], names[-1], names, batches, [])


def refusal(spec, cfg_rows: int, win: Window) -> str:
    cfg = spec.training.model_copy(update={"min_rows": cfg_rows})
    with pytest.raises(TrainingError) as err:
        check_trainable(spec, cfg, win)
    message = str(err.value)
    assert "\n" not in message and spec.name in message and win.start in message
    return message


def test_a_window_with_too_few_rows_is_refused_with_the_count_and_the_way_out(spec, tmp_path):
    message = refusal(spec, 500, window(tmp_path, "default", [0, 1] * 100, [1, 0] * 100))
    assert "400 rows, fewer than training.min_rows 500" in message and "training.window_days" in message


def test_a_constant_binary_target_is_refused(spec, tmp_path):
    message = refusal(spec, 10, window(tmp_path, "default", [0] * 50, [0] * 50))
    assert "is 0 on every row (the target is constant)" in message


def test_a_binary_target_that_is_not_zero_one_names_the_values_and_the_multiclass_way(spec, tmp_path):
    message = refusal(spec, 10, window(tmp_path, "default", ["yes", "no"] * 20))
    assert "0 or 1" in message and "no, yes" in message and "multiclass" in message


def test_a_multiclass_target_with_a_class_the_spec_does_not_list_is_refused(tmp_path):
    spec = load_spec(SPECS / "credit_tier.yaml")
    classes = [str(c) for c in spec.data.classes]
    message = refusal(spec, 10, window(tmp_path, spec.data.target, classes * 10 + ["platinum"]))
    assert "not one of data.classes" in message and "'platinum'" in message


def test_a_constant_regression_target_is_refused(tmp_path):
    spec = load_spec(SPECS / "credit_loss.yaml")
    message = refusal(spec, 10, window(tmp_path, spec.data.target, [3.5] * 40))
    assert "constant" in message


def test_a_trainable_window_passes_with_its_row_count(spec, tmp_path):
    cfg = spec.training.model_copy(update={"min_rows": 10})
    assert check_trainable(spec, cfg, window(tmp_path, "default", [0, 1] * 10, [1, 1, 0])) == 23


def test_a_network_that_does_not_build_is_refused_at_plan_and_by_lifecycle_check(spec, tmp_path, capsys):
    """``training.module`` naming a factory that breaks the contract: one line at plan, exit 1 from check."""
    import yaml

    from lifecycle.cli import main

    cfg = spec.training.model_copy(update={"min_rows": 10, "module": "tests.fixtures.custom_modules:not_a_module"})
    with pytest.raises(TrainingError) as err:
        check_trainable(spec, cfg, window(tmp_path, "default", [0, 1] * 10))
    assert "\n" not in str(err.value) and "not_a_module" in str(err.value)
    data = yaml.safe_load((PROJECT_ROOT / "include/models/credit_default.yaml").read_text())
    data["training"]["module"] = "tests.fixtures.custom_modules:not_a_module"
    path = tmp_path / "credit_default.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check", str(path)]) == 1
    assert f"{path}: training.module" in capsys.readouterr().out
    data["training"]["module"] = "tests.fixtures.custom_modules:linear"
    path.write_text(yaml.safe_dump(data))
    assert main(["check", str(path)]) == 0
    assert "a Linear with" in capsys.readouterr().out
