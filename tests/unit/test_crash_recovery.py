"""A crash at any step boundary loses nothing: the data gate, archive + finalize and restore, each crashed at every
boundary (``lifecycle.fileio.crash_point``) and run again, end as a crash-free run does, with each ledger row once.

:data:`FAULTS` is the fault table (boundary -> what the retry does); the tests are parametrised from it, and
``test_every_fault_boundary_exists_in_the_code`` checks that each boundary is reached by a crash-free run, so the
table cannot name a boundary the code no longer has. A crash is :class:`SimulatedCrash`, a ``BaseException``: no
``except Exception`` in the code under test can swallow it, as none could swallow a kill.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from lifecycle import fileio
from lifecycle.data.synthetic import Scenario, land_batch
from lifecycle.data.validation import gate_batch, is_validated, validated_days
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.retirement.archive import MANIFEST, ArchiveResult, LocalStore, write_archive

#: (boundary, what a retry after a crash there does). The README's "fault -> outcome" table is generated from it.
FAULTS: list[tuple[str, str]] = [
    ("gate.evidence_written",
     "GX result and report written, batch still in landing/: the retry validates it again, moves it, writes "
     "gate.json and records the one ledger row"),
    ("gate.batch_moved",
     "batch moved to validated/ (or quarantine/) without gate.json, invisible to every reader: the retry finds it "
     "there (it used to raise BatchNotFoundError), decides again, writes gate.json and records the one ledger row"),
    ("gate.json_write",
     "crash inside the atomic write of gate.json: no gate.json at all, never an empty or partial one; the retry "
     "as after gate.batch_moved"),
    ("gate.decision_written",
     "gate.json written, no ledger row: the retry returns the recorded outcome and records the missing row once"),
    ("archive.object_written",
     "some objects uploaded, no manifest (nothing claims the archive): the retry uploads only the missing objects, "
     "reads every one back, writes the manifest"),
    ("archive.objects_verified",
     "every object uploaded and read back, no manifest: the retry uploads nothing, writes the manifest"),
    ("archive.manifest_written",
     "manifest written, result not returned: the retry finds the manifest, sees it lists exactly the staged files "
     "for the same model/version/run, verifies it and returns the same manifest sha256 without uploading"),
    ("finalize.planned",
     "plan (aliases, local folders) recorded on the version, nothing changed yet: the retry carries it out"),
    ("finalize.aliases_removed",
     "aliases removed, version not yet tagged retired: the retry tags it, deletes, records; the ledger still names "
     "the removed aliases (from the plan)"),
    ("finalize.tagged",
     "tagged retired with the archive URI and sha256, local copies still there: the retry deletes them and records"),
    ("finalize.local_deleted",
     "local copies deleted, no ledger rows: the retry records 'archived' and 'retired' once each, naming the "
     "folders the first attempt deleted"),
    ("finalize.archived_recorded",
     "'archived' recorded, 'retired' not: the retry records 'retired' once ('archived' is not repeated)"),
    ("restore.verified",
     "archive checked and verified, nothing registered: the retry checks, verifies and restores"),
    ("restore.model_logged",
     "MLflow run with the re-logged model finished, no version: the retry reuses that run (no second run) and "
     "registers it"),
    ("restore.registered",
     "version registered, no ledger row: the retry finds the version of its DAG run and records 'restored' once"),
]
BOUNDARIES = [name for name, _ in FAULTS]


class SimulatedCrash(BaseException):
    """The process died at a crash point (a BaseException, so no ``except Exception`` handler runs)."""


def arm(monkeypatch: pytest.MonkeyPatch, boundary: str | None = None) -> list[str]:
    """Install a crash hook: every crash point reached is appended to the returned list, and the first time
    ``boundary`` is reached it raises :class:`SimulatedCrash` (once: the retry passes through)."""
    seen: list[str] = []

    def hook(name: str) -> None:
        seen.append(name)
        if name == boundary and seen.count(name) == 1:
            raise SimulatedCrash(name)

    monkeypatch.setattr(fileio, "crash_hook", hook)
    return seen


def faults(prefix: str) -> list[Any]:
    return [pytest.param(name, id=name) for name in BOUNDARIES if name.startswith(prefix)]


def ledger_rows(paths: StatePaths) -> list[tuple]:
    """(key, model, version, event, reason, details) of every ledger row, with the state root written <state>."""
    Ledger(paths.ledger_db)  # the schema, even before anything was recorded
    with contextlib.closing(sqlite3.connect(paths.ledger_db)) as conn:
        rows = conn.execute("SELECT key, model, version, event, reason, details FROM events ORDER BY id").fetchall()
    return [tuple(str(v).replace(str(paths.root), "<state>") if v is not None else None for v in row) for row in rows]


def test_crash_points_cost_nothing_in_production():
    assert fileio.crash_hook is None
    fileio.crash_point("gate.batch_moved")  # no hook: nothing happens


def test_every_fault_boundary_exists_in_the_code():
    """Each boundary in FAULTS is a crash point the code reaches (the crash-free runs below record them)."""
    source = "\n".join(p.read_text() for p in (Path(fileio.__file__).parent).rglob("*.py"))
    for name in BOUNDARIES:
        if name != "gate.json_write":  # a crash inside atomic_write, simulated at its rename
            assert f'crash_point("{name}")' in source, name


# ------------------------------------------------------------------------------------------- durability (fsync)


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace, real_dir = fileio.os.fsync, fileio.os.replace, fileio.fsync_dir
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    monkeypatch.setattr(fileio, "fsync_dir", lambda d: (calls.append(f"fsync_dir {Path(d).name}"), real_dir(d))[1])
    fileio.atomic_write(tmp_path / "out" / "manifest.json", "{}")
    assert calls[:3] == ["fsync", "rename", "fsync_dir out"]


def test_checkpoints_and_local_manifests_go_through_atomic_write(tmp_path, monkeypatch):
    import numpy as np

    from lifecycle.retirement import archive as archive_mod
    from lifecycle.training import trainer

    written: list[str] = []
    real = fileio.atomic_write

    def spy(path, data, **kw):
        written.append(Path(path).name)
        return real(path, data, **kw)

    monkeypatch.setattr(trainer, "atomic_write", spy)
    monkeypatch.setattr(archive_mod, "atomic_write", spy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    hp = trainer.Hyper(epochs=1, batch_size=32, learning_rate=1e-3, weight_decay=0.0, hidden_units=[4],
                       dropout=0.0, patience=2, seed=1, device="cpu")
    trainer.train(hp, x[:80], y[:80], x[80:], y[80:], checkpoint_dir=tmp_path / "ckpt")
    assert written == ["epoch-0001.pt"]
    write_archive(LocalStore(tmp_path / "archive"), "m", "1", staged_folder(tmp_path / "staged"))
    assert written[-1] == MANIFEST


def test_durable_move_renames_and_survives_a_rerun(tmp_path):
    src, dst = tmp_path / "landing" / "a.parquet", tmp_path / "validated" / "a.parquet"
    src.parent.mkdir()
    src.write_bytes(b"PAR1")
    fileio.durable_move(src, dst)
    assert dst.read_bytes() == b"PAR1" and not src.exists()


# ------------------------------------------------------------------------------------------------ the data gate

DAY = dt.date(2026, 1, 3)
SCENARIOS = {"validated": Scenario(), "quarantined": Scenario("broken", broken="nulls")}


def gate_state(spec, root: Path, scenario: str) -> StatePaths:
    paths = StatePaths(root)
    land_batch(spec, DAY, SCENARIOS[scenario], paths)
    return paths


def gate_snapshot(paths: StatePaths) -> dict[str, Any]:
    """Every file under the state (the ledger aside): gate records and batches by content, evidence by presence
    (GX results carry timestamps); plus the ledger rows."""
    files: dict[str, Any] = {}
    for path in sorted(paths.root.rglob("*")):
        rel = path.relative_to(paths.root).as_posix()
        if not path.is_file() or rel.startswith("lifecycle.db"):
            continue
        if path.name.endswith("gate.json"):
            files[rel] = json.loads(path.read_text().replace(str(paths.root), "<state>"))
        elif path.suffix == ".parquet":
            files[rel] = path.read_bytes()
        else:
            files[rel] = "present"
    return {"files": files, "ledger": ledger_rows(paths)}


@pytest.fixture(scope="module")
def gate_baseline(spec, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The crash-free outcome of each scenario (and the crash points it passes)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for scenario in SCENARIOS:
            paths = gate_state(spec, tmp_path_factory.mktemp(f"gate-{scenario}"), scenario)
            seen = arm(mp)
            gate_batch(spec, DAY, paths=paths)
            out[scenario] = {**gate_snapshot(paths), "seen": list(seen)}
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("boundary", faults("gate."))
def test_the_data_gate_recovers_from_a_crash_at(boundary, scenario, spec, tmp_path, monkeypatch, gate_baseline):
    paths = gate_state(spec, tmp_path / "state", scenario)
    if boundary == "gate.json_write":  # the process dies after the temp file is written, before the rename
        real_replace = fileio.os.replace

        def replace(src, dst):
            if str(dst).endswith("gate.json"):
                raise SimulatedCrash(boundary)
            return real_replace(src, dst)

        monkeypatch.setattr(fileio.os, "replace", replace)
    else:
        assert boundary in gate_baseline[scenario]["seen"]
        arm(monkeypatch, boundary)
    with pytest.raises(SimulatedCrash):
        gate_batch(spec, DAY, paths=paths)
    monkeypatch.undo()

    crashed = gate_snapshot(paths)
    for rel, content in crashed["files"].items():
        if rel.endswith("gate.json"):  # never half written: a record is the final one or absent
            assert content == gate_baseline[scenario]["files"][rel]
    assert not any(rel.endswith(".tmp") for rel in crashed["files"])
    if boundary != "gate.decision_written":  # before its record, no reader sees the batch as validated
        assert validated_days(spec, paths) == []
        assert crashed["ledger"] == []

    outcome = gate_batch(spec, DAY, paths=paths)  # the retry
    final = gate_snapshot(paths)
    assert final["files"] == gate_baseline[scenario]["files"]
    assert final["ledger"] == gate_baseline[scenario]["ledger"] and len(final["ledger"]) == 1
    assert outcome.passed is (scenario == "validated")
    assert is_validated(Path(outcome.batch_path)) is outcome.passed
    gate_batch(spec, DAY, paths=paths)  # and once more: still one row
    assert ledger_rows(paths) == gate_baseline[scenario]["ledger"]


# --------------------------------------------------------------------------------------------- archive (local)


def staged_folder(folder: Path) -> Path:
    for rel, body in {"model/weights.pt": b"w" * 1000, "model/MLmodel": b"flavor", "MODEL_CARD.md": b"# card\n",
                      "history/ledger.json": b"[]"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    return folder


META = {"registered_model": "credit_default", "source_run_id": "run-2", "reason": "test"}


def archive_snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("boundary", faults("archive."))
def test_the_archive_recovers_from_a_crash_at(boundary, tmp_path, monkeypatch):
    staged = staged_folder(tmp_path / "staged")
    seen = arm(monkeypatch)
    expected = write_archive(LocalStore(tmp_path / "free"), "credit_default", "2", staged, meta=META)
    assert boundary in seen
    store = LocalStore(tmp_path / "crash")
    arm(monkeypatch, boundary)
    with pytest.raises(SimulatedCrash):
        write_archive(store, "credit_default", "2", staged, meta=META)
    has_manifest = (tmp_path / "crash/credit_default/v2" / MANIFEST).exists()
    assert has_manifest is (boundary == "archive.manifest_written")  # no manifest claims a partial archive
    present = sum(1 for rel in archive_snapshot(tmp_path / "crash") if not rel.endswith(MANIFEST))

    again = write_archive(store, "credit_default", "2", staged, meta=META)  # the retry
    assert archive_snapshot(tmp_path / "crash") == archive_snapshot(tmp_path / "free")
    assert again.manifest_sha256 == expected.manifest_sha256 and again.files == expected.files
    assert again.uploaded == (0 if has_manifest else expected.files - present)  # nothing uploaded twice
    # a later DAG run (another reason, another dag_run_id) adopts the same archive: not part of its identity
    later = write_archive(store, "credit_default", "2", staged, meta={**META, "reason": "again", "dag_run_id": "x"})
    assert later.manifest_sha256 == expected.manifest_sha256 and later.uploaded == 0


# ------------------------------------------------------------------------------ registry-backed (MLflow) parts

_TEMPLATE: dict[str, Path] = {}


def mlflow_state(root: Path) -> StatePaths:
    """A fresh state folder whose MLflow DB is a copy of one migrated once per session (migrating costs ~10 s)."""
    from lifecycle.registry.store import Registry

    if "db" not in _TEMPLATE:
        template = StatePaths(Path(tempfile.mkdtemp(prefix="mlflow-template-")))
        Registry(template)
        _TEMPLATE["db"] = template.mlflow_db
    paths = StatePaths(root)
    paths.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE["db"], paths.mlflow_db)
    return paths


def register_dummy(spec, paths: StatePaths, n: int = 2) -> list[Any]:
    """``n`` versions of the spec's model, each from an empty MLflow run (enough for everything but a restore's
    re-logging, which reads the archive, not the registry's copy)."""
    import mlflow

    from lifecycle.registry.store import Registry, ensure_experiment

    registry = Registry(paths)
    exp = ensure_experiment(spec.model_name, paths)
    out = []
    for i in range(n):
        with mlflow.start_run(experiment_id=exp) as run:
            pass
        out.append(registry.register(spec.model_name, f"runs:/{run.info.run_id}/model", run.info.run_id,
                                     {"lifecycle.dag_run_id": f"train_{i + 1}", "lifecycle.status": "challenger"}))
    return out


