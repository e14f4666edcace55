"""
### Restore: `<model>__restore`

Trigger with `version` (the archived, original version number) and optionally `archive_uri` (default: the
spec's `retirement.archive_uri`; any other must lie under it, or the restore is refused). The original version
must be retired in this registry, and the manifest must be the one it recorded: its sha256 equal to the
version's `lifecycle.archive_sha256` and its model, version and source run equal to the registry's (a forged or
foreign archive is refused, naming the mismatch, and nothing changes). Reads `<model>/v<version>/manifest.json`,
reads back and verifies every file against its sha256 and size (a tampered archive is refused, naming the file,
and nothing is registered),
registers the model again as a new version tagged `lifecycle.restored_from` and `lifecycle.status=restored`
(same weights byte for byte, the original offline metrics), loads it in the gateway with weight 0 and records
`restored`. Deploy it with `<model>__deploy`. The CLI does the same: `lifecycle restore <model> <version>`.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from lifecycle_airflow.dagkit import fail_fast, lifecycle_dag, load_specs
from lifecycle_airflow.hooks import archive_store, gateway_client


def build_restore(spec):
    @dag(
        **lifecycle_dag(spec, "restore", f"Verify an archived version of {spec.name} and register it again",
                        __doc__, max_active_runs=16, tag="retire"),
        params={
            "version": Param(1, type="integer", minimum=1, description="The archived (original) version"),
            "archive_uri": Param(None, type=["null", "string"],
                                 description="Archive root (default: the spec's retirement.archive_uri)"),
        },
    )
    def restore_dag():
        @task
        def restore(**context: Any) -> dict[str, Any]:
            """Verify every checksum, register as a new version, load it in the gateway with weight 0."""
            from lifecycle.retirement.restore import restore
            from lifecycle.serving.client import GatewayError

            p = context["params"]
            with fail_fast():
                result = restore(spec, archive_store(spec, p.get("archive_uri")), str(p["version"]), context["run_id"])
            try:
                gateway_client().load(spec.name, result["version"])
                result["loaded"] = True
            except GatewayError as err:
                result["loaded"] = False
                print(f"restore: v{result['version']} registered; the gateway did not load it ({err})")
            print(f"restore: {result}")
            return result

        restore()

    return restore_dag()



for _spec in load_specs():
    globals()[f"{_spec.name}__restore"] = build_restore(_spec)
