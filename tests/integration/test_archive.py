"""Archive, verify, retire and restore against moto's S3 server over HTTP on a loopback port (not in-process
mocks), and the same archive logic against the local-folder backend."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lifecycle.data.frames import numpy_dtypes
from lifecycle.data.synthetic import generate_batch
from lifecycle.ledger import Ledger
from lifecycle.registry.store import Registry
from lifecycle.retirement.archive import (
    MANIFEST,
    ArchiveError,
    ChecksumMismatchError,
    ForeignArchiveError,
    LocalStore,
    S3Store,
    verify_archive,
    write_archive,
)
from lifecycle.retirement.restore import RestoreRefusedError, restore
from lifecycle.retirement.retire import RetireRefusedError, check, finalize
from lifecycle.retirement.staging import stage
from lifecycle.training.packaging import load_model_dir
from tests.conftest import S3Server, archiving_to, register_versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUCKET = "lifecycle-archive"


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, spec):
    """v1 champion, v2 trained briefly (the one to retire); their runs and GX reports."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIFECYCLE_HOME", str(tmp_path_factory.mktemp("archive") / "state"))
        from lifecycle.paths import StatePaths

        paths = StatePaths.current()
        register_versions(spec, paths, {"a1": {"epochs": 2, "overrides": {"seed": 1}},
                                        "a2": {"epochs": 2, "overrides": {"seed": 2}}}, evaluate=True)
        yield paths, mp


def s3_store(s3, prefix: str) -> S3Store:
    return S3Store(s3.client(), BUCKET, prefix)


def status(paths, spec, version="2") -> str:
    return Registry(paths).version(spec.model_name, version).tags.get("lifecycle.status")


def test_stage_collects_model_run_reports_history_and_a_model_card(lifecycle, spec):
    paths, _ = lifecycle
    staged = stage(spec, "2", "test: superseded", paths)
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert any(f.startswith("model/") and f.endswith("weights.pt") for f in files)
    assert {"mlflow/run.json", "mlflow/version.json", "mlflow/evaluation.json", "reference/reference.parquet",
            "history/ledger.json", "history/traffic.json", "MODEL_CARD.md"} <= files
    assert {f"reports/gx/{d}.html" for d in ("2026-01-01", "2026-01-04")} <= files
    card = (staged / "MODEL_CARD.md").read_text()
    for heading in ("## Purpose", "## Data lineage", "## Metrics", "## Slices", "## Gates",
                    "## Deployment history", "## Drift history"):
        assert heading in card
    assert "test: superseded" in card and "roc_auc" in card


def test_archive_verifies_every_object_and_writes_the_manifest_last(lifecycle, spec, s3):
    paths, _ = lifecycle
    store = s3_store(s3, "ok")
    result = write_archive(store, spec.name, "2", stage(spec, "2", "test", paths))
    assert result.uri == f"s3://{BUCKET}/ok/credit_default/v2" and result.uploaded == result.files > 8
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"ok/credit_default/v2/{MANIFEST}")["Body"].read())
    for entry in manifest["files"]:
        assert set(entry) == {"path", "sha256", "size"} and not entry["path"].startswith("/")
        head = s3.client().head_object(Bucket=BUCKET, Key=f"ok/credit_default/v2/{entry['path']}",
                                       ChecksumMode="ENABLED")
        assert head["ContentLength"] == entry["size"]
        assert bytes.fromhex(entry["sha256"]) == base64.b64decode(head["ChecksumSHA256"])
    again = write_archive(store, spec.name, "2", stage(spec, "2", "test", paths))
    assert again.uploaded == 0 and again.manifest_sha256 == result.manifest_sha256  # idempotent: no second upload


