from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lifecycle.paths import specs_dir
from lifecycle.spec import SpecError, get_spec, load_spec, load_specs


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base() -> dict:
    return yaml.safe_load((specs_dir() / "credit_default.yaml").read_text())


def test_every_shipped_spec_is_valid():
    specs = load_specs()
    assert [s.name for s in specs] == ["credit_default"]
    assert specs[0].data.feature_names[:2] == ["age", "income"]


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        pytest.param(lambda d: d["training"].update(epochs=0), "training.epochs", "greater than 0", id="epochs-zero"),
        pytest.param(lambda d: d["training"].update(epocs=5), "training.epocs", "unknown field", id="typo"),
        pytest.param(lambda d: d["data"].pop("target"), "data.target", "required field is missing", id="no-target"),
        pytest.param(lambda d: d["gate"]["thresholds"].update(auc=0.7), "gate.thresholds.auc", "Input should be",
                     id="unknown-metric"),
        pytest.param(lambda d: d["data"]["features"][7].pop("categories"), "data.features.7",
                     "needs a non-empty 'categories'", id="categorical-without-categories"),
    ],
)
def test_spec_error_names_file_field_and_problem(tmp_path, mutate, field, problem):
    data = _base()
    mutate(data)
    path = _write(tmp_path, "credit_default", data)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message and field in message and problem in message


def test_slice_on_unknown_column_is_refused(tmp_path):
    data = _base()
    data["slices"].append({"name": "city", "column": "city"})
    with pytest.raises(SpecError, match="slice 'city' uses column 'city', which is not a feature"):
        load_spec(_write(tmp_path, "credit_default", data))


def test_name_must_match_file(tmp_path):
    with pytest.raises(SpecError, match="must match the file name 'other'"):
        load_spec(_write(tmp_path, "other", _base()))


def test_yaml_syntax_error_is_reported_with_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken.yaml: not valid YAML"):
        load_spec(path)


def test_unknown_model_lists_known_ones():
    with pytest.raises(SpecError, match=r"no spec for model 'nope'.*known: credit_default"):
        get_spec("nope")