def normalizer(spec, paths: StatePaths) -> Any:
    """A function writing what differs between two equal states as placeholders: the state root, the MLflow run
    ids of the versions and the archive manifests' sha256 (the manifest names the source run)."""
    from lifecycle.registry.store import Registry

    subs = [(str(paths.root), "<state>")]
    for mv in Registry(paths).versions(spec.model_name):
        subs.append((mv.run_id, f"<run of v{mv.version}>"))
        for sha in {mv.tags.get("lifecycle.archive_sha256"), mv.tags.get("lifecycle.restored_manifest_sha256")}:
            if sha:
                subs += [(sha, "<manifest>"), (sha[:16], "<manifest>")]

    def norm(value: Any) -> Any:
        text = json.dumps(value, sort_keys=True)
        for old, new in subs:
            text = text.replace(old, new)
        return json.loads(text)

    return norm


def registry_snapshot(spec, paths: StatePaths) -> dict[str, Any]:
    """Versions (their tags), aliases, the MLflow runs (restore runs by name) with their status; and the ledger,
    all normalised (:func:`normalizer`)."""
    import mlflow

    from lifecycle.registry.store import Registry

    registry = Registry(paths)
    versions = {str(mv.version): {k: v for k, v in mv.tags.items() if k != "lifecycle.code_version"}
                for mv in registry.versions(spec.model_name)}
    exp = mlflow.MlflowClient().get_experiment_by_name(spec.model_name)
    runs = sorted((r.info.run_name if (r.info.run_name or "").startswith("restore") else "<training run>",
                   r.info.status) for r in mlflow.MlflowClient().search_runs([exp.experiment_id])) if exp else []
    return normalizer(spec, paths)({"versions": versions, "aliases": registry.aliases(spec.model_name),
                                    "runs": runs, "ledger": ledger_rows(paths)})


