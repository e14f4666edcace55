"""The README's "Your own model" walkthrough, step by step, through the real DAGs (``dag.test()``) on data sets that
ship inside scikit-learn (real measurements, not generated): the Wisconsin breast-cancer data (binary) and the
diabetes progression data (regression; its ``sex`` column is a code stored as a float, which the draft makes a
category).

Each model: ``lifecycle init`` drafts the spec from the first day's file, the user edits the few settings the README
names (the data sets are a few hundred rows), ``lifecycle check`` passes, ``lifecycle land`` lands four days, the
data gate DAG validates each, the train DAG trains, evaluates, gates and registers v1 as champion, the gateway
serves it (it bootstraps the registry's champion) and takes labels, and the monitor DAG measures the hour of that
traffic: no drift (the traffic is the training population), live performance measured from the labels.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TOKEN, Server, states

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAYS = [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(4)]
#: model -> (scikit-learn loader, the README's edits of the draft)
MODELS = {
    "cancer": ("load_breast_cancer", {"training": {"min_rows": 300, "epochs": 25}}),
    "diabetes": ("load_diabetes", {"training": {"min_rows": 300, "epochs": 40}}),
}
MONITORING = {"min_rows": 100, "min_labels": 50}


def _utc(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def write_days(name: str, folder: Path) -> list[Path]:
    """The data set as four daily CSV files (rows shuffled once, dealt round-robin), as a warehouse export."""
    import sklearn.datasets

    loader, _ = MODELS[name]
    frame = getattr(sklearn.datasets, loader)(as_frame=True, **({"scaled": False} if name == "diabetes" else {}))
    frame = frame.frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    files = []
    for i in range(len(DAYS)):
        files.append(folder / f"{name}_{DAYS[i]}.csv")
        frame.iloc[i::len(DAYS)].to_csv(files[-1], index=False)
    return files


def edit(path: Path, sections: dict) -> None:
    """What the README asks the user to change in the draft (nested keys replaced, the rest kept)."""
    data = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module", params=list(MODELS))
def walk(request, tmp_path_factory, airflow_db):
    """The walkthrough up to a trained, served champion; the tests below check each step's outcome."""
    from airflow.dag_processing.dagbag import DagBag

    from lifecycle.cli import main
    from lifecycle.paths import PROJECT_ROOT, StatePaths

    name = request.param
    root = tmp_path_factory.mktemp(f"walkthrough_{name}")
    specs = root / "specs"
    specs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(root / "state"))
        mp.setenv("LIFECYCLE_SPECS_DIR", str(specs))
        paths = StatePaths.current()
        files = write_days(name, root)
        spec_file = specs / f"{name}.yaml"
        assert main(["init", name, "--from", str(files[0]), "--target", "target", "--out", str(spec_file)]) == 0
        edit(spec_file, {**MODELS[name][1], "monitoring": MONITORING})
        assert main(["check", str(spec_file)]) == 0
        for day, file in zip(DAYS, files, strict=True):
            assert main(["land", name, day.isoformat(), str(file)]) == 0
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
        assert not bag.import_errors
        gate = bag.get_dag(f"{name}__data_gate")
        gate_runs = [gate.test(logical_date=_utc(day + dt.timedelta(days=1))) for day in DAYS]
        train = bag.get_dag(f"{name}__train").test(logical_date=_utc(DAYS[-1] + dt.timedelta(days=1), 2),
                                                  run_conf={"reason": "walkthrough: first model"})
        yield {"name": name, "paths": paths, "bag": bag, "gate_runs": gate_runs, "train": train, "files": files,
               "spec_file": spec_file}