def test_server_stopped_mid_archive_leaves_no_manifest_and_a_retry_completes(lifecycle, spec, s3):
    paths, _ = lifecycle
    store = s3_store(s3, "flaky")
    staged = stage(spec, "2", "test", paths)
    real_put, puts = store.put, []

    def put_then_die(key, data, sha):
        real_put(key, data, sha)
        puts.append(key)
        if len(puts) == 3:
            s3.stop()  # the store goes away mid-archive

    store.put = put_then_die
    with pytest.raises(ArchiveError, match="failed"):
        write_archive(store, spec.name, "2", staged)
    s3.start()
    store = s3_store(s3, "flaky")
    assert store.stat(f"credit_default/v2/{MANIFEST}") is None  # nothing claims a complete archive
    assert status(paths, spec) == "challenger"  # and nothing about the version changed
    result = write_archive(store, spec.name, "2", staged)
    assert result.uploaded == result.files - 3  # the retry uploads only what is missing
    verify_archive(store, spec.name, "2")


def test_a_foreign_manifest_in_a_shared_bucket_is_neither_adopted_nor_overwritten(lifecycle, spec, s3):
    """Two registries archive their own credit_default v2 to the same bucket and prefix: the second refuses."""
    paths, _ = lifecycle
    store = s3_store(s3, "shared")
    staged = stage(spec, "2", "test", paths)
    first = write_archive(store, spec.name, "2", staged, meta={"source_run_id": "run-of-registry-a"})

    def objects():
        listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="shared/")["Contents"]
        return {o["Key"]: o["ETag"] for o in listed}

    before = objects()
    with pytest.raises(ForeignArchiveError, match="source_run_id 'run-of-registry-a' != 'run-of-registry-b'"):
        write_archive(store, spec.name, "2", staged, meta={"source_run_id": "run-of-registry-b"})
    assert objects() == before
    again = write_archive(store, spec.name, "2", staged, meta={"source_run_id": "run-of-registry-a"})
    assert again.manifest_sha256 == first.manifest_sha256 and again.uploaded == 0  # its own: adopted


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_a_corrupted_object_is_refused_naming_the_file(lifecycle, spec, s3, tmp_path, backend):
    paths, _ = lifecycle
    store = s3_store(s3, "tamper") if backend == "s3" else LocalStore(tmp_path / "archive")
    write_archive(store, spec.name, "2", stage(spec, "2", "test", paths))
    victim = "MODEL_CARD.md"
    if backend == "s3":
        s3.client().put_object(Bucket=BUCKET, Key=f"tamper/credit_default/v2/{victim}", Body=b"# tampered\n")
    else:
        (tmp_path / "archive/credit_default/v2" / victim).write_text("# tampered\n")
    with pytest.raises(ChecksumMismatchError, match=victim) as err:
        verify_archive(store, spec.name, "2")
    assert err.value.path == victim
    with pytest.raises(ChecksumMismatchError, match=victim):
        write_archive(store, spec.name, "2", stage(spec, "2", "test", paths))  # a rerun refuses too
    with pytest.raises(RestoreRefusedError, match="v2 was never retired"):  # nothing vouches for this manifest
        restore(archiving_to(spec, store), store, "2", "restore_tampered", paths)
    assert status(paths, spec) == "challenger"
    assert Registry(paths).version_for_run(spec.model_name, "restore_tampered") is None


def test_local_backend_archives_verifies_and_is_idempotent(lifecycle, spec, tmp_path):
    paths, _ = lifecycle
    store = LocalStore(tmp_path / "archive")
    result = write_archive(store, spec.name, "2", stage(spec, "2", "test", paths))
    manifest = json.loads((tmp_path / "archive/credit_default/v2/manifest.json").read_text())
    for entry in manifest["files"]:
        data = (tmp_path / "archive/credit_default/v2" / entry["path"]).read_bytes()
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert write_archive(store, spec.name, "2", stage(spec, "2", "test", paths)).uploaded == 0
    assert result.uri == str(tmp_path / "archive/credit_default/v2")


