"""Your own model: ``lifecycle init`` drafts a spec from a sample, ``lifecycle check`` validates one, ``lifecycle
land`` lands a user's file (lifecycle.data.draft). Specs go to a temporary folder ($LIFECYCLE_SPECS_DIR), state to
the ``state`` fixture's folder: nothing is written into include/models."""
from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle.cli import main
from lifecycle.data import draft as dr
from lifecycle.data.draft import RANGE_MARGIN as M
from lifecycle.data.draft import DraftError, category_strings, draft_spec, infer_column, land_file, render
from lifecycle.spec import ModelSpec, get_spec, load_spec

ROWS = 200
DAY = dt.date(2026, 3, 2)


def sample(rows: int = ROWS, seed: int = 3) -> pd.DataFrame:
    """A batch with one column per rule: numbers (with missing), whole numbers, codes stored as numbers (with a
    gap, so CSV reads them as floats), text and boolean categories, a constant, free text, a row number, an
    all-missing column, a name with a space, and a 0/1 target."""
    rng = np.random.default_rng(seed)
    income = rng.uniform(1_000, 100_000, rows).round(2)
    income[::10] = np.nan  # exactly 10% missing
    grade = pd.array(rng.integers(1, 6, rows), dtype="Int64")
    grade[[5, 50]] = pd.NA
    region = rng.choice(["north", "south", "east", "west"], rows).astype(object)
    region[[1, 2, 3]] = None  # 1.5% missing
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in rng.permutation(rows)],
        "income": income,
        "balance": rng.normal(0, 500, rows).round(2),
        "age": rng.integers(18, 91, rows),
        "grade": grade,
        "region": region,
        "has_car": rng.random(rows) < 0.4,
        "country": "NL",
        "note": [f"called on day {i}, customer asked about fees" for i in range(rows)],
        "row": np.arange(rows),
        "empty": np.full(rows, np.nan),
        "loan amount": rng.uniform(5_000, 20_000, rows).round(2),
        "default": (rng.random(rows) < 0.3).astype("int64"),
    })


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private specs folder (``$LIFECYCLE_SPECS_DIR``)."""
    folder = tmp_path / "specs"
    folder.mkdir()
    monkeypatch.setenv("LIFECYCLE_SPECS_DIR", str(folder))
    return folder


@pytest.fixture(params=["csv", "parquet"])
def sample_file(request, tmp_path: Path) -> Path:
    path = tmp_path / f"sample.{request.param}"
    frame = sample()
    if request.param == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _features(draft) -> dict[str, dict]:
    return {f["name"]: f for f in draft.spec["data"]["features"]}


# --------------------------------------------------------------------------------------------------- drafting
def test_draft_follows_the_stated_rules(sample_file):
    frame = dr.read_table(sample_file)
    draft = draft_spec("acme", frame, "default", id_column="customer_id", source=sample_file)
    feats = _features(draft)
    assert {n: f["kind"] for n, f in feats.items()} == {
        "income": "numeric", "balance": "numeric", "age": "integer", "grade": "categorical",
        "region": "categorical", "has_car": "categorical", "loan_amount": "numeric"}
    # categories from the data, as text: codes stored as numbers (floats in the CSV: a gap) written 1, not 1.0
    assert feats["grade"]["categories"] == ["1", "2", "3", "4", "5"]
    assert feats["region"]["categories"] == ["east", "north", "south", "west"]
    assert feats["has_car"]["categories"] == ["False", "True"]
    # ranges: observed, widened by RANGE_MARGIN (50%) of the range, rounded outward, clamped at 0 for
    # non-negative columns; 3% of a batch may fall outside
    raw = sample()
    assert feats["income"]["max_out_of_range"] == 0.03 and "max_out_of_range" not in feats["region"]
    lo, hi = raw["income"].min(), raw["income"].max()
    assert lo - M * (hi - lo) < 0 and feats["income"]["min"] == 0  # clamped
    assert hi + M * (hi - lo) <= feats["income"]["max"] <= hi + M * (hi - lo) + (hi - lo) / 100
    lo, hi = raw["balance"].min(), raw["balance"].max()
    assert lo < 0 and lo - (M + 0.01) * (hi - lo) <= feats["balance"]["min"] <= lo - M * (hi - lo)  # not clamped
    lo, hi = raw["loan amount"].min(), raw["loan amount"].max()
    step = 10.0 ** (math.floor(math.log10(hi - lo)) - 2)
    assert feats["loan_amount"]["max"] == pytest.approx(math.ceil((hi + M * (hi - lo)) / step) * step)
    lo, hi = int(raw["age"].min()), int(raw["age"].max())
    assert (feats["age"]["min"], feats["age"]["max"]) == (max(0, math.floor(lo - M * (hi - lo))),
                                                          math.ceil(hi + M * (hi - lo)))
    assert isinstance(feats["age"]["min"], int)
    # missing share: 0 when never missing, else observed + 0.05 rounded up to hundredths
    assert feats["income"]["max_missing"] == 0.15  # 10% missing
    assert feats["region"]["max_missing"] == 0.07  # 1.5% missing
    assert feats["grade"]["max_missing"] == 0.06  # 1% missing
    assert feats["age"]["max_missing"] == 0.0
    # a name with a space becomes an identifier, the file's name kept in the description
    assert feats["loan_amount"]["description"] == "column 'loan amount' in the file"
    # left out, each with its reason
    why = {c.column: c.note for c in draft.left_out}
    assert set(why) == {"country", "note", "row", "empty"}
    assert why["country"].startswith("constant")
    assert why["note"].startswith("text unique per row")
    assert "row number" in why["row"]
    assert why["empty"] == "all missing"
    assert draft.task == "binary" and draft.spec["task"] == "binary"
    assert draft.spec["data"]["id_column"] == "customer_id" and draft.spec["data"]["target"] == "default"
    assert draft.spec["slices"] == [{"name": n, "column": n} for n in ("grade", "region", "has_car")]
    assert {"expectation": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "default", "value_set": [0, 1]}} in draft.spec["expectations"]


def test_csv_and_parquet_give_the_same_schema(tmp_path):
    frame = sample()
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet", index=False)
    drafts = [draft_spec("acme", dr.read_table(tmp_path / f"s.{ext}"), "default", id_column="customer_id")
              for ext in ("csv", "parquet")]
    assert drafts[0].spec["data"] == drafts[1].spec["data"]


def test_the_draft_loads_round_trips_and_states_its_rules(sample_file, specs):
    draft = draft_spec("acme", dr.read_table(sample_file), "default", id_column="customer_id", source=sample_file)
    text = render(draft)
    assert yaml.safe_load(text) == draft.spec  # the text says exactly what the draft holds
    path = dr.write_draft(draft, specs / "acme.yaml")
    spec = load_spec(path)
    assert spec == ModelSpec.model_validate(draft.spec)
    assert ModelSpec.model_validate(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))) == spec
    assert get_spec("acme").data.feature("grade").categories == ["1", "2", "3", "4", "5"]
    # the stated rules: in the module docstring and in the YAML comment, with the numbers the code uses
    for fragment in (f"at most {dr.CATEGORY_MAX_DISTINCT} distinct", f"{dr.CATEGORY_MAX_SHARE:.0%}",
                     f"{dr.RANGE_MARGIN:.0%} of the range", f"{dr.MISSING_MARGIN}", "2 distinct target values"):
        assert fragment in " ".join(dr.__doc__.split()), fragment
        assert fragment in " ".join(line.lstrip("# ") for line in text.splitlines()), fragment
    comments = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    for section in ("task", "data", "expectations", "training", "gate", "slices", "serving", "canary",
                    "monitoring"):
        before = text.split(f"\n{section}:")[0].rstrip().splitlines()[-1]
        assert before.startswith("#"), f"no comment before {section}"
    assert any("note: text unique per row" in c for c in comments)  # the left-out columns, with why
    assert max(len(line) for line in text.splitlines() if line.lstrip().startswith("#")) <= 120


@pytest.mark.parametrize(
    ("values", "kind", "task"),
    [
        pytest.param([0, 1] * 50, "binary", "binary", id="two-values"),
        pytest.param(["yes", "no"] * 50, "binary", "binary", id="two-strings"),
        pytest.param([0, 1, 2, 3] * 25, "multiclass", "multiclass", id="int-classes"),
        pytest.param(list(np.linspace(0, 1, 100)), "regression", "regression", id="floats"),
    ],
)
def test_task_is_guessed_from_the_target(values, kind, task):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(100)], "x": np.arange(100) * 1.5, "y": values})
    draft = draft_spec("acme", frame, "y", id_column="id")
    assert draft.task == kind and draft.spec["task"] == task
    ModelSpec.model_validate(yaml.safe_load(render(draft)))
    # every stage follows the task; the one warning left: a binary target that is not 0/1 must be mapped
    assert [w for w in draft.warnings if "0 and 1" not in w] == []
    assert draft_spec("acme", frame, "y", id_column="id", task="regression").spec["task"] == "regression"


def test_id_column_is_picked_only_when_one_column_looks_like_an_id():
    frame = sample().drop(columns=["note"])
    draft = draft_spec("acme", frame, "default")
    assert draft.id_column == "customer_id" and "picked" in draft.id_note
    several = draft_spec("acme", sample(), "default")  # two candidates: no id, rows split by their values
    assert several.id_column is None and "found: 'customer_id', 'note'" in several.id_note
    none = draft_spec("acme", frame.drop(columns=["customer_id"]), "default")
    assert none.id_column is None and "found: none" in none.id_note
    loaded = ModelSpec.model_validate(yaml.safe_load(render(none)))
    assert loaded.data.id_column is None


def test_draft_errors_name_the_option_and_the_column(tmp_path):
    frame = sample()
    with pytest.raises(DraftError, match=r"s.csv: --target 'label': no such column \(columns: 'customer_id'"):
        draft_spec("acme", frame, "label", id_column="customer_id", source=tmp_path / "s.csv")
    with pytest.raises(DraftError, match=r"--id and --target name the same column"):
        draft_spec("acme", frame, "default", id_column="default")
    with pytest.raises(DraftError, match=r"model name 'Acme-1'"):
        draft_spec("Acme-1", frame, "default", id_column="customer_id")
    with pytest.raises(DraftError, match=r"columns 'a b' and 'a_b' both become 'a_b'"):
        draft_spec("acme", frame.assign(**{"a b": 1, "a_b": 2}), "default", id_column="customer_id")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        pytest.param([f"{i}.5" for i in range(95)] + ["n/a"] * 5, "are numbers but not all", id="numbers-with-na"),
        pytest.param([f"word{i % 70}" for i in range(100)], "free text or an id", id="free-text"),
        pytest.param(list(range(1000, 1100)), "row number", id="row-number"),
        pytest.param(list(np.random.default_rng(1).permutation(100) * 7 + 3), None, id="unique-ints-kept"),
        pytest.param(pd.date_range("2026-01-01", periods=100), "not a feature kind", id="dates"),
        pytest.param([1.0] * 99 + [np.inf], "infinite", id="infinite"),
        pytest.param([np.nan] * 95 + [1.0, 2.0, 3.0, 4.0, 5.0], "95% missing", id="mostly-missing"),
    ],
)
def test_columns_left_out_say_why(values, reason):
    col = infer_column("x", pd.Series(values))
    if reason is None:
        assert col.feature is not None and col.feature["kind"] == "integer"
    else:
        assert col.feature is None and reason in col.note


def test_ints_unique_per_row_named_like_an_id_are_left_out():
    values = pd.Series(np.random.default_rng(1).permutation(100) * 7 + 3)
    for name in ("id", "account_id", "accountId", "ACCOUNT_ID"):
        assert infer_column(name, values).feature is None, name
    assert infer_column("paid", values).feature is not None


def test_category_strings_are_one_form_for_every_dtype():
    got = category_strings(pd.Series([1, 2.0, True, "a", None, 2.5, np.int64(7)], dtype=object))
    assert got.tolist() == ["1", "2", "True", "a", pd.NA, "2.5", "7"]
    assert category_strings(pd.Series([1.0, np.nan, 3.0])).tolist() == ["1", pd.NA, "3"]


# ------------------------------------------------------------------------------------------------------- CLI
def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_init_writes_the_spec_and_refuses_to_overwrite(specs, tmp_path, capsys):
    source = tmp_path / "sample.csv"
    sample().to_csv(source, index=False)
    code, out = _run(capsys, "init", "acme", "--from", str(source), "--target", "default", "--id", "customer_id")
    assert code == 0, out
    assert f"drafted {specs / 'acme.yaml'}: 7 features" in out and "left out note: text unique per row" in out
    assert load_spec(specs / "acme.yaml").task == "binary"
    before = (specs / "acme.yaml").read_text()
    code, out = _run(capsys, "init", "acme", "--from", str(source), "--target", "default", "--id", "customer_id",
                     "--task", "regression")
    assert code == 1 and "acme.yaml exists: pass --force" in out
    assert (specs / "acme.yaml").read_text() == before
    code, out = _run(capsys, "init", "acme", "--from", str(source), "--target", "default", "--id", "customer_id",
                     "--task", "regression", "--force")
    assert code == 0 and load_spec(specs / "acme.yaml").task == "regression"
    # a 0/1 target is no multiclass target (a multiclass model needs at least 3 classes)
    code, out = _run(capsys, "init", "acme", "--from", str(source), "--target", "default", "--id", "customer_id",
                     "--task", "multiclass", "--force")
    assert code == 1 and "a multiclass model needs at least 3" in out
    assert load_spec(specs / "acme.yaml").task == "regression"
    code, out = _run(capsys, "init", "acme", "--from", str(source), "--target", "default", "--id", "customer_id",
                     "--out", str(tmp_path / "other.yaml"))
    assert code == 1 and "file name must be its model name: acme.yaml" in out
    code, out = _run(capsys, "init", "acme", "--from", str(tmp_path / "nope.csv"), "--target", "default")
    assert code == 1 and "nope.csv: no such file" in out
    assert sorted(p.name for p in specs.iterdir()) == ["acme.yaml"]


@pytest.fixture
def acme(specs, tmp_path) -> Path:
    """A drafted spec acme.yaml in the private specs folder."""
    draft = draft_spec("acme", sample(), "default", id_column="customer_id", source=tmp_path / "sample.csv")
    return dr.write_draft(draft, specs / "acme.yaml")


def _break(path: Path, edit) -> Path:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_passes_a_valid_spec(acme, capsys):
    code, out = _run(capsys, "check", str(acme))
    assert code == 0
    assert out.strip() == (f"OK: {acme}: acme, task binary, target default, id customer_id, 7 features "
                           "(3 numeric, 1 integer, 3 categorical), 3 slices, gate {'roc_auc': 0.7}")
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        pytest.param(lambda d: d["data"]["features"][0].update(kind="float"),
                     "data.features.0.kind: Input should be 'numeric', 'integer' or 'categorical'", id="bad-kind"),
        pytest.param(lambda d: d["data"]["features"][0].update(min=10.0, max=1.0),
                     "data.features.0.max: Value error, feature 'income': min 10.0 > max 1.0", id="min-over-max"),
        pytest.param(lambda d: d["training"].update(epocs=5),
                     "training.epocs: unknown field (check the spelling; extra fields are refused)", id="unknown-key"),
        pytest.param(lambda d: d.update(task="ranking"),
                     "task: Input should be 'binary', 'multiclass' or 'regression'", id="bad-task"),
        pytest.param(lambda d: d["slices"].append({"name": "city", "column": "city"}),
                     "slices: Value error, slice 'city' uses column 'city', which is not a feature", id="bad-slice"),
        pytest.param(lambda d: d["data"]["features"][3].pop("categories"),
                     "data.features.3.categories: Value error, categorical feature 'grade' needs a non-empty",
                     id="no-categories"),
    ],
)
def test_check_names_file_field_and_problem(acme, capsys, edit, line):
    _break(acme, edit)
    code, out = _run(capsys, "check", str(acme))
    assert code == 1
    assert out.splitlines()[0].startswith(f"{acme}: {line}"), out


def test_check_reports_every_problem_and_unreadable_files(acme, tmp_path, capsys):
    def two(d):
        d["data"]["features"][0].update(kind="float")
        d["training"].update(epocs=5)

    _break(acme, two)
    code, out = _run(capsys, "check", str(acme))
    assert code == 1 and [line.split(": ")[1] for line in out.splitlines()] == ["data.features.0.kind",
                                                                                 "training.epocs"]
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    code, out = _run(capsys, "check", str(tmp_path / "bad.yaml"))
    assert code == 1 and out.startswith(f"{tmp_path / 'bad.yaml'}: not valid YAML")
    code, out = _run(capsys, "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml: cannot read spec" in out


# ---------------------------------------------------------------------------------------------------- landing
def _landing_files(state, model: str = "acme") -> list[str]:
    folder = state.landing(model)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_land_copies_a_file_into_the_landing_zone(acme, state, tmp_path, capsys, ext):
    """In the landing contract's shape (codes and booleans as the draft's category text): the gate passes it."""
    from lifecycle.data.validation import gate_batch

    frame = sample()
    source = tmp_path / f"batch.{ext}"
    frame.to_csv(source, index=False) if ext == "csv" else frame.to_parquet(source, index=False)
    code, out = _run(capsys, "land", "acme", DAY.isoformat(), str(source))
    assert code == 0, out
    target = state.landing("acme") / f"{DAY.isoformat()}.parquet"
    assert out.strip() == f"landed {source} as {target}"
    assert _landing_files(state) == [target.name]  # no temp file left beside it
    landed = pd.read_parquet(target)
    spec = get_spec("acme")
    assert list(landed.columns) == [spec.data.id_column, *spec.data.feature_names, spec.data.target]
    assert landed["grade"].dropna().tolist() == [str(v) for v in frame["grade"].dropna()]  # codes as text
    assert landed["has_car"].tolist() == [str(v) for v in frame["has_car"]]
    assert landed["loan_amount"].tolist() == frame["loan amount"].tolist()
    assert landed["customer_id"].tolist() == frame["customer_id"].tolist()
    outcome = gate_batch(spec, DAY, paths=state)
    assert outcome.passed and outcome.rows == ROWS, outcome.reason


def test_land_is_atomic(acme, state, tmp_path, monkeypatch):
    """Written to a temp file in the landing folder, fsynced, then renamed: a failed rename leaves the earlier
    batch whole and no temp file."""
    import lifecycle.fileio as fileio

    spec = get_spec("acme")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    sample(seed=1).to_csv(first, index=False)
    sample(seed=2).to_csv(second, index=False)
    target = land_file(spec, DAY, first, state)
    before = target.read_bytes()
    renames, synced = [], []
    real_replace, real_fsync = os.replace, os.fsync

    def fsync(fd):
        synced.append(fd)
        return real_fsync(fd)

    def failing_replace(src, dst):
        renames.append((Path(src), Path(dst), Path(src).exists(), len(synced)))
        raise OSError("disk gone")

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        land_file(spec, DAY, second, state)
    [(src, dst, existed, fsyncs)] = renames
    assert dst == target and src.parent == target.parent and src.name.endswith(".tmp") and existed and fsyncs
    assert target.read_bytes() == before and _landing_files(state) == [target.name]
    monkeypatch.setattr(fileio.os, "replace", real_replace)
    land_file(spec, DAY, second, state)  # landing a day again replaces its batch
    assert pd.read_parquet(target)["customer_id"].tolist() == sample(seed=2)["customer_id"].tolist()


def test_land_refuses_bad_files_and_writes_nothing(acme, state, tmp_path, capsys):
    unparsable = tmp_path / "broken.csv"
    unparsable.write_text("customer_id,income\nC1,2\nC2,3,4,5\n")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    lacking = tmp_path / "lacking.parquet"
    sample().drop(columns=["age", "default"]).to_parquet(lacking, index=False)
    wrong = tmp_path / "batch.txt"
    wrong.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(sample().columns) + "\n")
    cases = {
        tmp_path / "nope.csv": "nope.csv: no such file",
        unparsable: "broken.csv: cannot be read as CSV: ParserError",
        garbage: "garbage.parquet: cannot be read as Parquet",
        lacking: "lacking.parquet: lacks the column(s) ['age', 'default'] that spec 'acme' needs",
        wrong: "batch.txt: not a Parquet",
        empty: "empty.csv: has no rows",
    }
    for path, message in cases.items():
        code, out = _run(capsys, "land", "acme", DAY.isoformat(), str(path))
        assert code == 1 and message in out, (path, out)
        assert _landing_files(state) == [], path


def test_land_synthetic_is_the_generator(state, capsys):
    code, out = _run(capsys, "land-synthetic", "credit_default", DAY.isoformat(), "--scenario", "stable")
    assert code == 0 and out.strip() == str(state.landing("credit_default") / f"{DAY.isoformat()}.parquet")
    assert len(pd.read_parquet(out.strip())) == get_spec("credit_default").data.generator.rows_per_day


# ------------------------------------------------------------------------------------------------ end to end
def test_breast_cancer_drafted_landed_and_gated(specs, state, tmp_path, capsys):
    """Real data shipped inside scikit-learn: draft a spec, land two days (CSV and Parquet), both pass the gate."""
    from sklearn.datasets import load_breast_cancer

    from lifecycle.data.validation import gate_batch

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "sample_id", [f"S{i:04d}" for i in range(len(frame))])  # a row id: every spec needs one
    frame = frame.sample(frac=1, random_state=0).reset_index(drop=True)
    frame.to_parquet(tmp_path / "sample.parquet", index=False)
    code, out = _run(capsys, "init", "breast_cancer", "--from", str(tmp_path / "sample.parquet"), "--target",
                     "target")
    assert code == 0, out
    spec = get_spec("breast_cancer")
    assert spec.task == "binary" and spec.data.id_column == "sample_id" and len(spec.data.features) == 30
    assert spec.data.feature("mean_radius").kind == "numeric"
    assert _run(capsys, "check", str(specs / "breast_cancer.yaml"))[0] == 0

    days = [DAY, DAY + dt.timedelta(days=1)]
    half = len(frame) // 2
    frame.iloc[:half].to_csv(tmp_path / "day1.csv", index=False)
    frame.iloc[half:].to_parquet(tmp_path / "day2.parquet", index=False)
    for day, name in zip(days, ("day1.csv", "day2.parquet"), strict=True):
        code, out = _run(capsys, "land", "breast_cancer", day.isoformat(), str(tmp_path / name))
        assert code == 0, out
    for day in days:
        outcome = gate_batch(spec, day, paths=state)
        assert outcome.passed, outcome.reason
    assert [o.rows for o in (gate_batch(spec, d, paths=state) for d in days)] == [half, len(frame) - half]


def test_batches_without_an_id_column_are_gated_and_split_by_their_values(state, tmp_path):
    """A spec with ``id_column: null``: the data gate needs no id, and training's split hashes each row's values:
    the same on every run, whatever the file's column order, identical rows on the same side."""
    from lifecycle.data.validation import expectation_specs, gate_batch
    from lifecycle.training.flow import row_keys, split_rows

    frame = sample().drop(columns=["customer_id", "note"])
    draft = draft_spec("acme", frame, "default")
    assert draft.id_column is None
    spec = ModelSpec.model_validate(yaml.safe_load(render(draft)))
    assert all(kw.get("column") is not None for _, kw in expectation_specs(spec))
    source = tmp_path / "batch.csv"
    frame.to_csv(source, index=False)
    landed = pd.read_parquet(land_file(spec, DAY, source, state))  # before the gate moves it on
    outcome = gate_batch(spec, DAY, paths=state)
    assert outcome.passed and outcome.rows == len(frame), outcome.reason
    split = split_rows(row_keys(spec, landed), 42, 0.2, 0.15)
    assert set(split.tolist()) == {0, 1, 2}
    assert (split == split_rows(row_keys(spec, landed[landed.columns[::-1]]), 42, 0.2, 0.15)).all()
    doubled = pd.concat([landed, landed.iloc[:50]], ignore_index=True)
    again = split_rows(row_keys(spec, doubled), 42, 0.2, 0.15)
    assert (again[len(landed):] == again[:50]).all() and (again[:len(landed)] == split).all()