def test_the_draft_reads_the_data_as_the_readme_says(walk):
    from lifecycle.spec import load_spec

    spec = load_spec(walk["spec_file"])
    kinds = {f.name: f.kind for f in spec.data.features}
    if walk["name"] == "cancer":
        assert spec.task == "binary" and len(kinds) == 30 and set(kinds.values()) == {"numeric"}
        assert "mean_radius" in kinds  # "mean radius" in the file: names become identifiers, landing renames them
    else:
        assert spec.task == "regression" and kinds["sex"] == "categorical"  # 1.0 / 2.0 in the file: a code
        assert spec.gate.thresholds == {"r2": 0.0}
    assert spec.data.id_column is None  # neither file has an id: rows split by a hash of their values


def test_every_landed_day_passes_the_data_gate(walk):
    for run in walk["gate_runs"]:
        assert str(run.state) == "success" and states(run)["publish"] == "success", states(run)


def test_the_first_training_registers_the_champion(walk):
    from lifecycle.registry.store import Registry

    run = walk["train"]
    assert str(run.state) == "success", states(run)
    assert states(run)["register"] == "success", states(run)
    champion = Registry(walk["paths"]).by_alias(walk["name"], "champion")
    assert champion is not None and str(champion.version) == "1"
    assert champion.tags["lifecycle.data_batches"].split(",") == [d.isoformat() for d in DAYS]


def test_the_gateway_serves_the_champion_and_the_monitor_measures_its_traffic(walk):
    import pandas as pd

    from lifecycle.serving.app import Gateway
    from lifecycle.spec import get_spec

    name, paths = walk["name"], walk["paths"]
    spec = get_spec(name)
    frame = pd.concat([pd.read_csv(f) for f in walk["files"]], ignore_index=True).head(200)
    renamed = frame.rename(columns={c: c.replace(" ", "_") for c in frame.columns})
    rows = json.loads(renamed[spec.data.feature_names].to_json(orient="records"))
    for row, feature in ((r, f) for r in rows for f in spec.data.features if f.kind == "categorical"):
        row[feature.name] = str(int(row[feature.name]))  # a category is sent as text: the code "2"
    labels = renamed["target"].tolist()
    now = dt.datetime.now(dt.UTC)
    if now.minute == 59 and now.second > 40:  # keep the traffic inside one hour: the one the monitor measures
        time.sleep(61 - now.second)
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    gateway = Gateway([spec], paths, token=TOKEN, sync_seconds=0.5)
    with Server(gateway) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the gateway bootstraps the registry's champion
            resp = client.post(f"/v1/models/{name}/predict", json=rows[0])
            if resp.status_code == 200:
                break
            time.sleep(0.25)
        assert resp.status_code == 200, resp.text
        answered = [resp.json()] + [client.post(f"/v1/models/{name}/predict", json=row).json() for row in rows[1:]]
        first = answered[0]["predictions"][0]
        if spec.task == "binary":
            assert set(first) >= {"probability", "label"} and 0.0 <= first["probability"] <= 1.0
            feedback = [{"request_id": a["request_id"], "label": int(y)} for a, y in zip(answered, labels, strict=True)]
        else:
            assert isinstance(first["value"], float)
            feedback = [{"request_id": a["request_id"], "label": float(y)} for a, y in zip(answered, labels, strict=True)]
        resp = client.post(f"/v1/models/{name}/feedback", json=feedback,
                           headers={"Authorization": f"Bearer {gateway.feedback_token}"})
        assert resp.status_code == 202 and resp.json()["matched"] == len(rows), resp.text
        time.sleep(0.5)  # the log writer's flush
    run = walk["bag"].get_dag(f"{name}__monitor").test(logical_date=hour + dt.timedelta(hours=1))
    s = states(run)
    assert s["measure"] == s["decide"] == "success", s
    assert s["trigger_retrain"] == "skipped", s  # the traffic is the training population: no drift
    [summary] = [json.loads(p.read_text()) for p in (paths.reports / name / "drift").glob("*/drift_summary.json")]
    assert summary["rows"] == len(rows) and summary["labels"] == len(rows)
    assert summary["drift_share"] < spec.monitoring.drift_share
    live = summary["performance"]
    metric = "roc_auc" if spec.task == "binary" else "r2"
    assert live[metric]["live"] is not None, live
