"""
### Retire: `<model>__retire` (restore: `<model>__restore`)

Trigger with `version` and `reason`, or let the weekly sweep (`schedules.retire`) retire every version with no
`champion`/`challenger`/`previous` alias and no traffic for `retirement.retain_days` days. The champion and a
version in a canary are refused with the reason. `check` -> `drain` (weight to the champion via the gateway)
-> `wait_quiet` (deferrable: no request from it for `retirement.quiet_seconds`) -> `archive` (model artifacts,
MLflow params and metrics, GX and Evidently reports, canary and traffic history, a model card; each file with
its SHA-256 to `retirement.archive_uri`, S3 through the `aws` connection or a local folder, read back, then
`manifest.json` last) -> `verify` (everything read back against the manifest) -> `finalize` (only now: unload,
aliases removed, tagged `lifecycle.status=retired` with `lifecycle.archive_uri` and the manifest's sha256,
local checkpoints deleted per policy, ledger `archived` and `retired`, ops told). A failure anywhere leaves the
version as it was; a retry completes the work without uploading anything twice.
"""
from __future__ import annotations

import time
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import fail_fast, lifecycle_dag, load_specs
from lifecycle_airflow.hooks import archive_store, gateway_client
from lifecycle_airflow.operators import GatewayQuietSensor


def build_retire(spec):
    @dag(
        **lifecycle_dag(spec, "retire", f"Drain, archive (sha256-verified), verify and retire a version of {spec.name}",
                        __doc__, cron=spec.schedules.retire, native=True),
        params={
            "version": Param(None, type=["null", "integer"], minimum=1,
                             description="Version to retire (empty: the retention sweep picks)"),
            "reason": Param("retired by ops", type="string", description="Why (recorded and in the model card)"),
        },
    )
    def retire_dag():
        @task.branch
        def route(**context: Any) -> str:
            return "check" if context["params"].get("version") else "sweep"

        @task
        def sweep() -> list[dict[str, Any]]:
            """Retention: every version the policy retires, one retire run each."""
            from lifecycle.retirement.retire import retention_candidates

            due = retention_candidates(spec)
            print(f"sweep: {len(due)} version(s) due: " + "; ".join(f"v{d['version']}: {d['reason']}" for d in due)
                  if due else f"sweep: no version due (retain_days {spec.retirement.retain_days:g})")
            return [{"version": int(d["version"]), "reason": d["reason"]} for d in due]

        swept = sweep()
        TriggerDagRunOperator.partial(task_id="retire_each", trigger_dag_id=f"{spec.name}__retire").expand(conf=swept)

        @task
        def check(**context: Any) -> dict[str, Any]:
            """Refuse the champion or a version in a canary; read the gateway's weights."""
            from lifecycle.retirement.retire import check

            version = str(context["params"]["version"])
            weights = gateway_client().traffic(spec.name).get("weights", {})
            with fail_fast():
                info = check(spec, version, weights=weights)
            info["weights"] = weights
            print(f"check: v{version} ({info['status']}, aliases {info['aliases'] or 'none'}, weight "
                  f"{weights.get(version, 0)}) may be retired" + ("; already retired" * info["already_retired"]))
            return info

        @task
        def drain(info: dict[str, Any]) -> dict[str, Any]:
            """Move the version's weight to the champion (nothing to do if it has none): weights read again and
            set as a compare-and-set, so a concurrent change (a deploy, a rollback) is never overwritten."""
            from lifecycle.retirement.retire import drain as drain_version

            version = info["version"]
            champion = None if info["champion"] is None else str(info["champion"])
            done = drain_version(spec.name, version, champion, gateway_client())
            if done["had_weight"]:
                print(f"drain: v{version} had {done['had_weight']}%; weights now {done['weights']} "
                      f"(revision {done['revision']})")
            else:
                print(f"drain: v{version} serves no traffic")
            return {"version": version, "at": time.time(), "had_weight": done["had_weight"]}

        checked = check()
        drained = drain(checked)
        wait_quiet = GatewayQuietSensor(task_id="wait_quiet", model=spec.name,
                                       quiet_seconds=spec.retirement.quiet_seconds,
                                       max_seconds=spec.retirement.max_drain_seconds,
                                       drained="{{ ti.xcom_pull(task_ids='drain') }}")

        @task
        def archive(info: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Stage, upload with checksums, read back, then write the manifest (idempotent)."""
            from dataclasses import asdict

            from lifecycle.retirement.archive import write_archive
            from lifecycle.retirement.staging import recorded_archive_sha256, stage

            reason = context["params"]["reason"]
            with fail_fast():
                staged = stage(spec, info["version"], reason)
                result = write_archive(archive_store(spec), spec.name, info["version"], staged,
                                       meta={"registered_model": spec.model_name, "reason": reason,
                                             "source_run_id": info["run_id"], "dag_run_id": context["run_id"]},
                                       recorded_sha256=recorded_archive_sha256(spec, info["version"]))
            print(f"archive: {result}")
            return asdict(result)

        @task
        def verify(info: dict[str, Any], archived: dict[str, Any]) -> dict[str, Any]:
            """Read every object back and compare with the manifest before anything about the version changes."""
            from lifecycle.retirement.retire import verify as verify_archived

            with fail_fast():
                manifest, digest = verify_archived(archive_store(spec), spec.name, info["version"],
                                                   archived["manifest_sha256"])
            print(f"verify: {len(manifest['files'])} files match manifest sha256 {digest}")
            return archived

        @task
        def finalize(info: dict[str, Any], archived: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Only now: unload from the gateway, remove aliases, tag retired, delete local copies, ledger, alert."""
            from lifecycle.retirement.archive import ArchiveResult
            from lifecycle.retirement.retire import finalize
            from lifecycle.serving.client import GatewayError
            from lifecycle_airflow.notifiers import alert_ops

            version, reason = info["version"], context["params"]["reason"]
            try:
                gateway_client().unload(spec.name, version)
                print(f"finalize: v{version} unloaded from the gateway")
            except GatewayError as err:
                if err.status != 404:  # 404: not loaded (or a retry after the unload), nothing to unload
                    raise
            done = finalize(spec, version, ArchiveResult(**archived), reason, context["run_id"])
            alert_ops(spec, "retired", f"v{version} retired and archived to {archived['uri']}", version=version,
                      reason=reason, severity="info", links={"archive": archived["uri"]},
                      key=f"{spec.name}:retired:v{version}:alert")
            print(f"finalize: {done}")
            return done

        archived = archive(checked)
        route() >> [checked, swept]
        drained >> wait_quiet >> archived
        finalize(checked, verify(checked, archived))

    return retire_dag()


for _spec in load_specs():
    globals()[f"{_spec.name}__retire"] = build_retire(_spec)
