"""Retiring a model version without ever losing it, and bringing an archived one back.

The retire DAG wires these steps: :func:`check` (refuse the champion or a version in a canary) -> drain
(gateway) -> :func:`stage` (collect everything the version is, plus its model card) -> :func:`archive.write_archive`
-> :func:`verify` (every file, and the manifest against the sha256 the archive step returned:
:func:`check_manifest_digest`) -> :func:`finalize` (only now: aliases removed, tags, local artifacts, ledger).
Nothing about the version changes before its archive is verified. :func:`restore` reads a manifest, verifies
every file and registers the model again as a new version.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.clock import parse_utc
from lifecycle.errors import ConflictError, NotFoundError
from lifecycle.fileio import crash_point
from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.registry.store import CHALLENGER, CHAMPION, TAG, Registry, RegistryNotFoundError
from lifecycle.retirement.archive import MANIFEST, ArchiveResult, ChecksumMismatchError, Store, verify_archive

if TYPE_CHECKING:
    from lifecycle.serving.client import GatewayClient
    from lifecycle.spec import ModelSpec


KEEP_ALIASES = (CHAMPION, CHALLENGER)
DRAIN_ATTEMPTS = 3


class RetireRefusedError(ConflictError, ValueError):
    """This version may not be retired (the champion, a version in a canary, unknown); retrying will not help
    (HTTP 409)."""


class DrainConflictError(ConflictError, RuntimeError):
    """The drain lost its compare-and-set ``DRAIN_ATTEMPTS`` times in a row: the traffic keeps changing under it
    (HTTP 409). Nothing was overwritten; a later retry may succeed."""


def archive_uri(spec: ModelSpec, paths: StatePaths) -> str:
    return spec.retirement.archive_uri or str(paths.archive)


def check(spec: ModelSpec, version: str | int, paths: StatePaths | None = None,
          weights: dict[str, int] | None = None) -> dict[str, Any]:
    """Refuse, with the reason, to retire the champion, the challenger (a canary) or a version with live traffic
    that is not the champion's to take back. Returns what the retire steps need."""
    paths = paths or StatePaths.current()
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    from mlflow.exceptions import MlflowException

    try:
        mv = registry.version(name, version)
    except (NotFoundError, MlflowException) as err:
        raise RetireRefusedError(f"{name} v{version} is not in the registry: {err}") from err
    aliases = registry.aliases(name)
    held = sorted(a for a, v in aliases.items() if str(v) == version)
    if CHAMPION in held:
        raise RetireRefusedError(f"{name} v{version} is the champion: promote or roll back to another version "
                                 "first")
    if CHALLENGER in held:
        raise RetireRefusedError(f"{name} v{version} is the challenger of a canary: let the deploy finish or roll "
                                 "it back first")
    champion = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    if (weights or {}).get(version, 0) > 0 and champion is None:
        raise RetireRefusedError(f"{name} v{version} serves traffic and there is no champion to take it")
    return {"model": spec.name, "registered_model": name, "version": version, "champion": champion,
            "aliases": held, "status": mv.tags.get(f"{TAG}status", "?"), "run_id": mv.run_id,
            "source": mv.source, "already_retired": mv.tags.get(f"{TAG}status") == "retired"}


def drain_weights(weights: dict[str, int], version: str, champion: str) -> dict[str, int]:
    """The weights with ``version``'s share moved to the champion."""
    out = {v: int(w) for v, w in weights.items()}
    moved = out.pop(version, 0)
    out[champion] = out.get(champion, 0) + moved
    out[version] = 0
    return out


