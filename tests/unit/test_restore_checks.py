"""Archives cannot be forged: a restore trusts an archive only as far as the registry vouches for it (the manifest
sha256 recorded at retirement, the version's model and source run), only under the spec's archive root; and the
archive step never adopts a foreign manifest it finds at its destination. Every refusal leaves the state as it
was: registry, MLflow runs, ledger and archive."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lifecycle.paths import StatePaths
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
from lifecycle.retirement.restore import RestoreRefusedError, check_location, check_manifest, restore
from lifecycle.retirement.retire import RetireRefusedError, finalize
from tests.conftest import archiving_to
from tests.unit.test_crash_recovery import (
    archive_snapshot,
    ledger_rows,
    mlflow_state,
    register_dummy,
    registry_snapshot,
    retired_archive,
    staged_folder,
)

V2 = "credit_default/v2"


@pytest.fixture
def retired(spec, tmp_path) -> dict[str, Any]:
    """v1 and v2 registered; v2 archived under the state's archive root and retired (tagged with its manifest)."""
    paths = mlflow_state(tmp_path / "state")
    v1, v2 = register_dummy(spec, paths)
    store, result = retired_archive(spec, paths)
    return {"paths": paths, "store": store, "result": result, "v1": v1, "v2": v2}


def snapshot(spec, paths: StatePaths) -> dict[str, Any]:
    return {**registry_snapshot(spec, paths), "archive": archive_snapshot(paths.archive)}


def refused(spec, r: dict[str, Any], store, match: str, error: type[BaseException] = RestoreRefusedError) -> None:
    """``restore`` raises ``error`` matching ``match`` and changes nothing."""
    before = snapshot(spec, r["paths"])
    with pytest.raises(error, match=match):
        restore(spec, store, "2", "restore_refused", r["paths"])
    assert snapshot(spec, r["paths"]) == before
    assert Registry(r["paths"]).version_for_run(spec.model_name, "restore_refused") is None


def rewrite_manifest(root: Path, edit) -> str:
    """Edit the manifest at ``root/credit_default/v2`` (``edit(manifest)``); return its new sha256."""
    path = root / V2 / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    path.write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def test_the_genuine_archive_passes_every_check(spec, retired):
    manifest, digest = verify_archive(retired["store"], spec.name, "2")
    check_manifest(spec, "2", manifest, digest, Registry(retired["paths"]).version(spec.model_name, "2"),
                   {"run_id": retired["v2"].run_id})  # no error
    assert digest == retired["result"].manifest_sha256


def test_a_forged_manifest_is_refused(spec, retired):
    """Weights swapped and the manifest rewritten to match them: every file checks out against the forged
    manifest, but its sha256 is not the one recorded when v2 was retired."""
    root = retired["paths"].archive
    forged = b"forged weights"
    (root / V2 / "model/weights.pt").write_bytes(forged)

    def swap(manifest):
        entry = next(f for f in manifest["files"] if f["path"] == "model/weights.pt")
        entry.update(sha256=hashlib.sha256(forged).hexdigest(), size=len(forged))

    rewrite_manifest(root, swap)
    verify_archive(retired["store"], spec.name, "2")  # self-consistent
    refused(spec, retired, retired["store"], r"manifest sha256 \w+\.\.\. is not the \w+\.\.\. recorded when v2 was "
                                             r"retired")


def test_a_tampered_file_is_refused_naming_it(spec, retired):
    (retired["paths"].archive / V2 / "MODEL_CARD.md").write_text("# tampered\n")
    refused(spec, retired, retired["store"], "MODEL_CARD.md", ChecksumMismatchError)


def test_a_digest_other_than_the_recorded_one_is_refused(spec, retired):
    """The registry recorded another manifest for v2 (the archive was replaced after retirement)."""
    Registry(retired["paths"]).set_tags(spec.model_name, "2", {"lifecycle.archive_sha256": "0" * 64})
    refused(spec, retired, retired["store"], "is not the 0000000000000000... recorded")


def test_an_archive_of_another_run_is_refused(spec, tmp_path):
    """The manifest vouched for by the registry names another source run than the registry's v2 (a registry
    sharing the bucket, or a mix-up at archive time): the run id check catches what the digest cannot."""
    paths = mlflow_state(tmp_path / "state")
    v1, v2 = register_dummy(spec, paths)
    store, _ = retired_archive(spec, paths, meta={"source_run_id": v1.run_id})
    r = {"paths": paths, "store": store}
    refused(spec, r, store, f"manifest source_run_id '{v1.run_id}' != the registry's '{v2.run_id}'")


def test_a_manifest_naming_another_version_is_refused(spec, retired):
    digest = rewrite_manifest(retired["paths"].archive, lambda m: m.update(version="1", model="other_model"))
    Registry(retired["paths"]).set_tags(spec.model_name, "2", {"lifecycle.archive_sha256": digest})
    refused(spec, retired, retired["store"], r"manifest model 'other_model' != 'credit_default'; manifest version "
                                             r"'1' != '2'")


def test_a_version_that_was_never_retired_has_nothing_to_check_against(spec, retired):
    registry = Registry(retired["paths"])
    registry.set_tags(spec.model_name, "2", {"lifecycle.status": "challenger"})
    refused(spec, retired, retired["store"], "v2 was never retired")
    refused(spec, retired, LocalStore(retired["paths"].archive), "v2 was never retired")


def test_an_unknown_version_is_refused(spec, retired):
    before = snapshot(spec, retired["paths"])
    with pytest.raises(RestoreRefusedError, match="v9 is not in the registry"):
        restore(spec, retired["store"], "9", "restore_refused", retired["paths"])
    assert snapshot(spec, retired["paths"]) == before


