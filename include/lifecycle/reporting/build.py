"""Build a model's lifecycle report from the ledger, the registry and the monitor's drift summaries."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from lifecycle.ledger import Ledger
from lifecycle.paths import StatePaths
from lifecycle.spec import ModelSpec

log = logging.getLogger(__name__)



def build_report(spec: ModelSpec, paths: StatePaths, links: dict[str, str]) -> Path:
    """Render the model's lifecycle report from the ledger and the registry."""
    from lifecycle.registry.store import Registry
    from lifecycle.reporting.html import VersionInfo, default_report_path, write_report

    registry = Registry(paths)
    aliases: dict[str, list[str]] = {}
    versions = []
    try:
        for alias, version in registry.aliases(spec.model_name).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in registry.versions(spec.model_name):
            run = registry.client.get_run(mv.run_id) if mv.run_id else None
            metrics = {k.removeprefix("test_"): v for k, v in (run.data.metrics if run else {}).items()
                       if k.startswith("test_") and "slice." not in k}
            versions.append(VersionInfo(str(mv.version), mv.tags.get("lifecycle.status", "?"),
                                        aliases.get(str(mv.version), []), metrics, dict(mv.tags)))
    except Exception as err:  # noqa: BLE001
        log.warning(f"report: registry not readable ({type(err).__name__}); versions omitted")
    out = default_report_path(spec.name, paths)
    return write_report(spec.name, Ledger(paths.ledger_db).events(spec.name), versions, out, links=links,
                        report_dir=out.parent, readings=drift_readings(spec, paths))


def drift_readings(spec: ModelSpec, paths: StatePaths) -> list:
    """Every monitored interval's result (drifted or not), for the report's drift plot."""
    from lifecycle.ledger import Event

    out = []
    for path in sorted((paths.reports / spec.name / "drift").glob("*/drift_summary.json")):
        r = json.loads(path.read_text())
        if r.get("scores"):
            out.append(Event(spec.name, r["champion_version"], "monitor", r["interval"][1].replace("+00:00", "Z"),
                             f"interval {r['interval'][0]}..{r['interval'][1]}: {r['rows']} rows, drifted: "
                             f"{', '.join(r['drifted']) or 'none'}",
                             {"drift_share": r["drift_share"], "threshold": spec.monitoring.drift_share}))
    return out