def drain(model: str, version: str | int, champion: str | None, gateway: GatewayClient,
          attempts: int = DRAIN_ATTEMPTS) -> dict[str, Any]:
    """Move ``version``'s weight to the champion without overwriting anyone: read weights and revision, compute
    :func:`drain_weights`, set them with ``expected_revision``; on a conflict read again and retry (the drain is
    idempotent), at most ``attempts`` times, then :class:`DrainConflictError`. Returns ``had_weight`` (before the
    drain), ``weights`` and ``revision`` (after it; unchanged when there was nothing to drain)."""
    import logging

    from lifecycle.serving.traffic import TrafficConflictError

    log = logging.getLogger(__name__)
    version = str(version)
    for attempt in range(1, attempts + 1):
        traffic = gateway.traffic(model)
        weights, revision = traffic.get("weights", {}), traffic.get("revision")
        weight = int(weights.get(version, 0))
        if weight <= 0:
            return {"had_weight": 0, "weights": weights, "revision": revision}
        if champion is None:
            raise RetireRefusedError(f"{model} v{version} serves {weight}% and there is no champion to take it")
        new = drain_weights(weights, version, champion)
        try:
            done = gateway.set_weights(model, new, f"retire v{version}: drain", expected_revision=revision)
        except TrafficConflictError as err:
            log.info("drain: %s v%s: traffic changed under the drain (revision %s, expected %s), attempt %d/%d",
                     model, version, err.revision, revision, attempt, attempts)
            continue
        return {"had_weight": weight, "weights": new, "revision": done.get("revision")}
    raise DrainConflictError(f"could not drain {model} v{version}: the traffic changed under each of {attempts} "
                             "compare-and-set attempts (other operators keep changing it); nothing was overwritten, "
                             "retry when the traffic is stable")


def check_manifest_digest(digest: str, expected: str) -> None:
    """The manifest read back (sha256 ``digest``) must be the one the archive step wrote (``expected``); else it
    changed in between, and :class:`~lifecycle.retirement.archive.ChecksumMismatchError` names it."""
    if digest != expected:
        raise ChecksumMismatchError(MANIFEST, f"changed since it was written ({digest[:16]}...)")


def verify(store: Store, model: str, version: str | int, manifest_sha256: str) -> tuple[dict[str, Any], str]:
    """Every archived file read back against the manifest (:func:`~lifecycle.retirement.archive.verify_archive`),
    and the manifest against the sha256 the archive step returned. Returns the manifest and its sha256."""
    manifest, digest = verify_archive(store, model, version)
    check_manifest_digest(digest, manifest_sha256)
    return manifest, digest


#: A version tag holding what :func:`finalize` will do (aliases to remove, local folders to delete), written
#: before it changes anything, so a retry after a crash does, and records, exactly what the first attempt planned.
PLAN_TAG = f"{TAG}retire_plan"