def test_a_genuine_archive_outside_the_archive_root_is_refused(spec, retired, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(retired["paths"].archive, elsewhere)  # byte-identical copy, but not where the spec archives
    refused(spec, retired, LocalStore(elsewhere), "outside the allowed archive root")
    escape = LocalStore(retired["paths"].archive / ".." / "elsewhere")
    refused(spec, retired, escape, "outside the allowed archive root")
    on_s3 = archiving_to(spec, "s3://lifecycle-archive/models")
    for bucket, prefix in (("another-bucket", "models"), ("lifecycle-archive", "models-evil"),
                           ("lifecycle-archive", "")):
        store = S3Store(None, bucket, prefix)  # refused before the store is ever called
        before = snapshot(spec, retired["paths"])
        with pytest.raises(RestoreRefusedError, match="outside the allowed archive root"):
            restore(on_s3, store, "2", "restore_refused", retired["paths"])
        assert snapshot(spec, retired["paths"]) == before


@pytest.mark.parametrize(
    ("uri", "root", "allowed"),
    [
        pytest.param("s3://b/models/credit_default/v2", "s3://b/models", True, id="s3-under"),
        pytest.param("s3://b/models/credit_default/v2", "s3://b", True, id="s3-bucket-root"),
        pytest.param("s3://b/models", "s3://b/models/", True, id="s3-the-root"),
        pytest.param("s3://other/models/credit_default/v2", "s3://b/models", False, id="s3-other-bucket"),
        pytest.param("s3://b/models-evil/credit_default/v2", "s3://b/models", False, id="s3-sibling-prefix"),
        pytest.param("s3://b/models/../x/credit_default/v2", "s3://b/models", False, id="s3-dotdot"),
        pytest.param("/srv/archive/credit_default/v2", "/srv/archive", True, id="local-under"),
        pytest.param("file:///srv/archive/credit_default/v2", "/srv/archive", True, id="file-uri"),
        pytest.param("/srv/archive/../etc/credit_default/v2", "/srv/archive", False, id="local-dotdot"),
        pytest.param("/srv/archive2/credit_default/v2", "/srv/archive", False, id="local-sibling"),
        pytest.param("/srv/archive/credit_default/v2", "s3://b/srv/archive", False, id="local-vs-s3"),
    ],
)
def test_archive_locations(uri, root, allowed):
    if allowed:
        check_location(uri, root)
    else:
        with pytest.raises(RestoreRefusedError):
            check_location(uri, root)


# ---------------------------------------------------------------------- archiving onto an existing manifest


META = {"registered_model": "credit_default", "source_run_id": "run-2", "reason": "first"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"meta": {"source_run_id": "run-of-another-registry"}},
                     "source_run_id 'run-2' != 'run-of-another-registry'", id="other-run"),
        pytest.param({"meta": {"registered_model": "someone_else"}}, "registered_model", id="other-model"),
        pytest.param({"file": ("MODEL_CARD.md", b"# another card\n")}, "different contents: MODEL_CARD.md",
                     id="other-digest"),
        pytest.param({"file": ("extra.txt", b"x")}, "missing: extra.txt", id="other-files"),
    ],
)
def test_archiving_onto_a_foreign_manifest_is_refused_and_changes_nothing(tmp_path, change, match):
    store = LocalStore(tmp_path / "archive")
    first = write_archive(store, "credit_default", "2", staged_folder(tmp_path / "first"), meta=META)
    before = archive_snapshot(tmp_path / "archive")
    staged = staged_folder(tmp_path / "second")
    if "file" in change:
        name, body = change["file"]
        (staged / name).write_bytes(body)
    with pytest.raises(ForeignArchiveError, match=match) as err:
        write_archive(store, "credit_default", "2", staged, meta={**META, **change.get("meta", {})})
    assert isinstance(err.value, ArchiveError) and err.value.http_status == 409
    assert archive_snapshot(tmp_path / "archive") == before  # neither adopted nor overwritten
    # the digest the registry recorded for the version is trusted, whatever is staged now (a retired version
    # archived again: its staging folder was deleted, its model card regenerated) ...
    adopted = write_archive(store, "credit_default", "2", staged, meta={**META, **change.get("meta", {})},
                            recorded_sha256=first.manifest_sha256)
    assert adopted.manifest_sha256 == first.manifest_sha256 and adopted.uploaded == 0
    # ... and only that digest
    with pytest.raises(ForeignArchiveError):
        write_archive(store, "credit_default", "2", staged, meta={**META, **change.get("meta", {})},
                      recorded_sha256="0" * 64)
    assert archive_snapshot(tmp_path / "archive") == before


def test_finalize_never_repoints_a_retired_version_to_another_archive(spec, retired):
    from dataclasses import replace

    before = snapshot(spec, retired["paths"])
    other = replace(retired["result"], manifest_sha256="0" * 64, uri="/elsewhere/credit_default/v2")
    with pytest.raises(RetireRefusedError, match="already retired with archive manifest sha256"):
        finalize(spec, "2", other, "again", "retire_again", retired["paths"])
    assert snapshot(spec, retired["paths"]) == before
    finalize(spec, "2", retired["result"], "test: retired", "retire_v2", retired["paths"])  # same archive: fine
    assert snapshot(spec, retired["paths"]) == before and len(ledger_rows(retired["paths"])) == 2


def test_the_retention_sweep_of_a_model_never_registered_finds_nothing(spec, state):
    """A new spec's weekly retire sweep runs before its first training: nothing due, no error (it failed three
    times and paged ops before)."""
    from lifecycle.retirement.retire import retention_candidates

    fresh = spec.model_copy(update={"name": "never_trained", "registered_model": None})
    assert retention_candidates(fresh, state) == []