def finalize_state(spec, root: Path) -> tuple[StatePaths, ArchiveResult]:
    """v1 champion, v2 holding ``previous`` with a checkpoint folder and a staging folder: ready to finalize."""
    from lifecycle.registry.store import Registry

    paths = mlflow_state(root)
    _, v2 = register_dummy(spec, paths)
    registry = Registry(paths)
    registry.set_alias(spec.model_name, "champion", "1")
    registry.set_alias(spec.model_name, "previous", "2")
    for folder in (paths.checkpoints / spec.name / v2.run_id, paths.root / "archive_staging" / spec.name / "v2"):
        fileio.atomic_write(folder / "epoch-0001.pt", b"ckpt")
    uri = str(paths.archive / spec.name / "v2")
    return paths, ArchiveResult(uri, "ab" * 32, 4, 1234, 4)


def finalize_snapshot(spec, paths: StatePaths) -> dict[str, Any]:
    return {**registry_snapshot(spec, paths),
            "local": sorted(p.relative_to(paths.root).as_posix() for p in
                            (*paths.checkpoints.rglob("*"), *(paths.root / "archive_staging").rglob("*"))
                            if p.is_file())}


@pytest.fixture(scope="module")
def finalize_baseline(spec, tmp_path_factory) -> dict[str, Any]:
    from lifecycle.retirement.retire import finalize

    paths, result = finalize_state(spec, tmp_path_factory.mktemp("finalize-free"))
    with pytest.MonkeyPatch.context() as mp:
        seen = arm(mp)
        done = finalize(spec, "2", result, "test: superseded", "retire_run", paths)
    return {**finalize_snapshot(spec, paths), "seen": seen, "done": normalizer(spec, paths)(done)}