def test_refuses_the_champion_and_an_unknown_version(lifecycle, spec):
    paths, _ = lifecycle
    with pytest.raises(RetireRefusedError, match="is the champion"):
        check(spec, "1", paths)
    with pytest.raises(RetireRefusedError, match="not in the registry"):
        check(spec, "99", paths)
    assert check(spec, "2", paths)["champion"] == "1"


def test_retention_retires_unaliased_versions_idle_for_retain_days(lifecycle, spec):
    from lifecycle.retirement.retire import retention_candidates
    from lifecycle.serving.traffic import TrafficStore

    paths, _ = lifecycle
    store = TrafficStore(paths.ledger_db)
    for version in ("1", "2"):
        store.mark_loaded(spec.name, version, True)
    store.set_weights(spec.name, {"1": 50, "2": 50}, "test: v2 serves")
    store.set_weights(spec.name, {"1": 100}, "test: v2 drained")  # idle from now on
    now = dt.datetime.now(dt.UTC)
    policy = spec.model_copy(update={"retirement": spec.retirement.model_copy(update={"retain_days": 30})})
    assert retention_candidates(policy, paths, now=now + dt.timedelta(days=29)) == []
    [due] = retention_candidates(policy, paths, now=now + dt.timedelta(days=31))
    assert due["version"] == "2" and "no traffic for 31 days (retain_days 30)" in due["reason"]  # v1: champion
    store.set_weights(spec.name, {"1": 90, "2": 10}, "test: v2 serves again")
    assert retention_candidates(policy, paths, now=now + dt.timedelta(days=31)) == []  # serving: kept
    store.set_weights(spec.name, {"1": 100}, "test: drained again")
    off = spec.model_copy(update={"retirement": spec.retirement.model_copy(update={"retain_days": 0})})
    assert retention_candidates(off, paths, now=now + dt.timedelta(days=365)) == []  # 0: manual only


def test_retire_and_restore_round_trip(lifecycle, spec, s3):
    paths, _ = lifecycle
    store = s3_store(s3, "round")
    with tempfile.TemporaryDirectory() as tmp:
        original = load_model_dir(Registry(paths).download_model(spec.model_name, "2", Path(tmp)))
        original_weights = next(Path(tmp).rglob("weights.pt")).read_bytes()
        frame = numpy_dtypes(generate_batch(spec, dt.date(2026, 3, 1)))
        expected = original.predict_proba(frame)
    result = write_archive(store, spec.name, "2", stage(spec, "2", "round trip", paths))
    verify_archive(store, spec.name, "2")
    finalize(spec, "2", result, "round trip", "retire_test", paths)
    mv = Registry(paths).version(spec.model_name, "2")
    assert mv.tags["lifecycle.status"] == "retired" and mv.tags["lifecycle.archive_uri"] == result.uri
    assert mv.tags["lifecycle.archive_sha256"] == result.manifest_sha256
    ledger = Ledger(paths.ledger_db)
    assert [e.event for e in ledger.events(spec.name, version="2")][-2:] == ["archived", "retired"]

    with pytest.raises(RestoreRefusedError, match="outside the allowed archive root"):
        restore(spec, store, "2", "restore_test", paths)  # the spec archives to a local folder, not this bucket
    restored = restore(archiving_to(spec, store), store, "2", "restore_test", paths)
    new = restored["version"]
    assert new == "3" and restored["restored_from"] == result.uri
    assert restore(archiving_to(spec, store), store, "2", "restore_test", paths)["already"]  # idempotent per run
    mv = Registry(paths).version(spec.model_name, new)
    assert mv.tags["lifecycle.restored_from"] == result.uri and mv.tags["lifecycle.status"] == "restored"
    with tempfile.TemporaryDirectory() as tmp:
        back = load_model_dir(Registry(paths).download_model(spec.model_name, new, Path(tmp)))
        assert next(Path(tmp).rglob("weights.pt")).read_bytes() == original_weights  # byte-identical
        assert np.array_equal(back.predict_proba(frame), expected)
    [event] = ledger.events(spec.name, "restored")
    assert event.version == new and result.uri in event.reason