def finalize(spec: ModelSpec, version: str | int, result: ArchiveResult, reason: str, run_id: str,
             paths: StatePaths | None = None, ledger: Ledger | None = None) -> dict[str, Any]:
    """After a verified archive: remove the version's aliases, tag it retired with the archive URI and the
    manifest's sha256, delete its local artifacts per policy, and record ``archived`` then ``retired``.

    Resumable: the plan (aliases, folders) is recorded on the version first (:data:`PLAN_TAG`), every step is
    idempotent and each ledger row has a stable key, so a retry after a crash at any step completes the work and
    records the same rows, once. A version already retired with another archive's manifest is refused
    (:class:`RetireRefusedError`): its registry record is never re-pointed.
    """
    paths = paths or StatePaths.current()
    ledger = ledger or Ledger(paths.ledger_db)
    registry = Registry(paths)
    name, version = spec.model_name, str(version)
    mv = registry.version(name, version)
    recorded = mv.tags.get(f"{TAG}archive_sha256")
    if recorded and recorded != result.manifest_sha256:
        raise RetireRefusedError(f"{name} v{version} is already retired with archive manifest sha256 "
                                 f"{recorded[:16]}...; refusing to re-point it to {result.uri} (manifest sha256 "
                                 f"{result.manifest_sha256[:16]}...)")
    held = [a for a, v in registry.aliases(name).items() if str(v) == version and a not in KEEP_ALIASES]
    if PLAN_TAG in mv.tags:  # a retry: the first attempt's plan, plus an alias set on the version since
        plan = json.loads(mv.tags[PLAN_TAG])
        plan["aliases"] += [a for a in held if a not in plan["aliases"]]
    else:
        folders = (paths.checkpoints / spec.name / mv.run_id, paths.root / "archive_staging" / spec.name /
                   f"v{version}") if spec.retirement.delete_local_artifacts else ()
        plan = {"aliases": held, "delete": [str(f) for f in folders if f.exists()]}
        registry.set_tags(name, version, {PLAN_TAG: json.dumps(plan)})
        crash_point("finalize.planned")
    removed, deleted = plan["aliases"], plan["delete"]
    for alias in removed:
        registry.delete_alias(name, alias)
    crash_point("finalize.aliases_removed")
    registry.set_tags(name, version, {f"{TAG}status": "retired", f"{TAG}archive_uri": result.uri,
                                      f"{TAG}archive_sha256": result.manifest_sha256,
                                      f"{TAG}retired_reason": reason[:500]})
    crash_point("finalize.tagged")
    for folder in deleted:
        if Path(folder).exists():  # a retry: maybe deleted already, or half
            shutil.rmtree(folder)
    crash_point("finalize.local_deleted")
    key = f"{name}:retire:v{version}"
    ledger.record(spec.name, "archived", f"v{version} archived to {result.uri}: {result.files} files, "
                  f"{result.bytes} bytes, manifest sha256 {result.manifest_sha256[:16]}..., every checksum verified",
                  version=version, run_id=run_id, key=f"{key}:archived",
                  details={"archive_uri": result.uri, "manifest_sha256": result.manifest_sha256,
                           "files": result.files, "bytes": result.bytes, "uploaded": result.uploaded})
    crash_point("finalize.archived_recorded")
    ledger.record(spec.name, "retired", f"v{version} retired: {reason}" + (f"; aliases removed: {removed}"
                                                                           if removed else ""),
                  version=version, run_id=run_id, key=f"{key}:retired",
                  details={"archive_uri": result.uri, "aliases_removed": removed, "deleted_local": deleted})
    return {"version": version, "archive_uri": result.uri, "aliases_removed": removed, "deleted_local": deleted}


def retention_candidates(spec: ModelSpec, paths: StatePaths | None = None,
                         now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Versions the retention policy retires: no ``champion``/``challenger``/``previous`` alias, not retired,
    and no traffic for ``retirement.retain_days`` (since their weight last went to 0, or since registration).
    A model not registered yet (a new spec, before its first training) has none: an empty list, not an error."""
    from lifecycle.serving.traffic import TrafficStore

    paths = paths or StatePaths.current()
    now = now or dt.datetime.now(dt.UTC)
    days = spec.retirement.retain_days
    if days <= 0:
        return []
    registry = Registry(paths)
    name = spec.model_name
    try:
        held = {str(v) for v in registry.aliases(name).values()}
    except RegistryNotFoundError:  # a new model that has not registered a version yet: nothing to retire
        return []
    history = TrafficStore(paths.ledger_db).history(spec.name)
    current = TrafficStore(paths.ledger_db).weights(spec.name)
    out = []
    for mv in registry.versions(name):
        version = str(mv.version)
        if version in held or mv.tags.get(f"{TAG}status") == "retired" or current.get(version, 0) > 0:
            continue
        idle_since = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
        served = False
        for h in history:
            weight = int(h.get("weights", {}).get(version, 0))
            if weight > 0:
                served = True
            elif served:
                idle_since, served = parse_utc(str(h["at"])), False
        if now - idle_since >= dt.timedelta(days=days):
            out.append({"version": version, "idle_since": idle_since.isoformat(),
                        "reason": f"retention: no traffic for {(now - idle_since).days} days (retain_days {days:g}), "
                                  "no champion/challenger/previous alias"})
    return out