@pytest.mark.parametrize("boundary", faults("finalize."))
def test_finalize_recovers_from_a_crash_at(boundary, spec, tmp_path, monkeypatch, finalize_baseline):
    from lifecycle.retirement.retire import finalize

    assert boundary in finalize_baseline["seen"]
    paths, result = finalize_state(spec, tmp_path / "state")
    arm(monkeypatch, boundary)
    with pytest.raises(SimulatedCrash):
        finalize(spec, "2", result, "test: superseded", "retire_run", paths)
    monkeypatch.undo()
    crashed = finalize_snapshot(spec, paths)
    assert crashed["ledger"] == finalize_baseline["ledger"][:1 if boundary == "finalize.archived_recorded" else 0]

    done = finalize(spec, "2", result, "test: superseded", "retire_run", paths)  # the retry
    snapshot = finalize_snapshot(spec, paths)
    assert snapshot == {k: v for k, v in finalize_baseline.items() if k not in ("seen", "done")}
    assert normalizer(spec, paths)(done) == finalize_baseline["done"]
    assert [row[3] for row in snapshot["ledger"]] == ["archived", "retired"]
    assert "aliases removed: ['previous']" in snapshot["ledger"][1][4]


def test_finalize_baseline_retires_removes_aliases_and_local_copies(spec, finalize_baseline):
    v2 = finalize_baseline["versions"]["2"]
    assert v2["lifecycle.status"] == "retired" and v2["lifecycle.archive_sha256"] == "<manifest>"  # ab...ab
    assert {a: str(v) for a, v in finalize_baseline["aliases"].items()} == {"champion": "1"}
    assert finalize_baseline["local"] == []
    assert len(finalize_baseline["done"]["deleted_local"]) == 2


def retired_archive(spec, paths: StatePaths, version: str = "2", meta: dict[str, Any] | None = None,
                    model: Path | None = None) -> tuple[LocalStore, ArchiveResult]:
    """Archive ``version`` (a staged folder with ``model`` as its model, else a stand-in) under the state's
    archive root as the retire DAG does, and finalize it: a retired version with its recorded manifest."""
    from lifecycle.registry.store import Registry
    from lifecycle.retirement.retire import finalize

    mv = Registry(paths).version(spec.model_name, version)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        if model is not None:
            shutil.copytree(model, staged / "model")
        else:
            staged_folder(staged)
        fileio.atomic_write(staged / "mlflow/version.json", json.dumps(
            {"name": spec.model_name, "version": version, "run_id": mv.run_id, "tags": dict(mv.tags)}))
        store = LocalStore(paths.archive)
        result = write_archive(store, spec.name, version, staged, meta={
            "registered_model": spec.model_name, "source_run_id": mv.run_id, "reason": "test", **(meta or {})})
    finalize(spec, version, result, "test: retired", f"retire_v{version}", paths)
    return store, result


def legacy_model(folder: Path) -> Path:
    """The pyfunc folder of ``tests/fixtures/legacy_model_e70ebac.tar.gz``: a real model, no training needed."""
    with tarfile.open(Path(__file__).parents[1] / "fixtures" / "legacy_model_e70ebac.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "model"


def restore_state(spec, root: Path) -> tuple[StatePaths, LocalStore]:
    """v1, v2 registered; v2 archived (holding the legacy fixture's model) and retired."""
    paths = mlflow_state(root / "state")
    register_dummy(spec, paths)
    store, _ = retired_archive(spec, paths, model=legacy_model(root / "legacy"))
    return paths, store


@pytest.fixture
def own_sys_path(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # mlflow may prepend a model's bundled code folder


@pytest.fixture(scope="module")
def restore_baseline(spec, tmp_path_factory) -> dict[str, Any]:
    from lifecycle.retirement.restore import restore

    paths, store = restore_state(spec, tmp_path_factory.mktemp("restore-free"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", list(sys.path))
        seen = arm(mp)
        done = restore(spec, store, "2", "restore_run", paths)
    return {**registry_snapshot(spec, paths), "seen": seen, "done": done}


@pytest.mark.parametrize("boundary", faults("restore."))
def test_restore_recovers_from_a_crash_at(boundary, spec, tmp_path, monkeypatch, restore_baseline, own_sys_path):
    from lifecycle.retirement.restore import restore

    assert boundary in restore_baseline["seen"]
    paths, store = restore_state(spec, tmp_path)
    arm(monkeypatch, boundary)
    with pytest.raises(SimulatedCrash):
        restore(spec, store, "2", "restore_run", paths)
    monkeypatch.setattr(fileio, "crash_hook", None)

    done = restore(spec, store, "2", "restore_run", paths)  # the retry
    snapshot = registry_snapshot(spec, paths)
    assert snapshot == {k: v for k, v in restore_baseline.items() if k not in ("seen", "done")}
    assert [row[3] for row in snapshot["ledger"]].count("restored") == 1
    assert done["version"] == restore_baseline["done"]["version"] == "3"
    assert done["files"] == restore_baseline["done"]["files"]
    again = restore(spec, store, "2", "restore_run", paths)
    assert again["already"] and registry_snapshot(spec, paths) == snapshot


def test_restore_baseline_registers_the_archived_model_once(spec, restore_baseline):
    v3 = restore_baseline["versions"]["3"]
    assert v3["lifecycle.status"] == "restored" and v3["lifecycle.restored_version"] == "2"
    assert v3["lifecycle.restored_from"] == "<state>/archive/credit_default/v2"
    assert [r for r in restore_baseline["runs"] if r[0].startswith("restore")] == \
        [["restore v2 (restore_run)", "FINISHED"]]


def test_the_fault_table_in_docs_is_current():
    """``docs/faults.md`` is generated from ``FAULTS`` (``python -m tests.fault_table``): never stale."""
    from tests.fault_table import markdown

    doc = (Path(__file__).parents[2] / "docs" / "faults.md").read_text()
    assert markdown() in doc, "docs/faults.md is stale: python -m tests.fault_table > docs/faults.md"
